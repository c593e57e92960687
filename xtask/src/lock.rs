//! The stack's deploy lock as `deploy` and `teardown` take it (`infra::lock` holds the lock
//! itself), and how a held lock ends the process (exit 4).

use crate::flags::{LockArgs, EXIT_LOCKED};
use crate::progress::Progress;
use anyhow::Result;
use infra::aws::Aws;
use infra::lock::Holder;
use infra::StackLock;
use std::process::ExitCode;

/// Takes `stack`'s deploy lock for `operation`, saying on stderr while it waits.
pub async fn take(
    aws: &Aws,
    stack: &str,
    args: &LockArgs,
    operation: &str,
    progress: &Progress,
) -> Result<StackLock> {
    let opts = args.options(operation);
    let note = |m: &str| progress.note(m);
    infra::lock::acquire(aws, stack, &opts, &note).await
}

/// What to say when a stale lock was taken over.
pub fn took_over_note(stack: &str, holder: &Holder, why: &str) -> String {
    format!("took over the stale deploy lock of stack `{stack}` held by {holder}: {why}")
}

/// True when the error (or a cause) is a held deploy lock.
pub fn is_locked(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<infra::LockHeld>())
}

/// The exit code of a failed command: [`EXIT_LOCKED`] for a held lock, else 1.
pub fn failure_code(e: &anyhow::Error) -> ExitCode {
    if is_locked(e) {
        ExitCode::from(EXIT_LOCKED)
    } else {
        ExitCode::FAILURE
    }
}
