//! The glibc check on binaries built by the system C compiler: one that needs a glibc newer
//! than Amazon Linux 2023's (`arc4random`, versioned GLIBC_2.36) and an ordinary one.

mod common;

use artifacts::elf::{self, ElfError};
use artifacts::{Arch, GlibcVersion, Runtime};
use std::path::{Path, PathBuf};
use std::process::Command;

fn cc() -> Option<PathBuf> {
    common::which("cc").or_else(|| common::which("gcc"))
}

fn compile(dir: &Path, name: &str, source: &str) -> PathBuf {
    let c = dir.join(format!("{name}.c"));
    std::fs::write(&c, source).unwrap();
    let out = dir.join(name);
    let status = Command::new(cc().unwrap())
        .arg(&c)
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "cc {name}.c failed");
    out
}

/// This machine's glibc, from `ldd --version`-free means: `getconf GNU_LIBC_VERSION`.
fn host_glibc() -> Option<GlibcVersion> {
    let out = Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text.trim().strip_prefix("glibc ")?;
    GlibcVersion::from_version_name(&format!("GLIBC_{v}"))
}

#[test]
fn a_binary_needing_a_newer_glibc_than_the_runtime_is_refused_by_name() {
    let Some(_) = cc() else {
        return common::missing("a C compiler", "apt-get install gcc");
    };
    let host = host_glibc().expect("this test needs a glibc system");
    if host < GlibcVersion::new(2, 36) {
        // arc4random arrived in glibc 2.36; an older build machine cannot link it.
        eprintln!("SKIPPED: this machine has glibc {host}, older than 2.36 (arc4random)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bin = compile(
        dir.path(),
        "too_new",
        "#include <stdlib.h>\n#include <stdio.h>\nint main(void) { printf(\"%u\\n\", arc4random()); return 0; }\n",
    );
    let report = elf::inspect(&bin).unwrap();
    assert_eq!(report.max_glibc(), Some(GlibcVersion::new(2, 36)));
    let newest = report.newest_glibc_symbol().unwrap();
    assert_eq!(newest.symbol, "arc4random");
    assert_eq!(newest.library, "libc.so.6");

    let arch = Arch::host().unwrap();
    let err = elf::check(&bin, Runtime::ProvidedAl2023, arch).unwrap_err();
    let ElfError::GlibcTooNew {
        symbol,
        required,
        provided,
        runtime,
        ..
    } = &err
    else {
        panic!("expected GlibcTooNew, got {err}");
    };
    assert_eq!(symbol, "arc4random");
    assert_eq!(*required, GlibcVersion::new(2, 36));
    assert_eq!(*provided, GlibcVersion::new(2, 34));
    assert_eq!(*runtime, Runtime::ProvidedAl2023);
    let msg = err.to_string();
    for needle in ["arc4random", "GLIBC_2.36", "provided.al2023", "glibc 2.34"] {
        assert!(msg.contains(needle), "`{needle}` missing from: {msg}");
    }
}

#[test]
fn an_ordinary_binary_passes_al2023_and_is_checked_against_al2() {
    let Some(_) = cc() else {
        return common::missing("a C compiler", "apt-get install gcc");
    };
    let dir = tempfile::tempdir().unwrap();
    let bin = compile(
        dir.path(),
        "ordinary",
        "#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n",
    );
    let arch = Arch::host().unwrap();
    let report = elf::check(&bin, Runtime::ProvidedAl2023, arch)
        .unwrap_or_else(|e| panic!("an ordinary binary should pass al2023: {e}"));
    let max = report.max_glibc().unwrap();
    assert!(report.glibc_symbols.iter().any(|s| s.symbol == "puts"));

    // glibc 2.34 moved __libc_start_main to a new version: anything linked on 2.34+ needs
    // it, and Amazon Linux 2 (2.26) cannot start it.
    let host = host_glibc().unwrap();
    let al2 = elf::check(&bin, Runtime::ProvidedAl2, arch);
    if max > GlibcVersion::new(2, 26) {
        let err = al2.unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("provided.al2 ") && msg.contains("2.26"),
            "{msg}"
        );
        if host >= GlibcVersion::new(2, 34) {
            assert!(
                msg.contains("__libc_start_main") && msg.contains("GLIBC_2.34"),
                "{msg}"
            );
        }
    } else {
        al2.unwrap();
    }

    // And the wrong architecture is refused whatever the glibc.
    let other = if arch == Arch::X86_64 {
        Arch::Arm64
    } else {
        Arch::X86_64
    };
    assert!(matches!(
        elf::check(&bin, Runtime::ProvidedAl2023, other),
        Err(ElfError::WrongArch { .. })
    ));
}
