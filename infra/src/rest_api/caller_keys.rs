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
//!
//! A caller with its own rate, burst or quota (`CallerLimits::has_own_plan`) has its own
//! usage plan `claude-proxy-<stack>-<caller>` (tagged, `claude-proxy:caller` naming it, on
//! the shared plan's stage) holding only its key: API Gateway throttles a key by its plan.
//! The plan is made before the key joins it, and deleted after its key; a caller plan that
//! holds no key an entry names, or whose caller has no entry with its own numbers, is
//! deleted by [`repair`] (its named keys join the shared plan).

use super::usage_plan::{
    self, aws_numbers,
    write::{create_plan, delete_key, delete_plan, join_plan},
    State,
};
use crate::aws::{ctx, Aws, OrNotFound};
use crate::callers::Throttle;
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

/// A new key for `caller`, a member of the stack's shared plan, or with `own` numbers of
/// the caller's own plan (made when it has none): its id and its value (to show once). When
/// joining the plan fails the key (and a plan made for it) is deleted again.
pub async fn create(
    aws: &Aws,
    names: &Names,
    state: &State,
    caller: &str,
    own: Option<&Throttle>,
) -> Result<(String, GatewayApiKey)> {
    let shared = state.shared().context("the stack has no usage plan")?;
    let name = key_name(names, caller);
    let mut tags = names::tags_at_creation(&names.stack, &crate::callers::now_rfc3339());
    tags.insert(TAG_CALLER.into(), caller.into());
    // The plan the key joins: (id, name, made now).
    let plan = match (own, state.caller_plan(caller)) {
        (None, _) => (shared.id.clone(), shared.name.clone(), false),
        (Some(_), Some(p)) => (p.id.clone(), p.name.clone(), false),
        (Some(t), None) => {
            let id = create_plan(
                aws,
                &shared.api_stages,
                aws_numbers(t),
                &name,
                format!(
                    "claude-proxy: the caller {caller}'s own throttle and quota, stack {}",
                    names.stack
                ),
                tags.clone().into_iter().collect(),
            )
            .await?;
            (id, name.clone(), true)
        }
    };
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
        .map_err(ctx(format!("apigateway:CreateApiKey {name}")));
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            if plan.2 {
                let _ = undo_plan(aws, &plan.0, &name, &shared.api_stages).await;
            }
            return Err(e);
        }
    };
    let id = out
        .id()
        .with_context(|| format!("CreateApiKey {name} returned no id"))?
        .to_string();
    if let Err(e) = join_plan(aws, &plan.0, &plan.1, &id, &name).await {
        let _ = delete_key(aws, &id).await;
        if plan.2 {
            let _ = undo_plan(aws, &plan.0, &name, &shared.api_stages).await;
        }
        return Err(e);
    }
    Ok((id, value))
}

/// Deletes a plan made by [`create`] for a key that did not come to be.
async fn undo_plan(aws: &Aws, id: &str, name: &str, stages: &[String]) -> Result<()> {
    let p = usage_plan::PlanState {
        id: id.into(),
        name: name.into(),
        tags: Default::default(),
        api_stages: stages.to_vec(),
        rate_limit: None,
        burst_limit: None,
        quota: None,
        key_ids: Vec::new(),
    };
    delete_plan(aws, &p).await
}

/// Deletes `caller`'s own plan (read anew) when it holds no key but `gone` (after that key
/// was deleted or never named).
pub async fn drop_caller_plan(aws: &Aws, names: &Names, caller: &str, gone: &str) -> Result<()> {
    let state = usage_plan::read(aws, names).await?;
    if let Some(p) = state.caller_plan(caller) {
        if p.key_ids.iter().all(|k| k == gone) {
            delete_plan(aws, p).await?;
        }
    }
    Ok(())
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
pub use crate::names::TAG_CALLER;

/// Brings the stack's keys and the secret's entries in step after an interrupted command:
/// a key no entry names is deleted (it was never shown), but the default caller's key
/// (`claude-proxy-<stack>-default`, made and shown by the deploy) is adopted by the
/// `default` entry when that one names no key; an entry naming a key that is gone names
/// none. Returns whether `callers` changed and whether anything in AWS changed (then the
/// state is stale: read it again).
pub async fn repair(
    aws: &Aws,
    names: &Names,
    state: &State,
    callers: &mut [CallerEntry],
) -> Result<(bool, bool)> {
    let mut changed = false;
    let mut aws_changed = false;
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
        aws_changed = true;
    }
    // Caller plans no entry needs (none named, or none with its own numbers, or holding
    // no key an entry names) go; the named keys they held join the shared plan.
    for p in state.plans.iter().filter(|p| p.caller().is_some()) {
        let c = p.caller().unwrap_or_default();
        let named = |k: &String| callers.iter().any(|e| e.api_key_id.as_ref() == Some(k));
        let wanted = callers
            .iter()
            .any(|e| e.name == c && e.limits.has_own_plan())
            && p.key_ids.iter().any(named);
        if wanted {
            continue;
        }
        delete_plan(aws, p).await?;
        aws_changed = true;
        if let Some(shared) = state.shared() {
            for k in p.key_ids.iter().filter(|k| named(k)) {
                join_plan(aws, &shared.id, &shared.name, k, k).await?;
            }
        }
    }
    Ok((changed, aws_changed))
}
