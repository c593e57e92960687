//! Crash consistency of `cargo xtask deploy`: the real binary deploys through the recording
//! proxy in front of moto, and is killed (SIGKILL) right after its k-th mutating AWS call
//! took effect, before it sees the answer, for every k of a full deploy. Apply runs
//! independent steps in parallel: the proxy lets nothing through after the k-th call, and
//! says it holds once every call let through before it was answered, so exactly k calls took
//! effect whichever they were. After each kill a
//! redeploy converges to the same stack (the plan is empty, every resource checks out) and
//! a teardown leaves nothing, the deploy lock included.
//!
//! The killed process leaves its deploy lock behind. The redeploy takes it over at once
//! because the holder ran on this host and is no longer running (a killed CI job on another
//! machine would block the stack until the lock's expiry, `--lock-ttl`).

use stand_ins::stack_support::{
    assert_nothing_left, check_deployed_code, env, plan_for, strs, Cli,
};
use std::time::Duration;

/// The front a crash test deploys.
#[derive(Clone, Copy, PartialEq)]
enum Front {
    /// The function URL and the HTTP API.
    Http,
    /// The REST API with its usage plan and key (the public URL off).
    Rest,
}

impl Front {
    fn flag(self) -> &'static str {
        match self {
            Front::Http => "--http-api",
            Front::Rest => "--api=rest",
        }
    }
    fn stack(self, name: &str) -> String {
        match self {
            Front::Http => name.to_string(),
            Front::Rest => name.replacen("crash", "crest", 1),
        }
    }
}
/// The crash tests' stack.toml: spend alarms with an e-mail subscription.
const ALARMS: &str = "[alarms]\noutput_tokens = 200000\nemail = \"ops@example.com\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_every_mutating_call_redeploy_converges_and_teardown_cleans_up() {
    // Boxed: the deploy futures are too large for a test thread's stack in debug builds.
    Box::pin(killed_after_every_mutating_call(Front::Http)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rest_front_killed_after_every_mutating_call_converges_and_cleans_up() {
    Box::pin(killed_after_every_mutating_call(Front::Rest)).await
}

/// What a converged REST front holds: one API, one usage plan naming its stage, one key in
/// it; the output names the stage URL.
async fn check_rest_front(direct: &aws_config::SdkConfig, stack: &str, out: &infra::Outputs) {
    let c = aws_sdk_apigateway::Client::new(direct);
    let name = format!("claude-proxy-{stack}");
    let apis = c.get_rest_apis().send().await.unwrap();
    let ours: Vec<_> = apis
        .items()
        .iter()
        .filter(|a| a.name() == Some(name.as_str()))
        .collect();
    assert_eq!(ours.len(), 1, "{stack}: {:?}", apis.items());
    let id = ours[0].id().unwrap();
    assert!(
        out.rest_url.as_deref().is_some_and(|u| u.contains(id)),
        "{out:?}"
    );
    let plans = c.get_usage_plans().send().await.unwrap();
    let plans: Vec<_> = plans
        .items()
        .iter()
        .filter(|p| p.name() == Some(name.as_str()))
        .collect();
    assert_eq!(plans.len(), 1, "{stack}");
    assert_eq!(plans[0].api_stages()[0].api_id(), Some(id));
    let keys = c.get_api_keys().name_query(&name).send().await.unwrap();
    assert_eq!(keys.items().len(), 1, "{stack}: {:?}", keys.items());
    let members = c
        .get_usage_plan_keys()
        .usage_plan_id(plans[0].id().unwrap())
        .send()
        .await
        .unwrap();
    assert!(members
        .items()
        .iter()
        .any(|m| m.id() == keys.items()[0].id()));
}

async fn killed_after_every_mutating_call(front: Front) {
    let e = env().await;
    let cli = Cli::new().await;
    // With alarms: their topic, its e-mail subscription and the alarms are crashed into too.
    cli.stack_toml(ALARMS);
    let endpoint = e.proxy.endpoint_url();
    let args = |stack: &str| cli.deploy_args_with(stack, front.flag());
    let desired = |stack: &str| match front {
        Front::Http => cli.desired(stack),
        Front::Rest => cli.desired_with(infra::config::Overrides {
            stack: Some(stack.into()),
            api: Some(infra::config::ApiKind::Rest),
            ..Default::default()
        }),
    };

    // N: the mutating calls of an uninterrupted full deploy, measured now.
    e.proxy.clear();
    let r = cli
        .run(&endpoint, &strs(&args(&front.stack("crash-ref"))))
        .await;
    assert_eq!(r.code, Some(0), "{r}");
    let calls = e.proxy.mutating_calls();
    let n = calls.len();
    assert!(n > 10, "a full deploy makes more mutating calls: {calls:?}");
    let ops: Vec<String> = calls.iter().map(|c| c.to_string()).collect();
    println!("a full deploy makes {n} mutating calls: {}", ops.join(", "));
    for op in ["CreateTopic", "Subscribe", "PutMetricAlarm"] {
        assert!(ops.iter().any(|o| o.contains(op)), "{op} not among {ops:?}");
    }
    assert_eq!(
        calls.first().map(|c| c.operation.as_str()),
        Some("CreateSecret"),
        "the lock comes first"
    );
    assert_eq!(
        calls.last().map(|c| c.operation.as_str()),
        Some("DeleteSecret"),
        "the lock is released last"
    );

    let mut converged = 0;
    let started = std::time::Instant::now();
    for k in 1..=n {
        println!(
            "k={k}: killing after {} ({:.1?} so far)",
            calls[k - 1],
            started.elapsed()
        );
        let stack = front.stack(&format!("crash-{k}"));
        e.proxy.clear();
        e.proxy.hold_after_mutating(k);
        let mut child = cli
            .command(&endpoint, &strs(&args(&stack)))
            .spawn()
            .unwrap();
        tokio::select! {
            held = e.proxy.wait_held(Duration::from_secs(120)) => {
                assert!(held, "k={k}: the deploy never reached mutating call {k}");
            }
            status = child.wait() => {
                panic!("k={k}: the deploy ended ({status:?}) before mutating call {k} was held");
            }
        }
        // SIGKILL: no cleanup code runs.
        child.kill().await.unwrap();
        e.proxy.release();
        let done = e.proxy.mutating_calls();
        assert_eq!(done.len(), k, "k={k}: {done:?}");
        // Independent resources are applied in parallel, so which k calls came first varies
        // from run to run; they are always calls of the full deploy.
        let mut left: Vec<(String, String)> = calls
            .iter()
            .map(|c| (c.service.clone(), c.api.clone()))
            .collect();
        for c in &done {
            let at = left
                .iter()
                .position(|o| (&o.0, &o.1) == (&c.service, &c.api))
                .unwrap_or_else(|| panic!("k={k}: {c} is not a call of the full deploy"));
            left.swap_remove(at);
        }

        // Redeploy: converges. With changes left to make, it takes over the dead process's
        // lock first; with none (killed after its last resource call) it exits 3 and leaves
        // the stale lock to the next deploy or teardown.
        let lock_left = infra::lock::read(&e.aws, &stack).await.unwrap().is_some();
        assert_eq!(lock_left, k < n, "k={k}: the lock is released last");
        let r = cli.run(&endpoint, &strs(&args(&stack))).await;
        match r.code {
            Some(0) => {
                assert!(
                    r.stderr.contains("took over the stale deploy lock")
                        && r.stderr.contains("no longer running"),
                    "k={k}: the dead holder's lock was not taken over:\n{r}"
                );
                assert!(
                    infra::lock::read(&e.aws, &stack).await.unwrap().is_none(),
                    "k={k}: the redeploy left its lock"
                );
            }
            Some(3) => assert!(k + 1 >= n, "k={k}: nothing to do this early?\n{r}"),
            _ => panic!("k={k}: redeploy failed\n{r}"),
        }
        let desired = desired(&stack);
        let plan = plan_for(&e.aws, &desired).await;
        assert!(plan.is_empty(), "k={k}: not converged:\n{plan}");
        let outputs = Box::pin(infra::apply(&e.aws, &plan, &desired, &infra::Silent))
            .await
            .unwrap();
        match front {
            Front::Http => check_deployed_code(&e.direct, &stack, &outputs, &cli.code_sha256).await,
            Front::Rest => check_rest_front(&e.direct, &stack, &outputs).await,
        }

        // Teardown leaves nothing (a stale lock included).
        let r = cli
            .run(&endpoint, &["teardown", "--stack", &stack, "--yes"])
            .await;
        assert_eq!(r.code, Some(0), "k={k}: teardown\n{r}");
        assert_nothing_left(&e.direct, &stack).await;
        converged += 1;
    }
    println!("crash consistency: {converged} of {n}");
    assert_eq!(converged, n);
}

/// A crash right after the lock was taken leaves only the lock: teardown removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teardown_removes_a_lock_left_by_a_killed_deploy() {
    // Boxed: the deploy futures are too large for a test thread's stack in debug builds.
    Box::pin(teardown_removes_a_lock_left_by_a_killed_deploy_body()).await
}

async fn teardown_removes_a_lock_left_by_a_killed_deploy_body() {
    let e = env().await;
    let cli = Cli::new().await;
    let endpoint = e.proxy.endpoint_url();
    e.proxy.clear();
    e.proxy.hold_after_mutating(1);
    let mut child = cli
        .command(&endpoint, &strs(&cli.deploy_args("crash-lock")))
        .spawn()
        .unwrap();
    assert!(e.proxy.wait_held(Duration::from_secs(120)).await);
    child.kill().await.unwrap();
    e.proxy.release();
    let (_, holder) = infra::lock::read(&e.aws, "crash-lock")
        .await
        .unwrap()
        .expect("the killed deploy's lock");
    assert_eq!(holder.operation, "deploy");

    let r = cli
        .run(
            &endpoint,
            &["teardown", "--stack", "crash-lock", "--dry-run"],
        )
        .await;
    assert_eq!(r.code, Some(2), "{r}");
    assert!(r.stdout.contains("claude-proxy/crash-lock/lock"), "{r}");
    let r = cli
        .run(&endpoint, &["teardown", "--stack", "crash-lock", "--yes"])
        .await;
    assert_eq!(r.code, Some(0), "{r}");
    assert!(r.stdout.contains("stale deploy lock"), "{r}");
    assert_nothing_left(&e.direct, "crash-lock").await;
    let r = cli
        .run(&endpoint, &["teardown", "--stack", "crash-lock", "--yes"])
        .await;
    assert_eq!(r.code, Some(3), "{r}");
}

/// The lock and the cleanup need only what `docs/deployer-policy.json` allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deployer_policy_covers_the_lock_and_the_cleanup() {
    Box::pin(the_deployer_policy_covers_the_lock_and_the_cleanup_body()).await
}

async fn the_deployer_policy_covers_the_lock_and_the_cleanup_body() {
    let policy: serde_json::Value =
        serde_json::from_str(include_str!("../../docs/deployer-policy.json")).unwrap();
    let allowed: std::collections::BTreeSet<String> = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| stand_ins::stack_support::as_strings(&s["Action"]))
        .collect();
    let e = env().await;
    let cli = Cli::new().await;
    cli.stack_toml(ALARMS);
    let endpoint = e.proxy.endpoint_url();
    e.proxy.clear();
    let r = cli
        .run(&endpoint, &strs(&cli.deploy_args("policy-lock")))
        .await;
    assert_eq!(r.code, Some(0), "{r}");
    let r = cli
        .run(&endpoint, &["teardown", "--older-than", "0s", "--yes"])
        .await;
    assert_eq!(r.code, Some(0), "{r}");
    assert!(r.stdout.contains("deleted      policy-lock"), "{r}");
    assert_nothing_left(&e.direct, "policy-lock").await;
    let needed: std::collections::BTreeSet<String> = e
        .proxy
        .calls()
        .iter()
        .filter_map(|c| {
            if c.service == "lambda" && c.method == "GET" && c.path.ends_with("/functions") {
                Some("lambda:ListFunctions".to_string())
            } else {
                stand_ins::iam_actions::iam_action(c)
            }
        })
        .collect();
    for a in [
        "lambda:ListFunctions",
        "iam:ListRoles",
        "secretsmanager:ListSecrets",
        "secretsmanager:CreateSecret",
        "secretsmanager:GetSecretValue",
        "secretsmanager:DeleteSecret",
        "sns:ListTopics",
        "sns:DeleteTopic",
        "cloudwatch:DeleteAlarms",
    ] {
        assert!(needed.contains(a), "{a} was not called: {needed:?}");
    }
    let missing: Vec<&String> = needed.difference(&allowed).collect();
    assert!(
        missing.is_empty(),
        "docs/deployer-policy.json lacks {missing:?}"
    );
}
