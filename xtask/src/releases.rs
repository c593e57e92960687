//! `cargo xtask releases`: the function's published versions and where `live` points.

use crate::flags::{self, Common};
use crate::output;
use crate::stack::StackContext;
use anyhow::Result;
use std::process::ExitCode;

impl flags::Releases {
    pub async fn run(self, common: &Common) -> Result<ExitCode> {
        let ctx = StackContext::new(common).await?;
        let releases = infra::releases::read(&ctx.aws, &ctx.stack).await?;
        output::emit(common.output, &releases)?;
        Ok(ExitCode::SUCCESS)
    }
}
