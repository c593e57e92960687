//! Helpers shared by the xtask test binaries.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The real handler binary, built for this machine (debug, fast when up to date).
pub fn handler_bootstrap() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-p", "claude-lambda-handler", "--bin", "bootstrap"])
        .current_dir(root)
        .status()
        .unwrap();
    assert!(status.success(), "building the handler's bootstrap failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let path = target.join("debug").join("bootstrap");
    assert!(path.is_file(), "{} missing after the build", path.display());
    path
}
