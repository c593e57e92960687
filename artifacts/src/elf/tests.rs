use super::*;

#[test]
fn names_round_trip() {
    for arch in Arch::ALL {
        assert_eq!(arch.to_string().parse::<Arch>().unwrap(), arch);
    }
    assert_eq!("aarch64".parse::<Arch>().unwrap(), Arch::Arm64);
    assert_eq!("amd64".parse::<Arch>().unwrap(), Arch::X86_64);
    let err = "sparc".parse::<Arch>().unwrap_err().to_string();
    assert!(err.contains("x86_64 or arm64"), "{err}");
    for rt in [Runtime::ProvidedAl2023, Runtime::ProvidedAl2] {
        assert_eq!(rt.to_string().parse::<Runtime>().unwrap(), rt);
    }
    assert!("provided".parse::<Runtime>().is_err());
    assert_eq!(
        serde_json::to_string(&(Arch::Arm64, Runtime::ProvidedAl2)).unwrap(),
        r#"["arm64","provided.al2"]"#
    );
}

#[test]
fn glibc_versions_parse_and_order() {
    let v = |s| GlibcVersion::from_version_name(s).unwrap();
    assert_eq!(v("GLIBC_2.34"), GlibcVersion::new(2, 34));
    assert!(v("GLIBC_2.2.5") < v("GLIBC_2.3"));
    assert!(v("GLIBC_2.9") < v("GLIBC_2.10"));
    assert_eq!(v("GLIBC_2.2.5").to_string(), "2.2.5");
    assert_eq!(GlibcVersion::from_version_name("GLIBC_PRIVATE"), None);
    assert_eq!(GlibcVersion::from_version_name("GCC_3.0"), None);
    assert_eq!(Runtime::ProvidedAl2.glibc().to_string(), "2.26");
    assert_eq!(Runtime::ProvidedAl2023.glibc().to_string(), "2.34");
}

#[test]
fn non_elf_input_is_refused_clearly() {
    let err = inspect_bytes(Path::new("bootstrap"), b"#!/bin/sh\necho hi\n").unwrap_err();
    assert!(matches!(err, ElfError::NotElf { .. }), "{err}");
    let mut truncated = b"\x7fELF\x02\x01\x01".to_vec();
    truncated.resize(40, 0);
    let err = inspect_bytes(Path::new("bootstrap"), &truncated).unwrap_err();
    assert!(matches!(err, ElfError::Malformed { .. }), "{err}");
}

#[test]
fn this_test_binary_is_read() {
    // The test executable itself: a dynamic ELF for the host.
    let exe = std::env::current_exe().unwrap();
    let report = inspect(&exe).unwrap();
    if let Some(host) = Arch::host() {
        assert_eq!(report.machine, host.machine());
    }
    assert!(!report.is_static());
    assert!(report.needed.iter().any(|n| n.starts_with("libc.so")));
    assert!(report.max_glibc().is_some());
    let newest = report.newest_glibc_symbol().unwrap();
    assert_eq!(Some(newest.version), report.max_glibc());
}
