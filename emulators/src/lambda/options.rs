//! What the local Lambda is started with: its options (as a function's configuration has
//! them), and where its instances' output and platform log lines go.

use anyhow::{bail, Context, Result};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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

/// The optional API Gateway REST API front (`AWS_PROXY` integration, payload format 1.0): the
/// root and `{proxy+}` resources with `ANY` methods under one stage.
#[derive(Debug, Clone)]
pub struct RestApiOptions {
    /// The stage: the invoke URL is `http://127.0.0.1:<port>/<stage>`.
    pub stage: String,
    /// The methods' `apiKeyRequired`: a request without one of `api_keys` in `x-api-key` gets
    /// API Gateway's `403 {"message":"Forbidden"}` and the function is not invoked.
    pub api_key_required: bool,
    /// The API keys of the usage plan.
    pub api_keys: Vec<RestApiKey>,
    /// The integration's `responseTransferMode`: `true` = `STREAM` (the function is invoked
    /// with response streaming and its answer forwarded as it arrives), `false` = `BUFFERED`.
    pub stream: bool,
    /// Integration timeout (29 s by default for `BUFFERED`; up to 15 minutes when streaming);
    /// then `504 {"message":"Endpoint request timed out"}`.
    pub timeout: Duration,
    /// Where the REST API front listens (port 0: a free port).
    pub listen: SocketAddr,
}

/// An API key of the REST API front.
#[derive(Clone)]
pub struct RestApiKey {
    /// `requestContext.identity.apiKeyId`.
    pub id: String,
    /// What callers send in `x-api-key`.
    pub value: String,
    /// The usage plan's quota for this key: requests allowed in the front's lifetime, then
    /// `429 {"message":"Limit Exceeded"}` (`None`: no quota).
    pub quota: Option<u64>,
}

impl std::fmt::Debug for RestApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestApiKey")
            .field("id", &self.id)
            .field("value", &"<redacted>")
            .field("quota", &self.quota)
            .finish()
    }
}

impl Default for RestApiOptions {
    fn default() -> Self {
        RestApiOptions {
            stage: "live".to_string(),
            api_key_required: true,
            api_keys: Vec::new(),
            stream: true,
            timeout: Duration::from_secs(15 * 60),
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
    /// Also serve an API Gateway REST API front.
    pub rest_api: Option<RestApiOptions>,
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
            rest_api: None,
            region: "us-east-1".to_string(),
            account_id: "123456789012".to_string(),
            handler: "bootstrap".to_string(),
            logs: LogSink::Inherit,
        }
    }
}

impl LocalLambdaOptions {
    /// Refuses options the emulator cannot run: a bootstrap that is not an executable file,
    /// no instances, no timeout, an address that is not loopback, a gateway without routes.
    pub(crate) fn validate(&self) -> Result<()> {
        let opts = self;
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
        if let Some(rest) = &opts.rest_api {
            if !rest.listen.ip().is_loopback() {
                bail!(
                    "the REST API front may listen on loopback addresses only, not {}",
                    rest.listen
                );
            }
            let stage_ok = !rest.stage.is_empty()
                && rest
                    .stage
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !stage_ok {
                bail!(
                    "the REST API stage name {:?} may hold only letters, digits, '-' and '_'",
                    rest.stage
                );
            }
            if rest.api_key_required && rest.api_keys.is_empty() {
                bail!("the REST API front requires API keys but has none (add one to api_keys)");
            }
            if rest.timeout.is_zero() || rest.timeout > Duration::from_secs(15 * 60) {
                bail!("the REST API integration timeout must be more than zero and at most 15 minutes");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn executable(dir: &std::path::Path, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(format!("bootstrap-{mode:o}"));
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    fn refusal(o: &LocalLambdaOptions) -> String {
        format!("{:#}", o.validate().unwrap_err())
    }

    #[test]
    fn defaults_are_lambdas() {
        let o = LocalLambdaOptions::new("/x/bootstrap");
        assert_eq!(o.memory_mb, 128);
        assert_eq!(o.timeout, Duration::from_secs(3));
        assert_eq!(o.invoke_mode, InvokeMode::Buffered);
        assert_eq!(o.max_instances, 1);
        assert!(o.listen.ip().is_loopback());
        assert_eq!(GatewayOptions::default().routes, ["$default"]);
        assert_eq!(GatewayOptions::default().timeout, Duration::from_secs(30));
    }

    #[test]
    fn validation_names_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let ok = LocalLambdaOptions::new(executable(dir.path(), 0o755));
        ok.validate().unwrap();

        let missing = LocalLambdaOptions::new(dir.path().join("nope"));
        assert!(refusal(&missing).contains("does not exist"));
        let directory = LocalLambdaOptions::new(dir.path());
        assert!(refusal(&directory).contains("is not a file"));
        let plain = LocalLambdaOptions::new(executable(dir.path(), 0o644));
        assert!(refusal(&plain).contains("not executable"));

        let mut o = ok.clone();
        o.max_instances = 0;
        assert!(refusal(&o).contains("max_instances"));
        let mut o = ok.clone();
        o.timeout = Duration::ZERO;
        assert!(refusal(&o).contains("timeout"));
        let mut o = ok.clone();
        o.listen = SocketAddr::from(([0, 0, 0, 0], 0));
        assert!(refusal(&o).contains("loopback"));
        let mut o = ok.clone();
        o.gateway = Some(GatewayOptions {
            routes: Vec::new(),
            ..GatewayOptions::default()
        });
        assert!(refusal(&o).contains("at least one route"));
        let mut o = ok;
        o.gateway = Some(GatewayOptions {
            listen: SocketAddr::from(([10, 0, 0, 1], 0)),
            ..GatewayOptions::default()
        });
        assert!(refusal(&o).contains("API Gateway front"));
    }

    #[tokio::test]
    async fn a_channel_sink_receives_every_line() {
        let (sink, mut rx) = LogSink::channel();
        let LogSink::Capture(f) = &sink else {
            panic!("a channel sink captures")
        };
        f(LogLine {
            instance: 2,
            source: LogSource::Stderr,
            line: "hello".into(),
        });
        let got = rx.recv().await.unwrap();
        assert_eq!(
            (got.instance, got.source, got.line.as_str()),
            (2, LogSource::Stderr, "hello")
        );
        assert_eq!(format!("{sink:?}"), "Capture(..)");
    }
}
