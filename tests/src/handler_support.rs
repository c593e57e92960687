//! Support for the handler tests: the real `bootstrap` binary under cargo-lambda's Runtime
//! API emulator, the app served in-process over HTTP, secrets in moto, and an SSE reader.

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use futures_util::StreamExt;
use handler::sse::{SseEvent, SseSplitter};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The Anthropic key every test uses: distinctive, so a leak into logs is easy to spot.
pub const TEST_ANTHROPIC_KEY: &str = "sk-ant-test-DO-NOT-LOG-7f3a9c1e";
/// A caller token.
pub const TEST_CALLER_TOKEN: &str = "caller-token-DO-NOT-LOG-42b8";

// ---------------------------------------------------------------------------------------
// The bootstrap binary

static BUILD: tokio::sync::OnceCell<PathBuf> = tokio::sync::OnceCell::const_new();

/// The `bootstrap` binary: `$BOOTSTRAP_BIN` if set, else built now with the cargo running the
/// tests, into the same target directory and profile as this test binary.
pub async fn bootstrap_bin() -> Result<PathBuf> {
    BUILD
        .get_or_try_init(|| async {
            if let Ok(bin) = std::env::var("BOOTSTRAP_BIN") {
                let bin = PathBuf::from(bin);
                if !bin.is_file() {
                    bail!("BOOTSTRAP_BIN={} does not exist", bin.display());
                }
                return Ok(bin);
            }
            build_workspace_bin("claude-lambda-handler", BinKind::Bin, "bootstrap").await
        })
        .await
        .cloned()
}

static SERVE: tokio::sync::OnceCell<PathBuf> = tokio::sync::OnceCell::const_new();

/// The handler's `serve` example (`handler/examples/serve.rs`: `handler::local::serve` alone
/// in one process), built now like [`bootstrap_bin`].
pub async fn serve_example_bin() -> Result<PathBuf> {
    SERVE
        .get_or_try_init(|| build_workspace_bin("claude-lambda-handler", BinKind::Example, "serve"))
        .await
        .cloned()
}

static XTASK: tokio::sync::OnceCell<PathBuf> = tokio::sync::OnceCell::const_new();

/// The real `cargo xtask` binary, built now like [`bootstrap_bin`].
pub async fn xtask_bin() -> Result<PathBuf> {
    XTASK
        .get_or_try_init(|| build_workspace_bin("xtask", BinKind::Bin, "xtask"))
        .await
        .cloned()
}

/// A binary target or an example.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinKind {
    Bin,
    Example,
}

/// Builds `name` of workspace package `package` with the cargo running the tests, into the
/// same target directory and profile as this test binary; returns its path.
pub async fn build_workspace_bin(package: &str, kind: BinKind, name: &str) -> Result<PathBuf> {
    // This test runs as <target>/<profile>/deps/<name>-<hash>.
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("locating the target directory from the test binary")?
        .to_path_buf();
    let target_dir = profile_dir
        .parent()
        .context("locating the target directory")?
        .to_path_buf();
    let profile = profile_dir
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(&cargo);
    let kind_flag = match kind {
        BinKind::Bin => "--bin",
        BinKind::Example => "--example",
    };
    cmd.args(["build", "--quiet", "-p", package, kind_flag, name])
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile == "release" {
        cmd.arg("--release");
    }
    let status = cmd
        .status()
        .await
        .with_context(|| format!("running {cargo} build -p {package} {kind_flag} {name}"))?;
    if !status.success() {
        bail!("building {kind_flag} {name} of {package} failed: {status}");
    }
    let bin = match kind {
        BinKind::Bin => profile_dir.join(name),
        BinKind::Example => profile_dir.join("examples").join(name),
    };
    if !bin.is_file() {
        bail!("{} was not built", bin.display());
    }
    Ok(bin)
}

/// cargo-lambda (its Runtime API emulator), from the toolkit's venv or `PATH`.
pub fn cargo_lambda_bin() -> Result<PathBuf> {
    if let Ok(bin) = std::env::var("CARGO_LAMBDA_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let in_venv = emulators::moto::venv_dir().join("bin").join("cargo-lambda");
    if in_venv.is_file() {
        return Ok(in_venv);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("cargo-lambda").is_file() {
                return Ok(dir.join("cargo-lambda"));
            }
        }
    }
    bail!(
        "cargo-lambda not found. Install it with `cargo xtask test --setup-only` or `{v}/bin/pip install cargo-lambda==1.9.2` \
         (venv: python3 -m venv {v})",
        v = emulators::moto::venv_dir().display()
    )
}

/// Collected output lines of a child process.
#[derive(Clone, Default)]
pub struct Output(Arc<Mutex<String>>);

impl Output {
    pub fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }

    /// Appends every line `reader` produces (in a spawned task).
    pub fn capture(&self, reader: impl tokio::io::AsyncRead + Unpin + Send + 'static) {
        let buf = self.0.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(reader).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut b = buf.lock().unwrap();
                b.push_str(&line);
                b.push('\n');
            }
        });
    }
}

/// The function name used under the emulator (the stub project's binary).
pub const FUNCTION_NAME: &str = "claude-proxy-test";

/// cargo-lambda's Runtime API emulator with the real `bootstrap` polling it.
pub struct LambdaUnderEmulator {
    port: u16,
    emulator: Child,
    function: Child,
    /// The function's stdout and stderr (its JSON logs).
    pub logs: Output,
    pub emulator_logs: Output,
    _dir: tempfile::TempDir,
}

impl LambdaUnderEmulator {
    /// Starts the emulator on a free loopback port and `bootstrap` with exactly `env`
    /// (plus the Lambda runtime variables); nothing else from the test's environment.
    pub async fn start(env: &[(&str, String)]) -> Result<Self> {
        let bootstrap = bootstrap_bin().await?;
        let cargo_lambda = cargo_lambda_bin()?;

        // cargo-lambda reads `cargo metadata` of the project in its working directory to know
        // the function names; a stub project whose one binary is the function is enough.
        let dir = tempfile::tempdir()?;
        std::fs::create_dir_all(dir.path().join("src"))?;
        std::fs::write(
            dir.path().join("Cargo.toml"),
            format!(
                "[package]\nname = \"stub\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\n\
                 [[bin]]\nname = \"{FUNCTION_NAME}\"\npath = \"src/main.rs\"\n\n[workspace]\n"
            ),
        )?;
        std::fs::write(dir.path().join("src/main.rs"), "fn main() {}\n")?;

        let port = emulators::moto::free_port()?;
        let emulator_logs = Output::default();
        let mut emulator = Command::new(&cargo_lambda)
            .args([
                "lambda",
                "watch",
                "--only-lambda-apis",
                "-A",
                "127.0.0.1",
                "-P",
            ])
            .arg(port.to_string())
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", cargo_lambda.display()))?;
        emulator_logs.capture(emulator.stdout.take().unwrap());
        emulator_logs.capture(emulator.stderr.take().unwrap());

        // Ready when it accepts connections.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = emulator.try_wait()? {
                bail!(
                    "cargo-lambda exited before it was ready ({status}):\n{}",
                    emulator_logs.text()
                );
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "cargo-lambda did not listen on {port} within 60 s:\n{}",
                    emulator_logs.text()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let logs = Output::default();
        let mut cmd = Command::new(&bootstrap);
        cmd.env_clear()
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{port}/.rt/{FUNCTION_NAME}"),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", FUNCTION_NAME)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("RUST_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut function = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bootstrap.display()))?;
        logs.capture(function.stdout.take().unwrap());
        logs.capture(function.stderr.take().unwrap());

        Ok(LambdaUnderEmulator {
            port,
            emulator,
            function,
            logs,
            emulator_logs,
            _dir: dir,
        })
    }

    /// A Function URL address: `http://127.0.0.1:<port>/lambda-url/<fn><path>`.
    pub fn url(&self, path: &str) -> String {
        format!(
            "http://127.0.0.1:{}/lambda-url/{FUNCTION_NAME}{path}",
            self.port
        )
    }

    /// The Invoke API address (send any event, e.g. an API Gateway payload 2.0).
    pub fn invoke_url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/2015-03-31/functions/{FUNCTION_NAME}/invocations",
            self.port
        )
    }

    /// Fails with the logs if the function process has exited.
    pub fn assert_running(&mut self) -> Result<()> {
        if let Some(status) = self.function.try_wait()? {
            bail!(
                "bootstrap exited ({status}); its output:\n{}",
                self.logs.text()
            );
        }
        if let Some(status) = self.emulator.try_wait()? {
            bail!(
                "cargo-lambda exited ({status}); its output:\n{}",
                self.emulator_logs.text()
            );
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// In-process

/// The app served by `handler::local::serve` on a loopback port.
pub struct LocalServer {
    pub app: Arc<handler::App>,
    addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl LocalServer {
    pub async fn start(app: Arc<handler::App>) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(handler::local::serve(listener, app.clone()));
        Ok(LocalServer { app, addr, task })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A local config against `upstream` with the test key and caller token.
pub fn local_config(upstream: &str) -> handler::Config {
    let mut c = handler::Config::new(handler::SecretConfig::Local {
        anthropic_api_key: TEST_ANTHROPIC_KEY.into(),
        caller_tokens: vec![TEST_CALLER_TOKEN.into()],
    });
    c.anthropic_base_url = upstream.to_string();
    c
}

// ---------------------------------------------------------------------------------------
// Secrets in moto

/// A Secrets Manager client for moto (dummy credentials, us-east-1).
pub async fn secrets_client(endpoint: &str) -> aws_sdk_secretsmanager::Client {
    let sdk = infra::tls::sdk_defaults()
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
            "test", "test", None, None, "static",
        ))
        .load()
        .await;
    aws_sdk_secretsmanager::Client::new(&sdk)
}

/// Creates a secret holding `{"anthropic_api_key", "caller_tokens"}`; returns its ARN.
pub async fn create_secret(
    client: &aws_sdk_secretsmanager::Client,
    name: &str,
    key: &str,
    tokens: &[&str],
) -> Result<String> {
    let out = client
        .create_secret()
        .name(name)
        .secret_string(
            serde_json::json!({"anthropic_api_key": key, "caller_tokens": tokens}).to_string(),
        )
        .send()
        .await
        .with_context(|| format!("creating secret {name} in moto"))?;
    out.arn()
        .map(String::from)
        .context("CreateSecret returned no ARN")
}

/// The environment a function needs to read its secret from moto.
pub fn moto_env(endpoint: &str, arn: &str) -> Vec<(&'static str, String)> {
    vec![
        ("SECRET_ARN", arn.to_string()),
        ("AWS_ENDPOINT_URL", endpoint.to_string()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
    ]
}

// ---------------------------------------------------------------------------------------
// HTTP helpers

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// POSTs JSON with the test caller token as `x-api-key`.
pub async fn post_json(url: &str, body: &serde_json::Value) -> Result<reqwest::Response> {
    client()
        .post(url)
        .header("content-type", "application/json")
        .header("x-api-key", TEST_CALLER_TOKEN)
        .header("anthropic-version", "2023-06-01")
        .body(body.to_string())
        .send()
        .await
        .with_context(|| format!("POST {url}"))
}

/// Status and JSON body.
pub async fn json_of(resp: reqwest::Response) -> Result<(u16, serde_json::Value)> {
    let status = resp.status().as_u16();
    let text = resp.text().await?;
    let v = serde_json::from_str(&text).with_context(|| format!("not JSON ({status}): {text}"))?;
    Ok((status, v))
}

/// Reads SSE events from a response as they arrive.
pub struct SseReader {
    stream: futures_util::stream::BoxStream<'static, reqwest::Result<Bytes>>,
    splitter: SseSplitter,
    pending: std::collections::VecDeque<SseEvent>,
}

impl SseReader {
    pub fn new(resp: reqwest::Response) -> Self {
        SseReader {
            stream: resp.bytes_stream().boxed(),
            splitter: SseSplitter::new(),
            pending: Default::default(),
        }
    }

    /// The next event, or `None` at the end of the stream; fails after `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Result<Option<SseEvent>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Ok(Some(ev));
            }
            let chunk = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .context("timed out waiting for the next SSE event")?;
            match chunk {
                None => return Ok(None),
                Some(chunk) => {
                    self.splitter.push(&chunk?);
                    let (_, events) = self.splitter.take_complete();
                    self.pending.extend(events);
                }
            }
        }
    }

    /// All remaining events.
    pub async fn collect(mut self, timeout: Duration) -> Result<Vec<SseEvent>> {
        let mut out = Vec::new();
        while let Some(ev) = self.next(timeout).await? {
            out.push(ev);
        }
        Ok(out)
    }
}

/// Parses SSE text into events.
pub fn parse_sse(text: &str) -> Vec<SseEvent> {
    let mut s = SseSplitter::new();
    s.push(text.as_bytes());
    s.take_complete().1
}

/// Event names, for assertions.
pub fn names(events: &[SseEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| e.event.clone().unwrap_or_else(|| "message".into()))
        .collect()
}
