//! Building a `bootstrap` for a Lambda target: which cargo invocation, with which linker.
//!
//! - Dynamic (glibc) builds go through `cargo zigbuild` with a glibc-versioned target
//!   (`aarch64-unknown-linux-gnu.2.34`) whenever zig and cargo-zigbuild are installed: the
//!   binary then asks for no newer glibc than the runtime ships, whatever the build machine
//!   has. Without zig, a plain `cargo build` when the host is the target (the ELF check
//!   afterwards catches a too-new glibc), or a cross gcc when one is installed.
//! - Static builds (`-C target-feature=+crt-static`, for images `FROM scratch`) link glibc's
//!   `libc.a` with the system C toolchain for the target: zig cannot link glibc statically.
//!   `--target` is always explicit so build scripts and proc macros stay dynamic.
//!
//! [`plan`] is pure (toolchain in, invocation out) so it is tested without building;
//! [`detect`] finds the toolchain; [`build`] runs the invocation and checks the ELF.

use crate::elf::{self, Arch, ElfError, ElfReport, Runtime};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What to build for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Target {
    pub arch: Arch,
    /// Link glibc statically (`+crt-static`): no interpreter, no glibc needed at run time.
    pub static_: bool,
}

impl Target {
    /// The Rust target triple (`x86_64-unknown-linux-gnu`, `aarch64-unknown-linux-gnu`).
    pub fn rust_triple(&self) -> &'static str {
        self.arch.rust_triple()
    }

    /// The target cargo-zigbuild is given: the triple with the runtime's glibc appended
    /// (`x86_64-unknown-linux-gnu.2.34`).
    pub fn zig_triple(&self, runtime: Runtime) -> String {
        let glibc = runtime.glibc();
        format!("{}.{}.{}", self.rust_triple(), glibc.major, glibc.minor)
    }

    /// The RUSTFLAGS this target adds (`-C target-feature=+crt-static` for static builds).
    pub fn rustflags(&self) -> &'static [&'static str] {
        if self.static_ {
            &["-C", "target-feature=+crt-static"]
        } else {
            &[]
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}", self.arch, self.rust_triple())?;
        if self.static_ {
            f.write_str(", static")?;
        }
        f.write_str(")")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Profile {
    Debug,
    Release,
    /// What is deployed: the workspace's `[profile.dist]` (release, optimised for size, fat
    /// LTO, one codegen unit): about a third of the release binary's size.
    #[default]
    Dist,
}

impl Profile {
    /// The directory cargo writes this profile's outputs to.
    pub fn dir_name(self) -> &'static str {
        match self {
            Profile::Debug => "debug",
            Profile::Release => "release",
            Profile::Dist => "dist",
        }
    }
}

/// Which way to link; `Auto` picks as the module documentation says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LinkerChoice {
    #[default]
    Auto,
    /// Plain `cargo build` (a cross gcc when the target is not the host).
    Cargo,
    /// `cargo zigbuild` against the runtime's glibc.
    Zig,
}

/// Everything a build needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOptions {
    pub target: Target,
    pub runtime: Runtime,
    pub profile: Profile,
    pub linker: LinkerChoice,
    /// The workspace (or package) manifest; `None` = cargo's usual search from the current
    /// directory.
    pub manifest_path: Option<PathBuf>,
    pub package: String,
    pub bin: String,
    /// `--target-dir`; `None` = cargo's choice (`CARGO_TARGET_DIR`, config, `./target`).
    pub target_dir: Option<PathBuf>,
}

impl BuildOptions {
    /// The handler's `bootstrap` (`-p claude-lambda-handler --bin bootstrap`), dist profile.
    pub fn bootstrap(target: Target, runtime: Runtime) -> BuildOptions {
        BuildOptions {
            target,
            runtime,
            profile: Profile::Dist,
            linker: LinkerChoice::Auto,
            manifest_path: None,
            package: "claude-lambda-handler".into(),
            bin: "bootstrap".into(),
            target_dir: None,
        }
    }
}

/// How zig is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Zig {
    /// A `zig` executable.
    Binary(PathBuf),
    /// A Python interpreter with the PyPI `ziglang` package (`python -m ziglang`).
    Python(PathBuf),
}

impl Zig {
    /// The environment variable telling cargo-zigbuild to use this zig.
    pub fn cargo_zigbuild_env(&self) -> (&'static str, &Path) {
        match self {
            Zig::Binary(p) => ("CARGO_ZIGBUILD_ZIG_PATH", p),
            Zig::Python(p) => ("CARGO_ZIGBUILD_PYTHON_PATH", p),
        }
    }
}

/// What the build machine has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toolchain {
    /// The build machine's architecture (`None` when Lambda has none like it).
    pub host_arch: Option<Arch>,
    /// The build machine's OS (`linux`, `macos`, ...).
    pub host_os: String,
    /// Rust targets whose standard library is installed.
    pub rust_targets: Vec<String>,
    pub zig: Option<Zig>,
    /// `cargo zigbuild` works.
    pub cargo_zigbuild: bool,
    /// Where cargo-zigbuild was found when it is not on PATH: the `bin` of the toolkit's venv,
    /// where `cargo xtask test` installs it from PyPI. [`plan`] puts it on cargo's PATH.
    pub cargo_zigbuild_dir: Option<PathBuf>,
    /// Cross C compilers for Linux glibc targets found on PATH, e.g.
    /// `(Arm64, "aarch64-linux-gnu-gcc")`.
    pub cross_gcc: Vec<(Arch, PathBuf)>,
}

impl Toolchain {
    fn native(&self, arch: Arch) -> bool {
        self.host_os == "linux" && self.host_arch == Some(arch)
    }

    fn cross_gcc(&self, arch: Arch) -> Option<&Path> {
        self.cross_gcc
            .iter()
            .find(|(a, _)| *a == arch)
            .map(|(_, p)| p.as_path())
    }
}

/// The linker an [`Invocation`] uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Linker {
    /// The system C compiler of the host (host = target).
    Native,
    /// A cross gcc for the target (`aarch64-linux-gnu-gcc`).
    CrossGcc(PathBuf),
    /// `zig cc` through cargo-zigbuild, against this glibc-versioned target.
    Zig { zig: Zig, zig_target: String },
}

/// One cargo command, ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// `cargo` (or `$CARGO`).
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Variables set for the command (on top of the inherited environment).
    pub env: Vec<(String, String)>,
    pub linker: Linker,
    pub target: Target,
    /// Where cargo writes the binary, relative to the target directory.
    pub output: PathBuf,
}

impl Invocation {
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }
}

impl fmt::Display for Invocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, v) in &self.env {
            write!(f, "{k}={} ", shell_quote(v))?;
        }
        write!(f, "{}", self.program.display())?;
        for a in &self.args {
            write!(f, " {}", shell_quote(a))?;
        }
        Ok(())
    }
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=+:,@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A tool the build needs and does not have, with the command that installs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MissingTool {
    RustTarget(String),
    Zig,
    CargoZigbuild,
    CrossGcc(Arch),
}

impl MissingTool {
    /// The exact command that fixes it.
    pub fn fix(&self) -> String {
        match self {
            MissingTool::RustTarget(t) => format!("rustup target add {t}"),
            MissingTool::Zig => "pip install ziglang".into(),
            MissingTool::CargoZigbuild => "cargo install --locked cargo-zigbuild".into(),
            MissingTool::CrossGcc(Arch::Arm64) => {
                "apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross".into()
            }
            MissingTool::CrossGcc(Arch::X86_64) => {
                "apt-get install gcc-x86-64-linux-gnu libc6-dev-amd64-cross".into()
            }
        }
    }
}

impl fmt::Display for MissingTool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MissingTool::RustTarget(t) => write!(f, "the Rust standard library for {t}")?,
            MissingTool::Zig => f.write_str("zig (the linker cargo-zigbuild drives)")?,
            MissingTool::CargoZigbuild => f.write_str("cargo-zigbuild")?,
            MissingTool::CrossGcc(a) => write!(
                f,
                "a C cross compiler with glibc's static libraries for {a} ({})",
                gnu_gcc(*a)
            )?,
        }
        write!(f, ": `{}`", self.fix())
    }
}

/// Why a build could not be planned, run or accepted.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot build {target} on this {host} machine; install what is missing, then retry:\n{}",
        missing.iter().map(|m| format!("  - {m}")).collect::<Vec<_>>().join("\n"))]
    MissingTools {
        target: Target,
        host: String,
        missing: Vec<MissingTool>,
    },
    #[error("zig cannot link glibc statically: build the static {target} with the Cargo linker (a C toolchain for the target), not zig")]
    ZigCannotLinkStatic { target: Target },
    #[error("running `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}); the compiler's errors are above")]
    CargoFailed { command: String, status: String },
    #[error("{what}: {message}")]
    Io { what: String, message: String },
    #[error(transparent)]
    Elf(#[from] ElfError),
    #[error("{} was built as a static binary but still needs {}; a dependency forces dynamic linking",
        path.display(),
        needs)]
    NotStatic { path: PathBuf, needs: String },
}

/// The gcc a Debian/Ubuntu cross toolchain installs for a Linux glibc target.
pub fn gnu_gcc(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "x86_64-linux-gnu-gcc",
        Arch::Arm64 => "aarch64-linux-gnu-gcc",
    }
}

/// Decides the cargo invocation for `opts` on a machine with `toolchain`. Pure.
pub fn plan(opts: &BuildOptions, toolchain: &Toolchain) -> Result<Invocation, BuildError> {
    let target = opts.target;
    let arch = target.arch;
    let triple = target.rust_triple();
    let native = toolchain.native(arch);
    let zig_ready = toolchain.zig.is_some() && toolchain.cargo_zigbuild;
    let mut missing = Vec::new();
    if !toolchain.rust_targets.iter().any(|t| t == triple) {
        missing.push(MissingTool::RustTarget(triple.to_string()));
    }
    let cross = toolchain.cross_gcc(arch).map(Path::to_path_buf);
    let missing_zig = || {
        let mut m = Vec::new();
        if toolchain.zig.is_none() {
            m.push(MissingTool::Zig);
        }
        if !toolchain.cargo_zigbuild {
            m.push(MissingTool::CargoZigbuild);
        }
        m
    };

    let linker = match (target.static_, opts.linker) {
        (true, LinkerChoice::Zig) => return Err(BuildError::ZigCannotLinkStatic { target }),
        (true, _) | (false, LinkerChoice::Cargo) => {
            if native {
                Some(Linker::Native)
            } else if let Some(gcc) = cross {
                Some(Linker::CrossGcc(gcc))
            } else {
                missing.push(MissingTool::CrossGcc(arch));
                None
            }
        }
        (false, LinkerChoice::Zig) => {
            missing.extend(missing_zig());
            toolchain.zig.clone().map(|zig| Linker::Zig {
                zig,
                zig_target: target.zig_triple(opts.runtime),
            })
        }
        (false, LinkerChoice::Auto) => {
            if zig_ready {
                toolchain.zig.clone().map(|zig| Linker::Zig {
                    zig,
                    zig_target: target.zig_triple(opts.runtime),
                })
            } else if native {
                Some(Linker::Native)
            } else if let Some(gcc) = cross {
                Some(Linker::CrossGcc(gcc))
            } else {
                missing.extend(missing_zig());
                None
            }
        }
    };
    let linker = match linker {
        Some(l) if missing.is_empty() => l,
        _ => {
            return Err(BuildError::MissingTools {
                target,
                host: format!(
                    "{}-{}",
                    toolchain.host_os,
                    toolchain
                        .host_arch
                        .map(|a| a.lambda_name().to_string())
                        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
                ),
                missing,
            })
        }
    };

    let program = std::env::var_os("CARGO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("cargo"));
    let mut args: Vec<String> = Vec::new();
    let mut env: Vec<(String, String)> = Vec::new();
    match &linker {
        Linker::Zig { zig, zig_target } => {
            args.extend(["zigbuild".into(), "--target".into(), zig_target.clone()]);
            let (k, v) = zig.cargo_zigbuild_env();
            env.push((k.into(), v.display().to_string()));
            if let Some(dir) = &toolchain.cargo_zigbuild_dir {
                env.push(("PATH".into(), path_with(dir).to_string_lossy().into_owned()));
            }
        }
        Linker::Native => {
            args.extend(["build".into(), "--target".into(), triple.into()]);
        }
        Linker::CrossGcc(gcc) => {
            args.extend(["build".into(), "--target".into(), triple.into()]);
            let upper = triple.replace('-', "_").to_ascii_uppercase();
            let lower = triple.replace('-', "_");
            let gcc_s = gcc.display().to_string();
            env.push((format!("CARGO_TARGET_{upper}_LINKER"), gcc_s.clone()));
            env.push((format!("CC_{lower}"), gcc_s.clone()));
            if let Some(prefix) = gcc_s.strip_suffix("gcc") {
                env.push((format!("AR_{lower}"), format!("{prefix}ar")));
            }
        }
    }
    if let Some(manifest) = &opts.manifest_path {
        args.extend(["--manifest-path".into(), manifest.display().to_string()]);
    }
    if let Some(dir) = &opts.target_dir {
        args.extend(["--target-dir".into(), dir.display().to_string()]);
    }
    args.extend([
        "-p".into(),
        opts.package.clone(),
        "--bin".into(),
        opts.bin.clone(),
    ]);
    match opts.profile {
        Profile::Debug => {}
        Profile::Release => args.push("--release".into()),
        Profile::Dist => args.extend(["--profile".into(), "dist".into()]),
    }
    if target.static_ {
        // Added to whatever the caller already set; with an explicit --target these flags
        // reach only the target's crates, never build scripts or proc macros.
        if let Some(encoded) = std::env::var_os("CARGO_ENCODED_RUSTFLAGS") {
            let mut flags: Vec<String> = encoded
                .to_string_lossy()
                .split('\x1f')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            flags.extend(target.rustflags().iter().map(|s| s.to_string()));
            env.push(("CARGO_ENCODED_RUSTFLAGS".into(), flags.join("\x1f")));
        } else {
            let mut flags = std::env::var("RUSTFLAGS").unwrap_or_default();
            for f in target.rustflags() {
                if !flags.is_empty() {
                    flags.push(' ');
                }
                flags.push_str(f);
            }
            env.push(("RUSTFLAGS".into(), flags));
        }
    }
    let output = Path::new(triple)
        .join(opts.profile.dir_name())
        .join(&opts.bin);
    Ok(Invocation {
        program,
        args,
        env,
        linker,
        target,
        output,
    })
}

/// Looks at the build machine: Rust targets installed, zig, cargo-zigbuild, cross gccs.
pub fn detect() -> Toolchain {
    detect_in(None)
}

/// [`detect`] with rustc run from `dir` (so a `rust-toolchain.toml` there is honoured).
pub fn detect_in(dir: Option<&Path>) -> Toolchain {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    // (`cargo zigbuild --version` is not accepted; `--help` is, wherever cargo finds it.)
    let zigbuild_works = |path: Option<&OsStr>| {
        let mut cmd = Command::new(&cargo);
        cmd.args(["zigbuild", "--help"]);
        if let Some(path) = path {
            cmd.env("PATH", path);
        }
        cmd.output().map(|o| o.status.success()).unwrap_or(false)
    };
    let on_path = zigbuild_works(None);
    let cargo_zigbuild_dir = if on_path {
        None
    } else {
        toolkit_venv()
            .map(|venv| venv.join("bin"))
            .filter(|bin| bin.join("cargo-zigbuild").is_file())
            .filter(|bin| zigbuild_works(Some(&path_with(bin))))
    };
    let cargo_zigbuild = on_path || cargo_zigbuild_dir.is_some();
    let cross_gcc = Arch::ALL
        .into_iter()
        .filter_map(|a| find_on_path(gnu_gcc(a)).map(|p| (a, p)))
        .collect();
    Toolchain {
        host_arch: Arch::host(),
        host_os: std::env::consts::OS.to_string(),
        rust_targets: installed_rust_targets(dir),
        zig: find_zig(),
        cargo_zigbuild,
        cargo_zigbuild_dir,
        cross_gcc,
    }
}

/// The Rust targets whose standard library is installed in the active toolchain's sysroot
/// (what `rustup target list --installed` prints, without needing rustup).
pub fn installed_rust_targets(dir: Option<&Path>) -> Vec<String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| OsString::from("rustc"));
    let mut cmd = Command::new(rustc);
    cmd.args(["--print", "sysroot"]);
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    let Ok(out) = cmd.output() else {
        return Vec::new();
    };
    let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let Ok(entries) = std::fs::read_dir(sysroot.join("lib/rustlib")) else {
        return Vec::new();
    };
    let mut targets: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("lib").is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    targets.sort();
    targets
}

/// Finds zig: `CARGO_ZIGBUILD_ZIG_PATH`, `zig` on PATH, `CARGO_ZIGBUILD_PYTHON_PATH`,
/// `python3 -m ziglang`, then the toolkit's venv (`$CLAUDE_LAMBDA_VENV` or
/// `~/.cache/claude-lambda/venv`, where cargo-lambda's `ziglang` dependency lives).
pub fn find_zig() -> Option<Zig> {
    let works = |cmd: &mut Command| {
        cmd.output()
            .map(|o| o.status.success() && !o.stdout.is_empty())
            .unwrap_or(false)
    };
    let mut binaries: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("CARGO_ZIGBUILD_ZIG_PATH") {
        binaries.push(p.into());
    }
    binaries.extend(find_on_path("zig"));
    for zig in binaries {
        if works(Command::new(&zig).arg("version")) {
            return Some(Zig::Binary(zig));
        }
    }
    let mut pythons: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("CARGO_ZIGBUILD_PYTHON_PATH") {
        pythons.push(p.into());
    }
    pythons.extend(find_on_path("python3"));
    if let Some(venv) = toolkit_venv() {
        pythons.push(venv.join("bin/python3"));
    }
    for python in pythons {
        if (python.exists() || python.components().count() == 1)
            && works(Command::new(&python).args(["-m", "ziglang", "version"]))
        {
            return Some(Zig::Python(python));
        }
    }
    None
}

/// The toolkit's Python venv: `$CLAUDE_LAMBDA_VENV`, else `~/.cache/claude-lambda/venv`
/// (`$XDG_CACHE_HOME` honoured).
fn toolkit_venv() -> Option<PathBuf> {
    std::env::var_os("CLAUDE_LAMBDA_VENV")
        .map(PathBuf::from)
        .or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))?;
            Some(cache.join("claude-lambda/venv"))
        })
}

/// `PATH` with `dir` in front.
fn path_with(dir: &Path) -> OsString {
    let rest = std::env::var_os("PATH").unwrap_or_default();
    std::env::join_paths(std::iter::once(dir.to_path_buf()).chain(std::env::split_paths(&rest)))
        .unwrap_or_else(|_| dir.as_os_str().to_owned())
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A built and checked binary.
#[derive(Debug, Clone)]
pub struct Built {
    /// The binary, copied out of cargo's tree to
    /// `<target dir>/lambda/<triple>[-static]/<profile>/<bin>` so static and dynamic builds
    /// of the same target never overwrite each other.
    pub path: PathBuf,
    pub report: ElfReport,
    pub invocation: Invocation,
}

/// Cargo's target directory for the workspace (honours `CARGO_TARGET_DIR` and config).
pub fn target_directory(manifest_path: Option<&Path>) -> Result<PathBuf, BuildError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(cargo);
    cmd.args(["metadata", "--format-version", "1", "--no-deps"]);
    if let Some(m) = manifest_path {
        cmd.arg("--manifest-path").arg(m);
    }
    let out = cmd.output().map_err(|source| BuildError::Spawn {
        command: "cargo metadata".into(),
        source,
    })?;
    if !out.status.success() {
        return Err(BuildError::Io {
            what: "asking cargo for the target directory (`cargo metadata`)".into(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| BuildError::Io {
            what: "parsing `cargo metadata` output".into(),
            message: e.to_string(),
        })?;
    meta["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .ok_or_else(|| BuildError::Io {
            what: "parsing `cargo metadata` output".into(),
            message: "no target_directory".into(),
        })
}

/// Plans (with [`detect`]), runs cargo, copies the binary out and checks its ELF against the
/// runtime and architecture (and, for a static build, that it really is static).
pub fn build(opts: &BuildOptions) -> Result<Built, BuildError> {
    let dir = opts
        .manifest_path
        .as_deref()
        .and_then(Path::parent)
        .filter(|p| !p.as_os_str().is_empty());
    let toolchain = detect_in(dir);
    let invocation = plan(opts, &toolchain)?;
    build_with(opts, invocation)
}

/// Runs an already planned invocation (see [`plan`]), then copies and checks the binary.
pub fn build_with(opts: &BuildOptions, invocation: Invocation) -> Result<Built, BuildError> {
    let target_dir = match &opts.target_dir {
        Some(dir) => dir.clone(),
        None => target_directory(opts.manifest_path.as_deref())?,
    };
    tracing::info!(command = %invocation, "building {}", opts.bin);
    let status = invocation
        .command()
        .status()
        .map_err(|source| BuildError::Spawn {
            command: invocation.to_string(),
            source,
        })?;
    if !status.success() {
        return Err(BuildError::CargoFailed {
            command: invocation.to_string(),
            status: status.to_string(),
        });
    }
    let built = target_dir.join(&invocation.output);
    let mut flavour = opts.target.rust_triple().to_string();
    if opts.target.static_ {
        flavour.push_str("-static");
    }
    let dest_dir = target_dir
        .join("lambda")
        .join(flavour)
        .join(opts.profile.dir_name());
    let dest = dest_dir.join(&opts.bin);
    let io = |what: String| {
        move |e: std::io::Error| BuildError::Io {
            what,
            message: e.to_string(),
        }
    };
    std::fs::create_dir_all(&dest_dir).map_err(io(format!("creating {}", dest_dir.display())))?;
    // Write a fresh file (never through an existing inode something may still be running).
    let tmp = dest_dir.join(format!(".{}.tmp", opts.bin));
    std::fs::copy(&built, &tmp).map_err(io(format!(
        "copying {} to {}",
        built.display(),
        tmp.display()
    )))?;
    std::fs::rename(&tmp, &dest).map_err(io(format!("moving into {}", dest.display())))?;

    let report = elf::check(&dest, opts.runtime, opts.target.arch)?;
    if opts.target.static_ && !report.is_static() {
        let needs = match (&report.interpreter, report.needed.is_empty()) {
            (Some(i), _) => format!("the interpreter {i}"),
            (None, false) => report.needed.join(", "),
            (None, true) => unreachable!("is_static() was false"),
        };
        return Err(BuildError::NotStatic { path: dest, needs });
    }
    Ok(Built {
        path: dest,
        report,
        invocation,
    })
}

/// Builds the handler's `bootstrap` as `opts` says and returns the checked binary's path.
pub fn build_bootstrap(opts: &BuildOptions) -> Result<PathBuf, BuildError> {
    build(opts).map(|b| b.path)
}

#[cfg(test)]
mod tests;
