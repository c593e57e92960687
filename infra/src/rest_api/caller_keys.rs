//! The named callers' own API keys (`claude-proxy-<stack>-<caller>`, tagged, members of the
//! stack's usage plan), made and deleted by `cargo xtask callers` under the stack's lock.
//! The secret's caller entry records the key's id (`api_key_id`), never its value; the value
//! is generated here, sent once to CreateApiKey and shown once by the command that made it.
//!
//! Order, so that a command killed midway leaves a state the next one (or the deploy)
//! repairs: a key is made and joins the plan before the secret names it, and leaves the
//! secret before it is deleted. A key of the stack that no entry names was never shown:
//! [`repair`] deletes it (the deploy's usage-plan step too), except the default caller's key,
//! which the deploy made and showed, adopted by the `default` entry.

use super::usage_plan::{self, write::delete_key, write::join_plan, State};
use crate::aws::{ctx, Aws, OrNotFound};
use crate::callers::{CallerEntry, DEFAULT_CALLER};
use crate::credentials::GatewayApiKey;
use crate::names::{self, Names};
use anyhow::{Context, Result};

/// The name of `caller`'s key.
pub fn key_name(names: &Names, caller: &str) -> String {
    format!("{}-{caller}", names.function)
}

/// The stack's usage plan and keys, or `None` when the stack has no REST front (no plan).
pub async fn read(aws: &Aws, names: &Names) -> Result<Option<State>> {
    let state = usage_plan::read(aws, names).await?;
    Ok((!state.plans.is_empty()).then_some(state))
}

/// A new key for `caller`, a member of the stack's plan: its id and its value (to show once).
/// When joining the plan fails the key is deleted again.
pub async fn create(
    aws: &Aws,
    names: &Names,
    state: &State,
    caller: &str,
) -> Result<(String, GatewayApiKey)> {
    let plan = state.plans.first().context("the stack has no usage plan")?;
    let name = key_name(names, caller);
    let mut tags = names::tags_at_creation(&names.stack, &crate::callers::now_rfc3339());
    tags.insert(TAG_CALLER.into(), caller.into());
    let value = GatewayApiKey::generate();
    let out = aws
        .apigw_rest
        .create_api_key()
        .name(&name)
        .description(format!(
            "claude-proxy: the caller {caller} of the stack {}",
            names.stack
        ))
        .enabled(true)
        .value(value.expose())
        .set_tags(Some(tags.into_iter().collect()))
        .send()
        .await
        .map_err(ctx(format!("apigateway:CreateApiKey {name}")))?;
    let id = out
        .id()
        .with_context(|| format!("CreateApiKey {name} returned no id"))?
        .to_string();
    if let Err(e) = join_plan(aws, &plan.id, &plan.name, &id, &name).await {
        let _ = delete_key(aws, &id).await;
        return Err(e);
    }
    Ok((id, value))
}

/// Deletes the key `id` (gone already is no error), leaving the plans of `state` that hold
/// it first (a deleted key must not stay listed as a member).
pub async fn delete(aws: &Aws, state: &State, id: &str) -> Result<()> {
    for p in state
        .plans
        .iter()
        .filter(|p| p.key_ids.iter().any(|k| k == id))
    {
        aws.apigw_rest
            .delete_usage_plan_key()
            .usage_plan_id(&p.id)
            .key_id(id)
            .send()
            .await
            .or_not_found()
            .map_err(ctx(format!(
                "apigateway:DeleteUsagePlanKey {} {id}",
                p.name
            )))?;
    }
    delete_key(aws, id).await
}

/// The tag naming the caller a key belongs to.
pub const TAG_CALLER: &str = "claude-proxy:caller";

/// Brings the stack's keys and the secret's entries in step after an interrupted command:
/// a key no entry names is deleted (it was never shown), but the default caller's key
/// (`claude-proxy-<stack>-default`, made and shown by the deploy) is adopted by the
/// `default` entry when that one names no key; an entry naming a key that is gone names
/// none. Returns whether `callers` changed.
pub async fn repair(
    aws: &Aws,
    names: &Names,
    state: &State,
    callers: &mut [CallerEntry],
) -> Result<bool> {
    let mut changed = false;
    for c in callers.iter_mut() {
        if let Some(id) = &c.api_key_id {
            if !state.keys.iter().any(|k| &k.id == id) {
                c.api_key_id = None;
                changed = true;
            }
        }
    }
    let in_plan = |id: &str| {
        state
            .plans
            .iter()
            .any(|p| p.key_ids.iter().any(|k| k == id))
    };
    for k in &state.keys {
        if callers
            .iter()
            .any(|c| c.api_key_id.as_deref() == Some(k.id.as_str()))
        {
            continue;
        }
        if k.name == names.default_api_key {
            if let Some(d) = callers
                .iter_mut()
                .find(|c| c.name == DEFAULT_CALLER && c.api_key_id.is_none())
            {
                if in_plan(&k.id) {
                    d.api_key_id = Some(k.id.clone());
                    changed = true;
                }
            }
            continue;
        }
        delete(aws, state, &k.id).await?;
    }
    Ok(changed)
}
