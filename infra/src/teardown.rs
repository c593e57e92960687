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

/// Deletes everything the stack created, then checks nothing is left.
pub async fn teardown(aws: &Aws, stack: &str, progress: &dyn Progress) -> Result<TeardownReport> {
    let desired = Desired::empty(stack)?;
    let p = teardown_plan(aws, stack).await?;
    let outputs: Outputs = apply(aws, &p, &desired, progress).await?;
    let left = read_actual(aws, stack).await?;
    if !left.is_empty() {
        let again = plan(&desired, &left);
        bail!(
            "teardown of stack `{stack}` left resources behind (run it again, or delete them by hand):\n{again}"
        );
    }
    Ok(TeardownReport {
        stack: stack.to_string(),
        deleted: outputs.steps,
    })
}
