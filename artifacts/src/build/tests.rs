use super::*;

fn toolchain() -> Toolchain {
    Toolchain {
        host_arch: Some(Arch::X86_64),
        host_os: "linux".into(),
        rust_targets: vec![
            "x86_64-unknown-linux-gnu".into(),
            "aarch64-unknown-linux-gnu".into(),
        ],
        zig: Some(Zig::Python("/venv/bin/python3".into())),
        cargo_zigbuild: true,
        cargo_zigbuild_dir: None,
        cross_gcc: vec![],
    }
}

fn opts(arch: Arch, static_: bool) -> BuildOptions {
    BuildOptions::bootstrap(Target { arch, static_ }, Runtime::ProvidedAl2023)
}

fn env<'a>(inv: &'a Invocation, k: &str) -> Option<&'a str> {
    inv.env
        .iter()
        .find(|(key, _)| key == k)
        .map(|(_, v)| v.as_str())
}

#[test]
fn dynamic_builds_use_zig_against_the_runtime_glibc() {
    let inv = plan(&opts(Arch::Arm64, false), &toolchain()).unwrap();
    assert_eq!(
        &inv.args[..3],
        ["zigbuild", "--target", "aarch64-unknown-linux-gnu.2.34"]
    );
    assert!(inv
        .args
        .windows(2)
        .any(|w| w == ["-p", "claude-lambda-handler"]));
    assert!(inv.args.windows(2).any(|w| w == ["--bin", "bootstrap"]));
    assert!(inv.args.windows(2).any(|w| w == ["--profile", "dist"]));
    assert_eq!(
        env(&inv, "CARGO_ZIGBUILD_PYTHON_PATH"),
        Some("/venv/bin/python3")
    );
    assert_eq!(
        inv.output,
        Path::new("aarch64-unknown-linux-gnu/dist/bootstrap")
    );
    let mut al2 = opts(Arch::X86_64, false);
    al2.runtime = Runtime::ProvidedAl2;
    let inv = plan(&al2, &toolchain()).unwrap();
    assert_eq!(inv.args[2], "x86_64-unknown-linux-gnu.2.26");
}

#[test]
fn cargo_zigbuild_found_in_the_venv_goes_on_cargos_path() {
    let mut tc = toolchain();
    let inv = plan(&opts(Arch::Arm64, false), &tc).unwrap();
    assert_eq!(
        env(&inv, "PATH"),
        None,
        "on PATH already: PATH is left alone"
    );
    tc.cargo_zigbuild_dir = Some("/venv/bin".into());
    let inv = plan(&opts(Arch::Arm64, false), &tc).unwrap();
    let path = env(&inv, "PATH").expect("PATH set for cargo");
    assert!(path.starts_with("/venv/bin"), "{path}");
}

#[test]
fn without_zig_a_native_build_is_plain_cargo() {
    let mut tc = toolchain();
    tc.zig = None;
    let mut o = opts(Arch::X86_64, false);
    o.profile = Profile::Debug;
    let inv = plan(&o, &tc).unwrap();
    assert_eq!(inv.linker, Linker::Native);
    assert_eq!(
        &inv.args[..3],
        ["build", "--target", "x86_64-unknown-linux-gnu"]
    );
    assert!(!inv.args.contains(&"--release".to_string()));
    assert!(inv.env.is_empty());
}

#[test]
fn static_builds_pass_crt_static_with_an_explicit_target() {
    let inv = plan(&opts(Arch::X86_64, true), &toolchain()).unwrap();
    assert_eq!(inv.linker, Linker::Native);
    assert_eq!(
        &inv.args[..3],
        ["build", "--target", "x86_64-unknown-linux-gnu"]
    );
    let flags = env(&inv, "RUSTFLAGS")
        .or(env(&inv, "CARGO_ENCODED_RUSTFLAGS"))
        .unwrap();
    assert!(flags.contains("target-feature=+crt-static"), "{flags}");
}

#[test]
fn static_cross_builds_need_a_cross_gcc_and_never_zig() {
    let err = plan(&opts(Arch::Arm64, true), &toolchain()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross"),
        "{msg}"
    );
    let mut tc = toolchain();
    tc.cross_gcc = vec![(Arch::Arm64, "/usr/bin/aarch64-linux-gnu-gcc".into())];
    let inv = plan(&opts(Arch::Arm64, true), &tc).unwrap();
    assert_eq!(
        env(&inv, "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER"),
        Some("/usr/bin/aarch64-linux-gnu-gcc")
    );
    assert_eq!(
        env(&inv, "AR_aarch64_unknown_linux_gnu"),
        Some("/usr/bin/aarch64-linux-gnu-ar")
    );
    let mut o = opts(Arch::Arm64, true);
    o.linker = LinkerChoice::Zig;
    assert!(matches!(
        plan(&o, &tc),
        Err(BuildError::ZigCannotLinkStatic { .. })
    ));
}

#[test]
fn everything_missing_is_one_error_with_every_fix() {
    let tc = Toolchain {
        host_arch: Some(Arch::X86_64),
        host_os: "linux".into(),
        rust_targets: vec!["x86_64-unknown-linux-gnu".into()],
        zig: None,
        cargo_zigbuild: false,
        cargo_zigbuild_dir: None,
        cross_gcc: vec![],
    };
    let msg = plan(&opts(Arch::Arm64, false), &tc)
        .unwrap_err()
        .to_string();
    for fix in [
        "rustup target add aarch64-unknown-linux-gnu",
        "pip install ziglang",
        "cargo install --locked cargo-zigbuild",
    ] {
        assert!(msg.contains(fix), "{fix} missing from: {msg}");
    }
    // A macOS laptop has no native Linux toolchain: zig is the way.
    let mac = Toolchain {
        host_os: "macos".into(),
        host_arch: Some(Arch::Arm64),
        ..tc
    };
    let msg = plan(&opts(Arch::Arm64, false), &mac)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("pip install ziglang"), "{msg}");
}
