//! A Bedrock stack against moto: deployed without an Anthropic key, the role's inline policy
//! (read back with plain SDK calls) names exactly the configured model and profile ARNs, and
//! switching the provider back and forth converges with updates only.

use infra::config::StackConfig;
use infra::{Change, Desired, SecretInput};
use serde_json::Value;
use stand_ins::stack_support::*;
use std::collections::{BTreeMap, BTreeSet};

const MODELS: &str = r#"
[limits]
default_model = "claude-haiku-4-5"

[provider.bedrock_models]
claude-haiku-4-5 = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
claude-sonnet-4-5 = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
claude-opus-4-1 = "anthropic.claude-opus-4-1-20250805-v1:0"
"#;

fn desired(stack: &str, kind: &str, key: Option<&str>) -> Desired {
    let file = StackConfig::parse(&format!(
        "[stack]\nname = \"{stack}\"\n[provider]\nkind = \"{kind}\"\n{MODELS}"
    ))
    .unwrap();
    Desired::new(
        &file,
        &Default::default(),
        Some(&artifact()),
        SecretInput {
            anthropic_api_key: key.map(infra::ApiKey::new),
            rotate_token: false,
        },
    )
    .unwrap()
}

async fn apply_inner(env: &Env, d: &Desired) -> infra::Plan {
    let p = plan_for(&env.aws, d).await;
    assert!(p.blockers.is_empty(), "{:?}\n{p}", p.blockers);
    assert!(
        !p.changes
            .iter()
            .any(|c| matches!(c.change, Change::Replace { .. })),
        "a provider switch must not replace anything:\n{p}"
    );
    // Boxed: the apply future is large in debug builds.
    Box::pin(infra::apply(&env.aws, &p, d, &infra::Silent))
        .await
        .unwrap();
    let again = plan_for(&env.aws, d).await;
    assert!(again.is_empty(), "not converged:\n{again}");
    p
}

/// Applies `d` (updates only) and checks that a second plan is empty.
async fn apply(env: &Env, d: &Desired) -> infra::Plan {
    Box::pin(apply_inner(env, d)).await
}

/// The role's inline policy, read straight from moto: Bedrock resources by statement Sid,
/// and every action.
async fn bedrock_policy(env: &Env, stack: &str) -> (BTreeMap<String, BTreeSet<String>>, Value) {
    let iam = aws_sdk_iam::Client::new(&env.direct);
    let role = format!("claude-proxy-{stack}-role");
    let doc = iam
        .get_role_policy()
        .role_name(&role)
        .policy_name(format!("claude-proxy-{stack}-policy"))
        .send()
        .await
        .unwrap();
    let doc: Value = serde_json::from_str(&percent_decode(doc.policy_document())).unwrap();
    let mut by_sid = BTreeMap::new();
    for st in doc["Statement"].as_array().unwrap() {
        assert_eq!(st["Effect"], "Allow", "{st}");
        let actions = as_strings(&st["Action"]);
        assert!(actions.iter().all(|a| !a.contains('*')), "{st}");
        if actions.iter().any(|a| a.starts_with("bedrock:")) {
            by_sid.insert(
                st["Sid"].as_str().unwrap().to_string(),
                as_strings(&st["Resource"]).into_iter().collect(),
            );
        }
    }
    (by_sid, doc)
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

async fn function_env(env: &Env, stack: &str) -> BTreeMap<String, String> {
    let lambda = aws_sdk_lambda::Client::new(&env.direct);
    let f = lambda
        .get_function_configuration()
        .function_name(format!("claude-proxy-{stack}"))
        .send()
        .await
        .unwrap();
    f.environment()
        .and_then(|e| e.variables())
        .map(|v| v.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

async fn secret_value(env: &Env, stack: &str) -> Value {
    let sm = aws_sdk_secretsmanager::Client::new(&env.direct);
    let v = sm
        .get_secret_value()
        .secret_id(format!("claude-proxy/{stack}"))
        .send()
        .await
        .unwrap();
    serde_json::from_str(v.secret_string().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bedrock_role_names_exactly_the_configured_models_and_switching_converges() {
    let env = env().await;
    let stack = "bedrock-a";
    let p = |id: &str| format!("arn:aws:bedrock:{REGION}:{ACCOUNT}:inference-profile/{id}");
    let fm = |region: &str, id: &str| format!("arn:aws:bedrock:{region}::foundation-model/{id}");
    let haiku = "anthropic.claude-haiku-4-5-20251001-v1:0";
    let sonnet = "anthropic.claude-sonnet-4-5-20250929-v1:0";
    let opus = "anthropic.claude-opus-4-1-20250805-v1:0";

    // First deploy with Bedrock: no Anthropic key anywhere.
    let first = apply(&env, &desired(stack, "bedrock", None)).await;
    assert!(!first.to_string().contains("anthropic_api_key"), "{first}");
    let (policy, doc) = bedrock_policy(&env, stack).await;
    let expected: BTreeMap<String, BTreeSet<String>> = BTreeMap::from([
        (
            "InvokeBedrockModels".to_string(),
            [
                p(&format!("us.{haiku}")),
                p(&format!("global.{sonnet}")),
                fm(REGION, opus),
            ]
            .into_iter()
            .collect(),
        ),
        (
            "InvokeBedrockModelsThroughProfiles".to_string(),
            [
                fm("us-east-1", haiku),
                fm("us-east-2", haiku),
                fm("us-west-1", haiku),
                fm("us-west-2", haiku),
                fm(REGION, sonnet),
            ]
            .into_iter()
            .collect(),
        ),
        (
            "InvokeBedrockModelsThroughGlobalProfiles".to_string(),
            set(&[&format!("arn:aws:bedrock:::foundation-model/{sonnet}")]),
        ),
        (
            "CountBedrockTokens".to_string(),
            [fm(REGION, haiku), fm(REGION, sonnet), fm(REGION, opus)]
                .into_iter()
                .collect(),
        ),
    ]);
    assert_eq!(policy, expected, "{doc:#}");
    // Routed models only through the configured profiles; the global ones only Region-less.
    let statements = doc["Statement"].as_array().unwrap();
    let through = statements
        .iter()
        .find(|s| s["Sid"] == "InvokeBedrockModelsThroughProfiles")
        .unwrap();
    assert_eq!(
        as_strings(&through["Condition"]["StringEquals"]["bedrock:InferenceProfileArn"])
            .into_iter()
            .collect::<BTreeSet<_>>(),
        [p(&format!("global.{sonnet}")), p(&format!("us.{haiku}"))]
            .into_iter()
            .collect()
    );
    let global = statements
        .iter()
        .find(|s| s["Sid"] == "InvokeBedrockModelsThroughGlobalProfiles")
        .unwrap();
    assert_eq!(
        global["Condition"]["StringEquals"]["aws:RequestedRegion"],
        "unspecified"
    );
    let env_vars = function_env(&env, stack).await;
    assert_eq!(env_vars["PROVIDER"], "bedrock");
    assert_eq!(
        env_vars["BEDROCK_MODEL_MAP"],
        format!(
            "claude-haiku-4-5=us.{haiku},claude-opus-4-1={opus},claude-sonnet-4-5=global.{sonnet}"
        )
    );
    let secret = secret_value(&env, stack).await;
    assert!(secret.get("anthropic_api_key").is_none(), "{secret}");
    assert_eq!(secret["caller_tokens"].as_array().unwrap().len(), 1);

    // To Anthropic (the key is now needed): no Bedrock permission or setting is left.
    let to_anthropic = apply(&env, &desired(stack, "anthropic", Some(KEY))).await;
    assert!(!to_anthropic.to_string().contains(KEY));
    let (policy, _) = bedrock_policy(&env, stack).await;
    assert!(policy.is_empty(), "{policy:?}");
    let env_vars = function_env(&env, stack).await;
    assert!(!env_vars.contains_key("PROVIDER") && !env_vars.contains_key("BEDROCK_MODEL_MAP"));
    let secret2 = secret_value(&env, stack).await;
    assert_eq!(secret2["anthropic_api_key"], KEY);
    assert_eq!(
        secret2["caller_tokens"], secret["caller_tokens"],
        "the caller token survives the switch"
    );

    // And back: the same policy as the first deploy.
    apply(&env, &desired(stack, "bedrock", None)).await;
    let (policy, _) = bedrock_policy(&env, stack).await;
    assert_eq!(policy, expected);
    assert_eq!(function_env(&env, stack).await["PROVIDER"], "bedrock");
}
