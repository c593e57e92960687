//! `cargo xtask rollback [--to N]`: `live` back on the previous version (or N), in one
//! `UpdateAlias`, under the stack's deploy lock.

use crate::flags::{self, Common, EXIT_NOTHING_TO_DO};
use crate::lock;
use crate::output;
use crate::progress::Progress;
use crate::stack::StackContext;
use anyhow::Result;
use std::process::ExitCode;

impl flags::Rollback {
    pub async fn run(self, common: &Common, progress: &Progress) -> Result<ExitCode> {
        let ctx = StackContext::new(common).await?;
        let lock = lock::take(&ctx.aws, &ctx.stack, &self.lock, "rollback", progress).await?;
        if let Some((holder, why)) = &lock.took_over {
            progress.note(lock::took_over_note(&ctx.stack, holder, why));
        }
        progress.step(format!(
            "rolling back stack `{}` in {}",
            ctx.stack,
            ctx.where_()
        ));
        let result = infra::releases::rollback(&ctx.aws, &ctx.stack, self.to).await;
        let released = lock.release().await;
        let report = result?;
        released?;
        progress.finish();
        output::emit(common.output, &report)?;
        Ok(if report.changed {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(EXIT_NOTHING_TO_DO)
        })
    }
}
