//! The cheap build check: whether `cargo build` of `bootstrap` could do anything, answered
//! without running cargo. After each build a stamp beside the binary records a fingerprint of
//! every input cargo would look at (the workspace's files by size and modification time, the
//! build's settings, the environment cargo and the linkers read, the installed toolchains and
//! cargo plugins) and
//! the binary's identity (size, modification time, inode). When both still match, the binary
//! is current and the deploy skips cargo (about half a second of its own work plus the
//! toolchain probes); anything else runs cargo as before. `cargo xtask build` always runs cargo.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Bump when the fingerprint's contents change.
const STAMP_FORMAT: &str = "bootstrap-fresh-v1";

/// Environment variables that change what cargo, rustc or a linker produces. Not those
/// `cargo run` and rustup set for the CLI itself (`CARGO_PKG_*`, `CARGO_MANIFEST_DIR`,
/// `CARGO_HOME`, `RUSTUP_TOOLCHAIN`, `LD_LIBRARY_PATH`, ...): the CLI run by `cargo xtask` and run directly
/// must agree. (The toolchains themselves are fingerprinted by their files.)
fn relevant_env(name: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "CARGO_BUILD_",
        "CARGO_PROFILE_",
        "CARGO_TARGET_",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_NET_OFFLINE",
        "RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CC",
        "CXX",
        "CFLAGS",
        "CXXFLAGS",
        "LDFLAGS",
        "AR",
        "ZIG",
        "TARGET_",
        "HOST_",
        "PKG_CONFIG",
    ];
    PREFIXES.iter().any(|p| name.starts_with(p))
}

/// A file's identity: size, modification time (ns) and inode. Equal identity, same bytes,
/// as far as anything short of reading them can tell (and what cargo itself trusts).
pub fn identity(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(format!(
        "len={} mtime={}.{:09} ino={} dev={}",
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ino(),
        m.dev()
    ))
}

/// The fingerprint of a build: `settings` (target, profile, runtime) and everything under
/// `root` except `.git` and the target directory, plus the environment and toolchains.
pub fn fingerprint(root: &Path, target_dir: &Path, settings: &str) -> Result<String> {
    let mut lines = vec![STAMP_FORMAT.to_string(), settings.to_string()];
    let mut env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.to_string_lossy().into_owned())))
        .filter(|(k, _)| relevant_env(k))
        .collect();
    env.sort();
    lines.extend(env.into_iter().map(|(k, v)| format!("env {k}={v}")));
    // Installing or switching toolchains, targets or cargo plugins shows in these.
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let rustup = std::env::var_os("RUSTUP_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".rustup"));
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".cargo"));
    let venv_bin = emulators::moto::venv_dir().join("bin");
    let mut tools = vec![
        rustup.join("settings.toml"),
        rustup.join("toolchains"),
        cargo_home.join("bin"),
        cargo_home.join("config.toml"),
        venv_bin,
    ];
    // Rewritten when a toolchain is updated in place.
    if let Ok(dir) = std::fs::read_dir(rustup.join("update-hashes")) {
        tools.extend(dir.filter_map(|e| e.ok()).map(|e| e.path()));
    }
    tools.sort();
    for p in tools {
        lines.push(format!("tool {} {:?}", p.display(), identity(&p)));
    }
    let mut files = Vec::new();
    walk(root, target_dir, &mut files)
        .with_context(|| format!("listing the sources under {}", root.display()))?;
    files.sort();
    for f in files {
        let shown = f.strip_prefix(root).unwrap_or(&f).display().to_string();
        lines.push(format!("file {shown} {:?}", identity(&f)));
    }
    Ok(hex::encode(artifacts::digest::sha256(
        lines.join("\n").as_bytes(),
    )))
}

fn walk(dir: &Path, target_dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            let name = entry.file_name();
            // `.git` is not a build input; `target` dirs hold outputs (and this stamp).
            if name == ".git" || name == "target" || path == target_dir {
                continue;
            }
            walk(&path, target_dir, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// `<binary>.fresh`: the fingerprint it was built from, and the binary's identity then.
fn stamp_path(binary: &Path) -> PathBuf {
    let mut name = binary.as_os_str().to_owned();
    name.push(".fresh");
    PathBuf::from(name)
}

fn stamp(fingerprint: &str, binary: &Path) -> Option<String> {
    Some(format!("{fingerprint}\n{}\n", identity(binary)?))
}

/// True when `binary` is what a build with this fingerprint produced, untouched since.
pub fn is_fresh(binary: &Path, fingerprint: &str) -> bool {
    match (
        std::fs::read_to_string(stamp_path(binary)),
        stamp(fingerprint, binary),
    ) {
        (Ok(recorded), Some(now)) => recorded == now,
        _ => false,
    }
}

/// Records that `binary` was just built with this fingerprint.
pub fn record(binary: &Path, fingerprint: &str) -> Result<()> {
    let path = stamp_path(binary);
    let Some(s) = stamp(fingerprint, binary) else {
        return Ok(());
    };
    std::fs::write(&path, s).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_change_or_a_new_binary_makes_it_stale() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ws");
        let target = root.join("target");
        std::fs::create_dir_all(root.join("handler/src")).unwrap();
        std::fs::create_dir_all(target.join("lambda")).unwrap();
        std::fs::write(root.join("handler/src/lib.rs"), "fn a() {}").unwrap();
        let binary = target.join("lambda/bootstrap");
        std::fs::write(&binary, b"\x7fELF one").unwrap();

        let fp = fingerprint(&root, &target, "x86_64 dist").unwrap();
        assert!(!is_fresh(&binary, &fp), "never built");
        record(&binary, &fp).unwrap();
        assert!(is_fresh(
            &binary,
            &fingerprint(&root, &target, "x86_64 dist").unwrap()
        ));
        // Other settings, another build.
        assert!(!is_fresh(
            &binary,
            &fingerprint(&root, &target, "aarch64 dist").unwrap()
        ));
        // Outputs in the target dir are not inputs.
        std::fs::write(target.join("lambda/other"), b"x").unwrap();
        assert!(is_fresh(
            &binary,
            &fingerprint(&root, &target, "x86_64 dist").unwrap()
        ));

        // A source edit (another size) is seen.
        std::fs::write(root.join("handler/src/lib.rs"), "fn a() { 1; }").unwrap();
        assert!(!is_fresh(
            &binary,
            &fingerprint(&root, &target, "x86_64 dist").unwrap()
        ));
        let fp = fingerprint(&root, &target, "x86_64 dist").unwrap();
        record(&binary, &fp).unwrap();
        assert!(is_fresh(&binary, &fp));
        // A new file is seen.
        std::fs::write(root.join("handler/src/new.rs"), "").unwrap();
        assert!(!is_fresh(
            &binary,
            &fingerprint(&root, &target, "x86_64 dist").unwrap()
        ));
        let fp = fingerprint(&root, &target, "x86_64 dist").unwrap();
        record(&binary, &fp).unwrap();

        // The binary replaced (new inode) is not the one the stamp names.
        let tmp = target.join("lambda/.tmp");
        std::fs::write(&tmp, b"\x7fELF one").unwrap();
        std::fs::rename(&tmp, &binary).unwrap();
        assert!(!is_fresh(&binary, &fp));
    }
}
