//! `cargo xtask package`: builds `bootstrap` (unless given one) and writes the deterministic
//! zip Lambda gets: `bootstrap` at the root, mode 0755, fixed timestamps.

use crate::build::{self, target_dir};
use crate::flags::{self, Arch, CodeArgs, Common};
use crate::output;
use crate::progress::Progress;
use anyhow::{bail, Context, Result};
use infra::artifact::{code_sha256, Artifact};
use serde::Serialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

impl flags::Package {
    pub async fn run(self, common: &Common, progress: &Progress) -> Result<ExitCode> {
        let arch = match self.arch {
            Some(a) => a,
            None => crate::stack::arch(
                crate::stack::load_config(common, &crate::stack::base_overrides(common))?
                    .1
                    .function
                    .architecture,
            ),
        };
        let bootstrap = match &self.bootstrap {
            Some(path) => {
                build::check_given(path)?;
                path.clone()
            }
            None => build::build(arch, &self.build, progress).await?.path,
        };
        progress.step(format!("packaging {}", bootstrap.display()));
        let artifact = Artifact::from_bootstrap(&bootstrap)?;
        let out = match self.out {
            Some(p) => p,
            None => default_zip_path(arch).await?,
        };
        write_zip(&out, &artifact)?;
        progress.finish();
        let packaged = Packaged {
            path: out,
            arch: arch.lambda_name(),
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
    arch: &'static str,
    size: usize,
    code_sha256: String,
}

impl fmt::Display for Packaged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "path:        {}", self.path.display())?;
        writeln!(f, "arch:        {}", self.arch)?;
        writeln!(f, "size:        {} bytes", self.size)?;
        write!(f, "CodeSha256:  {}", self.code_sha256)
    }
}

/// `<target>/lambda/<arch>/bootstrap.zip`.
pub async fn default_zip_path(arch: Arch) -> Result<PathBuf> {
    Ok(target_dir()
        .await?
        .join("lambda")
        .join(arch.lambda_name())
        .join("bootstrap.zip"))
}

fn write_zip(path: &Path, artifact: &Artifact) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, &artifact.zip).with_context(|| format!("writing {}", path.display()))
}

/// The function's code for plan/deploy: `--zip`, `--bootstrap`, `--skip-build` (last
/// package) or a fresh build; a built or given bootstrap is also written as the package.
pub async fn artifact(code: &CodeArgs, arch: Arch, progress: &Progress) -> Result<Artifact> {
    if let Some(zip) = &code.zip {
        return read_zip(zip);
    }
    if code.skip_build {
        let path = default_zip_path(arch).await?;
        if !path.is_file() {
            bail!(
                "--skip-build: there is no package at {} yet: run `cargo xtask package --arch {}` first",
                path.display(),
                arch.lambda_name()
            );
        }
        return read_zip(&path);
    }
    let bootstrap = match &code.bootstrap {
        Some(path) => {
            build::check_given(path)?;
            path.clone()
        }
        None => build::build(arch, &code.build, progress).await?.path,
    };
    progress.step("packaging bootstrap");
    let artifact = Artifact::from_bootstrap(&bootstrap)?;
    write_zip(&default_zip_path(arch).await?, &artifact)?;
    Ok(artifact)
}

/// A zip made elsewhere: checked to hold an executable `bootstrap` at its root.
fn read_zip(path: &Path) -> Result<Artifact> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(&bytes))
        .with_context(|| format!("{} is not a zip file", path.display()))?;
    let entry = archive.by_name("bootstrap").with_context(|| {
        format!(
            "{} has no `bootstrap` at its root: package it with `cargo xtask package`",
            path.display()
        )
    })?;
    if entry.unix_mode().is_some_and(|m| m & 0o111 == 0) {
        bail!(
            "`bootstrap` in {} is not executable: package it with `cargo xtask package`",
            path.display()
        );
    }
    drop(entry);
    let code_sha256 = code_sha256(&bytes);
    Ok(Artifact {
        zip: bytes,
        code_sha256,
    })
}
