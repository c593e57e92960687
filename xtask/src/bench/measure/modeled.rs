//! Deploys under the latency model: moto behind the `aws-proxy` process (the test proxy as a
//! binary of its own, `tests/src/bin/aws-proxy.rs`), which answers as slowly as real AWS
//! (`emulators/src/aws_latency.toml`: a distribution per call, a new function `Pending`, an
//! update `InProgress`, a new role unassumable for the IAM propagation window). The real
//! `cargo xtask deploy` / `teardown` processes and `cargo lambda deploy` go through the same
//! proxy; each of our commands is set beside its critical path (`super::super::critical`),
//! computed from the plan it applied.

use super::super::critical;
use super::super::report::{ms, Figure, Section, Stats};
use super::super::Counts;
use super::{cargo_lambda_deploys, local_aws, run_cli, CliCode, REGION, UPSTREAM_KEY};
use anyhow::{bail, Context, Result};
use emulators::aws_latency::Model;
use infra::config::{Overrides, StackConfig};
use infra::secret::{ApiKey, SecretInput};
use infra::Desired;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

/// The proxy process; killed when dropped (and it ends by itself when our end of its stdin
/// closes).
struct Proxy {
    child: tokio::process::Child,
    endpoint: String,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Builds the `aws-proxy` binary (the test crate's, in this workspace's target dir).
async fn build_proxy() -> Result<PathBuf> {
    let root = crate::paths::project_root();
    let status = tokio::process::Command::new(crate::cmd::cargo())
        .args([
            "build",
            "--quiet",
            "-p",
            "integration-tests",
            "--bin",
            "aws-proxy",
        ])
        .current_dir(&root)
        .stdin(Stdio::null())
        .status()
        .await
        .context("running cargo build -p integration-tests --bin aws-proxy")?;
    if !status.success() {
        bail!("`cargo build -p integration-tests --bin aws-proxy` failed ({status})");
    }
    Ok(crate::paths::target_dir().await?.join("debug/aws-proxy"))
}

async fn start_proxy(bin: &Path, upstream: &str, seed: u64) -> Result<Proxy> {
    let mut child = tokio::process::Command::new(bin)
        .args([
            "--upstream",
            upstream,
            "--scale",
            "1",
            "--seed",
            &seed.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stdout = child.stdout.take().context("the proxy's stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .context("the AWS proxy did not start within 30 s")??
        .context("the AWS proxy ended before it listened")?;
    let endpoint = line
        .strip_prefix("listening on ")
        .with_context(|| format!("the AWS proxy printed {line:?}"))?
        .to_string();
    Ok(Proxy { child, endpoint })
}

/// The plan the CLI is about to apply, computed from moto directly (no latency), as the CLI
/// computes it: stack.toml at the root, the same flags.
async fn plan_now(
    aws: &infra::aws::Aws,
    artifact: &infra::artifact::Artifact,
    ov: &Overrides,
    key: bool,
    teardown: bool,
) -> Result<infra::Plan> {
    let stack = ov.stack.clone().unwrap_or_default();
    if teardown {
        return infra::teardown_plan(aws, &stack).await;
    }
    let file = StackConfig::load(&crate::paths::project_root().join("stack.toml"))?;
    let desired = Desired::new(
        file.with_overrides(ov)?,
        Some(artifact),
        SecretInput {
            anthropic_api_key: key.then(|| ApiKey::new(UPSTREAM_KEY)),
            rotate_token: false,
        },
    )?;
    let actual = infra::read_for(aws, &desired).await?;
    Ok(infra::plan(&desired, &actual))
}

pub async fn deploy_modeled(bootstrap: &Path, code: CliCode, counts: Counts) -> Result<Section> {
    let mut s = Section::new("Deploy under the AWS latency model");
    let model = Model::standard();
    let rounds = counts.deploy_rounds;
    let h = &model.holds;
    s.method = format!(
        "moto server behind the `aws-proxy` process (`tests/src/bin/aws-proxy.rs`, the test proxy \
         with its latency profile at scale 1), which answers as slowly as real AWS under the model in \
         `emulators/src/aws_latency.toml`: every call waits a draw from its operation's log-normal \
         distribution (median and p99 per call, each with its source; most are assumptions), a new \
         function reads `Pending` for {} ms, an update `InProgress` for {} ms, and Lambda refuses a \
         role for {} ms after `CreateRole` (\"The role defined for the function cannot be assumed by \
         Lambda.\"). Timed as whole processes, {rounds} round(s), medians: `cargo xtask deploy --yes` \
         (first), again (no-op, exit 3), `--memory 1024` (a configuration change), `cargo xtask \
         teardown --yes`; {code}. Each is set beside its critical path: the plan it applied \
         (computed the same way from the same state), each change costing its calls' medians and \
         holds, independent changes in parallel (`infra::schedule`), the function after its role's \
         propagation window; plus what the command does one call after another (GetCallerIdentity, \
         reading the stack, and with changes the deploy lock, reading again under it, releasing it; \
         a teardown re-reads until the stack is gone). Baseline: `cargo lambda deploy` through the \
         same proxy, first and unchanged.",
        h.function_pending_ms,
        h.function_update_ms,
        h.iam_propagation_ms,
        code = match code {
            CliCode::BuildCheck => "the build check included (the bench built the bootstrap just before)",
            CliCode::Given => "`--bootstrap` given",
        }
    );
    let moto = emulators::moto::MotoServer::start()
        .await
        .context("starting moto server")?;
    let direct = local_aws(&moto.endpoint_url()).await?;
    // What the CLI deploys: the zip of this bootstrap (deterministic, so the same bytes).
    let artifact = infra::artifact::Artifact::from_bootstrap(bootstrap)?;
    let proxy_bin = build_proxy().await?;
    let proxy = start_proxy(&proxy_bin, &moto.endpoint_url(), 1).await?;
    let endpoint = proxy.endpoint.clone();
    let root = crate::paths::project_root();
    let arch = super::super::host_architecture()?;
    // The CLI up to date (untimed).
    run_cli(&root, &endpoint, vec!["--version".into()], 0).await?;

    let (mut first, mut noop, mut change, mut down) = (vec![], vec![], vec![], vec![]);
    let (mut first_cp, mut change_cp, mut down_cp) = (vec![], vec![], vec![]);
    let mut noop_cp = Vec::new();
    let mut chains = Vec::new();
    for round in 0..rounds {
        let stack = format!("model-{round}");
        let ov = Overrides {
            stack: Some(stack.clone()),
            region: Some(REGION.into()),
            architecture: Some(arch),
            anthropic_base_url: Some("http://127.0.0.1:9".into()),
            ..Default::default()
        };
        // moto cannot run the handler: no smoke test (the critical path counts none either).
        let mut args: Vec<String> = [
            "deploy",
            "--skip-smoke-test",
            "--stack",
            &stack,
            "--yes",
            "--arch",
            arch.lambda_name(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(["--anthropic-base-url".into(), "http://127.0.0.1:9".into()]);
        if code == CliCode::Given {
            args.extend(["--bootstrap".into(), bootstrap.display().to_string()]);
        }

        let plan = plan_now(&direct, &artifact, &ov, true, false).await?;
        let (cp, chain) = critical::command_path(&model, &plan, false);
        first_cp.push(cp);
        if round == 0 {
            chains.push(format!("first deploy: {chain}"));
        }
        first.push(run_cli(&root, &endpoint, args.clone(), 0).await?);

        noop_cp.push(
            critical::command_path(
                &model,
                &plan_now(&direct, &artifact, &ov, false, false).await?,
                true,
            )
            .0,
        );
        noop.push(
            run_cli(
                &root,
                &endpoint,
                args.clone(),
                crate::flags::EXIT_NOTHING_TO_DO as i32,
            )
            .await?,
        );

        let changed = Overrides {
            memory_mb: Some(1024),
            ..ov.clone()
        };
        let plan = plan_now(&direct, &artifact, &changed, false, false).await?;
        let (cp, chain) = critical::command_path(&model, &plan, true);
        change_cp.push(cp);
        if round == 0 {
            chains.push(format!("configuration change: {chain}"));
        }
        let mut with_memory = args.clone();
        with_memory.extend(["--memory".into(), "1024".into()]);
        change.push(run_cli(&root, &endpoint, with_memory, 0).await?);

        let plan = plan_now(&direct, &artifact, &ov, false, true).await?;
        let (cp, chain) = critical::command_path(&model, &plan, true);
        // The teardown's last read, which finds nothing left.
        down_cp.push(cp + critical::read_path(&model, false));
        if round == 0 {
            chains.push(format!("teardown: {chain} → read (nothing left)"));
        }
        let teardown = ["teardown", "--stack", &stack, "--yes"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        down.push(run_cli(&root, &endpoint, teardown, 0).await?);
    }
    // cargo-lambda makes a new role on every run and does not wait for it, so under the model
    // Lambda refuses every run's role. It is given a role made beforehand, straight in moto
    // (past any propagation window), and its time leaves out making a role: a baseline in its
    // favour.
    let own_role = cargo_lambda_deploys(bootstrap, &endpoint, 1, None).await;
    if let Err(e) = &own_role {
        s.notes.push(format!(
            "`cargo lambda deploy` on its own cannot deploy a new function under the model: it \
             creates a new role on every run and does not wait for Lambda to accept it ({}); the \
             figures below give it a role made beforehand.",
            one_line(&format!("{e:#}"))
        ));
    }
    let role = premade_role(&direct).await?;
    let cl = cargo_lambda_deploys(bootstrap, &endpoint, rounds, Some(&role)).await;

    let med = |v: &[Duration]| Stats::of(v).p50;
    let (f, n, c, d) = (med(&first), med(&noop), med(&change), med(&down));
    let (fcp, ccp, dcp) = (med(&first_cp), med(&change_cp), med(&down_cp));
    let vs_path = |name: &str, value: f64, path: f64, limit: f64| {
        let r = value / path;
        Figure::new(name, ms(value))
            .baseline(format!("{} (critical path)", ms(path)))
            .ratio(format!("{r:.2}x"))
            .target(format!("≤ {limit}x of the critical path"), r <= limit)
    };
    s.figures
        .push(vs_path("first deploy, process, median", f, fcp, 1.15));
    match &cl {
        Ok((a, b, _)) => {
            let (a, b) = (Stats::of(a).p50, Stats::of(b).p50);
            let r = f / a;
            s.figures.push(
                Figure::new("first deploy vs cargo lambda deploy, median", ms(f))
                    .baseline(format!(
                        "{} (cargo lambda deploy, process, same proxy)",
                        ms(a)
                    ))
                    .ratio(format!("{r:.2}"))
                    .target("≤ 0.5 of cargo-lambda's", r <= 0.5),
            );
            s.figures.push(
                Figure::new("no-op redeploy vs cargo lambda's unchanged redeploy", ms(n))
                    .baseline(format!("{} (cargo lambda deploy, unchanged)", ms(b)))
                    .ratio(format!("{:.2}", n / b)),
            );
        }
        Err(e) => s.notes.push(format!(
            "`cargo lambda deploy` could not be measured through the proxy: {}",
            format!("{e:#}").replace('\n', " ")
        )),
    }
    let (slowest, op) = critical::slowest_read(&model);
    let slowest = slowest.as_secs_f64() * 1000.0;
    let r = n / slowest;
    s.figures.push(
        Figure::new("no-op redeploy, process, median", ms(n))
            .baseline(format!("{} (slowest single read: {op})", ms(slowest)))
            .ratio(format!("{r:.2}x"))
            .target("≤ 1.5x of the slowest single read", r <= 1.5),
    );
    s.figures.push(
        Figure::new("no-op redeploy, critical path", ms(med(&noop_cp)))
            .baseline(format!("{} (measured)", ms(n)))
            .ratio(format!("{:.2}x", n / med(&noop_cp))),
    );
    s.figures.push(vs_path(
        "configuration change (--memory), process, median",
        c,
        ccp,
        1.2,
    ));
    s.figures
        .push(vs_path("teardown, process, median", d, dcp, 1.2));
    s.notes.push(format!(
        "Critical paths of the first round: {}.",
        chains.join("; ")
    ));
    drop(proxy);
    moto.stop().await?;
    Ok(s)
}

/// The first line of an error, for a note.
fn one_line(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(300)
        .collect()
}

/// A role Lambda may assume, made straight in moto (not through the proxy, so no propagation
/// window), for cargo-lambda's `--iam-role`.
async fn premade_role(direct: &infra::aws::Aws) -> Result<String> {
    let name = "bench-cargo-lambda-premade";
    if let Ok(r) = direct.iam.get_role().role_name(name).send().await {
        if let Some(r) = r.role() {
            return Ok(r.arn().to_string());
        }
    }
    let out = direct
        .iam
        .create_role()
        .role_name(name)
        .assume_role_policy_document(infra::role::trust_policy().to_string())
        .send()
        .await
        .with_context(|| format!("iam:CreateRole {name} (moto)"))?;
    Ok(out
        .role()
        .context("CreateRole returned no role")?
        .arn()
        .to_string())
}
