//! Reserved concurrency: both a guarantee and a cap (0 stops the function). An account must
//! keep at least 100 unreserved executions; accounts whose whole quota is 100 or less cannot
//! reserve at all. Both are checked with `GetAccountSettings` before `PutFunctionConcurrency`
//! so the error is clear and early.

use crate::aws::{ctx, describe, is_not_found, Aws};
use crate::plan::{Change, FieldChange, Setting};
use anyhow::{bail, Result};

/// Lambda's floor of unreserved concurrency per account and Region.
pub const MIN_UNRESERVED: i32 = 100;

pub async fn read(aws: &Aws, function: &str) -> Result<Option<i32>> {
    match aws
        .lambda
        .get_function_concurrency()
        .function_name(function)
        .send()
        .await
    {
        Ok(o) => Ok(o.reserved_concurrent_executions()),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(ctx(format!("lambda:GetFunctionConcurrency {function}"))(e)),
    }
}

pub fn diff(desired: Option<u32>, actual: Option<i32>) -> Option<Change> {
    match (desired, actual) {
        (None, None) => None,
        (None, Some(_)) => Some(Change::Delete),
        (Some(d), None) => Some(Change::Create {
            settings: vec![Setting::new("reserved", d)],
        }),
        (Some(d), Some(a)) if a == d as i32 => None,
        (Some(d), Some(a)) => Some(Change::Update {
            fields: vec![FieldChange::new("reserved", a.to_string(), d.to_string())],
        }),
    }
}

/// Checks the account can afford `reserved` for this function (which holds `current` now).
/// `warn` receives the message when the service cannot tell (moto has no GetAccountSettings).
pub async fn check_account(
    aws: &Aws,
    function: &str,
    reserved: u32,
    current: Option<i32>,
    warn: &dyn Fn(&str),
) -> Result<()> {
    let settings = match aws.lambda.get_account_settings().send().await {
        Ok(s) => s,
        Err(e) => {
            let text = describe(&e);
            // moto 5.x does not implement GetAccountSettings (it answers 404/501 or a
            // "not yet implemented" error). Only that is tolerated; anything else fails.
            let unimplemented = text.contains("not yet implemented")
                || text.contains("NotImplemented")
                || e.raw_response()
                    .is_some_and(|r| matches!(r.status().as_u16(), 404 | 501));
            if unimplemented {
                warn(&format!(
                    "lambda:GetAccountSettings is not available on this endpoint ({text}); cannot check the account's unreserved concurrency before reserving {reserved}"
                ));
                return Ok(());
            }
            return Err(anyhow::anyhow!("lambda:GetAccountSettings: {text}"));
        }
    };
    let Some(limits) = settings.account_limit() else {
        return Ok(());
    };
    let total = limits.concurrent_executions();
    let unreserved = limits.unreserved_concurrent_executions().unwrap_or(total);
    if total <= MIN_UNRESERVED && reserved > 0 {
        bail!(
            "this account's Lambda concurrency quota in {} is {total}: accounts with 100 or less cannot reserve concurrency for {function}. \
             Deploy with `--concurrency none` (or concurrency.reserved = \"none\"), or request a quota increase for \
             \"Concurrent executions\" in Service Quotas",
            aws.region
        );
    }
    let after = unreserved + current.unwrap_or(0) - reserved as i32;
    if after < MIN_UNRESERVED {
        bail!(
            "reserving {reserved} for {function} would leave {after} unreserved executions in {} (quota {total}, unreserved now {unreserved}); \
             Lambda requires at least {MIN_UNRESERVED}. Lower the reservation (at most {}) or use `--concurrency none`",
            aws.region,
            (unreserved + current.unwrap_or(0) - MIN_UNRESERVED).max(0)
        );
    }
    Ok(())
}

pub async fn put(aws: &Aws, function: &str, reserved: u32) -> Result<()> {
    aws.lambda
        .put_function_concurrency()
        .function_name(function)
        .reserved_concurrent_executions(reserved as i32)
        .send()
        .await
        .map_err(ctx(format!(
            "lambda:PutFunctionConcurrency {function} = {reserved}"
        )))?;
    Ok(())
}

pub async fn delete(aws: &Aws, function: &str) -> Result<()> {
    match aws
        .lambda
        .delete_function_concurrency()
        .function_name(function)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(ctx(format!("lambda:DeleteFunctionConcurrency {function}"))(
            e,
        )),
    }
}
