//! The Lambda entry point: JSON logs, the app built once at cold start, the runtime loop.

use tracing_subscriber::filter::LevelFilter;

/// The log level: `AWS_LAMBDA_LOG_LEVEL` (the function's logging config), else `RUST_LOG` when it
/// is a plain level, else `info`. (A level, not an `EnvFilter`: its regex engine alone would
/// add about a megabyte to the binary.)
fn log_level() -> LevelFilter {
    ["AWS_LAMBDA_LOG_LEVEL", "RUST_LOG"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .find_map(|v| v.trim().parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO)
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    tracing_subscriber::fmt()
        .json()
        .with_max_level(log_level())
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_ansi(false)
        .init();

    let app = match handler::App::from_env().await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = %e, "configuration error");
            return Err(e.into());
        }
    };
    tracing::info!(
        response_mode = ?app.config.response_mode,
        caller_auth = ?app.config.caller_auth,
        provider = ?app.config.provider,
        fallback = ?app.config.fallback,
        "cold start complete"
    );
    handler::lambda::run(app).await
}
