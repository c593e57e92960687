//! The handler's `bootstrap` for Lambda, as `build`, `package`, `plan`, `deploy` and `bench`
//! need it: built with `artifacts::build` (which linker: native, cross gcc, or cargo-zigbuild
//! against the runtime's glibc; static or not; the ELF check afterwards), or given by the user
//! and checked the same way.

use crate::flags::{Arch, BuildArgs, Common, Runtime, TargetArgs};
use crate::paths::{project_root, target_dir};
use crate::progress::Progress;
use anyhow::{bail, Context, Result};
use artifacts::build::{BuildOptions, Profile, Target};
use artifacts::ElfReport;
use serde::Serialize;
use std::fmt;
use std::path::{Path, PathBuf};

pub mod fresh;

/// `--arch`, else `function.architecture` in stack.toml.
pub fn resolve_arch(flag: Option<Arch>, common: &Common) -> Result<Arch> {
    Ok(match flag {
        Some(a) => a,
        None => {
            crate::stack::load_config(common, None)?
                .function
                .architecture
        }
    })
}

/// The runtime `plan`/`deploy` create the function with (`infra::function::RUNTIME`).
pub fn deployed_runtime() -> Result<Runtime> {
    infra::function::RUNTIME.parse().with_context(|| {
        format!(
            "infra deploys the unknown runtime {}",
            infra::function::RUNTIME
        )
    })
}

/// What was built (or checked), for people and for `--output json`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub path: PathBuf,
    pub arch: Arch,
    pub runtime: Runtime,
    #[serde(rename = "static")]
    pub static_: bool,
    /// The newest glibc the binary needs (`None` when static).
    pub max_glibc: Option<String>,
    /// The glibc the runtime ships.
    pub runtime_glibc: String,
}

impl Summary {
    pub fn new(path: &Path, arch: Arch, runtime: Runtime, report: &ElfReport) -> Summary {
        Summary {
            path: path.to_path_buf(),
            arch,
            runtime,
            static_: report.is_static(),
            max_glibc: report.max_glibc().map(|v| v.to_string()),
            runtime_glibc: runtime.glibc().to_string(),
        }
    }

    /// `static: no glibc needed` or `needs glibc 2.28 (provided.al2023 ships 2.34)`.
    pub fn linkage(&self) -> String {
        match &self.max_glibc {
            _ if self.static_ => "static: no glibc needed at run time".to_string(),
            Some(v) => format!(
                "needs glibc {v} ({} ships {})",
                self.runtime, self.runtime_glibc
            ),
            None => format!(
                "dynamic, no versioned glibc symbols ({} ships {})",
                self.runtime, self.runtime_glibc
            ),
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "path:     {}", self.path.display())?;
        writeln!(f, "arch:     {}", self.arch)?;
        writeln!(f, "runtime:  {}", self.runtime)?;
        write!(f, "glibc:    {}", self.linkage())
    }
}

/// A built `bootstrap` and what its ELF check found.
pub struct Built {
    pub path: PathBuf,
    pub report: ElfReport,
}

/// Builds `bootstrap` with `artifacts::build::build` (on a blocking thread: it runs cargo and
/// waits, with the spinner hidden), which also refuses a binary the runtime's glibc or the
/// architecture cannot run. Always runs cargo (`cargo xtask build`, the bench).
pub async fn build(
    arch: Arch,
    flags: &TargetArgs,
    args: &BuildArgs,
    progress: &Progress,
) -> Result<Built> {
    let (opts, fingerprint) = options(arch, flags, args).await?;
    run_build(opts, fingerprint, progress).await
}

/// What `package`, `plan` and `deploy` build with: when the cheap build check
/// ([`fresh`]) finds the last build's binary current, that binary (ELF-checked again) without
/// running cargo; otherwise [`build`].
pub async fn build_if_changed(
    arch: Arch,
    flags: &TargetArgs,
    args: &BuildArgs,
    progress: &Progress,
) -> Result<Built> {
    let (opts, fingerprint) = options(arch, flags, args).await?;
    let path = output_path(&opts);
    if fresh::is_fresh(&path, &fingerprint) {
        let report = artifacts::elf::check(&path, opts.runtime, arch).with_context(|| {
            format!(
                "{} cannot run on a {arch} function with {}",
                path.display(),
                opts.runtime
            )
        })?;
        progress.note(format!(
            "{}: up to date (no source, setting or toolchain changed since it was built)",
            path.display()
        ));
        return Ok(Built { path, report });
    }
    run_build(opts, fingerprint, progress).await
}

/// The build's options and the fingerprint of its inputs.
async fn options(
    arch: Arch,
    flags: &TargetArgs,
    args: &BuildArgs,
) -> Result<(BuildOptions, String)> {
    let target = Target {
        arch,
        static_: flags.static_,
    };
    let runtime = flags.runtime;
    let mut opts = BuildOptions::bootstrap(target, runtime);
    opts.profile = if args.debug {
        Profile::Debug
    } else {
        Profile::Dist
    };
    opts.manifest_path = Some(project_root().join("Cargo.toml"));
    let target_dir = target_dir().await?;
    let settings = format!(
        "{target} {runtime} {} {:?} {} {}",
        opts.profile.dir_name(),
        opts.linker,
        opts.package,
        opts.bin
    );
    let fingerprint = fresh::fingerprint(&project_root(), &target_dir, &settings)?;
    opts.target_dir = Some(target_dir);
    Ok((opts, fingerprint))
}

/// Where `artifacts::build` leaves the binary: `<target>/lambda/<triple>[-static]/<profile>/<bin>`.
fn output_path(opts: &BuildOptions) -> PathBuf {
    let mut flavour = opts.target.rust_triple().to_string();
    if opts.target.static_ {
        flavour.push_str("-static");
    }
    opts.target_dir
        .clone()
        .unwrap_or_default()
        .join("lambda")
        .join(flavour)
        .join(opts.profile.dir_name())
        .join(&opts.bin)
}

async fn run_build(opts: BuildOptions, fingerprint: String, progress: &Progress) -> Result<Built> {
    let target = opts.target;
    let runtime = opts.runtime;
    let expected = output_path(&opts);
    progress.step(format!(
        "building bootstrap for {target} on {runtime} ({})",
        opts.profile.dir_name()
    ));
    // cargo writes its own progress to the terminal: the spinner steps aside meanwhile.
    let built = progress
        .hidden_while(tokio::task::spawn_blocking(move || {
            artifacts::build::build(&opts)
        }))
        .await
        .context("the build thread panicked")?
        .with_context(|| format!("building the handler's bootstrap for {target}"))?;
    progress.note(format!(
        "{}: {}",
        built.path.display(),
        Summary::new(&built.path, target.arch, runtime, &built.report).linkage()
    ));
    if built.path == expected {
        fresh::record(&built.path, &fingerprint)?;
    }
    Ok(Built {
        path: built.path,
        report: built.report,
    })
}

/// A `--bootstrap PATH` given by the user: it must exist, be an ELF for `arch`, and need no
/// newer glibc than `runtime` ships (`artifacts::elf::check`); with `static_`, be static.
pub fn check_given(path: &Path, arch: Arch, runtime: Runtime, static_: bool) -> Result<ElfReport> {
    if !path.is_file() {
        bail!(
            "--bootstrap {}: no such file. Build it with `cargo xtask build`, or leave out --bootstrap to build it now",
            path.display()
        );
    }
    let report = artifacts::elf::check(path, runtime, arch).with_context(|| {
        format!(
            "--bootstrap {} cannot run on a {arch} function with {runtime}",
            path.display()
        )
    })?;
    if static_ && !report.is_static() {
        bail!(
            "--static: {} is dynamically linked ({}); build it with `cargo xtask build --static`",
            path.display(),
            match &report.interpreter {
                Some(i) => format!("interpreter {i}"),
                None => format!("needs {}", report.needed.join(", ")),
            }
        );
    }
    Ok(report)
}
