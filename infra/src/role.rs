//! The function's IAM role `claude-proxy-<stack>-role`: trusted by `lambda.amazonaws.com`
//! only, with exactly one inline policy `claude-proxy-<stack>-policy` allowing
//! `secretsmanager:GetSecretValue` on the exact secret ARN and
//! `logs:CreateLogStream` + `logs:PutLogEvents` on the function's own log group.
//! No managed policies, no `*` action, nothing broader.

use crate::aws::{ctx, Aws, OrNotFound};
use crate::change::{Change, FieldChange, Kind, Late, Output, Refs, Setting};
use crate::config::ProviderKind;
use crate::desired::StackSpec;
use crate::names::{self, Names};
pub use crate::role_bedrock::{add_bedrock_statements, bedrock_target, BedrockTarget};
use crate::step::{Done, ResourceChange, Step, StepContext, StepFuture};
use anyhow::{Context, Result};
use aws_sdk_iam::types::Tag;
use serde_json::{json, Value};
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub struct State {
    pub arn: String,
    pub trust_policy: Value,
    pub tags: BTreeMap<String, String>,
    /// Inline policies by name, documents decoded.
    pub inline_policies: BTreeMap<String, Value>,
    /// ARNs of attached managed policies (the toolkit attaches none).
    pub attached_policies: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Spec {
    pub name: String,
    pub stack: String,
    /// The role's ARN as the plan expects it (IAM's answer to `CreateRole` wins).
    pub arn: String,
    pub policy_name: String,
    /// The secret the policy grants: its ARN is known only once the secret exists.
    pub secret_arn: Late,
    pub log_group_arn: String,
    /// Statements after the secret's and the log group's (Bedrock's).
    pub more_statements: Vec<Value>,
    /// The inline policy document as planned (see [`Spec::policy_for`]).
    pub policy: Value,
}

impl Spec {
    /// The inline policy naming this secret ARN.
    pub fn policy_for(&self, secret_arn: &str) -> Value {
        let mut policy = policy_document(secret_arn, &self.log_group_arn);
        if let Some(Value::Array(list)) = policy.get_mut("Statement") {
            list.extend(self.more_statements.iter().cloned());
        }
        policy
    }
}

/// The role a desired stack needs: its policy names the stack's secret and log group, and
/// with the Bedrock provider exactly the configured models (`bedrock_profiles`: what
/// `GetInferenceProfile` said about them).
pub fn spec(
    names: &Names,
    s: &StackSpec,
    refs: &Refs,
    bedrock_profiles: &crate::bedrock::ProfileLookups,
) -> Spec {
    let (partition, account, region) = (
        refs.partition.as_str(),
        refs.account_id.as_str(),
        refs.region.as_str(),
    );
    let mut bedrock = json!({"Statement": []});
    let p = &s.config.provider;
    // The same grants whether Bedrock is the provider or the fallback.
    if p.uses(ProviderKind::Bedrock) {
        let bedrock_region = p.bedrock_region.as_deref().unwrap_or(region);
        add_bedrock_statements(
            &mut bedrock,
            partition,
            bedrock_region,
            account,
            p.bedrock_models.values(),
            bedrock_profiles,
        );
    }
    let more_statements = match bedrock.get_mut("Statement").map(Value::take) {
        Some(Value::Array(list)) => list,
        _ => Vec::new(),
    };
    let mut spec = Spec {
        name: names.role.clone(),
        stack: names.stack.clone(),
        arn: role_arn(partition, account, &names.role),
        policy_name: names.role_policy.clone(),
        secret_arn: refs.secret_arn.clone(),
        log_group_arn: names.log_group_arn(partition, region, account),
        more_statements,
        policy: Value::Null,
    };
    spec.policy = spec.policy_for(spec.secret_arn.planned());
    spec
}

/// The planned changes to the role and to the policies on it, with what apply does for each.
pub fn plan(names: &Names, spec: Option<Spec>, actual: Option<&State>) -> Vec<ResourceChange> {
    let mut out = Vec::new();
    if let Some(change) = diff_role(spec.as_ref(), actual) {
        let action = match (&spec, actual) {
            (Some(spec), None) => Action::Create(spec.clone()),
            (Some(spec), Some(a)) => Action::Update(spec.clone(), a.clone()),
            (None, _) => Action::Delete(names.role.clone()),
        };
        out.push(ResourceChange::new(Kind::Role, &names.role, change, action));
    }
    for (which, name, change) in diff_policies(spec.as_ref(), actual) {
        let kind = match which {
            PolicyRef::Inline => Kind::RolePolicy,
            PolicyRef::Attached => Kind::AttachedPolicy,
        };
        let action = match (&change, &spec) {
            (
                Change::Create { .. } | Change::Update { .. } | Change::Replace { .. },
                Some(spec),
            ) if which == PolicyRef::Inline => Action::PutPolicy(spec.clone()),
            _ => Action::DeletePolicy {
                role: names.role.clone(),
                which,
                name: name.clone(),
            },
        };
        out.push(ResourceChange::new(kind, &name, change, action));
    }
    out
}

/// What apply does to the role or a policy on it.
#[derive(Debug)]
pub enum Action {
    Create(Spec),
    Update(Spec, State),
    Delete(String),
    /// Writes the inline policy, naming the secret's ARN as resolved.
    PutPolicy(Spec),
    DeletePolicy {
        role: String,
        which: PolicyRef,
        name: String,
    },
}

impl Step for Action {
    fn run<'a>(&'a self, cx: StepContext<'a>) -> StepFuture<'a> {
        Box::pin(async move {
            match self {
                Action::Create(spec) => {
                    let arn = create(cx.aws, spec, cx.created_at).await?;
                    let arn = if arn.is_empty() {
                        spec.arn.clone()
                    } else {
                        arn
                    };
                    return Done::output(Output::RoleArn, arn);
                }
                Action::Update(spec, a) => update(cx.aws, spec, a, cx.created_at).await?,
                Action::Delete(name) => delete(cx.aws, name).await?,
                Action::PutPolicy(spec) => {
                    let policy = spec.policy_for(&spec.secret_arn.resolve(cx.produced)?);
                    put_policy(cx.aws, &spec.name, &spec.policy_name, &policy).await?
                }
                Action::DeletePolicy { role, which, name } => {
                    delete_policy(cx.aws, role, *which, name).await?
                }
            }
            Done::nothing()
        })
    }
}

/// The trust policy: only Lambda may assume the role.
pub fn trust_policy() -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole"
        }]
    })
}

/// The one inline policy: read this secret (exact ARN), write to this log group.
pub fn policy_document(secret_arn: &str, log_group_arn: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ReadOwnSecret",
                "Effect": "Allow",
                "Action": ["secretsmanager:GetSecretValue"],
                "Resource": [secret_arn]
            },
            {
                "Sid": "WriteOwnLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": [log_group_arn]
            }
        ]
    })
}

pub fn role_arn(partition: &str, account_id: &str, role_name: &str) -> String {
    format!("arn:{partition}:iam::{account_id}:role/{role_name}")
}

/// IAM returns policy documents URL-encoded (RFC 3986); moto returns them either way.
pub fn decode_document(raw: &str) -> Result<Value> {
    let trimmed = raw.trim_start();
    let text = if trimmed.starts_with('{') {
        raw.to_string()
    } else {
        percent_encoding::percent_decode_str(raw)
            .decode_utf8_lossy()
            .into_owned()
    };
    serde_json::from_str(&text).context("IAM returned a policy document that is not JSON")
}

/// The role and what is on it. The five reads do not wait for each other (only each inline
/// policy's document waits for the list naming it): a read costs the slowest chain, not the
/// sum. A role that does not exist answers NoSuchEntity to each of them.
pub async fn read(aws: &Aws, names: &Names) -> Result<Option<State>> {
    let role_name = &names.role;
    let get_role = async {
        aws.iam
            .get_role()
            .role_name(role_name)
            .send()
            .await
            .or_not_found()
            .map_err(ctx(format!("iam:GetRole {role_name}")))
    };
    let list_tags = async {
        aws.iam
            .list_role_tags()
            .role_name(role_name)
            .send()
            .await
            .or_not_found()
            .map_err(ctx(format!("iam:ListRoleTags {role_name}")))
    };
    let inline = async {
        let Some(policy_names) = aws
            .iam
            .list_role_policies()
            .role_name(role_name)
            .send()
            .await
            .or_not_found()
            .map_err(ctx(format!("iam:ListRolePolicies {role_name}")))?
        else {
            return Ok(None);
        };
        let docs = futures_util::future::try_join_all(policy_names.policy_names().iter().map(
            |p| async move {
                let doc = aws
                    .iam
                    .get_role_policy()
                    .role_name(role_name)
                    .policy_name(p)
                    .send()
                    .await
                    .or_not_found()
                    .map_err(ctx(format!("iam:GetRolePolicy {role_name} {p}")))?;
                // None: deleted between the list and this read.
                doc.map(|d| decode_document(d.policy_document()).map(|v| (p.clone(), v)))
                    .transpose()
            },
        ))
        .await?;
        Ok::<_, anyhow::Error>(Some(docs.into_iter().flatten().collect::<BTreeMap<_, _>>()))
    };
    let attached = async {
        aws.iam
            .list_attached_role_policies()
            .role_name(role_name)
            .send()
            .await
            .or_not_found()
            .map_err(ctx(format!("iam:ListAttachedRolePolicies {role_name}")))
    };
    let (role, tags, inline_policies, attached) =
        tokio::try_join!(get_role, list_tags, inline, attached)?;
    // IAM is eventually consistent: right after a delete GetRole may still find the role
    // while another read says NoSuchEntity. Then it is gone.
    let (Some(role), Some(tags), Some(inline_policies), Some(attached)) =
        (role, tags, inline_policies, attached)
    else {
        return Ok(None);
    };
    let role = role.role.context("GetRole returned no role")?;
    let trust_policy = role
        .assume_role_policy_document()
        .map(decode_document)
        .transpose()?
        .unwrap_or(Value::Null);
    let tags = tags
        .tags()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    let attached_policies = attached
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn().map(str::to_string))
        .collect();
    Ok(Some(State {
        arn: role.arn().to_string(),
        trust_policy,
        tags,
        inline_policies,
        attached_policies,
    }))
}

/// The role itself (trust policy, tags).
pub fn diff_role(desired: Option<&Spec>, actual: Option<&State>) -> Option<Change> {
    match (desired, actual) {
        (None, None) => None,
        (None, Some(_)) => Some(Change::Delete),
        (Some(_), None) => Some(Change::Create {
            settings: vec![Setting::new("trusted_by", "lambda.amazonaws.com")],
        }),
        (Some(d), Some(a)) => {
            let mut fields = Vec::new();
            if a.trust_policy != trust_policy() {
                fields.push(FieldChange::new(
                    "trust_policy",
                    a.trust_policy.to_string(),
                    trust_policy().to_string(),
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

/// Kinds of policy attachment on the role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyRef {
    Inline,
    Attached,
}

/// The inline policy and anything else found on the role (removed: nothing broader).
pub fn diff_policies(
    desired: Option<&Spec>,
    actual: Option<&State>,
) -> Vec<(PolicyRef, String, Change)> {
    let mut out = Vec::new();
    let empty = BTreeMap::new();
    let inline = actual.map(|a| &a.inline_policies).unwrap_or(&empty);
    if let Some(d) = desired {
        match inline.get(&d.policy_name) {
            None => out.push((
                PolicyRef::Inline,
                d.policy_name.to_string(),
                Change::Create {
                    settings: policy_summary(&d.policy),
                },
            )),
            Some(doc) if doc != &d.policy => {
                let from = policy_summary(doc);
                let to = policy_summary(&d.policy);
                let mut fields = Vec::new();
                for s in &to {
                    let old = from
                        .iter()
                        .find(|f| f.field == s.field)
                        .map(|f| f.value.clone());
                    if old.as_deref() != Some(s.value.as_str()) {
                        fields.push(FieldChange::new(
                            &s.field,
                            old.unwrap_or_default(),
                            s.value.clone(),
                        ));
                    }
                }
                for f in &from {
                    if !to.iter().any(|s| s.field == f.field) {
                        fields.push(FieldChange::new(&f.field, f.value.clone(), ""));
                    }
                }
                if fields.is_empty() {
                    fields.push(FieldChange::new(
                        "document",
                        doc.to_string(),
                        d.policy.to_string(),
                    ));
                }
                out.push((
                    PolicyRef::Inline,
                    d.policy_name.to_string(),
                    Change::Update { fields },
                ));
            }
            Some(_) => {}
        }
    }
    for name in inline.keys() {
        if desired.map(|d| d.policy_name.as_str()) != Some(name.as_str()) {
            out.push((PolicyRef::Inline, name.clone(), Change::Delete));
        }
    }
    if let Some(a) = actual {
        for arn in &a.attached_policies {
            out.push((PolicyRef::Attached, arn.clone(), Change::Delete));
        }
    }
    out
}

/// One line per statement: `Action` on `Resource`.
fn policy_summary(doc: &Value) -> Vec<Setting> {
    let as_list = |v: Option<&Value>| -> String {
        match v {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| x.as_str().unwrap_or("?").to_string())
                .collect::<Vec<_>>()
                .join(","),
            Some(other) => other.to_string(),
            None => String::new(),
        }
    };
    let statements = match doc.get("Statement") {
        Some(Value::Array(a)) => a.clone(),
        Some(s) => vec![s.clone()],
        None => Vec::new(),
    };
    statements
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let sid = s
                .get("Sid")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| format!("statement{i}"));
            Setting::new(
                &sid,
                format!(
                    "{} {} on {}",
                    s.get("Effect").and_then(Value::as_str).unwrap_or("?"),
                    as_list(s.get("Action")),
                    as_list(s.get("Resource"))
                ),
            )
        })
        .collect()
}

pub async fn create(aws: &Aws, spec: &Spec, created_at: &str) -> Result<String> {
    let tags: Vec<Tag> = names::tags_at_creation(&spec.stack, created_at)
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect::<Result<_, _>>()?;
    let out = aws
        .iam
        .create_role()
        .role_name(&spec.name)
        .description(format!(
            "Execution role of the claude-lambda stack {}",
            &spec.stack
        ))
        .assume_role_policy_document(trust_policy().to_string())
        .set_tags(Some(tags))
        .send()
        .await
        .map_err(ctx(format!("iam:CreateRole {}", &spec.name)))?;
    Ok(out.role.map(|r| r.arn).unwrap_or_default())
}

pub async fn update(aws: &Aws, spec: &Spec, actual: &State, created_at: &str) -> Result<()> {
    if actual.trust_policy != trust_policy() {
        aws.iam
            .update_assume_role_policy()
            .role_name(&spec.name)
            .policy_document(trust_policy().to_string())
            .send()
            .await
            .map_err(ctx(format!("iam:UpdateAssumeRolePolicy {}", &spec.name)))?;
    }
    if !names::missing_tags(&spec.stack, &actual.tags).is_empty() {
        let tags = names::tags_to_restore(&spec.stack, created_at, &actual.tags);
        let tags: Vec<Tag> = tags
            .into_iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect::<Result<_, _>>()?;
        aws.iam
            .tag_role()
            .role_name(&spec.name)
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(ctx(format!("iam:TagRole {}", &spec.name)))?;
    }
    Ok(())
}

/// Creates or replaces the inline policy.
pub async fn put_policy(aws: &Aws, role: &str, policy_name: &str, policy: &Value) -> Result<()> {
    aws.iam
        .put_role_policy()
        .role_name(role)
        .policy_name(policy_name)
        .policy_document(policy.to_string())
        .send()
        .await
        .map_err(ctx(format!("iam:PutRolePolicy {role} {policy_name}")))?;
    Ok(())
}

pub async fn delete_policy(aws: &Aws, role: &str, which: PolicyRef, name: &str) -> Result<()> {
    match which {
        PolicyRef::Inline => {
            aws.iam
                .delete_role_policy()
                .role_name(role)
                .policy_name(name)
                .send()
                .await
                .or_not_found()
                .map_err(ctx(format!("iam:DeleteRolePolicy {role} {name}")))?;
        }
        PolicyRef::Attached => {
            aws.iam
                .detach_role_policy()
                .role_name(role)
                .policy_arn(name)
                .send()
                .await
                .or_not_found()
                .map_err(ctx(format!("iam:DetachRolePolicy {role} {name}")))?;
        }
    }
    Ok(())
}

/// Deletes the role, first removing whatever policies are still on it.
pub async fn delete(aws: &Aws, role: &str) -> Result<()> {
    let Some(inline) = aws
        .iam
        .list_role_policies()
        .role_name(role)
        .send()
        .await
        .or_not_found()
        .map_err(ctx(format!("iam:ListRolePolicies {role}")))?
    else {
        return Ok(());
    };
    for p in inline.policy_names() {
        delete_policy(aws, role, PolicyRef::Inline, p).await?;
    }
    let attached = aws
        .iam
        .list_attached_role_policies()
        .role_name(role)
        .send()
        .await
        .map_err(ctx(format!("iam:ListAttachedRolePolicies {role}")))?;
    for p in attached.attached_policies() {
        if let Some(arn) = p.policy_arn() {
            delete_policy(aws, role, PolicyRef::Attached, arn).await?;
        }
    }
    aws.iam
        .delete_role()
        .role_name(role)
        .send()
        .await
        .or_not_found()
        .map_err(ctx(format!("iam:DeleteRole {role}")))?;
    Ok(())
}

#[cfg(test)]
mod tests;
