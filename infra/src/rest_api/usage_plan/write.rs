//! Writing the usage plan and the default caller's key: read first (the state the plan
//! was made from), then only the calls that close the differences.

use super::{key_member, KeyState, PlanState, Spec, State};
use crate::aws::{ctx, Aws, OrNotFound};
use crate::config::QuotaPeriod;
use crate::credentials::GatewayApiKey;
use crate::names;
use crate::rest_api::STAGE;
use anyhow::{Context, Result};
use aws_sdk_apigateway::types::{
    ApiStage, Op, PatchOperation, QuotaPeriodType, QuotaSettings, ThrottleSettings,
};

fn patch(op: Op, path: &str, value: Option<String>) -> PatchOperation {
    PatchOperation::builder()
        .op(op)
        .path(path)
        .set_value(value)
        .build()
}

fn period(p: QuotaPeriod) -> QuotaPeriodType {
    match p {
        QuotaPeriod::Day => QuotaPeriodType::Day,
        QuotaPeriod::Week => QuotaPeriodType::Week,
        QuotaPeriod::Month => QuotaPeriodType::Month,
    }
}

/// Creates or fixes the plan and the default key; returns the key's value when it made one.
pub(super) async fn converge(
    aws: &Aws,
    spec: &Spec,
    state: &State,
    created_at: &str,
) -> Result<Option<GatewayApiKey>> {
    let tags: std::collections::HashMap<String, String> =
        names::tags_at_creation(&spec.stack, created_at)
            .into_iter()
            .collect();
    let (plan, key) = key_member(spec, state);
    // The plan.
    let plan_id = match plan {
        None => {
            create_plan(
                aws,
                &[spec.api_stage()],
                (spec.rate_limit, spec.burst_limit, spec.quota),
                &spec.name,
                format!(
                    "claude-proxy: throttle and quota per caller key of the stack {}",
                    spec.stack
                ),
                tags.clone(),
            )
            .await?
        }
        Some(p) => {
            update_plan(aws, spec, p, &tags).await?;
            p.id.clone()
        }
    };
    // Extra plans and keys go (the plans first: a key in a plan is still usable).
    for p in state
        .plans
        .iter()
        .filter(|p| p.id != plan_id && !spec.keeps_caller_plan(p))
    {
        delete_plan(aws, p).await?;
    }
    // The callers' own plans: their numbers and stage in step.
    for p in state.plans.iter().filter(|p| spec.keeps_caller_plan(p)) {
        if let Some(own) = spec.for_caller(p.caller().unwrap_or_default()) {
            update_plan(aws, &own, p, &tags).await?;
        }
    }
    let in_plan = |k: &KeyState| plan.is_some_and(|p| p.key_ids.contains(&k.id));
    let keep = key.filter(|k| in_plan(k) && !spec.rotate_key);
    for k in state
        .keys
        .iter()
        .filter(|k| Some(&k.id) != keep.map(|k| &k.id) && !spec.is_caller_key(k))
    {
        delete_key(aws, &k.id).await?;
    }
    // The named callers' own keys stay, members of the shared plan or of their own.
    for k in state.keys.iter().filter(|k| spec.is_caller_key(k)) {
        let member = plan.is_some_and(|p| p.id == plan_id && p.key_ids.contains(&k.id))
            || spec.key_placed(state, &k.id);
        if member {
            continue;
        }
        let own = k
            .tags
            .get(crate::names::TAG_CALLER)
            .and_then(|c| state.caller_plan(c))
            .filter(|p| spec.keeps_caller_plan(p));
        match own {
            Some(p) => join_plan(aws, &p.id, &p.name, &k.id, &k.name).await?,
            None => join_plan(aws, &plan_id, &spec.name, &k.id, &k.name).await?,
        }
    }
    // The key.
    match keep {
        Some(k) => {
            if !k.enabled {
                aws.apigw_rest
                    .update_api_key()
                    .api_key(&k.id)
                    .patch_operations(patch(Op::Replace, "/enabled", Some("true".into())))
                    .send()
                    .await
                    .map_err(ctx(format!("apigateway:UpdateApiKey {} {}", k.name, k.id)))?;
            }
            Ok(None)
        }
        None => {
            let value = GatewayApiKey::generate();
            let out = aws
                .apigw_rest
                .create_api_key()
                .name(&spec.key_name)
                .description(format!(
                    "claude-proxy: the default caller of the stack {}",
                    spec.stack
                ))
                .enabled(true)
                .value(value.expose())
                .set_tags(Some(tags))
                .send()
                .await
                .map_err(ctx(format!("apigateway:CreateApiKey {}", spec.key_name)))?;
            let key_id = out.id().context("CreateApiKey returned no id")?;
            let joined = aws
                .apigw_rest
                .create_usage_plan_key()
                .usage_plan_id(&plan_id)
                .key_id(key_id)
                .key_type("API_KEY")
                .send()
                .await
                .map_err(ctx(format!(
                    "apigateway:CreateUsagePlanKey {} {}",
                    spec.name, spec.key_name
                )));
            if let Err(e) = joined {
                // The value will not be shown: the key must not stay (it may have joined
                // the plan even so). Without it the next deploy makes a new one.
                return Err(match delete_key(aws, key_id).await {
                    Ok(()) => e,
                    Err(_) => e.context(format!(
                        "the API key {key_id} was made but cannot be shown: run the deploy again with --rotate-token for a new one"
                    )),
                });
            }
            Ok(Some(value))
        }
    }
}

/// Creates a usage plan on the spec's stage with its numbers; its id.
pub(crate) async fn create_plan(
    aws: &Aws,
    stages: &[String],
    (rate_limit, burst_limit, quota): (f64, i32, Option<(i32, QuotaPeriod)>),
    name: &str,
    description: String,
    tags: std::collections::HashMap<String, String>,
) -> Result<String> {
    let mut create = aws
        .apigw_rest
        .create_usage_plan()
        .name(name)
        .description(description)
        .set_api_stages(Some(
            stages
                .iter()
                .map(|s| {
                    let (api, stage) = s.split_once(':').unwrap_or((s, STAGE));
                    ApiStage::builder().api_id(api).stage(stage).build()
                })
                .collect(),
        ))
        .throttle(
            ThrottleSettings::builder()
                .rate_limit(rate_limit)
                .burst_limit(burst_limit)
                .build(),
        )
        .set_tags(Some(tags));
    if let Some((limit, p)) = quota {
        create = create.quota(
            QuotaSettings::builder()
                .limit(limit)
                .period(period(p))
                .build(),
        );
    }
    Ok(create
        .send()
        .await
        .map_err(ctx(format!("apigateway:CreateUsagePlan {name}")))?
        .id()
        .with_context(|| format!("CreateUsagePlan {name} returned no id"))?
        .to_string())
}

async fn update_plan(
    aws: &Aws,
    spec: &Spec,
    p: &PlanState,
    tags: &std::collections::HashMap<String, String>,
) -> Result<()> {
    let mut ops = Vec::new();
    let want_stage = spec.api_stage();
    for s in p.api_stages.iter().filter(|s| **s != want_stage) {
        ops.push(patch(Op::Remove, "/apiStages", Some(s.clone())));
    }
    if !p.api_stages.contains(&want_stage) {
        ops.push(patch(Op::Add, "/apiStages", Some(want_stage)));
    }
    if p.rate_limit != Some(spec.rate_limit) {
        ops.push(patch(
            Op::Replace,
            "/throttle/rateLimit",
            Some(spec.rate_limit.to_string()),
        ));
    }
    if p.burst_limit != Some(spec.burst_limit) {
        ops.push(patch(
            Op::Replace,
            "/throttle/burstLimit",
            Some(spec.burst_limit.to_string()),
        ));
    }
    let want_quota = spec.quota.map(|(n, p)| (n, p.as_aws().to_string()));
    if p.quota != want_quota {
        match spec.quota {
            Some((limit, per)) => {
                ops.push(patch(Op::Replace, "/quota/limit", Some(limit.to_string())));
                ops.push(patch(
                    Op::Replace,
                    "/quota/period",
                    Some(per.as_aws().into()),
                ));
            }
            None => ops.push(patch(Op::Remove, "/quota", None)),
        }
    }
    if !ops.is_empty() {
        aws.apigw_rest
            .update_usage_plan()
            .usage_plan_id(&p.id)
            .set_patch_operations(Some(ops))
            .send()
            .await
            .map_err(ctx(format!(
                "apigateway:UpdateUsagePlan {} {}",
                p.name, p.id
            )))?;
    }
    if !names::missing_tags(&spec.stack, &p.tags).is_empty() {
        let mut tags = tags.clone();
        if p.tags.contains_key(names::TAG_CREATED_AT) {
            tags.remove(names::TAG_CREATED_AT);
        }
        let arn = format!(
            "arn:{}:apigateway:{}::/usageplans/{}",
            aws.partition, aws.region, p.id
        );
        aws.apigw_rest
            .tag_resource()
            .resource_arn(&arn)
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(ctx(format!("apigateway:TagResource {arn}")))?;
    }
    Ok(())
}

/// Makes the key `key_id` (named `key_name`) a member of the plan `plan_id` (named
/// `plan_name`); already one is no error.
pub(crate) async fn join_plan(
    aws: &Aws,
    plan_id: &str,
    plan_name: &str,
    key_id: &str,
    key_name: &str,
) -> Result<()> {
    let out = aws
        .apigw_rest
        .create_usage_plan_key()
        .usage_plan_id(plan_id)
        .key_id(key_id)
        .key_type("API_KEY")
        .send()
        .await;
    match out {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_conflict_exception()) =>
        {
            Ok(())
        }
        Err(e) => Err(e).map_err(ctx(format!(
            "apigateway:CreateUsagePlanKey {plan_name} {key_name} ({key_id})"
        ))),
    }
}

/// Removes the plan's stages (API Gateway keeps a REST API in use while a plan names its
/// stage), then the plan.
pub(crate) async fn delete_plan(aws: &Aws, p: &PlanState) -> Result<()> {
    if !p.api_stages.is_empty() {
        let ops = p
            .api_stages
            .iter()
            .map(|s| patch(Op::Remove, "/apiStages", Some(s.clone())))
            .collect();
        aws.apigw_rest
            .update_usage_plan()
            .usage_plan_id(&p.id)
            .set_patch_operations(Some(ops))
            .send()
            .await
            .or_not_found()
            .map_err(ctx(format!(
                "apigateway:UpdateUsagePlan {} {}",
                p.name, p.id
            )))?;
    }
    aws.apigw_rest
        .delete_usage_plan()
        .usage_plan_id(&p.id)
        .send()
        .await
        .or_not_found()
        .map_err(ctx(format!(
            "apigateway:DeleteUsagePlan {} {}",
            p.name, p.id
        )))?;
    Ok(())
}

pub(crate) async fn delete_key(aws: &Aws, id: &str) -> Result<()> {
    aws.apigw_rest
        .delete_api_key()
        .api_key(id)
        .send()
        .await
        .or_not_found()
        .map_err(ctx(format!("apigateway:DeleteApiKey {id}")))?;
    Ok(())
}

pub(super) async fn delete_all(aws: &Aws, state: &State) -> Result<()> {
    for p in &state.plans {
        delete_plan(aws, p).await?;
    }
    for k in &state.keys {
        delete_key(aws, &k.id).await?;
    }
    Ok(())
}
