//! `cargo xtask test`: the one test command, on a fresh machine too. It installs what the
//! tests use and this machine lacks, then runs the whole workspace test suite
//! (`--setup-only`: only installs). CI runs exactly this (`.ci/run`).
//!
//! In order: the Debian packages (a real OCI registry, skopeo, unzip, the arm64 cross gcc and
//! libc) with apt-get when it may (as root or with passwordless sudo; otherwise it stops and
//! names the command); the Rust arm64 target (rustup); the pinned Python tools in the
//! toolkit's venv (`.ci/requirements.txt`: moto server, cargo-lambda's Runtime API emulator,
//! zig and cargo-zigbuild, the Anthropic SDK, zizmor, policy-sentry). Once it has run, no test
//! lacks a tool.

use crate::cmd::{cargo, cmd};
use crate::flags;
use crate::paths::project_root;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The pinned Python tools.
const REQUIREMENTS: &str = include_str!("../../.ci/requirements.txt");

/// Debian packages the tests drive, by the program that shows they are installed: the
/// container-image tests (a registry, skopeo, unzip) and the static arm64 build (cross gcc).
const DEBIAN: [(&str, &[&str]); 4] = [
    ("docker-registry", &["docker-registry"]),
    ("skopeo", &["skopeo"]),
    ("unzip", &["unzip"]),
    (
        "aarch64-linux-gnu-gcc",
        &["gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross"],
    ),
];

/// The Rust target of arm64 (Graviton) functions, which the build tests compile for.
const ARM64_TARGET: &str = "aarch64-unknown-linux-gnu";

impl flags::Test {
    pub async fn run(self) -> Result<ExitCode> {
        install_debian_packages().await?;
        add_rust_target(ARM64_TARGET).await?;
        let venv = emulators::moto::venv_dir();
        ensure_python_tools(&venv).await?;
        if self.setup_only {
            eprintln!("==> setup done: every tool the tests use is installed");
            return Ok(ExitCode::SUCCESS);
        }
        let mut args = vec!["test".to_string(), "--workspace".to_string()];
        if self.no_fail_fast {
            args.push("--no-fail-fast".to_string());
        }
        if !self.args.is_empty() {
            args.push("--".to_string());
            args.extend(self.args);
        }
        eprintln!("==> cargo {}", args.join(" "));
        cmd(cargo(), &args)
            .dir(&project_root())
            .env("CLAUDE_LAMBDA_VENV", &venv)
            .run_inherit()
            .await
            .context("the test suite failed (the failing tests are listed above)")?;
        Ok(ExitCode::SUCCESS)
    }
}

/// Installs the missing [`DEBIAN`] packages with apt-get, as root or through passwordless
/// sudo; otherwise stops with the command that installs them.
async fn install_debian_packages() -> Result<()> {
    let missing: Vec<&str> = DEBIAN
        .iter()
        .filter(|(program, _)| which(program).is_none())
        .flat_map(|(_, packages)| packages.iter().copied())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let install = format!("apt-get install -y {}", missing.join(" "));
    if which("apt-get").is_none() {
        bail!(
            "the tests need the Debian packages {} and this machine has no apt-get: install \
             their equivalents with its package manager",
            missing.join(", ")
        );
    }
    let root = cmd("id", ["-u"])
        .read()
        .await
        .is_ok_and(|uid| uid.trim() == "0");
    let sudo = !root && cmd("sudo", ["-n", "true"]).read().await.is_ok();
    let access = apt_access(&missing, root, sudo)?;
    let apt = |args: Vec<&str>| {
        let mut line = Vec::new();
        if access == Apt::Sudo {
            line.extend(["sudo", "-n", "DEBIAN_FRONTEND=noninteractive"]);
        }
        line.push("apt-get");
        line.extend(args);
        cmd(line[0], &line[1..]).env("DEBIAN_FRONTEND", "noninteractive")
    };
    eprintln!("==> {install}");
    apt(vec!["update", "-qq"])
        .run()
        .await
        .context("apt-get update")?;
    let mut args = vec!["install", "-y", "-qq"];
    args.extend(&missing);
    apt(args)
        .run()
        .await
        .with_context(|| format!("installing the Debian packages the tests need: {install}"))?;
    Ok(())
}

/// How apt-get may run here.
#[derive(Debug, PartialEq, Eq)]
enum Apt {
    Root,
    Sudo,
}

/// As root, else through passwordless sudo; else an error naming the command to run.
fn apt_access(missing: &[&str], root: bool, passwordless_sudo: bool) -> Result<Apt> {
    match (root, passwordless_sudo) {
        (true, _) => Ok(Apt::Root),
        (false, true) => Ok(Apt::Sudo),
        (false, false) => bail!(
            "the tests need the Debian packages {}: install them with \
             `sudo apt-get update && sudo apt-get install -y {}` (this command installs them \
             itself when run as root or with passwordless sudo), then run it again",
            missing.join(", "),
            missing.join(" ")
        ),
    }
}

/// Adds `target`'s standard library with rustup unless the toolchain has it.
async fn add_rust_target(target: &str) -> Result<()> {
    let root = project_root();
    let installed = artifacts::build::installed_rust_targets(Some(&root));
    if installed.iter().any(|t| t == target) {
        return Ok(());
    }
    eprintln!("==> rustup target add {target}");
    cmd("rustup", ["target", "add", target])
        .dir(&root)
        .run()
        .await
        .with_context(|| {
            format!(
                "installing the Rust standard library for {target}, which the arm64 build \
                 tests compile for: run `rustup target add {target}`"
            )
        })
}

/// Installs the pinned requirements into the venv unless the venv already has exactly them.
async fn ensure_python_tools(venv: &Path) -> Result<()> {
    let stamp = venv.join(".requirements");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(REQUIREMENTS) {
        return Ok(());
    }
    eprintln!(
        "==> installing the pinned Python tools (.ci/requirements.txt) into {}",
        venv.display()
    );
    let python = venv.join("bin").join("python");
    if !python.is_file() {
        cmd("python3", ["-m", "venv"])
            .arg(venv)
            .run()
            .await
            .with_context(|| format!("creating the Python venv {}", venv.display()))?;
    }
    let requirements = std::env::temp_dir().join(format!(
        "claude-lambda-requirements-{}.txt",
        std::process::id()
    ));
    std::fs::write(&requirements, REQUIREMENTS).context("writing the requirements file")?;
    let installed = cmd(&python, ["-m", "pip", "install", "--quiet", "-r"])
        .arg(&requirements)
        .run()
        .await
        .with_context(|| {
            format!(
                "installing the test stand-ins (moto server, cargo-lambda, zig, cargo-zigbuild) into {}",
                venv.display()
            )
        });
    let _ = std::fs::remove_file(&requirements);
    installed?;
    std::fs::write(&stamp, REQUIREMENTS).with_context(|| format!("writing {}", stamp.display()))?;
    Ok(())
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apt_runs_as_root_or_through_sudo_else_the_command_is_named() {
        let missing = ["skopeo", "unzip"];
        assert_eq!(apt_access(&missing, true, false).unwrap(), Apt::Root);
        assert_eq!(apt_access(&missing, false, true).unwrap(), Apt::Sudo);
        let e = apt_access(&missing, false, false).unwrap_err().to_string();
        assert!(e.contains("sudo apt-get install -y skopeo unzip"), "{e}");
    }
}
