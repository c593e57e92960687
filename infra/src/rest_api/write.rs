//! Creating, reconciling and deleting the REST API: read first, then only the calls that
//! close the differences; a new deployment whenever the stage does not serve the wanted
//! configuration.

use super::{good_resource, Spec, State, METHOD, PROXY_PART, STAGE};
use crate::aws::{ctx, Aws, OrNotFound};
use crate::names;
use anyhow::{Context, Result};
use aws_sdk_apigateway::types::{
    ApiKeySourceType, EndpointConfiguration, EndpointType, IntegrationType, Op, PatchOperation,
    ResponseTransferMode,
};

fn patch(op: Op, path: &str, value: Option<&str>) -> PatchOperation {
    PatchOperation::builder()
        .op(op)
        .path(path)
        .set_value(value.map(str::to_string))
        .build()
}

/// Creates the API, then everything in it. Returns its id.
pub async fn create(aws: &Aws, spec: &Spec, created_at: &str) -> Result<String> {
    let out = aws
        .apigw_rest
        .create_rest_api()
        .name(&spec.name)
        .description(format!(
            "Claude proxy for the claude-lambda stack {} (streaming, API keys)",
            spec.stack
        ))
        .endpoint_configuration(
            EndpointConfiguration::builder()
                .types(EndpointType::Regional)
                .build(),
        )
        .api_key_source(ApiKeySourceType::Header)
        .set_tags(Some(
            names::tags_at_creation(&spec.stack, created_at)
                .into_iter()
                .collect(),
        ))
        .send()
        .await
        .map_err(ctx(format!("apigateway:CreateRestApi {}", spec.name)))?;
    let id = out
        .id()
        .context("CreateRestApi returned no id")?
        .to_string();
    let resources = super::read_resources(aws, &id).await?;
    let state = State {
        id: id.clone(),
        name: spec.name.clone(),
        tags: names::tags_at_creation(&spec.stack, created_at),
        endpoint_types: vec!["REGIONAL".into()],
        api_key_source: Some("HEADER".into()),
        resources,
        stages: Vec::new(),
    };
    reconcile(aws, spec, &state, created_at).await?;
    Ok(id)
}

/// Brings resources, methods, integrations, the stage's deployment and the tags of an
/// existing API to the spec.
pub async fn reconcile(aws: &Aws, spec: &Spec, a: &State, created_at: &str) -> Result<()> {
    let id = &a.id;
    let root = a
        .root()
        .with_context(|| format!("the REST API {id} has no root resource"))?
        .clone();
    // Resources: the root and `{proxy+}` under it; anything else goes (children with it).
    let proxy_path = format!("/{PROXY_PART}");
    for r in &a.resources {
        if r.path != "/" && r.path != proxy_path && r.parent_id.as_deref() == Some(&root.id) {
            aws.apigw_rest
                .delete_resource()
                .rest_api_id(id)
                .resource_id(&r.id)
                .send()
                .await
                .or_not_found()
                .map_err(ctx(format!("apigateway:DeleteResource {id} {}", r.path)))?;
        }
    }
    let proxy = match a.proxy() {
        Some(p) => p.clone(),
        None => {
            let out = aws
                .apigw_rest
                .create_resource()
                .rest_api_id(id)
                .parent_id(&root.id)
                .path_part(PROXY_PART)
                .send()
                .await
                .map_err(ctx(format!("apigateway:CreateResource {id} {proxy_path}")))?;
            super::Resource {
                id: out
                    .id()
                    .context("CreateResource returned no id")?
                    .to_string(),
                path: proxy_path.clone(),
                parent_id: Some(root.id.clone()),
                methods: Vec::new(),
            }
        }
    };
    // Methods and integrations on both.
    for r in [&root, &proxy] {
        if good_resource(spec, Some(r)) {
            continue;
        }
        for m in r.methods.iter().filter(|m| m.http_method != METHOD) {
            aws.apigw_rest
                .delete_method()
                .rest_api_id(id)
                .resource_id(&r.id)
                .http_method(&m.http_method)
                .send()
                .await
                .or_not_found()
                .map_err(ctx(format!(
                    "apigateway:DeleteMethod {id} {} {}",
                    m.http_method, r.path
                )))?;
        }
        let method = r.methods.iter().find(|m| m.http_method == METHOD);
        let method_ok =
            method.is_some_and(|m| m.api_key_required && m.authorization_type == "NONE");
        if !method_ok {
            if method.is_some() {
                aws.apigw_rest
                    .delete_method()
                    .rest_api_id(id)
                    .resource_id(&r.id)
                    .http_method(METHOD)
                    .send()
                    .await
                    .or_not_found()
                    .map_err(ctx(format!(
                        "apigateway:DeleteMethod {id} {METHOD} {}",
                        r.path
                    )))?;
            }
            aws.apigw_rest
                .put_method()
                .rest_api_id(id)
                .resource_id(&r.id)
                .http_method(METHOD)
                .authorization_type("NONE")
                .api_key_required(true)
                .send()
                .await
                .map_err(ctx(format!(
                    "apigateway:PutMethod {id} {METHOD} {}",
                    r.path
                )))?;
        }
        // PutIntegration replaces whatever integration the method had.
        aws.apigw_rest
            .put_integration()
            .rest_api_id(id)
            .resource_id(&r.id)
            .http_method(METHOD)
            .r#type(IntegrationType::AwsProxy)
            .integration_http_method("POST")
            .uri(spec.uri())
            .timeout_in_millis(spec.timeout_ms)
            .response_transfer_mode(ResponseTransferMode::Stream)
            .send()
            .await
            .map_err(ctx(format!(
                "apigateway:PutIntegration {id} {METHOD} {}",
                r.path
            )))?;
    }
    // The API's own settings.
    let mut ops = Vec::new();
    if a.api_key_source.as_deref().is_some_and(|s| s != "HEADER") {
        ops.push(patch(Op::Replace, "/apiKeySource", Some("HEADER")));
    }
    for t in a.endpoint_types.iter().filter(|t| *t != "REGIONAL") {
        ops.push(patch(
            Op::Replace,
            &format!("/endpointConfiguration/types/{t}"),
            Some("REGIONAL"),
        ));
    }
    if !ops.is_empty() {
        aws.apigw_rest
            .update_rest_api()
            .rest_api_id(id)
            .set_patch_operations(Some(ops))
            .send()
            .await
            .map_err(ctx(format!("apigateway:UpdateRestApi {id}")))?;
    }
    // Stages: only ours; it serves a deployment of exactly this configuration.
    for s in a.stages.iter().filter(|s| s.name != STAGE) {
        aws.apigw_rest
            .delete_stage()
            .rest_api_id(id)
            .stage_name(&s.name)
            .send()
            .await
            .or_not_found()
            .map_err(ctx(format!("apigateway:DeleteStage {id} {}", s.name)))?;
    }
    let fingerprint = spec.fingerprint();
    let stage = a.stages.iter().find(|s| s.name == STAGE);
    if stage.and_then(|s| s.deployment_description.as_deref()) != Some(fingerprint.as_str()) {
        let deployment = aws
            .apigw_rest
            .create_deployment()
            .rest_api_id(id)
            .description(&fingerprint)
            .send()
            .await
            .map_err(ctx(format!("apigateway:CreateDeployment {id}")))?;
        let deployment_id = deployment
            .id()
            .context("CreateDeployment returned no id")?
            .to_string();
        match stage {
            None => {
                aws.apigw_rest
                    .create_stage()
                    .rest_api_id(id)
                    .stage_name(STAGE)
                    .deployment_id(&deployment_id)
                    .description("claude-proxy: the stack's stage")
                    .set_tags(Some(
                        names::tags_at_creation(&spec.stack, created_at)
                            .into_iter()
                            .collect(),
                    ))
                    .send()
                    .await
                    .map_err(ctx(format!("apigateway:CreateStage {id} {STAGE}")))?;
            }
            Some(_) => {
                aws.apigw_rest
                    .update_stage()
                    .rest_api_id(id)
                    .stage_name(STAGE)
                    .patch_operations(patch(Op::Replace, "/deploymentId", Some(&deployment_id)))
                    .send()
                    .await
                    .map_err(ctx(format!("apigateway:UpdateStage {id} {STAGE}")))?;
            }
        }
    }
    // Tags on the API and on the stage.
    let arn = format!(
        "arn:{}:apigateway:{}::/restapis/{id}",
        aws.partition, aws.region
    );
    let mut to_tag = Vec::new();
    if !names::missing_tags(&spec.stack, &a.tags).is_empty() {
        to_tag.push((arn.clone(), &a.tags));
    }
    let stage_arn = format!("{arn}/stages/{STAGE}");
    if let Some(s) = stage {
        if !names::missing_tags(&spec.stack, &s.tags).is_empty() {
            to_tag.push((stage_arn, &s.tags));
        }
    }
    for (resource, have) in to_tag {
        let tags = names::tags_to_restore(&spec.stack, created_at, &have);
        aws.apigw_rest
            .tag_resource()
            .resource_arn(&resource)
            .set_tags(Some(tags.into_iter().collect()))
            .send()
            .await
            .map_err(ctx(format!("apigateway:TagResource {resource}")))?;
    }
    Ok(())
}

pub async fn delete(aws: &Aws, id: &str) -> Result<()> {
    aws.apigw_rest
        .delete_rest_api()
        .rest_api_id(id)
        .send()
        .await
        .or_not_found()
        .map_err(ctx(format!("apigateway:DeleteRestApi {id}")))?;
    Ok(())
}
