//! Changes to the stack's named callers, under the stack's lock (a deploy rewrites the same
//! secret): shared by `cargo xtask callers` and `cargo xtask invoke`'s short-lived smoke-test
//! caller. The secret stores each token's SHA-256 only (`infra::callers`).

use crate::stack::StackContext;
use anyhow::Result;
use infra::callers::{self, CallerEntry, CallerLimits};
use infra::secret::migrate::edit_callers;
use infra::secret::CallerToken;
use infra::LockOptions;

/// Runs `edit` on the callers while holding the stack's lock (waiting up to `lock`'s timeout).
async fn locked<T>(
    ctx: &StackContext,
    lock: &LockOptions,
    on_wait: &(dyn Fn(&str) + Sync),
    edit: impl FnOnce(&mut Vec<CallerEntry>) -> Result<(T, bool)>,
) -> Result<T> {
    let held = infra::lock::acquire(&ctx.aws, &ctx.stack, lock, on_wait).await?;
    let result = edit_callers(&ctx.aws, &ctx.names, edit).await;
    let released = held.release().await;
    let out = result?;
    released?;
    Ok(out)
}

/// Adds a caller with `limits` (checked against the stack's); its token, to show once.
pub async fn add(
    ctx: &StackContext,
    lock: &LockOptions,
    on_wait: &(dyn Fn(&str) + Sync),
    name: &str,
    limits: CallerLimits,
) -> Result<CallerToken> {
    callers::validate_name(name)?;
    limits.check_within(
        &ctx.config.limits.allowed_models,
        u64::from(ctx.config.limits.max_tokens_cap),
    )?;
    let now = callers::now_rfc3339();
    locked(ctx, lock, on_wait, |c| {
        Ok((callers::add(c, name, limits, &now)?, true))
    })
    .await
}

/// A new token for `name`, to show once.
pub async fn rotate(
    ctx: &StackContext,
    lock: &LockOptions,
    on_wait: &(dyn Fn(&str) + Sync),
    name: &str,
) -> Result<CallerToken> {
    let now = callers::now_rfc3339();
    locked(ctx, lock, on_wait, |c| {
        Ok((callers::rotate(c, name, &now)?, true))
    })
    .await
}

/// Removes `name`.
pub async fn revoke(
    ctx: &StackContext,
    lock: &LockOptions,
    on_wait: &(dyn Fn(&str) + Sync),
    name: &str,
) -> Result<()> {
    locked(ctx, lock, on_wait, |c| {
        callers::revoke(c, name)?;
        Ok(((), true))
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
