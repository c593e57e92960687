//! Named callers as the secret stores them (above `config`, for `[api]`'s numbers): `{name, token_sha256, created_at,
//! rotated_at, limits}`, the SHA-256 of each token and never the token, and the pure edits
//! `cargo xtask callers` and the deploy make to that list. The handler reads the same shape
//! (`handler::callers`).

use crate::config::{ApiSection, QuotaPeriod};
use crate::credentials::CallerToken;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The name of the caller the first deploy makes.
pub const DEFAULT_CALLER: &str = "default";

/// A caller's own limits (each optional): models and `max_tokens` narrower than the stack's,
/// and with a REST API front its own usage plan's rate, burst and quota (absent: `[api]`'s).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CallerLimits {
    /// Models this caller may use (absent: the stack's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_models: Option<Vec<String>>,
    /// Its `max_tokens` cap (absent: the stack's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Its own usage plan's steady requests per second (absent: `[api] rate_limit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<f64>,
    /// Its own usage plan's burst (absent: `[api] burst_limit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst_limit: Option<u32>,
    /// Its own usage plan's requests per period, 0 = none (absent: `[api] quota_limit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_limit: Option<u32>,
    /// Its own usage plan's quota period (absent: `[api] quota_period`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_period: Option<QuotaPeriod>,
}

/// A usage plan's numbers: a caller's own over `[api]`'s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throttle {
    pub rate_limit: f64,
    pub burst_limit: u32,
    /// 0 = no quota.
    pub quota_limit: u32,
    pub quota_period: QuotaPeriod,
}

impl CallerLimits {
    pub fn is_empty(&self) -> bool {
        self.allowed_models.is_none() && self.max_tokens.is_none() && !self.has_own_plan()
    }

    /// Whether the caller has its own usage plan (any of rate, burst, quota set).
    pub fn has_own_plan(&self) -> bool {
        self.rate_limit.is_some()
            || self.burst_limit.is_some()
            || self.quota_limit.is_some()
            || self.quota_period.is_some()
    }

    /// Its usage plan's numbers, each its own or `api`'s.
    pub fn throttle(&self, api: &ApiSection) -> Throttle {
        Throttle {
            rate_limit: self.rate_limit.unwrap_or(api.rate_limit),
            burst_limit: self.burst_limit.unwrap_or(api.burst_limit),
            quota_limit: self.quota_limit.unwrap_or(api.quota_limit),
            quota_period: self.quota_period.unwrap_or(api.quota_period),
        }
    }

    /// Refuses a rate, burst or quota API Gateway would refuse (resolved over `api`).
    pub fn check_throttle(&self, api: &ApiSection) -> Result<()> {
        if !self.has_own_plan() {
            return Ok(());
        }
        let t = self.throttle(api);
        let check = ApiSection {
            kind: api.kind,
            rate_limit: t.rate_limit,
            burst_limit: t.burst_limit,
            quota_limit: t.quota_limit,
            quota_period: t.quota_period,
        };
        check.validate().map_err(|e| {
            anyhow::anyhow!(
                "{e} (this caller's --rate-limit/--burst-limit/--quota-limit over [api]'s)"
            )
        })
    }

    /// Refuses limits that are not narrower than the stack's (`stack_models` empty or `*`:
    /// any model).
    pub fn check_within(&self, stack_models: &[String], stack_max_tokens: u64) -> Result<()> {
        if let Some(n) = self.max_tokens {
            if n == 0 || n > stack_max_tokens {
                bail!(
                    "--max-tokens {n} must be between 1 and the stack's cap of {stack_max_tokens} ([limits] max_tokens_cap)"
                );
            }
        }
        let any = stack_models.is_empty() || stack_models.iter().any(|m| m == "*");
        if let Some(models) = &self.allowed_models {
            if models.is_empty() {
                bail!("--models needs at least one model");
            }
            for m in models {
                if !any && !stack_models.contains(m) {
                    bail!(
                        "model {m} is not one the stack allows ({}): a caller's models must be among the stack's",
                        stack_models.join(", ")
                    );
                }
            }
        }
        Ok(())
    }
}

/// One caller in the secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallerEntry {
    pub name: String,
    /// SHA-256 of the token, lowercase hex.
    pub token_sha256: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, once rotated.
    #[serde(default)]
    pub rotated_at: Option<String>,
    #[serde(default)]
    pub limits: CallerLimits,
    /// With `[api] kind = "rest"`: the id of the caller's own API Gateway API key
    /// (`claude-proxy-<stack>-<name>`), never its value. The handler names a request whose
    /// key API Gateway checked after the caller whose entry holds that key's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_id: Option<String>,
}

/// The SHA-256 of a token as the secret stores it.
pub fn token_sha256(token: &CallerToken) -> String {
    hex::encode(Sha256::digest(token.expose().as_bytes()))
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// Caller names: 1 to 64 of `a-z 0-9 . _ -`, starting with a letter or digit (they are
/// metric dimensions and log fields).
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if !ok {
        bail!(
            "caller name {name:?} is not valid: use 1 to 64 of a-z, 0-9, '.', '_', '-', starting with a letter or digit"
        );
    }
    Ok(())
}

/// A new caller and its token (the only time the token exists outside the caller's hands).
pub fn new_caller(name: &str, limits: CallerLimits, now: &str) -> (CallerEntry, CallerToken) {
    let token = CallerToken::generate();
    let entry = CallerEntry {
        name: name.to_string(),
        token_sha256: token_sha256(&token),
        created_at: now.to_string(),
        rotated_at: None,
        limits,
        api_key_id: None,
    };
    (entry, token)
}

/// The name the `index`-th plaintext token of the old format takes: `default`, `default-2`,
/// ... (the handler names them the same way before they are migrated).
pub fn legacy_name(index: usize) -> String {
    if index == 0 {
        DEFAULT_CALLER.into()
    } else {
        format!("{DEFAULT_CALLER}-{}", index + 1)
    }
}

/// Adds `name`; refused when it exists.
pub fn add(
    callers: &mut Vec<CallerEntry>,
    name: &str,
    limits: CallerLimits,
    now: &str,
) -> Result<CallerToken> {
    validate_name(name)?;
    if callers.iter().any(|c| c.name == name) {
        bail!("a caller named {name} exists already: rotate its token with `cargo xtask callers rotate {name}`");
    }
    let (entry, token) = new_caller(name, limits, now);
    callers.push(entry);
    Ok(token)
}

/// A new token for `name`, same limits; the old token stops working.
pub fn rotate(callers: &mut [CallerEntry], name: &str, now: &str) -> Result<CallerToken> {
    let Some(c) = callers.iter_mut().find(|c| c.name == name) else {
        bail!("{}", unknown(name, callers));
    };
    let token = CallerToken::generate();
    c.token_sha256 = token_sha256(&token);
    c.rotated_at = Some(now.to_string());
    Ok(token)
}

/// Removes `name`.
pub fn revoke(callers: &mut Vec<CallerEntry>, name: &str) -> Result<CallerEntry> {
    match callers.iter().position(|c| c.name == name) {
        Some(i) => Ok(callers.remove(i)),
        None => bail!("{}", unknown(name, callers)),
    }
}

fn unknown(name: &str, callers: &[CallerEntry]) -> String {
    let names: Vec<&str> = callers.iter().map(|c| c.name.as_str()).collect();
    format!(
        "no caller named {name} (callers: {})",
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    )
}

/// Moves plaintext tokens of the old format into `callers`, hashed, named as
/// [`legacy_name`] says (or `<that>-migrated` when a caller has that name). Returns how many.
pub fn hash_plaintext(
    plaintext: &mut Vec<CallerToken>,
    callers: &mut Vec<CallerEntry>,
    now: &str,
) -> usize {
    let n = plaintext.len();
    for (i, token) in plaintext.drain(..).enumerate() {
        let mut name = legacy_name(i);
        while callers.iter().any(|c| c.name == name) {
            name.push_str("-migrated");
        }
        callers.push(CallerEntry {
            name,
            token_sha256: token_sha256(&token),
            created_at: now.to_string(),
            rotated_at: None,
            limits: CallerLimits::default(),
            api_key_id: None,
        });
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_rotate_revoke() {
        let mut c = Vec::new();
        let t1 = add(&mut c, "alice", CallerLimits::default(), "t0").unwrap();
        assert_eq!(c[0].token_sha256, token_sha256(&t1));
        assert_ne!(c[0].token_sha256, t1.expose());
        assert!(add(&mut c, "alice", CallerLimits::default(), "t0").is_err());
        assert!(add(&mut c, "Bad Name", CallerLimits::default(), "t0").is_err());
        let t2 = rotate(&mut c, "alice", "t1").unwrap();
        assert_ne!(t1, t2);
        assert_eq!(c[0].token_sha256, token_sha256(&t2));
        assert_eq!(c[0].rotated_at.as_deref(), Some("t1"));
        assert!(rotate(&mut c, "bob", "t1")
            .unwrap_err()
            .to_string()
            .contains("alice"));
        revoke(&mut c, "alice").unwrap();
        assert!(c.is_empty());
        assert!(revoke(&mut c, "alice").is_err());
    }

    #[test]
    fn plaintext_tokens_migrate_under_their_legacy_names() {
        let a: CallerToken = serde_json::from_str("\"old-a\"").unwrap();
        let b: CallerToken = serde_json::from_str("\"old-b\"").unwrap();
        let mut plain = vec![a.clone(), b.clone()];
        let mut callers = Vec::new();
        assert_eq!(hash_plaintext(&mut plain, &mut callers, "t"), 2);
        assert!(plain.is_empty());
        assert_eq!(callers[0].name, "default");
        assert_eq!(callers[1].name, "default-2");
        assert_eq!(callers[1].token_sha256, token_sha256(&b));
        let mut again = vec![a];
        hash_plaintext(&mut again, &mut callers, "t");
        assert_eq!(callers[2].name, "default-migrated");
    }

    #[test]
    fn limits_must_be_narrower_than_the_stack() {
        let models = vec!["claude-haiku-4-5".to_string()];
        let l = CallerLimits {
            allowed_models: Some(vec!["claude-opus-4-1".into()]),
            max_tokens: None,
            ..Default::default()
        };
        assert!(l.check_within(&models, 4096).is_err());
        assert!(l.check_within(&["*".into()], 4096).is_ok());
        let l = CallerLimits {
            allowed_models: None,
            max_tokens: Some(5000),
            ..Default::default()
        };
        assert!(l.check_within(&models, 4096).is_err());
        assert!(CallerLimits {
            max_tokens: Some(10),
            ..l
        }
        .check_within(&models, 4096)
        .is_ok());
    }
}
