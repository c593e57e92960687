//! What the deploying user gives for the stack's secret, and the caller token a deploy
//! makes: value types whose `Debug` and `Display` never show the secret. A leaf.

use base64::Engine;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The Anthropic API key. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> ApiKey {
        ApiKey(key.into().trim().to_string())
    }
    /// The key itself, for writing it into the secret.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for ApiKey {
    fn from(s: String) -> Self {
        ApiKey::new(s)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A caller token (bearer token callers send to the function). `Debug`/`Display` redact.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CallerToken(String);

impl CallerToken {
    /// 32 random bytes, URL-safe base64 without padding, with a recognisable prefix.
    pub fn generate() -> CallerToken {
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes);
        CallerToken(format!(
            "clp_{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        ))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for CallerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CallerToken(<redacted>)")
    }
}

impl fmt::Display for CallerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// An API Gateway API key's value (what a caller sends in `x-api-key` to the REST API).
/// `Debug`/`Display` redact; shown once, when it is made.
#[derive(Clone, PartialEq, Eq)]
pub struct GatewayApiKey(String);

impl GatewayApiKey {
    /// 40 random letters and digits (API Gateway wants at least 20 characters).
    pub fn generate() -> GatewayApiKey {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let mut bytes = [0u8; 40];
        rand::fill(&mut bytes);
        // 248 = 4 * 62: values at or above it are drawn again, so every letter is as likely.
        let mut out = String::with_capacity(40);
        let mut pool = bytes.to_vec();
        while out.len() < 40 {
            let b = match pool.pop() {
                Some(b) => b,
                None => {
                    let mut more = [0u8; 16];
                    rand::fill(&mut more);
                    pool.extend_from_slice(&more);
                    continue;
                }
            };
            if b < 248 {
                out.push(ALPHABET[(b % 62) as usize] as char);
            }
        }
        GatewayApiKey(out)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for GatewayApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GatewayApiKey(<redacted>)")
    }
}

impl fmt::Display for GatewayApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What the deploying user gives for the secret.
#[derive(Debug, Clone, Default)]
pub struct SecretInput {
    /// From `ANTHROPIC_API_KEY` or `--api-key-stdin`. Required on the first deploy.
    pub anthropic_api_key: Option<ApiKey>,
    /// Replace the caller tokens with one new token (`--rotate-token`).
    pub rotate_token: bool,
}
