//! Named callers with a REST API front against moto, through the real CLI: each caller gets
//! its own API key (`claude-proxy-<stack>-<caller>`, tagged, a member of the usage plan),
//! shown once; the secret records the key's id, never its value; `rotate` makes a new key and
//! deletes the old one, `revoke` deletes it; a key no secret entry names (a command killed
//! between making the key and writing the secret) is deleted by the next command and by the
//! next deploy, the default caller's key adopted; no API key value appears in any output but
//! the one that made it.

//!
//! `plans`: a caller with its own rate, burst or quota in its own usage plan.

mod plans;

use aws_sdk_apigateway::Client as RestClient;
use infra::config::{ApiKind, Overrides};
use serde_json::Value;
use stand_ins::stack_support::*;
use std::collections::BTreeMap;

const STACK: &str = "restcallers";

fn rest() -> Overrides {
    Overrides {
        stack: Some(STACK.into()),
        api: Some(ApiKind::Rest),
        ..Default::default()
    }
}

async fn secret_json(e: &Env) -> Value {
    let sm = aws_sdk_secretsmanager::Client::new(&e.direct);
    let v = sm
        .get_secret_value()
        .secret_id(format!("claude-proxy/{STACK}"))
        .send()
        .await
        .unwrap();
    serde_json::from_str(v.secret_string().unwrap()).unwrap()
}

fn entry<'a>(secret: &'a Value, name: &str) -> &'a Value {
    secret["callers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no caller {name} in {secret}"))
}

fn json_out(run: &CliRun) -> Value {
    assert_eq!(run.code, Some(0), "{run}");
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run}"))
}

/// The stack's keys straight from moto: name -> (id, value, tags).
async fn keys(c: &RestClient) -> BTreeMap<String, (String, String, BTreeMap<String, String>)> {
    let out = c.get_api_keys().include_values(true).send().await.unwrap();
    out.items()
        .iter()
        .filter(|k| {
            k.name()
                .is_some_and(|n| n.starts_with(&format!("claude-proxy-{STACK}-")))
        })
        .map(|k| {
            (
                k.name().unwrap().to_string(),
                (
                    k.id().unwrap().to_string(),
                    k.value().unwrap_or_default().to_string(),
                    k.tags()
                        .map(|t| t.iter().map(|(a, b)| (a.clone(), b.clone())).collect())
                        .unwrap_or_default(),
                ),
            )
        })
        .collect()
}

/// The ids of the keys in the stack's usage plan.
async fn members(c: &RestClient) -> Vec<String> {
    let plans = c.get_usage_plans().send().await.unwrap();
    let plan = plans
        .items()
        .iter()
        .find(|p| p.name() == Some(&format!("claude-proxy-{STACK}")))
        .expect("the stack's usage plan");
    let k = c
        .get_usage_plan_keys()
        .usage_plan_id(plan.id().unwrap())
        .send()
        .await
        .unwrap();
    k.items()
        .iter()
        .map(|k| k.id().unwrap().to_string())
        .collect()
}

/// A key as a killed `callers add` leaves it: made, tagged, in the plan, named by no entry.
async fn orphan(c: &RestClient, caller: &str) -> String {
    let tags = infra::names::tags_at_creation(STACK, "2026-01-01T00:00:00Z");
    let k = c
        .create_api_key()
        .name(format!("claude-proxy-{STACK}-{caller}"))
        .enabled(true)
        .value(format!("orphan-key-value-{caller}-0123456789abcdef"))
        .set_tags(Some(tags.into_iter().collect()))
        .send()
        .await
        .unwrap();
    let id = k.id().unwrap().to_string();
    let plans = c.get_usage_plans().send().await.unwrap();
    let plan = plans
        .items()
        .iter()
        .find(|p| p.name() == Some(&format!("claude-proxy-{STACK}")))
        .unwrap();
    c.create_usage_plan_key()
        .usage_plan_id(plan.id().unwrap())
        .key_id(&id)
        .key_type("API_KEY")
        .send()
        .await
        .unwrap();
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_caller_has_its_own_api_key_in_step_with_the_secret() {
    let e = env().await;
    let cli = Cli::new().await;
    let c = RestClient::new(&e.direct);
    let (_, out) = deploy_with(&e.aws, &rest(), Some(KEY)).await.unwrap();
    let default_value = out.api_key.as_ref().unwrap().expose().to_string();
    let url = e.proxy.endpoint_url();
    let run = |args: Vec<&str>| {
        let mut a = vec!["--stack", STACK];
        a.extend(args);
        let a: Vec<String> = a.into_iter().map(String::from).collect();
        let cli = &cli;
        let url = url.clone();
        async move { cli.run(&url, &strs(&a)).await }
    };

    // add: a token and an API key, both shown once; the key tagged, named, in the plan.
    let added = run(vec!["callers", "add", "alice", "--output", "json"]).await;
    let alice = json_out(&added);
    let alice_key = alice["api_key"].as_str().unwrap().to_string();
    assert_eq!(alice_key.len(), 40, "{alice}");
    let k = keys(&c).await;
    let (alice_id, value, tags) = &k[&format!("claude-proxy-{STACK}-alice")];
    assert_eq!(value, &alice_key);
    assert_ours(tags, STACK, "alice's API key");
    assert_eq!(
        tags.get("claude-proxy:caller").map(String::as_str),
        Some("alice")
    );
    assert!(members(&c).await.contains(alice_id));
    // The secret records the id, never the value; the default caller adopted the deploy's key.
    let s = secret_json(&e).await;
    assert_eq!(entry(&s, "alice")["api_key_id"], alice_id.as_str());
    let (default_id, _, _) = &k[&format!("claude-proxy-{STACK}-default")];
    assert_eq!(entry(&s, "default")["api_key_id"], default_id.as_str());
    assert!(!s.to_string().contains(&alice_key) && !s.to_string().contains(&default_value));

    // list: ids, no values.
    let listed = run(vec!["callers", "list", "--output", "json"]).await;
    let list = json_out(&listed);
    let a = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "alice")
        .unwrap();
    assert_eq!(a["api_key_id"], alice_id.as_str());
    assert!(a.get("api_key").is_none(), "{a}");
    let text = run(vec!["callers", "list"]).await;
    assert!(text.stdout.contains(alice_id.as_str()), "{text}");

    // rotate: a new key value under a new id, the old key deleted.
    let rotated_run = run(vec!["callers", "rotate", "alice", "--output", "json"]).await;
    let rotated = json_out(&rotated_run);
    let new_key = rotated["api_key"].as_str().unwrap().to_string();
    assert_ne!(new_key, alice_key);
    let k = keys(&c).await;
    let (new_id, value, _) = &k[&format!("claude-proxy-{STACK}-alice")];
    assert_ne!(new_id, alice_id);
    assert_eq!(value, &new_key);
    assert!(!k.values().any(|(id, _, _)| id == alice_id), "{k:?}");
    let m = members(&c).await;
    assert!(m.contains(new_id) && !m.contains(alice_id), "{m:?}");
    assert_eq!(
        entry(&secret_json(&e).await, "alice")["api_key_id"],
        new_id.as_str()
    );

    // A key no entry names (a `callers add bob` killed after CreateUsagePlanKey): the next
    // command deletes it; one left after that (carol) goes with the next deploy, which keeps
    // the named callers' keys in the plan.
    let bob = orphan(&c, "bob").await;
    let ci = run(vec!["callers", "add", "ci", "--output", "json"]).await;
    let ci_key = json_out(&ci)["api_key"].as_str().unwrap().to_string();
    let k = keys(&c).await;
    assert!(!k.values().any(|(id, _, _)| *id == bob), "{k:?}");
    let carol = orphan(&c, "carol").await;
    let (p, _) = deploy_with(&e.aws, &rest(), Some(KEY)).await.unwrap();
    assert!(p.to_string().contains("extra"), "{p}");
    let k = keys(&c).await;
    assert!(!k.values().any(|(id, _, _)| *id == carol), "{k:?}");
    let m = members(&c).await;
    for name in ["alice", "ci", "default"] {
        let (id, _, _) = &k[&format!("claude-proxy-{STACK}-{name}")];
        assert!(m.contains(id), "{name}: {m:?}");
    }
    // Converged: a second deploy changes nothing in the plan.
    let (p, _) = deploy_with(&e.aws, &rest(), Some(KEY)).await.unwrap();
    assert!(
        !p.changes
            .iter()
            .any(|c| c.kind == infra::plan::Kind::UsagePlan),
        "{p}"
    );

    // revoke: the entry and the key go.
    let revoked = run(vec!["callers", "revoke", "alice", "--output", "json"]).await;
    assert_eq!(revoked.code, Some(0), "{revoked}");
    let k = keys(&c).await;
    assert!(
        !k.contains_key(&format!("claude-proxy-{STACK}-alice")),
        "{k:?}"
    );
    assert!(!members(&c).await.contains(new_id));

    // Leak: no API key value in any output but the one that made it, nor in the secret.
    let all_keys = [
        alice_key.as_str(),
        new_key.as_str(),
        ci_key.as_str(),
        default_value.as_str(),
    ];
    let others = [&listed, &text, &revoked];
    for r in others {
        for key in all_keys {
            assert!(!r.stdout.contains(key) && !r.stderr.contains(key), "{r}");
        }
    }
    assert!(!added.stdout.contains(&new_key) && !rotated_run.stdout.contains(&alice_key));
    let s = secret_json(&e).await.to_string();
    for key in all_keys {
        assert!(!s.contains(key), "{s}");
    }

    infra::teardown(&e.aws, STACK, &infra::Silent)
        .await
        .unwrap();
    assert_nothing_left(&e.direct, STACK).await;
}

/// `callers add` and `callers revoke` killed (SIGKILL) right after each API Gateway call that
/// made or still leaves a key the secret does not record: the next command deletes that key,
/// and the caller can be added again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_command_killed_midway_is_repaired_by_the_next() {
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
    // The first command records the default key for `default` (one more secret write).
    let r = cli
        .run(&url, &strs(&args(&["callers", "add", "first"])))
        .await;
    assert_eq!(r.code, Some(0), "{r}");
    // Which mutating calls a whole `callers add` makes (the lock's, the key's, the secret's).
    e.proxy.clear();
    let r = cli
        .run(&url, &strs(&args(&["callers", "add", "probe"])))
        .await;
    assert_eq!(r.code, Some(0), "{r}");
    let calls: Vec<String> = e
        .proxy
        .mutating_calls()
        .iter()
        .map(|c| c.operation.clone())
        .collect();
    let at = |op: &str| {
        calls
            .iter()
            .position(|c| c.starts_with(op))
            .unwrap_or_else(|| panic!("{op}: {calls:?}"))
            + 1
    };
    let kills = [
        (vec!["callers", "add", "bob"], at("POST /apikeys")),
        (vec!["callers", "add", "bob"], at("POST /usageplans/")),
    ];
    for (i, (cmd, k)) in kills.iter().enumerate() {
        e.proxy.clear();
        e.proxy.hold_after_mutating(*k);
        let mut child = cli.command(&url, &strs(&args(cmd))).spawn().unwrap();
        tokio::select! {
            held = e.proxy.wait_held(std::time::Duration::from_secs(120)) => {
                assert!(held, "{cmd:?} never reached mutating call {k}");
            }
            status = child.wait() => panic!("{cmd:?} ended ({status:?}) before call {k}"),
        }
        child.kill().await.unwrap();
        e.proxy.release();
        assert!(
            keys(&c)
                .await
                .contains_key(&format!("claude-proxy-{STACK}-bob")),
            "kill {i}: the key was made"
        );
        // The next command (any that changes callers) deletes the key nobody was shown.
        let r = cli
            .run(
                &url,
                &strs(&args(&["callers", "add", &format!("next-{i}")])),
            )
            .await;
        assert_eq!(r.code, Some(0), "{r}");
        let k = keys(&c).await;
        assert!(
            !k.contains_key(&format!("claude-proxy-{STACK}-bob")),
            "kill {i}: {k:?}"
        );
        let s = secret_json(&e).await;
        assert!(!s.to_string().contains("\"bob\""), "{s}");
    }
    // `revoke` killed after the secret stopped naming the key, before DeleteApiKey.
    e.proxy.clear();
    let r = cli
        .run(&url, &strs(&args(&["callers", "revoke", "probe"])))
        .await;
    assert_eq!(r.code, Some(0), "{r}");
    let revoke_calls: Vec<String> = e
        .proxy
        .mutating_calls()
        .iter()
        .map(|c| c.operation.clone())
        .collect();
    let delete_at = revoke_calls
        .iter()
        .position(|c| c.starts_with("DELETE /usageplans/"))
        .unwrap_or_else(|| panic!("revoke takes the key out of the plan: {revoke_calls:?}"));
    let r = cli
        .run(&url, &strs(&args(&["callers", "add", "probe"])))
        .await;
    assert_eq!(r.code, Some(0), "{r}");
    e.proxy.clear();
    // Held after the call before the key leaves the plan (the secret written): the key stays.
    e.proxy.hold_after_mutating(delete_at);
    let mut child = cli
        .command(&url, &strs(&args(&["callers", "revoke", "probe"])))
        .spawn()
        .unwrap();
    tokio::select! {
        held = e.proxy.wait_held(std::time::Duration::from_secs(120)) => assert!(held),
        status = child.wait() => panic!("revoke ended ({status:?}) early"),
    }
    child.kill().await.unwrap();
    e.proxy.release();
    assert!(keys(&c)
        .await
        .contains_key(&format!("claude-proxy-{STACK}-probe")));
    // The next command takes over the dead process's lock and deletes the key.
    let r = cli
        .run(&url, &strs(&args(&["callers", "add", "after"])))
        .await;
    assert_eq!(r.code, Some(0), "{r}");
    let k = keys(&c).await;
    assert!(
        !k.contains_key(&format!("claude-proxy-{STACK}-probe")),
        "{k:?}"
    );
    assert!(
        k.contains_key(&format!("claude-proxy-{STACK}-next-0")),
        "{k:?}"
    );
    infra::teardown(&e.aws, STACK, &infra::Silent)
        .await
        .unwrap();
    assert_nothing_left(&e.direct, STACK).await;
}
