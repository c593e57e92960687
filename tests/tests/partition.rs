//! Stacks outside the `aws` partition: China (`cn-north-1`, partition `aws-cn`) and a Bedrock
//! stack in GovCloud (`us-gov-west-1`, `aws-us-gov`), against moto
//! behind the proxy's partition profile (`stand_ins::aws_proxy::partition`), which refuses
//! ARNs of another partition as AWS does. The partition comes from `GetCallerIdentity`; every
//! ARN the toolkit writes carries it; a second plan is empty (no perpetual diff); teardown
//! leaves nothing.

use serde_json::Value;
use stand_ins::stack_support::*;

const CN: &str = "cn-north-1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_in_aws_cn_writes_aws_cn_arns_and_converges() {
    let e = env_in(CN).await;
    e.proxy.strict_partition();
    assert_eq!(e.aws.partition, "aws-cn");

    // With the HTTP API: role policy, function role, integration URI and the permission's
    // source ARN are all built by the toolkit.
    let o = overrides("china");
    let (p, out) = deploy_with(&e.aws, &o, Some(KEY))
        .await
        .expect("deploy in aws-cn");
    assert!(!p.is_empty());
    let refused: Vec<_> = e.proxy.calls().into_iter().filter(|c| c.injected).collect();
    assert!(
        refused.is_empty(),
        "refused by the partition profile: {refused:?}"
    );
    assert!(
        out.role_arn.starts_with("arn:aws-cn:iam::"),
        "{}",
        out.role_arn
    );
    assert!(
        out.function_arn
            .starts_with(&format!("arn:aws-cn:lambda:{CN}:{ACCOUNT}:function:")),
        "{}",
        out.function_arn
    );

    // The inline policy, read straight from moto: every resource in aws-cn, the log group's
    // ARN exactly.
    let iam = aws_sdk_iam::Client::new(&e.direct);
    let doc = iam
        .get_role_policy()
        .role_name("claude-proxy-china-role")
        .policy_name("claude-proxy-china-policy")
        .send()
        .await
        .unwrap();
    let doc: Value = serde_json::from_str(&percent_decode(doc.policy_document())).unwrap();
    let resources: Vec<String> = doc["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| as_strings(&s["Resource"]))
        .collect();
    assert!(
        resources.contains(&format!(
            "arn:aws-cn:logs:{CN}:{ACCOUNT}:log-group:/aws/lambda/claude-proxy-china:*"
        )),
        "{doc:#}"
    );
    assert!(
        resources.iter().all(|r| r.starts_with("arn:aws-cn:")),
        "{doc:#}"
    );

    // The function's resource policy: the API Gateway statement's source ARN in aws-cn.
    let lambda = aws_sdk_lambda::Client::new(&e.direct);
    let policy = lambda
        .get_policy()
        .function_name("claude-proxy-china")
        .send()
        .await
        .unwrap();
    let policy = policy.policy().unwrap_or_default();
    assert!(policy.contains("arn:aws-cn:execute-api:"), "{policy}");
    assert!(!policy.contains("arn:aws:"), "{policy}");

    // Nothing to do on a second plan.
    let again = plan_for(&e.aws, &desired(&o, None)).await;
    assert!(again.is_empty(), "perpetual diff in aws-cn:\n{again}");

    infra::teardown(&e.aws, "china", &infra::Silent)
        .await
        .expect("teardown in aws-cn");
    assert!(e.proxy.calls().iter().all(|c| !c.injected));
}

/// A Bedrock stack in GovCloud (`us-gov-west-1`, partition `aws-us-gov`): the inference
/// profile is looked up there, and every Bedrock ARN of the role's policy (profile,
/// routed foundation models, the directly named model) is in `aws-us-gov`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bedrock_stack_in_aws_us_gov_grants_aws_us_gov_arns() {
    const GOV: &str = "us-gov-west-1";
    let e = env_in(GOV).await;
    e.proxy.strict_partition();
    assert_eq!(e.aws.partition, "aws-us-gov");
    let haiku = "anthropic.claude-haiku-4-5-20251001-v1:0";
    let sonnet = "anthropic.claude-sonnet-4-5-20250929-v1:0";
    let file = infra::config::StackConfig::parse(&format!(
        "[stack]\nname = \"gov\"\n[provider]\nkind = \"bedrock\"\n\
         [limits]\ndefault_model = \"claude-haiku-4-5\"\n\
         [provider.bedrock_models]\nclaude-haiku-4-5 = \"us-gov.{haiku}\"\nclaude-sonnet-4-5 = \"{sonnet}\"\n"
    ))
    .unwrap();
    let d = infra::Desired::new(
        file.clone(),
        Some(&artifact()),
        infra::SecretInput {
            anthropic_api_key: None,
            rotate_token: false,
        },
    )
    .unwrap();
    let p = plan_for(&e.aws, &d).await;
    assert!(p.blockers.is_empty(), "{p}");
    assert!(
        !p.notes.iter().any(|n| n.contains("GetInferenceProfile")),
        "{p}"
    );
    Box::pin(infra::apply(&e.aws, &p, &d, &infra::Silent))
        .await
        .expect("deploy in aws-us-gov");
    let again = plan_for(&e.aws, &d).await;
    assert!(again.is_empty(), "perpetual diff in aws-us-gov:\n{again}");

    let iam = aws_sdk_iam::Client::new(&e.direct);
    let doc = iam
        .get_role_policy()
        .role_name("claude-proxy-gov-role")
        .policy_name("claude-proxy-gov-policy")
        .send()
        .await
        .unwrap();
    let doc: Value = serde_json::from_str(&percent_decode(doc.policy_document())).unwrap();
    let resources: Vec<String> = doc["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| as_strings(&s["Resource"]))
        .collect();
    for want in [
        format!("arn:aws-us-gov:bedrock:{GOV}:{ACCOUNT}:inference-profile/us-gov.{haiku}"),
        format!("arn:aws-us-gov:bedrock:us-gov-east-1::foundation-model/{haiku}"),
        format!("arn:aws-us-gov:bedrock:{GOV}::foundation-model/{sonnet}"),
    ] {
        assert!(resources.contains(&want), "{want} missing: {doc:#}");
    }
    assert!(
        resources.iter().all(|r| r.starts_with("arn:aws-us-gov:")),
        "{doc:#}"
    );
    infra::teardown(&e.aws, "gov", &infra::Silent)
        .await
        .expect("teardown in aws-us-gov");
}

/// The REST front in aws-cn: the integration URI, the permission's source ARN and the stage
/// URL (`amazonaws.com.cn`) all in the account's partition, and nothing to do afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rest_front_in_aws_cn_streams_through_aws_cn_arns() {
    let e = env_in(CN).await;
    e.proxy.strict_partition();
    let o = infra::config::Overrides {
        stack: Some("china-rest".into()),
        api: Some(infra::config::ApiKind::Rest),
        ..Default::default()
    };
    let (_, out) = deploy_with(&e.aws, &o, Some(KEY))
        .await
        .expect("deploy in aws-cn");
    let refused: Vec<_> = e.proxy.calls().into_iter().filter(|c| c.injected).collect();
    assert!(
        refused.is_empty(),
        "refused by the partition profile: {refused:?}"
    );
    let url = out.rest_url.clone().unwrap();
    assert!(
        url.ends_with(&format!(".execute-api.{CN}.amazonaws.com.cn/live")),
        "{url}"
    );
    let uris: Vec<Value> = e
        .proxy
        .calls()
        .iter()
        .filter(|c| c.method == "PUT" && c.path.ends_with("/integration"))
        .map(|c| serde_json::from_str::<Value>(&c.body).unwrap()["uri"].clone())
        .collect();
    assert_eq!(uris.len(), 2);
    for u in &uris {
        assert!(
            u.as_str().unwrap().starts_with(&format!(
                "arn:aws-cn:apigateway:{CN}:lambda:path/2021-11-15/functions/arn:aws-cn:lambda:"
            )),
            "{u}"
        );
    }
    let policy = aws_sdk_lambda::Client::new(&e.direct)
        .get_policy()
        .function_name("claude-proxy-china-rest")
        .send()
        .await
        .unwrap();
    let policy = policy.policy().unwrap_or_default();
    assert!(policy.contains("arn:aws-cn:execute-api:"), "{policy}");
    assert!(!policy.contains("arn:aws:"), "{policy}");
    let again = plan_for(&e.aws, &desired(&o, None)).await;
    assert!(again.is_empty(), "perpetual diff in aws-cn:\n{again}");
    infra::teardown(&e.aws, "china-rest", &infra::Silent)
        .await
        .expect("teardown in aws-cn");
    assert_nothing_left(&e.direct, "china-rest").await;
}
