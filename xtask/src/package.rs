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

/// `<target>/lambda/<arch>/bootstrap.zip`.
pub async fn default_zip_path(arch: Arch) -> Result<PathBuf> {
    Ok(target_dir()
        .await?
        .join("lambda")
        .join(arch.lambda_name())
        .join("bootstrap.zip"))
}

/// The zip of `bootstrap`, written to `out`. When `out` already holds the zip of a
/// byte-identical `bootstrap` (its key file `<out>.source` names the binary's SHA-256 and the
/// zip's CodeSha256, and the zip still has that CodeSha256), it is reused: a redeploy of an
/// unchanged build hashes the binary instead of deflating it again.
fn zip_bootstrap(bootstrap: &Path, out: &Path) -> Result<Artifact> {
    let bytes = infra::artifact::read_bootstrap(bootstrap)?;
    let source = hex::encode(artifacts::digest::sha256(&bytes));
    let key_path = source_key_path(out);
    let key = |code_sha256: &str| {
        format!("{ZIP_FORMAT} bootstrap-sha256={source} code-sha256={code_sha256}\n")
    };
    if let (Ok(recorded), Ok(zip)) = (std::fs::read_to_string(&key_path), std::fs::read(out)) {
        let code_sha256 = code_sha256(&zip);
        if recorded == key(&code_sha256) {
            return Ok(Artifact { zip, code_sha256 });
        }
    }
    let artifact = Artifact::from_bootstrap_file(bootstrap, &bytes)?;
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // The key goes last, so a zip is only ever reused after it was written whole.
    let _ = std::fs::remove_file(&key_path);
    std::fs::write(out, &artifact.zip).with_context(|| format!("writing {}", out.display()))?;
    std::fs::write(&key_path, key(&artifact.code_sha256))
        .with_context(|| format!("writing {}", key_path.display()))?;
    Ok(artifact)
}

/// How `infra::artifact` lays out the zip; bump it when that changes, so older packages are
/// not reused.
const ZIP_FORMAT: &str = "zip-v1";

/// `<out>.source`: which binary the zip at `out` holds.
fn source_key_path(out: &Path) -> PathBuf {
    let mut name = out.as_os_str().to_owned();
    name.push(".source");
    PathBuf::from(name)
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
    zip_bootstrap(&bootstrap, &default_zip_path(arch).await?)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn modified(path: &Path) -> std::time::SystemTime {
        std::fs::metadata(path).unwrap().modified().unwrap()
    }

    #[test]
    fn an_unchanged_bootstrap_reuses_its_zip_and_a_changed_one_is_repacked() {
        let dir = tempfile::tempdir().unwrap();
        let bootstrap = dir.path().join("bootstrap");
        let out = dir.path().join("lambda/x86_64/bootstrap.zip");
        std::fs::write(&bootstrap, b"\x7fELF first build").unwrap();
        let first = zip_bootstrap(&bootstrap, &out).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), first.zip);
        let written = modified(&out);

        // Same bytes: the zip on disk is reused, not written again.
        let again = zip_bootstrap(&bootstrap, &out).unwrap();
        assert_eq!(again.code_sha256, first.code_sha256);
        assert_eq!(modified(&out), written, "the zip was rewritten");

        // New bytes: a new zip, whose key names them.
        std::fs::write(&bootstrap, b"\x7fELF second build").unwrap();
        let second = zip_bootstrap(&bootstrap, &out).unwrap();
        assert_ne!(second.code_sha256, first.code_sha256);
        assert_eq!(
            second.code_sha256,
            Artifact::from_bootstrap_bytes(b"\x7fELF second build")
                .unwrap()
                .code_sha256
        );

        // A zip changed behind the key's back is never reused.
        std::fs::write(&out, b"not the zip").unwrap();
        let repaired = zip_bootstrap(&bootstrap, &out).unwrap();
        assert_eq!(repaired.code_sha256, second.code_sha256);
        assert_eq!(std::fs::read(&out).unwrap(), second.zip);
    }
}
