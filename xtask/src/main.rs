//! `cargo xtask`: parses the flags and hands over to the command's module. Nothing else.

mod bench;
mod build;
mod cmd;
mod deploy;
mod dev;
mod flags;
mod invoke;
mod local;
mod logs;
mod output;
mod package;
mod plan;
mod progress;
mod stack;
mod teardown;
mod test;

use clap::Parser;
use flags::Command;
use std::process::ExitCode;

fn main() -> ExitCode {
    let flags = flags::Xtask::parse();
    init_tracing(flags.common.verbose);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let common = flags.common;
    let progress = progress::Progress::new();
    let result = runtime.block_on(async {
        match flags.command {
            Command::Build(cmd) => cmd.run(&common, &progress).await,
            Command::Package(cmd) => cmd.run(&common, &progress).await,
            Command::Plan(cmd) => cmd.run(&common, &progress).await,
            Command::Deploy(cmd) => cmd.run(&common, &progress).await,
            Command::Invoke(cmd) => cmd.run(&common).await,
            Command::Logs(cmd) => cmd.run(&common).await,
            Command::Dev(cmd) => cmd.run(&common).await,
            Command::Teardown(cmd) => cmd.run(&common, &progress).await,
            Command::Test(cmd) => cmd.run().await,
            Command::Bench(cmd) => cmd.run(&common, &progress).await,
        }
    });
    progress.finish();
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            if teardown::is_locked(&err) {
                ExitCode::from(flags::EXIT_LOCKED)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Logs go to stderr. Default: the toolkit's warnings only; `-v` debug for our crates;
/// `-vv` debug for everything, the AWS SDK's internals included; `RUST_LOG` wins when set.
fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(log_filter(verbose)));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(verbose > 1)
        .init();
}

/// The log filter for `-v` given `verbose` times. Below `-vv` only the toolkit's own crates
/// log: the SDK's internal warnings (e.g. a raw dump of an instance-metadata answer) are
/// not for users, who get the toolkit's own error instead.
fn log_filter(verbose: u8) -> &'static str {
    match verbose {
        0 => "off,xtask=warn,infra=warn,emulators=warn,handler=warn,artifacts=warn",
        1 => "off,xtask=debug,infra=debug,emulators=debug,handler=debug,artifacts=debug",
        _ => "debug,hyper=info,hyper_util=info,h2=info,rustls=info",
    }
}

#[cfg(test)]
mod tests {
    use super::log_filter;

    #[test]
    fn the_sdk_logs_only_at_vv() {
        use tracing_subscriber::EnvFilter;
        for v in [0, 1] {
            let f = log_filter(v);
            assert!(f.starts_with("off,"), "{f}");
            assert!(!f.contains("aws"), "{f}");
            EnvFilter::try_new(f).unwrap();
        }
        assert!(log_filter(0).contains("infra=warn"));
        assert!(log_filter(2).starts_with("debug"));
    }
}
