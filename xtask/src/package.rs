//! `cargo xtask package`: builds `bootstrap` (unless given one) and writes the deterministic
//! zip Lambda gets (`crate::code`).

use crate::bootstrap::{self, Summary};
use crate::code::{default_zip_path, zip_bootstrap};
use crate::flags::{self, Arch, Common, Runtime};
use crate::output;
use crate::progress::Progress;
use anyhow::Result;
use serde::Serialize;
use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;

impl flags::Package {
    pub async fn run(self, common: &Common, progress: &Progress) -> Result<ExitCode> {
        let arch = bootstrap::resolve_arch(self.arch, common)?;
        let runtime = self.target.runtime;
        let (bootstrap, report) = match &self.bootstrap {
            Some(path) => {
                let report = bootstrap::check_given(path, arch, runtime, self.target.static_)?;
                (path.clone(), report)
            }
            None => {
                let built =
                    bootstrap::build_if_changed(arch, &self.target, &self.build, progress).await?;
                (built.path, built.report)
            }
        };
        let summary = Summary::new(&bootstrap, arch, runtime, &report);
        progress.step(format!("packaging {}", bootstrap.display()));
        let out = match self.out {
            Some(p) => p,
            None => default_zip_path(arch).await?,
        };
        let artifact = zip_bootstrap(&bootstrap, &out)?;
        progress.finish();
        let packaged = Packaged {
            path: out,
            arch,
            runtime,
            static_: summary.static_,
            max_glibc: summary.max_glibc.clone(),
            linkage: summary.linkage(),
            bootstrap,
            size: artifact.zip.len(),
            code_sha256: artifact.code_sha256,
        };
        output::emit(common.output, &packaged)?;
        Ok(ExitCode::SUCCESS)
    }
}

#[derive(Serialize)]
struct Packaged {
    path: PathBuf,
    arch: Arch,
    runtime: Runtime,
    #[serde(rename = "static")]
    static_: bool,
    /// The newest glibc `bootstrap` needs (`None` when static).
    max_glibc: Option<String>,
    #[serde(skip)]
    linkage: String,
    bootstrap: PathBuf,
    size: usize,
    code_sha256: String,
}

impl fmt::Display for Packaged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "path:        {}", self.path.display())?;
        writeln!(f, "arch:        {}", self.arch)?;
        writeln!(f, "runtime:     {}", self.runtime)?;
        writeln!(f, "bootstrap:   {}", self.bootstrap.display())?;
        writeln!(f, "glibc:       {}", self.linkage)?;
        writeln!(f, "size:        {} bytes", self.size)?;
        write!(f, "CodeSha256:  {}", self.code_sha256)
    }
}
