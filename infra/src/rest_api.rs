//! The API Gateway REST API `claude-proxy-<stack>` (`[api] kind = "rest"`): regional, API
//! keys read from the `x-api-key` header; the root and `{proxy+}` resources, each with an
//! `ANY` method that requires an API key and an `AWS_PROXY` integration in
//! `responseTransferMode: STREAM` (InvokeWithResponseStream through the
//! `2021-11-15/.../response-streaming-invocations` URI, the function's timeout up to 15
//! minutes); a deployment and the stage [`STAGE`]. The usage plan and its keys are in
//! [`usage_plan`], the invoke permission in `permission.rs`.
//!
//! Which deployment the stage serves is checked through the deployment's description, which
//! carries the configuration it was made from ([`Spec::fingerprint`]): a deploy interrupted
//! between changing a method and deploying it deploys on the next run.
//!
//! API names are not unique, so the API is found by name and by the stack's tags; extra
//! copies (e.g. from a deploy interrupted between CreateRestApi and its read-back) are
//! deleted.

pub mod caller_keys;
pub mod usage_plan;
mod write;

use crate::aws::{ctx, Aws};
use crate::change::{Change, FieldChange, Kind, Late, Output, Produced, Refs, Setting};
use crate::desired::StackSpec;
use crate::names;
use crate::step::{keep_first, Done, KeepFirst, ResourceChange, Step, StepContext, StepFuture};
use anyhow::{Context, Result};
use std::collections::BTreeMap;

/// The stage: the invoke URL is `https://<id>.execute-api.<region>.<dns suffix>/live`.
pub const STAGE: &str = "live";
/// The greedy resource under the root that carries every route of the handler.
pub const PROXY_PART: &str = "{proxy+}";
pub const METHOD: &str = "ANY";
/// A streaming integration may run up to 15 minutes.
pub const MAX_TIMEOUT_MS: i32 = 900_000;
/// The integration's `responseTransferMode`.
pub const TRANSFER_MODE: &str = "STREAM";

/// A method's integration as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Integration {
    pub integration_type: String,
    pub http_method: String,
    pub uri: String,
    pub timeout_ms: i32,
    /// `None` when the service does not echo it (moto 5.2 drops it; see [`good_method`]).
    pub transfer_mode: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Method {
    pub http_method: String,
    pub authorization_type: String,
    pub api_key_required: bool,
    pub integration: Option<Integration>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub id: String,
    pub path: String,
    pub parent_id: Option<String>,
    pub methods: Vec<Method>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub name: String,
    pub deployment_id: Option<String>,
    /// The description of the deployment the stage serves.
    pub deployment_description: Option<String>,
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct State {
    pub id: String,
    pub name: String,
    pub tags: BTreeMap<String, String>,
    pub endpoint_types: Vec<String>,
    pub api_key_source: Option<String>,
    pub resources: Vec<Resource>,
    pub stages: Vec<Stage>,
}

impl State {
    pub fn root(&self) -> Option<&Resource> {
        self.resources.iter().find(|r| r.path == "/")
    }
    pub fn proxy(&self) -> Option<&Resource> {
        self.resources
            .iter()
            .find(|r| r.path == format!("/{PROXY_PART}"))
    }
}

#[derive(Debug, Clone)]
pub struct Spec {
    pub name: String,
    pub stack: String,
    pub partition: String,
    pub region: String,
    /// The integration's target (known once the function exists).
    pub function_arn: Late,
    pub timeout_ms: i32,
}

impl Spec {
    fn resolve(&self, produced: &Produced) -> Result<Spec> {
        Ok(Spec {
            function_arn: Late::Known(self.function_arn.resolve(produced)?),
            ..self.clone()
        })
    }

    /// The integration URI: Lambda's response-streaming invocation of the function.
    pub fn uri(&self) -> String {
        integration_uri(&self.partition, &self.region, self.function_arn.planned())
    }

    /// What a deployment of this configuration says in its description.
    pub fn fingerprint(&self) -> String {
        format!(
            "claude-proxy: {METHOD} / and /{PROXY_PART}, apiKeyRequired, AWS_PROXY {TRANSFER_MODE} {} ms -> {}",
            self.timeout_ms,
            self.function_arn.planned()
        )
    }
}

/// `arn:<partition>:apigateway:<region>:lambda:path/2021-11-15/functions/<fn>/response-streaming-invocations`.
pub fn integration_uri(partition: &str, region: &str, function_arn: &str) -> String {
    format!(
        "arn:{partition}:apigateway:{region}:lambda:path/2021-11-15/functions/{function_arn}/response-streaming-invocations"
    )
}

/// The stage's invoke URL.
pub fn stage_url(partition: &str, region: &str, api_id: &str) -> String {
    let suffix = match partition {
        "aws-cn" => "amazonaws.com.cn",
        _ => "amazonaws.com",
    };
    format!("https://{api_id}.execute-api.{region}.{suffix}/{STAGE}")
}

/// The `SourceArn` of the REST API's invoke permission: any method and path of its stage.
pub fn source_arn(partition: &str, region: &str, account_id: &str, api_id: &str) -> String {
    format!("arn:{partition}:execute-api:{region}:{account_id}:{api_id}/{STAGE}/*/*")
}

/// The REST API a desired stack needs, else `None`.
pub fn spec(names: &names::Names, s: &StackSpec, refs: &Refs) -> Option<Spec> {
    (s.config.api_kind() == crate::config::ApiKind::Rest).then(|| Spec {
        name: names.rest_api.clone(),
        stack: names.stack.clone(),
        partition: refs.partition.clone(),
        region: refs.region.clone(),
        function_arn: refs.alias_arn.clone(),
        timeout_ms: (s.config.function.timeout_seconds as i32 * 1000).min(MAX_TIMEOUT_MS),
    })
}

/// The planned changes to the stack's REST APIs (the first is kept, others deleted).
pub fn plan(names: &names::Names, spec: Option<Spec>, actual: &[State]) -> Vec<ResourceChange> {
    let changes = diff(spec.as_ref(), actual);
    keep_first(spec.as_ref(), actual, |a| a.id.as_str(), changes)
        .into_iter()
        .map(|(id, change, action)| {
            ResourceChange::new(Kind::RestApi, &names.rest_api, change, action).with_id(id)
        })
        .collect()
}

/// What apply does to a REST API.
pub type Action = KeepFirst<Spec, State>;

fn outputs_for(aws: &Aws, id: &str) -> Vec<(Output, Option<String>)> {
    vec![
        (Output::RestApiId, Some(id.to_string())),
        (
            Output::RestApiUrl,
            Some(stage_url(&aws.partition, &aws.region, id)),
        ),
        (
            Output::RestApiSourceArn,
            Some(source_arn(&aws.partition, &aws.region, &aws.account_id, id)),
        ),
    ]
}

impl Step for Action {
    fn run<'a>(&'a self, cx: StepContext<'a>) -> StepFuture<'a> {
        Box::pin(async move {
            match self {
                Action::Create(spec) => {
                    let spec = spec.resolve(cx.produced)?;
                    let id = write::create(cx.aws, &spec, cx.created_at).await?;
                    Ok(Done {
                        outputs: outputs_for(cx.aws, &id),
                        ..Done::default()
                    })
                }
                Action::Update(spec, a) => {
                    let spec = spec.resolve(cx.produced)?;
                    write::reconcile(cx.aws, &spec, a, cx.created_at).await?;
                    Done::nothing()
                }
                Action::Delete { id, current } => {
                    write::delete(cx.aws, id).await?;
                    let outputs = if *current {
                        vec![(Output::RestApiId, None), (Output::RestApiUrl, None)]
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

fn tag_map(tags: Option<&std::collections::HashMap<String, String>>) -> BTreeMap<String, String> {
    tags.map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// Every REST API in the account and Region (all pages of GetRestApis).
pub async fn list_apis(aws: &Aws) -> Result<Vec<aws_sdk_apigateway::types::RestApi>> {
    let mut apis = Vec::new();
    let mut pages = aws.apigw_rest.get_rest_apis().into_paginator().send();
    while let Some(page) = pages.next().await {
        let out = page.map_err(ctx("apigateway:GetRestApis"))?;
        apis.extend(out.items().iter().cloned());
    }
    Ok(apis)
}

/// Every REST API with the stack's API name or the stack's tags (the tagged one first).
pub async fn read(aws: &Aws, names: &names::Names) -> Result<Vec<State>> {
    let mut found = Vec::new();
    for api in list_apis(aws).await? {
        let tags = tag_map(api.tags());
        let by_name = api.name() == Some(names.rest_api.as_str());
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
            .id()
            .context("GetRestApis returned an API without id")?
            .to_string();
        let endpoint_types = api
            .endpoint_configuration()
            .map(|e| e.types().iter().map(|t| t.as_str().to_string()).collect())
            .unwrap_or_default();
        let (resources, stages) =
            tokio::try_join!(read_resources(aws, &id), read_stages(aws, &id))?;
        found.push(State {
            id,
            name: api.name().unwrap_or_default().to_string(),
            tags,
            endpoint_types,
            api_key_source: api.api_key_source().map(|s| s.as_str().to_string()),
            resources,
            stages,
        });
    }
    found.sort_by_key(|a| (!names::is_ours(&a.tags, &names.stack), a.id.clone()));
    Ok(found)
}

async fn read_resources(aws: &Aws, id: &str) -> Result<Vec<Resource>> {
    let mut out = Vec::new();
    let mut pages = aws
        .apigw_rest
        .get_resources()
        .rest_api_id(id)
        .embed("methods")
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(ctx(format!("apigateway:GetResources {id}")))?;
        for r in page.items() {
            let mut methods: Vec<Method> = r
                .resource_methods()
                .map(|m| {
                    m.iter()
                        .map(|(verb, m)| Method {
                            http_method: m.http_method().unwrap_or(verb).to_string(),
                            authorization_type: m
                                .authorization_type()
                                .unwrap_or_default()
                                .to_string(),
                            api_key_required: m.api_key_required().unwrap_or(false),
                            integration: m.method_integration().map(|i| Integration {
                                integration_type: i
                                    .r#type()
                                    .map(|t| t.as_str().to_string())
                                    .unwrap_or_default(),
                                http_method: i.http_method().unwrap_or_default().to_string(),
                                uri: i.uri().unwrap_or_default().to_string(),
                                timeout_ms: i.timeout_in_millis(),
                                transfer_mode: i
                                    .response_transfer_mode()
                                    .map(|t| t.as_str().to_string()),
                            }),
                        })
                        .collect()
                })
                .unwrap_or_default();
            methods.sort_by(|a, b| a.http_method.cmp(&b.http_method));
            out.push(Resource {
                id: r.id().unwrap_or_default().to_string(),
                path: r.path().unwrap_or_default().to_string(),
                parent_id: r.parent_id().map(str::to_string),
                methods,
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

async fn read_stages(aws: &Aws, id: &str) -> Result<Vec<Stage>> {
    let stages = aws
        .apigw_rest
        .get_stages()
        .rest_api_id(id)
        .send()
        .await
        .map_err(ctx(format!("apigateway:GetStages {id}")))?;
    let mut out = Vec::new();
    for s in stages.item() {
        let deployment_id = s.deployment_id().map(str::to_string);
        let deployment_description = match &deployment_id {
            Some(d) => aws
                .apigw_rest
                .get_deployment()
                .rest_api_id(id)
                .deployment_id(d)
                .send()
                .await
                .map_err(ctx(format!("apigateway:GetDeployment {id} {d}")))?
                .description()
                .map(str::to_string),
            None => None,
        };
        out.push(Stage {
            name: s.stage_name().unwrap_or_default().to_string(),
            deployment_id,
            deployment_description,
            tags: tag_map(s.tags()),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// True when `m` is the method the spec wants. moto (5.2) does not echo
/// `responseTransferMode` (GetResources / GetIntegration omit it), so a missing value is
/// accepted; any value other than `STREAM` is a difference. The toolkit always sends it
/// (the stack test checks the recorded PutIntegration).
pub fn good_method(spec: &Spec, m: &Method) -> bool {
    m.http_method == METHOD
        && m.authorization_type == "NONE"
        && m.api_key_required
        && m.integration.as_ref().is_some_and(|i| {
            i.integration_type == "AWS_PROXY"
                && i.http_method == "POST"
                && i.uri == spec.uri()
                && i.timeout_ms == spec.timeout_ms
                && i.transfer_mode
                    .as_deref()
                    .is_none_or(|t| t == TRANSFER_MODE)
        })
}

fn method_text(m: &Method) -> String {
    let key = if m.api_key_required {
        "apiKeyRequired"
    } else {
        "no API key"
    };
    match &m.integration {
        Some(i) => format!(
            "{} {key} {} {} {} ms -> {}",
            m.http_method,
            i.integration_type,
            i.transfer_mode.as_deref().unwrap_or("-"),
            i.timeout_ms,
            i.uri
        ),
        None => format!("{} {key} (no integration)", m.http_method),
    }
}

fn want_method_text(spec: &Spec) -> String {
    format!(
        "{METHOD} apiKeyRequired AWS_PROXY {TRANSFER_MODE} {} ms -> {}",
        spec.timeout_ms,
        spec.uri()
    )
}

/// True when the resource holds exactly the wanted method.
fn good_resource(spec: &Spec, r: Option<&Resource>) -> bool {
    r.is_some_and(|r| r.methods.len() == 1 && good_method(spec, &r.methods[0]))
}

/// Field-level differences of an existing API.
fn fields(spec: &Spec, a: &State) -> Vec<FieldChange> {
    let mut f = Vec::new();
    let paths: Vec<&str> = a.resources.iter().map(|r| r.path.as_str()).collect();
    let want_paths = ["/".to_string(), format!("/{PROXY_PART}")];
    if paths != want_paths {
        f.push(FieldChange::new(
            "resources",
            paths.join(", "),
            want_paths.join(", "),
        ));
    }
    for (label, r) in [("methods /", a.root()), ("methods /{proxy+}", a.proxy())] {
        if !good_resource(spec, r) {
            let have = r
                .map(|r| {
                    r.methods
                        .iter()
                        .map(method_text)
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_default();
            f.push(FieldChange::new(label, have, want_method_text(spec)));
        }
    }
    let stage = a.stages.iter().find(|s| s.name == STAGE);
    let fingerprint = spec.fingerprint();
    let deployed = stage.and_then(|s| s.deployment_description.as_deref());
    if a.stages.len() != 1 || deployed != Some(fingerprint.as_str()) {
        f.push(FieldChange::new(
            "stages",
            a.stages
                .iter()
                .map(|s| {
                    format!(
                        "{} ({})",
                        s.name,
                        s.deployment_description
                            .as_deref()
                            .unwrap_or("no deployment")
                    )
                })
                .collect::<Vec<_>>()
                .join(", "),
            format!("{STAGE} (deployed: {fingerprint})"),
        ));
    }
    if a.api_key_source.as_deref().is_some_and(|s| s != "HEADER") {
        f.push(FieldChange::new(
            "api_key_source",
            a.api_key_source.clone().unwrap_or_default(),
            "HEADER",
        ));
    }
    if a.endpoint_types.iter().any(|t| t != "REGIONAL") {
        f.push(FieldChange::new(
            "endpoint",
            a.endpoint_types.join(","),
            "REGIONAL",
        ));
    }
    let mut missing = names::missing_tags(&spec.stack, &a.tags);
    if let Some(s) = stage {
        if !names::missing_tags(&spec.stack, &s.tags).is_empty() {
            missing.push(format!("stage {STAGE}"));
        }
    }
    if !missing.is_empty() {
        f.push(FieldChange::new("tags", "", missing.join(",")));
    }
    f
}

/// Changes by API: the first actual API is kept (updated), the others are deleted.
pub fn diff(desired: Option<&Spec>, actual: &[State]) -> Vec<(Option<String>, Change)> {
    let mut out = Vec::new();
    let mut rest = actual.iter();
    if let Some(d) = desired {
        match rest.next() {
            None => out.push((
                None,
                Change::Create {
                    settings: vec![
                        Setting::new("endpoint", "REGIONAL, API keys from the x-api-key header"),
                        Setting::new(
                            "resources",
                            format!("/ and /{PROXY_PART}, {METHOD} with apiKeyRequired"),
                        ),
                        Setting::new(
                            "integration",
                            format!(
                                "AWS_PROXY, responseTransferMode {TRANSFER_MODE}, timeout {} s, -> {}",
                                d.timeout_ms / 1000,
                                d.uri()
                            ),
                        ),
                        Setting::new("stage", STAGE),
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

#[cfg(test)]
mod tests;
