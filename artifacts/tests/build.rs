//! Real builds: the fixture crate for each target and linker, and the ELF check on what
//! comes out. (The handler's own bootstrap is built in `handler_build.rs`.)

mod common;

use artifacts::build::{self, BuildError, LinkerChoice, MissingTool, Target};
use artifacts::elf::{self, ElfError};
use artifacts::{Arch, GlibcVersion, Machine, Runtime};
use common::*;

/// Builds the fixture or explains why it cannot; `None` only for a missing Rust target
/// outside CI (the one skip the issue allows).
fn build_fixture(
    test: &str,
    target: Target,
    runtime: Runtime,
    linker: LinkerChoice,
) -> Option<build::Built> {
    let mut opts = fixture_options(test, target, runtime);
    opts.linker = linker;
    match build::build(&opts) {
        Ok(built) => Some(built),
        Err(BuildError::MissingTools { missing, .. })
            if !in_ci()
                && missing
                    .iter()
                    .all(|m| matches!(m, MissingTool::RustTarget(_))) =>
        {
            eprintln!(
                "SKIPPED: {target} cannot be built here: the Rust target is not installed ({})",
                missing[0].fix()
            );
            None
        }
        Err(e) => panic!("building the fixture for {target}: {e}"),
    }
}

#[test]
fn x86_64_build_is_an_x86_64_elf_within_al2023_glibc() {
    let target = Target {
        arch: Arch::X86_64,
        static_: false,
    };
    let Some(built) = build_fixture("x86", target, Runtime::ProvidedAl2023, LinkerChoice::Auto)
    else {
        return;
    };
    println!("{}", built.invocation);
    let report = elf::inspect(&built.path).unwrap();
    assert_eq!(report.machine, Machine::X86_64);
    assert!(!report.is_static());
    assert!(report.interpreter.is_some());
    let max = report
        .max_glibc()
        .expect("a glibc build needs some GLIBC_ version");
    assert!(max <= GlibcVersion::new(2, 34), "needs glibc {max}");
    assert!(built
        .path
        .ends_with("lambda/x86_64-unknown-linux-gnu/debug/bootstrap"));

    // The same binary on an arm64 function is refused, naming both architectures.
    let err = elf::check(&built.path, Runtime::ProvidedAl2023, Arch::Arm64).unwrap_err();
    assert!(matches!(err, ElfError::WrongArch { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("x86_64") && msg.contains("arm64"), "{msg}");
}

#[test]
fn arm64_build_is_an_aarch64_elf_within_al2023_glibc() {
    let target = Target {
        arch: Arch::Arm64,
        static_: false,
    };
    // Cross linking through zig: the path that works from any Linux or macOS machine.
    let Some(built) = build_fixture("arm", target, Runtime::ProvidedAl2023, LinkerChoice::Zig)
    else {
        return;
    };
    println!("{}", built.invocation);
    assert!(built
        .invocation
        .args
        .contains(&"aarch64-unknown-linux-gnu.2.34".to_string()));
    assert_eq!(built.report.machine, Machine::Aarch64);
    assert_eq!(
        built.report.interpreter.as_deref(),
        Some("/lib/ld-linux-aarch64.so.1")
    );
    assert!(built.report.max_glibc().unwrap() <= GlibcVersion::new(2, 34));
    let err = elf::check(&built.path, Runtime::ProvidedAl2023, Arch::X86_64).unwrap_err();
    assert!(matches!(err, ElfError::WrongArch { .. }), "{err}");
}

#[test]
fn zig_builds_target_the_al2_glibc_when_asked() {
    // Amazon Linux 2 has glibc 2.26; this machine's is newer. Through zig the binary asks
    // for no more than 2.26; a plain build on this machine asks for more, and is refused.
    let target = Target {
        arch: Arch::X86_64,
        static_: false,
    };
    let Some(zig) = build_fixture("al2-zig", target, Runtime::ProvidedAl2, LinkerChoice::Zig)
    else {
        return;
    };
    println!("{}", zig.invocation);
    assert!(zig
        .invocation
        .args
        .contains(&"x86_64-unknown-linux-gnu.2.26".to_string()));
    let max = zig.report.max_glibc().unwrap();
    assert!(
        max <= GlibcVersion::new(2, 26),
        "zig build needs glibc {max}"
    );

    let mut opts = fixture_options("al2-plain", target, Runtime::ProvidedAl2);
    opts.linker = LinkerChoice::Cargo;
    match build::build(&opts) {
        Err(BuildError::Elf(ElfError::GlibcTooNew {
            symbol,
            required,
            provided,
            ..
        })) => {
            assert_eq!(provided, GlibcVersion::new(2, 26));
            assert!(required > provided);
            assert!(!symbol.is_empty());
        }
        // A build machine whose glibc is at most 2.26 links a binary AL2 can run.
        Ok(built) => assert!(built.report.max_glibc().unwrap() <= GlibcVersion::new(2, 26)),
        Err(e) => panic!("plain build: {e}"),
    }
}

#[test]
fn static_x86_64_build_needs_no_interpreter_and_no_glibc() {
    let target = Target {
        arch: Arch::X86_64,
        static_: true,
    };
    let Some(built) = build_fixture(
        "static-x86",
        target,
        Runtime::ProvidedAl2,
        LinkerChoice::Auto,
    ) else {
        return;
    };
    println!("{}", built.invocation);
    let report = &built.report;
    assert_eq!(report.machine, Machine::X86_64);
    assert!(report.is_static(), "{report:?}");
    assert_eq!(report.interpreter, None);
    assert!(report.needed.is_empty());
    assert_eq!(report.max_glibc(), None);
    // Static passes even the oldest runtime.
    elf::check(&built.path, Runtime::ProvidedAl2, Arch::X86_64).unwrap();
    assert!(built
        .path
        .ends_with("lambda/x86_64-unknown-linux-gnu-static/debug/bootstrap"));
}

#[test]
fn static_arm64_build_needs_no_interpreter_and_no_glibc() {
    // Static glibc cannot be linked by zig: this takes Debian's aarch64 cross gcc.
    let toolchain = build::detect();
    if !toolchain.cross_gcc.iter().any(|(a, _)| *a == Arch::Arm64)
        && Arch::host() != Some(Arch::Arm64)
    {
        // Optional path (static arm64 images); not a CI requirement.
        eprintln!(
            "SKIPPED: static arm64 builds need {}; install it with `{}`",
            build::gnu_gcc(Arch::Arm64),
            MissingTool::CrossGcc(Arch::Arm64).fix()
        );
        return;
    }
    let target = Target {
        arch: Arch::Arm64,
        static_: true,
    };
    let Some(built) = build_fixture(
        "static-arm",
        target,
        Runtime::ProvidedAl2023,
        LinkerChoice::Auto,
    ) else {
        return;
    };
    println!("{}", built.invocation);
    assert_eq!(built.report.machine, Machine::Aarch64);
    assert!(built.report.is_static(), "{:?}", built.report);
    assert_eq!(built.report.max_glibc(), None);
}
