//! `cargo xtask build`: compiles the handler's `bootstrap` for a Lambda target
//! (`crate::bootstrap`) and reports what was built.

use crate::bootstrap::{build, resolve_arch, Summary};
use crate::flags::{self, Common};
use crate::output;
use crate::progress::Progress;
use anyhow::Result;
use std::process::ExitCode;

impl flags::Build {
    pub async fn run(self, common: &Common, progress: &Progress) -> Result<ExitCode> {
        let arch = resolve_arch(self.arch, common)?;
        let built = build(arch, &self.target, &self.build, progress).await?;
        progress.finish();
        output::emit(
            common.output,
            &Summary::new(&built.path, arch, self.target.runtime, &built.report),
        )?;
        Ok(ExitCode::SUCCESS)
    }
}
