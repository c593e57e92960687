//! Releases against moto server, through the recording proxy: versions, the alias `live`,
//! the Function URL and the permissions on it, pruning, rollback, an interrupted shift, a
//! stack deployed before releases moving onto the alias, and teardown. (The smoke test and
//! the watched shift need the function to run: see `release_checks.rs`.)

use infra::config::{Overrides, Strategy};
use stand_ins::stack_support::*;

fn lambda(e: &Env) -> aws_sdk_lambda::Client {
    aws_sdk_lambda::Client::new(&e.direct)
}

async fn live_of(e: &Env, f: &str) -> aws_sdk_lambda::operation::get_alias::GetAliasOutput {
    lambda(e)
        .get_alias()
        .function_name(f)
        .name("live")
        .send()
        .await
        .unwrap()
}

async fn versions_of(e: &Env, f: &str) -> Vec<String> {
    lambda(e)
        .list_versions_by_function()
        .function_name(f)
        .send()
        .await
        .unwrap()
        .versions()
        .iter()
        .filter_map(|v| v.version().map(str::to_string))
        .filter(|v| v != "$LATEST")
        .collect()
}

fn with_memory(stack: &str, mb: u32) -> Overrides {
    Overrides {
        memory_mb: Some(mb),
        ..overrides(stack)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_change_is_a_version_live_follows_and_rollback_goes_back() {
    let e = env().await;
    let f = "claude-proxy-rel";
    let (_, out) = deploy(&e.aws, "rel").await;
    check_deployed(&e.direct, "rel", &out).await;
    assert_eq!(versions_of(&e, f).await, ["1"]);
    assert_eq!(out.live_version.as_deref(), Some("1"));

    // Nothing changed: nothing published, no mutating call.
    e.proxy.clear();
    let (p, again) = deploy(&e.aws, "rel").await;
    assert!(p.is_empty(), "{p}");
    assert!(!again.changed);
    assert_eq!(e.proxy.mutating_calls(), vec![]);
    assert_eq!(again.live_version.as_deref(), Some("1"));

    // A configuration change: version 2, and the plan says where live goes.
    let d = desired(&with_memory("rel", 512), Some(KEY));
    let p = plan_for(&e.aws, &d).await;
    let text = p.to_string();
    assert!(
        text.contains("+ function version claude-proxy-rel:(new version)"),
        "{text}"
    );
    assert!(text.contains("~ alias claude-proxy-rel:live"), "{text}");
    assert!(text.contains("version: 1 -> (new version)"), "{text}");
    assert!(
        text.contains("routing: 1=100% -> (new version)=100%"),
        "{text}"
    );
    let out = infra::apply(&e.aws, &p, &d, &infra::Silent).await.unwrap();
    assert_eq!(out.live_version.as_deref(), Some("2"));
    assert_eq!(live_of(&e, f).await.function_version(), Some("2"));
    assert!(plan_for(&e.aws, &d).await.is_empty());
    let v2 = lambda(&e)
        .get_function_configuration()
        .function_name(f)
        .qualifier("2")
        .send()
        .await
        .unwrap();
    assert_eq!(
        v2.memory_size(),
        Some(512),
        "the version carries the change"
    );

    // What `releases` lists.
    let r = infra::releases::read(&e.aws, "rel").await.unwrap();
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["live"]["version"], "2");
    assert_eq!(json["live"]["weights"], serde_json::json!({}));
    let listed: Vec<&str> = r.versions.iter().map(|v| v.version.as_str()).collect();
    assert_eq!(listed, ["2", "1"]);
    assert_eq!(r.versions[0].live_percent, 100);
    assert_eq!(r.versions[0].code_sha256, artifact().code_sha256);
    assert!(r.versions[0].config_hash.is_some());
    assert_ne!(r.versions[0].config_hash, r.versions[1].config_hash);

    // Rollback: one UpdateAlias, back to 1; then nothing before 1; then --to 2.
    e.proxy.clear();
    let back = infra::releases::rollback(&e.aws, "rel", None)
        .await
        .unwrap();
    assert!(back.changed);
    assert_eq!(back.to, "1");
    let ops: Vec<String> = e
        .proxy
        .mutating_calls()
        .iter()
        .map(|c| c.operation.clone())
        .collect();
    assert_eq!(ops, [format!("PUT /2015-03-31/functions/{f}/aliases/live")]);
    assert_eq!(live_of(&e, f).await.function_version(), Some("1"));
    let err = infra::releases::rollback(&e.aws, "rel", None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no earlier version"), "{err}");
    let fwd = infra::releases::rollback(&e.aws, "rel", Some(2))
        .await
        .unwrap();
    assert_eq!(fwd.to, "2");
    let same = infra::releases::rollback(&e.aws, "rel", Some(2))
        .await
        .unwrap();
    assert!(!same.changed);
    let missing = infra::releases::rollback(&e.aws, "rel", Some(9))
        .await
        .unwrap_err();
    assert!(missing.to_string().contains("does not exist"), "{missing}");

    // Teardown: the alias and every version go with the function.
    let report = infra::teardown(&e.aws, "rel", &infra::Silent)
        .await
        .unwrap();
    let text = report.to_string();
    assert!(
        text.contains("delete alias claude-proxy-rel:live"),
        "{text}"
    );
    assert!(
        text.contains("delete function version claude-proxy-rel:1"),
        "{text}"
    );
    assert!(
        text.contains("delete function version claude-proxy-rel:2"),
        "{text}"
    );
    assert_nothing_left(&e.direct, "rel").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_versions_beyond_keep_versions_are_deleted_never_one_in_use() {
    // moto numbers a new version "how many are left + 1", so a version published after a
    // deleted one would reuse a number (Lambda never does): this test prunes only in
    // deploys that publish nothing. The plan's pruning with a publish is in
    // infra/tests/plan.rs.
    let e = env().await;
    let f = "claude-proxy-prune";
    for mb in [256, 384, 512, 640] {
        deploy_with(&e.aws, &with_memory("prune", mb), Some(KEY))
            .await
            .unwrap();
    }
    assert_eq!(versions_of(&e, f).await, ["1", "2", "3", "4"]);
    let keep = Overrides {
        keep_versions: Some(2),
        ..with_memory("prune", 640)
    };
    // live rolled back to 1: the next deploy moves it onto 4 again, and 1 stays because
    // live used it when the plan was made; 2 goes.
    infra::releases::rollback(&e.aws, "prune", Some(1))
        .await
        .unwrap();
    let (p, _) = deploy_with(&e.aws, &keep, Some(KEY)).await.unwrap();
    let text = p.to_string();
    assert!(
        text.contains("- function version claude-proxy-prune:2"),
        "{text}"
    );
    assert!(!text.contains("claude-proxy-prune:1\n"), "{text}");
    assert_eq!(live_of(&e, f).await.function_version(), Some("4"));
    assert_eq!(versions_of(&e, f).await, ["1", "3", "4"]);
    // Once live is off it, 1 goes too; then nothing is left to do.
    deploy_with(&e.aws, &keep, Some(KEY)).await.unwrap();
    assert_eq!(versions_of(&e, f).await, ["3", "4"]);
    e.proxy.clear();
    let (p, _) = deploy_with(&e.aws, &keep, Some(KEY)).await.unwrap();
    assert!(p.is_empty(), "{p}");
    assert_eq!(e.proxy.mutating_calls(), vec![]);
    infra::teardown(&e.aws, "prune", &infra::Silent)
        .await
        .unwrap();
    assert_nothing_left(&e.direct, "prune").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_shift_is_shown_plainly_and_the_next_deploy_finishes_it() {
    let e = env().await;
    let f = "claude-proxy-shift";
    deploy(&e.aws, "shift").await;
    // A canary killed after its first step: version 2 published, 10% routed to it.
    let lam = &e.aws.lambda;
    lam.update_function_configuration()
        .function_name(f)
        .memory_size(512)
        .send()
        .await
        .unwrap();
    let v = infra::version::publish(&e.aws, f, None, None)
        .await
        .unwrap();
    assert_eq!(v, "2");
    infra::alias::update(&e.aws, f, "1", Some(("2", 0.1)), None)
        .await
        .unwrap();

    // The plan shows the weights and versions as they are.
    let canary = Overrides {
        strategy: Some(Strategy::Canary),
        ..with_memory("shift", 512)
    };
    let d = desired(&canary, Some(KEY));
    let p = plan_for(&e.aws, &d).await;
    let text = p.to_string();
    assert_eq!(p.changes.len(), 1, "{text}");
    assert!(text.contains("version: 1 -> 2"), "{text}");
    assert!(text.contains("routing: 1=90% 2=10% -> 2=100%"), "{text}");
    assert!(text.contains("canary: 10% for 300 s, then 100%"), "{text}");
    let r = infra::releases::read(&e.aws, "shift").await.unwrap();
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["live"]["version"], "1");
    assert_eq!(json["live"]["weights"]["2"], 0.1);

    // rollback puts 100% back on 1 ...
    let back = infra::releases::rollback(&e.aws, "shift", None)
        .await
        .unwrap();
    assert_eq!((back.from.as_str(), back.to.as_str()), ("1=90% 2=10%", "1"));
    let a = live_of(&e, f).await;
    assert!(a
        .routing_config()
        .is_none_or(|r| r.additional_version_weights().is_none_or(|w| w.is_empty())));
    // ... and, shifted again, the next deploy finishes the release (all at once here: the
    // canary's share is already reached, its watch needs CloudWatch, see release_checks.rs).
    infra::alias::update(&e.aws, f, "1", Some(("2", 0.1)), None)
        .await
        .unwrap();
    let d = desired(&with_memory("shift", 512), Some(KEY));
    let p = plan_for(&e.aws, &d).await;
    infra::apply(&e.aws, &p, &d, &infra::Silent).await.unwrap();
    let a = live_of(&e, f).await;
    assert_eq!(a.function_version(), Some("2"));
    assert!(a
        .routing_config()
        .is_none_or(|r| r.additional_version_weights().is_none_or(|w| w.is_empty())));
    assert!(plan_for(&e.aws, &d).await.is_empty());
    infra::teardown(&e.aws, "shift", &infra::Silent)
        .await
        .unwrap();
    assert_nothing_left(&e.direct, "shift").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_deployed_before_releases_moves_onto_the_alias_with_a_new_url() {
    let e = env().await;
    let f = "claude-proxy-old";
    let (_, first) = deploy(&e.aws, "old").await;
    // Make it look like a stack from before releases: URL and statements on the function.
    let lam = &e.aws.lambda;
    lam.delete_function_url_config()
        .function_name(f)
        .qualifier("live")
        .send()
        .await
        .unwrap();
    let old_url = lam
        .create_function_url_config()
        .function_name(f)
        .auth_type(aws_sdk_lambda::types::FunctionUrlAuthType::None)
        .invoke_mode(aws_sdk_lambda::types::InvokeMode::ResponseStream)
        .send()
        .await
        .unwrap()
        .function_url()
        .to_string();
    for s in infra::permission::public_url_statements() {
        infra::permission::remove(&e.aws, f, &s.sid, Some("live"))
            .await
            .unwrap();
        let unqualified = infra::permission::Statement {
            qualifier: None,
            ..s
        };
        infra::permission::add(&e.aws, f, &unqualified)
            .await
            .unwrap();
    }
    assert_ne!(first.function_url.as_deref(), Some(old_url.as_str()));

    let d = desired(&overrides("old"), Some(KEY));
    let p = plan_for(&e.aws, &d).await;
    let text = p.to_string();
    assert!(
        text.contains(&format!("- function URL {f} (unqualified)")),
        "{text}"
    );
    assert!(text.contains(&format!("+ function URL {f}:live")), "{text}");
    assert!(text.contains("moves to the alias `live`"), "{text}");
    assert!(
        text.contains(&old_url),
        "the note names the old address: {text}"
    );
    assert!(
        text.contains("-/+ permission claude-proxy-url-invoke-function-url"),
        "{text}"
    );
    let out = infra::apply(&e.aws, &p, &d, &infra::Silent).await.unwrap();
    let new_url = out.function_url.clone().unwrap();
    assert_ne!(new_url, old_url, "the deploy output names the new URL");
    check_deployed(&e.direct, "old", &out).await;
    assert!(plan_for(&e.aws, &d).await.is_empty());
    infra::teardown(&e.aws, "old", &infra::Silent)
        .await
        .unwrap();
    assert_nothing_left(&e.direct, "old").await;
}
