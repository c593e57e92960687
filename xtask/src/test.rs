//! `cargo xtask test`: makes sure every stand-in the tests use is installed, then runs the
//! whole workspace test suite. The tests never skip for a missing stand-in: they fail, so
//! this command installs what it can (the pinned Python tools into the toolkit's venv) and
//! names the command for what it cannot (Debian packages need root).

use crate::cmd::{cargo, cmd};
use crate::flags;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The pinned Python stand-ins, shared with `.ci/run`.
const REQUIREMENTS: &str = include_str!("../../.ci/requirements.txt");

/// Debian packages the container-image tests drive (program, package).
const DEBIAN_TOOLS: [(&str, &str); 3] = [
    ("docker-registry", "docker-registry"),
    ("skopeo", "skopeo"),
    ("unzip", "unzip"),
];

impl flags::Test {
    pub async fn run(self) -> Result<ExitCode> {
        let venv = emulators::moto::venv_dir();
        ensure_python_tools(&venv).await?;
        let missing: Vec<&str> = DEBIAN_TOOLS
            .iter()
            .filter(|(program, _)| which(program).is_none())
            .map(|(_, package)| *package)
            .collect();
        if !missing.is_empty() {
            bail!(
                "the container-image tests need {}: install with `sudo apt-get install -y {}` \
                 (or run `bash .ci/run --setup-only`)",
                missing.join(", "),
                missing.join(" ")
            );
        }
        let mut args = vec!["test".to_string(), "--workspace".to_string()];
        if self.no_fail_fast {
            args.push("--no-fail-fast".to_string());
        }
        if !self.args.is_empty() {
            args.push("--".to_string());
            args.extend(self.args);
        }
        cmd(cargo(), &args)
            .env("CLAUDE_LAMBDA_VENV", &venv)
            .run_inherit()
            .await
            .context("the test suite failed (the failing tests are listed above)")?;
        Ok(ExitCode::SUCCESS)
    }
}

/// Installs the pinned requirements into the venv unless the venv already has exactly them.
async fn ensure_python_tools(venv: &Path) -> Result<()> {
    let stamp = venv.join(".requirements");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(REQUIREMENTS) {
        return Ok(());
    }
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
                "installing the test stand-ins (moto server, cargo-lambda) into {}",
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
