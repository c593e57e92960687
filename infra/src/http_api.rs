//! The API Gateway HTTP API `claude-proxy-<stack>`: one `AWS_PROXY` integration (payload
//! format 2.0, 30 s timeout: the most API Gateway allows) to the function, the routes below,
//! a `$default` stage with auto-deploy. Its invoke permission is in `permission.rs`.
//!
//! HTTP APIs cannot stream and give up after 30 s; the plan says so, and the handler gets a
//! deadline under 29 s for requests that come through it (`GATEWAY_DEADLINE_MS`).
//!
//! API names are not unique, so the API is found by name and by the stack's tags; extra
//! copies (e.g. from a deploy interrupted between CreateApi and its read-back) are deleted.

use crate::aws::{ctx, Aws, OrNotFound};
use crate::change::{Change, FieldChange, Kind, Late, Output, Produced, Refs, Setting};
use crate::desired::StackSpec;
use crate::names;
use crate::step::{keep_first, Done, KeepFirst, ResourceChange, Step, StepContext, StepFuture};
use anyhow::{Context, Result};
use aws_sdk_apigatewayv2::types::{IntegrationType, ProtocolType};
use std::collections::{BTreeMap, BTreeSet};

pub const ROUTES: [&str; 4] = [
    "POST /chat",
    "POST /v1/messages",
    "POST /v1/messages/count_tokens",
    "GET /health",
];
pub const STAGE: &str = "$default";
pub const PAYLOAD_FORMAT: &str = "2.0";
pub const INTEGRATION_TIMEOUT_MS: i32 = 30_000;

#[derive(Debug, Clone)]
pub struct Integration {
    pub id: String,
    pub integration_type: String,
    pub payload_format_version: String,
    pub uri: String,
    pub timeout_ms: Option<i32>,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub id: String,
    pub key: String,
    pub target: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Stage {
    pub name: String,
    pub auto_deploy: bool,
}

#[derive(Debug, Clone)]
pub struct State {
    pub id: String,
    pub name: String,
    pub endpoint: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub integrations: Vec<Integration>,
    pub routes: Vec<Route>,
    pub stages: Vec<Stage>,
}

#[derive(Debug, Clone)]
pub struct Spec {
    pub name: String,
    pub stack: String,
    /// The integration's target: the alias `live` (`<function ARN>:live`).
    pub function_arn: Late,
}

impl Spec {
    fn resolve(&self, produced: &Produced) -> Result<Spec> {
        Ok(Spec {
            function_arn: Late::Known(self.function_arn.resolve(produced)?),
            ..self.clone()
        })
    }
}

/// The HTTP API a desired stack needs, else `None`.
pub fn spec(names: &names::Names, s: &StackSpec, refs: &Refs) -> Option<Spec> {
    s.config.http_api.enabled.then(|| Spec {
        name: names.http_api.clone(),
        stack: names.stack.clone(),
        function_arn: refs.alias_arn.clone(),
    })
}

/// The planned changes to the stack's HTTP APIs (the first is kept, others deleted), with
/// what apply does for each. Deleting the first one (`actual[0]`) removes the stack's API
/// from the outputs.
pub fn plan(names: &names::Names, spec: Option<Spec>, actual: &[State]) -> Vec<ResourceChange> {
    let changes = diff(spec.as_ref(), actual);
    keep_first(spec.as_ref(), actual, |a| a.id.as_str(), changes)
        .into_iter()
        .map(|(id, change, action)| {
            ResourceChange::new(Kind::HttpApi, &names.http_api, change, action).with_id(id)
        })
        .collect()
}

/// What apply does to an HTTP API.
pub type Action = KeepFirst<Spec, State>;

impl Step for Action {
    fn run<'a>(&'a self, cx: StepContext<'a>) -> StepFuture<'a> {
        Box::pin(async move {
            match self {
                Action::Create(spec) => {
                    let spec = spec.resolve(cx.produced)?;
                    let (id, endpoint) = create(cx.aws, &spec, cx.created_at).await?;
                    let aws = cx.aws;
                    let source = crate::permission::api_source_arn(
                        &aws.partition,
                        &aws.region,
                        &aws.account_id,
                        &id,
                    );
                    Ok(Done {
                        outputs: vec![
                            (Output::ApiId, Some(id)),
                            (Output::ApiEndpoint, Some(endpoint)),
                            (Output::ApiSourceArn, Some(source)),
                        ],
                        ..Done::default()
                    })
                }
                Action::Update(spec, a) => {
                    let spec = spec.resolve(cx.produced)?;
                    reconcile(cx.aws, &spec, a, cx.created_at).await?;
                    Done::nothing()
                }
                Action::Delete { id, current } => {
                    delete(cx.aws, id).await?;
                    let outputs = if *current {
                        vec![(Output::ApiId, None), (Output::ApiEndpoint, None)]
                    } else {
                        Vec::new()
                    };
                    Ok(Done {
                        outputs,
                        ..Done::default()
                    })
                }
            }
        })
    }
}

/// Every HTTP API in the account and region (all pages of GetApis), with their tags. The
/// SDK models no paginator for GetApis, so the pages are followed here.
pub async fn list_apis(aws: &Aws) -> Result<Vec<aws_sdk_apigatewayv2::types::Api>> {
    let mut apis = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let out = aws
            .apigw
            .get_apis()
            .set_next_token(next.clone())
            .send()
            .await
            .map_err(ctx("apigateway:GetApis"))?;
        apis.extend(out.items().iter().cloned());
        next = out.next_token().map(str::to_string);
        if next.is_none() {
            return Ok(apis);
        }
    }
}

/// Every HTTP API with the stack's API name or the stack's tags.
pub async fn read(aws: &Aws, names: &names::Names) -> Result<Vec<State>> {
    let mut found = Vec::new();
    for api in list_apis(aws).await? {
        let tags: BTreeMap<String, String> = api
            .tags()
            .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let by_name = api.name() == Some(names.http_api.as_str());
        if !(by_name || names::is_ours(&tags, &names.stack)) {
            continue;
        }
        // Same name but tagged for another stack: not ours.
        if by_name
            && tags
                .get(names::TAG_STACK)
                .is_some_and(|s| s != &names.stack)
        {
            continue;
        }
        let id = api
            .api_id()
            .context("GetApis returned an API without id")?
            .to_string();
        found.push(
            read_parts(
                aws,
                &id,
                api.name().unwrap_or_default(),
                api.api_endpoint(),
                tags,
            )
            .await?,
        );
    }
    // Prefer the tagged API as "the" API: it sorts first.
    found.sort_by_key(|a| (!names::is_ours(&a.tags, &names.stack), a.id.clone()));
    Ok(found)
}

async fn read_parts(
    aws: &Aws,
    id: &str,
    name: &str,
    endpoint: Option<&str>,
    tags: BTreeMap<String, String>,
) -> Result<State> {
    let integrations = async {
        Ok::<Vec<Integration>, anyhow::Error>(
            aws.apigw
                .get_integrations()
                .api_id(id)
                .send()
                .await
                .map_err(ctx(format!("apigateway:GetIntegrations {id}")))?
                .items()
                .iter()
                .map(|i| Integration {
                    id: i.integration_id().unwrap_or_default().to_string(),
                    integration_type: i
                        .integration_type()
                        .map(|t| t.as_str().to_string())
                        .unwrap_or_default(),
                    payload_format_version: i
                        .payload_format_version()
                        .unwrap_or_default()
                        .to_string(),
                    uri: i.integration_uri().unwrap_or_default().to_string(),
                    timeout_ms: i.timeout_in_millis(),
                })
                .collect(),
        )
    };
    let routes = async {
        Ok::<Vec<Route>, anyhow::Error>(
            aws.apigw
                .get_routes()
                .api_id(id)
                .send()
                .await
                .map_err(ctx(format!("apigateway:GetRoutes {id}")))?
                .items()
                .iter()
                .map(|r| Route {
                    id: r.route_id().unwrap_or_default().to_string(),
                    key: r.route_key().unwrap_or_default().to_string(),
                    target: r.target().map(str::to_string),
                })
                .collect(),
        )
    };
    let stages = async {
        Ok::<Vec<Stage>, anyhow::Error>(
            aws.apigw
                .get_stages()
                .api_id(id)
                .send()
                .await
                .map_err(ctx(format!("apigateway:GetStages {id}")))?
                .items()
                .iter()
                .map(|s| Stage {
                    name: s.stage_name().unwrap_or_default().to_string(),
                    auto_deploy: s.auto_deploy().unwrap_or(false),
                })
                .collect(),
        )
    };
    // Independent reads of one API: at the same time.
    let (integrations, routes, stages) = tokio::try_join!(integrations, routes, stages)?;
    Ok(State {
        id: id.to_string(),
        name: name.to_string(),
        endpoint: endpoint.map(str::to_string),
        tags,
        integrations,
        routes,
        stages,
    })
}

fn good_integration<'a>(spec: &Spec, a: &'a State) -> Option<&'a Integration> {
    a.integrations.iter().find(|i| {
        i.integration_type == "AWS_PROXY"
            && i.payload_format_version == PAYLOAD_FORMAT
            && i.uri == spec.function_arn.planned()
            && i.timeout_ms.is_none_or(|t| t == INTEGRATION_TIMEOUT_MS)
    })
}

fn integration_text(i: &Integration) -> String {
    format!(
        "{} {} -> {}",
        i.integration_type, i.payload_format_version, i.uri
    )
}

/// Field-level differences of an existing API.
fn fields(spec: &Spec, a: &State) -> Vec<FieldChange> {
    let mut f = Vec::new();
    let integration = good_integration(spec, a);
    if integration.is_none() || a.integrations.len() != 1 {
        f.push(FieldChange::new(
            "integration",
            a.integrations
                .iter()
                .map(integration_text)
                .collect::<Vec<_>>()
                .join("; "),
            format!(
                "AWS_PROXY {PAYLOAD_FORMAT} -> {}",
                spec.function_arn.planned()
            ),
        ));
    }
    let target = integration.map(|i| format!("integrations/{}", i.id));
    let have: BTreeSet<String> = a
        .routes
        .iter()
        .filter(|r| target.is_some() && r.target == target)
        .map(|r| r.key.clone())
        .collect();
    let want: BTreeSet<String> = ROUTES.iter().map(|s| s.to_string()).collect();
    let all_keys: BTreeSet<String> = a.routes.iter().map(|r| r.key.clone()).collect();
    if have != want || all_keys != want || a.routes.len() != want.len() {
        f.push(FieldChange::new(
            "routes",
            a.routes
                .iter()
                .map(|r| r.key.clone())
                .collect::<Vec<_>>()
                .join(", "),
            ROUTES.join(", "),
        ));
    }
    let stage_ok = a.stages.len() == 1 && a.stages[0].name == STAGE && a.stages[0].auto_deploy;
    if !stage_ok {
        f.push(FieldChange::new(
            "stages",
            a.stages
                .iter()
                .map(|s| format!("{} (auto_deploy={})", s.name, s.auto_deploy))
                .collect::<Vec<_>>()
                .join(", "),
            format!("{STAGE} (auto_deploy=true)"),
        ));
    }
    let missing = names::missing_tags(&spec.stack, &a.tags);
    if !missing.is_empty() {
        f.push(FieldChange::new("tags", "", missing.join(",")));
    }
    f
}

/// Changes by API: the first actual API is kept (updated), the others are deleted.
/// The `Option<String>` is the API id the change applies to (None for a create).
pub fn diff(desired: Option<&Spec>, actual: &[State]) -> Vec<(Option<String>, Change)> {
    let mut out = Vec::new();
    let mut rest = actual.iter();
    if let Some(d) = desired {
        match rest.next() {
            None => out.push((
                None,
                Change::Create {
                    settings: vec![
                        Setting::new(
                            "integration",
                            format!("AWS_PROXY {PAYLOAD_FORMAT}, timeout 30 s"),
                        ),
                        Setting::new("routes", ROUTES.join(", ")),
                        Setting::new("stage", format!("{STAGE} (auto_deploy)")),
                    ],
                },
            )),
            Some(a) => {
                let f = fields(d, a);
                if !f.is_empty() {
                    out.push((Some(a.id.clone()), Change::Update { fields: f }));
                }
            }
        }
    }
    for a in rest {
        out.push((Some(a.id.clone()), Change::Delete));
    }
    out
}

/// Creates the API with its integration, routes and stage. Returns (id, endpoint).
pub async fn create(aws: &Aws, spec: &Spec, created_at: &str) -> Result<(String, String)> {
    let out = aws
        .apigw
        .create_api()
        .name(&spec.name)
        .protocol_type(ProtocolType::Http)
        .description(format!(
            "Claude proxy for the claude-lambda stack {}",
            &spec.stack
        ))
        .set_tags(Some(
            names::tags_at_creation(&spec.stack, created_at)
                .into_iter()
                .collect(),
        ))
        .send()
        .await
        .map_err(ctx(format!("apigateway:CreateApi {}", &spec.name)))?;
    let id = out
        .api_id()
        .context("CreateApi returned no id")?
        .to_string();
    let endpoint = out.api_endpoint().unwrap_or_default().to_string();
    let state = State {
        id: id.clone(),
        name: spec.name.clone(),
        endpoint: Some(endpoint.clone()),
        tags: names::tags_at_creation(&spec.stack, created_at),
        integrations: Vec::new(),
        routes: Vec::new(),
        stages: Vec::new(),
    };
    reconcile(aws, spec, &state, created_at).await?;
    Ok((id, endpoint))
}

/// Brings integration, routes, stage and tags of an existing API to the spec.
pub async fn reconcile(aws: &Aws, spec: &Spec, a: &State, created_at: &str) -> Result<()> {
    let id = &a.id;
    // Integration: keep a matching one, else fix the first, else create.
    let integration_id = match good_integration(spec, a) {
        Some(i) => i.id.clone(),
        None => match a.integrations.first() {
            Some(i) => {
                aws.apigw
                    .update_integration()
                    .api_id(id)
                    .integration_id(&i.id)
                    .integration_type(IntegrationType::AwsProxy)
                    .integration_uri(spec.function_arn.planned())
                    .payload_format_version(PAYLOAD_FORMAT)
                    .timeout_in_millis(INTEGRATION_TIMEOUT_MS)
                    .send()
                    .await
                    .map_err(ctx(format!("apigateway:UpdateIntegration {id} {}", i.id)))?;
                i.id.clone()
            }
            None => aws
                .apigw
                .create_integration()
                .api_id(id)
                .integration_type(IntegrationType::AwsProxy)
                .integration_uri(spec.function_arn.planned())
                .payload_format_version(PAYLOAD_FORMAT)
                .timeout_in_millis(INTEGRATION_TIMEOUT_MS)
                .send()
                .await
                .map_err(ctx(format!("apigateway:CreateIntegration {id}")))?
                .integration_id()
                .context("CreateIntegration returned no id")?
                .to_string(),
        },
    };
    let target = format!("integrations/{integration_id}");
    // Routes: create missing, retarget wrong, delete extra and duplicates.
    let mut seen = BTreeSet::new();
    for r in &a.routes {
        let wanted = ROUTES.contains(&r.key.as_str()) && seen.insert(r.key.clone());
        if !wanted {
            aws.apigw
                .delete_route()
                .api_id(id)
                .route_id(&r.id)
                .send()
                .await
                .map_err(ctx(format!("apigateway:DeleteRoute {id} {}", r.key)))?;
        } else if r.target.as_deref() != Some(target.as_str()) {
            aws.apigw
                .update_route()
                .api_id(id)
                .route_id(&r.id)
                .target(&target)
                .send()
                .await
                .map_err(ctx(format!("apigateway:UpdateRoute {id} {}", r.key)))?;
        }
    }
    for key in ROUTES {
        if !seen.contains(key) {
            aws.apigw
                .create_route()
                .api_id(id)
                .route_key(key)
                .target(&target)
                .send()
                .await
                .map_err(ctx(format!("apigateway:CreateRoute {id} {key}")))?;
        }
    }
    // Other integrations are no longer referenced: remove them.
    for i in &a.integrations {
        if i.id != integration_id {
            aws.apigw
                .delete_integration()
                .api_id(id)
                .integration_id(&i.id)
                .send()
                .await
                .map_err(ctx(format!("apigateway:DeleteIntegration {id} {}", i.id)))?;
        }
    }
    // Stage.
    for s in &a.stages {
        if s.name != STAGE {
            aws.apigw
                .delete_stage()
                .api_id(id)
                .stage_name(&s.name)
                .send()
                .await
                .map_err(ctx(format!("apigateway:DeleteStage {id} {}", s.name)))?;
        }
    }
    match a.stages.iter().find(|s| s.name == STAGE) {
        None => {
            aws.apigw
                .create_stage()
                .api_id(id)
                .stage_name(STAGE)
                .auto_deploy(true)
                .set_tags(Some(
                    names::tags_at_creation(&spec.stack, created_at)
                        .into_iter()
                        .collect(),
                ))
                .send()
                .await
                .map_err(ctx(format!("apigateway:CreateStage {id} {STAGE}")))?;
        }
        Some(s) if !s.auto_deploy => {
            aws.apigw
                .update_stage()
                .api_id(id)
                .stage_name(STAGE)
                .auto_deploy(true)
                .send()
                .await
                .map_err(ctx(format!("apigateway:UpdateStage {id} {STAGE}")))?;
        }
        Some(_) => {}
    }
    if !names::missing_tags(&spec.stack, &a.tags).is_empty() {
        let tags = names::tags_to_restore(&spec.stack, created_at, &a.tags);
        aws.apigw
            .tag_resource()
            .resource_arn(format!(
                "arn:{}:apigateway:{}::/apis/{id}",
                aws.partition, aws.region
            ))
            .set_tags(Some(tags.into_iter().collect()))
            .send()
            .await
            .map_err(ctx(format!("apigateway:TagResource {id}")))?;
    }
    Ok(())
}

pub async fn delete(aws: &Aws, id: &str) -> Result<()> {
    aws.apigw
        .delete_api()
        .api_id(id)
        .send()
        .await
        .or_not_found()
        .map_err(ctx(format!("apigateway:DeleteApi {id}")))?;
    Ok(())
}
