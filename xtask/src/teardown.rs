//! `cargo xtask teardown`: the plan against an empty desired state, confirmed, applied.

use crate::deploy::confirm;
use crate::flags::{self, Common};
use crate::output;
use crate::progress::Progress;
use crate::stack::StackContext;
use anyhow::Result;
use std::process::ExitCode;

impl flags::Teardown {
    pub async fn run(self, common: &Common, progress: &Progress) -> Result<ExitCode> {
        let ctx = StackContext::new(common).await?;
        progress.step(format!(
            "reading stack `{}` from {}",
            ctx.stack,
            ctx.where_()
        ));
        let plan = infra::teardown_plan(&ctx.aws, &ctx.stack).await?;
        progress.finish();
        if plan.is_empty() {
            let report = infra::TeardownReport {
                stack: ctx.stack.clone(),
                deleted: Vec::new(),
            };
            output::emit(common.output, &report)?;
            return Ok(ExitCode::SUCCESS);
        }
        crate::deploy::show_plan(common, &plan);
        confirm(
            common,
            &format!(
                "Delete everything above (stack `{}` in {})?",
                ctx.stack,
                ctx.where_()
            ),
        )?;
        let report = infra::teardown(&ctx.aws, &ctx.stack, progress).await?;
        progress.finish();
        output::emit(common.output, &report)?;
        Ok(ExitCode::SUCCESS)
    }
}
