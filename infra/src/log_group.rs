//! The CloudWatch log group `/aws/lambda/<fn>`, created by the toolkit (so the function's
//! role needs no `logs:CreateLogGroup`) with a retention setting and the stack's tags.

use crate::aws::{ctx, Aws, OrNotFound};
use crate::change::{Change, FieldChange, Kind, Setting};
use crate::desired::StackSpec;
use crate::names::{self, Names};
use crate::step::{Done, ResourceChange, Step, StepContext, StepFuture};
use anyhow::Result;
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone)]
pub struct State {
    /// Without the `:*` suffix.
    pub arn: Option<String>,
    pub retention_days: Option<i32>,
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct Spec {
    pub name: String,
    pub stack: String,
    pub retention_days: u32,
}

/// The log group a desired stack needs.
pub fn spec(names: &Names, s: &StackSpec) -> Spec {
    Spec {
        name: names.log_group.clone(),
        stack: names.stack.clone(),
        retention_days: s.config.function.log_retention_days,
    }
}

/// The planned change to the log group, with what apply does for it.
pub fn plan(names: &Names, spec: Option<Spec>, actual: Option<&State>) -> Option<ResourceChange> {
    let change = diff(spec.as_ref(), actual)?;
    let action = match (spec, actual) {
        (Some(spec), None) => Action::Create(spec),
        (Some(spec), Some(a)) => Action::Update(spec, a.clone()),
        (None, _) => Action::Delete(names.log_group.clone()),
    };
    Some(ResourceChange::new(
        Kind::LogGroup,
        &names.log_group,
        change,
        action,
    ))
}

/// What apply does to the log group.
#[derive(Debug)]
pub enum Action {
    Create(Spec),
    Update(Spec, State),
    Delete(String),
}

impl Step for Action {
    fn run<'a>(&'a self, cx: StepContext<'a>) -> StepFuture<'a> {
        Box::pin(async move {
            match self {
                Action::Create(spec) => create(cx.aws, spec, cx.created_at).await?,
                Action::Update(spec, a) => update(cx.aws, spec, a, cx.created_at).await?,
                Action::Delete(name) => delete(cx.aws, name).await?,
            }
            Done::nothing()
        })
    }
}

pub async fn read(aws: &Aws, names: &Names) -> Result<Option<State>> {
    let out = aws
        .logs
        .describe_log_groups()
        .log_group_name_prefix(&names.log_group)
        .send()
        .await
        .map_err(ctx(format!("logs:DescribeLogGroups {}", names.log_group)))?;
    let Some(g) = out
        .log_groups()
        .iter()
        .find(|g| g.log_group_name() == Some(names.log_group.as_str()))
    else {
        return Ok(None);
    };
    // Tagging APIs take the ARN without the trailing `:*` that DescribeLogGroups shows.
    let arn = g
        .log_group_arn()
        .map(str::to_string)
        .or_else(|| g.arn().map(|a| a.trim_end_matches(":*").to_string()));
    let tags = match &arn {
        None => BTreeMap::new(),
        Some(arn) => {
            let Some(t) = aws
                .logs
                .list_tags_for_resource()
                .resource_arn(arn)
                .send()
                .await
                .or_not_found()
                .map_err(ctx(format!("logs:ListTagsForResource {}", names.log_group)))?
            else {
                return Ok(None);
            };
            t.tags()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default()
        }
    };
    Ok(Some(State {
        arn,
        retention_days: g.retention_in_days(),
        tags,
    }))
}

pub fn diff(desired: Option<&Spec>, actual: Option<&State>) -> Option<Change> {
    match (desired, actual) {
        (None, None) => None,
        (None, Some(_)) => Some(Change::Delete),
        (Some(d), None) => Some(Change::Create {
            settings: vec![Setting::new("retention_days", d.retention_days)],
        }),
        (Some(d), Some(a)) => {
            let mut fields = Vec::new();
            if a.retention_days != Some(d.retention_days as i32) {
                fields.push(FieldChange::new(
                    "retention_days",
                    a.retention_days
                        .map(|r| r.to_string())
                        .unwrap_or_else(|| "never expire".into()),
                    d.retention_days.to_string(),
                ));
            }
            let missing = names::missing_tags(&d.stack, &a.tags);
            if !missing.is_empty() {
                fields.push(FieldChange::new("tags", "", missing.join(",")));
            }
            (!fields.is_empty()).then_some(Change::Update { fields })
        }
    }
}

pub async fn create(aws: &Aws, spec: &Spec, created_at: &str) -> Result<()> {
    let tags: HashMap<String, String> = names::tags_at_creation(&spec.stack, created_at)
        .into_iter()
        .collect();
    match aws
        .logs
        .create_log_group()
        .log_group_name(&spec.name)
        .set_tags(Some(tags))
        .send()
        .await
    {
        Ok(_) => {}
        // Lambda itself may have created it (an invocation before the toolkit did): adopt it.
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_already_exists_exception()) => {}
        Err(e) => return Err(ctx(format!("logs:CreateLogGroup {}", &spec.name))(e)),
    }
    put_retention(aws, spec).await
}

async fn put_retention(aws: &Aws, spec: &Spec) -> Result<()> {
    aws.logs
        .put_retention_policy()
        .log_group_name(&spec.name)
        .retention_in_days(spec.retention_days as i32)
        .send()
        .await
        .map_err(ctx(format!("logs:PutRetentionPolicy {}", &spec.name)))?;
    Ok(())
}

pub async fn update(aws: &Aws, spec: &Spec, actual: &State, created_at: &str) -> Result<()> {
    if actual.retention_days != Some(spec.retention_days as i32) {
        put_retention(aws, spec).await?;
    }
    if !names::missing_tags(&spec.stack, &actual.tags).is_empty() {
        let tags = names::tags_to_restore(&spec.stack, created_at, &actual.tags);
        let arn = actual.arn.clone().unwrap_or_else(|| {
            names::Names::new(&spec.stack)
                .log_group_arn(&aws.partition, &aws.region, &aws.account_id)
                .trim_end_matches(":*")
                .to_string()
        });
        aws.logs
            .tag_resource()
            .resource_arn(arn)
            .set_tags(Some(tags.into_iter().collect()))
            .send()
            .await
            .map_err(ctx(format!("logs:TagResource {}", &spec.name)))?;
    }
    Ok(())
}

pub async fn delete(aws: &Aws, name: &str) -> Result<()> {
    aws.logs
        .delete_log_group()
        .log_group_name(name)
        .send()
        .await
        .or_not_found()
        .map_err(ctx(format!("logs:DeleteLogGroup {name}")))?;
    Ok(())
}
