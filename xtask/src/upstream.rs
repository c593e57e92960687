//! The Messages API a locally served handler talks to (`dev`, `deploy --local`): the real one
//! when a key is given, else the built-in fake; and the curl line that tries it.

use anyhow::{Context, Result};
use emulators::anthropic::FakeAnthropic;
use infra::secret::{ApiKey, CallerToken};

/// Where the handler's requests go, and the key it sends there.
pub struct Upstream {
    pub key: String,
    /// `ANTHROPIC_BASE_URL` for the handler (`None`: its default, the Anthropic API).
    pub base_url: Option<String>,
    /// How to name it to the user.
    pub shown: String,
    /// The fake, kept running while this is held.
    _fake: Option<FakeAnthropic>,
}

impl Upstream {
    /// The real Messages API: `ANTHROPIC_BASE_URL` when set (else the handler's default).
    pub fn real(key: &ApiKey) -> Upstream {
        let base_url = std::env::var("ANTHROPIC_BASE_URL")
            .ok()
            .filter(|u| !u.is_empty());
        let shown = base_url
            .clone()
            .unwrap_or_else(|| "https://api.anthropic.com".into());
        Upstream {
            key: key.expose().to_string(),
            base_url,
            shown: format!("the Anthropic API at {shown}"),
            _fake: None,
        }
    }

    /// The built-in fake Messages API on a free loopback port, accepting a fresh key.
    pub async fn fake() -> Result<Upstream> {
        let key = CallerToken::generate()
            .expose()
            .replace("clp_", "sk-ant-local-");
        let fake = FakeAnthropic::start(&key)
            .await
            .context("starting the fake Messages API")?;
        let base = fake.base_url();
        Ok(Upstream {
            key,
            base_url: Some(base.clone()),
            shown: format!("the built-in fake Messages API at {base}"),
            _fake: Some(fake),
        })
    }
}

/// A ready-to-paste curl for `/chat`.
pub fn curl_line(base: &str, token: Option<&str>) -> String {
    let auth = token
        .map(|t| format!(" -H 'x-api-key: {t}'"))
        .unwrap_or_default();
    format!(
        "curl -sS -N {}/chat{auth} -H 'content-type: application/json' -d '{{\"message\": \"Hello, Claude\", \"stream\": true}}'",
        base.trim_end_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_curl_line_names_the_route_and_the_token() {
        let line = curl_line("http://127.0.0.1:9000/", Some("clp_x"));
        assert!(line.starts_with("curl -sS -N http://127.0.0.1:9000/chat -H 'x-api-key: clp_x'"));
        assert!(!curl_line("http://h", None).contains("x-api-key"));
    }
}
