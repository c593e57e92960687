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
