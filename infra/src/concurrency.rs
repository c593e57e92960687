//! Reserved concurrency: both a guarantee and a cap (0 stops the function).
//!
//! An account must keep a floor of unreserved executions in each Region. The plan decides
//! what is reserved before anything is created, from `GetAccountSettings` (the account's
//! quota and what is unreserved now, read with the rest of the actual state): [`decide`].
//! `GetAccountSettings` does not state the floor itself; the plan takes AWS's documented one
//! (100, or the whole quota when the quota is smaller: a new account with 10 can reserve
//! nothing) and AWS's own answer overrides it: when `PutFunctionConcurrency` is refused
//! "below its minimum value of [N]", N is parsed from the message ([`floor_in_message`]) and
//! named in what the user sees.
//!
//! `reserved = "auto"` that the account cannot give degrades to no reservation, with a note
//! that says why and how to raise the quota; an explicit number that cannot be met is a plan
//! blocker, so nothing is created.

use crate::aws::{ctx, describe, Aws, OrNotFound};
use crate::change::{Change, FieldChange, Kind, Output, Setting};
use crate::step::{Done, ResourceChange, Step, StepContext, StepFuture};
use anyhow::Result;
use serde::Serialize;

/// AWS's documented floor of unreserved concurrency per account and Region when the quota
/// is larger than it. Only an estimate for the plan: AWS's refusal states the account's own
/// value, which wins ([`floor_in_message`]).
pub const DOCUMENTED_MIN_UNRESERVED: i32 = 100;

/// What `GetAccountSettings` says about concurrency in the Region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "known", rename_all = "snake_case")]
pub enum AccountConcurrency {
    Known {
        /// The account's quota of concurrent executions (`ConcurrentExecutions`).
        total: i32,
        /// What no function has reserved (`UnreservedConcurrentExecutions`).
        unreserved: i32,
    },
    /// The endpoint could not tell (moto has no `GetAccountSettings`; or access denied).
    Unknown { reason: String },
}

impl AccountConcurrency {
    /// The floor the plan assumes for a quota of `total`: AWS's documented 100, or the
    /// whole quota when it is smaller.
    pub fn assumed_floor(total: i32) -> i32 {
        total.min(DOCUMENTED_MIN_UNRESERVED)
    }
}

/// Reads the account's concurrency numbers. Never fails: what the endpoint refuses is
/// returned as [`AccountConcurrency::Unknown`] with AWS's reason, and the plan says so.
pub async fn read_account(aws: &Aws) -> AccountConcurrency {
    match aws.lambda.get_account_settings().send().await {
        Ok(s) => match s.account_limit() {
            Some(l) => AccountConcurrency::Known {
                total: l.concurrent_executions(),
                unreserved: l
                    .unreserved_concurrent_executions()
                    .unwrap_or(l.concurrent_executions()),
            },
            None => AccountConcurrency::Unknown {
                reason: "lambda:GetAccountSettings returned no AccountLimit".into(),
            },
        },
        Err(e) => {
            let status = e.raw_response().map(|r| r.status().as_u16());
            let text = describe(&e);
            let text = match status {
                Some(404 | 501) => format!(
                    "not available on this endpoint (HTTP {})",
                    status.unwrap_or(0)
                ),
                _ => text,
            };
            AccountConcurrency::Unknown {
                reason: format!("lambda:GetAccountSettings in {}: {text}", aws.region),
            }
        }
    }
}

/// What the plan decided for reserved concurrency.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    /// What will be reserved (`None`: no reservation).
    pub reserved: Option<u32>,
    pub note: Option<String>,
    pub blocker: Option<String>,
}

/// Decides the reservation for `function` at plan time. `wanted` is the resolved setting,
/// `auto` whether it came from `reserved = "auto"`, `current` the function's reservation now,
/// `account` what `GetAccountSettings` said (`None`: not read, e.g. a fixed test state).
pub fn decide(
    function: &str,
    region: &str,
    wanted: Option<u32>,
    auto: bool,
    current: Option<i32>,
    account: Option<&AccountConcurrency>,
) -> Decision {
    let Some(wanted) = wanted else {
        return Decision::default();
    };
    let reserve = Decision {
        reserved: Some(wanted),
        ..Default::default()
    };
    // Keeping or lowering a reservation never takes from the unreserved pool.
    if current.is_some_and(|c| wanted as i64 <= c as i64) {
        return reserve;
    }
    let (total, unreserved) = match account {
        None => return reserve,
        Some(AccountConcurrency::Unknown { reason }) => {
            return Decision {
                note: Some(format!(
                    "the account's Lambda concurrency could not be read ({reason}): reserving {wanted} for {function} is checked by Lambda when it is applied"
                )),
                ..reserve
            }
        }
        Some(AccountConcurrency::Known { total, unreserved }) => (*total, *unreserved),
    };
    let floor = AccountConcurrency::assumed_floor(total);
    let available = (unreserved as i64 + current.unwrap_or(0) as i64 - floor as i64).max(0);
    if wanted as i64 <= available {
        return reserve;
    }
    let numbers = format!(
        "the account's Lambda concurrency quota in {region} is {total} with {unreserved} unreserved, and Lambda keeps at least {floor} unreserved, so at most {available} can be reserved for {function}"
    );
    let raise = "request a higher \"Concurrent executions\" quota for AWS Lambda in Service Quotas (new accounts start with 10)";
    if auto {
        Decision {
            reserved: None,
            note: Some(format!(
                "reserved concurrency: `auto` asks for {wanted}, but {numbers}: deploying without a reservation (only the account's quota caps requests in flight). To reserve, {raise}, then deploy again"
            )),
            blocker: None,
        }
    } else {
        Decision {
            reserved: Some(wanted),
            note: None,
            blocker: Some(format!(
                "reserved concurrency {wanted} cannot be met: {numbers}. Deploy with a lower `--concurrency`, `--concurrency none`, or {raise}"
            )),
        }
    }
}

/// The account's floor in Lambda's refusal "... below its minimum value of [N]." (`None`
/// for any other error).
pub fn floor_in_message(message: &str) -> Option<i32> {
    let rest = message.split("minimum value of [").nth(1)?;
    rest.split(']').next()?.trim().parse().ok()
}

pub async fn read(aws: &Aws, function: &str) -> Result<Option<i32>> {
    let out = aws
        .lambda
        .get_function_concurrency()
        .function_name(function)
        .send()
        .await
        .or_not_found()
        .map_err(ctx(format!("lambda:GetFunctionConcurrency {function}")))?;
    Ok(out.and_then(|o| o.reserved_concurrent_executions()))
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

/// The planned change to the function's reservation, with what apply does for it.
/// `fallback` is what stays reserved when Lambda refuses an `auto` reservation (`optional`).
pub fn plan(
    function: &str,
    decision: &Decision,
    optional: bool,
    fallback: Option<u32>,
    actual: Option<i32>,
) -> Option<ResourceChange> {
    let change = diff(decision.reserved, actual)?;
    let action = match decision.reserved {
        Some(reserved) => Action::Put {
            function: function.to_string(),
            reserved,
            optional,
            fallback,
        },
        None => Action::Delete(function.to_string()),
    };
    Some(ResourceChange::new(
        Kind::Concurrency,
        function,
        change,
        action,
    ))
}

/// What apply does to the reservation.
#[derive(Debug)]
pub enum Action {
    Put {
        function: String,
        reserved: u32,
        optional: bool,
        fallback: Option<u32>,
    },
    Delete(String),
}

impl Step for Action {
    fn run<'a>(&'a self, cx: StepContext<'a>) -> StepFuture<'a> {
        Box::pin(async move {
            match self {
                Action::Put {
                    function,
                    reserved,
                    optional,
                    fallback,
                } => {
                    if let Put::Skipped { floor, message } =
                        put(cx.aws, function, *reserved, *optional).await?
                    {
                        cx.progress.warn(&format!(
                            "Lambda refused reserving {reserved} for {function} ({message}): this account keeps at least {floor} unreserved executions in {}, so the function runs without a reservation (`auto`). Request a higher \"Concurrent executions\" quota in Service Quotas to reserve",
                            cx.aws.region
                        ));
                        return Ok(Done {
                            outputs: vec![(
                                Output::ReservedConcurrency,
                                fallback.map(|f| f.to_string()),
                            )],
                            ..Done::default()
                        });
                    }
                }
                Action::Delete(function) => delete(cx.aws, function).await?,
            }
            Done::nothing()
        })
    }
}

/// What `put` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Put {
    Reserved,
    /// Lambda refused it for the account's floor (stated in its message) and the caller
    /// allowed going without a reservation (`reserved = "auto"`).
    Skipped {
        floor: i32,
        message: String,
    },
}

/// Reserves `reserved` for `function`. When Lambda refuses it for the account's floor and
/// `optional` (the reservation came from `auto`), nothing is reserved and the floor AWS
/// stated is returned; with an explicit number the error names that floor.
pub async fn put(aws: &Aws, function: &str, reserved: u32, optional: bool) -> Result<Put> {
    match aws
        .lambda
        .put_function_concurrency()
        .function_name(function)
        .reserved_concurrent_executions(reserved as i32)
        .send()
        .await
    {
        Ok(_) => Ok(Put::Reserved),
        Err(e) => {
            let message = e
                .as_service_error()
                .and_then(|s| aws_smithy_types::error::metadata::ProvideErrorMetadata::message(s))
                .unwrap_or_default()
                .to_string();
            match floor_in_message(&message) {
                Some(floor) if optional => Ok(Put::Skipped { floor, message }),
                Some(floor) => Err(anyhow::anyhow!(
                    "lambda:PutFunctionConcurrency {function} = {reserved}: {}. This account keeps at least {floor} unreserved executions in {}: deploy with a lower `--concurrency`, `--concurrency none`, or request a higher \"Concurrent executions\" quota in Service Quotas",
                    describe(&e),
                    aws.region
                )),
                None => Err(ctx(format!(
                    "lambda:PutFunctionConcurrency {function} = {reserved}"
                ))(e)),
            }
        }
    }
}

pub async fn delete(aws: &Aws, function: &str) -> Result<()> {
    aws.lambda
        .delete_function_concurrency()
        .function_name(function)
        .send()
        .await
        .or_not_found()
        .map_err(ctx(format!("lambda:DeleteFunctionConcurrency {function}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: &str = "claude-proxy-dev";
    const R: &str = "us-east-1";

    fn known(total: i32, unreserved: i32) -> AccountConcurrency {
        AccountConcurrency::Known { total, unreserved }
    }

    #[test]
    fn new_account_auto_degrades_with_a_note() {
        let d = decide(F, R, Some(17), true, None, Some(&known(10, 10)));
        assert_eq!(d.reserved, None);
        assert!(d.blocker.is_none());
        let note = d.note.unwrap();
        assert!(note.contains("quota in us-east-1 is 10"), "{note}");
        assert!(note.contains("Service Quotas"), "{note}");
    }

    #[test]
    fn new_account_explicit_is_a_blocker() {
        let d = decide(F, R, Some(5), false, None, Some(&known(10, 10)));
        let b = d.blocker.unwrap();
        assert!(b.contains("reserved concurrency 5 cannot be met"), "{b}");
        assert!(b.contains("at most 0"), "{b}");
    }

    #[test]
    fn large_account_reserves() {
        let d = decide(F, R, Some(17), true, None, Some(&known(1000, 1000)));
        assert_eq!(
            d,
            Decision {
                reserved: Some(17),
                note: None,
                blocker: None
            }
        );
        // 117 unreserved, floor 100: 17 fits, 18 does not.
        assert_eq!(
            decide(F, R, Some(17), false, None, Some(&known(1000, 117))).reserved,
            Some(17)
        );
        assert!(decide(F, R, Some(18), false, None, Some(&known(1000, 117)))
            .blocker
            .is_some());
        // The function's own reservation counts as available.
        assert!(
            decide(F, R, Some(20), false, Some(10), Some(&known(1000, 110)))
                .blocker
                .is_none()
        );
        // Lowering is always possible.
        assert!(decide(F, R, Some(5), false, Some(10), Some(&known(10, 0)))
            .blocker
            .is_none());
    }

    #[test]
    fn unknown_account_reserves_with_a_note() {
        let d = decide(
            F,
            R,
            Some(17),
            true,
            None,
            Some(&AccountConcurrency::Unknown {
                reason: "denied".into(),
            }),
        );
        assert_eq!(d.reserved, Some(17));
        assert!(d.note.unwrap().contains("denied"));
    }

    #[test]
    fn floor_from_aws_message() {
        let m = "Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [50].";
        assert_eq!(floor_in_message(m), Some(50));
        assert_eq!(floor_in_message("Function not found"), None);
    }
}
