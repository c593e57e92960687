//! A local Lambda: runs a real `bootstrap` against an emulated Lambda Runtime API and serves it
//! behind an emulated Function URL (and, optionally, an API Gateway HTTP API).
//!
//! * Runtime API: every instance gets its own `AWS_LAMBDA_RUNTIME_API=127.0.0.1:<port>` and the
//!   standard Lambda environment; `/invocation/next` long-polls, `/response` takes buffered and
//!   streamed (`Lambda-Runtime-Function-Response-Mode: streaming`) answers, `/error` and
//!   `/init/error` report failures.
//! * Function URL front: any method and path becomes a payload-2.0 Function URL event. In
//!   [`InvokeMode::ResponseStream`] the `application/vnd.awslambda.http-integration-response`
//!   prelude is parsed and body chunks are forwarded as they arrive.
//! * API Gateway front: payload-2.0 HTTP API events with route keys, always buffered, gives up
//!   after [`GatewayOptions::timeout`] (30 s, as API Gateway does) with `503`.
//! * Instances are spawned on demand up to [`LocalLambdaOptions::max_instances`]; a timed-out
//!   or crashed instance is killed and replaced by a fresh one (a new cold start) when needed.

mod front;
mod ids;
mod pool;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

pub use pool::ColdStart;

/// The Function URL's invoke mode (`InvokeMode` of `CreateFunctionUrlConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InvokeMode {
    /// `BUFFERED` (the AWS default): the whole response is collected, then sent.
    #[default]
    Buffered,
    /// `RESPONSE_STREAM`: the response is sent as the function writes it.
    ResponseStream,
}

/// Where a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogSource {
    /// The instance's standard output.
    Stdout,
    /// The instance's standard error.
    Stderr,
    /// A line the emulator writes as Lambda's platform does (`START`, `END`, `REPORT`,
    /// `Task timed out ...`).
    Platform,
}

/// One line of an instance's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// The instance (1, 2, ... in spawn order).
    pub instance: usize,
    pub source: LogSource,
    /// The line without its trailing newline.
    pub line: String,
}

/// What happens to the instances' stdout/stderr and the platform log lines.
#[derive(Clone, Default)]
pub enum LogSink {
    /// Instances write to this process's stdout/stderr; platform lines go to stderr.
    #[default]
    Inherit,
    /// Everything is dropped.
    Discard,
    /// Every line is handed to the callback (called from a tokio task; keep it quick).
    Capture(Arc<dyn Fn(LogLine) + Send + Sync>),
}

impl LogSink {
    /// A sink that sends every line into a channel.
    pub fn channel() -> (Self, tokio::sync::mpsc::UnboundedReceiver<LogLine>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (
            LogSink::Capture(Arc::new(move |line| {
                let _ = tx.send(line);
            })),
            rx,
        )
    }
}

impl fmt::Debug for LogSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogSink::Inherit => f.write_str("Inherit"),
            LogSink::Discard => f.write_str("Discard"),
            LogSink::Capture(_) => f.write_str("Capture(..)"),
        }
    }
}

/// The optional API Gateway HTTP API front (`AWS_PROXY` integration, payload format 2.0,
/// `$default` stage).
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// Route keys, e.g. `"POST /chat"`, `"ANY /{proxy+}"`, `"$default"`. A request matching
    /// none gets API Gateway's `404 {"message":"Not Found"}`.
    pub routes: Vec<String>,
    /// Integration timeout: API Gateway gives up after 30 s with `503`.
    pub timeout: Duration,
    /// Where the gateway front listens (port 0: a free port).
    pub listen: SocketAddr,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        GatewayOptions {
            routes: vec!["$default".to_string()],
            timeout: Duration::from_secs(30),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

/// How to run the function.
#[derive(Debug, Clone)]
pub struct LocalLambdaOptions {
    /// The executable to run as the custom runtime (Lambda's `bootstrap`).
    pub bootstrap: PathBuf,
    /// Extra environment for every instance (the function's configured variables). Set after
    /// the standard Lambda variables, so it can override them. The emulator's own environment
    /// is not inherited, as on Lambda.
    pub env: Vec<(String, String)>,
    /// `AWS_LAMBDA_FUNCTION_NAME`; also the log group `/aws/lambda/<name>`.
    pub function_name: String,
    /// `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`.
    pub memory_mb: u32,
    /// The function timeout (Lambda's default is 3 s).
    pub timeout: Duration,
    /// The Function URL's invoke mode.
    pub invoke_mode: InvokeMode,
    /// How many instances may run at once (at least 1). A request arriving when all are busy
    /// spawns another one up to this limit, then waits (or is throttled, see
    /// `throttle_when_busy`).
    pub max_instances: usize,
    /// Answer `429` instead of waiting when `max_instances` are busy (as reserved concurrency
    /// does on Lambda).
    pub throttle_when_busy: bool,
    /// Where the Function URL front listens (port 0: a free port). Loopback only.
    pub listen: SocketAddr,
    /// Also serve an API Gateway HTTP API front.
    pub gateway: Option<GatewayOptions>,
    /// `AWS_REGION` / `AWS_DEFAULT_REGION`; also used in ARNs and domain names.
    pub region: String,
    /// The account id in ARNs and `requestContext.accountId`.
    pub account_id: String,
    /// `_HANDLER`.
    pub handler: String,
    /// Instance output and platform log lines.
    pub logs: LogSink,
}

impl LocalLambdaOptions {
    /// Defaults as Lambda has them: 128 MB, 3 s, `BUFFERED`, one instance, `us-east-1`.
    pub fn new(bootstrap: impl Into<PathBuf>) -> Self {
        LocalLambdaOptions {
            bootstrap: bootstrap.into(),
            env: Vec::new(),
            function_name: "local-function".to_string(),
            memory_mb: 128,
            timeout: Duration::from_secs(3),
            invoke_mode: InvokeMode::Buffered,
            max_instances: 1,
            throttle_when_busy: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            gateway: None,
            region: "us-east-1".to_string(),
            account_id: "123456789012".to_string(),
            handler: "bootstrap".to_string(),
            logs: LogSink::Inherit,
        }
    }
}

/// An error the function reported (or Lambda reported for it: timeout, crash, init failure),
/// as the `Invoke` API returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionError {
    /// `errorType`, e.g. `Sandbox.Timedout`, `Runtime.ExitError`, or the function's own.
    pub error_type: String,
    /// `errorMessage`.
    pub error_message: String,
}

impl fmt::Display for FunctionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error_type, self.error_message)
    }
}

impl std::error::Error for FunctionError {}

/// A running local Lambda. Stops its servers and kills its instances when dropped.
pub struct LocalLambda {
    pool: Arc<pool::Pool>,
    url_addr: SocketAddr,
    gateway_addr: Option<SocketAddr>,
    servers: Vec<JoinHandle<()>>,
}

impl LocalLambda {
    /// Binds the fronts and returns; instances are spawned on the first request (a cold start),
    /// as on Lambda. Fails when the bootstrap is not an executable file or an address is not
    /// loopback.
    pub async fn start(opts: LocalLambdaOptions) -> Result<LocalLambda> {
        validate(&opts)?;
        let config = Arc::new(pool::Config::new(&opts)?);
        let pool = pool::Pool::new(config.clone());

        let url_listener = tokio::net::TcpListener::bind(opts.listen)
            .await
            .with_context(|| format!("binding the Function URL front to {}", opts.listen))?;
        let url_addr = url_listener.local_addr()?;
        let mut servers = vec![tokio::spawn(front::serve_function_url(
            url_listener,
            front::UrlFront::new(pool.clone(), opts.invoke_mode),
        ))];

        let mut gateway_addr = None;
        if let Some(gw) = &opts.gateway {
            let listener = tokio::net::TcpListener::bind(gw.listen)
                .await
                .with_context(|| format!("binding the API Gateway front to {}", gw.listen))?;
            gateway_addr = Some(listener.local_addr()?);
            servers.push(tokio::spawn(front::serve_gateway(
                listener,
                front::GatewayFront::new(pool.clone(), gw)?,
            )));
        }

        Ok(LocalLambda {
            pool,
            url_addr,
            gateway_addr,
            servers,
        })
    }

    /// The Function URL, `http://127.0.0.1:<port>/` (with the trailing slash, as AWS returns
    /// Function URLs).
    pub fn url(&self) -> String {
        format!("http://{}/", self.url_addr)
    }

    /// The Function URL front's address.
    pub fn url_addr(&self) -> SocketAddr {
        self.url_addr
    }

    /// The API Gateway endpoint, `http://127.0.0.1:<port>` (no trailing slash, as
    /// `ApiEndpoint` is), when the gateway front is enabled.
    pub fn gateway_url(&self) -> Option<String> {
        self.gateway_addr.map(|a| format!("http://{a}"))
    }

    /// The function's ARN as the instances see it (`Lambda-Runtime-Invoked-Function-Arn`).
    pub fn function_arn(&self) -> &str {
        &self.pool.config().function_arn
    }

    /// Every cold start so far, in order: instance spawn → its first `/invocation/next` poll.
    pub fn cold_starts(&self) -> Vec<ColdStart> {
        self.pool.cold_starts()
    }

    /// How many instances are alive now.
    pub fn live_instances(&self) -> usize {
        self.pool.live_instances()
    }

    /// Invokes the function directly with a raw event (as `Invoke` with `RequestResponse`
    /// does), waiting for an instance if all are busy. A streamed response is collected.
    /// The outer error is an emulator problem; the inner one is the function's.
    pub async fn invoke(&self, event: Bytes) -> Result<std::result::Result<Bytes, FunctionError>> {
        self.pool.invoke_collected(ids::uuid_v4(), event).await
    }

    /// Stops the fronts, kills every instance and waits until they have exited.
    pub async fn stop(mut self) {
        for s in self.servers.drain(..) {
            s.abort();
        }
        self.pool.shutdown();
        self.pool.wait_all_exited(Duration::from_secs(10)).await;
    }
}

impl Drop for LocalLambda {
    fn drop(&mut self) {
        for s in &self.servers {
            s.abort();
        }
        self.pool.shutdown();
    }
}

fn validate(opts: &LocalLambdaOptions) -> Result<()> {
    let meta = std::fs::metadata(&opts.bootstrap).with_context(|| {
        format!(
            "the bootstrap {} does not exist; build the function first (e.g. `cargo xtask build`)",
            opts.bootstrap.display()
        )
    })?;
    if !meta.is_file() {
        bail!("the bootstrap {} is not a file", opts.bootstrap.display());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o111 == 0 {
            bail!(
                "the bootstrap {} is not executable (chmod +x it)",
                opts.bootstrap.display()
            );
        }
    }
    if opts.max_instances == 0 {
        bail!("max_instances must be at least 1");
    }
    if opts.timeout.is_zero() {
        bail!("the function timeout must be more than zero");
    }
    if !opts.listen.ip().is_loopback() {
        bail!(
            "the Function URL front may listen on loopback addresses only, not {}",
            opts.listen
        );
    }
    if let Some(gw) = &opts.gateway {
        if !gw.listen.ip().is_loopback() {
            bail!(
                "the API Gateway front may listen on loopback addresses only, not {}",
                gw.listen
            );
        }
        if gw.routes.is_empty() {
            bail!("the API Gateway front needs at least one route key (e.g. \"$default\")");
        }
    }
    Ok(())
}
