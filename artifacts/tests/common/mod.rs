//! Shared by the integration tests: the fixture crate, per-test target directories, and the
//! rule that a missing stand-in fails under CI (with the command that installs it) and is
//! reported loudly elsewhere.
#![allow(dead_code)]

use artifacts::build::{BuildOptions, Profile, Target};
use artifacts::Runtime;
use std::path::{Path, PathBuf};

/// The tiny stand-alone crate whose `bootstrap` is a minimal Lambda custom runtime.
pub fn fixture_manifest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hello/Cargo.toml")
}

/// A target directory of its own for each test (tests run in parallel, and a static and a
/// dynamic build of one triple write the same path in cargo's tree).
pub fn target_dir(test: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("artifacts-fixture")
        .join(test)
}

/// Build options for the fixture, debug profile.
pub fn fixture_options(test: &str, target: Target, runtime: Runtime) -> BuildOptions {
    BuildOptions {
        target,
        runtime,
        profile: Profile::Debug,
        linker: Default::default(),
        manifest_path: Some(fixture_manifest()),
        package: "hello-bootstrap".into(),
        bin: "bootstrap".into(),
        target_dir: Some(target_dir(test)),
    }
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// A required tool is missing: fail under CI, otherwise say so loudly and return (the
/// caller returns too). Never a silent skip.
pub fn missing(what: &str, fix: &str) {
    let msg = format!("{what} is not installed; install it with `{fix}`");
    if in_ci() {
        panic!("{msg}");
    }
    eprintln!("SKIPPED (not CI): {msg}");
}

pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
