//! The REST API front (`[api] kind = "rest"`) against moto server, through the recording
//! proxy: created, read back with plain SDK calls, redeployed without a write, changed,
//! rotated, switched to the HTTP API, interrupted and torn down. moto does not echo an
//! integration's `responseTransferMode`, so what the toolkit sends is checked on the
//! recorded PutIntegration requests.

use aws_sdk_apigateway::Client as RestClient;
use infra::config::{ApiKind, Overrides};
use serde_json::Value;
use stand_ins::aws_proxy::Fault;
use stand_ins::stack_support::*;

fn rest(stack: &str) -> Overrides {
    Overrides {
        stack: Some(stack.into()),
        api: Some(ApiKind::Rest),
        ..Default::default()
    }
}

/// The REST API of the stack, straight from moto.
async fn rest_api(c: &RestClient, stack: &str) -> aws_sdk_apigateway::types::RestApi {
    let name = format!("claude-proxy-{stack}");
    let apis = c.get_rest_apis().send().await.unwrap();
    let mut ours: Vec<_> = apis
        .items()
        .iter()
        .filter(|a| a.name() == Some(name.as_str()))
        .cloned()
        .collect();
    assert_eq!(ours.len(), 1, "{:?}", apis.items());
    ours.remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rest_front_streams_checks_keys_and_converges() {
    let e = env().await;
    // A 120 s integration is accepted only in STREAM mode, as API Gateway decides.
    e.proxy
        .enable(stand_ins::aws_proxy::strict::Profile::RestIntegrationTimeouts);
    let (p, out) = deploy_with(&e.aws, &rest("rest"), Some(KEY)).await.unwrap();
    let plan_text = p.to_string();
    assert!(
        plan_text.contains("REST API") && plan_text.contains("usage plan"),
        "{plan_text}"
    );
    assert!(
        p.notes
            .iter()
            .any(|n| n.contains("function URL is off") && n.contains("quota 5000 per day")),
        "{:?}",
        p.notes
    );
    assert!(
        !p.changes
            .iter()
            .any(|c| c.kind == infra::plan::Kind::FunctionUrl),
        "{plan_text}"
    );

    // Outputs: the stage URL and the default caller's key, shown once.
    let id = rest_api(&RestClient::new(&e.direct), "rest")
        .await
        .id()
        .unwrap()
        .to_string();
    assert_eq!(
        out.rest_url.as_deref(),
        Some(format!("https://{id}.execute-api.us-east-1.amazonaws.com/live").as_str())
    );
    assert_eq!(out.function_url, None);
    assert_eq!(out.api_url, None);
    let key = out.api_key.clone().expect("a new API key is shown");
    let json = serde_json::to_value(&out).unwrap();
    assert_eq!(json["rest_url"], out.rest_url.clone().unwrap());
    assert_eq!(json["api_key"], key.expose());
    assert!(out.to_string().contains(key.expose()));
    assert!(!plan_text.contains(key.expose()));
    assert!(!serde_json::to_string(&p).unwrap().contains(key.expose()));

    // What the toolkit sent: both integrations stream (moto does not echo it back).
    let puts: Vec<Value> = e
        .proxy
        .calls()
        .iter()
        .filter(|c| c.method == "PUT" && c.path.ends_with("/methods/ANY/integration"))
        .map(|c| serde_json::from_str(&c.body).unwrap())
        .collect();
    assert_eq!(puts.len(), 2, "PutIntegration on / and /{{proxy+}}");
    let fn_arn = out.function_arn.clone();
    for b in &puts {
        assert_eq!(b["responseTransferMode"], "STREAM", "{b}");
        assert_eq!(b["type"], "AWS_PROXY", "{b}");
        assert_eq!(b["httpMethod"], "POST", "{b}");
        assert_eq!(b["timeoutInMillis"], 120_000, "{b}");
        assert_eq!(
            b["uri"],
            // The alias `live`, which releases move.
            format!("arn:aws:apigateway:us-east-1:lambda:path/2021-11-15/functions/{fn_arn}:live/response-streaming-invocations"),
        );
    }

    // Read back with plain calls.
    let c = RestClient::new(&e.direct);
    let api = rest_api(&c, "rest").await;
    assert_ours(
        &api.tags().unwrap().clone().into_iter().collect(),
        "rest",
        "REST API",
    );
    let types: Vec<&str> = api
        .endpoint_configuration()
        .unwrap()
        .types()
        .iter()
        .map(|t| t.as_str())
        .collect();
    assert_eq!(types, ["REGIONAL"]);
    let resources = c
        .get_resources()
        .rest_api_id(&id)
        .embed("methods")
        .send()
        .await
        .unwrap();
    let mut paths: Vec<&str> = resources.items().iter().filter_map(|r| r.path()).collect();
    paths.sort();
    assert_eq!(paths, ["/", "/{proxy+}"]);
    for r in resources.items() {
        let methods = r.resource_methods().unwrap();
        assert_eq!(methods.len(), 1, "{methods:?}");
        let m = &methods["ANY"];
        assert_eq!(m.api_key_required(), Some(true));
        assert_eq!(m.authorization_type(), Some("NONE"));
    }
    let stages = c.get_stages().rest_api_id(&id).send().await.unwrap();
    assert_eq!(stages.item().len(), 1);
    assert_eq!(stages.item()[0].stage_name(), Some("live"));
    let plans = c.get_usage_plans().send().await.unwrap();
    let plan = plans
        .items()
        .iter()
        .find(|p| p.name() == Some("claude-proxy-rest"))
        .expect("the usage plan");
    assert_ours(
        &plan.tags().unwrap().clone().into_iter().collect(),
        "rest",
        "usage plan",
    );
    assert_eq!(plan.throttle().unwrap().rate_limit(), 5.0);
    assert_eq!(plan.throttle().unwrap().burst_limit(), 10);
    assert_eq!(plan.quota().unwrap().limit(), 5000);
    assert_eq!(plan.api_stages()[0].api_id(), Some(id.as_str()));
    assert_eq!(plan.api_stages()[0].stage(), Some("live"));
    let members = c
        .get_usage_plan_keys()
        .usage_plan_id(plan.id().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(members.items().len(), 1);
    let key_id = members.items()[0].id().unwrap().to_string();
    let stored = c
        .get_api_key()
        .api_key(&key_id)
        .include_value(true)
        .send()
        .await
        .unwrap();
    assert_eq!(stored.name(), Some("claude-proxy-rest-default"));
    assert_eq!(stored.value(), Some(key.expose()));
    assert!(stored.enabled());
    // The invoke permission, scoped to the stage; the function's environment.
    let lambda = aws_sdk_lambda::Client::new(&e.direct);
    let policy = lambda
        .get_policy()
        .function_name("claude-proxy-rest")
        .send()
        .await
        .unwrap();
    let doc: Value = serde_json::from_str(policy.policy().unwrap()).unwrap();
    let statements = doc["Statement"].as_array().unwrap();
    assert_eq!(statements.len(), 1, "only the REST API's: {doc}");
    assert_eq!(
        condition(&statements[0], "AWS:SourceArn", "SourceArn").as_deref(),
        Some(format!("arn:aws:execute-api:us-east-1:123456789012:{id}/live/*/*").as_str())
    );
    let cfg = lambda
        .get_function_configuration()
        .function_name("claude-proxy-rest")
        .send()
        .await
        .unwrap();
    let env = cfg.environment().unwrap().variables().unwrap();
    assert_eq!(env["REST_RESPONSE_MODE"], "stream");
    assert_eq!(env["CALLER_AUTH"], "token");
    assert!(!env.values().any(|v| v.contains(key.expose())));

    // Redeploy: nothing to do, nothing written, no key shown (the transfer mode moto does
    // not echo is not taken for a difference).
    let mut seen = e.proxy.calls();
    e.proxy.clear();
    let (p2, again) = deploy_with(&e.aws, &rest("rest"), None).await.unwrap();
    assert!(p2.is_empty(), "{p2}");
    assert!(again.api_key.is_none());
    assert_eq!(again.rest_url, out.rest_url);
    assert_eq!(e.proxy.mutating_calls(), vec![]);

    // The usage plan's numbers from stack.toml: exactly the plan changes.
    let mut config = infra::config::StackConfig::default()
        .with_overrides(&rest("rest"))
        .unwrap();
    config.api.rate_limit = 2.0;
    config.api.burst_limit = 4;
    let d = infra::Desired::new(config, Some(&artifact()), Default::default()).unwrap();
    let p3 = plan_for(&e.aws, &d).await;
    assert_eq!(p3.changes.len(), 1, "{p3}");
    assert_eq!(p3.changes[0].kind, infra::plan::Kind::UsagePlan);
    let done = infra::apply(&e.aws, &p3, &d, &infra::Silent).await.unwrap();
    assert!(done.api_key.is_none(), "the key stays");
    assert!(plan_for(&e.aws, &d).await.is_empty());
    let plans = c.get_usage_plans().send().await.unwrap();
    let plan = plans
        .items()
        .iter()
        .find(|p| p.name() == Some("claude-proxy-rest"))
        .unwrap();
    assert_eq!(plan.throttle().unwrap().rate_limit(), 2.0);
    assert_eq!(plan.throttle().unwrap().burst_limit(), 4);

    // --rotate-token: a new caller token and a new key; the old key is gone.
    let mut d = desired(&rest("rest"), None);
    d.spec.as_mut().unwrap().config.api.rate_limit = 2.0;
    d.spec.as_mut().unwrap().config.api.burst_limit = 4;
    d.spec.as_mut().unwrap().secret.rotate_token = true;
    let p4 = plan_for(&e.aws, &d).await;
    let rotated = infra::apply(&e.aws, &p4, &d, &infra::Silent).await.unwrap();
    let new_key = rotated.api_key.expect("a rotated key is shown");
    assert_ne!(new_key.expose(), key.expose());
    assert!(rotated.caller_token.is_some());
    let keys = c.get_api_keys().include_values(true).send().await.unwrap();
    let values: Vec<&str> = keys.items().iter().filter_map(|k| k.value()).collect();
    assert_eq!(values, [new_key.expose()], "only the new key is left");

    infra::teardown(&e.aws, "rest", &infra::Silent)
        .await
        .unwrap();
    assert_nothing_left(&e.direct, "rest").await;

    // docs/deployer-policy.json allows every call made: create, redeploy, change,
    // rotation, teardown.
    let policy: Value =
        serde_json::from_str(include_str!("../../docs/deployer-policy.json")).unwrap();
    let allowed: std::collections::BTreeSet<String> = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| as_strings(&s["Action"]))
        .collect();
    seen.extend(e.proxy.calls());
    let needed: std::collections::BTreeSet<String> = seen
        .iter()
        .filter_map(stand_ins::iam_actions::iam_action)
        .collect();
    let missing: Vec<&String> = needed.difference(&allowed).collect();
    assert!(
        missing.is_empty(),
        "docs/deployer-policy.json lacks {missing:?}"
    );
    for a in [
        "apigateway:PUT",
        "apigateway:PATCH",
        "apigateway:POST",
        "apigateway:DELETE",
    ] {
        assert!(needed.contains(a), "{a} not used? {needed:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_left_with_only_its_rest_front_is_still_found_by_its_tags() {
    // A teardown that stopped after the function and its role went still leaves a stack
    // `teardown --older-than` finds: the REST API, its usage plan and key carry the tags.
    let e = env().await;
    deploy_with(&e.aws, &rest("orphan"), Some(KEY))
        .await
        .unwrap();
    let lambda = aws_sdk_lambda::Client::new(&e.direct);
    lambda
        .delete_function()
        .function_name("claude-proxy-orphan")
        .send()
        .await
        .unwrap();
    let found = infra::discover::find_stacks(&e.aws).await.unwrap();
    let ours = found
        .iter()
        .find(|s| s.stack == "orphan")
        .expect("the stack is found");
    for what in [
        "REST API claude-proxy-orphan",
        "usage plan claude-proxy-orphan",
        "API key claude-proxy-orphan-default",
    ] {
        assert!(
            ours.resources.iter().any(|r| r.starts_with(what)),
            "{what} not among {:?}",
            ours.resources
        );
    }
    infra::teardown(&e.aws, "orphan", &infra::Silent)
        .await
        .unwrap();
    assert_nothing_left(&e.direct, "orphan").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_fronts_removes_what_the_other_made() {
    let e = env().await;
    deploy_with(&e.aws, &rest("swap"), Some(KEY)).await.unwrap();
    // To the HTTP API (the function URL comes back with it, as by default).
    let http = Overrides {
        api: Some(ApiKind::Http),
        ..rest("swap")
    };
    let mut d = desired(&http, None);
    d.spec.as_mut().unwrap().config.function_url.enabled = true;
    let p = plan_for(&e.aws, &d).await;
    let deleted: Vec<infra::plan::Kind> = p
        .changes
        .iter()
        .filter(|c| matches!(c.change, infra::plan::Change::Delete))
        .map(|c| c.kind)
        .collect();
    assert!(
        deleted.contains(&infra::plan::Kind::RestApi)
            && deleted.contains(&infra::plan::Kind::UsagePlan),
        "{p}"
    );
    // The usage plan goes before the REST API it names.
    let pos = |k| p.changes.iter().position(|c| c.kind == k).unwrap();
    assert!(pos(infra::plan::Kind::UsagePlan) < pos(infra::plan::Kind::RestApi));
    let out = infra::apply(&e.aws, &p, &d, &infra::Silent).await.unwrap();
    assert!(out.rest_url.is_none() && out.api_url.is_some() && out.function_url.is_some());
    let c = RestClient::new(&e.direct);
    assert!(c.get_rest_apis().send().await.unwrap().items().is_empty());
    assert!(c.get_usage_plans().send().await.unwrap().items().is_empty());
    assert!(c.get_api_keys().send().await.unwrap().items().is_empty());
    assert!(plan_for(&e.aws, &d).await.is_empty());
    infra::teardown(&e.aws, "swap", &infra::Silent)
        .await
        .unwrap();
    assert_nothing_left(&e.direct, "swap").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_rest_deploy_converges_and_tears_down() {
    // Fail each mutating call of the REST API and its usage plan once, in turn: the next
    // deploy converges, with one API, one plan and one key (a key whose create did not
    // finish, never shown, does not stay).
    let e = env().await;
    deploy_with(&e.aws, &rest("intr"), Some(KEY)).await.unwrap();
    infra::teardown(&e.aws, "intr", &infra::Silent)
        .await
        .unwrap();
    e.proxy.clear();
    deploy_with(&e.aws, &rest("intr"), Some(KEY)).await.unwrap();
    let all = e.proxy.mutating_calls();
    let first_rest = all
        .iter()
        .position(|c| c.service == "apigateway")
        .expect("REST API calls");
    let last_rest = all.iter().rposition(|c| c.service == "apigateway").unwrap();
    // API, resource, 2 methods, 2 integrations, deployment, stage, plan, key, membership.
    assert!(last_rest - first_rest + 1 >= 11, "{all:?}");
    infra::teardown(&e.aws, "intr", &infra::Silent)
        .await
        .unwrap();
    for k in (first_rest + 1)..=(last_rest + 1) {
        e.proxy.clear();
        // The call takes effect, its answer is an error the SDK does not retry: as a crash
        // right after it, with the process still alive to report it.
        e.proxy.inject(Fault {
            matcher: stand_ins::aws_proxy::Matcher::NthMutating(k),
            times: 1,
            status: 400,
            code: "BadRequestException".into(),
            message: "injected after the call took effect".into(),
            after_forwarding: true,
            kind: stand_ins::aws_proxy::FaultKind::Error,
        });
        let failed = deploy_with(&e.aws, &rest("intr"), Some(KEY)).await;
        assert!(failed.is_err(), "call {k} was to fail");
        deploy_with(&e.aws, &rest("intr"), Some(KEY)).await.unwrap();
        let c = RestClient::new(&e.direct);
        rest_api(&c, "intr").await;
        assert_eq!(c.get_usage_plans().send().await.unwrap().items().len(), 1);
        let keys = c.get_api_keys().send().await.unwrap();
        assert_eq!(keys.items().len(), 1, "call {k}: {:?}", keys.items());
        let d = desired(&rest("intr"), None);
        assert!(plan_for(&e.aws, &d).await.is_empty(), "call {k}");
        infra::teardown(&e.aws, "intr", &infra::Silent)
            .await
            .unwrap();
        assert_nothing_left(&e.direct, "intr").await;
    }
}
