//! The Lambda entry point: JSON logs, the app built once at cold start, the runtime loop.

use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
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
        "cold start complete"
    );
    handler::lambda::run(app).await
}
