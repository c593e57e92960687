//! The handler's routes (`handler::local::serve`) alone in one process: configuration from
//! the environment exactly as on Lambda (`ANTHROPIC_API_KEY` + `CALLER_TOKEN` for a local
//! secret, `ANTHROPIC_BASE_URL`, ...), listening on `127.0.0.1:$PORT` (default: a free port).
//! Prints the address it listens on as its first stdout line, then serves until stdin closes.
//!
//! It exists so a test can measure the serving process alone (its peak RSS in
//! `/proc/<pid>/status`), without a test harness or the CLI in the same address space:
//!
//! ```text
//! ANTHROPIC_API_KEY=... CALLER_TOKEN=... ANTHROPIC_BASE_URL=http://127.0.0.1:9999 \
//!   cargo run -p claude-lambda-handler --example serve
//! ```

use std::io::Read;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();

    let app = match handler::App::from_env().await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("configuration error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let port: u16 = match std::env::var("PORT").ok().filter(|p| !p.is_empty()) {
        None => 0,
        Some(p) => match p.parse() {
            Ok(p) => p,
            Err(_) => {
                eprintln!("PORT={p} is not a port number");
                return ExitCode::FAILURE;
            }
        },
    };
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("listening on 127.0.0.1:{port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(addr) => println!("{addr}"),
        Err(e) => {
            eprintln!("reading the listening address: {e}");
            return ExitCode::FAILURE;
        }
    }
    let server = tokio::spawn(handler::local::serve(listener, app));
    // Serve until stdin closes (the parent exits or drops the pipe).
    let _ = tokio::task::spawn_blocking(|| std::io::stdin().read_to_end(&mut Vec::new())).await;
    server.abort();
    ExitCode::SUCCESS
}
