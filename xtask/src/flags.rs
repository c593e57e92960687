//! Every flag of `cargo xtask`, in one place. The commands live in their own modules as
//! `impl flags::<Command> { async fn run(self, common: &Common) -> anyhow::Result<ExitCode> }`.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

const EXIT_CODES: &str = "\
Exit codes:
  0  success: `deploy` applied changes, `teardown` deleted something, `plan` found no changes
  1  error
  2  `plan` (and `deploy --dry-run`, `teardown --dry-run`): there are changes
  3  nothing to do: `deploy` found the stack up to date, `teardown` found nothing to delete
  4  the stack's deploy lock is held by another run (waited --lock-timeout)";

/// Exit code: `plan` (and `teardown --dry-run`) found changes.
pub const EXIT_CHANGES: u8 = 2;
/// Exit code: nothing to do (deploy: already up to date; teardown: nothing to delete).
pub const EXIT_NOTHING_TO_DO: u8 = 3;
/// Exit code: the stack's deploy lock is held by someone else.
pub const EXIT_LOCKED: u8 = 4;

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Build, deploy and operate the Claude Lambda proxy stack",
    after_help = EXIT_CODES,
    version
)]
pub struct Xtask {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags shared by every command (accepted before or after the command name).
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Stack configuration file (a missing file means all defaults)
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        default_value = "stack.toml",
        help_heading = "Common options"
    )]
    pub config: PathBuf,
    /// Stack name (default: stack.name in stack.toml, else "dev")
    #[arg(
        long,
        global = true,
        env = "CLAUDE_PROXY_STACK",
        help_heading = "Common options"
    )]
    pub stack: Option<String>,
    /// AWS profile from ~/.aws/config
    #[arg(
        long,
        global = true,
        env = "AWS_PROFILE",
        help_heading = "Common options"
    )]
    pub profile: Option<String>,
    /// AWS region
    #[arg(
        long,
        global = true,
        env = "AWS_REGION",
        help_heading = "Common options"
    )]
    pub region: Option<String>,
    /// Send every AWS call to this endpoint (an emulator such as moto)
    #[arg(
        long,
        global = true,
        env = "AWS_ENDPOINT_URL",
        help_heading = "Common options"
    )]
    pub endpoint_url: Option<String>,
    /// Output format
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Text, help_heading = "Common options")]
    pub output: OutputFormat,
    /// Answer yes to confirmations (required when stdin is not a terminal)
    #[arg(long, short = 'y', global = true, help_heading = "Common options")]
    pub yes: bool,
    /// More logging on stderr (-v: debug for the toolkit, -vv: debug for everything, the AWS SDK too)
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = "Common options")]
    pub verbose: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compile the handler's `bootstrap` for Lambda (cross and static builds; checks its glibc and architecture)
    Build(Build),
    /// Build and zip `bootstrap` deterministically (prints path, size, CodeSha256)
    Package(Package),
    /// Show what `deploy` would change, changing nothing (exit 2 when there are changes)
    #[command(after_help = "Exit codes: 0 no changes, 2 changes to apply, 1 error.")]
    Plan(Plan),
    /// Create or update the stack in AWS (or on a local emulator with --local)
    #[command(
        after_help = "The Anthropic API key comes from ANTHROPIC_API_KEY or --api-key-stdin, never from an argument.\n\
        It is needed when the stack's secret is created; later deploys keep the stored key unless one is given.\n\n\
        Exit codes: 0 changes applied, 3 nothing to do (already up to date), 4 the stack's deploy lock\n\
        is held by another run, 1 error; with --dry-run: 0 nothing would change, 2 something would."
    )]
    Deploy(Deploy),
    /// List the function's published versions (code hash, config hash, when, commit) and
    /// where the alias `live` points
    Releases(Releases),
    /// Put the alias `live` back on the previous version (or --to N), in one call
    #[command(
        after_help = "Exit codes: 0 moved, 3 live is already there, 4 the stack's deploy lock is held, 1 error."
    )]
    Rollback(Rollback),
    /// Send a real request to the deployed endpoint and stream the answer (smoke test)
    #[command(
        after_help = "The caller token comes from CLAUDE_PROXY_TOKEN; without it, invoke makes a short-lived caller \
        (smoke-<random>, limited to the request's model and max_tokens) under the stack's lock, uses its token, \
        and revokes it afterwards (needs secretsmanager:GetSecretValue and PutSecretValue on the stack's secret).\n\
        Exit 1 when the endpoint answers with an error status; the error body is printed."
    )]
    Invoke(Invoke),
    /// Show the function's logs from CloudWatch Logs (--follow to tail)
    Logs(Logs),
    /// Tokens and estimated cost per caller and model, from the function's logs
    #[command(
        after_help = "Reads the function's per-request metric lines (CloudWatch Embedded Metric Format) from its log group\n\
        with logs:FilterLogEvents. Prices: the built-in table (its date and source are printed), overridden by [prices] in stack.toml."
    )]
    Usage(Usage),
    /// Manage the stack's named callers: add, list, revoke, rotate (tokens are shown once)
    #[command(
        after_help = "The secret keeps only a SHA-256 of each token; a token is shown once, by `add` and `rotate`.\n\
        The function picks up changes within its secret cache TTL (SECRET_TTL_SECONDS, default 300 s), without a redeploy.\n\
        Exit 4 when another deploy, teardown or callers command holds the stack's lock."
    )]
    Callers(Callers),
    /// Serve the handler's routes on localhost (real API or a built-in fake upstream)
    Dev(Dev),
    /// Delete every resource of the stack (or, with --older-than, of every old stack)
    #[command(
        after_help = "Exit codes: 0 deleted, 3 nothing to delete, 4 a deploy lock is held by another run, 1 error;\n\
        with --dry-run: 0 nothing would be deleted, 2 something would be.\n\
        --older-than finds stacks by their tags (managed-by=claude-lambda-toolkit, stack, created-at):\n\
        functions, IAM roles, secrets, deploy locks, log groups and HTTP APIs."
    )]
    Teardown(Teardown),
    /// Install what the tests use and this machine lacks (Debian packages as root or with
    /// passwordless sudo, the arm64 Rust target, the pinned Python tools: moto, cargo-lambda,
    /// zig, cargo-zigbuild, ...), then run the whole test suite
    Test(Test),
    /// Measure cold start, proxy overhead, streaming latency, memory, artifact size and deploy
    /// time against their baselines; writes BENCHMARKS.md
    Bench(Bench),
}

/// `--arch` and `--runtime` parse with the `artifacts` crate's own names and aliases
/// (`FromStr`): `x86_64`/`amd64`, `arm64`/`aarch64`; `provided.al2023`, `provided.al2`.
pub use artifacts::{Arch, Runtime};

#[derive(Debug, Clone, Args)]
pub struct BuildArgs {
    /// Build without optimisations (faster to compile; default is the size-optimised `dist`
    /// profile: release with opt-level "s", fat LTO, one codegen unit)
    #[arg(long)]
    pub debug: bool,
}

/// What `build` and `package` build for, besides the architecture.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// Link glibc statically: no glibc needed at run time (for images `FROM scratch`)
    #[arg(long = "static")]
    pub static_: bool,
    /// The Lambda runtime the binary must run on (its glibc: 2.34 on provided.al2023,
    /// 2.26 on provided.al2)
    #[arg(
        long,
        value_name = "provided.al2023|provided.al2",
        default_value = "provided.al2023"
    )]
    pub runtime: Runtime,
}

#[derive(Debug, Args)]
pub struct Build {
    /// CPU architecture of the function (default: function.architecture in stack.toml)
    #[arg(long, value_name = "x86_64|arm64")]
    pub arch: Option<Arch>,
    #[command(flatten)]
    pub build: BuildArgs,
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Where the function's code comes from, for the commands that need it.
#[derive(Debug, Clone, Args)]
pub struct CodeArgs {
    #[command(flatten)]
    pub build: BuildArgs,
    /// Package this prebuilt `bootstrap` executable instead of building
    #[arg(long, value_name = "PATH", conflicts_with_all = ["zip", "skip_build"])]
    pub bootstrap: Option<PathBuf>,
    /// Use this already packaged zip (must contain `bootstrap`) instead of building
    #[arg(long, value_name = "PATH", conflicts_with = "skip_build")]
    pub zip: Option<PathBuf>,
    /// Do not build: use the zip from the last `cargo xtask package`
    #[arg(long)]
    pub skip_build: bool,
}

#[derive(Debug, Args)]
pub struct Package {
    /// CPU architecture of the function (default: function.architecture in stack.toml)
    #[arg(long, value_name = "x86_64|arm64")]
    pub arch: Option<Arch>,
    #[command(flatten)]
    pub build: BuildArgs,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Package this prebuilt `bootstrap` executable instead of building (its ELF is still
    /// checked against --arch and --runtime)
    #[arg(long, value_name = "PATH")]
    pub bootstrap: Option<PathBuf>,
    /// Write the zip here (default: <target>/lambda/<arch>/bootstrap.zip)
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
}

/// Settings that override stack.toml.
#[derive(Debug, Clone, Args)]
pub struct StackArgs {
    /// Function memory in MB
    #[arg(long, value_name = "MB", help_heading = "Stack settings")]
    pub memory: Option<u32>,
    /// Function timeout in seconds
    #[arg(long, value_name = "SECONDS", help_heading = "Stack settings")]
    pub timeout: Option<u32>,
    /// Function CPU architecture
    #[arg(long, value_name = "x86_64|arm64", help_heading = "Stack settings")]
    pub arch: Option<Arch>,
    /// How the handler is packaged: zip, layer (/opt/bootstrap from a layer) or image
    /// (a single-manifest OCI image in ECR)
    #[arg(long, value_name = "zip|layer|image", help_heading = "Stack settings")]
    pub package: Option<infra::config::Package>,
    /// Reserved concurrency: a number, `auto` (from --requests-per-minute and
    /// --expected-duration) or `none`. Checked against the account's quota at plan time:
    /// `auto` the account cannot give deploys without a reservation (with a note), a number
    /// it cannot give blocks the plan
    #[arg(long, value_name = "N|auto|none", help_heading = "Stack settings")]
    pub concurrency: Option<infra::config::ConcurrencySetting>,
    /// Anthropic rate limit in requests per minute (for --concurrency auto)
    #[arg(long, value_name = "N", help_heading = "Stack settings")]
    pub requests_per_minute: Option<u32>,
    /// Average request duration (for --concurrency auto), e.g. 8s, 1.5s, 500ms
    #[arg(long, value_name = "DURATION", value_parser = parse_seconds, help_heading = "Stack settings")]
    pub expected_duration: Option<f64>,
    /// Function URL invoke mode: stream (RESPONSE_STREAM) or buffered (BUFFERED)
    #[arg(long, value_name = "stream|buffered", help_heading = "Stack settings")]
    pub invoke_mode: Option<infra::config::InvokeMode>,
    /// Function URL auth: none (caller tokens) or aws-iam (SigV4)
    #[arg(long, value_name = "none|aws-iam", help_heading = "Stack settings")]
    pub url_auth: Option<infra::config::UrlAuth>,
    /// The API Gateway front: rest (a REST API that streams, up to 15 min, and checks each
    /// caller's API key against a usage plan: rate, burst, quota from [api] in stack.toml;
    /// a public function URL is then turned off), http (an HTTP API: buffered, 30 s) or none
    #[arg(
        long,
        value_name = "rest|http|none",
        conflicts_with_all = ["http_api", "no_http_api"],
        help_heading = "Stack settings"
    )]
    pub api: Option<infra::config::ApiKind>,
    /// The older spelling of --api http
    #[arg(long, overrides_with = "no_http_api", help_heading = "Stack settings")]
    pub http_api: bool,
    /// Remove the API Gateway HTTP API (--api none when the front is http)
    #[arg(long, overrides_with = "http_api", help_heading = "Stack settings")]
    pub no_http_api: bool,
    /// Do not create (or remove) the Function URL
    #[arg(long, help_heading = "Stack settings")]
    pub no_function_url: bool,
    /// Comma-separated model allowlist (empty = the configured models: the default model, and with
    /// Bedrock the mapped names; "*" = any model)
    #[arg(long, value_name = "MODELS", help_heading = "Stack settings")]
    pub allowed_models: Option<String>,
    /// Upper bound on max_tokens per request
    #[arg(long, value_name = "N", help_heading = "Stack settings")]
    pub max_tokens_cap: Option<u32>,
    /// Model for /chat when the caller names none
    #[arg(long, value_name = "MODEL", help_heading = "Stack settings")]
    pub default_model: Option<String>,
    /// Log retention in days
    #[arg(long, value_name = "DAYS", help_heading = "Stack settings")]
    pub log_retention_days: Option<u32>,
    /// Upstream Messages API base URL (ANTHROPIC_BASE_URL in the function)
    #[arg(long, value_name = "URL", help_heading = "Stack settings")]
    pub anthropic_base_url: Option<String>,
    /// Model service: `anthropic` (the key in the secret) or `bedrock` (Claude on Amazon
    /// Bedrock through the function's role; no Anthropic key)
    #[arg(
        long,
        value_name = "anthropic|bedrock",
        help_heading = "Stack settings"
    )]
    pub provider: Option<infra::config::ProviderKind>,
    /// The other provider, which answers when the provider fails after its retries (408, 409,
    /// 429, 5xx, 529, no answer in time): `bedrock` (the role gets the mapped models),
    /// `anthropic` (the secret keeps the key) or `none`
    #[arg(
        long,
        value_name = "bedrock|anthropic|none",
        help_heading = "Stack settings"
    )]
    pub fallback: Option<Fallback>,
    /// How a new version reaches callers through the alias `live`: `all-at-once`, `canary`
    /// ([release] canary_percent for canary_interval_seconds, then 100%) or `linear`
    /// (+linear_percent every linear_interval_seconds); always after a smoke test, watched
    /// (Errors and Throttles in CloudWatch), rolled back automatically when a check fails
    #[arg(
        long,
        value_name = "all-at-once|canary|linear",
        help_heading = "Release"
    )]
    pub strategy: Option<infra::config::Strategy>,
    /// Published versions kept (the newest; never one an alias uses); older ones are deleted
    #[arg(long, value_name = "N", help_heading = "Release")]
    pub keep_versions: Option<u32>,
}

/// `--fallback`: a provider, or `none` (no fallback, whatever stack.toml says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fallback(pub Option<infra::config::ProviderKind>);

impl std::str::FromStr for Fallback {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(Fallback(None)),
            other => other
                .parse()
                .map(|k| Fallback(Some(k)))
                .map_err(|e: anyhow::Error| format!("{e}, or `none`")),
        }
    }
}

#[derive(Debug, Args)]
pub struct Plan {
    #[command(flatten)]
    pub stack: StackArgs,
    #[command(flatten)]
    pub code: CodeArgs,
}

#[derive(Debug, Args)]
pub struct Deploy {
    #[command(flatten)]
    pub stack: StackArgs,
    #[command(flatten)]
    pub code: CodeArgs,
    /// Read the Anthropic API key from stdin instead of ANTHROPIC_API_KEY
    #[arg(long)]
    pub api_key_stdin: bool,
    /// Generate a new token for the caller `default` (its old token stops working; other
    /// callers keep theirs)
    #[arg(long)]
    pub rotate_token: bool,
    /// Deploy to a local AWS emulator (moto, installed if missing) and serve the function
    /// on localhost; no AWS account needed
    #[arg(long)]
    pub local: bool,
    /// With --local: port of the local Function URL (default: a free port)
    #[arg(long, requires = "local")]
    pub port: Option<u16>,
    /// Show the plan and every step the deploy would run, run none of them: no
    /// confirmation, no lock, no call that changes the account
    #[arg(long, conflicts_with = "local")]
    pub dry_run: bool,
    /// Move traffic to a new version without first sending it a real request. Only where
    /// the function cannot run (an emulator such as plain moto, which cannot run the
    /// handler); against AWS the smoke test is what stops a broken build before callers
    /// reach it
    #[arg(long, help_heading = "Release")]
    pub skip_smoke_test: bool,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Debug, Args)]
pub struct Releases {}

#[derive(Debug, Args)]
pub struct Rollback {
    /// The version to put `live` on (default: the one before it; during an interrupted
    /// release, the version it is shifting from)
    #[arg(long, value_name = "N")]
    pub to: Option<u64>,
    #[command(flatten)]
    pub lock: LockArgs,
}

/// The stack's deploy lock (a Secrets Manager secret `claude-proxy/<stack>/lock`).
#[derive(Debug, Clone, Args)]
pub struct LockArgs {
    /// How long to wait while another deploy or teardown holds the stack's lock (then exit 4)
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration, help_heading = "Deploy lock")]
    pub lock_timeout: std::time::Duration,
    /// How long the lock taken by this run stays valid; a run killed on another machine blocks
    /// the stack at most this long (on the same host a dead holder is taken over at once)
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration, help_heading = "Deploy lock")]
    pub lock_ttl: std::time::Duration,
}

impl LockArgs {
    pub fn options(&self, operation: &str) -> infra::LockOptions {
        infra::LockOptions {
            ttl: self.lock_ttl,
            timeout: self.lock_timeout,
            poll: std::time::Duration::from_millis(500)
                .max(self.lock_timeout / 60)
                .min(std::time::Duration::from_secs(5)),
            ..infra::LockOptions::new(operation)
        }
    }
}

#[derive(Debug, Args)]
pub struct Invoke {
    /// Endpoint URL (default: the stack's Function URL, else its HTTP API URL, else its REST
    /// API URL with the default caller's API key)
    #[arg(long)]
    pub url: Option<String>,
    /// Send to the stack's API Gateway URL (HTTP API, else REST API) instead of its Function URL
    #[arg(long, conflicts_with = "url")]
    pub api: bool,
    /// The message to send
    #[arg(long, short, default_value = "Say hello in five words.")]
    pub message: String,
    /// Route to call
    #[arg(long, default_value = "/chat", value_parser = ["/chat", "/v1/messages", "/"])]
    pub path: String,
    /// Model to ask for (default: the function's DEFAULT_MODEL)
    #[arg(long)]
    pub model: Option<String>,
    /// max_tokens for the request
    #[arg(long, default_value_t = 256)]
    pub max_tokens: u32,
    /// Stream the answer as it is generated (default)
    #[arg(long, overrides_with = "no_stream")]
    pub stream: bool,
    /// Wait for the whole answer
    #[arg(long, overrides_with = "stream")]
    pub no_stream: bool,
    /// Sign the request with SigV4 (default: when the Function URL uses AWS_IAM)
    #[arg(long)]
    pub sigv4: bool,
}

#[derive(Debug, Args)]
pub struct Callers {
    #[command(subcommand)]
    pub action: CallersAction,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Debug, Subcommand)]
pub enum CallersAction {
    /// Make a caller and show its token, once (`--output json`: {"name", "token"}); with a
    /// REST API front also its own API key in the usage plan, shown once ("api_key"), in a
    /// usage plan of its own when given --rate-limit, --burst-limit, --quota-limit or
    /// --quota-period
    Add {
        /// 1 to 64 of a-z, 0-9, '.', '_', '-'
        name: String,
        /// Models this caller may use, comma-separated (default: the stack's)
        #[arg(long, value_delimiter = ',', value_name = "MODELS")]
        models: Option<Vec<String>>,
        /// Its max_tokens cap, at most the stack's [limits] max_tokens_cap (default: the stack's)
        #[arg(long, value_name = "N")]
        max_tokens: Option<u64>,
        /// REST front: its own steady requests per second (default: [api] rate_limit). Any
        /// of --rate-limit, --burst-limit, --quota-limit, --quota-period gives the caller its
        /// own usage plan claude-proxy-<stack>-<name>, the others taken from [api]
        #[arg(long, value_name = "R")]
        rate_limit: Option<f64>,
        /// REST front: its own burst (default: [api] burst_limit)
        #[arg(long, value_name = "B")]
        burst_limit: Option<u32>,
        /// REST front: its own requests per quota period, 0 = no quota (default: [api] quota_limit)
        #[arg(long, value_name = "Q")]
        quota_limit: Option<u32>,
        /// REST front: its own quota period, day|week|month (default: [api] quota_period)
        #[arg(long, value_name = "PERIOD")]
        quota_period: Option<infra::config::QuotaPeriod>,
    },
    /// Names, when each was made and last rotated, its limits (with a REST front its usage
    /// plan's rate, burst and quota) and its API key's id (never a token or a key)
    List,
    /// Remove a caller: its token stops working and its API key (REST front) is deleted
    Revoke { name: String },
    /// A new token (and API key, REST front) for a caller, shown once; the old ones stop
    /// working
    Rotate { name: String },
}

#[derive(Debug, Args)]
pub struct Usage {
    /// How far back to count, e.g. 24h, 7d, 90m
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub since: std::time::Duration,
    /// One row per caller or per model (default: per caller and model)
    #[arg(long, value_enum)]
    pub by: Option<UsageBy>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UsageBy {
    Caller,
    Model,
}

#[derive(Debug, Args)]
pub struct Logs {
    /// Keep polling for new events
    #[arg(long, short)]
    pub follow: bool,
    /// How far back to start, e.g. 10m, 2h, 1d
    #[arg(long, default_value = "10m")]
    pub since: String,
    /// Only events matching this CloudWatch Logs filter pattern
    #[arg(long)]
    pub filter: Option<String>,
}

#[derive(Debug, Args)]
pub struct Dev {
    /// Port to listen on (127.0.0.1)
    #[arg(long, default_value_t = 8787)]
    pub port: u16,
    /// Use the built-in fake Messages API even when ANTHROPIC_API_KEY is set
    #[arg(long)]
    pub mock: bool,
    /// Caller token that clients must send (default: a generated one)
    #[arg(long, value_name = "TOKEN")]
    pub caller_token: Option<String>,
}

#[derive(Debug, Args)]
pub struct Teardown {
    /// Tear down every stack in the account and region whose created-at tag is older than
    /// this (e.g. 24h, 90m, 7d), instead of the one named by --stack
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub older_than: Option<std::time::Duration>,
    /// With --older-than: only stacks whose name starts with this (e.g. pr-)
    #[arg(long, value_name = "PREFIX", requires = "older_than")]
    pub stack_prefix: Option<String>,
    /// Show what would be deleted, delete nothing, take no lock
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Debug, Args)]
pub struct Test {
    /// Only install what the tests use; run no test
    #[arg(long)]
    pub setup_only: bool,
    /// Run every test binary even when one fails
    #[arg(long, conflicts_with = "setup_only")]
    pub no_fail_fast: bool,
    /// Arguments passed to the test binaries (after `--`), e.g. a test name filter
    #[arg(last = true)]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct Bench {
    /// Tiny iteration counts: checks the harness runs (the numbers are not meaningful)
    #[arg(long)]
    pub quick: bool,
    /// Write the report here (default: BENCHMARKS.md at the workspace root)
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
    /// Measure this `bootstrap` instead of building the deployed (dist profile) one
    #[arg(long, value_name = "PATH")]
    pub bootstrap: Option<PathBuf>,
    /// Measure only these sections (comma-separated: cold-start, proxy-overhead,
    /// streaming-latency, memory, artifact, deploy, deploy-model); the others are kept as the
    /// report file has them from an earlier run, marked as such
    #[arg(long, value_name = "SECTION,...", value_delimiter = ',')]
    pub only: Vec<String>,
}

/// A duration from `90m`, `24h`, `7d`, `30s`, `500ms`, `0`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let secs = parse_seconds(s)?;
    if !(secs >= 0.0 && secs.is_finite()) {
        return Err(format!("`{s}` is not a duration: use e.g. 90m, 24h, 7d"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// Seconds from `8`, `8s`, `1.5s`, `500ms`, `2m`.
pub fn parse_seconds(s: &str) -> Result<f64, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration: use e.g. 8s, 1.5s, 500ms, 2m"))?;
    let factor = match unit {
        "ms" => 0.001,
        "s" | "sec" | "secs" => 1.0,
        "m" | "min" | "mins" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => {
            return Err(format!(
                "`{s}` has an unknown unit `{unit}`: use ms, s, m, h or d"
            ))
        }
    };
    Ok(n * factor)
}
