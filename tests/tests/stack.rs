//! Deploy, redeploy, change, teardown against moto server, through a recording and
//! fault-injecting proxy. Checks are made with plain AWS SDK clients talking to moto
//! directly (not through infra's reader, and not through the proxy, so they are not
//! counted as the toolkit's calls).
//!
//! Each test starts its own moto server (so parallel tests share nothing) and uses its own
//! stack names.

use infra::config::{Overrides, StackConfig};
use infra::{artifact::Artifact, Desired, SecretInput};
use serde_json::Value;
use stand_ins::aws_proxy::Fault;
use stand_ins::stack_support::*;
use std::collections::BTreeSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_deploy_creates_the_least_privilege_stack() {
    let e = env().await;
    let (p, out) = deploy(&e.aws, "full").await;
    assert_eq!(p.changes.len(), 13, "{p}");
    assert!(out.changed);
    assert!(out.caller_token.is_some());

    // Exactly these mutating calls, in this order.
    let api_id = e
        .proxy
        .calls()
        .iter()
        .find_map(|c| {
            c.path
                .strip_prefix("/v2/apis/")
                .map(|r| r.split('/').next().unwrap().to_string())
        })
        .expect("calls on the new API");
    let ops: Vec<String> = e
        .proxy
        .mutating_calls()
        .iter()
        .map(|c| format!("{} {}", c.service, c.operation.replace(&api_id, "{api}")))
        .collect();
    let f = "claude-proxy-full";
    assert_eq!(
        ops,
        [
            "secretsmanager CreateSecret".to_string(),
            "logs CreateLogGroup".into(),
            "logs PutRetentionPolicy".into(),
            "iam CreateRole".into(),
            "iam PutRolePolicy".into(),
            "lambda POST /2015-03-31/functions".into(),
            format!("lambda PUT /2017-10-31/functions/{f}/concurrency"),
            format!("lambda POST /2015-03-31/functions/{f}/versions"),
            format!("lambda POST /2015-03-31/functions/{f}/aliases"),
            format!("lambda POST /2021-10-31/functions/{f}/url"),
            "apigateway POST /v2/apis".into(),
            "apigateway POST /v2/apis/{api}/integrations".into(),
            "apigateway POST /v2/apis/{api}/routes".into(),
            "apigateway POST /v2/apis/{api}/routes".into(),
            "apigateway POST /v2/apis/{api}/routes".into(),
            "apigateway POST /v2/apis/{api}/routes".into(),
            "apigateway POST /v2/apis/{api}/stages".into(),
            format!("lambda POST /2015-03-31/functions/{f}/policy"),
            format!("lambda POST /2015-03-31/functions/{f}/policy"),
            format!("lambda POST /2015-03-31/functions/{f}/policy"),
        ]
    );
    check_deployed(&e.direct, "full", &out).await;

    // Outputs for people and for CI.
    let json = serde_json::to_value(&out).unwrap();
    for k in [
        "stack",
        "function_url",
        "api_url",
        "function_arn",
        "role_arn",
        "secret_arn",
        "caller_token",
        "changed",
        "spend_bound",
    ] {
        assert!(
            json.get(k).is_some_and(|v| !v.is_null()),
            "missing {k} in {json:#}"
        );
    }
    assert_eq!(json["spend_bound"]["max_in_flight_requests"], 17);
    assert_eq!(
        json["spend_bound"]["max_output_tokens_in_flight"],
        17 * 4096
    );
    let text = out.to_string();
    assert!(
        text.contains(out.caller_token.as_ref().unwrap().expose()),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_deploy_makes_no_mutating_calls() {
    let e = env().await;
    let (_, first) = deploy(&e.aws, "twice").await;
    e.proxy.clear();
    let (p, out) = deploy(&e.aws, "twice").await;
    assert!(p.is_empty(), "{p}");
    assert!(p.to_string().contains("no changes"), "{p}");
    assert!(!out.changed);
    assert!(out.to_string().contains("no changes"));
    assert!(
        out.caller_token.is_none(),
        "no token is rotated on redeploy"
    );
    assert_eq!(out.function_url, first.function_url);
    assert_eq!(out.api_url, first.api_url);
    assert_eq!(out.secret_arn, first.secret_arn);
    assert!(!e.proxy.calls().is_empty(), "the state was read");
    assert_eq!(
        e.proxy.mutating_calls(),
        vec![],
        "a second deploy must not write"
    );

    // Rotating the token is the only change when asked for.
    let mut d = desired(&overrides("twice"), None);
    d.spec.as_mut().unwrap().secret.rotate_token = true;
    let p = plan_for(&e.aws, &d).await;
    assert_eq!(p.changes.len(), 1, "{p}");
    let out = infra::apply(&e.aws, &p, &d, &infra::Silent).await.unwrap();
    let token = out.caller_token.expect("a rotated token is shown");
    assert_ne!(Some(&token), first.caller_token.as_ref());
    let secrets = aws_sdk_secretsmanager::Client::new(&e.direct);
    let v: Value = serde_json::from_str(
        secrets
            .get_secret_value()
            .secret_id(&out.secret_arn)
            .send()
            .await
            .unwrap()
            .secret_string()
            .unwrap(),
    )
    .unwrap();
    // The caller `default`, by the rotated token's hash; the token itself is nowhere.
    assert_eq!(
        v["callers"][0]["token_sha256"],
        infra::callers::token_sha256(&token)
    );
    assert!(v["callers"][0]["rotated_at"].is_string(), "{v}");
    assert!(!v.to_string().contains(token.expose()));
    assert_eq!(
        v["anthropic_api_key"], KEY,
        "the key is kept when none is given"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_memory_changes_exactly_that() {
    let e = env().await;
    deploy(&e.aws, "mem").await;
    let o = Overrides {
        memory_mb: Some(512),
        ..overrides("mem")
    };
    let d = desired(&o, Some(KEY));
    let p = plan_for(&e.aws, &d).await;
    // The function, a version of it, and `live` moved onto that version.
    assert_eq!(p.changes.len(), 3, "{p}");
    assert_eq!(p.changes[0].kind, infra::Kind::Function);
    assert_eq!(p.changes[1].kind, infra::Kind::Version);
    assert_eq!(p.changes[2].kind, infra::Kind::Alias);
    assert_eq!(
        p.changes[0].change,
        infra::Change::Update {
            fields: vec![infra::FieldChange::new("memory_mb", "256", "512")]
        }
    );
    e.proxy.clear();
    infra::apply(&e.aws, &p, &d, &infra::Silent).await.unwrap();
    let ops: Vec<String> = e
        .proxy
        .mutating_calls()
        .iter()
        .map(|c| c.operation.clone())
        .collect();
    assert_eq!(
        ops,
        [
            "PUT /2015-03-31/functions/claude-proxy-mem/configuration",
            "POST /2015-03-31/functions/claude-proxy-mem/versions",
            "PUT /2015-03-31/functions/claude-proxy-mem/aliases/live",
        ]
    );
    let lambda = aws_sdk_lambda::Client::new(&e.direct);
    let c = lambda
        .get_function_configuration()
        .function_name("claude-proxy-mem")
        .send()
        .await
        .unwrap();
    assert_eq!(c.memory_size(), Some(512));
    assert!(plan_for(&e.aws, &d).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teardown_leaves_nothing_and_twice_is_a_no_op() {
    let e = env().await;
    deploy(&e.aws, "gone").await;
    let report = infra::teardown(&e.aws, "gone", &infra::Silent)
        .await
        .unwrap();
    // With the alias `live` and the one version.
    assert_eq!(report.deleted.len(), 13, "{report}");
    assert_nothing_left(&e.direct, "gone").await;
    e.proxy.clear();
    let again = infra::teardown(&e.aws, "gone", &infra::Silent)
        .await
        .unwrap();
    assert!(again.nothing_to_do(), "{again}");
    assert!(again.to_string().contains("nothing to delete"));
    assert_eq!(e.proxy.mutating_calls(), vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_deploys_tear_down_and_converge() {
    let e = env().await;
    // How many mutating calls a full deploy makes.
    deploy(&e.aws, "count").await;
    let total = e.proxy.mutating_calls().len();
    assert!(total > 10);
    // Interrupt after the k-th mutating call: at the start, around the role and the
    // function, at the API, and just before the end.
    for k in [0, 1, 3, 4, 5, 6, 8, 11, total - 1] {
        for after_forwarding in [false, true] {
            let stack = format!(
                "cut-{k}-{}",
                if after_forwarding { "late" } else { "early" }
            );
            e.proxy.clear();
            let mut fault = Fault::interrupt_at_mutating(k + 1);
            fault.after_forwarding = after_forwarding;
            e.proxy.inject(fault);
            let err = deploy_with(&e.aws, &overrides(&stack), Some(KEY)).await;
            assert!(err.is_err(), "deploy cut at call {} should fail", k + 1);
            assert_eq!(e.proxy.injected_count(), 1);
            if k == 5 {
                // A failed deploy converges when run again...
                let (_, out) = deploy_with(&e.aws, &overrides(&stack), Some(KEY))
                    .await
                    .unwrap();
                assert!(out.changed);
                let d = desired(&overrides(&stack), Some(KEY));
                assert!(
                    plan_for(&e.aws, &d).await.is_empty(),
                    "stack {stack} did not converge"
                );
            }
            // ...and teardown removes whatever it left.
            infra::teardown(&e.aws, &stack, &infra::Silent)
                .await
                .unwrap();
            assert_nothing_left(&e.direct, &stack).await;
            let again = infra::teardown(&e.aws, &stack, &infra::Silent)
                .await
                .unwrap();
            assert!(again.nothing_to_do(), "{again}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stacks_coexist_and_tear_down_independently() {
    let e = env().await;
    let (_, a) = deploy(&e.aws, "alpha").await;
    let (_, b) = deploy(&e.aws, "beta").await;
    assert_ne!(a.function_arn, b.function_arn);
    assert_ne!(a.secret_arn, b.secret_arn);
    infra::teardown(&e.aws, "alpha", &infra::Silent)
        .await
        .unwrap();
    assert_nothing_left(&e.direct, "alpha").await;
    // beta is untouched: complete and unchanged.
    check_deployed(&e.direct, "beta", &b).await;
    assert!(plan_for(&e.aws, &desired(&overrides("beta"), Some(KEY)))
        .await
        .is_empty());
    infra::teardown(&e.aws, "beta", &infra::Silent)
        .await
        .unwrap();
    assert_nothing_left(&e.direct, "beta").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_propagation_error_is_retried() {
    let e = env().await;
    e.proxy.inject(Fault::role_not_assumable(3));
    let recorder = infra::Recorder::default();
    let d = desired(&overrides("iamwait"), Some(KEY));
    let p = plan_for(&e.aws, &d).await;
    let out = infra::apply(&e.aws, &p, &d, &recorder).await.unwrap();
    let creates: Vec<_> = e
        .proxy
        .calls()
        .into_iter()
        .filter(|c| c.service == "lambda" && c.operation == "POST /2015-03-31/functions")
        .collect();
    assert_eq!(creates.len(), 4, "{creates:?}");
    assert_eq!(creates.iter().filter(|c| c.injected).count(), 3);
    assert_eq!(creates.last().unwrap().status, 201);
    let warnings: Vec<_> = recorder
        .events()
        .into_iter()
        .filter(|e| e.starts_with("warn") && e.contains("not usable yet"))
        .collect();
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    check_deployed(&e.direct, "iamwait", &out).await;

    // Any other CreateFunction error is not retried.
    e.proxy.clear();
    let mut other = Fault::role_not_assumable(1);
    other.message = "Unzipped size must be smaller than 262144000 bytes".into();
    e.proxy.inject(other);
    let err = deploy_with(&e.aws, &overrides("toobig"), Some(KEY))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("Unzipped size"), "{err:#}");
    let creates = e
        .proxy
        .calls()
        .iter()
        .filter(|c| c.operation == "POST /2015-03-31/functions")
        .count();
    assert_eq!(creates, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_never_leaks() {
    let e = env().await;
    let o = overrides("leak");
    let d = desired(&o, Some(KEY));
    let first_plan = plan_for(&e.aws, &d).await;
    let recorder = infra::Recorder::default();
    let out = infra::apply(&e.aws, &first_plan, &d, &recorder)
        .await
        .unwrap();
    // A different key is planned as an update, values hidden.
    let d2 = desired(&o, Some("sk-ant-api03-ANOTHER-SECRET-KEY"));
    let second_plan = plan_for(&e.aws, &d2).await;
    assert!(
        second_plan.to_string().contains("anthropic_api_key"),
        "{second_plan}"
    );
    let report = infra::teardown(&e.aws, "leak-other", &infra::Silent)
        .await
        .unwrap();
    let lambda = aws_sdk_lambda::Client::new(&e.direct);
    let config = lambda
        .get_function()
        .function_name("claude-proxy-leak")
        .send()
        .await
        .unwrap();
    let everything = [
        first_plan.to_string(),
        serde_json::to_string(&first_plan).unwrap(),
        format!("{first_plan:?}"),
        second_plan.to_string(),
        serde_json::to_string(&second_plan).unwrap(),
        out.to_string(),
        serde_json::to_string(&out).unwrap(),
        format!("{out:?}"),
        format!("{d:?}"),
        recorder.events().join("\n"),
        report.to_string(),
        format!("{config:?}"),
    ];
    for (i, text) in everything.iter().enumerate() {
        assert!(!text.contains(KEY), "the key leaked in output #{i}: {text}");
        assert!(
            !text.contains("ANOTHER-SECRET"),
            "the new key leaked in output #{i}"
        );
    }
    // The caller token appears only where it must: the deploy output.
    let token = out.caller_token.as_ref().unwrap().expose().to_string();
    assert!(
        out.to_string().contains(&token) && serde_json::to_string(&out).unwrap().contains(&token)
    );
    assert!(!format!("{out:?}").contains(&token));
    assert!(!first_plan.to_string().contains(&token) && !format!("{config:?}").contains(&token));
}

// The IAM action a recorded call needs (None for calls that need no permission); the call → IAM action mapping is shared with tests/tests/packaging.rs.
use stand_ins::iam_actions::iam_action;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployer_policy_covers_every_call() {
    let policy: Value =
        serde_json::from_str(include_str!("../../docs/deployer-policy.json")).unwrap();
    let allowed: BTreeSet<String> = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| as_strings(&s["Action"]))
        .collect();
    assert!(
        allowed.iter().all(|a| !a.contains('*')),
        "no wildcard actions: {allowed:?}"
    );
    let e = env().await;
    // Create, redeploy, change (config + code + URL + API off), rotate, teardown.
    deploy(&e.aws, "perm").await;
    deploy(&e.aws, "perm").await;
    let o = Overrides {
        memory_mb: Some(512),
        http_api: Some(false),
        ..overrides("perm")
    };
    let mut d = Desired::new(
        StackConfig::default().with_overrides(&o).unwrap(),
        Some(&Artifact::from_bootstrap_bytes(b"another build").unwrap()),
        SecretInput {
            anthropic_api_key: Some(infra::ApiKey::new("sk-ant-another")),
            rotate_token: true,
        },
    )
    .unwrap();
    d.spec.as_mut().unwrap().config.function_url.auth = infra::config::UrlAuth::AwsIam;
    let p = plan_for(&e.aws, &d).await;
    infra::apply(&e.aws, &p, &d, &infra::Silent).await.unwrap();
    // Converged (asking for rotation again would rotate again, so stop asking).
    d.spec.as_mut().unwrap().secret.rotate_token = false;
    let again = plan_for(&e.aws, &d).await;
    assert!(again.is_empty(), "{again}");
    infra::teardown(&e.aws, "perm", &infra::Silent)
        .await
        .unwrap();
    let needed: BTreeSet<String> = e.proxy.calls().iter().filter_map(iam_action).collect();
    let missing: Vec<&String> = needed.difference(&allowed).collect();
    assert!(
        missing.is_empty(),
        "docs/deployer-policy.json lacks {missing:?}"
    );
    assert!(needed.len() > 30, "{needed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_calls_nothing() {
    let e = env().await;
    let d = desired(&overrides("dry"), Some(KEY));
    let p = plan_for(&e.aws, &d).await;
    e.proxy.clear();
    let recorder = infra::Recorder::default();
    let out = infra::apply_with(
        &e.aws,
        &p,
        &d,
        &recorder,
        infra::ApplyOptions { dry_run: true },
    )
    .await
    .unwrap();
    assert_eq!(e.proxy.calls(), vec![], "a dry run makes no call at all");
    assert!(out.steps.is_empty());
    let events = recorder.events();
    assert_eq!(events.len(), p.changes.len(), "{events:?}");
    assert!(
        events.iter().all(|e| e.contains("(dry run) would")),
        "{events:?}"
    );
    // The account is still empty.
    assert_eq!(plan_for(&e.aws, &d).await.changes.len(), p.changes.len());
}
