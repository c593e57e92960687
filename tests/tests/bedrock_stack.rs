//! A Bedrock stack against moto: deployed without an Anthropic key, the role's inline policy
//! (read back with plain SDK calls) names exactly the configured model and profile ARNs, and
//! switching the provider back and forth converges with updates only.
//!
//! Inference profiles are resolved with `GetInferenceProfile`, which the proxy answers (moto
//! lacks it; `stand_ins::aws_proxy::bedrock_profiles`, whose geographies deliberately differ
//! from the toolkit's built-in table): the role is granted exactly the models each profile
//! routes to, and the built-in table only when the lookup is refused.

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
    desired_with(
        stack,
        &format!("[provider]\nkind = \"{kind}\"\n{MODELS}"),
        key,
    )
}

/// A stack with this `[provider]` part (and what follows it) of `stack.toml`.
fn desired_with(stack: &str, provider_toml: &str, key: Option<&str>) -> Desired {
    let file =
        StackConfig::parse(&format!("[stack]\nname = \"{stack}\"\n{provider_toml}")).unwrap();
    Desired::new(
        file.clone(),
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
            // Exactly where the stand-in's GetInferenceProfile says each profile routes (its
            // `us` has no us-west-1, unlike the built-in table).
            "InvokeBedrockModelsThroughProfiles".to_string(),
            [
                fm("us-east-1", haiku),
                fm("us-east-2", haiku),
                fm("us-west-2", haiku),
                fm("us-east-1", sonnet),
                fm("us-east-2", sonnet),
                fm("us-west-2", sonnet),
                fm("eu-west-1", sonnet),
                fm("ap-northeast-1", sonnet),
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
    assert_eq!(secret["callers"].as_array().unwrap().len(), 1);

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
        secret2["callers"], secret["callers"],
        "the caller token survives the switch"
    );

    // And back: the same policy as the first deploy.
    apply(&env, &desired(stack, "bedrock", None)).await;
    let (policy, _) = bedrock_policy(&env, stack).await;
    assert_eq!(policy, expected);
    assert_eq!(function_env(&env, stack).await["PROVIDER"], "bedrock");
}

fn through_profiles(doc: &Value) -> (BTreeSet<String>, BTreeSet<String>) {
    let st = doc["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Sid"] == "InvokeBedrockModelsThroughProfiles")
        .cloned()
        .unwrap_or(Value::Null);
    (
        as_strings(&st["Resource"]).into_iter().collect(),
        as_strings(&st["Condition"]["StringEquals"]["bedrock:InferenceProfileArn"])
            .into_iter()
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn application_and_system_profiles_are_resolved_with_get_inference_profile() {
    let env = env().await;
    let haiku = "anthropic.claude-haiku-4-5-20251001-v1:0";
    let sonnet = "anthropic.claude-sonnet-4-5-20250929-v1:0";
    let fm = |region: &str, id: &str| format!("arn:aws:bedrock:{region}::foundation-model/{id}");
    let app = format!("arn:aws:bedrock:{REGION}:{ACCOUNT}:application-inference-profile/team1");
    env.proxy
        .set_inference_profiles(stand_ins::aws_proxy::bedrock_profiles::InferenceProfiles {
            application: BTreeMap::from([(
                app.clone(),
                vec![fm("us-east-1", haiku), fm("us-west-2", haiku)],
            )]),
            refuse: false,
        });

    // An application inference profile: its models, pinned to it.
    let d = desired_with(
        "bedrock-app",
        &format!(
            "[provider]\nkind = \"bedrock\"\n[limits]\ndefault_model = \"claude-haiku-4-5\"\n\
             [provider.bedrock_models]\nclaude-haiku-4-5 = \"{app}\"\n"
        ),
        None,
    );
    let p = apply(&env, &d).await;
    assert!(
        !p.notes.iter().any(|n| n.contains("GetInferenceProfile")),
        "{p}"
    );
    let (_, doc) = bedrock_policy(&env, "bedrock-app").await;
    assert_eq!(
        through_profiles(&doc),
        (
            set(&[&fm("us-east-1", haiku), &fm("us-west-2", haiku)]),
            set(&[&app])
        ),
        "{doc:#}"
    );
    assert!(env
        .proxy
        .calls()
        .iter()
        .any(|c| c.service == "bedrock" && c.operation.starts_with("GET /inference-profiles/")));
    // The deployer policy allows the lookup (and every other call made).
    let deployer: Value =
        serde_json::from_str(include_str!("../../docs/deployer-policy.json")).unwrap();
    let allowed: BTreeSet<String> = deployer["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| as_strings(&s["Action"]))
        .collect();
    let needed: BTreeSet<String> = env
        .proxy
        .calls()
        .iter()
        .filter_map(stand_ins::iam_actions::iam_action)
        .collect();
    assert!(needed.contains("bedrock:GetInferenceProfile"), "{needed:?}");
    let missing: Vec<&String> = needed.difference(&allowed).collect();
    assert!(
        missing.is_empty(),
        "docs/deployer-policy.json lacks {missing:?}"
    );

    // An apac system profile called from ap-southeast-2: every Region the lookup names,
    // including those the built-in table lacks.
    let d = desired_with(
        "bedrock-apac",
        &format!(
            "[provider]\nkind = \"bedrock\"\nbedrock_region = \"ap-southeast-2\"\n\
             [limits]\ndefault_model = \"claude-sonnet-4-5\"\n\
             [provider.bedrock_models]\nclaude-sonnet-4-5 = \"apac.{sonnet}\"\n"
        ),
        None,
    );
    apply(&env, &d).await;
    let (_, doc) = bedrock_policy(&env, "bedrock-apac").await;
    let (routed, pinned) = through_profiles(&doc);
    let apac = stand_ins::aws_proxy::bedrock_profiles::SYSTEM_GEOGRAPHIES
        .iter()
        .find(|(p, _)| *p == "apac")
        .unwrap()
        .1;
    assert_eq!(
        routed,
        apac.iter().map(|r| fm(r, sonnet)).collect::<BTreeSet<_>>(),
        "{doc:#}"
    );
    assert!(routed.contains(&fm("ap-southeast-7", sonnet)));
    assert_eq!(
        pinned,
        set(&[&format!(
            "arn:aws:bedrock:ap-southeast-2:{ACCOUNT}:inference-profile/apac.{sonnet}"
        )])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_lookup_falls_back_to_the_built_in_table_and_the_plan_says_so() {
    let env = env().await;
    env.proxy
        .set_inference_profiles(stand_ins::aws_proxy::bedrock_profiles::InferenceProfiles {
            refuse: true,
            ..Default::default()
        });
    let haiku = "anthropic.claude-haiku-4-5-20251001-v1:0";
    let fm = |region: &str| format!("arn:aws:bedrock:{region}::foundation-model/{haiku}");
    let d = desired("bedrock-refused", "bedrock", None);
    let p = apply(&env, &d).await;
    let text = p.to_string();
    let note = p
        .notes
        .iter()
        .find(|n| n.contains(&format!("us.{haiku}")) && n.contains("GetInferenceProfile"))
        .unwrap_or_else(|| panic!("no fallback note:\n{text}"));
    assert!(
        note.contains("AccessDeniedException") && note.contains("built-in"),
        "{note}"
    );
    // The table's `us` Regions (us-west-1 included, which the lookup would not have named).
    let (_, doc) = bedrock_policy(&env, "bedrock-refused").await;
    let (routed, _) = through_profiles(&doc);
    for r in ["us-east-1", "us-east-2", "us-west-1", "us-west-2"] {
        assert!(routed.contains(&fm(r)), "{r}: {doc:#}");
    }

    // A lookup of a profile that does not exist is a plan blocker, before any change.
    env.proxy.set_inference_profiles(Default::default());
    let missing = desired_with(
        "bedrock-missing",
        &format!(
            "[provider]\nkind = \"bedrock\"\n[limits]\ndefault_model = \"claude-haiku-4-5\"\n\
             [provider.bedrock_models]\nclaude-haiku-4-5 = \"eu.{haiku}\"\n"
        ),
        None,
    );
    let p = plan_for(&env.aws, &missing).await;
    assert!(
        p.blockers
            .iter()
            .any(|b| b.contains(&format!("eu.{haiku}")) && b.contains("does not exist")),
        "{p}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fallback_gets_the_bedrock_grants_of_a_bedrock_stack_and_the_secret_keeps_the_key() {
    let env = env().await;
    let stack = "bedrock-f";
    let with = |kind: &str, fallback: &str, key| {
        desired_with(
            stack,
            &format!("[provider]\nkind = \"{kind}\"\nfallback = \"{fallback}\"\n{MODELS}"),
            key,
        )
    };

    // A Bedrock stack first: its grants are the reference.
    apply(&env, &desired(stack, "bedrock", None)).await;
    let (bedrock_grants, _) = bedrock_policy(&env, stack).await;
    assert!(!bedrock_grants.is_empty());

    // The Anthropic API with Bedrock as the fallback: the same grants, the key in the secret,
    // the map and the fallback in the environment (no PROVIDER: Anthropic is primary).
    let p = apply(&env, &with("anthropic", "bedrock", Some(KEY))).await;
    assert!(!p.to_string().contains(KEY));
    assert!(
        p.notes
            .iter()
            .any(|n| n.starts_with("provider anthropic is primary, bedrock the fallback")),
        "{p}"
    );
    assert_eq!(bedrock_policy(&env, stack).await.0, bedrock_grants);
    let vars = function_env(&env, stack).await;
    assert_eq!(vars["FALLBACK"], "bedrock");
    assert!(
        vars["BEDROCK_MODEL_MAP"].contains("claude-opus-4-1="),
        "{vars:?}"
    );
    assert!(!vars.contains_key("PROVIDER"), "{vars:?}");
    assert_eq!(secret_value(&env, stack).await["anthropic_api_key"], KEY);

    // Bedrock with the Anthropic API as the fallback: the key stays (none given now), the
    // grants stay.
    apply(&env, &with("bedrock", "anthropic", None)).await;
    assert_eq!(bedrock_policy(&env, stack).await.0, bedrock_grants);
    let vars = function_env(&env, stack).await;
    assert_eq!(
        (vars["PROVIDER"].as_str(), vars["FALLBACK"].as_str()),
        ("bedrock", "anthropic")
    );
    assert_eq!(secret_value(&env, stack).await["anthropic_api_key"], KEY);

    // No fallback, the Anthropic API: no Bedrock grant or setting is left.
    apply(&env, &desired(stack, "anthropic", Some(KEY))).await;
    assert!(bedrock_policy(&env, stack).await.0.is_empty());
    let vars = function_env(&env, stack).await;
    assert!(
        !vars.contains_key("FALLBACK") && !vars.contains_key("BEDROCK_MODEL_MAP"),
        "{vars:?}"
    );
}
