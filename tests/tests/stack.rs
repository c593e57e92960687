//! Deploy, redeploy, change, teardown against moto server, through a recording and
//! fault-injecting proxy. Checks are made with plain AWS SDK clients talking to moto
//! directly (not through infra's reader, and not through the proxy, so they are not
//! counted as the toolkit's calls).
//!
//! Each test starts its own moto server (so parallel tests share nothing) and uses its own
//! stack names.

use anyhow::Result;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_lambda::config::Credentials;
use emulators::moto::MotoServer;
use infra::aws::{Aws, IamRetry};
use infra::config::{Overrides, StackConfig};
use infra::{artifact::Artifact, Desired, Outputs, Plan, SecretInput};
use serde_json::Value;
use stand_ins::aws_proxy::{AwsProxy, Fault};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const KEY: &str = "sk-ant-api03-NEVER-PRINT-THIS-KEY-0123456789";
const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";

struct Env {
    _moto: MotoServer,
    proxy: AwsProxy,
    /// The toolkit's connection (through the proxy), with a fast IAM backoff.
    aws: Aws,
    /// Plain SDK configuration straight to moto, for independent checks.
    direct: SdkConfig,
}

async fn sdk_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .retry_config(infra::aws::retry_config())
        .load()
        .await
}

async fn env() -> Env {
    let moto = MotoServer::start()
        .await
        .expect("moto server (see the message for how to install it)");
    let proxy = AwsProxy::start(&moto.endpoint_url()).await.unwrap();
    let aws = Aws::from_sdk_config(sdk_config(&proxy.endpoint_url()).await)
        .await
        .unwrap()
        .with_iam_retry(IamRetry {
            base: Duration::from_millis(5),
            max_delay: Duration::from_millis(40),
            max_total: Duration::from_secs(20),
        });
    let direct = sdk_config(&moto.endpoint_url()).await;
    proxy.clear();
    Env {
        _moto: moto,
        proxy,
        aws,
        direct,
    }
}

fn artifact() -> Artifact {
    Artifact::from_bootstrap_bytes(b"\x7fELF not really a binary, moto only unzips it").unwrap()
}

fn overrides(stack: &str) -> Overrides {
    Overrides {
        stack: Some(stack.into()),
        http_api: Some(true),
        ..Default::default()
    }
}

fn desired(o: &Overrides, key: Option<&str>) -> Desired {
    Desired::new(
        &StackConfig::default(),
        o,
        Some(&artifact()),
        SecretInput {
            anthropic_api_key: key.map(infra::ApiKey::new),
            rotate_token: false,
        },
    )
    .unwrap()
}

async fn plan_for(aws: &Aws, d: &Desired) -> Plan {
    let actual = infra::read_actual(aws, &d.stack).await.unwrap();
    infra::plan(d, &actual)
}

async fn deploy_with(aws: &Aws, o: &Overrides, key: Option<&str>) -> Result<(Plan, Outputs)> {
    let d = desired(o, key);
    let p = plan_for(aws, &d).await;
    let out = infra::apply(aws, &p, &d, &infra::Silent).await?;
    Ok((p, out))
}

async fn deploy(aws: &Aws, stack: &str) -> (Plan, Outputs) {
    deploy_with(aws, &overrides(stack), Some(KEY))
        .await
        .unwrap()
}

fn percent_decode(s: &str) -> String {
    if s.trim_start().starts_with('{') {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(x) = u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap(), 16) {
                out.push(x);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

fn as_strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().flat_map(as_strings).collect(),
        _ => vec![],
    }
}

/// A condition value in real-AWS form (`Condition.{op}.{key}`) or moto's form (top-level key).
fn condition(stmt: &Value, key: &str, moto_key: &str) -> Option<String> {
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

fn assert_ours(tags: &BTreeMap<String, String>, stack: &str, what: &str) {
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
async fn check_deployed(direct: &SdkConfig, stack: &str, out: &Outputs) {
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
    assert_eq!(v["caller_tokens"].as_array().unwrap().len(), 1);

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
    let log_arn = format!("arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/{f}:*");
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
    assert_eq!(c.code_sha256(), Some(artifact().code_sha256.as_str()));
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
    // concurrency "auto": ceil(50 rpm / 60 × 20 s) = 17
    assert_eq!(conc.reserved_concurrent_executions(), Some(17));

    // Function URL.
    let url = lambda
        .get_function_url_config()
        .function_name(&f)
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
    assert_eq!(i.integration_uri(), Some(out.function_arn.as_str()));
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
    let source = format!("arn:aws:execute-api:{REGION}:{ACCOUNT}:{api_id}/*/*");
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
async fn assert_nothing_left(direct: &SdkConfig, stack: &str) {
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_deploy_creates_the_least_privilege_stack() {
    let e = env().await;
    let (p, out) = deploy(&e.aws, "full").await;
    assert_eq!(p.changes.len(), 11, "{p}");
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
    assert_eq!(v["caller_tokens"], serde_json::json!([token.expose()]));
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
    assert_eq!(p.changes.len(), 1, "{p}");
    assert_eq!(p.changes[0].kind, infra::Kind::Function);
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
        ["PUT /2015-03-31/functions/claude-proxy-mem/configuration"]
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
    assert_eq!(report.deleted.len(), 11, "{report}");
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

/// The IAM action a recorded call needs (None for calls that need no permission).
fn iam_action(c: &stand_ins::aws_proxy::Call) -> Option<String> {
    match c.service.as_str() {
        "sts" => None, // GetCallerIdentity needs no permission
        "apigateway" => Some(format!("apigateway:{}", c.method)),
        "lambda" => {
            let p: Vec<&str> = c.path.trim_start_matches('/').split('/').collect();
            let m = c.method.as_str();
            let op = match (m, &p[1..]) {
                ("POST", ["functions"]) => "CreateFunction",
                ("GET", ["functions", _]) => "GetFunction",
                ("DELETE", ["functions", _]) => "DeleteFunction",
                ("GET", ["functions", _, "configuration"]) => "GetFunctionConfiguration",
                ("PUT", ["functions", _, "configuration"]) => "UpdateFunctionConfiguration",
                ("PUT", ["functions", _, "code"]) => "UpdateFunctionCode",
                ("GET", ["functions", _, "concurrency"]) => "GetFunctionConcurrency",
                ("PUT", ["functions", _, "concurrency"]) => "PutFunctionConcurrency",
                ("DELETE", ["functions", _, "concurrency"]) => "DeleteFunctionConcurrency",
                ("POST", ["functions", _, "url"]) => "CreateFunctionUrlConfig",
                ("GET", ["functions", _, "url"]) => "GetFunctionUrlConfig",
                ("PUT", ["functions", _, "url"]) => "UpdateFunctionUrlConfig",
                ("DELETE", ["functions", _, "url"]) => "DeleteFunctionUrlConfig",
                ("POST", ["functions", _, "policy"]) => "AddPermission",
                ("GET", ["functions", _, "policy"]) => "GetPolicy",
                ("DELETE", ["functions", _, "policy", _]) => "RemovePermission",
                ("POST", ["tags", ..]) => "TagResource",
                ("GET", ["tags", ..]) => "ListTags",
                ("GET", ["account-settings"]) => "GetAccountSettings",
                _ => panic!("unmapped Lambda call {} {}", c.method, c.path),
            };
            Some(format!("lambda:{op}"))
        }
        s => Some(format!("{s}:{}", c.operation)),
    }
}

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
        &StackConfig::default(),
        &o,
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
