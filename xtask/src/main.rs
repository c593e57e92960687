//! `cargo xtask`: parses the flags and hands over to the command's module. Nothing else.
//!
//! Command modules (one per command; `local` is `deploy --local`) import the shared modules
//! below them, never each other.

// Commands.
mod bench;
mod build;
mod callers;
mod deploy;
mod dev;
mod invoke;
mod local;
mod logs;
mod package;
mod plan;
mod releases;
mod rollback;
mod teardown;
mod test;
mod usage;

// Shared by the commands.
mod bootstrap;
mod caller_admin;
mod cmd;
mod code;
mod flags;
mod lock;
mod logging;
mod output;
mod paths;
mod planning;
mod progress;
mod prompt;
mod smoke;
mod stack;
mod upstream;

use clap::Parser;
use flags::Command;
use std::process::ExitCode;

fn main() -> ExitCode {
    let flags = flags::Xtask::parse();
    let progress = progress::Progress::new();
    logging::init(flags.common.verbose, &progress);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let common = flags.common;
    let result = runtime.block_on(async {
        match flags.command {
            Command::Build(cmd) => cmd.run(&common, &progress).await,
            Command::Package(cmd) => cmd.run(&common, &progress).await,
            Command::Plan(cmd) => cmd.run(&common, &progress).await,
            Command::Deploy(cmd) => cmd.run(&common, &progress).await,
            Command::Releases(cmd) => cmd.run(&common).await,
            Command::Rollback(cmd) => cmd.run(&common, &progress).await,
            Command::Invoke(cmd) => cmd.run(&common).await,
            Command::Logs(cmd) => cmd.run(&common).await,
            Command::Callers(cmd) => cmd.run(&common, &progress).await,
            Command::Usage(cmd) => cmd.run(&common).await,
            Command::Dev(cmd) => cmd.run(&common).await,
            Command::Teardown(cmd) => cmd.run(&common, &progress).await,
            Command::Test(cmd) => cmd.run().await,
            Command::Bench(cmd) => cmd.run(&common, &progress).await,
        }
    });
    progress.finish();
    result.unwrap_or_else(|err| {
        eprintln!("error: {err}");
        for cause in err.chain().skip(1) {
            eprintln!("  caused by: {cause}");
        }
        lock::failure_code(&err)
    })
}
