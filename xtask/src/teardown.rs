//! `cargo xtask teardown`: the plan against an empty desired state, confirmed, applied under
//! the stack's deploy lock (which goes too). `--older-than` does that for every stack found
//! by its tags whose `created-at` is older than the given age.

use crate::flags::{self, Common, EXIT_CHANGES, EXIT_LOCKED, EXIT_NOTHING_TO_DO};
use crate::lock::{self, is_locked};
use crate::output::{self, show, show_plan};
use crate::progress::Progress;
use crate::prompt::confirm;
use crate::stack::StackContext;
use anyhow::Result;
use infra::discover::FoundStack;
use serde::Serialize;
use std::fmt;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

impl flags::Teardown {
    pub async fn run(self, common: &Common, progress: &Progress) -> Result<ExitCode> {
        if let Some(age) = self.older_than {
            return self.older_than(common, progress, age).await;
        }
        let ctx = StackContext::new(common).await?;
        progress.step(format!(
            "reading stack `{}` from {}",
            ctx.stack,
            ctx.where_()
        ));
        let plan = infra::teardown_plan(&ctx.aws, &ctx.stack).await?;
        let lock = infra::lock::read(&ctx.aws, &ctx.stack).await?;
        progress.finish();
        if plan.is_empty() && lock.is_none() {
            let report = infra::TeardownReport {
                stack: ctx.stack.clone(),
                deleted: Vec::new(),
            };
            output::emit(common.output, &report)?;
            return Ok(if self.dry_run {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_NOTHING_TO_DO)
            });
        }
        show_plan(common, &plan);
        if let Some((_, holder)) = &lock {
            show(
                common,
                format!(
                    "- deploy lock {} (held by {holder}; expires {})\n",
                    infra::lock::lock_name(&ctx.stack),
                    holder.expires_at
                ),
            );
        }
        if self.dry_run {
            return Ok(ExitCode::from(EXIT_CHANGES));
        }
        confirm(
            common,
            &format!(
                "Delete everything above (stack `{}` in {})?",
                ctx.stack,
                ctx.where_()
            ),
        )?;
        let report = teardown_locked(&ctx.aws, &ctx.stack, &self.lock, progress).await?;
        progress.finish();
        output::emit(common.output, &report)?;
        Ok(if report.deleted.is_empty() {
            ExitCode::from(EXIT_NOTHING_TO_DO)
        } else {
            ExitCode::SUCCESS
        })
    }

    async fn older_than(
        self,
        common: &Common,
        progress: &Progress,
        age: Duration,
    ) -> Result<ExitCode> {
        if common.stack.is_some() {
            anyhow::bail!("--older-than tears down every old stack it finds: leave out --stack (use --stack-prefix to narrow it)");
        }
        let ctx = StackContext::new(common).await?;
        progress.step(format!("finding stacks in {}", ctx.where_()));
        let found = infra::discover::find_stacks(&ctx.aws).await?;
        progress.finish();
        let now = SystemTime::now();
        let cutoff = now.checked_sub(age).unwrap_or(SystemTime::UNIX_EPOCH);
        let mut report = Cleanup {
            older_than: human(age),
            cutoff: infra::lock::rfc3339(cutoff),
            dry_run: self.dry_run,
            stacks: Vec::new(),
        };
        let mut old: Vec<&FoundStack> = Vec::new();
        for s in &found {
            if let Some(p) = &self.stack_prefix {
                if !s.stack.starts_with(p.as_str()) {
                    continue;
                }
            }
            let entry = |status: Status, detail: String| StackResult {
                stack: s.stack.clone(),
                created_at: s.created_at.clone(),
                status,
                detail,
                resources: s.resources.clone(),
                deleted: Vec::new(),
            };
            match s.created() {
                None => report.stacks.push(entry(
                    Status::Kept,
                    "no readable created-at tag: its age is unknown".into(),
                )),
                Some(t) if t > cutoff => report.stacks.push(entry(
                    Status::Kept,
                    format!(
                        "created {} ago",
                        human(now.duration_since(t).unwrap_or_default())
                    ),
                )),
                Some(_) => old.push(s),
            }
        }
        if !self.dry_run && !old.is_empty() {
            let names: Vec<&str> = old.iter().map(|s| s.stack.as_str()).collect();
            confirm(
                common,
                &format!(
                    "Tear down {} stack(s) created before {} ({}) in {}?",
                    old.len(),
                    report.cutoff,
                    names.join(", "),
                    ctx.where_()
                ),
            )?;
        }
        for s in old {
            let mut r = StackResult {
                stack: s.stack.clone(),
                created_at: s.created_at.clone(),
                status: Status::WouldDelete,
                detail: String::new(),
                resources: s.resources.clone(),
                deleted: Vec::new(),
            };
            if !self.dry_run {
                progress.step(format!("tearing down stack `{}`", s.stack));
                match teardown_locked(&ctx.aws, &s.stack, &self.lock, progress).await {
                    Ok(t) => {
                        r.status = Status::Deleted;
                        r.deleted = t.deleted;
                    }
                    Err(e) => {
                        r.status = if is_locked(&e) {
                            Status::Locked
                        } else {
                            Status::Failed
                        };
                        r.detail = format!("{e:#}");
                    }
                }
                progress.finish();
            }
            report.stacks.push(r);
        }
        output::emit(common.output, &report)?;
        let count = |st: Status| report.stacks.iter().filter(|s| s.status == st).count();
        Ok(if count(Status::Failed) > 0 {
            ExitCode::FAILURE
        } else if count(Status::Locked) > 0 {
            ExitCode::from(EXIT_LOCKED)
        } else if self.dry_run {
            if count(Status::WouldDelete) > 0 {
                ExitCode::from(EXIT_CHANGES)
            } else {
                ExitCode::SUCCESS
            }
        } else if count(Status::Deleted) > 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(EXIT_NOTHING_TO_DO)
        })
    }
}

/// Teardown of one stack under its lock; the lock (also a stale one left by a killed run)
/// is deleted at the end.
async fn teardown_locked(
    aws: &infra::aws::Aws,
    stack: &str,
    lock_args: &flags::LockArgs,
    progress: &Progress,
) -> Result<infra::TeardownReport> {
    let lock = lock::take(aws, stack, lock_args, "teardown", progress).await?;
    let result = infra::teardown(aws, stack, progress).await;
    let took_over = lock.took_over.clone();
    let released = lock.release().await;
    let mut report = result?;
    released?;
    if let Some((holder, why)) = took_over {
        progress.note(lock::took_over_note(stack, &holder, &why));
        report.deleted.push(format!(
            "delete stale deploy lock {} (held by {holder}: {why})",
            infra::lock::lock_name(stack)
        ));
    }
    Ok(report)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Status {
    /// Younger than --older-than (or of unknown age).
    Kept,
    /// --dry-run: old enough, would be torn down.
    WouldDelete,
    Deleted,
    /// Another run holds its deploy lock.
    Locked,
    Failed,
}

#[derive(Debug, Serialize)]
struct StackResult {
    stack: String,
    created_at: Option<String>,
    status: Status,
    #[serde(skip_serializing_if = "String::is_empty")]
    detail: String,
    /// What was found for the stack.
    resources: Vec<String>,
    /// What the teardown deleted.
    deleted: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Cleanup {
    older_than: String,
    /// Stacks created before this are torn down.
    cutoff: String,
    dry_run: bool,
    stacks: Vec<StackResult>,
}

impl fmt::Display for Cleanup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.stacks.is_empty() {
            return writeln!(f, "no stacks found.");
        }
        for s in &self.stacks {
            let created = s.created_at.as_deref().unwrap_or("unknown");
            match s.status {
                Status::Kept => writeln!(
                    f,
                    "kept         {} (created {created}: {})",
                    s.stack, s.detail
                )?,
                Status::WouldDelete => {
                    writeln!(f, "would delete {} (created {created}):", s.stack)?;
                    for r in &s.resources {
                        writeln!(f, "  - {r}")?;
                    }
                }
                Status::Deleted => {
                    writeln!(
                        f,
                        "deleted      {} (created {created}): {} resources",
                        s.stack,
                        s.deleted.len()
                    )?;
                    for d in &s.deleted {
                        writeln!(f, "  - {d}")?;
                    }
                }
                Status::Locked => writeln!(f, "locked       {}: {}", s.stack, s.detail)?,
                Status::Failed => writeln!(f, "FAILED       {}: {}", s.stack, s.detail)?,
            }
        }
        Ok(())
    }
}

/// `1d 2h 3m 4s` (zero parts left out).
fn human(d: Duration) -> String {
    let mut left = d.as_secs();
    let mut parts = Vec::new();
    for (unit, size) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] {
        if left >= size {
            parts.push(format!("{}{unit}", left / size));
            left %= size;
        }
    }
    if parts.is_empty() {
        "0s".to_string()
    } else {
        parts.join(" ")
    }
}
