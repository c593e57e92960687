//! `cargo xtask build`: compiles the handler's `bootstrap` for Lambda (`provided.al2023`).

use crate::cmd::{cargo, cmd};
use crate::flags::{self, Arch, BuildArgs, Common};
use crate::progress::Progress;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `provided.al2023` ships glibc 2.34: a binary asking for a newer symbol version dies at
/// cold start with "version `GLIBC_2.xx' not found".
pub const RUNTIME_GLIBC: (u32, u32) = (2, 34);
pub const RUNTIME: &str = "provided.al2023";

impl flags::Build {
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
        let built = build(arch, &self.build, progress).await?;
        progress.finish();
        println!("{}", built.path.display());
        Ok(ExitCode::SUCCESS)
    }
}

/// A `bootstrap` executable built for Lambda.
#[derive(Debug, Clone)]
pub struct Built {
    pub path: PathBuf,
}

/// The workspace root (xtask lives one level below it).
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_path_buf()
}

/// Cargo's target directory for this workspace (honours `CARGO_TARGET_DIR` and config).
pub async fn target_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        return Ok(if dir.is_absolute() {
            dir
        } else {
            project_root().join(dir)
        });
    }
    let json = cmd(cargo(), ["metadata", "--format-version", "1", "--no-deps"])
        .dir(&project_root())
        .read()
        .await
        .context("asking cargo where the target directory is")?;
    let meta: serde_json::Value =
        serde_json::from_str(&json).context("parsing `cargo metadata` output")?;
    let dir = meta["target_directory"]
        .as_str()
        .context("`cargo metadata` printed no target_directory")?;
    Ok(PathBuf::from(dir))
}

pub async fn build(arch: Arch, args: &BuildArgs, progress: &Progress) -> Result<Built> {
    let triple = arch.rust_target();
    check_toolchain(arch).await?;
    let profile = if args.debug { "debug" } else { "release" };
    progress.step(format!(
        "building bootstrap ({profile}, {triple}, {RUNTIME})"
    ));
    let mut build_args = vec![
        "build",
        "-p",
        "claude-lambda-handler",
        "--bin",
        "bootstrap",
        "--target",
        triple,
    ];
    if !args.debug {
        build_args.push("--release");
    }
    cmd(cargo(), build_args)
        .dir(&project_root())
        .run()
        .await
        .context("building the handler (the compiler errors are above)")?;
    let path = target_dir()
        .await?
        .join(triple)
        .join(profile)
        .join("bootstrap");
    if !path.is_file() {
        bail!(
            "cargo reported success but {} does not exist",
            path.display()
        );
    }
    match check_glibc(&path)? {
        Some((major, minor)) => progress.note(format!(
            "{} needs glibc {major}.{minor}; {RUNTIME} ships {}.{}: ok",
            path.display(),
            RUNTIME_GLIBC.0,
            RUNTIME_GLIBC.1
        )),
        None => progress.note(format!(
            "{} is static: no glibc requirement",
            path.display()
        )),
    }
    Ok(Built { path })
}

async fn host_triple() -> Result<String> {
    let v = cmd("rustc", ["-vV"]).read().await?;
    v.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_owned)
        .context("`rustc -vV` printed no host triple")
}

/// The Rust target must be installed; a cross build also needs a linker for it.
async fn check_toolchain(arch: Arch) -> Result<()> {
    let triple = arch.rust_target();
    let sysroot = cmd("rustc", ["--print", "sysroot"]).read().await?;
    let installed = Path::new(sysroot.trim())
        .join("lib/rustlib")
        .join(triple)
        .is_dir();
    if !installed {
        bail!(
            "the Rust target {triple} is not installed. Install it with:\n    rustup target add {triple}{}",
            linker_hint(arch)
        );
    }
    if host_triple().await? == triple {
        return Ok(());
    }
    let var = format!(
        "CARGO_TARGET_{}_LINKER",
        triple.to_uppercase().replace('-', "_")
    );
    let gcc = format!("{}-linux-gnu-gcc", triple.split('-').next().unwrap_or(""));
    if std::env::var_os(&var).is_none() {
        bail!(
            "building {triple} on this machine is a cross build, and {var} is not set.{}\n\
             Cross-building is not otherwise supported by `cargo xtask build` yet \
             (no zig / cargo-zigbuild integration); building on an {} machine works without this.",
            linker_hint(arch),
            arch.lambda_name(),
        );
    }
    tracing::debug!(%var, %gcc, "cross build with a configured linker");
    Ok(())
}

fn linker_hint(arch: Arch) -> String {
    match arch {
        Arch::Arm64 => "\nOn an x86_64 machine a cross build also needs a linker and C compiler for it, e.g.:\n    \
             sudo apt-get install gcc-aarch64-linux-gnu\n    \
             export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc\n    \
             export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc"
            .to_string(),
        Arch::X86_64 => "\nOn a non-x86_64 machine a cross build also needs a linker for it, e.g.:\n    \
             export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER=x86_64-linux-gnu-gcc"
            .to_string(),
    }
}

/// A `--bootstrap PATH` given by the user: it must exist and suit the runtime.
pub fn check_given(path: &Path) -> Result<Option<(u32, u32)>> {
    if !path.is_file() {
        bail!(
            "--bootstrap {}: no such file. Build it with `cargo xtask build`, or leave out --bootstrap to build it now",
            path.display()
        );
    }
    check_glibc(path)
}

/// Fails when the binary asks for a newer glibc than the Lambda runtime ships; returns the
/// highest version it needs (`None`: no glibc requirement).
pub fn check_glibc(path: &Path) -> Result<Option<(u32, u32)>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let highest = highest_glibc(&bytes);
    if let Some((major, minor)) = highest {
        tracing::debug!("{} needs GLIBC_{major}.{minor}", path.display());
        if (major, minor) > RUNTIME_GLIBC {
            bail!(
                "{} needs GLIBC_{major}.{minor} but {RUNTIME} ships glibc {}.{}: it would fail at cold start \
                 with \"version `GLIBC_{major}.{minor}' not found\". Build on a distribution with glibc <= {}.{} \
                 (e.g. Amazon Linux 2023), or statically (RUSTFLAGS='-C target-feature=+crt-static').",
                path.display(),
                RUNTIME_GLIBC.0,
                RUNTIME_GLIBC.1,
                RUNTIME_GLIBC.0,
                RUNTIME_GLIBC.1,
            );
        }
    }
    Ok(highest)
}

/// The highest `GLIBC_x.y` version string named in an executable (its version needs live
/// in `.dynstr`); `None` for a static binary.
pub fn highest_glibc(bytes: &[u8]) -> Option<(u32, u32)> {
    const TAG: &[u8] = b"GLIBC_";
    let mut best = None;
    let mut i = 0;
    while let Some(pos) = find(&bytes[i..], TAG) {
        let start = i + pos + TAG.len();
        let end = bytes[start..]
            .iter()
            .position(|b| !(b.is_ascii_digit() || *b == b'.'))
            .map_or(bytes.len(), |n| start + n);
        let text = std::str::from_utf8(&bytes[start..end]).unwrap_or("");
        let mut parts = text.split('.');
        if let (Some(Ok(major)), Some(Ok(minor))) = (
            parts.next().map(str::parse::<u32>),
            parts.next().map(str::parse::<u32>),
        ) {
            best = best.max(Some((major, minor)));
        }
        i = end.max(start);
    }
    best
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::highest_glibc;

    #[test]
    fn finds_the_highest_glibc_version() {
        let dynstr = b"\0libc.so.6\0GLIBC_2.2.5\0GLIBC_2.34\0GLIBC_2.18\0GLIBC_PRIVATE\0";
        assert_eq!(highest_glibc(dynstr), Some((2, 34)));
        assert_eq!(highest_glibc(b"static binary"), None);
    }
}
