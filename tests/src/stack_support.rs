//! Shared helpers for the stack tests against moto server: an [`Env`] (moto, the
//! recording proxy in front of it, the toolkit's [`Aws`] through the proxy, and a plain SDK
//! configuration straight to moto for independent checks), deploy shortcuts, and the
//! independent read-back checks [`check_deployed`] and [`assert_nothing_left`].

use crate::aws_proxy::AwsProxy;
use anyhow::Result;
use aws_config::{Region, SdkConfig};
use aws_sdk_lambda::config::Credentials;
use emulators::moto::MotoServer;
use infra::aws::{Aws, IamRetry};
use infra::config::{Overrides, StackConfig};
use infra::{artifact::Artifact, Desired, Outputs, Plan, SecretInput};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

pub const KEY: &str = "sk-ant-api03-NEVER-PRINT-THIS-KEY-0123456789";
pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";

pub struct Env {
    pub moto: MotoServer,
    pub proxy: AwsProxy,
    /// The toolkit's connection (through the proxy), with a fast IAM backoff.
    pub aws: Aws,
    /// Plain SDK configuration straight to moto, for independent checks.
    pub direct: SdkConfig,
}

pub async fn sdk_config(endpoint: &str) -> SdkConfig {
    sdk_config_in(endpoint, REGION).await
}

/// [`sdk_config`] for another Region (moto derives the partition from it: `cn-north-1` is
/// `aws-cn`).
pub async fn sdk_config_in(endpoint: &str, region: &str) -> SdkConfig {
    infra::tls::sdk_defaults()
        .region(Region::new(region.to_string()))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .retry_config(infra::aws::retry_config())
        .load()
        .await
}

pub async fn env() -> Env {
    env_in(REGION).await
}

/// [`env`] in another Region.
pub async fn env_in(region: &str) -> Env {
    let moto = MotoServer::start()
        .await
        .expect("moto server (see the message for how to install it)");
    let proxy = AwsProxy::start(&moto.endpoint_url()).await.unwrap();
    let aws = Aws::from_sdk_config(sdk_config_in(&proxy.endpoint_url(), region).await)
        .await
        .unwrap()
        .with_iam_retry(IamRetry {
            base: Duration::from_millis(5),
            max_delay: Duration::from_millis(40),
            max_total: Duration::from_secs(20),
        });
    let direct = sdk_config_in(&moto.endpoint_url(), region).await;
    proxy.clear();
    Env {
        moto,
        proxy,
        aws,
        direct,
    }
}

pub fn artifact() -> Artifact {
    Artifact::from_bootstrap_bytes(b"\x7fELF not really a binary, moto only unzips it").unwrap()
}

pub fn overrides(stack: &str) -> Overrides {
    Overrides {
        stack: Some(stack.into()),
        http_api: Some(true),
        ..Default::default()
    }
}

pub fn desired(o: &Overrides, key: Option<&str>) -> Desired {
    Desired::new(
        StackConfig::default().with_overrides(o).unwrap(),
        Some(&artifact()),
        SecretInput {
            anthropic_api_key: key.map(infra::ApiKey::new),
            rotate_token: false,
        },
    )
    .unwrap()
}

pub async fn plan_for(aws: &Aws, d: &Desired) -> Plan {
    let actual = infra::read_for(aws, d).await.unwrap();
    infra::plan(d, &actual)
}

pub async fn deploy_with(aws: &Aws, o: &Overrides, key: Option<&str>) -> Result<(Plan, Outputs)> {
    let d = desired(o, key);
    let p = plan_for(aws, &d).await;
    // Boxed: the apply future is too large for a test thread's stack in debug builds.
    let out = Box::pin(infra::apply(aws, &p, &d, &infra::Silent)).await?;
    Ok((p, out))
}

pub async fn deploy(aws: &Aws, stack: &str) -> (Plan, Outputs) {
    deploy_with(aws, &overrides(stack), Some(KEY))
        .await
        .unwrap()
}

/// A policy document as IAM returns it (URL-encoded) or as moto sometimes does (plain JSON).
pub fn percent_decode(s: &str) -> String {
    if s.trim_start().starts_with('{') {
        return s.to_string();
    }
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .expect("a URL-encoded document in UTF-8")
        .into_owned()
}

pub fn as_strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().flat_map(as_strings).collect(),
        _ => vec![],
    }
}

/// A condition value in real-AWS form (`Condition.{op}.{key}`) or moto's form (top-level key).
pub fn condition(stmt: &Value, key: &str, moto_key: &str) -> Option<String> {
    if let Some(ops) = stmt.get("Condition").and_then(Value::as_object) {
        for m in ops.values().filter_map(Value::as_object) {
            for (k, v) in m {
                if k.eq_ignore_ascii_case(key) {
                    return as_strings(v)
                        .into_iter()
                        .next()
                        .or_else(|| Some(v.to_string()));
                }
            }
        }
    }
    stmt.get(moto_key).map(|v| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

pub fn assert_ours(tags: &BTreeMap<String, String>, stack: &str, what: &str) {
    assert_eq!(
        tags.get("stack").map(String::as_str),
        Some(stack),
        "{what} tags: {tags:?}"
    );
    assert_eq!(
        tags.get("managed-by").map(String::as_str),
        Some("claude-lambda-toolkit"),
        "{what} tags: {tags:?}"
    );
    assert!(tags.contains_key("created-at"), "{what} tags: {tags:?}");
}

/// Everything a deploy must leave, read back with plain SDK calls.
pub async fn check_deployed(direct: &SdkConfig, stack: &str, out: &Outputs) {
    check_deployed_code(direct, stack, out, &artifact().code_sha256).await
}

/// [`check_deployed`] for a deploy of another package (e.g. one made by the CLI).
pub async fn check_deployed_code(
    direct: &SdkConfig,
    stack: &str,
    out: &Outputs,
    code_sha256: &str,
) {
    let f = format!("claude-proxy-{stack}");
    let iam = aws_sdk_iam::Client::new(direct);
    let lambda = aws_sdk_lambda::Client::new(direct);
    let secrets = aws_sdk_secretsmanager::Client::new(direct);
    let logs = aws_sdk_cloudwatchlogs::Client::new(direct);
    let apigw = aws_sdk_apigatewayv2::Client::new(direct);

    // Secret: exact ARN with its random suffix, tags, value.
    let s = secrets
        .describe_secret()
        .secret_id(format!("claude-proxy/{stack}"))
        .send()
        .await
        .unwrap();
    let secret_arn = s.arn().unwrap().to_string();
    assert_eq!(out.secret_arn, secret_arn);
    let suffix = secret_arn.rsplit('-').next().unwrap();
    assert_eq!(suffix.len(), 6, "secret ARN ends in -XXXXXX: {secret_arn}");
    let tags = s
        .tags()
        .iter()
        .map(|t| (t.key().unwrap().to_string(), t.value().unwrap().to_string()))
        .collect();
    assert_ours(&tags, stack, "secret");
    let v: Value = serde_json::from_str(
        secrets
            .get_secret_value()
            .secret_id(&secret_arn)
            .send()
            .await
            .unwrap()
            .secret_string()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(v["anthropic_api_key"], KEY);
    // One named caller, stored as its token's hash; no plaintext token.
    assert!(v.get("caller_tokens").is_none(), "{v}");
    assert_eq!(v["callers"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["callers"][0]["name"], "default");
    assert_eq!(v["callers"][0]["token_sha256"].as_str().unwrap().len(), 64);

    // Role: trust policy, exactly one inline policy, no managed policies.
    let role_name = format!("{f}-role");
    let role = iam
        .get_role()
        .role_name(&role_name)
        .send()
        .await
        .unwrap()
        .role
        .unwrap();
    assert_eq!(out.role_arn, role.arn());
    let trust: Value =
        serde_json::from_str(&percent_decode(role.assume_role_policy_document().unwrap())).unwrap();
    let trust_statements = trust["Statement"].as_array().unwrap();
    assert_eq!(trust_statements.len(), 1, "{trust}");
    assert_eq!(
        as_strings(&trust_statements[0]["Principal"]["Service"]),
        ["lambda.amazonaws.com"]
    );
    assert_eq!(
        as_strings(&trust_statements[0]["Action"]),
        ["sts:AssumeRole"]
    );
    let role_tags = iam
        .list_role_tags()
        .role_name(&role_name)
        .send()
        .await
        .unwrap();
    let tags = role_tags
        .tags()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    assert_ours(&tags, stack, "role");
    let inline = iam
        .list_role_policies()
        .role_name(&role_name)
        .send()
        .await
        .unwrap();
    assert_eq!(inline.policy_names(), [format!("{f}-policy")]);
    let attached = iam
        .list_attached_role_policies()
        .role_name(&role_name)
        .send()
        .await
        .unwrap();
    assert!(attached.attached_policies().is_empty(), "{attached:?}");
    let doc = iam
        .get_role_policy()
        .role_name(&role_name)
        .policy_name(format!("{f}-policy"))
        .send()
        .await
        .unwrap();
    let doc: Value = serde_json::from_str(&percent_decode(doc.policy_document())).unwrap();
    let mut actions = BTreeSet::new();
    let mut resources = BTreeSet::new();
    for st in doc["Statement"].as_array().unwrap() {
        assert_eq!(st["Effect"], "Allow");
        assert!(st.get("NotAction").is_none() && st.get("NotResource").is_none());
        actions.extend(as_strings(&st["Action"]));
        resources.extend(as_strings(&st["Resource"]));
    }
    assert!(actions.iter().all(|a| !a.contains('*')), "{actions:?}");
    assert_eq!(
        actions,
        BTreeSet::from([
            "logs:CreateLogStream".to_string(),
            "logs:PutLogEvents".to_string(),
            "secretsmanager:GetSecretValue".to_string()
        ])
    );
    // The stack's Region and partition as moto itself wrote them (the secret's ARN), not as
    // the toolkit computes them.
    let partition = secret_arn.split(':').nth(1).unwrap_or("aws").to_string();
    let region = direct
        .region()
        .map_or(REGION.to_string(), |r| r.to_string());
    let log_arn = format!("arn:{partition}:logs:{region}:{ACCOUNT}:log-group:/aws/lambda/{f}:*");
    assert_eq!(resources, BTreeSet::from([secret_arn.clone(), log_arn]));
    assert_eq!(
        resources
            .iter()
            .filter(|r| r.contains(":secretsmanager:"))
            .count(),
        1
    );

    // Function.
    let got = lambda
        .get_function()
        .function_name(&f)
        .send()
        .await
        .unwrap();
    let c = got.configuration().unwrap();
    assert_eq!(out.function_arn, c.function_arn().unwrap());
    assert_eq!(c.runtime().unwrap().as_str(), "provided.al2023");
    assert_eq!(c.handler(), Some("bootstrap"));
    assert_eq!(
        c.architectures()
            .iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>(),
        ["x86_64"]
    );
    assert_eq!(c.memory_size(), Some(256));
    assert_eq!(c.timeout(), Some(120));
    assert_eq!(c.role(), Some(role.arn()));
    assert_eq!(c.code_sha256(), Some(code_sha256));
    let env: BTreeMap<String, String> = c
        .environment()
        .and_then(|e| e.variables())
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(
        env.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "ALLOWED_MODELS",
            "CALLER_AUTH",
            "DEFAULT_MODEL",
            "GATEWAY_DEADLINE_MS",
            "MAX_TOKENS_CAP",
            "RESPONSE_MODE",
            "SECRET_ARN"
        ]
    );
    assert_eq!(env["SECRET_ARN"], secret_arn);
    assert_eq!(env["RESPONSE_MODE"], "stream");
    assert_eq!(env["CALLER_AUTH"], "token");
    assert_eq!(env["MAX_TOKENS_CAP"], "4096");
    assert!(
        env.values()
            .all(|v| !v.contains(KEY) && !v.contains("clp_")),
        "{env:?}"
    );
    let tags = got
        .tags()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_ours(&tags, stack, "function");
    let conc = lambda
        .get_function_concurrency()
        .function_name(&f)
        .send()
        .await
        .unwrap();
    // concurrency "auto": ceil(50 rpm / 60 × 20 s) = 17, unless the account cannot give it
    // (then the deploy says it went without one).
    assert_eq!(
        conc.reserved_concurrent_executions(),
        out.spend_bound.reserved_concurrency.map(|r| r as i32)
    );
    assert!(
        matches!(out.spend_bound.reserved_concurrency, None | Some(17)),
        "{:?}",
        out.spend_bound
    );

    // Versions and the alias `live`: callers reach a published version carrying this code.
    let alias = lambda
        .get_alias()
        .function_name(&f)
        .name("live")
        .send()
        .await
        .unwrap();
    let live = alias.function_version().unwrap();
    assert_ne!(live, "$LATEST");
    assert!(
        alias
            .routing_config()
            .is_none_or(|r| r.additional_version_weights().is_none_or(|w| w.is_empty())),
        "{alias:?}"
    );
    let published = lambda
        .get_function_configuration()
        .function_name(&f)
        .qualifier(live)
        .send()
        .await
        .unwrap();
    assert_eq!(published.code_sha256(), Some(code_sha256));
    assert!(
        published
            .description()
            .is_some_and(|d| d.starts_with("claude-proxy release code=")),
        "{published:?}"
    );
    assert_eq!(out.live_version.as_deref(), Some(live));

    // Function URL (on the alias).
    let url = lambda
        .get_function_url_config()
        .function_name(&f)
        .qualifier("live")
        .send()
        .await
        .unwrap();
    assert_eq!(
        url.invoke_mode().map(|m| m.as_str()),
        Some("RESPONSE_STREAM")
    );
    assert_eq!(url.auth_type().as_str(), "NONE");
    assert_eq!(out.function_url.as_deref(), Some(url.function_url()));

    // Log group.
    let groups = logs
        .describe_log_groups()
        .log_group_name_prefix(format!("/aws/lambda/{f}"))
        .send()
        .await
        .unwrap();
    let g = &groups.log_groups()[0];
    assert_eq!(groups.log_groups().len(), 1);
    assert_eq!(g.retention_in_days(), Some(14));
    let tags = logs
        .list_tags_for_resource()
        .resource_arn(g.arn().unwrap().trim_end_matches(":*"))
        .send()
        .await
        .unwrap();
    assert_ours(
        &tags
            .tags()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        stack,
        "log group",
    );

    // HTTP API.
    let apis = apigw.get_apis().send().await.unwrap();
    let ours: Vec<_> = apis
        .items()
        .iter()
        .filter(|a| a.name() == Some(f.as_str()))
        .collect();
    assert_eq!(ours.len(), 1);
    let api = ours[0];
    let api_id = api.api_id().unwrap();
    assert_eq!(api.protocol_type().unwrap().as_str(), "HTTP");
    assert_ours(
        &api.tags()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        stack,
        "HTTP API",
    );
    assert_eq!(out.api_url.as_deref(), api.api_endpoint());
    let integrations = apigw
        .get_integrations()
        .api_id(api_id)
        .send()
        .await
        .unwrap();
    assert_eq!(integrations.items().len(), 1);
    let i = &integrations.items()[0];
    assert_eq!(i.integration_type().unwrap().as_str(), "AWS_PROXY");
    assert_eq!(i.payload_format_version(), Some("2.0"));
    assert_eq!(
        i.integration_uri(),
        Some(format!("{}:live", out.function_arn).as_str()),
        "the HTTP API reaches the alias"
    );
    let target = format!("integrations/{}", i.integration_id().unwrap());
    let routes = apigw.get_routes().api_id(api_id).send().await.unwrap();
    let keys: BTreeSet<&str> = routes
        .items()
        .iter()
        .map(|r| r.route_key().unwrap())
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "POST /chat",
            "POST /v1/messages",
            "POST /v1/messages/count_tokens",
            "GET /health"
        ])
    );
    assert!(routes
        .items()
        .iter()
        .all(|r| r.target() == Some(target.as_str())));
    let stages = apigw.get_stages().api_id(api_id).send().await.unwrap();
    assert_eq!(stages.items().len(), 1);
    assert_eq!(stages.items()[0].stage_name(), Some("$default"));
    assert_eq!(stages.items()[0].auto_deploy(), Some(true));

    // Resource policy: both Function URL statements and the API's, scoped to this API.
    let policy = lambda.get_policy().function_name(&f).send().await.unwrap();
    let policy: Value = serde_json::from_str(policy.policy().unwrap()).unwrap();
    let statements = policy["Statement"].as_array().unwrap();
    assert_eq!(statements.len(), 3, "{policy:#}");
    assert!(
        statements.iter().all(|s| s["Resource"]
            .as_str()
            .is_some_and(|r| r.ends_with(&format!("{f}:live")))),
        "every statement is on the alias: {policy:#}"
    );
    let find = |action: &str, pred: &dyn Fn(&Value) -> bool| {
        statements
            .iter()
            .filter(|s| as_strings(&s["Action"]) == [action] && pred(s))
            .count()
    };
    assert_eq!(
        find("lambda:InvokeFunctionUrl", &|s| condition(
            s,
            "lambda:FunctionUrlAuthType",
            "FunctionUrlAuthType"
        )
        .as_deref()
            == Some("NONE")),
        1,
        "{policy:#}"
    );
    assert_eq!(
        find("lambda:InvokeFunction", &|s| condition(
            s,
            "lambda:InvokedViaFunctionUrl",
            "InvokedViaFunctionUrl"
        )
        .as_deref()
            == Some("true")),
        1,
        "{policy:#}"
    );
    let source = format!("arn:{partition}:execute-api:{region}:{ACCOUNT}:{api_id}/*/*");
    assert_eq!(
        find("lambda:InvokeFunction", &|s| {
            s["Principal"]["Service"] == "apigateway.amazonaws.com"
                && condition(s, "AWS:SourceArn", "SourceArn").as_deref() == Some(source.as_str())
        }),
        1,
        "{policy:#}"
    );
}

/// Nothing with the stack's name or tag is left, read with plain SDK calls.
pub async fn assert_nothing_left(direct: &SdkConfig, stack: &str) {
    let f = format!("claude-proxy-{stack}");
    let lambda = aws_sdk_lambda::Client::new(direct);
    let functions = lambda.list_functions().send().await.unwrap();
    for func in functions.functions() {
        assert_ne!(func.function_name(), Some(f.as_str()), "function left");
        let tags = lambda
            .list_tags()
            .resource(func.function_arn().unwrap())
            .send()
            .await
            .unwrap();
        assert_ne!(
            tags.tags().and_then(|t| t.get("stack")).map(String::as_str),
            Some(stack),
            "tagged function left"
        );
    }
    let iam = aws_sdk_iam::Client::new(direct);
    let roles = iam.list_roles().send().await.unwrap();
    for r in roles.roles() {
        assert_ne!(r.role_name(), format!("{f}-role"), "role left");
        let tags = iam
            .list_role_tags()
            .role_name(r.role_name())
            .send()
            .await
            .unwrap();
        assert!(
            !tags
                .tags()
                .iter()
                .any(|t| t.key() == "stack" && t.value() == stack),
            "tagged role left: {}",
            r.role_name()
        );
    }
    match iam
        .list_role_policies()
        .role_name(format!("{f}-role"))
        .send()
        .await
    {
        Err(e) => assert_eq!(
            e.as_service_error()
                .and_then(|e| aws_sdk_iam::error::ProvideErrorMetadata::code(e)),
            Some("NoSuchEntity")
        ),
        Ok(p) => panic!("role still has policies: {:?}", p.policy_names()),
    }
    let secrets = aws_sdk_secretsmanager::Client::new(direct);
    let list = secrets
        .list_secrets()
        .include_planned_deletion(true)
        .send()
        .await
        .unwrap();
    for s in list.secret_list() {
        assert_ne!(
            s.name(),
            Some(format!("claude-proxy/{stack}").as_str()),
            "secret left"
        );
        assert_ne!(
            s.name(),
            Some(infra::lock::lock_name(stack).as_str()),
            "deploy lock left"
        );
        assert!(
            !s.tags()
                .iter()
                .any(|t| t.key() == Some("stack") && t.value() == Some(stack)),
            "tagged secret left"
        );
    }
    let logs = aws_sdk_cloudwatchlogs::Client::new(direct);
    let groups = logs
        .describe_log_groups()
        .log_group_name_prefix(format!("/aws/lambda/{f}"))
        .send()
        .await
        .unwrap();
    assert!(groups.log_groups().is_empty(), "log group left");
    let apigw = aws_sdk_apigatewayv2::Client::new(direct);
    let apis = apigw.get_apis().send().await.unwrap();
    for a in apis.items() {
        assert_ne!(a.name(), Some(f.as_str()), "HTTP API left");
        assert_ne!(
            a.tags().and_then(|t| t.get("stack")).map(String::as_str),
            Some(stack),
            "tagged HTTP API left"
        );
    }
    let rest = aws_sdk_apigateway::Client::new(direct);
    for a in rest.get_rest_apis().send().await.unwrap().items() {
        assert_ne!(a.name(), Some(f.as_str()), "REST API left");
        assert_ne!(
            a.tags().and_then(|t| t.get("stack")).map(String::as_str),
            Some(stack),
            "tagged REST API left"
        );
    }
    for p in rest.get_usage_plans().send().await.unwrap().items() {
        assert_ne!(p.name(), Some(f.as_str()), "usage plan left");
        assert_ne!(
            p.tags().and_then(|t| t.get("stack")).map(String::as_str),
            Some(stack),
            "tagged usage plan left"
        );
    }
    for k in rest.get_api_keys().send().await.unwrap().items() {
        assert_ne!(
            k.name(),
            Some(format!("{f}-default").as_str()),
            "API key left"
        );
        assert_ne!(
            k.tags().and_then(|t| t.get("stack")).map(String::as_str),
            Some(stack),
            "tagged API key left"
        );
    }
    let sns = aws_sdk_sns::Client::new(direct);
    let mut pages = sns.list_topics().into_paginator().send();
    while let Some(page) = pages.next().await {
        for t in page.unwrap().topics() {
            let arn = t.topic_arn().unwrap_or_default();
            assert!(
                !arn.ends_with(&format!(":{f}-alarms")),
                "SNS topic left: {arn}"
            );
            let tags = sns
                .list_tags_for_resource()
                .resource_arn(arn)
                .send()
                .await
                .unwrap();
            assert!(
                !tags
                    .tags()
                    .iter()
                    .any(|t| t.key() == "stack" && t.value() == stack),
                "tagged SNS topic left: {arn}"
            );
        }
    }
}

/// The CloudWatch alarms of `stack` the proxy's stand-in holds (by name or `stack` tag).
pub fn alarms_of(proxy: &AwsProxy, stack: &str) -> Vec<String> {
    let f = format!("claude-proxy-{stack}-");
    proxy.with_cloudwatch(|cw| {
        cw.alarms
            .alarms
            .values()
            .filter(|a| {
                a.name.starts_with(&f) || a.tags.get("stack").map(String::as_str) == Some(stack)
            })
            .map(|a| a.name.clone())
            .collect()
    })
}

/// The real `cargo xtask` binary, run as a pipeline runs it: in a scratch directory, with no
/// AWS or Anthropic settings inherited, against `endpoint` (moto or the proxy).
pub struct Cli {
    pub bin: std::path::PathBuf,
    pub dir: tempfile::TempDir,
    /// A small static x86_64 ELF standing in for `bootstrap` (packaged, never run).
    pub bootstrap: std::path::PathBuf,
    /// The CodeSha256 of its package.
    pub code_sha256: String,
}

/// What a finished CLI run printed.
#[derive(Debug)]
pub struct CliRun {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for CliRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Cli {
    pub async fn new() -> Cli {
        let bin = crate::handler_support::xtask_bin()
            .await
            .expect("building the xtask binary");
        let dir = tempfile::tempdir().unwrap();
        // A 64-bit little-endian ELF header for x86_64, no program headers: static.
        let mut bytes = vec![0u8; 64];
        bytes[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
        bytes[16..18].copy_from_slice(&2u16.to_le_bytes());
        bytes[18..20].copy_from_slice(&62u16.to_le_bytes());
        bytes[20..24].copy_from_slice(&1u32.to_le_bytes());
        bytes[52..54].copy_from_slice(&64u16.to_le_bytes());
        bytes.extend_from_slice(b"pretend bootstrap for the pipeline tests\n");
        let bootstrap = dir.path().join("bootstrap");
        std::fs::write(&bootstrap, &bytes).unwrap();
        let code_sha256 = Artifact::from_bootstrap_bytes(&bytes).unwrap().code_sha256;
        Cli {
            bin,
            dir,
            bootstrap,
            code_sha256,
        }
    }

    /// The command, ready to spawn (stdout and stderr piped, the test key in the environment).
    pub fn command(&self, endpoint: &str, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.args(args)
            .current_dir(self.dir.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        for (k, _) in std::env::vars() {
            if k.starts_with("AWS_")
                || k.starts_with("ANTHROPIC_")
                || k.starts_with("GITHUB_")
                || k == "CLAUDE_PROXY_STACK"
                || k == "RUST_LOG"
            {
                cmd.env_remove(k);
            }
        }
        cmd.env("CARGO_TARGET_DIR", self.dir.path().join("target"))
            .env("ANTHROPIC_API_KEY", KEY)
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", REGION)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", self.dir.path().join("no-aws-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                self.dir.path().join("no-aws-credentials"),
            );
        cmd
    }

    /// Runs to the end.
    pub async fn run(&self, endpoint: &str, args: &[&str]) -> CliRun {
        let out = self.command(endpoint, args).output().await.unwrap();
        CliRun {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `deploy` of `stack` with every resource (the HTTP API too), JSON output.
    /// Writes the `stack.toml` every later run (and [`Cli::desired`]) uses.
    pub fn stack_toml(&self, text: &str) {
        std::fs::write(self.dir.path().join("stack.toml"), text).unwrap();
    }

    pub fn deploy_args(&self, stack: &str) -> Vec<String> {
        self.deploy_args_with(stack, "--http-api")
    }

    /// [`Cli::deploy_args`] with another front flag (`--api=rest`).
    pub fn deploy_args_with(&self, stack: &str, front: &str) -> Vec<String> {
        [
            "deploy",
            // moto cannot run the handler (the smoke test runs under the Lambda emulator in
            // release_checks.rs).
            "--skip-smoke-test",
            "--stack",
            stack,
            front,
            "--bootstrap",
            self.bootstrap.to_str().unwrap(),
            "--yes",
            "--output",
            "json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// What the CLI deploys for `stack`, as the in-process API sees it (same package).
    pub fn desired(&self, stack: &str) -> Desired {
        self.desired_with(overrides(stack))
    }

    /// [`Cli::desired`] with other overrides (the region is the tests').
    pub fn desired_with(&self, o: Overrides) -> Desired {
        Desired::new(
            StackConfig::load(&self.dir.path().join("stack.toml"))
                .unwrap()
                .with_overrides(&Overrides {
                    region: Some(REGION.into()),
                    ..o
                })
                .unwrap(),
            Some(&Artifact::from_bootstrap(&self.bootstrap).unwrap()),
            SecretInput {
                anthropic_api_key: Some(infra::ApiKey::new(KEY)),
                rotate_token: false,
            },
        )
        .unwrap()
    }
}

/// Strings to `&str`s, for `Cli::run`.
pub fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}
