//! `cargo xtask dev`: the handler's routes on localhost, with the real Messages API when
//! `ANTHROPIC_API_KEY` is set, or the built-in fake upstream (`--mock`, or no key).

use crate::flags::{self, Common, OutputFormat};
use crate::prompt::api_key_from_env;
use crate::upstream::{curl_line, Upstream};
use anyhow::{Context, Result};
use infra::secret::CallerToken;
use serde::Serialize;
use std::process::ExitCode;

impl flags::Dev {
    pub async fn run(self, common: &Common) -> Result<ExitCode> {
        let upstream = match api_key_from_env() {
            Some(key) if !self.mock => Upstream::real(&key),
            other => {
                if other.is_none() && !self.mock {
                    eprintln!("ANTHROPIC_API_KEY is not set: using the built-in fake Messages API (as with --mock)");
                }
                Upstream::fake().await?
            }
        };
        let token = match self.caller_token {
            Some(t) if !t.trim().is_empty() => t.trim().to_string(),
            Some(_) => anyhow::bail!(
                "--caller-token is empty: give a token or leave the flag out to generate one"
            ),
            None => CallerToken::generate().expose().to_string(),
        };

        // The handler's local mode (ARCHITECTURE.md): ANTHROPIC_API_KEY and CALLER_TOKEN
        // instead of a secret. Other settings (ALLOWED_MODELS, MAX_TOKENS_CAP, ...) come from
        // the environment as on Lambda.
        let config = handler::Config::from_lookup(|name| match name {
            "ANTHROPIC_API_KEY" => Some(upstream.key.clone()),
            "CALLER_TOKEN" => Some(token.clone()),
            "ANTHROPIC_BASE_URL" => upstream.base_url.clone(),
            "SECRET_ARN" => None,
            other => std::env::var(other).ok(),
        })
        .context("configuring the handler (see the README for its environment variables)")?;
        let app = handler::App::new(config)
            .await
            .context("starting the handler")?;

        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .with_context(|| {
                format!(
                    "listening on 127.0.0.1:{} (is something else using it? pass --port)",
                    self.port
                )
            })?;
        let addr = listener.local_addr()?;
        let info = DevInfo {
            url: format!("http://{addr}"),
            caller_token: token.clone(),
            upstream: upstream.shown.clone(),
        };
        match common.output {
            OutputFormat::Text => {
                println!(
                    "Serving the handler on {} (upstream: {})",
                    info.url, info.upstream
                );
                println!("URL: {}", info.url);
                println!("Caller token: {}", info.caller_token);
                println!("Try:");
                println!("  {}", curl_line(&info.url, Some(&info.caller_token)));
                println!("Press Ctrl-C to stop.");
            }
            OutputFormat::Json => println!("{}", serde_json::to_string(&info)?),
        }

        tokio::select! {
            res = handler::local::serve(listener, app) => {
                res.context("the local server stopped")?;
            }
            _ = tokio::signal::ctrl_c() => eprintln!("stopping"),
        }
        drop(upstream);
        Ok(ExitCode::SUCCESS)
    }
}

#[derive(Serialize)]
struct DevInfo {
    url: String,
    caller_token: String,
    upstream: String,
}
