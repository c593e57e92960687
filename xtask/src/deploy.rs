//! `cargo xtask deploy`: plan, show, confirm, apply, print the outputs.
//! `--local` lives in `local.rs`.

use crate::flags::{self, Common, OutputFormat};
use crate::lock;
use crate::output::{self, show_plan};
use crate::planning::compute;
use crate::progress::Progress;
use crate::prompt::{api_key, confirm};
use crate::stack::StackContext;
use anyhow::{bail, Result};
use infra::alias::release::ReleaseStopped;
use infra::secret::SecretInput;
use std::process::ExitCode;

impl flags::Deploy {
    pub async fn run(self, common: &Common, progress: &Progress) -> Result<ExitCode> {
        if self.local {
            return crate::local::deploy_local(self, common, progress).await;
        }
        let secret = SecretInput {
            anthropic_api_key: api_key(self.api_key_stdin)?,
            rotate_token: self.rotate_token,
        };
        let ctx = StackContext::with_stack_args(common, &self.stack).await?;
        let (desired, plan) =
            compute(&ctx, &self.code, secret, !self.skip_smoke_test, progress).await?;

        if plan.is_empty() && self.dry_run {
            progress.finish();
            show_plan(common, &plan);
            return Ok(ExitCode::SUCCESS);
        }
        if plan.is_empty() {
            // Nothing to change: apply makes no mutating call and reports the outputs.
            let outputs = infra::apply(&ctx.aws, &plan, &desired, progress).await?;
            progress.finish();
            output::emit(common.output, &outputs)?;
            return Ok(ExitCode::from(flags::EXIT_NOTHING_TO_DO));
        }
        show_plan(common, &plan);
        if !plan.blockers.is_empty() {
            bail!(
                "the plan cannot be applied:\n  - {}",
                plan.blockers.join("\n  - ")
            );
        }
        if self.dry_run {
            return dry_run(common, &ctx, &plan, &desired).await;
        }
        confirm(
            common,
            &format!(
                "Apply these changes to stack `{}` in {}?",
                ctx.stack,
                ctx.where_()
            ),
        )?;

        // Under the stack's lock: read the account again (another run may have changed it
        // while we planned or waited) and apply that plan.
        let lock = lock::take(&ctx.aws, &ctx.stack, &self.lock, "deploy", progress).await?;
        if let Some((holder, why)) = &lock.took_over {
            progress.note(lock::took_over_note(&ctx.stack, holder, why));
        }
        let result = async {
            let actual = infra::actual::read_for(&ctx.aws, &desired).await?;
            let fresh = infra::plan::plan(&desired, &actual);
            if fresh.to_string() != plan.to_string() {
                if fresh.is_empty() {
                    progress.note("another run applied these changes meanwhile: nothing left to do");
                } else if common.yes {
                    progress.note("the stack changed while waiting for its lock; applying the plan as it is now:");
                    show_plan(common, &fresh);
                } else {
                    bail!("stack `{}` changed while waiting for its lock: nothing was applied; run `cargo xtask deploy` again to see the new plan", ctx.stack);
                }
            }
            if !fresh.blockers.is_empty() {
                bail!(
                    "the plan cannot be applied:\n  - {}",
                    fresh.blockers.join("\n  - ")
                );
            }
            let outputs = infra::apply(&ctx.aws, &fresh, &desired, progress)
                .await
                .map_err(|e| {
                    if e.downcast_ref::<ReleaseStopped>().is_some() {
                        e.context(format!(
                            "stack `{}`: the new version was not released (everything else is applied); \
                             fix the code or configuration and deploy again (`cargo xtask releases` lists the versions)",
                            ctx.stack
                        ))
                    } else {
                        e.context(format!(
                            "deploying stack `{}` failed part way; run `cargo xtask deploy` again to finish, \
                             or `cargo xtask teardown --stack {}` to remove what was created",
                            ctx.stack, ctx.stack
                        ))
                    }
                })?;
            Ok((fresh.is_empty(), outputs))
        }
        .await;
        let released = lock.release().await;
        let (nothing, outputs) = result?;
        released?;
        progress.finish();
        output::emit(common.output, &outputs)?;
        Ok(if nothing {
            ExitCode::from(flags::EXIT_NOTHING_TO_DO)
        } else {
            ExitCode::SUCCESS
        })
    }
}

/// `deploy --dry-run`: the plan's steps through the writer in dry-run mode, which runs none
/// of them; each one it would run is printed ("would create function ..."). Exit 2: there
/// are changes to apply.
async fn dry_run(
    common: &Common,
    ctx: &StackContext,
    plan: &infra::plan::Plan,
    desired: &infra::Desired,
) -> Result<ExitCode> {
    let lines = WouldRun(common.output);
    infra::apply_with(
        &ctx.aws,
        plan,
        desired,
        &lines,
        infra::ApplyOptions { dry_run: true },
    )
    .await?;
    let done = format!(
        "dry run: {} step(s) would run against stack `{}` in {}; nothing was changed",
        plan.changes.len(),
        ctx.stack,
        ctx.where_()
    );
    match common.output {
        OutputFormat::Text => println!("{done}"),
        OutputFormat::Json => eprintln!("{done}"),
    }
    Ok(ExitCode::from(flags::EXIT_CHANGES))
}

/// Prints each step a dry run would run, one line each (stdout, or stderr when stdout
/// carries JSON, like the plan).
struct WouldRun(OutputFormat);

impl infra::Progress for WouldRun {
    fn start(&self, step: &str) {
        match self.0 {
            OutputFormat::Text => println!("{step}"),
            OutputFormat::Json => eprintln!("{step}"),
        }
    }
    fn finish(&self, _: &str) {}
    fn warn(&self, message: &str) {
        eprintln!("warning: {message}");
    }
}
