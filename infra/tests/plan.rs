//! Plans built from fake actual state (no AWS): snapshot tests of the printed plan and
//! checks of what it contains.

use infra::config::{ConcurrencySetting, Overrides, StackConfig};
use infra::names::{self, Names};
use infra::{
    artifact::Artifact, function, function_url, http_api, log_group, permission, plan, rest_api,
    role, secret, Actual, ApiKey, Change, Desired, Kind, SecretInput,
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
        StackConfig::default().with_overrides(&o).unwrap(),
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
        "anthropic_api_key": KEY,
        "callers": [{"name": "default", "token_sha256": "0".repeat(64),
                     "created_at": "2026-01-01T00:00:00Z", "rotated_at": null, "limits": {}}]
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
        arn: role::role_arn("aws", ACCOUNT, &n.role),
        trust_policy: role::trust_policy(),
        tags: tags(&d.stack),
        inline_policies: BTreeMap::from([(
            n.role_policy.clone(),
            role::policy_document(&secret_arn, &n.log_group_arn("aws", REGION, ACCOUNT)),
        )]),
        attached_policies: vec![],
    });
    let f = &s.config.function;
    a.function = Some(function::State {
        arn: function::function_arn("aws", REGION, ACCOUNT, &n.function),
        runtime: Some("provided.al2023".into()),
        architecture: Some(f.architecture.lambda_name().into()),
        memory_mb: Some(f.memory_mb as i32),
        timeout_seconds: Some(f.timeout_seconds as i32),
        handler: Some("bootstrap".into()),
        role_arn: Some(role::role_arn("aws", ACCOUNT, &n.role)),
        env: s.env(&secret_arn),
        code_sha256: Some(artifact().code_sha256),
        package_type: Some("Zip".into()),
        layers: vec![],
        image_uri: None,
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
            uri: infra::alias::alias_arn(&function::function_arn(
                "aws",
                REGION,
                ACCOUNT,
                &n.function,
            )),
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
                "aws", REGION, ACCOUNT, &api_id,
            )));
    }
    if s.config.api_kind() == infra::config::ApiKind::Rest {
        a.rest_apis.push(deployed_rest(d));
        a.usage_plan = deployed_usage_plan(d);
        a.permissions
            .push(permission::rest_statement(&rest_api::source_arn(
                "aws", REGION, ACCOUNT, "rest01",
            )));
    }
    released(a)
}

/// `a` with `$LATEST` published as version 1 and `live` on it.
fn released(mut a: Actual) -> Actual {
    let f = a.function.as_ref().unwrap();
    let code = f.code_sha256.clone().unwrap_or_default();
    a.versions = vec![infra::version::State {
        version: "1".into(),
        code_sha256: code.clone(),
        description: infra::version::description(&code, &infra::version::config_hash(f), None),
        last_modified: "2026-01-01T00:00:00.000+0000".into(),
    }];
    a.alias = Some(infra::alias::State {
        version: "1".into(),
        weights: BTreeMap::new(),
        revision_id: Some("r1".into()),
    });
    a
}

/// The REST API a deploy of `d` leaves (as moto reads it back: no transfer mode echoed).
fn deployed_rest(d: &Desired) -> rest_api::State {
    let n = &d.names;
    let s = d.spec.as_ref().unwrap();
    let spec =
        rest_api::Spec {
            name: n.rest_api.clone(),
            stack: d.stack.clone(),
            partition: "aws".into(),
            region: REGION.into(),
            // The integration invokes the alias `live`.
            function_arn: infra::change::Late::Known(infra::alias::alias_arn(
                &function::function_arn("aws", REGION, ACCOUNT, &n.function),
            )),
            timeout_ms: s.config.function.timeout_seconds as i32 * 1000,
        };
    let method = rest_api::Method {
        http_method: "ANY".into(),
        authorization_type: "NONE".into(),
        api_key_required: true,
        integration: Some(rest_api::Integration {
            integration_type: "AWS_PROXY".into(),
            http_method: "POST".into(),
            uri: spec.uri(),
            timeout_ms: spec.timeout_ms,
            transfer_mode: None,
        }),
    };
    rest_api::State {
        id: "rest01".into(),
        name: n.rest_api.clone(),
        tags: tags(&d.stack),
        endpoint_types: vec!["REGIONAL".into()],
        api_key_source: Some("HEADER".into()),
        resources: vec![
            rest_api::Resource {
                id: "root".into(),
                path: "/".into(),
                parent_id: None,
                methods: vec![method.clone()],
            },
            rest_api::Resource {
                id: "proxy".into(),
                path: "/{proxy+}".into(),
                parent_id: Some("root".into()),
                methods: vec![method],
            },
        ],
        stages: vec![rest_api::Stage {
            name: rest_api::STAGE.into(),
            deployment_id: Some("dep1".into()),
            deployment_description: Some(spec.fingerprint()),
            tags: tags(&d.stack),
        }],
    }
}

fn deployed_usage_plan(d: &Desired) -> rest_api::usage_plan::State {
    let n = &d.names;
    let a = &d.spec.as_ref().unwrap().config.api;
    rest_api::usage_plan::State {
        plans: vec![rest_api::usage_plan::PlanState {
            id: "plan1".into(),
            name: n.usage_plan.clone(),
            tags: tags(&d.stack),
            api_stages: vec!["rest01:live".into()],
            rate_limit: Some(a.rate_limit),
            burst_limit: Some(a.burst_limit as i32),
            quota: (a.quota_limit > 0)
                .then(|| (a.quota_limit as i32, a.quota_period.as_aws().to_string())),
            key_ids: vec!["key1".into()],
        }],
        keys: vec![rest_api::usage_plan::KeyState {
            id: "key1".into(),
            name: n.default_api_key.clone(),
            enabled: true,
            tags: tags(&d.stack),
        }],
    }
}

fn action(c: &Change) -> &'static str {
    match c {
        Change::Create { .. } => "create",
        Change::Update { .. } => "update",
        Change::Replace { .. } => "replace",
        Change::Delete => "delete",
    }
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
            Kind::Version,
            Kind::Alias,
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
    let d = Desired::new(StackConfig::default(), None, SecretInput::default()).unwrap();
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
    // The function, the version that carries the change, and `live` moved onto it.
    let kinds: Vec<Kind> = p.changes.iter().map(|c| c.kind).collect();
    assert_eq!(kinds, [Kind::Function, Kind::Version, Kind::Alias], "{p}");
    let text = p.to_string();
    assert!(text.contains("version: 1 -> (new version)"), "{text}");
    assert!(text.contains("all-at-once, after a smoke test"), "{text}");
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
    assert_eq!(fields[0].field, "callers");
}

#[test]
fn plaintext_tokens_are_hashed_after_the_function_is_updated() {
    let d = desired();
    let mut a = deployed(&d);
    let secret = a.secret.as_mut().unwrap();
    secret.value = Some(
        serde_json::from_value(serde_json::json!({
            "anthropic_api_key": KEY, "caller_tokens": ["clp_existing"]
        }))
        .unwrap(),
    );
    // A function change too: the function's update must come before the migration.
    let d2 = desired_with(
        Overrides {
            memory_mb: Some(512),
            ..Default::default()
        },
        Some(KEY),
    );
    let p = plan(&d2, &a);
    let kinds: Vec<Kind> = p.changes.iter().map(|c| c.kind).collect();
    let function = kinds
        .iter()
        .position(|k| *k == Kind::Function)
        .expect("function update");
    let callers = kinds
        .iter()
        .position(|k| *k == Kind::Callers)
        .expect("migration");
    assert!(function < callers, "{p}");
    let text = p.to_string();
    assert!(!text.contains("clp_existing"), "{text}");
    // Once hashed, nothing is planned.
    assert!(plan(&d, &deployed(&d)).is_empty());
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
            Kind::Alias,
            Kind::Version,
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
fn rest_api_plan_streams_turns_the_public_url_off_and_says_so() {
    let d = desired_with(
        Overrides {
            api: Some(infra::config::ApiKind::Rest),
            ..Default::default()
        },
        Some(KEY),
    );
    let p = plan(&d, &deployed(&desired()));
    let text = p.to_string();
    assert!(
        text.contains("responseTransferMode STREAM")
            && text.contains("function URL is off")
            && text.contains("quota 5000 per day"),
        "{text}"
    );
    let kinds: Vec<(Kind, &str)> = p
        .changes
        .iter()
        .map(|c| (c.kind, action(&c.change)))
        .collect();
    assert_eq!(
        kinds,
        [
            // The public URL and its two statements go first, then the REST front comes.
            (Kind::Permission, "delete"),
            (Kind::Permission, "delete"),
            (Kind::FunctionUrl, "delete"),
            (Kind::Function, "update"),
            // The configuration changed: a new version, which `live` then serves.
            (Kind::Version, "create"),
            (Kind::Alias, "update"),
            (Kind::RestApi, "create"),
            (Kind::UsagePlan, "create"),
            (Kind::Permission, "create"),
        ]
    );
    insta::assert_snapshot!("enable_rest_api", text);
    // Deployed: no changes (moto's missing transfer mode included).
    let p = plan(&d, &deployed(&d));
    assert!(p.is_empty(), "{p}");
    // Torn down: the permission, the usage plan, then the API it names.
    let p = plan(&Desired::empty("dev").unwrap(), &deployed(&d));
    let kinds: Vec<Kind> = p.changes.iter().map(|c| c.kind).collect();
    assert_eq!(
        &kinds[..3],
        [Kind::Permission, Kind::UsagePlan, Kind::RestApi],
        "{p}"
    );
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
    // Callers of an AWS_IAM URL need both actions (since October 2025).
    let note = p
        .notes
        .iter()
        .find(|n| n.contains("AWS_IAM"))
        .unwrap_or_else(|| panic!("{p}"));
    assert!(
        note.contains("lambda:InvokeFunctionUrl") && note.contains("lambda:InvokeFunction "),
        "{note}"
    );
}

/// A new account (10 concurrent executions, all unreserved): the plan shows that `auto`
/// reserves nothing and why; an explicit number is a blocker. A large account reserves.
#[test]
fn the_reservation_is_decided_against_the_account() {
    use infra::concurrency::AccountConcurrency;
    let mut a = Actual::empty(ACCOUNT, REGION);
    a.account_concurrency = Some(AccountConcurrency::Known {
        total: 10,
        unreserved: 10,
    });
    let p = plan(&desired(), &a);
    assert_eq!(p.reserved_concurrency, None);
    assert!(p.blockers.is_empty(), "{p}");
    assert!(
        !p.changes.iter().any(|c| c.kind == Kind::Concurrency),
        "{p}"
    );
    insta::assert_snapshot!("new_account_auto", p.to_string());

    let explicit = desired_with(
        Overrides {
            concurrency: Some(ConcurrencySetting::Reserved(5)),
            ..Default::default()
        },
        Some(KEY),
    );
    let p = plan(&explicit, &a);
    assert_eq!(p.reserved_concurrency, Some(5));
    assert_eq!(p.blockers.len(), 1, "{p}");
    insta::assert_snapshot!("new_account_explicit", p.to_string());

    a.account_concurrency = Some(AccountConcurrency::Known {
        total: 1000,
        unreserved: 1000,
    });
    let p = plan(&desired(), &a);
    assert_eq!(p.reserved_concurrency, Some(17));
    assert!(
        p.to_string()
            .contains("+ reserved concurrency claude-proxy-dev\n        reserved = 17"),
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

#[test]
fn plan_against_what_a_deploy_left_is_empty() {
    let d = desired();
    assert!(plan(&d, &deployed(&d)).is_empty());
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

/// Issue 12: an empty `limits.allowed_models` no longer means any model; the function gets
/// the configured models and the plan says so. The other allowlists reach the environment
/// only when opened, and the spend bound names what they allow.
#[test]
fn model_allowlist_defaults_to_the_configured_models_and_allowlists_reach_the_env() {
    let d = desired();
    let text = plan(&d, &Actual::empty(ACCOUNT, REGION)).to_string();
    assert!(
        text.contains("env.ALLOWED_MODELS = claude-haiku-4-5\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "callers may use only the models this stack is configured with: claude-haiku-4-5"
        ),
        "{text}"
    );
    // Nothing to change on a deployed stack: no note either.
    let again = plan(&d, &deployed(&d));
    assert!(again.is_empty() && again.notes.is_empty(), "{again}");

    let config = StackConfig::parse(
        r#"
[limits]
allowed_models = ["claude-haiku-4-5", "claude-sonnet-4-5"]
allowed_betas = ["context-1m-2025-08-07"]
allowed_tool_types = ["web_search"]
allow_mcp_servers = true
allowed_service_tiers = ["auto"]
"#,
    )
    .unwrap();
    let open = Desired::new(
        config.clone(),
        Some(&artifact()),
        SecretInput {
            anthropic_api_key: Some(ApiKey::new(KEY)),
            rotate_token: false,
        },
    )
    .unwrap()
    .with_created_at(AT);
    let text = plan(&open, &Actual::empty(ACCOUNT, REGION)).to_string();
    for line in [
        "env.ALLOWED_MODELS = claude-haiku-4-5,claude-sonnet-4-5",
        "env.ALLOWED_BETAS = context-1m-2025-08-07",
        "env.ALLOWED_TOOL_TYPES = web_search",
        "env.ALLOW_MCP_SERVERS = true",
        "env.ALLOWED_SERVICE_TIERS = auto",
    ] {
        assert!(text.contains(line), "{line}:\n{text}");
    }
    assert!(
        !text.contains("ALLOW_FILES") && !text.contains("configured with"),
        "{text}"
    );
    let extras = config.allowed_extras();
    assert_eq!(
        extras,
        [
            "beta `context-1m-2025-08-07`",
            "tool `web_search`",
            "MCP servers",
            "service_tier `auto`"
        ]
    );
    let b = infra::SpendBound::new(Some(17), 120, 256, 4096).with_extras(extras);
    assert!(b.summary.contains("tool `web_search`"), "{}", b.summary);
    let closed = infra::SpendBound::new(Some(17), 120, 256, 4096).with_extras(Vec::new());
    assert!(
        closed.summary.contains("cannot switch on server tools"),
        "{}",
        closed.summary
    );
    // Commas would split a name in the environment.
    assert!(StackConfig::parse("[limits]\nallowed_betas = [\"a,b\"]\n").is_err());
    // "*" opens the models on purpose (and is counted).
    let any = StackConfig::parse("[limits]\nallowed_models = [\"*\"]\n").unwrap();
    assert_eq!(any.allowed_models_env(), "*");
    assert_eq!(any.allowed_extras().len(), 1);
}

// Package kinds (`function.package`): layer and image, and switching between kinds.

fn with_package(package: infra::config::Package) -> Desired {
    let d = desired_with(
        Overrides {
            package: Some(package),
            ..Default::default()
        },
        Some(KEY),
    );
    d.with_image(image())
}

fn image() -> artifacts::Image {
    artifacts::Image::from_bootstrap(b"\x7fELF fake static bootstrap", artifacts::Arch::X86_64)
}

const LAYER_ARN_1: &str =
    "arn:aws:lambda:us-east-1:123456789012:layer:claude-proxy-dev-bootstrap:1";

/// The state a deploy of `d` leaves, for any package kind.
fn deployed_as(d: &Desired) -> Actual {
    use infra::config::Package;
    let mut a = deployed(d);
    let s = d.spec.as_ref().unwrap();
    let f = a.function.as_mut().unwrap();
    match s.config.function.package {
        Package::Zip => {}
        Package::Layer => {
            f.layers = vec![LAYER_ARN_1.into()];
            f.code_sha256 = Some(infra::layer::function_zip().code_sha256.clone());
            a.layer_versions = vec![infra::layer::Version {
                version: 1,
                arn: LAYER_ARN_1.into(),
                code_sha256: Some(artifact().code_sha256),
                compatible_architectures: vec!["x86_64".into()],
                compatible_runtimes: vec!["provided.al2023".into()],
            }];
        }
        Package::Image => {
            let uri = infra::ecr::repository_uri(ACCOUNT, REGION, &d.names.ecr_repository);
            let digest = s.image.as_ref().unwrap().digest().to_string();
            f.package_type = Some("Image".into());
            f.runtime = None;
            f.handler = None;
            f.code_sha256 = Some(digest.trim_start_matches("sha256:").into());
            f.image_uri = Some(infra::ecr::image_uri(&uri, &digest));
            a.repository = Some(infra::ecr::State {
                arn: format!(
                    "arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{}",
                    d.names.ecr_repository
                ),
                uri,
                scan_on_push: false,
                tags: tags(&d.stack),
                image_digests: vec![digest],
                lifecycle_policy: Some(infra::ecr::lifecycle_policy()),
            });
        }
    }
    released(a)
}

#[test]
fn deployed_layer_and_image_stacks_have_no_changes() {
    use infra::config::Package;
    for p in [Package::Zip, Package::Layer, Package::Image] {
        let d = with_package(p);
        let plan = plan(&d, &deployed_as(&d));
        assert!(plan.is_empty(), "{p}: {plan}");
    }
}

#[test]
fn first_layer_deploy_publishes_a_version_and_attaches_it() {
    let d = with_package(infra::config::Package::Layer);
    let p = plan(&d, &Actual::empty(ACCOUNT, REGION));
    assert!(p.blockers.is_empty(), "{p}");
    let kinds: Vec<Kind> = p.changes.iter().map(|c| c.kind).collect();
    assert_eq!(kinds[4..6], [Kind::Layer, Kind::Function], "{p}");
    let text = p.to_string();
    assert!(text.contains("layer = (known after apply)"), "{text}");
    insta::assert_snapshot!("layer_first_deploy", text);
}

#[test]
fn changed_layer_bytes_publish_one_version_and_drop_the_old_one() {
    let before = with_package(infra::config::Package::Layer);
    let mut after = with_package(infra::config::Package::Layer);
    after.spec.as_mut().unwrap().artifact =
        Some(Artifact::from_bootstrap_bytes(b"\x7fELF a new build").unwrap());
    let p = plan(&after, &deployed_as(&before));
    let summary: Vec<(Kind, &str, &str)> = p
        .changes
        .iter()
        .map(|c| {
            let action = match c.change {
                Change::Create { .. } => "create",
                Change::Update { .. } => "update",
                Change::Replace { .. } => "replace",
                Change::Delete => "delete",
            };
            (c.kind, c.name.as_str(), action)
        })
        .collect();
    assert_eq!(
        summary,
        [
            (Kind::Layer, "claude-proxy-dev-bootstrap", "create"),
            (Kind::Function, "claude-proxy-dev", "update"),
            (Kind::Version, "claude-proxy-dev:(new version)", "create"),
            (Kind::Alias, "claude-proxy-dev:live", "update"),
            // Only once the function uses the new version.
            (Kind::Layer, "claude-proxy-dev-bootstrap:1", "delete"),
        ],
        "{p}"
    );
    insta::assert_snapshot!("layer_new_bytes", p.to_string());
}

#[test]
fn zip_to_layer_is_an_update_not_a_replacement() {
    let zip = with_package(infra::config::Package::Zip);
    let layer = with_package(infra::config::Package::Layer);
    let p = plan(&layer, &deployed_as(&zip));
    assert_eq!(p.count(|c| matches!(c, Change::Replace { .. })), 0, "{p}");
    let function = p.changes.iter().find(|c| c.kind == Kind::Function).unwrap();
    let Change::Update { fields } = &function.change else {
        panic!("{p}")
    };
    let names: Vec<&str> = fields.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(names, ["layers", "code_sha256"], "{p}");
    insta::assert_snapshot!("zip_to_layer", p.to_string());
    // And back: the layer's versions go, the function gets its bootstrap again.
    let p = plan(&zip, &deployed_as(&layer));
    assert_eq!(p.count(|c| matches!(c, Change::Replace { .. })), 0, "{p}");
    // The function is switched off the layer first, then its versions go.
    assert_eq!(p.changes[0].kind, Kind::Function, "{p}");
    let last = p.changes.last().unwrap();
    assert_eq!(
        (last.kind, &last.change),
        (Kind::Layer, &Change::Delete),
        "{p}"
    );
    insta::assert_snapshot!("layer_to_zip", p.to_string());
}

#[test]
fn zip_to_image_replaces_the_function_and_everything_on_it() {
    let zip = with_package(infra::config::Package::Zip);
    let img = with_package(infra::config::Package::Image);
    let p = plan(&img, &deployed_as(&zip));
    let text = p.to_string();
    assert!(
        text.contains("package zip -> image (Lambda cannot change PackageType in place)"),
        "{text}"
    );
    let kinds: Vec<Kind> = p.changes.iter().map(|c| c.kind).collect();
    assert_eq!(
        kinds,
        [
            Kind::Repository,
            Kind::Image,
            Kind::Function,
            Kind::Concurrency,
            Kind::Version,
            Kind::Alias,
            Kind::FunctionUrl,
            Kind::Permission,
            Kind::Permission
        ],
        "{p}"
    );
    insta::assert_snapshot!("zip_to_image", text);
    // Back to a zip: replaced again, and the repository goes.
    let p = plan(&zip, &deployed_as(&img));
    let text = p.to_string();
    assert!(text.contains("package image -> zip"), "{text}");
    assert_eq!(p.changes[0].kind, Kind::Repository);
    assert_eq!(p.changes[0].change, Change::Delete);
    insta::assert_snapshot!("image_to_zip", text);
}

#[test]
fn unchanged_image_pushes_nothing_and_a_new_one_updates_the_code() {
    let d = with_package(infra::config::Package::Image);
    let a = deployed_as(&d);
    assert!(plan(&d, &a).is_empty());
    let newer = with_package(infra::config::Package::Image).with_image(
        artifacts::Image::from_bootstrap(b"\x7fELF newer static", artifacts::Arch::X86_64),
    );
    let p = plan(&newer, &a);
    let kinds: Vec<Kind> = p.changes.iter().map(|c| c.kind).collect();
    assert_eq!(
        kinds,
        [Kind::Image, Kind::Function, Kind::Version, Kind::Alias],
        "{p}"
    );
    let Change::Update { fields } = &p.changes[1].change else {
        panic!("{p}")
    };
    assert_eq!(fields[0].field, "image_uri");
    assert!(fields[0].to.contains("@sha256:"), "{p}");
    insta::assert_snapshot!("image_new_digest", p.to_string());
}

#[test]
fn teardown_deletes_every_layer_version_and_the_repository() {
    let layer = with_package(infra::config::Package::Layer);
    let mut a = deployed_as(&layer);
    a.layer_versions.push(infra::layer::Version {
        version: 0,
        arn: LAYER_ARN_1.replace(":1", ":0"),
        code_sha256: None,
        compatible_architectures: vec![],
        compatible_runtimes: vec![],
    });
    a.repository = deployed_as(&with_package(infra::config::Package::Image)).repository;
    let p = plan(&Desired::empty("dev").unwrap(), &a);
    let deleted: Vec<(Kind, &str)> = p
        .changes
        .iter()
        .filter(|c| matches!(c.kind, Kind::Layer | Kind::Repository))
        .map(|c| (c.kind, c.name.as_str()))
        .collect();
    assert_eq!(
        deleted,
        [
            (Kind::Layer, "claude-proxy-dev-bootstrap:1"),
            (Kind::Layer, "claude-proxy-dev-bootstrap:0"),
            (Kind::Repository, "claude-proxy-dev"),
        ]
    );
    assert!(p.changes.iter().all(|c| c.change == Change::Delete));
}

fn with_provider(kind: infra::config::ProviderKind, key: Option<&str>) -> Desired {
    desired_with(
        Overrides {
            provider: Some(kind),
            ..Default::default()
        },
        key,
    )
}

/// What `GetInferenceProfile` answers for the profiles `d` names (as `read_for` adds them):
/// each routes to its model in the calling Region.
fn looked_up(d: &Desired) -> infra::bedrock::ProfileLookups {
    let p = &d.spec.as_ref().unwrap().config.provider;
    p.bedrock_models
        .values()
        .filter(|id| infra::bedrock::is_profile(id))
        .map(|id| {
            let model = id.split_once('.').unwrap().1;
            let lookup = infra::bedrock::ProfileLookup::Resolved {
                arn: format!("arn:aws:bedrock:{REGION}:{ACCOUNT}:inference-profile/{id}"),
                models: vec![format!(
                    "arn:aws:bedrock:{REGION}::foundation-model/{model}"
                )],
            };
            (id.clone(), lookup)
        })
        .collect()
}

/// `actual` as `read_for` reads it for the desired stack `d`.
fn with_lookups(mut actual: Actual, d: &Desired) -> Actual {
    actual.bedrock_profiles = looked_up(d);
    actual
}

/// The account state after deploying `d` with the Bedrock provider: the role's policy has
/// the Bedrock statements, the secret only caller tokens.
fn deployed_bedrock(d: &Desired) -> Actual {
    let mut a = with_lookups(deployed(d), d);
    let n = &d.names;
    let secret = a.secret.as_mut().unwrap();
    secret.value.as_mut().unwrap().anthropic_api_key = None;
    let mut policy = role::policy_document(
        &secret.arn.clone(),
        &n.log_group_arn("aws", REGION, ACCOUNT),
    );
    role::add_bedrock_statements(
        &mut policy,
        "aws",
        REGION,
        ACCOUNT,
        d.spec
            .as_ref()
            .unwrap()
            .config
            .provider
            .bedrock_models
            .values(),
        &a.bedrock_profiles,
    );
    a.role
        .as_mut()
        .unwrap()
        .inline_policies
        .insert(n.role_policy.clone(), policy);
    a
}

#[test]
fn switching_the_provider_is_a_configuration_change_not_a_replacement() {
    use infra::config::ProviderKind::{Anthropic, Bedrock};
    // Anthropic → Bedrock: no key needed, the role policy and the environment change.
    let bedrock = with_provider(Bedrock, None);
    let p = plan(&bedrock, &with_lookups(deployed(&desired()), &bedrock));
    assert!(p.blockers.is_empty(), "{:?}", p.blockers);
    let changed: Vec<(Kind, &str)> = p
        .changes
        .iter()
        .map(|c| {
            let action = match c.change {
                Change::Update { .. } => "update",
                Change::Create { .. } => "create",
                Change::Replace { .. } => "replace",
                Change::Delete => "delete",
            };
            (c.kind, action)
        })
        .collect();
    assert_eq!(
        changed,
        [
            (Kind::RolePolicy, "update"),
            (Kind::Function, "update"),
            (Kind::Version, "create"),
            (Kind::Alias, "update")
        ]
    );
    let text = p.to_string();
    assert!(!text.contains(KEY));
    insta::assert_snapshot!("provider_anthropic_to_bedrock", text);

    // Deployed with Bedrock: nothing to do; a first Bedrock deploy needs no key.
    assert!(plan(&bedrock, &deployed_bedrock(&bedrock)).is_empty());
    let first = plan(
        &bedrock,
        &with_lookups(Actual::empty(ACCOUNT, REGION), &bedrock),
    );
    assert!(first.blockers.is_empty(), "{:?}", first.blockers);
    assert!(!first.to_string().contains("anthropic_api_key"));

    // Back to Anthropic: the key is needed again (the secret holds none) ...
    let back_without_key = plan(&with_provider(Anthropic, None), &deployed_bedrock(&bedrock));
    assert!(
        back_without_key
            .blockers
            .iter()
            .any(|b| b.contains("ANTHROPIC_API_KEY")),
        "{:?}",
        back_without_key.blockers
    );
    // ... and with it: updates only.
    let back = plan(
        &with_provider(Anthropic, Some(KEY)),
        &deployed_bedrock(&bedrock),
    );
    assert!(back.blockers.is_empty(), "{:?}", back.blockers);
    // Updates, and the version that carries them.
    assert!(back
        .changes
        .iter()
        .all(|c| matches!(c.change, Change::Update { .. })
            || (c.kind == Kind::Version && matches!(c.change, Change::Create { .. }))));
    insta::assert_snapshot!("provider_bedrock_to_anthropic", back.to_string());
}

#[test]
fn bedrock_profile_lookups_refused_or_missing_are_in_the_plan() {
    use infra::bedrock::ProfileLookup;
    use infra::config::ProviderKind::Bedrock;
    let bedrock = with_provider(Bedrock, None);
    let ids: Vec<String> = bedrock
        .spec
        .as_ref()
        .unwrap()
        .config
        .provider
        .bedrock_models
        .values()
        .cloned()
        .collect();
    let mut a = deployed_bedrock(&bedrock);
    assert!(plan(&bedrock, &a)
        .notes
        .iter()
        .all(|n| !n.contains("GetInferenceProfile")));

    // Refused: a note names the profile, the reason and the fallback; no blocker.
    a.bedrock_profiles.insert(
        ids[0].clone(),
        ProfileLookup::Refused {
            reason: "AccessDeniedException: not authorized".into(),
        },
    );
    let p = plan(&bedrock, &a);
    assert!(p.blockers.is_empty(), "{p}");
    assert!(
        p.notes.iter().any(|n| n.contains(&ids[0])
            && n.contains("AccessDeniedException")
            && n.contains("built-in geography table")),
        "{p}"
    );

    // Not found: a blocker.
    a.bedrock_profiles.insert(
        ids[1].clone(),
        ProfileLookup::NotFound {
            reason: "ResourceNotFoundException: no such profile".into(),
        },
    );
    let p = plan(&bedrock, &a);
    assert!(
        p.blockers
            .iter()
            .any(|b| b.contains(&ids[1]) && b.contains("does not exist")),
        "{p}"
    );
}

#[test]
fn arns_carry_the_partition_of_the_account() {
    // A first deploy in the aws-cn partition: the role's policy names the log group with
    // `arn:aws-cn:` (and nothing with `arn:aws:`).
    let d = desired();
    let mut a = Actual::empty(ACCOUNT, "cn-north-1");
    assert_eq!(a.partition, "aws-cn");
    a.secret = Some(secret::State {
        arn: format!(
            "arn:aws-cn:secretsmanager:cn-north-1:{ACCOUNT}:secret:claude-proxy/dev-AbCdEf"
        ),
        tags: tags(&d.stack),
        value: None,
        scheduled_for_deletion: false,
    });
    let p = plan(&d, &a);
    let json = serde_json::to_string(&p).unwrap();
    assert!(json.contains("arn:aws-cn:logs:cn-north-1:"), "{json}");
    assert!(!json.contains("arn:aws:"), "{json}");
}

#[test]
fn a_fallback_shows_both_providers_and_grants_exactly_what_a_bedrock_stack_gets() {
    use infra::config::ProviderKind::{Anthropic, Bedrock};
    let with_fallback = |kind, fallback, key| {
        desired_with(
            Overrides {
                provider: Some(kind),
                fallback: Some(fallback),
                ..Default::default()
            },
            key,
        )
    };
    // Anthropic with Bedrock as the fallback: the role policy and the environment change,
    // the secret keeps the key.
    let failover = with_fallback(Anthropic, Some(Bedrock), Some(KEY));
    let p = plan(&failover, &with_lookups(deployed(&desired()), &failover));
    assert!(p.blockers.is_empty(), "{:?}", p.blockers);
    let changed: Vec<Kind> = p.changes.iter().map(|c| c.kind).collect();
    assert_eq!(
        changed,
        [Kind::RolePolicy, Kind::Function, Kind::Version, Kind::Alias],
        "{p}"
    );
    // Updates only, and the version that carries them.
    assert!(p
        .changes
        .iter()
        .all(|c| matches!(c.change, Change::Update { .. })
            || (c.kind == Kind::Version && matches!(c.change, Change::Create { .. }))));
    assert!(
        p.notes
            .iter()
            .any(|n| n.starts_with("provider anthropic is primary, bedrock the fallback")),
        "{p}"
    );
    let text = p.to_string();
    assert!(!text.contains(KEY));
    insta::assert_snapshot!("provider_fallback_bedrock", text);

    // Its role policy is exactly a Bedrock stack's (same models, same profiles): with that
    // policy in place, the plan is empty.
    let bedrock = with_provider(Bedrock, None);
    let mut converged = with_lookups(deployed(&failover), &failover);
    converged.role = deployed_bedrock(&bedrock).role;
    let again = plan(&failover, &converged);
    assert!(again.is_empty(), "{again}");
    assert!(again
        .notes
        .iter()
        .any(|n| n.contains("bedrock the fallback")));

    // `--fallback none` takes it all away again.
    let off = with_fallback(Anthropic, None, Some(KEY));
    let p = plan(&off, &converged);
    let changed: Vec<Kind> = p.changes.iter().map(|c| c.kind).collect();
    assert_eq!(
        changed,
        [Kind::RolePolicy, Kind::Function, Kind::Version, Kind::Alias],
        "{p}"
    );
    assert!(
        p.to_string().contains("env.FALLBACK: bedrock -> (unset)"),
        "{p}"
    );

    // Bedrock with the Anthropic API as the fallback: the key is needed ...
    let reverse = with_fallback(Bedrock, Some(Anthropic), None);
    let p = plan(&reverse, &deployed_bedrock(&bedrock));
    assert!(
        p.blockers.iter().any(|b| b.contains("ANTHROPIC_API_KEY")),
        "{:?}",
        p.blockers
    );
    // ... and given, the secret gets it; the Bedrock grants stay as they are.
    let reverse = with_fallback(Bedrock, Some(Anthropic), Some(KEY));
    let p = plan(&reverse, &deployed_bedrock(&bedrock));
    assert!(p.blockers.is_empty(), "{:?}", p.blockers);
    let changed: Vec<Kind> = p.changes.iter().map(|c| c.kind).collect();
    assert_eq!(
        changed,
        [Kind::Secret, Kind::Function, Kind::Version, Kind::Alias],
        "{p}"
    );
    let text = p.to_string();
    assert!(!text.contains(KEY));
    insta::assert_snapshot!("provider_fallback_anthropic", text);

    // Models without a Bedrock id are named: they never fail over.
    let partly = desired_with(
        Overrides {
            fallback: Some(Some(Bedrock)),
            default_model: Some("claude-opus-4-1".into()),
            allowed_models: Some(vec!["claude-opus-4-1".into(), "claude-haiku-4-5".into()]),
            ..Default::default()
        },
        Some(KEY),
    );
    let p = plan(&partly, &with_lookups(deployed(&desired()), &partly));
    let note = p
        .notes
        .iter()
        .find(|n| n.contains("bedrock the fallback"))
        .unwrap();
    assert!(
        note.contains("; claude-opus-4-1 (no Bedrock id) never fail over;"),
        "{note}"
    );

    // The fallback must be the other provider.
    let e = StackConfig::default()
        .with_overrides(&Overrides {
            fallback: Some(Some(Anthropic)),
            ..Default::default()
        })
        .unwrap_err();
    assert!(e.to_string().contains("provider.fallback"), "{e}");
}

#[test]
fn an_interrupted_canary_shows_its_weights_and_finishes_on_the_next_deploy() {
    let d = desired_with(
        Overrides {
            strategy: Some(infra::config::Strategy::Canary),
            ..Default::default()
        },
        Some(KEY),
    );
    let mut a = deployed(&d);
    // Killed after the first step of a canary from 1 to 2, which carries $LATEST.
    let mut v2 = a.versions[0].clone();
    v2.version = "2".into();
    a.versions[0].code_sha256 = "older".into();
    a.versions.push(v2);
    a.alias = Some(infra::alias::State {
        version: "1".into(),
        weights: BTreeMap::from([("2".to_string(), 0.1)]),
        revision_id: Some("r2".into()),
    });
    let p = plan(&d, &a);
    let kinds: Vec<Kind> = p.changes.iter().map(|c| c.kind).collect();
    assert_eq!(kinds, [Kind::Alias], "nothing is published again: {p}");
    let text = p.to_string();
    assert!(text.contains("version: 1 -> 2"), "{text}");
    assert!(text.contains("routing: 1=90% 2=10% -> 2=100%"), "{text}");
    assert!(text.contains("canary: 10% for 300 s, then 100%"), "{text}");
    assert!(text.contains("rolled back automatically"), "{text}");
}

#[test]
fn a_url_on_the_unqualified_function_moves_to_the_alias_and_the_plan_says_so() {
    let d = desired();
    let mut a = deployed(&d);
    let old = a.function_url.take().unwrap();
    a.unqualified_function_url = Some(old.clone());
    for s in &mut a.permissions {
        s.qualifier = None;
    }
    let p = plan(&d, &a);
    let text = p.to_string();
    assert!(
        text.contains("- function URL claude-proxy-dev (unqualified)"),
        "{text}"
    );
    assert!(
        text.contains("+ function URL claude-proxy-dev:live"),
        "{text}"
    );
    assert!(
        text.contains(&format!("{} stops answering", old.url)),
        "{text}"
    );
    assert_eq!(
        p.count(|c| matches!(c, Change::Replace { .. })),
        2,
        "both statements move to the alias: {text}"
    );
    assert!(text.contains("wanted on=live"), "{text}");
}

#[test]
fn versions_beyond_keep_versions_are_pruned_after_live_moved() {
    let d = desired_with(
        Overrides {
            memory_mb: Some(512),
            keep_versions: Some(2),
            ..Default::default()
        },
        Some(KEY),
    );
    let mut a = deployed(&desired());
    let v1 = a.versions[0].clone();
    a.versions = (1..=3)
        .map(|n| infra::version::State {
            version: n.to_string(),
            ..v1.clone()
        })
        .collect();
    a.alias.as_mut().unwrap().version = "3".into();
    let p = plan(&d, &a);
    let summary: Vec<(Kind, &str)> = p
        .changes
        .iter()
        .map(|c| (c.kind, c.name.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            (Kind::Function, "claude-proxy-dev"),
            (Kind::Version, "claude-proxy-dev:(new version)"),
            (Kind::Alias, "claude-proxy-dev:live"),
            (Kind::Version, "claude-proxy-dev:1"),
            (Kind::Version, "claude-proxy-dev:2"),
        ],
        "{p}"
    );
}
