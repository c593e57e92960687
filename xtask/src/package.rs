//! `cargo xtask package`: builds `bootstrap` (unless given one) and writes the deterministic
//! zip Lambda gets: `bootstrap` at the root, mode 0755, fixed timestamps.

use crate::build::{self, target_dir, Summary};
use crate::flags::{self, Arch, Builder, CodeArgs, Common, Runtime, TargetArgs};
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
        let arch = build::resolve_arch(self.arch, common)?;
        let runtime = self.target.runtime;
        let (bootstrap, report) = match &self.bootstrap {
            Some(path) => {
                let report = build::check_given(path, arch, runtime, self.target.static_)?;
                (path.clone(), report)
            }
            None => {
                let built = build::build(arch, &self.target, &self.build, progress).await?;
                (built.path, built.report)
            }
        };
        let summary = Summary::new(&bootstrap, arch, runtime, &report);
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
///
/// Whatever its source, `bootstrap` is ELF-checked against `arch` and the runtime the function
/// is deployed with before anything is uploaded.
pub async fn artifact(code: &CodeArgs, arch: Arch, progress: &Progress) -> Result<Artifact> {
    let runtime = build::deployed_runtime()?;
    if let Some(zip) = &code.zip {
        return read_zip(zip, arch, runtime);
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
        return read_zip(&path, arch, runtime);
    }
    let bootstrap = match &code.bootstrap {
        Some(path) => {
            build::check_given(path, arch, runtime, false)?;
            path.clone()
        }
        None => {
            let target = TargetArgs {
                static_: false,
                runtime,
            };
            build::build(arch, &target, &code.build, progress)
                .await?
                .path
        }
    };
    progress.step("packaging bootstrap");
    let artifact = Artifact::from_bootstrap(&bootstrap)?;
    write_zip(&default_zip_path(arch).await?, &artifact)?;
    Ok(artifact)
}

/// The container image for `package = "image"`: the static `bootstrap` (`--bootstrap`, which
/// must be static, or a fresh `--static` build) as the entry point of a single-manifest OCI
/// image on an empty base, built without a Docker daemon. ELF-checked like the zip's.
pub async fn image(code: &CodeArgs, arch: Arch, progress: &Progress) -> Result<artifacts::Image> {
    if code.builder == Builder::Docker {
        docker_builder()?;
    }
    if code.zip.is_some() || code.skip_build {
        bail!(
            "package = \"image\" needs a static `bootstrap`, not a zip: leave out --zip/--skip-build \
             to build one, or pass --bootstrap PATH with a static binary (`cargo xtask build --static`)"
        );
    }
    let runtime = build::deployed_runtime()?;
    let bootstrap = match &code.bootstrap {
        Some(path) => {
            build::check_given(path, arch, runtime, true)?;
            path.clone()
        }
        None => {
            let target = TargetArgs {
                static_: true,
                runtime,
            };
            build::build(arch, &target, &code.build, progress)
                .await?
                .path
        }
    };
    progress.step("building the container image (single manifest, no daemon)");
    let bytes =
        std::fs::read(&bootstrap).with_context(|| format!("reading {}", bootstrap.display()))?;
    let image = artifacts::Image::from_bootstrap(&bytes, arch);
    progress.note(format!(
        "image {} ({arch}, {} bytes compressed)",
        image.digest(),
        image.layer.bytes.len() + image.config.bytes.len()
    ));
    Ok(image)
}

/// `--builder docker`: needs a Docker engine; building through it is not implemented, so say
/// what works instead.
fn docker_builder() -> Result<()> {
    let engine = std::process::Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !engine {
        bail!("--builder docker: no Docker engine found (docker info failed); the default builder needs none: leave out --builder");
    }
    bail!(
        "--builder docker is not supported yet: the default builder (leave out --builder) makes the \
         same single-manifest image without a Docker daemon"
    )
}

/// A zip made elsewhere: checked to hold an executable `bootstrap` at its root that `arch`
/// and `runtime` can run.
fn read_zip(path: &Path, arch: Arch, runtime: Runtime) -> Result<Artifact> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(&bytes))
        .with_context(|| format!("{} is not a zip file", path.display()))?;
    let mut entry = archive.by_name("bootstrap").with_context(|| {
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
    let mut binary = Vec::new();
    std::io::Read::read_to_end(&mut entry, &mut binary)
        .with_context(|| format!("unzipping `bootstrap` from {}", path.display()))?;
    drop(entry);
    let shown = path.join("bootstrap");
    artifacts::elf::inspect_bytes(&shown, &binary)
        .and_then(|report| artifacts::elf::check_report(&report, runtime, arch))
        .with_context(|| {
            format!(
                "the `bootstrap` in {} cannot run on a {arch} function with {runtime}",
                path.display()
            )
        })?;
    let code_sha256 = code_sha256(&bytes);
    Ok(Artifact {
        zip: bytes,
        code_sha256,
    })
}
