//! Transient AWS faults between the toolkit and moto: throttling (in each service's own
//! form), 500 and 503 answers, and connections closed without an answer, on every third
//! call. Deploy and teardown still succeed: the SDK's standard retry mode
//! (`infra::aws::retry_config`) retries them, and `-v` on the CLI shows each retry.

use stand_ins::aws_proxy::{Fault, Matcher};
use stand_ins::stack_support::{
    assert_nothing_left, check_deployed, check_deployed_code, deploy, env, plan_for, strs, Cli, Env,
};

/// One fault on every third call, cycling through throttling, 500, 503 and a reset.
fn inject_mix(e: &Env) {
    let every = 12;
    e.proxy.inject(Fault::throttling(
        Matcher::EveryNth { every, offset: 3 },
        usize::MAX,
    ));
    e.proxy.inject(Fault::server_error(
        Matcher::EveryNth { every, offset: 6 },
        500,
        usize::MAX,
    ));
    e.proxy.inject(Fault::server_error(
        Matcher::EveryNth { every, offset: 9 },
        503,
        usize::MAX,
    ));
    e.proxy.inject(Fault::reset(
        Matcher::EveryNth { every, offset: 12 },
        usize::MAX,
    ));
}

/// Which kinds of fault were injected, by status (0 = reset).
fn injected_statuses(e: &Env) -> std::collections::BTreeSet<u16> {
    e.proxy
        .calls()
        .iter()
        .filter(|c| c.injected)
        .map(|c| c.status)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_and_teardown_succeed_through_transient_faults() {
    // Boxed: the deploy futures are too large for a test thread's stack in debug builds.
    Box::pin(deploy_and_teardown_succeed_through_transient_faults_body()).await
}

async fn deploy_and_teardown_succeed_through_transient_faults_body() {
    let e = env().await;
    inject_mix(&e);
    let (_, out) = deploy(&e.aws, "flaky").await;
    let during_deploy = e.proxy.injected_count();
    assert!(
        during_deploy >= 10,
        "only {during_deploy} faults were injected"
    );
    // 400 (JSON/query throttling), 429 (Lambda/API Gateway throttling), 500, 503, reset.
    // Throttling (400 or 429 by service), 500, 503 and resets (0) all happened.
    let kinds = injected_statuses(&e);
    assert!(kinds.contains(&400) && kinds.contains(&429), "{kinds:?}");
    for s in [500, 503, 0] {
        assert!(kinds.contains(&s), "no {s} injected: {kinds:?}");
    }
    check_deployed(&e.direct, "flaky", &out).await;
    let d = stand_ins::stack_support::desired(
        &stand_ins::stack_support::overrides("flaky"),
        Some(stand_ins::stack_support::KEY),
    );
    assert!(plan_for(&e.aws, &d).await.is_empty());

    let before = e.proxy.injected_count();
    let report = Box::pin(infra::teardown(&e.aws, "flaky", &infra::Silent))
        .await
        .unwrap();
    assert!(!report.nothing_to_do());
    assert!(
        e.proxy.injected_count() - before >= 5,
        "teardown saw {} faults",
        e.proxy.injected_count() - before
    );
    assert_nothing_left(&e.direct, "flaky").await;
    println!(
        "{} transient faults injected; deploy and teardown succeeded",
        e.proxy.injected_count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_logs_each_retry_with_verbose() {
    // Boxed: the deploy futures are too large for a test thread's stack in debug builds.
    Box::pin(the_cli_logs_each_retry_with_verbose_body()).await
}

async fn the_cli_logs_each_retry_with_verbose_body() {
    let e = env().await;
    let cli = Cli::new().await;
    let endpoint = e.proxy.endpoint_url();
    inject_mix(&e);

    let mut args = cli.deploy_args("flaky-cli");
    args.push("-v".into());
    let r = cli.run(&endpoint, &strs(&args)).await;
    assert_eq!(r.code, Some(0), "{r}");
    let retries: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains("retrying ") && l.contains(") after "))
        .collect();
    let injected = e.proxy.injected_count();
    assert!(injected >= 10, "{injected} faults:\n{r}");
    assert_eq!(
        retries.len(),
        injected,
        "one retry line per injected fault:\n{}",
        retries.join("\n")
    );
    for what in [
        "after HTTP 429 TooManyRequestsException",
        "after HTTP 500",
        "after HTTP 503",
    ] {
        assert!(
            retries.iter().any(|l| l.contains(what)),
            "no retry `{what}` in:\n{}",
            retries.join("\n")
        );
    }
    // A closed connection is a dispatch failure the SDK retries too.
    assert!(
        retries.iter().any(|l| !l.contains("after HTTP ")),
        "no retry after a closed connection in:\n{}",
        retries.join("\n")
    );
    println!("{}", retries.join("\n"));
    let out: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(out["stack"], "flaky-cli");

    // Converged despite the faults.
    let desired = cli.desired("flaky-cli");
    let plan = plan_for(&e.aws, &desired).await;
    assert!(plan.is_empty(), "{plan}");
    let outputs = Box::pin(infra::apply(&e.aws, &plan, &desired, &infra::Silent))
        .await
        .unwrap();
    check_deployed_code(&e.direct, "flaky-cli", &outputs, &cli.code_sha256).await;

    // Teardown through the same faults, also verbose.
    let before = e.proxy.injected_count();
    let r = cli
        .run(
            &endpoint,
            &["teardown", "--stack", "flaky-cli", "--yes", "-v"],
        )
        .await;
    assert_eq!(r.code, Some(0), "{r}");
    let retries = r
        .stderr
        .lines()
        .filter(|l| l.contains("retrying ") && l.contains(") after "))
        .count();
    assert!(retries >= 3, "{r}");
    let injected: Vec<String> = e.proxy.calls()[..]
        .iter()
        .filter(|c| c.injected)
        .skip(before)
        .map(|c| format!("{c} {}", c.status))
        .collect();
    assert_eq!(retries, injected.len(), "{r}\ninjected: {injected:#?}");
    assert_nothing_left(&e.direct, "flaky-cli").await;

    // Without -v the retries are not shown.
    e.proxy.clear();
    inject_mix(&e);
    let r = cli
        .run(&endpoint, &["teardown", "--stack", "flaky-cli", "--yes"])
        .await;
    assert_eq!(r.code, Some(3), "{r}");
    assert!(!r.stderr.contains("retrying "), "{r}");
}
