//! The Secrets Manager secret `claude-proxy/<stack>`: `{"anthropic_api_key", "callers"}`,
//! each caller `{name, token_sha256, created_at, rotated_at, limits}` ([`crate::callers`]).
//!
//! The key comes from the caller of `apply` (the CLI reads it from `ANTHROPIC_API_KEY` or
//! stdin, never argv). A caller `default` is made on first deploy and its token returned once;
//! redeploys rotate nothing unless asked. Values never appear in plans or `Debug` output.
//!
//! Secrets written before named callers hold plaintext `caller_tokens`. They are hashed into
//! `callers` by a step of its own ([`migrate`], `Kind::Callers`) that runs after the function
//! is updated to a handler that reads hashes; until then this module keeps writing the old
//! form (a crash in between leaves the old handler able to read its secret, and the next
//! deploy finishes the migration).

pub mod migrate;

use crate::aws::{ctx, Aws, OrNotFound};
use crate::callers::{self, CallerEntry};
use crate::change::{Change, FieldChange, Kind, Output, Setting};
use crate::config::ProviderKind;
pub use crate::credentials::{ApiKey, CallerToken, SecretInput};
use crate::desired::StackSpec;
use crate::names::{self, Names};
use crate::step::{Done, ResourceChange, Step, StepContext, StepFuture};
use anyhow::{Context, Result};
use aws_sdk_secretsmanager::types::Tag;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The secret's JSON value (the handler reads the same shape). With the Bedrock provider
/// it holds only the caller tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecretValue {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anthropic_api_key: Option<ApiKey>,
    /// Plaintext tokens of the secret format before named callers (migrated by [`migrate`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caller_tokens: Vec<CallerToken>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub callers: Vec<CallerEntry>,
}

impl SecretValue {
    /// How many tokens work: named callers and plaintext tokens.
    pub fn token_count(&self) -> usize {
        self.callers.len() + self.caller_tokens.len()
    }
}

/// The secret as it is in the account.
#[derive(Debug, Clone)]
pub struct State {
    pub arn: String,
    pub tags: BTreeMap<String, String>,
    /// `None` when the stored value is missing or not our JSON shape.
    pub value: Option<SecretValue>,
    /// Set when the secret was deleted with a recovery window and still holds the name.
    pub scheduled_for_deletion: bool,
}

/// The secret and its value, read at the same time (the value by name: a read costs one
/// round trip, not two). The value is used only when the description says the secret is
/// live (for one scheduled for deletion, GetSecretValue is refused, and that is no error).
pub async fn read(aws: &Aws, names: &Names) -> Result<Option<State>> {
    let describe = async {
        aws.secrets
            .describe_secret()
            .secret_id(&names.secret)
            .send()
            .await
            .or_not_found()
            .map_err(ctx(format!(
                "secretsmanager:DescribeSecret {}",
                names.secret
            )))
    };
    let value = async {
        aws.secrets
            .get_secret_value()
            .secret_id(&names.secret)
            .send()
            .await
            .or_not_found()
            .map_err(ctx(format!(
                "secretsmanager:GetSecretValue {}",
                names.secret
            )))
    };
    let (described, value) = tokio::join!(describe, value);
    let Some(d) = described? else {
        return Ok(None);
    };
    let arn = d
        .arn()
        .context("DescribeSecret returned no ARN")?
        .to_string();
    let tags = d
        .tags()
        .iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
        .collect();
    if d.deleted_date().is_some_and(being_deleted_for_good) {
        // Force-deleted (ours are, see `delete`): AWS keeps showing it with a DeletedDate of
        // the deletion for a while. It is gone; the name is free again shortly (`create`
        // retries until it is).
        return Ok(None);
    }
    let scheduled_for_deletion = d.deleted_date().is_some();
    let value = if scheduled_for_deletion {
        None
    } else {
        value?.and_then(|v| {
            v.secret_string()
                .and_then(|s| serde_json::from_str::<SecretValue>(s).ok())
        })
    };
    Ok(Some(State {
        arn,
        tags,
        value,
        scheduled_for_deletion,
    }))
}

/// True when a `DeletedDate` marks a secret deleted without recovery: the date is the
/// deletion itself (now or past), while a secret scheduled with a recovery window (7 to 30
/// days) carries the future date it will be deleted on, and can still be restored.
pub fn being_deleted_for_good(deleted: &aws_smithy_types::DateTime) -> bool {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    // Shorter than any recovery window (7 days), longer than any clock skew.
    deleted.secs() <= now + 24 * 3600
}

/// The refusal of `CreateSecret` while a name deleted moments ago is not free yet.
pub fn is_name_scheduled_for_deletion(code: &str, message: &str) -> bool {
    code == "InvalidRequestException" && message.contains("scheduled for deletion")
}

/// What the secret should be.
#[derive(Debug, Clone)]
pub struct Spec {
    pub name: String,
    pub stack: String,
    pub input: SecretInput,
    /// The Anthropic provider needs the key in the secret, as provider or as fallback;
    /// Bedrock alone does not.
    pub key_required: bool,
}

/// The secret a desired stack needs.
pub fn spec(names: &Names, s: &StackSpec) -> Spec {
    Spec {
        name: names.secret.clone(),
        stack: names.stack.clone(),
        input: s.secret.clone(),
        key_required: s.config.provider.uses(ProviderKind::Anthropic),
    }
}

/// The planned change to the secret, with what apply does for it.
pub fn plan(
    names: &Names,
    spec: Option<Spec>,
    actual: Option<&State>,
    blockers: &mut Vec<String>,
) -> Option<ResourceChange> {
    let change = diff(spec.as_ref(), actual, blockers)?;
    let action = match (spec, actual) {
        (Some(spec), None) => Action::Create(spec),
        (Some(spec), Some(a)) => Action::Update(spec, a.clone()),
        (None, a) => Action::Delete(
            a.map(|a| a.arn.clone())
                .unwrap_or_else(|| names.secret.clone()),
        ),
    };
    Some(ResourceChange::new(
        Kind::Secret,
        &names.secret,
        change,
        action,
    ))
}

/// What apply does to the secret.
#[derive(Debug)]
pub enum Action {
    Create(Spec),
    Update(Spec, State),
    /// By ARN (or name).
    Delete(String),
}

impl Step for Action {
    fn run<'a>(&'a self, cx: StepContext<'a>) -> StepFuture<'a> {
        Box::pin(async move {
            match self {
                Action::Create(spec) => {
                    let on_retry = |m: &str| cx.progress.warn(m);
                    let (arn, token) = create(cx.aws, spec, cx.created_at, &on_retry).await?;
                    Ok(Done {
                        outputs: vec![(Output::SecretArn, Some(arn))],
                        caller_token: Some(token),
                        ..Done::default()
                    })
                }
                Action::Update(spec, actual) => Ok(Done {
                    outputs: Vec::new(),
                    caller_token: update(cx.aws, spec, actual, cx.created_at).await?,
                    ..Done::default()
                }),
                Action::Delete(id) => {
                    delete(cx.aws, id).await?;
                    Done::nothing()
                }
            }
        })
    }
}

/// The change to the secret; `blockers` receives reasons the plan cannot be applied.
pub fn diff(
    desired: Option<&Spec>,
    actual: Option<&State>,
    blockers: &mut Vec<String>,
) -> Option<Change> {
    match (desired, actual) {
        (None, None) => None,
        (None, Some(_)) => Some(Change::Delete),
        (Some(d), None) => {
            let mut settings = Vec::new();
            if d.key_required {
                if d.input.anthropic_api_key.is_none() {
                    blockers.push(no_key_message(&d.name));
                }
                settings.push(Setting::new("anthropic_api_key", "(given, hidden)"));
            }
            settings.push(Setting::new(
                "callers",
                "default (new token, shown once after deploy)",
            ));
            Some(Change::Create { settings })
        }
        (Some(d), Some(a)) => {
            let mut fields = Vec::new();
            if a.scheduled_for_deletion {
                if d.key_required && d.input.anthropic_api_key.is_none() {
                    blockers.push(no_key_message(&d.name));
                }
                return Some(Change::Replace {
                    reason: "the secret is scheduled for deletion: it is restored and its value rewritten".into(),
                });
            }
            match (&a.value, &d.input.anthropic_api_key) {
                (None, None) if !d.key_required => fields.push(FieldChange::new(
                    "value",
                    "(unreadable)",
                    "(caller tokens only)",
                )),
                (Some(v), None) if d.key_required && v.anthropic_api_key.is_none() => {
                    blockers.push(format!(
                        "secret {} holds no Anthropic API key (it was deployed for Bedrock): {}",
                        &d.name,
                        no_key_message(&d.name)
                    ));
                }
                (None, None) => {
                    blockers.push(format!(
                        "secret {} holds no readable value: {}",
                        &d.name,
                        no_key_message(&d.name)
                    ));
                }
                (None, Some(_)) => fields.push(FieldChange::new(
                    "value",
                    "(unreadable)",
                    "(rewritten, hidden)",
                )),
                (Some(v), Some(k)) if v.anthropic_api_key.as_ref() != Some(k) => {
                    fields.push(FieldChange::new(
                        "anthropic_api_key",
                        if v.anthropic_api_key.is_some() {
                            "(stored, hidden)"
                        } else {
                            "(none)"
                        },
                        "(new value, hidden)",
                    ))
                }
                _ => {}
            }
            let has_tokens = a.value.as_ref().is_some_and(|v| v.token_count() > 0);
            if d.input.rotate_token || (a.value.is_some() && !has_tokens) {
                let from = a
                    .value
                    .as_ref()
                    .map(|v| format!("{} caller(s)", v.token_count()))
                    .unwrap_or_else(|| "(unreadable)".into());
                fields.push(FieldChange::new(
                    "callers",
                    from,
                    "new token for default (shown once after deploy)".to_string(),
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

fn no_key_message(name: &str) -> String {
    format!(
        "the secret {name} must be given the Anthropic API key: set ANTHROPIC_API_KEY or pipe it to --api-key-stdin"
    )
}

fn sdk_tags(stack: &str, created_at: &str) -> Vec<Tag> {
    names::tags_at_creation(stack, created_at)
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// Creates the secret with a new caller token. Returns (ARN, the token). Right after a
/// teardown the name may still be held by the force-deleted secret ("already scheduled for
/// deletion"): that is retried with backoff until AWS frees it (`on_retry` hears each retry).
pub async fn create(
    aws: &Aws,
    spec: &Spec,
    created_at: &str,
    on_retry: &dyn Fn(&str),
) -> Result<(String, CallerToken)> {
    let key = match &spec.input.anthropic_api_key {
        Some(k) => Some(k.clone()),
        None if !spec.key_required => None,
        None => anyhow::bail!(no_key_message(&spec.name)),
    };
    // A new secret: the function that reads it is created after it, with a handler that
    // reads hashes, so the caller is stored hashed from the start.
    let (entry, token) = callers::new_caller(
        callers::DEFAULT_CALLER,
        Default::default(),
        &callers::now_rfc3339(),
    );
    let value = SecretValue {
        anthropic_api_key: key,
        caller_tokens: Vec::new(),
        callers: vec![entry],
    };
    let request = aws
        .secrets
        .create_secret()
        .name(&spec.name)
        .description(format!(
            "Caller tokens (and the Anthropic API key, if any) for claude-lambda stack {}",
            &spec.stack
        ))
        .secret_string(serde_json::to_string(&value)?)
        .set_tags(Some(sdk_tags(&spec.stack, created_at)));
    let out = crate::aws::retry_while(
        &aws.iam_retry,
        &format!(
            "the name {} is still held by its deleted secret",
            &spec.name
        ),
        is_name_scheduled_for_deletion,
        on_retry,
        || request.clone().send(),
    )
    .await
    .map_err(ctx(format!("secretsmanager:CreateSecret {}", &spec.name)))?;
    let arn = out
        .arn()
        .context("CreateSecret returned no ARN")?
        .to_string();
    Ok((arn, token))
}

/// Brings an existing secret to the spec. Returns a caller token when one was made.
pub async fn update(
    aws: &Aws,
    spec: &Spec,
    actual: &State,
    created_at: &str,
) -> Result<Option<CallerToken>> {
    if actual.scheduled_for_deletion {
        aws.secrets
            .restore_secret()
            .secret_id(&actual.arn)
            .send()
            .await
            .map_err(ctx(format!("secretsmanager:RestoreSecret {}", &spec.name)))?;
    }
    let mut value = match (&actual.value, &spec.input.anthropic_api_key) {
        (Some(v), Some(k)) => SecretValue {
            anthropic_api_key: Some(k.clone()),
            ..v.clone()
        },
        (Some(v), None) => v.clone(),
        (None, Some(k)) => SecretValue {
            anthropic_api_key: Some(k.clone()),
            caller_tokens: Vec::new(),
            callers: Vec::new(),
        },
        (None, None) if !spec.key_required => SecretValue {
            anthropic_api_key: None,
            caller_tokens: Vec::new(),
            callers: Vec::new(),
        },
        (None, None) => anyhow::bail!(no_key_message(&spec.name)),
    };
    if spec.key_required && value.anthropic_api_key.is_none() {
        anyhow::bail!(no_key_message(&spec.name));
    }
    let mut new_token = None;
    if spec.input.rotate_token || value.token_count() == 0 {
        new_token = Some(new_default_token(&mut value));
    }
    if actual.value.as_ref() != Some(&value) || actual.scheduled_for_deletion {
        aws.secrets
            .put_secret_value()
            .secret_id(&actual.arn)
            .secret_string(serde_json::to_string(&value)?)
            .send()
            .await
            .map_err(ctx(format!("secretsmanager:PutSecretValue {}", &spec.name)))?;
    }
    if !names::missing_tags(&spec.stack, &actual.tags).is_empty() {
        let mut tags = sdk_tags(&spec.stack, created_at);
        if actual.tags.contains_key(names::TAG_CREATED_AT) {
            tags.retain(|t| t.key() != Some(names::TAG_CREATED_AT));
        }
        aws.secrets
            .tag_resource()
            .secret_id(&actual.arn)
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(ctx(format!("secretsmanager:TagResource {}", &spec.name)))?;
    }
    Ok(new_token)
}

/// A new token for the `default` caller, in the form the secret is in: hashed once it holds
/// named callers (its function reads hashes), else plaintext, replacing the plaintext tokens
/// (the function may still run a handler that reads only those; [`migrate`] hashes it after
/// the function is updated).
fn new_default_token(value: &mut SecretValue) -> CallerToken {
    let now = callers::now_rfc3339();
    if value.callers.is_empty() {
        let t = CallerToken::generate();
        value.caller_tokens = vec![t.clone()];
        return t;
    }
    match callers::rotate(&mut value.callers, callers::DEFAULT_CALLER, &now) {
        Ok(t) => t,
        Err(_) => {
            let (entry, t) = callers::new_caller(callers::DEFAULT_CALLER, Default::default(), &now);
            value.callers.push(entry);
            t
        }
    }
}

/// Deletes the secret immediately (no recovery window), so the name is free again.
pub async fn delete(aws: &Aws, id: &str) -> Result<()> {
    aws.secrets
        .delete_secret()
        .secret_id(id)
        .force_delete_without_recovery(true)
        .send()
        .await
        .or_not_found()
        .map_err(ctx(format!("secretsmanager:DeleteSecret {id}")))?;
    Ok(())
}

#[cfg(test)]
mod tests;
