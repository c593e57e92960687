//! Waiting for Lambda: while a just-created role is not yet usable (`CreateFunction` and
//! `UpdateFunctionConfiguration` name it), and until a created function is Active or an
//! update has finished (the SDK's waiters).

use crate::aws::{Aws, IamRetry};
use anyhow::Result;
use std::time::Duration;

/// How long the waiters wait for Lambda before giving up.
pub const WAIT: Duration = Duration::from_secs(300);

/// The two messages Lambda gives while a just-created role is not yet usable.
pub const IAM_PROPAGATION_ERRORS: [&str; 2] = [
    "The role defined for the function cannot be assumed by Lambda",
    "The provided execution role does not have permissions",
];

/// True for the errors Lambda gives while IAM propagates a new role.
pub fn is_iam_propagation_error(message: &str) -> bool {
    IAM_PROPAGATION_ERRORS.iter().any(|m| message.contains(m))
}

/// Runs `call` while it fails with one of Lambda's IAM-propagation errors, with the
/// backoff of `retry` ([`crate::aws::retry_while`]).
pub async fn retry_iam_propagation<T, E, R, F, Fut>(
    retry: &IamRetry,
    on_retry: &dyn Fn(&str),
    call: F,
) -> Result<T, aws_smithy_runtime_api::client::result::SdkError<E, R>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<
        Output = Result<T, aws_smithy_runtime_api::client::result::SdkError<E, R>>,
    >,
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata,
{
    crate::aws::retry_while(
        retry,
        "the new role is not usable yet",
        |_, message| is_iam_propagation_error(message),
        on_retry,
        call,
    )
    .await
}

pub(super) async fn wait_active(aws: &Aws, name: &str) -> Result<()> {
    use aws_sdk_lambda::client::Waiters;
    aws.lambda
        .wait_until_function_active_v2()
        .function_name(name)
        .wait(WAIT)
        .await
        .map_err(|e| anyhow::anyhow!("waiting for {name} to become Active: {e:?}"))?;
    Ok(())
}

pub(super) async fn wait_updated(aws: &Aws, name: &str) -> Result<()> {
    use aws_sdk_lambda::client::Waiters;
    aws.lambda
        .wait_until_function_updated_v2()
        .function_name(name)
        .wait(WAIT)
        .await
        .map_err(|e| anyhow::anyhow!("waiting for the update of {name} to finish: {e:?}"))?;
    Ok(())
}
