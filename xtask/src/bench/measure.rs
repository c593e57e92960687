//! The measurements. Each returns a [`Section`] with its figures and what exactly was measured.
//! The helpers they share and the deploy timings are here; the other sections have a file each.

use super::report::{mb, ms, times, Figure, Section, Stats};
use super::Counts;
use anyhow::{bail, Context, Result};
use aws_credential_types::Credentials;
use emulators::anthropic::{FakeAnthropic, Gate};
use emulators::lambda::{InvokeMode, LocalLambda, LocalLambdaOptions, LogSink};
use infra::config::{Overrides, StackConfig};
use infra::secret::{ApiKey, SecretInput};
use infra::{Desired, Silent};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;

mod artifact;
mod cold_start;
mod latency;
mod memory;

pub use artifact::artifact;
pub use cold_start::cold_start;
pub use latency::{proxy_overhead, streaming_latency};
pub use memory::memory;

const UPSTREAM_KEY: &str = "sk-ant-bench-upstream";
const CALLER_TOKEN: &str = "clp_bench_caller_token";
const MODEL: &str = "claude-haiku-4-5";
const REGION: &str = "us-east-1";
const PY_COLD: &str = "import anthropic; anthropic.Anthropic(api_key='x')";

fn body(words: usize, stream: bool) -> String {
    let text: Vec<String> = (0..words).map(|i| format!("word{i}")).collect();
    serde_json::json!({
        "model": MODEL,
        "max_tokens": 256,
        "stream": stream,
        "messages": [{"role": "user", "content": text.join(" ")}],
    })
    .to_string()
}

fn client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .build()
        .context("building the HTTP client")
}

/// The handler's `serve` example: `handler::local` (the handler's routes behind plain HTTP)
/// alone in its own process, built with the profile the bench reports.
pub struct HandlerBinary(pub PathBuf);

/// A running `serve` process in front of an upstream; stopped when dropped.
struct LocalHandler {
    url: String,
    pid: u32,
    child: tokio::process::Child,
}

impl Drop for LocalHandler {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Starts the serving process in front of `upstream` and waits for the address it prints.
async fn start_handler(bin: &HandlerBinary, upstream: &str) -> Result<LocalHandler> {
    let mut child = tokio::process::Command::new(&bin.0)
        .envs(handler_env(upstream))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bin.0.display()))?;
    let pid = child.id().context("the serving process has no pid")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let addr = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .context("the serving process printed no address within 30 s")??
        .context("the serving process exited before printing its address")?;
    let addr: SocketAddr = addr
        .trim()
        .parse()
        .with_context(|| format!("the serving process printed `{addr}`, not an address"))?;
    Ok(LocalHandler {
        url: format!("http://{addr}"),
        pid,
        child,
    })
}

/// A target for `/v1/messages`: the fake directly (with the upstream key) or the handler (with
/// the caller token).
#[derive(Clone)]
struct Target {
    url: String,
    key: &'static str,
}

impl Target {
    fn direct(fake: &FakeAnthropic) -> Target {
        Target {
            url: format!("{}/v1/messages", fake.base_url()),
            key: UPSTREAM_KEY,
        }
    }
    fn handler(h: &LocalHandler) -> Target {
        Target {
            url: format!("{}/v1/messages", h.url),
            key: CALLER_TOKEN,
        }
    }
    fn request(&self, client: &reqwest::Client, body: &str) -> reqwest::RequestBuilder {
        client
            .post(&self.url)
            .header("x-api-key", self.key)
            .header("anthropic-version", "2023-06-01")
            .header("content-type", "application/json")
            .body(body.to_string())
    }
}

/// Time to the first body byte and to the end of the body.
async fn timed(client: &reqwest::Client, t: &Target, body: &str) -> Result<(Duration, Duration)> {
    let start = Instant::now();
    let mut resp = t
        .request(client, body)
        .send()
        .await
        .with_context(|| format!("POST {}", t.url))?;
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        bail!("POST {} answered {status}: {text}", t.url);
    }
    let mut ttfb = None;
    while let Some(chunk) = resp.chunk().await.context("reading the body")? {
        if ttfb.is_none() && !chunk.is_empty() {
            ttfb = Some(start.elapsed());
        }
    }
    let total = start.elapsed();
    Ok((ttfb.unwrap_or(total), total))
}

/// The handler's local-mode environment (no secret; key and token from the environment).
fn handler_env(upstream: &str) -> Vec<(String, String)> {
    vec![
        ("ANTHROPIC_API_KEY".into(), UPSTREAM_KEY.into()),
        ("CALLER_TOKEN".into(), CALLER_TOKEN.into()),
        ("ANTHROPIC_BASE_URL".into(), upstream.into()),
    ]
}

/// Said in the sections that measure the serving process.
fn build_note(s: &mut Section, bin: &HandlerBinary) {
    s.notes.push(format!(
        "The handler ran as its own process: `{}`, the handler's `serve` example (`handler::local`) \
         built with the same profile as the deployed bootstrap (dist: opt-level \"s\", fat LTO) \
         unless this is a `--quick` run (a debug build).",
        bin.0.display()
    ));
}

// ---------------------------------------------------------------------------------------------
// Deploy

/// How `cargo xtask deploy` gets its code when timed as a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CliCode {
    /// No code flag: the command runs its build check (`cargo build` of the deployed
    /// bootstrap, already built by the bench, so a no-op for cargo) as a user's deploy does.
    BuildCheck,
    /// `--bootstrap <the bench's bootstrap>`: no build step (the bench was given a binary).
    Given,
}

pub async fn deploy(bootstrap: &Path, code: CliCode, counts: Counts) -> Result<Section> {
    let mut s = Section::new("Deploy");
    let rounds = counts.deploy_rounds;
    s.method = format!(
        "Against moto server (`emulators::moto::MotoServer`, one server for the whole section), \
         timed two ways. As a process, the way a user types it: `cargo xtask deploy --stack S --yes` \
         (first, then again: a no-op, exit 3) and `cargo xtask teardown --stack S --yes`, each a \
         whole `cargo xtask` process from the project root (cargo's start-up and freshness check of \
         the CLI included, {code}). As library calls, build excluded (the zip is made once before \
         timing): `cargo xtask deploy`'s (read the actual state, plan, apply: log group, role and policy, secret, \
         function, reserved concurrency, Function URL and permissions), {rounds} round(s) of first \
         deploy → no-op redeploy → teardown, each round on its own stack name; medians are shown. \
         Baseline: `cargo lambda deploy --binary-path <bootstrap> --enable-function-url` \
         (cargo-lambda from the toolkit venv, `--endpoint-url` at the same moto), first deploy \
         and an unchanged redeploy, same number of rounds. cargo-lambda creates the function, \
         a role with `AWSLambdaBasicExecutionRole` and a Function URL; it has no teardown command.",
        code = match code {
            CliCode::BuildCheck => "and the build check: `cargo build` of the deployed bootstrap, which the bench built just before, so cargo finds nothing to do",
            CliCode::Given => "with `--bootstrap` given, so no build check: the bench was given a binary",
        }
    );
    let moto = emulators::moto::MotoServer::start()
        .await
        .context("starting moto server")?;
    let endpoint = moto.endpoint_url();
    let aws = local_aws(&endpoint).await?;
    let artifact = infra::artifact::Artifact::from_bootstrap(bootstrap)?;
    let file = StackConfig::default();
    let (mut first, mut noop, mut down) = (Vec::new(), Vec::new(), Vec::new());
    let mut noop_changes = Vec::new();
    let mut first_profile = Vec::new();
    let mut read_and_plan = Vec::new();
    for round in 0..rounds {
        let stack = format!("bench-{round}");
        let ov = Overrides {
            stack: Some(stack.clone()),
            region: Some(REGION.into()),
            architecture: Some(super::host_architecture()?),
            anthropic_base_url: Some("http://127.0.0.1:9".into()),
            ..Default::default()
        };
        let start = Instant::now();
        let actual = infra::read_actual(&aws, &stack).await?;
        let desired = Desired::new(
            file.with_overrides(&ov)?,
            Some(&artifact),
            SecretInput {
                anthropic_api_key: Some(ApiKey::new(UPSTREAM_KEY)),
                rotate_token: false,
            },
        )?;
        let plan = infra::plan(&desired, &actual);
        read_and_plan.push(start.elapsed());
        if !plan.blockers.is_empty() {
            bail!("the plan has blockers: {}", plan.blockers.join("; "));
        }
        let steps = StepTimer::default();
        infra::apply(&aws, &plan, &desired, &steps)
            .await
            .with_context(|| format!("first deploy of stack {stack} to moto"))?;
        if round == 0 {
            first_profile = steps.slowest(4);
        }
        first.push(start.elapsed());

        let start = Instant::now();
        let actual = infra::read_actual(&aws, &stack).await?;
        let desired = Desired::new(
            file.with_overrides(&ov)?,
            Some(&artifact),
            SecretInput {
                anthropic_api_key: None,
                rotate_token: false,
            },
        )?;
        let plan = infra::plan(&desired, &actual);
        if !plan.is_empty() {
            noop_changes.push(plan.to_string());
        }
        infra::apply(&aws, &plan, &desired, &Silent)
            .await
            .with_context(|| format!("redeploy of stack {stack} to moto"))?;
        noop.push(start.elapsed());

        let start = Instant::now();
        infra::teardown(&aws, &stack, &Silent)
            .await
            .with_context(|| format!("teardown of stack {stack} on moto"))?;
        down.push(start.elapsed());
    }
    let (f, n, d) = (Stats::of(&first), Stats::of(&noop), Stats::of(&down));
    let cli = cli_deploys(bootstrap, code, &endpoint, rounds)
        .await
        .context("timing `cargo xtask deploy`/`teardown` as processes")?;

    let cl = cargo_lambda_deploys(bootstrap, &endpoint, rounds).await;
    let (cl_first, cl_again) = match &cl {
        Ok((a, b)) => (Some(Stats::of(a)), Some(Stats::of(b))),
        Err(e) => {
            s.notes.push(format!(
                "`cargo lambda deploy` could not be measured against moto: {}",
                e.to_string().replace('\n', " ")
            ));
            (None, None)
        }
    };
    // What the user waits for: the command as typed, a whole process, against the same
    // baseline measured the same way (cargo-lambda is a process too).
    let (pf, pn, pd) = (
        Stats::of(&cli.first),
        Stats::of(&cli.noop),
        Stats::of(&cli.down),
    );
    let mut fig = Figure::new(
        "first deploy, `cargo xtask deploy` process, median",
        ms(pf.p50),
    );
    match &cl_first {
        Some(c) => {
            let r = pf.p50 / c.p50;
            fig = fig
                .baseline(format!("{} (cargo lambda deploy, process)", ms(c.p50)))
                .ratio(format!("{r:.2}"))
                .target("≤ 0.5 of cargo-lambda's", r <= 0.5);
        }
        None => fig = fig.baseline("cargo lambda deploy: could not run (see below)"),
    }
    s.figures.push(fig);
    let mut fig = Figure::new("no-op redeploy, process, median", ms(pn.p50));
    if let Some(c) = &cl_again {
        fig = fig
            .baseline(format!("{} (cargo lambda deploy, unchanged)", ms(c.p50)))
            .ratio(format!("{:.2}", pn.p50 / c.p50));
    }
    s.figures.push(fig.target("< 1 s", pn.p50 < 1000.0));
    s.figures.push(
        Figure::new("teardown, process, median", ms(pd.p50))
            .baseline("cargo lambda: no teardown command")
            .target("< 2 s", pd.p50 < 2000.0),
    );
    // The same work as library calls: what the process adds is cargo's own start-up and
    // freshness check, the build check, and the CLI's set-up.
    let mut fig = Figure::new("first deploy, library calls, median", ms(f.p50));
    if let Some(c) = &cl_first {
        fig = fig
            .baseline(format!("{} (cargo lambda deploy, process)", ms(c.p50)))
            .ratio(format!("{:.2}", f.p50 / c.p50));
    }
    s.figures.push(fig);
    s.figures.push(
        Figure::new("no-op redeploy, library calls, median", ms(n.p50))
            .baseline(format!("{} (the same, as a process)", ms(pn.p50)))
            .ratio(format!("{:.2}", n.p50 / pn.p50))
            .target("empty plan", noop_changes.is_empty()),
    );
    s.figures.push(
        Figure::new("teardown, library calls, median", ms(d.p50))
            .baseline(format!("{} (the same, as a process)", ms(pd.p50)))
            .ratio(format!("{:.2}", d.p50 / pd.p50)),
    );
    let profile: Vec<String> = first_profile
        .iter()
        .map(|(step, d)| format!("{step}: {}", ms(d.as_secs_f64() * 1000.0)))
        .collect();
    s.notes.push(format!(
        "Profile of the first deploy (first round; the zip is {}): reading the actual state and \
         planning {}; then its slowest apply steps: {}.",
        mb(artifact.zip.len() as u64),
        ms(read_and_plan
            .first()
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)),
        profile.join("; ")
    ));
    if !noop_changes.is_empty() {
        s.notes.push(format!(
            "The redeploy was not a no-op (target missed): its plan was:\n\n```\n{}\n```",
            noop_changes[0].trim_end()
        ));
    } else {
        s.notes
            .push("Every redeploy's plan was empty (no mutating call).".into());
    }
    moto.stop().await?;
    Ok(s)
}

/// Times each step of an apply (`infra::Progress`), for the deploy's profile.
#[derive(Default)]
struct StepTimer {
    steps: std::sync::Mutex<Vec<(String, Instant, Option<Duration>)>>,
}

impl StepTimer {
    fn slowest(&self, n: usize) -> Vec<(String, Duration)> {
        let mut v: Vec<(String, Duration)> = self
            .steps
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(s, _, d)| d.map(|d| (s.clone(), d)))
            .collect();
        v.sort_by_key(|b| std::cmp::Reverse(b.1));
        v.truncate(n);
        v
    }
}

impl infra::Progress for StepTimer {
    fn start(&self, step: &str) {
        self.steps
            .lock()
            .unwrap()
            .push((step.to_string(), Instant::now(), None));
    }
    fn finish(&self, step: &str) {
        let mut steps = self.steps.lock().unwrap();
        if let Some(entry) = steps
            .iter_mut()
            .rev()
            .find(|(s, _, d)| s == step && d.is_none())
        {
            entry.2 = Some(entry.1.elapsed());
        }
    }
    fn warn(&self, _: &str) {}
}

async fn local_aws(endpoint: &str) -> Result<infra::aws::Aws> {
    let config = infra::tls::sdk_defaults()
        .region(aws_config::Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "bench"))
        .retry_config(infra::aws::retry_config())
        .load()
        .await;
    infra::aws::Aws::from_sdk_config(config).await
}

/// Wall times of the real CLI as a user types it, one process per command.
struct CliTimes {
    first: Vec<Duration>,
    noop: Vec<Duration>,
    down: Vec<Duration>,
}

/// `cargo xtask deploy --yes` (first), again (no-op, exit 3), then `cargo xtask teardown
/// --yes`, per round on a stack of its own, from the project root with this machine's
/// architecture; the key travels in `ANTHROPIC_API_KEY`, as a user passes it.
async fn cli_deploys(
    bootstrap: &Path,
    code: CliCode,
    endpoint: &str,
    rounds: usize,
) -> Result<CliTimes> {
    let arch = super::host_architecture()?.lambda_name();
    let root = crate::paths::project_root();
    // Untimed: `cargo xtask` as this process was built may not be what `cargo run -p xtask`
    // builds (a test harness builds it with dev-dependency features), so let cargo bring the
    // CLI up to date first; a user's deploy does not include compiling the CLI.
    let warm = tokio::time::timeout(
        Duration::from_secs(1800),
        tokio::process::Command::new(crate::cmd::cargo())
            .args(["xtask", "--version"])
            .current_dir(&root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .status(),
    )
    .await
    .context("building the CLI (`cargo xtask --version`) took more than 30 minutes")?
    .context("running cargo xtask --version")?;
    if !warm.success() {
        bail!("`cargo xtask --version` failed ({warm}): the CLI does not build");
    }
    let mut times = CliTimes {
        first: Vec::new(),
        noop: Vec::new(),
        down: Vec::new(),
    };
    for round in 0..rounds {
        let stack = format!("bench-cli-{round}");
        let run = |args: Vec<String>, expect: i32| {
            let root = root.clone();
            let endpoint = endpoint.to_string();
            async move {
                let start = Instant::now();
                let out = tokio::time::timeout(
                    Duration::from_secs(600),
                    tokio::process::Command::new(crate::cmd::cargo())
                        .arg("xtask")
                        .args(&args)
                        .current_dir(&root)
                        .env("AWS_ENDPOINT_URL", &endpoint)
                        .env("AWS_REGION", REGION)
                        .env("AWS_ACCESS_KEY_ID", "testing")
                        .env("AWS_SECRET_ACCESS_KEY", "testing")
                        .env("AWS_EC2_METADATA_DISABLED", "true")
                        .env("ANTHROPIC_API_KEY", UPSTREAM_KEY)
                        .env_remove("AWS_PROFILE")
                        .stdin(Stdio::null())
                        .kill_on_drop(true)
                        .output(),
                )
                .await
                .with_context(|| format!("`cargo xtask {}` took more than 600 s", args.join(" ")))?
                .context("running cargo xtask")?;
                let took = start.elapsed();
                if out.status.code() != Some(expect) {
                    bail!(
                        "`cargo xtask {}` exited {} (expected {expect}): {}",
                        args.join(" "),
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
                Ok::<Duration, anyhow::Error>(took)
            }
        };
        // moto cannot run the handler, so there is no smoke test to time here.
        let mut deploy: Vec<String> = [
            "deploy",
            "--skip-smoke-test",
            "--stack",
            &stack,
            "--yes",
            "--arch",
            arch,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        deploy.extend(["--anthropic-base-url".into(), "http://127.0.0.1:9".into()]);
        if code == CliCode::Given {
            deploy.extend(["--bootstrap".into(), bootstrap.display().to_string()]);
        }
        times.first.push(run(deploy.clone(), 0).await?);
        times
            .noop
            .push(run(deploy, crate::flags::EXIT_NOTHING_TO_DO as i32).await?);
        let teardown = ["teardown", "--stack", &stack, "--yes"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        times.down.push(run(teardown, 0).await?);
    }
    Ok(times)
}

/// `cargo lambda deploy` twice per round (first, unchanged); wall times.
async fn cargo_lambda_deploys(
    bootstrap: &Path,
    endpoint: &str,
    rounds: usize,
) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let bin = emulators::moto::venv_dir().join("bin/cargo-lambda");
    if !bin.is_file() {
        bail!(
            "{} not found: install it with `cargo xtask test` (PyPI `cargo-lambda`)",
            bin.display()
        );
    }
    let manifest = crate::paths::project_root().join("handler/Cargo.toml");
    let (mut first, mut again) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let name = format!("bench-cargo-lambda-{round}");
        for pass in 0..2 {
            let start = Instant::now();
            let out = tokio::time::timeout(
                Duration::from_secs(300),
                tokio::process::Command::new(&bin)
                    .args(["lambda", "deploy", "--color", "never", "--manifest-path"])
                    .arg(&manifest)
                    .arg("--binary-path")
                    .arg(bootstrap)
                    .args(["--endpoint-url", endpoint, "--region", REGION])
                    .args([
                        "--enable-function-url",
                        "--memory",
                        "128",
                        "--timeout",
                        "30",
                    ])
                    .arg(&name)
                    .env("AWS_ACCESS_KEY_ID", "testing")
                    .env("AWS_SECRET_ACCESS_KEY", "testing")
                    .env("AWS_REGION", REGION)
                    .env("AWS_EC2_METADATA_DISABLED", "true")
                    .env_remove("AWS_PROFILE")
                    .stdin(Stdio::null())
                    .kill_on_drop(true)
                    .output(),
            )
            .await
            .context("cargo lambda deploy took more than 300 s")?
            .with_context(|| format!("running {}", bin.display()))?;
            let took = start.elapsed();
            if !out.status.success() {
                bail!(
                    "`cargo lambda deploy` failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            if pass == 0 {
                first.push(took);
            } else {
                again.push(took);
            }
        }
    }
    Ok((first, again))
}
