//! Teardown: the plan against an empty desired state, applied. Resources are found by
//! their deterministic names (and HTTP APIs by tag too), so it works without any local
//! state, after a deploy that crashed halfway, and a second run is a no-op.

use crate::actual::read_actual;
use crate::apply::{apply, Outputs};
use crate::aws::Aws;
use crate::desired::Desired;
use crate::plan::{plan, Plan};
use crate::progress::Progress;
use anyhow::{bail, Result};
use serde::Serialize;
use std::fmt;

#[derive(Debug, Clone, Serialize)]
pub struct TeardownReport {
    pub stack: String,
    /// What was deleted, in order (e.g. "delete function claude-proxy-dev").
    pub deleted: Vec<String>,
}

impl TeardownReport {
    pub fn nothing_to_do(&self) -> bool {
        self.deleted.is_empty()
    }
}

impl fmt::Display for TeardownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.deleted.is_empty() {
            return writeln!(f, "stack `{}`: nothing to delete.", self.stack);
        }
        writeln!(
            f,
            "stack `{}`: {} resources deleted:",
            self.stack,
            self.deleted.len()
        )?;
        for d in &self.deleted {
            writeln!(f, "  - {d}")?;
        }
        Ok(())
    }
}

/// The teardown plan (what `teardown` would delete), for a confirmation prompt.
pub async fn teardown_plan(aws: &Aws, stack: &str) -> Result<Plan> {
    let desired = Desired::empty(stack)?;
    let actual = read_actual(aws, stack).await?;
    Ok(plan(&desired, &actual))
}

/// Deletes everything the stack created, then checks nothing is left. IAM, Lambda and
/// Secrets Manager reads lag deletes for a while, so the check re-reads (with the backoff of
/// `aws.iam_retry`, bounded by its `max_total`) until the reads catch up; only what is still
/// there after that is reported as left behind.
pub async fn teardown(aws: &Aws, stack: &str, progress: &dyn Progress) -> Result<TeardownReport> {
    let desired = Desired::empty(stack)?;
    let p = teardown_plan(aws, stack).await?;
    let outputs: Outputs = apply(aws, &p, &desired, progress).await?;
    let started = std::time::Instant::now();
    let mut delay = aws.iam_retry.base;
    loop {
        let left = read_actual(aws, stack).await?;
        if left.is_empty() {
            break;
        }
        let again = plan(&desired, &left);
        if started.elapsed() + delay > aws.iam_retry.max_total {
            bail!(
                "teardown of stack `{stack}` left resources behind, still there after {:.0?} (run it again, or delete them by hand):\n{again}",
                started.elapsed()
            );
        }
        tracing::debug!(
            target: "infra::teardown",
            "reads still show {} resource(s) of stack `{stack}` after deleting them; re-reading in {delay:.1?}",
            again.changes.len()
        );
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(aws.iam_retry.max_delay);
    }
    Ok(TeardownReport {
        stack: stack.to_string(),
        deleted: outputs.steps,
    })
}
