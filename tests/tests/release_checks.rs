//! The release's checks, for real: the `cargo xtask deploy` binary through the proxy in
//! front of moto, with `Invoke` of each published version run by the [`VersionServer`]
//! under the Lambda emulator (the real handler `bootstrap`, the fake Messages API as its
//! upstream), and CloudWatch answered by the proxy's stand-in, into which the test writes
//! the datapoints the emulator's invocations produced.
//!
//! - The smoke test sends the request `cargo xtask invoke` sends through the new version's
//!   own qualified endpoint before any traffic moves: a broken build is caught and `live`
//!   stays where it was.
//! - A version that fails while it holds its canary share is rolled back with no manual
//!   step, and the deploy fails saying what failed; a healthy one gets 100%.

use emulators::anthropic::FakeAnthropic;
use infra::artifact::Artifact;
use stand_ins::aws_proxy::cloudwatch::metrics::{Point, Series};
use stand_ins::handler_support::bootstrap_bin;
use stand_ins::stack_support::*;
use stand_ins::versions::VersionServer;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const STACK: &str = "checks";
const F: &str = "claude-proxy-checks";

async fn live(e: &Env) -> (String, Vec<(String, f64)>) {
    let a = aws_sdk_lambda::Client::new(&e.direct)
        .get_alias()
        .function_name(F)
        .name("live")
        .send()
        .await
        .unwrap();
    let weights = a
        .routing_config()
        .and_then(|r| r.additional_version_weights())
        .map(|w| w.iter().map(|(k, v)| (k.clone(), *v)).collect())
        .unwrap_or_default();
    (a.function_version().unwrap().to_string(), weights)
}

/// Waits (bounded) until `live` routes a share to `version`.
async fn until_shifting_to(e: &Env, version: &str) {
    let started = Instant::now();
    loop {
        let (_, weights) = live(e).await;
        if weights.iter().any(|(v, _)| v == version) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "live never routed a share to version {version}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The datapoints Lambda itself publishes for `version` behind `live` (into `AWS/Lambda`,
/// which `PutMetricData` refuses to callers: written into the stand-in's store directly).
async fn put_metrics(e: &Env, version: &str, invocations: f64, errors: f64) {
    let dimensions: BTreeMap<String, String> = [
        ("FunctionName", F.to_string()),
        ("Resource", format!("{F}:live")),
        ("ExecutedVersion", version.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    e.proxy.with_cloudwatch(|cw| {
        for (metric, value) in [
            ("Invocations", invocations),
            ("Errors", errors),
            ("Throttles", 0.0),
        ] {
            cw.metrics.points.push(Point {
                series: Series {
                    region: REGION.into(),
                    namespace: "AWS/Lambda".into(),
                    metric: metric.into(),
                    dimensions: dimensions.clone(),
                },
                unit: Some("Count".into()),
                time: now,
                count: 1.0,
                sum: value,
                min: value,
                max: value,
                values: vec![(value, 1.0)],
            });
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_build_never_gets_traffic_and_a_failing_canary_is_rolled_back() {
    Box::pin(body()).await
}

async fn body() {
    let e = env().await;
    let cli = Cli::new().await;
    let endpoint = e.proxy.endpoint_url();
    let upstream = FakeAnthropic::start(KEY).await.unwrap();
    let good = bootstrap_bin().await.unwrap();
    let good_sha = Artifact::from_bootstrap(&good).unwrap().code_sha256;
    let server = VersionServer::new(&e.direct, &e.moto.endpoint_url());
    server.register(&good_sha, &good);
    // The pipeline tests' pretend bootstrap: an ELF header that cannot run (executable, so
    // the emulator tries, and fails, as Lambda would).
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cli.bootstrap, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    server.register(&cli.code_sha256, &cli.bootstrap);
    e.proxy.route_invocations(server.clone());
    std::fs::write(
        cli.dir.path().join("stack.toml"),
        format!(
            "[stack]\nname = \"{STACK}\"\n[limits]\nanthropic_base_url = \"{}\"\n[release]\ncanary_interval_seconds = 20\n",
            upstream.base_url()
        ),
    )
    .unwrap();
    let good_s = good.to_str().unwrap();
    let broken_s = cli.bootstrap.to_str().unwrap();

    // 1. A good build: smoke tested through the handler, then live.
    let r = cli
        .run(&endpoint, &["deploy", "--bootstrap", good_s, "--yes"])
        .await;
    assert_eq!(r.code, Some(0), "{r}");
    assert_eq!(
        server.counts("1").invocations,
        1,
        "the smoke request ran: {r}"
    );
    assert_eq!(server.counts("1").errors, 0);
    assert_eq!(live(&e).await, ("1".to_string(), vec![]));
    let json = cli.run(&endpoint, &["releases", "--output", "json"]).await;
    assert_eq!(json.code, Some(0), "{json}");
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["live"]["version"], "1");
    assert_eq!(v["versions"][0]["code_sha256"], good_sha.as_str());

    // 2. A broken build: published, smoke tested, refused; no traffic ever reaches it.
    let r = cli
        .run(&endpoint, &["deploy", "--bootstrap", broken_s, "--yes"])
        .await;
    assert_eq!(r.code, Some(1), "{r}");
    assert!(
        r.stderr.contains("the smoke test of version 2 failed"),
        "{r}"
    );
    assert!(r.stderr.contains("live is unchanged"), "{r}");
    assert!(r.stderr.contains("the new version was not released"), "{r}");
    assert!(!r.stderr.contains("failed part way"), "{r}");
    assert!(r.stderr.contains("request id version-server-2-"), "{r}");
    assert_eq!(server.counts("2").errors, 1);
    assert_eq!(live(&e).await, ("1".to_string(), vec![]));

    // 3. The same build in a canary without the smoke test: version 2 gets 10%, fails
    //    there (its invocations under the emulator, written to CloudWatch as Lambda
    //    would), and is rolled back automatically.
    let mut deploy = cli.command(
        &endpoint,
        &[
            "deploy",
            "--bootstrap",
            broken_s,
            "--yes",
            "--strategy",
            "canary",
            "--skip-smoke-test",
        ],
    );
    let running = deploy.spawn().unwrap();
    until_shifting_to(&e, "2").await;
    assert_eq!(
        live(&e).await,
        ("1".to_string(), vec![("2".to_string(), 0.1)])
    );
    let before = server.counts("2");
    for _ in 0..3 {
        let out = e
            .aws
            .lambda
            .invoke()
            .function_name(F)
            .qualifier("2")
            .payload(aws_sdk_lambda::primitives::Blob::new("{}"))
            .send()
            .await
            .unwrap();
        assert!(out.function_error().is_some());
    }
    let after = server.counts("2");
    put_metrics(
        &e,
        "2",
        (after.invocations - before.invocations) as f64,
        (after.errors - before.errors) as f64,
    )
    .await;
    let out = running.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("release of version 2 rolled back"),
        "{stderr}"
    );
    assert!(stderr.contains("3 errors and 0 throttles"), "{stderr}");
    assert!(
        stderr.contains("live is back on version 1 (100%)"),
        "{stderr}"
    );
    assert_eq!(live(&e).await, ("1".to_string(), vec![]));

    // 4. A healthy version in a canary: smoke tested, 10% with no errors, then 100%.
    let mut deploy = cli.command(
        &endpoint,
        &[
            "deploy",
            "--bootstrap",
            good_s,
            "--memory",
            "512",
            "--yes",
            "--strategy",
            "canary",
        ],
    );
    let running = deploy.spawn().unwrap();
    until_shifting_to(&e, "3").await;
    assert_eq!(server.counts("3").invocations, 1, "smoke tested first");
    put_metrics(&e, "3", 40.0, 0.0).await;
    let out = running.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(live(&e).await, ("3".to_string(), vec![]));

    let r = cli.run(&endpoint, &["teardown", "--yes"]).await;
    assert_eq!(r.code, Some(0), "{r}");
    assert_nothing_left(&e.direct, STACK).await;
}
