//! Parallel apply under randomised latency: the proxy in front of moto delays every call by a
//! seeded random draw (uniform in 0..2x its median in `emulators/src/aws_latency.toml`, one
//! call in five eight times that, scaled down), holds new functions `Pending` and updates `InProgress`, and keeps a new role
//! unassumable for the (scaled) propagation window. Whichever call is slow, a first deploy, a
//! configuration change and a teardown each converge, and no call starts before the calls it
//! depends on were answered. The seed is printed; `LATENCY_SEED=<n>` replays a run.

use stand_ins::aws_proxy::latency::Latency;
use stand_ins::aws_proxy::Call;
use stand_ins::stack_support::{
    assert_nothing_left, check_deployed, deploy_with, desired, env, overrides, plan_for, KEY,
};

/// Runs of one deploy → change → teardown, each with its own seed.
const ROUNDS: u64 = 3;
/// The model at a twentieth of its speed: calls take milliseconds, the IAM window 350 ms.
const SCALE: f64 = 0.05;

/// What must be answered before a call of the first kind may start, in one phase.
const ORDER: &[(&str, &[&str])] = &[
    // Deploy: the function names the secret, the role (with its policy) and the log group.
    ("PutRolePolicy", &["CreateRole", "CreateSecret"]),
    (
        "CreateFunction",
        &[
            "CreateSecret",
            "CreateRole",
            "PutRolePolicy",
            "CreateLogGroup",
        ],
    ),
    ("CreateFunctionUrlConfig", &["CreateFunction"]),
    ("PutFunctionConcurrency", &["CreateFunction"]),
    ("CreateApi", &["CreateFunction"]),
    (
        "AddPermission",
        &[
            "CreateFunction",
            "CreateFunctionUrlConfig",
            "CreateApi",
            "CreateIntegration",
        ],
    ),
    // A change: updates after the deletions.
    (
        "UpdateFunctionConfiguration",
        &["DeleteApi", "RemovePermission"],
    ),
    // Teardown: the function after its parts, the role after its policy.
    (
        "DeleteFunction",
        &[
            "RemovePermission",
            "DeleteFunctionUrlConfig",
            "DeleteFunctionConcurrency",
        ],
    ),
    ("DeleteRole", &["DeleteRolePolicy"]),
    ("DeleteLogGroup", &["DeleteFunction"]),
];

/// Every successful call named first in [`ORDER`] started after every successful call it
/// waits for was answered. Returns how many pairs of mutating calls overlapped in time.
fn check_order(calls: &[Call], phase: &str, seed: u64) -> usize {
    let ok: Vec<&Call> = calls
        .iter()
        .filter(|c| (200..300).contains(&c.status) && c.mutating)
        .collect();
    for (after, before) in ORDER {
        for a in ok.iter().filter(|c| c.api == *after) {
            for b in ok.iter().filter(|c| before.contains(&c.api.as_str())) {
                assert!(
                    a.started >= b.answered,
                    "seed {seed}, {phase}: {} started {:?} before {} was answered",
                    a.api,
                    b.answered - a.started,
                    b.api
                );
            }
        }
    }
    let mut overlapping = 0;
    for (i, a) in ok.iter().enumerate() {
        for b in &ok[i + 1..] {
            if a.started < b.answered && b.started < a.answered {
                overlapping += 1;
            }
        }
    }
    overlapping
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_randomised_latency_every_run_converges_and_keeps_the_order_aws_needs() {
    // Boxed: the deploy futures are too large for a test thread's stack in debug builds.
    Box::pin(body()).await
}

async fn body() {
    let first_seed = std::env::var("LATENCY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..1_000_000));
    println!("LATENCY_SEED={first_seed} (set it to replay this run)");
    let e = env().await;
    let mut overlapping = 0;
    for round in 0..ROUNDS {
        let seed = first_seed + round;
        e.proxy.set_latency(Some(Latency {
            randomise: true,
            ..Latency::model(SCALE, seed)
        }));
        let stack = format!("latency-{round}");
        let o = overrides(&stack);

        e.proxy.clear();
        let (_, out) = deploy_with(&e.aws, &o, Some(KEY))
            .await
            .unwrap_or_else(|err| panic!("seed {seed}: first deploy: {err:?}"));
        overlapping += check_order(&e.proxy.calls(), "first deploy", seed);
        let plan = plan_for(&e.aws, &desired(&o, Some(KEY))).await;
        assert!(plan.is_empty(), "seed {seed}: not converged:\n{plan}");
        check_deployed(&e.direct, &stack, &out).await;

        // A change: more memory, no HTTP API (its permission and the API go).
        let changed = infra::config::Overrides {
            memory_mb: Some(1024),
            http_api: Some(false),
            ..o.clone()
        };
        e.proxy.clear();
        deploy_with(&e.aws, &changed, Some(KEY))
            .await
            .unwrap_or_else(|err| panic!("seed {seed}: change: {err:?}"));
        check_order(&e.proxy.calls(), "change", seed);
        let plan = plan_for(&e.aws, &desired(&changed, Some(KEY))).await;
        assert!(
            plan.is_empty(),
            "seed {seed}: change not converged:\n{plan}"
        );

        e.proxy.clear();
        Box::pin(infra::teardown(&e.aws, &stack, &infra::Silent))
            .await
            .unwrap_or_else(|err| panic!("seed {seed}: teardown: {err:?}"));
        overlapping += check_order(&e.proxy.calls(), "teardown", seed);
        assert_nothing_left(&e.direct, &stack).await;
    }
    // Independent steps ran at the same time (a serial apply never overlaps two calls).
    assert!(
        overlapping > 0,
        "seed {first_seed}: no two mutating calls overlapped"
    );
}
