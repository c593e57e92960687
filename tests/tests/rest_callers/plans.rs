//! A caller with its own rate, burst or quota: its own usage plan, through the real CLI.

use super::*;

/// A usage plan straight from moto, by name: (id, rate, burst, quota, tags, stages, key ids).
#[derive(Debug)]
struct Plan {
    id: String,
    rate: Option<f64>,
    burst: Option<i32>,
    quota: Option<(i32, String)>,
    tags: BTreeMap<String, String>,
    stages: Vec<String>,
    keys: Vec<String>,
}

async fn plans(c: &RestClient) -> BTreeMap<String, Plan> {
    let mut out = BTreeMap::new();
    for p in c.get_usage_plans().send().await.unwrap().items() {
        let Some(name) = p
            .name()
            .filter(|n| n.starts_with(&format!("claude-proxy-{STACK}")))
        else {
            continue;
        };
        let id = p.id().unwrap().to_string();
        let k = c
            .get_usage_plan_keys()
            .usage_plan_id(&id)
            .send()
            .await
            .unwrap();
        let plan = Plan {
            id,
            rate: p.throttle().map(|t| t.rate_limit()),
            burst: p.throttle().map(|t| t.burst_limit()),
            quota: p.quota().map(|q| {
                (
                    q.limit(),
                    q.period()
                        .map(|p| p.as_str().to_string())
                        .unwrap_or_default(),
                )
            }),
            tags: p
                .tags()
                .map(|t| t.iter().map(|(a, b)| (a.clone(), b.clone())).collect())
                .unwrap_or_default(),
            stages: p
                .api_stages()
                .iter()
                .map(|s| {
                    format!(
                        "{}:{}",
                        s.api_id().unwrap_or_default(),
                        s.stage().unwrap_or_default()
                    )
                })
                .collect(),
            keys: k
                .items()
                .iter()
                .map(|k| k.id().unwrap().to_string())
                .collect(),
        };
        assert!(
            out.insert(name.to_string(), plan).is_none(),
            "two plans named {name}"
        );
    }
    out
}

/// A caller plan as a killed `callers add` leaves it: made and tagged, holding no named key.
async fn stray_plan(c: &RestClient, caller: &str, stage: &str) -> String {
    let mut tags = infra::names::tags_at_creation(STACK, "2026-01-01T00:00:00Z");
    tags.insert("claude-proxy:caller".into(), caller.into());
    let (api, st) = stage.split_once(':').unwrap();
    c.create_usage_plan()
        .name(format!("claude-proxy-{STACK}-{caller}"))
        .api_stages(
            aws_sdk_apigateway::types::ApiStage::builder()
                .api_id(api)
                .stage(st)
                .build(),
        )
        .set_tags(Some(tags.into_iter().collect()))
        .send()
        .await
        .unwrap()
        .id()
        .unwrap()
        .to_string()
}

/// A caller given its own rate, burst or quota gets its own usage plan
/// `claude-proxy-<stack>-<caller>` (tagged, on the stage) holding only its key, the numbers
/// it did not give taken from `[api]`; rotate keeps the plan with the new key, revoke deletes
/// it; a caller plan no entry needs goes with the next command or deploy; `list` shows each
/// caller's numbers; bad numbers are refused before anything is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_with_its_own_numbers_has_its_own_usage_plan() {
    let e = env().await;
    let cli = Cli::new().await;
    let c = RestClient::new(&e.direct);
    deploy_with(&e.aws, &rest(), Some(KEY)).await.unwrap();
    let url = e.proxy.endpoint_url();
    let args = |a: &[&str]| {
        let mut v = vec!["--stack".to_string(), STACK.to_string()];
        v.extend(a.iter().map(|s| s.to_string()));
        v
    };
    let shared_name = format!("claude-proxy-{STACK}");
    let bob_plan = format!("claude-proxy-{STACK}-bob");
    let run = |a: Vec<&'static str>| {
        let a = args(&a);
        let cli = &cli;
        let url = url.clone();
        async move { cli.run(&url, &strs(&a)).await }
    };

    // Refused before anything is made: burst below rate, an unknown period.
    let before = plans(&c).await.len();
    for bad in [
        vec![
            "callers",
            "add",
            "bad",
            "--rate-limit",
            "50",
            "--burst-limit",
            "2",
        ],
        vec!["callers", "add", "bad", "--quota-period", "year"],
    ] {
        let r = run(bad).await;
        assert_ne!(r.code, Some(0), "{r}");
        assert!(
            r.stderr.contains("burst") || r.stderr.contains("year"),
            "{r}"
        );
    }
    assert_eq!(plans(&c).await.len(), before);
    assert!(!keys(&c)
        .await
        .contains_key(&format!("claude-proxy-{STACK}-bad")));

    // add with all four: its own plan with its key only, on the shared plan's stage.
    let added = json_out(
        &run(vec![
            "callers",
            "add",
            "bob",
            "--rate-limit",
            "2",
            "--burst-limit",
            "4",
            "--quota-limit",
            "100",
            "--quota-period",
            "week",
            "--output",
            "json",
        ])
        .await,
    );
    assert!(added["api_key"].as_str().is_some(), "{added}");
    let k = keys(&c).await;
    let (bob_id, _, _) = &k[&bob_plan];
    let p = plans(&c).await;
    let (bob, shared) = (&p[&bob_plan], &p[&shared_name]);
    assert_eq!((bob.rate, bob.burst), (Some(2.0), Some(4)), "{bob:?}");
    assert_eq!(bob.quota, Some((100, "WEEK".into())), "{bob:?}");
    assert_eq!(bob.keys, std::slice::from_ref(bob_id));
    assert_eq!(bob.stages, shared.stages);
    assert_ours(&bob.tags, STACK, "bob's usage plan");
    assert_eq!(
        bob.tags.get("claude-proxy:caller").map(String::as_str),
        Some("bob")
    );
    assert!(!shared.keys.contains(bob_id), "{shared:?}");
    let s = secret_json(&e).await;
    assert_eq!(entry(&s, "bob")["limits"]["rate_limit"], 2.0);
    assert_eq!(entry(&s, "bob")["limits"]["quota_period"], "week");

    // add with one: the others are [api]'s (rate 5, burst 10, 5000 a day by default).
    let r = run(vec!["callers", "add", "carl", "--rate-limit", "1"]).await;
    assert_eq!(r.code, Some(0), "{r}");
    let carl = &plans(&c).await[&format!("claude-proxy-{STACK}-carl")];
    assert_eq!((carl.rate, carl.burst), (Some(1.0), Some(10)), "{carl:?}");
    assert_eq!(carl.quota, Some((5000, "DAY".into())), "{carl:?}");
    // add with none: the shared plan.
    let r = run(vec!["callers", "add", "dora"]).await;
    assert_eq!(r.code, Some(0), "{r}");
    let dora_id = keys(&c).await[&format!("claude-proxy-{STACK}-dora")]
        .0
        .clone();
    let p = plans(&c).await;
    assert!(p[&shared_name].keys.contains(&dora_id));
    assert!(!p.contains_key(&format!("claude-proxy-{STACK}-dora")));

    // list: each caller's plan and numbers.
    let list = json_out(&run(vec!["callers", "list", "--output", "json"]).await);
    let listed = |n: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(listed("bob")["usage_plan"]["name"], bob_plan.as_str());
    assert_eq!(listed("bob")["usage_plan"]["own"], true);
    assert_eq!(listed("bob")["usage_plan"]["burst_limit"], 4);
    assert_eq!(listed("dora")["usage_plan"]["own"], false);
    assert_eq!(listed("dora")["usage_plan"]["rate_limit"], 5.0);
    let text = run(vec!["callers", "list"]).await;
    assert!(
        text.stdout
            .contains("own plan: rate=2 burst=4 quota=100/week"),
        "{text}"
    );

    // A redeploy keeps the callers' plans as they are.
    let (plan, _) = deploy_with(&e.aws, &rest(), Some(KEY)).await.unwrap();
    assert!(
        !plan
            .changes
            .iter()
            .any(|c| c.kind == infra::plan::Kind::UsagePlan),
        "{plan}"
    );

    // rotate: the new key in the same plan, the old one gone.
    let bob_plan_id = plans(&c).await[&bob_plan].id.clone();
    let r = run(vec!["callers", "rotate", "bob"]).await;
    assert_eq!(r.code, Some(0), "{r}");
    let new_bob = keys(&c).await[&bob_plan].0.clone();
    assert_ne!(&new_bob, bob_id);
    let p = plans(&c).await;
    assert_eq!(p[&bob_plan].id, bob_plan_id);
    assert_eq!(p[&bob_plan].keys, std::slice::from_ref(&new_bob));

    // A caller plan nobody needs (a killed `callers add`): the next command deletes it; one
    // left after that goes with the next deploy.
    let stage = p[&shared_name].stages[0].clone();
    stray_plan(&c, "zed", &stage).await;
    let r = run(vec!["callers", "add", "erin"]).await;
    assert_eq!(r.code, Some(0), "{r}");
    assert!(!plans(&c)
        .await
        .contains_key(&format!("claude-proxy-{STACK}-zed")));
    stray_plan(&c, "yan", &stage).await;
    let (plan, _) = deploy_with(&e.aws, &rest(), Some(KEY)).await.unwrap();
    assert!(plan.to_string().contains("extra"), "{plan}");
    let p = plans(&c).await;
    assert!(
        !p.contains_key(&format!("claude-proxy-{STACK}-yan")),
        "{p:?}"
    );
    assert_eq!(p[&bob_plan].keys, std::slice::from_ref(&new_bob));

    // `callers add` killed right after it made its plan: the next command deletes the plan.
    e.proxy.clear();
    e.proxy.hold_after_mutating(
        1 + {
            // The lock's writes come first: count them from a dry run of the same shape.
            let r = run(vec!["callers", "add", "probe", "--rate-limit", "3"]).await;
            assert_eq!(r.code, Some(0), "{r}");
            let calls: Vec<String> = e
                .proxy
                .mutating_calls()
                .iter()
                .map(|c| c.operation.clone())
                .collect();
            let at = calls
                .iter()
                .position(|c| c == "POST /usageplans")
                .unwrap_or_else(|| panic!("{calls:?}"));
            e.proxy.clear();
            at
        },
    );
    let mut child = cli
        .command(
            &url,
            &strs(&args(&["callers", "add", "fay", "--rate-limit", "3"])),
        )
        .spawn()
        .unwrap();
    tokio::select! {
        held = e.proxy.wait_held(std::time::Duration::from_secs(120)) => assert!(held),
        status = child.wait() => panic!("add ended ({status:?}) early"),
    }
    child.kill().await.unwrap();
    e.proxy.release();
    assert!(plans(&c)
        .await
        .contains_key(&format!("claude-proxy-{STACK}-fay")));
    let r = run(vec!["callers", "list"]).await;
    assert_eq!(r.code, Some(0), "{r}");
    let r = run(vec!["callers", "revoke", "erin"]).await;
    assert_eq!(r.code, Some(0), "{r}");
    assert!(!plans(&c)
        .await
        .contains_key(&format!("claude-proxy-{STACK}-fay")));

    // revoke: the key and its plan go.
    let r = run(vec!["callers", "revoke", "bob"]).await;
    assert_eq!(r.code, Some(0), "{r}");
    let p = plans(&c).await;
    assert!(!p.contains_key(&bob_plan), "{p:?}");
    assert!(!keys(&c).await.contains_key(&bob_plan));

    // Without the REST front the numbers would do nothing: refused, nothing written.
    let plain = format!("{STACK}-plain");
    let o = Overrides {
        stack: Some(plain.clone()),
        ..Default::default()
    };
    deploy_with(&e.aws, &o, Some(KEY)).await.unwrap();
    let in_plain = |a: &[&str]| {
        let mut v = vec!["--stack".to_string(), plain.clone()];
        v.extend(a.iter().map(|s| s.to_string()));
        v
    };
    let r = cli
        .run(
            &url,
            &strs(&in_plain(&["callers", "add", "gus", "--rate-limit", "1"])),
        )
        .await;
    assert_ne!(r.code, Some(0), "{r}");
    assert!(r.stderr.contains("--api rest"), "{r}");
    let r = cli
        .run(
            &url,
            &strs(&in_plain(&["callers", "list", "--output", "json"])),
        )
        .await;
    assert!(!r.stdout.contains("gus"), "{r}");
    infra::teardown(&e.aws, &plain, &infra::Silent)
        .await
        .unwrap();
    assert_nothing_left(&e.direct, &plain).await;

    // Teardown leaves no plan, the callers' own included.
    infra::teardown(&e.aws, STACK, &infra::Silent)
        .await
        .unwrap();
    assert_nothing_left(&e.direct, STACK).await;
    assert!(plans(&c).await.is_empty());
}
