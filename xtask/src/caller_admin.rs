//! Changes to the stack's named callers, under the stack's lock (a deploy rewrites the same
//! secret): shared by `cargo xtask callers` and `cargo xtask invoke`'s short-lived smoke-test
//! caller. The secret stores each token's SHA-256 only (`infra::callers`).
//!
//! With a REST API front (the stack has a usage plan), each caller also has its own API key
//! (`infra::rest_api::caller_keys`), a member of the plan, whose id (never its value) the
//! caller's entry records. Every change first brings keys and entries in step (a command
//! killed midway is repaired by the next), makes a key before the secret names it, and
//! deletes one only after the secret stopped naming it. A caller with its own rate, burst or
//! quota has its own usage plan holding its key (made with the key, deleted after it).

use crate::stack::StackContext;
use anyhow::Result;
use infra::callers::{self, CallerEntry, CallerLimits};
use infra::credentials::GatewayApiKey;
use infra::rest_api::caller_keys;
use infra::rest_api::usage_plan::State as KeysState;
use infra::secret::migrate::edit_callers;
use infra::secret::CallerToken;
use infra::LockOptions;
use std::future::Future;

/// Runs `work` while holding the stack's lock (waiting up to `lock`'s timeout).
async fn locked<T>(
    ctx: &StackContext,
    lock: &LockOptions,
    on_wait: &(dyn Fn(&str) + Sync),
    work: impl Future<Output = Result<T>>,
) -> Result<T> {
    let held = infra::lock::acquire(&ctx.aws, &ctx.stack, lock, on_wait).await?;
    let result = work.await;
    let released = held.release().await;
    let out = result?;
    released?;
    Ok(out)
}

/// The stack's usage plan and keys (`None`: no REST front), keys and the secret's entries
/// brought in step first ([`caller_keys::repair`]). Under the lock.
async fn keys_in_step(ctx: &StackContext) -> Result<Option<KeysState>> {
    let Some(state) = caller_keys::read(&ctx.aws, &ctx.names).await? else {
        return Ok(None);
    };
    let mut repaired = infra::secret::migrate::read_value(&ctx.aws, &ctx.names.secret)
        .await?
        .callers;
    let (entries, stale) = caller_keys::repair(&ctx.aws, &ctx.names, &state, &mut repaired).await?;
    if entries {
        edit_callers(&ctx.aws, &ctx.names, |c| {
            for e in c.iter_mut() {
                if let Some(r) = repaired.iter().find(|r| r.name == e.name) {
                    e.api_key_id = r.api_key_id.clone();
                }
            }
            Ok(((), true))
        })
        .await?;
    }
    if stale {
        return caller_keys::read(&ctx.aws, &ctx.names).await;
    }
    Ok(Some(state))
}

/// A new caller's credentials, shown once: its token, and its API key with a REST front.
pub struct NewCredentials {
    pub token: CallerToken,
    pub api_key: Option<GatewayApiKey>,
}

/// A new key for `name` when the stack has a REST front (in its own plan when `limits` has
/// its own rate, burst or quota).
async fn new_key(
    ctx: &StackContext,
    keys: Option<&KeysState>,
    name: &str,
    limits: &CallerLimits,
) -> Result<Option<(String, GatewayApiKey)>> {
    let own = limits
        .has_own_plan()
        .then(|| limits.throttle(&ctx.config.api));
    match keys {
        Some(s) => Ok(Some(
            caller_keys::create(&ctx.aws, &ctx.names, s, name, own.as_ref()).await?,
        )),
        None => Ok(None),
    }
}

/// Deletes a key the secret does not name, and `name`'s own plan when it holds no other
/// (best effort after a failed edit: the next command deletes them otherwise).
async fn forget(ctx: &StackContext, name: &str, key: &Option<(String, GatewayApiKey)>) {
    if let Some((id, _)) = key {
        let Ok(Some(state)) = caller_keys::read(&ctx.aws, &ctx.names).await else {
            return;
        };
        let _ = caller_keys::delete(&ctx.aws, &state, id).await;
        let _ = caller_keys::drop_caller_plan(&ctx.aws, &ctx.names, name, id).await;
    }
}

/// Adds a caller with `limits` (checked against the stack's); its token (and API key), to
/// show once.
pub async fn add(
    ctx: &StackContext,
    lock: &LockOptions,
    on_wait: &(dyn Fn(&str) + Sync),
    name: &str,
    limits: CallerLimits,
) -> Result<NewCredentials> {
    callers::validate_name(name)?;
    limits.check_within(
        &ctx.config.limits.allowed_models,
        u64::from(ctx.config.limits.max_tokens_cap),
    )?;
    limits.check_throttle(&ctx.config.api)?;
    let now = callers::now_rfc3339();
    locked(ctx, lock, on_wait, async {
        let keys = keys_in_step(ctx).await?;
        if keys.is_none() && limits.has_own_plan() {
            anyhow::bail!(
                "--rate-limit, --burst-limit, --quota-limit and --quota-period need the REST API front (its usage plans throttle each caller's API key): deploy with `--api rest` ([api] kind = \"rest\") first, or add {name} without them"
            );
        }
        if keys.is_some() {
            // Refused before any key is made.
            let value = infra::secret::migrate::read_value(&ctx.aws, &ctx.names.secret).await?;
            if value.callers.iter().any(|c| c.name == name) {
                anyhow::bail!("a caller named {name} exists already: rotate its token with `cargo xtask callers rotate {name}`");
            }
        }
        let key = new_key(ctx, keys.as_ref(), name, &limits).await?;
        let id = key.as_ref().map(|(id, _)| id.clone());
        let edited = edit_callers(&ctx.aws, &ctx.names, |c| {
            let token = callers::add(c, name, limits, &now)?;
            if let Some(e) = c.iter_mut().find(|e| e.name == name) {
                e.api_key_id = id;
            }
            Ok((token, true))
        })
        .await;
        match edited {
            Ok(token) => Ok(NewCredentials {
                token,
                api_key: key.map(|(_, v)| v),
            }),
            Err(e) => {
                forget(ctx, name, &key).await;
                Err(e)
            }
        }
    })
    .await
}

/// A new token for `name` (and a new API key, the old one deleted), to show once.
pub async fn rotate(
    ctx: &StackContext,
    lock: &LockOptions,
    on_wait: &(dyn Fn(&str) + Sync),
    name: &str,
) -> Result<NewCredentials> {
    let now = callers::now_rfc3339();
    locked(ctx, lock, on_wait, async {
        let keys = keys_in_step(ctx).await?;
        let limits = match &keys {
            Some(_) => {
                let value = infra::secret::migrate::read_value(&ctx.aws, &ctx.names.secret).await?;
                // An unknown name is refused by the edit below (the new key then goes).
                value
                    .callers
                    .into_iter()
                    .find(|c| c.name == name)
                    .map(|c| c.limits)
                    .unwrap_or_default()
            }
            None => CallerLimits::default(),
        };
        let key = new_key(ctx, keys.as_ref(), name, &limits).await?;
        let id = key.as_ref().map(|(id, _)| id.clone());
        let edited = edit_callers(&ctx.aws, &ctx.names, |c| {
            let token = callers::rotate(c, name, &now)?;
            let mut old = None;
            if let (Some(id), Some(e)) = (id, c.iter_mut().find(|e| e.name == name)) {
                old = e.api_key_id.replace(id);
            }
            Ok(((token, old), true))
        })
        .await;
        match edited {
            Ok((token, old)) => {
                if let (Some(old), Some(state)) = (old, &keys) {
                    caller_keys::delete(&ctx.aws, state, &old).await?;
                }
                Ok(NewCredentials {
                    token,
                    api_key: key.map(|(_, v)| v),
                })
            }
            Err(e) => {
                forget(ctx, name, &key).await;
                Err(e)
            }
        }
    })
    .await
}

/// Removes `name` (and deletes its API key).
pub async fn revoke(
    ctx: &StackContext,
    lock: &LockOptions,
    on_wait: &(dyn Fn(&str) + Sync),
    name: &str,
) -> Result<()> {
    locked(ctx, lock, on_wait, async {
        let keys = keys_in_step(ctx).await?;
        let gone = edit_callers(&ctx.aws, &ctx.names, |c| {
            Ok((callers::revoke(c, name)?, true))
        })
        .await?;
        if let (Some(id), Some(state)) = (gone.api_key_id, &keys) {
            caller_keys::delete(&ctx.aws, state, &id).await?;
            caller_keys::drop_caller_plan(&ctx.aws, &ctx.names, name, &id).await?;
        }
        Ok(())
    })
    .await
}

/// The callers as stored (hashes and all: never print `token_sha256`).
pub async fn list(ctx: &StackContext) -> Result<Vec<CallerEntry>> {
    let value = infra::secret::migrate::read_value(&ctx.aws, &ctx.names.secret).await?;
    let mut out = value.callers;
    // Tokens of the format before named callers, under the names they will migrate to.
    for i in 0..value.caller_tokens.len() {
        out.push(CallerEntry {
            name: callers::legacy_name(i),
            token_sha256: String::new(),
            created_at: "(before named callers; migrated by the next deploy)".into(),
            rotated_at: None,
            limits: CallerLimits::default(),
            api_key_id: None,
        });
    }
    Ok(out)
}
