//! `cargo xtask bench [--quick]`: measures the speed and size claims side by side with their
//! baselines, in one run, and writes `BENCHMARKS.md`.
//!
//! Every figure is measured against a baseline in the same run: the Python SDK's import for
//! the cold start, the fake upstream reached directly for the proxy overhead and the
//! streaming latency, the Python `anthropic` package zipped as a layer for the artifact, and
//! `cargo lambda deploy` on the same moto server for the deploy.

mod critical;
mod measure;
mod report;

use crate::cmd::{cargo, cmd};
use crate::flags::{self, Common};
use crate::progress::Progress;
use anyhow::{bail, Context, Result};
use report::{Report, Section};
use std::path::PathBuf;
use std::process::ExitCode;

/// Iteration counts: `--quick` keeps the harness from rotting; the full run gives the numbers.
#[derive(Debug, Clone, Copy)]
pub struct Counts {
    pub cold_starts: usize,
    pub python_imports: usize,
    pub proxy_requests: usize,
    pub latency_streams: usize,
    pub stream_words: usize,
    pub concurrent_streams: usize,
    pub deploy_rounds: usize,
}

impl Counts {
    fn new(quick: bool) -> Counts {
        if quick {
            Counts {
                cold_starts: 3,
                python_imports: 2,
                proxy_requests: 20,
                latency_streams: 2,
                stream_words: 10,
                concurrent_streams: 10,
                deploy_rounds: 1,
            }
        } else {
            Counts {
                cold_starts: 30,
                python_imports: 10,
                proxy_requests: 2000,
                latency_streams: 50,
                stream_words: 40,
                concurrent_streams: 50,
                deploy_rounds: 3,
            }
        }
    }
}

impl flags::Bench {
    pub async fn run(self, _common: &Common, progress: &Progress) -> Result<ExitCode> {
        let counts = Counts::new(self.quick);
        for o in &self.only {
            if !SECTIONS.iter().any(|(name, _)| name == o) {
                let names: Vec<&str> = SECTIONS.iter().map(|(n, _)| *n).collect();
                bail!(
                    "--only {o}: no such section; the sections are {}",
                    names.join(", ")
                );
            }
        }
        let code = if self.bootstrap.is_some() {
            measure::CliCode::Given
        } else {
            measure::CliCode::BuildCheck
        };
        let bootstrap = match &self.bootstrap {
            Some(p) => {
                if !p.is_file() {
                    bail!(
                        "--bootstrap {}: no such file; build one with `cargo xtask build`, or leave the flag out to build the deployed (dist) bootstrap",
                        p.display()
                    );
                }
                p.canonicalize()
                    .with_context(|| format!("resolving {}", p.display()))?
            }
            None => build_bootstrap(progress).await?,
        };
        let runs = |name: &str| self.only.is_empty() || self.only.iter().any(|o| o == name);
        // The serving process, for the sections that run it.
        let serve = if ["proxy-overhead", "streaming-latency", "memory"]
            .iter()
            .any(|n| runs(n))
        {
            build_serve(self.quick, progress).await?
        } else {
            PathBuf::from("(not run)")
        };
        progress.finish();
        let out = match self.out {
            Some(p) => p,
            None => crate::paths::project_root().join("BENCHMARKS.md"),
        };

        let mut report = Report::new(self.quick, &bootstrap, &serve);
        let handler = measure::HandlerBinary(serve);
        let started = std::time::Instant::now();
        let earlier = std::fs::read_to_string(&out).unwrap_or_default();
        for (name, title) in SECTIONS {
            if !runs(name) {
                if let Some(s) = Section::from_earlier(&earlier, title) {
                    report.push(s);
                }
                continue;
            }
            eprintln!("bench: {title} ({:.1?} so far)", started.elapsed());
            let r = match *name {
                "cold-start" => measure::cold_start(&bootstrap, counts).await,
                "proxy-overhead" => measure::proxy_overhead(&handler, counts).await,
                "streaming-latency" => measure::streaming_latency(&handler, counts).await,
                "memory" => measure::memory(&bootstrap, &handler, counts).await,
                "artifact" => measure::artifact(&bootstrap).await,
                "deploy" => measure::deploy(&bootstrap, code, counts).await,
                _ => measure::deploy_modeled(&bootstrap, code, counts).await,
            };
            report.push(section_or_error(title, r));
        }

        eprintln!("bench: done in {:.1?}", started.elapsed());
        let text = report.render();
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&out, &text).with_context(|| format!("writing {}", out.display()))?;
        println!("{}", out.display());
        let failed = report.failed_sections();
        if !failed.is_empty() {
            bail!(
                "these benchmarks could not run (the reasons are in {}): {}",
                out.display(),
                failed.join(", ")
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// The sections, in the report's order: `--only` name and title.
pub const SECTIONS: &[(&str, &str)] = &[
    ("cold-start", "Cold start"),
    ("proxy-overhead", "Proxy overhead"),
    ("streaming-latency", "Streaming latency"),
    ("memory", "Memory"),
    ("artifact", "Artifact"),
    ("deploy", "Deploy"),
    ("deploy-model", "Deploy under the AWS latency model"),
];

/// A section whose measurement failed still appears, with the error, and fails the command.
fn section_or_error(title: &str, r: Result<Section>) -> Section {
    match r {
        Ok(s) => s,
        Err(e) => {
            let mut s = Section::new(title);
            s.error = Some(format!("{e:#}"));
            s
        }
    }
}

/// The Rust target of this machine, which runs the function in the bench.
fn host_triple() -> Result<&'static str> {
    match std::env::consts::ARCH {
        "x86_64" => Ok("x86_64-unknown-linux-gnu"),
        "aarch64" => Ok("aarch64-unknown-linux-gnu"),
        other => bail!(
            "bench runs the function on this machine, which is {other}: it needs x86_64 or aarch64"
        ),
    }
}

/// The Lambda architecture of this machine (for the stack deployed to moto).
pub(crate) fn host_architecture() -> Result<artifacts::Arch> {
    Ok(match host_triple()? {
        "x86_64-unknown-linux-gnu" => artifacts::Arch::X86_64,
        _ => artifacts::Arch::Arm64,
    })
}

/// The deployed `bootstrap` for this machine, built exactly as `cargo xtask build` builds it
/// (`artifacts::build`, dist profile, zig against the runtime's glibc when zig is present).
async fn build_bootstrap(progress: &Progress) -> Result<PathBuf> {
    let arch = artifacts::Arch::host()
        .context("bench runs the function on this machine: it needs x86_64 or aarch64")?;
    let flags = flags::TargetArgs {
        static_: false,
        runtime: crate::bootstrap::deployed_runtime()?,
    };
    let args = flags::BuildArgs { debug: false };
    Ok(crate::bootstrap::build(arch, &flags, &args, progress)
        .await?
        .path)
}

/// The handler's `serve` example (`handler::local` alone in a process), built with the dist
/// profile like the deployed bootstrap (`--quick`: a debug build, only to exercise the harness).
async fn build_serve(quick: bool, progress: &Progress) -> Result<PathBuf> {
    let profile = if quick { "dev" } else { "dist" };
    progress.step(format!(
        "building the handler's serve example ({profile} profile)"
    ));
    let build = cmd(
        cargo(),
        [
            "build",
            "--profile",
            profile,
            "-p",
            "claude-lambda-handler",
            "--example",
            "serve",
        ],
    )
    .dir(&crate::paths::project_root())
    .run();
    // cargo writes its own progress to the terminal: the spinner steps aside meanwhile.
    progress
        .hidden_while(build)
        .await
        .context("building the handler's serve example (the compiler errors are above)")?;
    let dir = if quick { "debug" } else { "dist" };
    let path = crate::paths::target_dir()
        .await?
        .join(dir)
        .join("examples")
        .join("serve");
    if !path.is_file() {
        bail!(
            "cargo reported success but {} does not exist",
            path.display()
        );
    }
    Ok(path)
}

/// Where the bench keeps what it may reuse between runs (the pip-installed layer).
pub(crate) async fn bench_dir() -> Result<PathBuf> {
    Ok(crate::paths::target_dir().await?.join("bench"))
}
