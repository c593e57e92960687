//! The secret (the Anthropic key and the caller tokens): read once at cold start, cached,
//! refreshed after a TTL so that rotation takes effect without a redeploy.
//!
//! Concurrent requests that find the cache expired share ONE refresh: the first takes the
//! refresh lock and fetches, the others wait for it and then read the new value.

use crate::callers::{Caller, RawCaller};
use crate::error::ProxyError;
use serde::Deserialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::time::Instant;

/// The secret's JSON document: `{"anthropic_api_key": "...", "callers": [{"name",
/// "token_sha256", "created_at", "rotated_at", "limits"}]}` (see [`crate::callers`]). The
/// format before named callers, plaintext `"caller_tokens": ["..."]`, is still read (each
/// token a caller named `default`, `default-2`, ...), so a function updated before its secret
/// is migrated keeps answering. With Claude on Amazon Bedrock there is no key (it is empty).
#[derive(Clone, Default)]
pub struct Secret {
    pub anthropic_api_key: String,
    /// Plaintext tokens of the old format (and local runs' `CALLER_TOKEN`).
    pub caller_tokens: Vec<String>,
    /// Named callers, by token hash.
    pub callers: Vec<Caller>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret")
            .field("anthropic_api_key", &"<redacted>")
            .field(
                "caller_tokens",
                &format!("<{} redacted>", self.caller_tokens.len()),
            )
            .field("callers", &self.callers)
            .finish()
    }
}

impl Secret {
    /// Parses the secret string; the error never echoes the document.
    pub fn parse(text: &str) -> Result<Self, String> {
        #[derive(Deserialize)]
        struct Raw {
            anthropic_api_key: Option<String>,
            #[serde(default)]
            caller_tokens: Vec<String>,
            #[serde(default)]
            callers: Vec<RawCaller>,
        }
        let raw: Raw = serde_json::from_str(text).map_err(|e| {
            format!(
                "the secret is not the expected JSON document \
                 {{\"anthropic_api_key\": \"...\", \"caller_tokens\": [\"...\"]}} \
                 (error at line {} column {}: {})",
                e.line(),
                e.column(),
                e.classify_name()
            )
        })?;
        // A missing key is fine (Bedrock needs none); the Anthropic provider says so if it
        // needs one. A present but empty key is a mistake worth reporting now.
        if raw
            .anthropic_api_key
            .as_deref()
            .is_some_and(|k| k.trim().is_empty())
        {
            return Err("the secret's anthropic_api_key is empty".into());
        }
        let callers = raw
            .callers
            .into_iter()
            .map(RawCaller::into_caller)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("the secret's callers: {e}"))?;
        Ok(Secret {
            anthropic_api_key: raw.anthropic_api_key.unwrap_or_default(),
            caller_tokens: raw.caller_tokens,
            callers,
        })
    }
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "I/O error",
            serde_json::error::Category::Syntax => "not valid JSON",
            serde_json::error::Category::Data => "missing field or wrong type",
            serde_json::error::Category::Eof => "unexpected end",
        }
    }
}

/// Where the secret is read from.
#[derive(Clone)]
pub enum SecretSource {
    /// Secrets Manager `GetSecretValue` on the ARN.
    SecretsManager {
        client: aws_sdk_secretsmanager::Client,
        arn: String,
    },
    /// A fixed value (local runs: `ANTHROPIC_API_KEY` / `CALLER_TOKEN`).
    Static(Secret),
}

impl SecretSource {
    async fn fetch(&self) -> Result<Secret, ProxyError> {
        match self {
            SecretSource::Static(s) => Ok(s.clone()),
            SecretSource::SecretsManager { client, arn } => {
                let out = client
                    .get_secret_value()
                    .secret_id(arn)
                    .send()
                    .await
                    .map_err(|e| {
                        ProxyError::Internal(format!(
                            "reading secret {arn} from Secrets Manager failed: {}",
                            aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
                        ))
                    })?;
                let text = out.secret_string().ok_or_else(|| {
                    ProxyError::Internal(format!("secret {arn} has no SecretString"))
                })?;
                Secret::parse(text).map_err(|m| ProxyError::Internal(format!("secret {arn}: {m}")))
            }
        }
    }
}

struct Cached {
    secret: Arc<Secret>,
    /// When it was read.
    fetched_at: Instant,
    /// When to fetch again.
    refresh_at: Instant,
}

/// The cached secret.
pub struct SecretCache {
    source: SecretSource,
    ttl: Duration,
    value: RwLock<Option<Cached>>,
    refresh: tokio::sync::Mutex<()>,
    fetches: AtomicU64,
}

/// A token no caller has makes the cache read the secret again, at most this often (so a
/// caller added moments ago is accepted without waiting for the TTL, and unknown tokens cannot
/// make every request a Secrets Manager call). Revoked tokens still work until the TTL.
pub const UNKNOWN_TOKEN_REFRESH: Duration = Duration::from_secs(5);

/// After a failed refresh with a stale value at hand, wait this long before trying again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);

impl SecretCache {
    pub fn new(source: SecretSource, ttl: Duration) -> Self {
        SecretCache {
            source,
            ttl,
            value: RwLock::new(None),
            refresh: tokio::sync::Mutex::new(()),
            fetches: AtomicU64::new(0),
        }
    }

    /// How many times the source was read (Secrets Manager calls, for tests and logs).
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::SeqCst)
    }

    fn fresh(&self) -> Option<Arc<Secret>> {
        let guard = self.value.read().unwrap_or_else(|e| e.into_inner());
        guard
            .as_ref()
            .filter(|c| Instant::now() < c.refresh_at)
            .map(|c| c.secret.clone())
    }

    /// For a token no caller has: the secret read again when the cached one is older than
    /// [`UNKNOWN_TOKEN_REFRESH`] (`None`: it is not, or the read failed; the cached one stays).
    pub async fn reread_for_unknown_token(&self) -> Option<Arc<Secret>> {
        let old_enough = |s: &Self| {
            let guard = s.value.read().unwrap_or_else(|e| e.into_inner());
            guard
                .as_ref()
                .is_some_and(|c| c.fetched_at.elapsed() >= UNKNOWN_TOKEN_REFRESH.min(s.ttl))
        };
        if !old_enough(self) {
            return None;
        }
        let _refreshing = self.refresh.lock().await;
        // Another request may have read it while we waited.
        if !old_enough(self) {
            return self.fresh();
        }
        self.fetches.fetch_add(1, Ordering::SeqCst);
        let secret = Arc::new(self.source.fetch().await.ok()?);
        let mut guard = self.value.write().unwrap_or_else(|e| e.into_inner());
        *guard = Some(Cached {
            secret: secret.clone(),
            fetched_at: Instant::now(),
            refresh_at: Instant::now() + self.ttl,
        });
        Some(secret)
    }

    /// The secret, fetching it when the cache is empty or older than the TTL.
    pub async fn get(&self) -> Result<Arc<Secret>, ProxyError> {
        if let Some(s) = self.fresh() {
            return Ok(s);
        }
        let _refreshing = self.refresh.lock().await;
        // Someone else may have refreshed while we waited for the lock.
        if let Some(s) = self.fresh() {
            return Ok(s);
        }
        self.fetches.fetch_add(1, Ordering::SeqCst);
        let started = std::time::Instant::now();
        let result = self.source.fetch().await;
        let mut guard = self.value.write().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(secret) => {
                tracing::info!(
                    latency_ms = started.elapsed().as_millis() as u64,
                    callers = secret.callers.len(),
                    plaintext_caller_tokens = secret.caller_tokens.len(),
                    "secret loaded"
                );
                let secret = Arc::new(secret);
                *guard = Some(Cached {
                    secret: secret.clone(),
                    fetched_at: Instant::now(),
                    refresh_at: Instant::now() + self.ttl,
                });
                Ok(secret)
            }
            Err(e) => match guard.as_mut() {
                // Keep serving the last good value rather than failing every request.
                Some(stale) => {
                    tracing::warn!(error = %e, "secret refresh failed; using the cached value");
                    stale.refresh_at = Instant::now() + RETRY_AFTER_FAILURE.min(self.ttl);
                    Ok(stale.secret.clone())
                }
                None => {
                    tracing::error!(error = %e, "secret unavailable");
                    Err(e)
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_do_not_echo_the_document() {
        let e = Secret::parse("{\"anthropic_api_key\": \"sk-secret\", \"caller_tokens\": 5}")
            .unwrap_err();
        assert!(!e.contains("sk-secret"), "{e}");
        assert!(Secret::parse("not json sk-secret")
            .unwrap_err()
            .contains("not valid JSON"));
        assert!(Secret::parse("{\"anthropic_api_key\": \"\"}").is_err());
        let s = Secret::parse("{\"anthropic_api_key\": \"k\"}").unwrap();
        assert!(s.caller_tokens.is_empty());
        // Bedrock: caller tokens only.
        let s = Secret::parse("{\"caller_tokens\": [\"t\"]}").unwrap();
        assert_eq!(
            (s.anthropic_api_key.as_str(), s.caller_tokens.len()),
            ("", 1)
        );
        assert!(!format!("{s:?}").contains("\"k\""));
        // Named callers by hash, beside old plaintext tokens; a bad hash is an error.
        let h = crate::callers::token_sha256_hex("tok");
        let s = Secret::parse(&format!(
            r#"{{"callers": [{{"name": "alice", "token_sha256": "{h}", "created_at": "2026-01-01T00:00:00Z", "rotated_at": null, "limits": {{"max_tokens": 5}}}}]}}"#
        ))
        .unwrap();
        assert_eq!(s.callers[0].name, "alice");
        assert_eq!(s.callers[0].limits.max_tokens, Some(5));
        assert!(!format!("{s:?}").contains(&h));
        assert!(Secret::parse(r#"{"callers": [{"name": "a", "token_sha256": "zz"}]}"#).is_err());
    }

    #[tokio::test]
    async fn static_source_is_fetched_once_per_ttl() {
        let secret =
            Secret::parse("{\"anthropic_api_key\": \"k\", \"caller_tokens\": [\"t\"]}").unwrap();
        let cache = Arc::new(SecretCache::new(
            SecretSource::Static(secret),
            Duration::from_millis(200),
        ));
        for _ in 0..10 {
            cache.get().await.unwrap();
        }
        assert_eq!(cache.fetch_count(), 1);
        let deadline = Instant::now() + Duration::from_millis(250);
        tokio::time::sleep_until(deadline).await;
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let c = cache.clone();
                tokio::spawn(async move { c.get().await.map(|_| ()) })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(cache.fetch_count(), 2);
    }
}
