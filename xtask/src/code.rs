//! The function's code as `package`, `plan` and `deploy` need it: the deterministic zip Lambda
//! gets (`bootstrap` at the root, mode 0755, fixed timestamps), reused while the binary is
//! unchanged; a zip made elsewhere, checked; or, for `package = "image"`, the OCI image of the
//! static `bootstrap`.

use crate::bootstrap::{self, check_given, fresh};
use crate::flags::{Arch, CodeArgs, Runtime, TargetArgs};
use crate::paths::target_dir;
use crate::progress::Progress;
use anyhow::{bail, Context, Result};
use infra::artifact::{code_sha256, Artifact};
use std::path::{Path, PathBuf};

/// `<target>/lambda/<arch>/bootstrap.zip`.
pub async fn default_zip_path(arch: Arch) -> Result<PathBuf> {
    Ok(target_dir()
        .await?
        .join("lambda")
        .join(arch.lambda_name())
        .join("bootstrap.zip"))
}

/// The zip of `bootstrap`, written to `out`, reused while the binary is unchanged. Its key
/// file `<out>.source` names the binary's SHA-256 and the zip's CodeSha256, and the identity
/// (size, modification time, inode: [`fresh::identity`]) of both files when it was written.
/// The same two files: the zip is reused as it is, nothing hashed. A byte-identical binary
/// (rebuilt, copied): the binary is hashed, the zip reused. Otherwise it is deflated again.
pub fn zip_bootstrap(bootstrap: &Path, out: &Path) -> Result<Artifact> {
    let key_path = source_key_path(out);
    let recorded = std::fs::read_to_string(&key_path).unwrap_or_default();
    let mut lines = recorded.lines();
    let (content, bin_id, zip_id) = (lines.next(), lines.next(), lines.next());
    if let (Some(content), Some(b), Some(z)) =
        (content, fresh::identity(bootstrap), fresh::identity(out))
    {
        if bin_id == Some(b.as_str()) && zip_id == Some(z.as_str()) {
            if let Some(code_sha256) = content.split(" code-sha256=").nth(1) {
                let zip =
                    std::fs::read(out).with_context(|| format!("reading {}", out.display()))?;
                return Ok(Artifact {
                    zip,
                    code_sha256: code_sha256.to_string(),
                });
            }
        }
    }
    let bytes = infra::artifact::read_bootstrap(bootstrap)?;
    let source = hex::encode(artifacts::digest::sha256(&bytes));
    let key = |code_sha256: &str| {
        format!("{ZIP_FORMAT} bootstrap-sha256={source} code-sha256={code_sha256}")
    };
    let artifact = match std::fs::read(out) {
        Ok(zip) if content == Some(key(&code_sha256(&zip)).as_str()) => Artifact {
            code_sha256: code_sha256(&zip),
            zip,
        },
        _ => {
            let artifact = Artifact::from_bootstrap_file(bootstrap, &bytes)?;
            if let Some(dir) = out.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            // The key goes last, so a zip is only ever reused after it was written whole.
            let _ = std::fs::remove_file(&key_path);
            std::fs::write(out, &artifact.zip)
                .with_context(|| format!("writing {}", out.display()))?;
            artifact
        }
    };
    let identities = match (fresh::identity(bootstrap), fresh::identity(out)) {
        (Some(b), Some(z)) => format!("{b}\n{z}\n"),
        _ => String::new(),
    };
    std::fs::write(
        &key_path,
        format!("{}\n{identities}", key(&artifact.code_sha256)),
    )
    .with_context(|| format!("writing {}", key_path.display()))?;
    Ok(artifact)
}

/// How `infra::artifact` lays out the zip, and the key's format; bump it when either
/// changes, so older packages are not reused.
const ZIP_FORMAT: &str = "zip-v2";

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
    let runtime = bootstrap::deployed_runtime()?;
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
    let bootstrap = bootstrap_binary(code, arch, runtime, false, progress).await?;
    progress.step("packaging bootstrap");
    zip_bootstrap(&bootstrap, &default_zip_path(arch).await?)
}

/// The container image for `package = "image"`: the static `bootstrap` (`--bootstrap`, which
/// must be static, or a fresh `--static` build) as the entry point of a single-manifest OCI
/// image on an empty base, built without a Docker daemon. ELF-checked like the zip's.
pub async fn image(code: &CodeArgs, arch: Arch, progress: &Progress) -> Result<artifacts::Image> {
    if code.zip.is_some() || code.skip_build {
        bail!(
            "package = \"image\" needs a static `bootstrap`, not a zip: leave out --zip/--skip-build \
             to build one, or pass --bootstrap PATH with a static binary (`cargo xtask build --static`)"
        );
    }
    let runtime = bootstrap::deployed_runtime()?;
    let bootstrap = bootstrap_binary(code, arch, runtime, true, progress).await?;
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

/// `--bootstrap PATH` (checked for `arch`, `runtime` and, with `static_`, static linking), or
/// a fresh build of it.
async fn bootstrap_binary(
    code: &CodeArgs,
    arch: Arch,
    runtime: Runtime,
    static_: bool,
    progress: &Progress,
) -> Result<PathBuf> {
    if let Some(path) = &code.bootstrap {
        check_given(path, arch, runtime, static_)?;
        return Ok(path.clone());
    }
    let target = TargetArgs { static_, runtime };
    Ok(
        bootstrap::build_if_changed(arch, &target, &code.build, progress)
            .await?
            .path,
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

        // The same bytes in a new file (a rebuild): hashed, and the zip reused.
        let written = modified(&out);
        let tmp = dir.path().join("bootstrap.new");
        std::fs::write(&tmp, b"\x7fELF second build").unwrap();
        std::fs::rename(&tmp, &bootstrap).unwrap();
        let rebuilt = zip_bootstrap(&bootstrap, &out).unwrap();
        assert_eq!(rebuilt.code_sha256, second.code_sha256);
        assert_eq!(modified(&out), written, "the zip was rewritten");
        // And then reused without hashing: the key names both files as they are.
        let key = std::fs::read_to_string(source_key_path(&out)).unwrap();
        assert_eq!(key.lines().count(), 3, "{key}");
        assert_eq!(
            zip_bootstrap(&bootstrap, &out).unwrap().code_sha256,
            second.code_sha256
        );

        // A zip changed behind the key's back is never reused.
        std::fs::write(&out, b"not the zip").unwrap();
        let repaired = zip_bootstrap(&bootstrap, &out).unwrap();
        assert_eq!(repaired.code_sha256, second.code_sha256);
        assert_eq!(std::fs::read(&out).unwrap(), second.zip);
    }
}
