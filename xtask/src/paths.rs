//! Where things are: the workspace root and cargo's target directory.

use crate::cmd::{cargo, cmd};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// The workspace root (xtask lives one level below it).
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_path_buf()
}

/// Cargo's target directory for this workspace (honours `CARGO_TARGET_DIR` and config).
pub async fn target_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        return Ok(if dir.is_absolute() {
            dir
        } else {
            project_root().join(dir)
        });
    }
    if let Some(dir) = running_from_target_dir() {
        return Ok(dir);
    }
    let json = cmd(cargo(), ["metadata", "--format-version", "1", "--no-deps"])
        .dir(&project_root())
        .read()
        .await
        .context("asking cargo where the target directory is")?;
    let meta: serde_json::Value =
        serde_json::from_str(&json).context("parsing `cargo metadata` output")?;
    let dir = meta["target_directory"]
        .as_str()
        .context("`cargo metadata` printed no target_directory")?;
    Ok(PathBuf::from(dir))
}

/// The target directory this CLI runs from: `cargo xtask` is `cargo run`, so its binary is
/// `<target>/<profile>/xtask` (or `<target>/<triple>/<profile>/xtask`), and cargo marks
/// `<target>` with `CACHEDIR.TAG` and `.rustc_info.json`, and the profile dir with
/// `.fingerprint`. Saves a `cargo metadata` run (a few hundred milliseconds) per command; a
/// binary run from anywhere else (a test harness's copy) asks cargo.
fn running_from_target_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?;
    if !profile_dir.join(".fingerprint").is_dir() {
        return None;
    }
    let is_target =
        |dir: &Path| dir.join("CACHEDIR.TAG").is_file() && dir.join(".rustc_info.json").is_file();
    exe.ancestors()
        .skip(2)
        .take(2)
        .find(|d| is_target(d))
        .map(Path::to_path_buf)
}
