//! The one way this crate runs other programs: the command line is echoed at debug level,
//! and a failure names the command and says what exit status it had.

use anyhow::{bail, Context, Result};
use std::ffi::OsStr;
use std::path::Path;
use std::process::Stdio;
use tokio::process::Command;

/// A command to run, with its printable form kept for messages.
pub struct Cmd {
    inner: Command,
    shown: String,
}

/// `cmd("cargo", ["build", "-p", "x"])`.
pub fn cmd<I, S>(program: impl AsRef<OsStr>, args: I) -> Cmd
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let program = program.as_ref();
    let mut inner = Command::new(program);
    let mut shown = program.to_string_lossy().into_owned();
    for arg in args {
        inner.arg(arg.as_ref());
        shown.push(' ');
        shown.push_str(&arg.as_ref().to_string_lossy());
    }
    inner.stdin(Stdio::null()).kill_on_drop(true);
    Cmd { inner, shown }
}

/// The `cargo` that runs us (cargo sets `$CARGO`), else the one on `PATH`.
pub fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

impl Cmd {
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.shown.push(' ');
        self.shown.push_str(&arg.as_ref().to_string_lossy());
        self.inner.arg(arg);
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.inner.env(key, value);
        self
    }

    pub fn dir(mut self, dir: &Path) -> Self {
        self.inner.current_dir(dir);
        self
    }

    /// Runs with stdout sent to our stderr (so `--output json` stays clean) and stderr inherited.
    pub async fn run(self) -> Result<()> {
        self.run_with_stdout(Stdio::from(std::io::stderr())).await
    }

    /// Runs with stdout and stderr inherited (for commands whose output is the point, like tests).
    pub async fn run_inherit(self) -> Result<()> {
        self.run_with_stdout(Stdio::inherit()).await
    }

    async fn run_with_stdout(mut self, stdout: Stdio) -> Result<()> {
        tracing::debug!(command = %self.shown, "running");
        let status = self
            .inner
            .stdout(stdout)
            .stderr(Stdio::inherit())
            .status()
            .await
            .with_context(|| {
                format!(
                    "could not start `{}` (is it installed and on PATH?)",
                    self.shown
                )
            })?;
        if !status.success() {
            bail!("`{}` failed ({status})", self.shown);
        }
        Ok(())
    }

    /// Runs and returns stdout; stderr is included in the error when it fails.
    pub async fn read(mut self) -> Result<String> {
        tracing::debug!(command = %self.shown, "running");
        let out = self
            .inner
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .await
            .with_context(|| {
                format!(
                    "could not start `{}` (is it installed and on PATH?)",
                    self.shown
                )
            })?;
        if !out.status.success() {
            bail!(
                "`{}` failed ({}): {}",
                self.shown,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        String::from_utf8(out.stdout)
            .with_context(|| format!("`{}` printed non-UTF-8 output", self.shown))
    }
}
