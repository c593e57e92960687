//! moto server, the local AWS: found (or installed into a private venv) and started on a
//! free loopback port, stopped when the handle drops.

use anyhow::{bail, Context, Result};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// The moto version this project is tested against.
pub const MOTO_VERSION: &str = "5.2.5";

/// Where the toolkit keeps its Python tools (moto, cargo-lambda): outside any checkout.
pub fn venv_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("CLAUDE_LAMBDA_VENV") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    cache.join("claude-lambda").join("venv")
}

/// The `moto_server` executable: `$MOTO_SERVER_BIN`, the toolkit's venv, then `PATH`.
pub fn find_moto_server() -> Option<PathBuf> {
    if let Ok(bin) = std::env::var("MOTO_SERVER_BIN") {
        return Some(PathBuf::from(bin));
    }
    let in_venv = venv_dir().join("bin").join("moto_server");
    if in_venv.is_file() {
        return Some(in_venv);
    }
    which("moto_server")
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Installs the pinned moto server into the toolkit's venv (used by `deploy --local`).
pub async fn install_moto() -> Result<PathBuf> {
    let venv = venv_dir();
    let python = venv.join("bin").join("python");
    if !python.is_file() {
        run(Command::new("python3").arg("-m").arg("venv").arg(&venv))
            .await
            .with_context(|| {
                format!(
                    "creating a Python venv at {} (needs python3 with the venv module)",
                    venv.display()
                )
            })?;
    }
    run(Command::new(&python)
        .args(["-m", "pip", "install", "--quiet"])
        .arg(format!("moto[server]=={MOTO_VERSION}")))
    .await
    .with_context(|| {
        format!(
            "installing moto[server]=={MOTO_VERSION} into {}",
            venv.display()
        )
    })?;
    Ok(venv.join("bin").join("moto_server"))
}

async fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.stdin(Stdio::null()).status().await?;
    if !status.success() {
        bail!("{status}");
    }
    Ok(())
}

/// A running moto server. Killed on drop.
pub struct MotoServer {
    child: Child,
    port: u16,
}

impl MotoServer {
    /// Starts moto on a free loopback port and waits until it answers.
    /// Fails with the command that installs it when it is missing.
    pub async fn start() -> Result<Self> {
        let bin = find_moto_server().with_context(|| {
            format!(
                "moto server not found. Install it with `bash .ci/run --setup-only` or \
                 `python3 -m venv {v} && {v}/bin/pip install 'moto[server]=={MOTO_VERSION}'`",
                v = venv_dir().display()
            )
        })?;
        Self::start_with(&bin).await
    }

    /// Starts moto, installing it into the toolkit's venv first when it is missing.
    pub async fn start_or_install() -> Result<Self> {
        let bin = match find_moto_server() {
            Some(bin) => bin,
            None => install_moto().await?,
        };
        Self::start_with(&bin).await
    }

    pub async fn start_with(bin: &Path) -> Result<Self> {
        Self::spawn(bin, &[]).await
    }

    /// Like [`MotoServer::start`], with extra environment for moto, e.g.
    /// `[("MOTO_LAMBDA_STUB_ECR", "false")]` so CreateFunction checks that an image exists in
    /// moto's ECR.
    pub async fn start_with_env(env: &[(&str, &str)]) -> Result<Self> {
        let bin = find_moto_server().with_context(|| {
            format!(
                "moto server not found. Install it with `bash .ci/run --setup-only` or \
                 `python3 -m venv {v} && {v}/bin/pip install 'moto[server]=={MOTO_VERSION}'`",
                v = venv_dir().display()
            )
        })?;
        Self::spawn(&bin, env).await
    }

    async fn spawn(bin: &Path, env: &[(&str, &str)]) -> Result<Self> {
        let port = free_port()?;
        let child = Command::new(bin)
            .arg("-H")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(port.to_string())
            .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut server = MotoServer { child, port };
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        // Poll the moto API until it answers; give up if the process dies or after 60 s.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("moto server exited before it was ready: {status}");
            }
            if http_get(self.port, "/moto-api/data.json").await.is_ok() {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "moto server on port {} did not answer within 60 s",
                    self.port
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The endpoint URL to give the AWS SDK (`AWS_ENDPOINT_URL` / `--endpoint-url`).
    pub fn endpoint_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Clears all of moto's state (`POST /moto-api/reset`).
    pub async fn reset(&self) -> Result<()> {
        http_request(self.port, "POST", "/moto-api/reset")
            .await
            .map(|_| ())
    }

    /// Stops the server now (it is also killed on drop).
    pub async fn stop(mut self) -> Result<()> {
        self.child.kill().await.context("stopping moto server")
    }
}

/// A free TCP port on loopback (bound, read, released).
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

async fn http_get(port: u16, path: &str) -> Result<String> {
    http_request(port, "GET", path).await
}

/// A minimal HTTP/1.1 request to moto's own API (no TLS, no client dependency).
async fn http_request(port: u16, method: &str, path: &str) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status_ok = text.starts_with("HTTP/1.1 200") || text.starts_with("HTTP/1.0 200");
    if !status_ok {
        bail!(
            "moto answered {method} {path} with {}",
            text.lines().next().unwrap_or("")
        );
    }
    Ok(text)
}
