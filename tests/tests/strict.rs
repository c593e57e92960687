//! The toolkit against a stand-in as strict as real AWS: moto behind the proxy with the
//! profiles of `stand_ins::aws_proxy::strict` (a new account's concurrency, IAM propagation
//! lag, reads lagging deletes, `CreateSecret` refused while a name is being deleted). Each
//! test fails on a toolkit that only works on moto.

use infra::config::{ConcurrencySetting, Overrides};
use infra::names::Names;
use infra::{Kind, Recorder};
use serde_json::Value;
use stand_ins::aws_proxy::strict::{self, Profile};
use stand_ins::stack_support::*;
use std::time::Duration;

async fn strict_env(profiles: Vec<Profile>) -> Env {
    let e = env().await;
    e.proxy.enable_all(profiles);
    e
}

async fn reserved_in_moto(e: &Env, stack: &str) -> Option<i32> {
    aws_sdk_lambda::Client::new(&e.direct)
        .get_function_concurrency()
        .function_name(format!("claude-proxy-{stack}"))
        .send()
        .await
        .unwrap()
        .reserved_concurrent_executions()
}

/// The writes the proxy answered for `operation` (substring), with their status codes.
fn statuses(e: &Env, service: &str, operation: &str) -> Vec<u16> {
    e.proxy
        .calls()
        .iter()
        // Writes only: reads (the stack's, all at once, answer 404 before things exist) are
        // not what these checks count.
        .filter(|c| c.mutating && c.service == service && c.operation.contains(operation))
        .map(|c| c.status)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_account_default_deploy_succeeds_without_a_reservation() {
    let e = strict_env(vec![Profile::new_account()]).await;
    let (p, out) = deploy(&e.aws, "newacct").await;
    assert_eq!(p.reserved_concurrency, None, "{p}");
    assert!(
        !p.changes.iter().any(|c| c.kind == Kind::Concurrency),
        "{p}"
    );
    let note = p
        .notes
        .iter()
        .find(|n| n.contains("reserved concurrency"))
        .unwrap_or_else(|| panic!("no note on the reservation: {p}"));
    for part in ["asks for 17", "quota in us-east-1 is 10", "Service Quotas"] {
        assert!(note.contains(part), "{note}");
    }
    assert!(p.to_string().contains(note.as_str()));
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["reserved_concurrency"], Value::Null);
    assert_eq!(out.spend_bound.reserved_concurrency, None);
    assert_eq!(reserved_in_moto(&e, "newacct").await, None);
    check_deployed(&e.direct, "newacct", &out).await;
    // Nothing was even tried.
    assert!(!e
        .proxy
        .mutating_calls()
        .iter()
        .any(|c| c.operation.ends_with("/concurrency")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_account_explicit_concurrency_is_a_blocker_before_any_change() {
    let e = strict_env(vec![Profile::new_account()]).await;
    let o = Overrides {
        concurrency: Some(ConcurrencySetting::Reserved(5)),
        ..overrides("explicit")
    };
    let d = desired(&o, Some(KEY));
    let p = plan_for(&e.aws, &d).await;
    assert_eq!(p.reserved_concurrency, Some(5));
    let blocker = p
        .blockers
        .iter()
        .find(|b| b.contains("reserved concurrency 5 cannot be met"))
        .unwrap_or_else(|| panic!("no blocker: {p}"));
    assert!(blocker.contains("at most 0"), "{blocker}");
    let err = infra::apply(&e.aws, &p, &d, &infra::Silent)
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("cannot be met"), "{err:#}");
    assert_eq!(e.proxy.mutating_calls(), vec![], "nothing is created");
}

/// The floor is AWS's: an account whose floor is above the documented 100 refuses what the
/// plan thought possible, and the deploy names AWS's value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_floor_is_taken_from_aws_refusal() {
    let e = strict_env(vec![Profile::NewAccount {
        total: 150,
        floor: 140,
    }])
    .await;
    // auto: planned (150 - 17 >= 100), refused by Lambda, deployed without a reservation.
    let d = desired(&overrides("floor"), Some(KEY));
    let p = plan_for(&e.aws, &d).await;
    assert_eq!(p.reserved_concurrency, Some(17), "{p}");
    let rec = Recorder::default();
    let out = Box::pin(infra::apply(&e.aws, &p, &d, &rec)).await.unwrap();
    let warning = rec
        .events()
        .into_iter()
        .find(|w| w.starts_with("warn ") && w.contains("Lambda refused reserving 17"))
        .unwrap_or_else(|| panic!("{:?}", rec.events()));
    assert!(warning.contains("at least 140 unreserved"), "{warning}");
    assert_eq!(out.spend_bound.reserved_concurrency, None);
    assert_eq!(reserved_in_moto(&e, "floor").await, None);
    assert_eq!(statuses(&e, "lambda", "/concurrency"), [400]);

    // An explicit number: the error names AWS's floor.
    let o = Overrides {
        concurrency: Some(ConcurrencySetting::Reserved(17)),
        ..overrides("floor")
    };
    let err = deploy_with(&e.aws, &o, Some(KEY)).await.unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("minimum value of [140]"), "{msg}");
    assert!(msg.contains("keeps at least 140"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teardown_waits_for_reads_to_catch_up() {
    let e = strict_env(vec![Profile::ReadsLagDeletes(Duration::from_secs(3))]).await;
    deploy(&e.aws, "lagged").await;
    let report = infra::teardown(&e.aws, "lagged", &infra::Silent)
        .await
        .unwrap();
    assert!(!report.nothing_to_do());
    assert_nothing_left(&e.direct, "lagged").await;
    // The reads did lag: the proxy answered a read of the deleted function from before.
    let replayed = e
        .proxy
        .calls()
        .iter()
        .filter(|c| c.injected && c.operation == "GET /2015-03-31/functions/claude-proxy-lagged")
        .count();
    assert!(replayed > 0, "{:#?}", e.proxy.calls());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_force_deleted_secret_is_gone_and_its_name_is_retried() {
    let e = strict_env(vec![Profile::ReadsLagDeletes(Duration::from_secs(3))]).await;
    deploy(&e.aws, "secretlag").await;
    let names = Names::new("secretlag");
    // Seen once, then force-deleted (as teardown does).
    let before = infra::read_actual(&e.aws, "secretlag").await.unwrap();
    let arn = before.secret.unwrap().arn;
    infra::secret::delete(&e.aws, &arn).await.unwrap();
    let after = infra::read_actual(&e.aws, "secretlag").await.unwrap();
    assert!(after.secret.is_none(), "{:?}", after.secret);
    // AWS still describes it (with a DeletedDate): the read above was answered by the lag.
    assert!(e
        .proxy
        .calls()
        .iter()
        .any(|c| c.injected && c.operation == "DescribeSecret"));

    // The deploy creates it again, waiting for the name to be free.
    let d = desired(&overrides("secretlag"), Some(KEY));
    let p = plan_for(&e.aws, &d).await;
    let change = p
        .changes
        .iter()
        .find(|c| c.kind == Kind::Secret && c.name == names.secret)
        .unwrap_or_else(|| panic!("{p}"));
    assert!(matches!(change.change, infra::Change::Create { .. }), "{p}");
    e.proxy.clear();
    let rec = Recorder::default();
    let out = Box::pin(infra::apply(&e.aws, &p, &d, &rec)).await.unwrap();
    assert!(out.caller_token.is_some());
    let creates = statuses(&e, "secretsmanager", "CreateSecret");
    assert_eq!(creates.last(), Some(&200), "{creates:?}");
    assert!(
        creates.contains(&400),
        "the name was refused first: {creates:?}"
    );
    assert!(rec
        .events()
        .iter()
        .any(|w| w.contains("still held by its deleted secret")));
    check_deployed(&e.direct, "secretlag", &out).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_function_configuration_waits_for_a_new_role() {
    let e = strict_env(vec![Profile::IamPropagationLag(Duration::from_secs(2))]).await;
    deploy(&e.aws, "iamlag").await;
    // The role goes away behind the toolkit's back (straight to moto).
    let names = Names::new("iamlag");
    let iam = aws_sdk_iam::Client::new(&e.direct);
    iam.delete_role_policy()
        .role_name(&names.role)
        .policy_name(&names.role_policy)
        .send()
        .await
        .unwrap();
    iam.delete_role()
        .role_name(&names.role)
        .send()
        .await
        .unwrap();
    e.proxy.clear();
    // The redeploy makes a new role and changes the function's configuration, which names it.
    let o = Overrides {
        memory_mb: Some(512),
        ..overrides("iamlag")
    };
    let (p, out) = deploy_with(&e.aws, &o, Some(KEY)).await.unwrap();
    assert!(p.changes.iter().any(|c| c.kind == Kind::Role), "{p}");
    let updates = statuses(&e, "lambda", "/configuration");
    assert!(
        updates.contains(&400) && updates.last() == Some(&200),
        "{updates:?}"
    );
    assert!(out.changed);
}

/// Both actions an AWS_IAM URL's callers need are granted to the deployer (whose `invoke
/// --sigv4` is such a caller) and named in the plan.
#[test]
fn aws_iam_urls_need_invoke_function_url_and_invoke_function() {
    let policy: Value =
        serde_json::from_str(include_str!("../../docs/deployer-policy.json")).unwrap();
    let stack_function = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Sid"] == "StackFunction")
        .unwrap();
    let actions = as_strings(&stack_function["Action"]);
    for a in ["lambda:InvokeFunctionUrl", "lambda:InvokeFunction"] {
        assert!(actions.iter().any(|x| x == a), "{a} missing: {actions:?}");
    }
}

/// Deploy, redeploy (no changes), teardown, deploy again right away, teardown: under every
/// strict profile at once (`strict::all()`: new profiles join by one line there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_redeploy_teardown_redeploy_under_every_profile() {
    let e = strict_env(strict::all()).await;
    cycle(&e).await;
}

/// The same cycle in China (`aws-cn`), with the partition profile on top of every other:
/// ARNs of the wrong partition are refused as AWS refuses them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cycle_under_every_profile_in_another_partition() {
    let e = env_in("cn-north-1").await;
    e.proxy.enable_all(strict::all());
    e.proxy.strict_partition();
    assert_eq!(e.aws.partition, "aws-cn");
    cycle(&e).await;
}

/// Deploy, redeploy (nothing to do), teardown (nothing left), deploy again, redeploy,
/// teardown: the stack converges every time.
async fn cycle(e: &Env) {
    let (first, out) = deploy(&e.aws, "cycle").await;
    assert!(out.changed, "{first}");
    check_deployed(&e.direct, "cycle", &out).await;
    let (again, out2) = deploy(&e.aws, "cycle").await;
    assert!(again.is_empty(), "a redeploy changes nothing: {again}");
    assert!(!out2.changed);
    infra::teardown(&e.aws, "cycle", &infra::Silent)
        .await
        .unwrap();
    assert_nothing_left(&e.direct, "cycle").await;
    let (_, out3) = deploy(&e.aws, "cycle").await;
    check_deployed(&e.direct, "cycle", &out3).await;
    let (settled, _) = deploy(&e.aws, "cycle").await;
    assert!(settled.is_empty(), "{settled}");
    infra::teardown(&e.aws, "cycle", &infra::Silent)
        .await
        .unwrap();
    assert_nothing_left(&e.direct, "cycle").await;
    // Each profile was met: the proxy answered some calls itself.
    assert!(e.proxy.injected_count() > 0);
}

/// With no Region anywhere, off EC2: the toolkit's own error, no SDK warning, and no
/// instance-metadata probe (a stand-in metadata endpoint counts connections).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_region_off_ec2_says_so_without_probing_instance_metadata() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let imds = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let server = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let _ = s
                .write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\nconnection: close\r\n\r\nnope")
                .await;
        }
    });
    let cli = Cli::new().await;
    let mut cmd = cli.command("http://127.0.0.1:9", &["plan", "--stack", "noregion"]);
    cmd.env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env_remove("AWS_EC2_METADATA_DISABLED")
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds);
    let out = cmd.output().await.unwrap();
    server.abort();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no AWS region"), "{stderr}");
    assert!(
        !stderr.contains("WARN"),
        "the SDK's own log lines: {stderr}"
    );
    assert!(!stderr.contains("aws_config"), "{stderr}");
    if infra::aws::looks_like_ec2() {
        eprintln!("this machine is an EC2 instance: its Region may come from instance metadata");
    } else {
        assert_eq!(
            hits.load(Ordering::SeqCst),
            0,
            "instance metadata was asked: {stderr}"
        );
    }
}
