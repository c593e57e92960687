//! Named callers: the secret's `callers` list, each `{name, token_sha256, created_at,
//! rotated_at, limits}`. The secret holds only the SHA-256 of each token (lowercase hex), so
//! reading it reveals no caller's token. Tokens are compared in constant time against every
//! caller ([`identify`]).
//!
//! A caller's `limits` narrow the stack's policy, checked before anything goes upstream:
//! `allowed_models` (a list; absent = the stack's) and `max_tokens` (a cap below the stack's
//! `MAX_TOKENS_CAP`). A request beyond them is a 400 that names the limit.

use crate::error::ProxyError;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

/// A caller's own limits (both optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Limits {
    #[serde(default)]
    pub allowed_models: Option<Vec<String>>,
    #[serde(default)]
    pub max_tokens: Option<u64>,
}

/// One caller as the handler keeps it: its name, its token's hash and its limits.
#[derive(Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub token_sha256: [u8; 32],
    pub limits: Limits,
    /// The id of the caller's API Gateway API key (a REST API front), never its value.
    pub api_key_id: Option<String>,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("name", &self.name)
            .field("limits", &self.limits)
            .field("api_key_id", &self.api_key_id)
            .finish_non_exhaustive()
    }
}

/// The caller a request was identified as (`anonymous` with `CALLER_AUTH=none`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub limits: Limits,
}

impl Identity {
    pub fn anonymous() -> Identity {
        Identity {
            name: "anonymous".into(),
            limits: Limits::default(),
        }
    }

    /// The caller's own limits on `model` and `max_tokens` (the stack's were checked first).
    pub fn check(&self, model: &str, max_tokens: Option<u64>) -> Result<(), ProxyError> {
        if let Some(models) = &self.limits.allowed_models {
            if !models.iter().any(|m| m == "*" || m == model) {
                return Err(ProxyError::InvalidRequest(format!(
                    "model `{model}` is not allowed for caller `{}` (its limit allowed_models: {})",
                    self.name,
                    if models.is_empty() {
                        "none".to_string()
                    } else {
                        models.join(", ")
                    }
                )));
            }
        }
        if let (Some(n), Some(cap)) = (max_tokens, self.limits.max_tokens) {
            if n > cap {
                return Err(ProxyError::InvalidRequest(format!(
                    "max_tokens {n} is above caller `{}`'s limit of {cap} (its limit max_tokens)",
                    self.name
                )));
            }
        }
        Ok(())
    }
}

/// The secret's `callers` entry as stored.
#[derive(Deserialize)]
pub(crate) struct RawCaller {
    name: String,
    token_sha256: String,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    api_key_id: Option<String>,
}

impl RawCaller {
    /// The entry, its hash decoded; the error names the caller, never a hash.
    pub(crate) fn into_caller(self) -> Result<Caller, String> {
        let mut token_sha256 = [0u8; 32];
        hex::decode_to_slice(self.token_sha256.trim(), &mut token_sha256).map_err(|_| {
            format!(
                "caller `{}`: token_sha256 must be 64 hexadecimal digits",
                self.name
            )
        })?;
        if self.name.trim().is_empty() {
            return Err("a caller has an empty name".into());
        }
        Ok(Caller {
            name: self.name,
            token_sha256,
            limits: self.limits,
            api_key_id: self.api_key_id.filter(|id| !id.trim().is_empty()),
        })
    }
}

/// The SHA-256 of a token, as the secret stores it (lowercase hex).
pub fn token_sha256_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The name a plaintext token of the old secret format (`caller_tokens`) goes by: the first is
/// `default`, the next `default-2`, ... (the deployer's migration names them the same way).
pub fn legacy_name(index: usize) -> String {
    if index == 0 {
        "default".into()
    } else {
        format!("default-{}", index + 1)
    }
}

/// The caller whose token was presented: `presented` is hashed once and compared with every
/// caller's hash and every plaintext token's hash in constant time (the loop never stops
/// early and picks the match with a constant-time select), so neither which caller matched
/// nor how much of a hash did leaks through timing.
pub fn identify(presented: &str, callers: &[Caller], plaintext: &[String]) -> Option<Identity> {
    let p = Sha256::digest(presented.as_bytes());
    let mut found = subtle::Choice::from(0u8);
    let mut index = 0u32;
    let hashed = callers.iter().map(|c| c.token_sha256);
    let legacy = plaintext.iter().map(|t| {
        let d = Sha256::digest(t.as_bytes());
        let mut a = [0u8; 32];
        a.copy_from_slice(&d);
        a
    });
    for (i, h) in hashed.chain(legacy).enumerate() {
        let eq = p.as_slice().ct_eq(&h);
        index = u32::conditional_select(&index, &(i as u32), eq);
        found |= eq;
    }
    if !bool::from(found) {
        return None;
    }
    let i = index as usize;
    Some(match callers.get(i) {
        Some(c) => Identity {
            name: c.name.clone(),
            limits: c.limits.clone(),
        },
        None => Identity {
            name: legacy_name(i - callers.len()),
            limits: Limits::default(),
        },
    })
}

/// The caller whose entry holds the API key id `key_id` (API Gateway checked the key; an id
/// is no credential, so a plain comparison will do).
pub fn by_api_key(key_id: &str, callers: &[Caller]) -> Option<Identity> {
    callers
        .iter()
        .find(|c| c.api_key_id.as_deref() == Some(key_id))
        .map(|c| Identity {
            name: c.name.clone(),
            limits: c.limits.clone(),
        })
}

/// The name of a request whose checked API key no caller holds (the stack's default key
/// before a `callers` command recorded its id): `api-key-<id>`, the usage plan limits it.
pub fn unnamed_api_key(key_id: &str) -> Identity {
    Identity {
        name: format!("api-key-{}", key_id.chars().take(48).collect::<String>()),
        limits: Limits::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(name: &str, token: &str, limits: Limits) -> Caller {
        RawCaller {
            name: name.into(),
            token_sha256: token_sha256_hex(token),
            limits,
            api_key_id: None,
        }
        .into_caller()
        .unwrap()
    }

    #[test]
    fn an_api_key_id_names_its_caller_with_its_limits() {
        let limits = Limits {
            allowed_models: None,
            max_tokens: Some(64),
        };
        let mut a = caller("alice", "tok-a", limits.clone());
        a.api_key_id = Some("k1a2".into());
        let b = caller("bob", "tok-b", Limits::default());
        let callers = vec![b, a];
        let id = by_api_key("k1a2", &callers).unwrap();
        assert_eq!((id.name.as_str(), &id.limits), ("alice", &limits));
        assert!(by_api_key("k1a", &callers).is_none());
        assert!(by_api_key("", &callers).is_none());
        assert_eq!(unnamed_api_key("zz9").name, "api-key-zz9");
        // An empty id in the secret matches nothing.
        let raw: RawCaller = serde_json::from_str(&format!(
            r#"{{"name": "c", "token_sha256": "{}", "api_key_id": " "}}"#,
            token_sha256_hex("t")
        ))
        .unwrap();
        assert_eq!(raw.into_caller().unwrap().api_key_id, None);
    }

    #[test]
    fn the_matching_caller_is_found_among_hashes_and_plaintext_tokens() {
        let callers = vec![
            caller("alice", "tok-a", Limits::default()),
            caller("bob", "tok-b", Limits::default()),
        ];
        let plain = vec!["old-1".to_string(), "old-2".to_string()];
        assert_eq!(identify("tok-b", &callers, &plain).unwrap().name, "bob");
        assert_eq!(identify("tok-a", &callers, &plain).unwrap().name, "alice");
        assert_eq!(identify("old-1", &callers, &plain).unwrap().name, "default");
        assert_eq!(
            identify("old-2", &callers, &plain).unwrap().name,
            "default-2"
        );
        assert!(identify("tok-", &callers, &plain).is_none());
        assert!(identify("tok-bb", &callers, &plain).is_none());
        assert!(identify("x", &[], &[]).is_none());
        // The hash itself is not a token.
        assert!(identify(&token_sha256_hex("tok-a"), &callers, &plain).is_none());
    }

    #[test]
    fn bad_hashes_are_refused_without_echoing_them() {
        let e = RawCaller {
            name: "alice".into(),
            token_sha256: "abc123".into(),
            limits: Limits::default(),
            api_key_id: None,
        }
        .into_caller()
        .unwrap_err();
        assert!(e.contains("alice") && !e.contains("abc123"), "{e}");
    }

    #[test]
    fn limits_name_themselves() {
        let id = Identity {
            name: "ci".into(),
            limits: Limits {
                allowed_models: Some(vec!["claude-haiku-4-5".into()]),
                max_tokens: Some(256),
            },
        };
        id.check("claude-haiku-4-5", Some(256)).unwrap();
        id.check("claude-haiku-4-5", None).unwrap();
        let e = id.check("claude-opus-4-1", Some(10)).unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(e.to_string().contains("allowed_models"), "{e}");
        assert!(e.to_string().contains("`ci`"), "{e}");
        let e = id.check("claude-haiku-4-5", Some(257)).unwrap_err();
        assert!(e.to_string().contains("limit max_tokens"), "{e}");
        Identity::anonymous()
            .check("anything", Some(1 << 40))
            .unwrap();
    }
}
