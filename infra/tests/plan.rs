//! Plans built from fake actual state (no AWS): snapshot tests of the printed plan and
//! checks of what it contains.

use infra::config::{ConcurrencySetting, Overrides, StackConfig};
use infra::names::{self, Names};
use infra::{
    artifact::Artifact, function, function_url, http_api, log_group, permission, plan, role,
    secret, Actual, ApiKey, Change, Desired, FixedState, Kind, SecretInput, StateReader,
};
use std::collections::BTreeMap;

const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";
const KEY: &str = "sk-ant-api03-THIS-IS-THE-SECRET";
const AT: &str = "2026-01-01T00:00:00Z";

fn artifact() -> Artifact {
    Artifact::from_bootstrap_bytes(b"\x7fELF fake bootstrap").unwrap()
}

fn desired_with(o: Overrides, key: Option<&str>) -> Desired {
    Desired::new(
        &StackConfig::default(),
        &o,
        Some(&artifact()),
        SecretInput {
            anthropic_api_key: key.map(ApiKey::new),
            rotate_token: false,
        },
    )
    .unwrap()
    .with_created_at(AT)
}

fn desired() -> Desired {
    desired_with(Overrides::default(), Some(KEY))
}

fn tags(stack: &str) -> BTreeMap<String, String> {
    names::tags_at_creation(stack, AT)
}

/// The account state a successful deploy of `d` leaves behind.
fn deployed(d: &Desired) -> Actual {
    let n: &Names = &d.names;
    let s = d.spec.as_ref().unwrap();
    let secret_arn = format!(
        "arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{}-AbCdEf",
        n.secret
    );
    let value: secret::SecretValue = serde_json::from_value(serde_json::json!({
        "anthropic_api_key": KEY, "caller_tokens": ["clp_existing"]
    }))
    .unwrap();
    let api_id = "abc123".to_string();
    let mut a = Actual::empty(ACCOUNT, REGION);
    a.secret = Some(secret::State {
        arn: secret_arn.clone(),
        tags: tags(&d.stack),
        value: Some(value),
        scheduled_for_deletion: false,
    });
    a.log_group = Some(log_group::State {
        arn: Some(format!(
            "arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{}",
            n.log_group
        )),
        retention_days: Some(s.config.function.log_retention_days as i32),
        tags: tags(&d.stack),
    });
    a.role = Some(role::State {
        arn: role::role_arn(ACCOUNT, &n.role),
        trust_policy: role::trust_policy(),
        tags: tags(&d.stack),
        inline_policies: BTreeMap::from([(
            n.role_policy.clone(),
            role::policy_document(&secret_arn, &n.log_group_arn(REGION, ACCOUNT)),
        )]),
        attached_policies: vec![],
    });
    let f = &s.config.function;
    a.function = Some(function::State {
        arn: function::function_arn(REGION, ACCOUNT, &n.function),
        runtime: Some("provided.al2023".into()),
        architecture: Some(f.architecture.as_str().into()),
        memory_mb: Some(f.memory_mb as i32),
        timeout_seconds: Some(f.timeout_seconds as i32),
        handler: Some("bootstrap".into()),
        role_arn: Some(role::role_arn(ACCOUNT, &n.role)),
        env: s.env(&secret_arn),
        code_sha256: Some(artifact().code_sha256),
        package_type: Some("Zip".into()),
        tags: tags(&d.stack),
    });
    a.concurrency = s.reserved_concurrency.map(|r| r as i32);
    if s.config.function_url.enabled {
        a.function_url = Some(function_url::State {
            url: "https://abc.lambda-url.us-east-1.on.aws/".into(),
            invoke_mode: s.config.function_url.invoke_mode.as_str().into(),
            auth: s.config.function_url.auth.as_str().into(),
            cors: None,
        });
        if s.config.function_url.auth == infra::config::UrlAuth::None {
            a.permissions.extend(permission::public_url_statements());
        }
    }
    if s.config.http_api.enabled {
        let integration = http_api::Integration {
            id: "int1".into(),
            integration_type: "AWS_PROXY".into(),
            payload_format_version: "2.0".into(),
            uri: function::function_arn(REGION, ACCOUNT, &n.function),
            timeout_ms: Some(30_000),
        };
        a.http_apis.push(http_api::State {
            id: api_id.clone(),
            name: n.http_api.clone(),
            endpoint: Some("https://abc123.execute-api.us-east-1.amazonaws.com".into()),
            tags: tags(&d.stack),
            integrations: vec![integration],
            routes: http_api::ROUTES
                .iter()
                .enumerate()
                .map(|(i, k)| http_api::Route {
                    id: format!("r{i}"),
                    key: k.to_string(),
                    target: Some("integrations/int1".into()),
                })
                .collect(),
            stages: vec![http_api::Stage {
                name: "$default".into(),
                auto_deploy: true,
            }],
        });
        a.permissions
            .push(permission::api_statement(&permission::api_source_arn(
                REGION, ACCOUNT, &api_id,
            )));
    }
    a
}

#[test]
fn first_deploy_creates_everything() {
    let p = plan(&desired(), &Actual::empty(ACCOUNT, REGION));
    assert!(p.blockers.is_empty(), "{:?}", p.blockers);
    assert!(p
        .changes
        .iter()
        .all(|c| matches!(c.change, Change::Create { .. })));
    let kinds: Vec<Kind> = p.changes.iter().map(|c| c.kind).collect();
    assert_eq!(
        kinds,
        [
            Kind::Secret,
            Kind::LogGroup,
            Kind::Role,
            Kind::RolePolicy,
            Kind::Function,
            Kind::Concurrency,
            Kind::FunctionUrl,
            Kind::Permission,
            Kind::Permission
        ]
    );
    let text = p.to_string();
    assert!(!text.contains(KEY));
    insta::assert_snapshot!("first_deploy", text);
}

#[test]
fn deployed_stack_has_no_changes() {
    for o in [
        Overrides::default(),
        Overrides {
            http_api: Some(true),
            ..Default::default()
        },
        Overrides {
            url_auth: Some(infra::config::UrlAuth::AwsIam),
            concurrency: Some(ConcurrencySetting::None),
            ..Default::default()
        },
    ] {
        let d = desired_with(o, Some(KEY));
        let p = plan(&d, &deployed(&d));
        assert!(p.is_empty(), "{p}");
        assert!(p.to_string().contains("no changes"), "{p}");
    }
    // Without a key or an artifact (plain `plan`), a deployed stack still has no changes.
    let d = Desired::new(
        &StackConfig::default(),
        &Overrides::default(),
        None,
        SecretInput::default(),
    )
    .unwrap();
    let p = plan(&d, &deployed(&desired()));
    assert!(p.is_empty() && p.blockers.is_empty(), "{p}");
}

#[test]
fn memory_change_shows_exactly_that_field() {
    let before = desired();
    let after = desired_with(
        Overrides {
            memory_mb: Some(512),
            ..Default::default()
        },
        Some(KEY),
    );
    let p = plan(&after, &deployed(&before));
    assert_eq!(p.changes.len(), 1, "{p}");
    let c = &p.changes[0];
    assert_eq!(c.kind, Kind::Function);
    assert_eq!(
        c.change,
        Change::Update {
            fields: vec![infra::FieldChange::new("memory_mb", "256", "512")]
        }
    );
    insta::assert_snapshot!("memory_change", p.to_string());
}

#[test]
fn new_key_updates_the_secret_without_showing_values() {
    let d = desired_with(Overrides::default(), Some("sk-ant-a-different-key"));
    let p = plan(&d, &deployed(&desired()));
    assert_eq!(p.changes.len(), 1, "{p}");
    assert_eq!(p.changes[0].kind, Kind::Secret);
    let text = p.to_string();
    let json = serde_json::to_string(&p).unwrap();
    assert!(text.contains("anthropic_api_key"), "{text}");
    for out in [&text, &json] {
        assert!(!out.contains("sk-ant"), "{out}");
        assert!(!out.contains("clp_existing"), "{out}");
    }
    insta::assert_snapshot!("new_key", text);
}

#[test]
fn rotate_token_is_planned() {
    let mut d = desired();
    d.spec.as_mut().unwrap().secret.rotate_token = true;
    let p = plan(&d, &deployed(&desired()));
    let Change::Update { fields } = &p.changes[0].change else {
        panic!("{p}")
    };
    assert_eq!(fields[0].field, "caller_tokens");
}

#[test]
fn first_deploy_without_key_is_blocked_with_instructions() {
    let d = desired_with(Overrides::default(), None);
    let p = plan(&d, &Actual::empty(ACCOUNT, REGION));
    let b = p.blockers.join("\n");
    assert!(
        b.contains("ANTHROPIC_API_KEY") && b.contains("--api-key-stdin"),
        "{b}"
    );
    assert!(p.to_string().contains("Cannot apply"));
}

#[test]
fn teardown_deletes_in_dependency_order() {
    let d = desired_with(
        Overrides {
            http_api: Some(true),
            ..Default::default()
        },
        Some(KEY),
    );
    let p = plan(&Desired::empty("dev").unwrap(), &deployed(&d));
    assert!(p.changes.iter().all(|c| c.change == Change::Delete));
    let kinds: Vec<Kind> = p.changes.iter().map(|c| c.kind).collect();
    assert_eq!(
        kinds,
        [
            Kind::Permission,
            Kind::Permission,
            Kind::Permission,
            Kind::FunctionUrl,
            Kind::HttpApi,
            Kind::Concurrency,
            Kind::Function,
            Kind::LogGroup,
            Kind::RolePolicy,
            Kind::Role,
            Kind::Secret
        ]
    );
    insta::assert_snapshot!("teardown", p.to_string());
    // Nothing left: a second teardown plans nothing.
    let p = plan(
        &Desired::empty("dev").unwrap(),
        &Actual::empty(ACCOUNT, REGION),
    );
    assert!(p.is_empty());
}

#[test]
fn http_api_plan_mentions_the_30_second_limit() {
    let d = desired_with(
        Overrides {
            http_api: Some(true),
            ..Default::default()
        },
        Some(KEY),
    );
    let p = plan(&d, &deployed(&desired()));
    let text = p.to_string();
    assert!(
        text.contains("30 s") && text.contains("cannot stream"),
        "{text}"
    );
    let kinds: Vec<Kind> = p.changes.iter().map(|c| c.kind).collect();
    assert_eq!(kinds, [Kind::HttpApi, Kind::Permission]);
    insta::assert_snapshot!("enable_http_api", text);
}

#[test]
fn switching_url_to_iam_removes_public_statements() {
    let d = desired_with(
        Overrides {
            url_auth: Some(infra::config::UrlAuth::AwsIam),
            ..Default::default()
        },
        Some(KEY),
    );
    let p = plan(&d, &deployed(&desired()));
    let summary: Vec<(Kind, String)> = p
        .changes
        .iter()
        .map(|c| (c.kind, format!("{:?}", std::mem::discriminant(&c.change))))
        .collect();
    assert_eq!(
        p.changes
            .iter()
            .filter(|c| c.change == Change::Delete)
            .count(),
        2,
        "{p}"
    );
    assert!(summary.iter().any(|(k, _)| *k == Kind::FunctionUrl));
    // CALLER_AUTH flips to none: no endpoint is public any more.
    assert!(
        p.to_string().contains("env.CALLER_AUTH: token -> none"),
        "{p}"
    );
}

#[test]
fn extra_policies_on_the_role_are_removed() {
    let d = desired();
    let mut a = deployed(&d);
    let r = a.role.as_mut().unwrap();
    r.attached_policies
        .push("arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole".into());
    r.inline_policies
        .insert("hand-made".into(), serde_json::json!({}));
    let p = plan(&d, &a);
    let kinds: Vec<(Kind, &str)> = p
        .changes
        .iter()
        .map(|c| (c.kind, c.name.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            (Kind::RolePolicy, "hand-made"),
            (
                Kind::AttachedPolicy,
                "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
            )
        ]
    );
}

#[test]
fn plan_json_shape() {
    let d = desired_with(
        Overrides {
            memory_mb: Some(1024),
            ..Default::default()
        },
        Some(KEY),
    );
    let p = plan(&d, &deployed(&desired()));
    let v = serde_json::to_value(&p).unwrap();
    assert_eq!(v["stack"], "dev");
    assert_eq!(v["changes"][0]["kind"], "function");
    assert_eq!(v["changes"][0]["action"], "update");
    assert_eq!(v["changes"][0]["fields"][0]["field"], "memory_mb");
    assert_eq!(v["changes"][0]["fields"][0]["to"], "1024");
}

#[tokio::test]
async fn plan_from_a_state_reader() {
    let d = desired();
    let reader = FixedState(deployed(&d));
    let actual = reader.read_actual("dev").await.unwrap();
    assert!(plan(&d, &actual).is_empty());
}

#[test]
fn spend_bound_is_explicit() {
    let b = infra::SpendBound::new(Some(17), 120, 256, 4096);
    assert_eq!(b.max_in_flight_requests, Some(17));
    assert_eq!(b.max_output_tokens_in_flight, Some(17 * 4096));
    assert_eq!(b.max_lambda_gb_seconds_per_hour, Some(15300.0));
    assert!(b.summary.contains("17 requests in flight"), "{}", b.summary);
    let none = infra::SpendBound::new(None, 120, 256, 4096);
    assert_eq!(none.max_in_flight_requests, None);
    assert!(none.summary.contains("account's concurrency limit"));
}
