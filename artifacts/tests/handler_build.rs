//! The real handler's `bootstrap`, built the way `cargo xtask build` will build it: x86_64
//! and arm64 through the normal linker choice (zig against provided.al2023's glibc where
//! installed), and a static x86_64 build for `FROM scratch` images. Debug profile, to keep
//! the build time reasonable; the linking and the ELF are what is checked.

mod common;

use artifacts::build::{self, BuildError, BuildOptions, MissingTool, Profile, Target};
use artifacts::{Arch, GlibcVersion, Machine, Runtime};
use std::path::Path;

fn workspace_manifest() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("Cargo.toml")
}

fn build_handler(target: Target) -> Option<build::Built> {
    let mut opts = BuildOptions::bootstrap(target, Runtime::ProvidedAl2023);
    opts.profile = Profile::Debug;
    opts.manifest_path = Some(workspace_manifest());
    match build::build(&opts) {
        Ok(b) => Some(b),
        Err(BuildError::MissingTools { missing, .. })
            if !common::in_ci()
                && missing
                    .iter()
                    .all(|m| matches!(m, MissingTool::RustTarget(_))) =>
        {
            eprintln!(
                "SKIPPED: the handler cannot be built for {target}: the Rust target is not installed ({})",
                missing[0].fix()
            );
            None
        }
        Err(e) => panic!("building the handler's bootstrap for {target}: {e}"),
    }
}

#[test]
fn handler_bootstrap_builds_for_both_architectures_and_statically() {
    // One test, one after the other: the three builds share cargo's target directory.
    for arch in Arch::ALL {
        let target = Target {
            arch,
            static_: false,
        };
        let Some(built) = build_handler(target) else {
            continue;
        };
        println!("{} -> {}", built.invocation, built.path.display());
        assert_eq!(
            built.report.machine.arch(),
            Some(arch),
            "{:?}",
            built.report
        );
        assert!(built.report.max_glibc().unwrap() <= GlibcVersion::new(2, 34));
    }
    let built = build_handler(Target {
        arch: Arch::X86_64,
        static_: true,
    })
    .expect("x86_64 is always installed with an x86_64 toolchain");
    println!("{} -> {}", built.invocation, built.path.display());
    assert_eq!(built.report.machine, Machine::X86_64);
    assert!(built.report.is_static(), "{:?}", built.report);
}
