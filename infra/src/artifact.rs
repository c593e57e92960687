//! The deployment package: a zip holding one executable `bootstrap` (mode 0755) with fixed
//! timestamps, so the same binary always gives the same bytes and the same CodeSha256.

use anyhow::{bail, Context, Result};
use base64::Engine;
use std::io::Write;
use std::path::Path;

/// The OS-only runtime `bootstrap` is built for and the function and the layer declare.
pub const RUNTIME: &str = "provided.al2023";

/// Lambda's limit for a zip uploaded directly (larger packages go through S3).
pub const MAX_DIRECT_UPLOAD_BYTES: usize = 50 * 1024 * 1024;

#[derive(Clone)]
pub struct Artifact {
    /// The zip file's bytes.
    pub zip: Vec<u8>,
    /// base64(SHA-256(zip)): what Lambda reports as `CodeSha256`.
    pub code_sha256: String,
}

impl std::fmt::Debug for Artifact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Artifact")
            .field("zip_bytes", &self.zip.len())
            .field("code_sha256", &self.code_sha256)
            .finish()
    }
}

impl Artifact {
    /// Zips the executable at `path` as `bootstrap`.
    pub fn from_bootstrap(path: &Path) -> Result<Artifact> {
        Self::from_bootstrap_file(path, &read_bootstrap(path)?)
    }

    /// Zips `bytes`, read from the executable at `path` (named in errors), as `bootstrap`.
    pub fn from_bootstrap_file(path: &Path, bytes: &[u8]) -> Result<Artifact> {
        if bytes.is_empty() {
            bail!(
                "{} is empty: rebuild it with `cargo xtask build`",
                path.display()
            );
        }
        let artifact = Self::from_bootstrap_bytes(bytes)?;
        if artifact.zip.len() > MAX_DIRECT_UPLOAD_BYTES {
            bail!(
                "the zipped bootstrap is {} bytes, over Lambda's 50 MB direct-upload limit; build in release mode with symbols stripped",
                artifact.zip.len()
            );
        }
        Ok(artifact)
    }

    /// Zips these bytes as `bootstrap` (tests use arbitrary bytes).
    pub fn from_bootstrap_bytes(bytes: &[u8]) -> Result<Artifact> {
        let mut cursor = std::io::Cursor::new(Vec::new());
        {
            let mut zip = zip::ZipWriter::new(&mut cursor);
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .compression_level(Some(9))
                .unix_permissions(0o755)
                // 1980-01-01 00:00:00, the zip epoch: no build time in the bytes.
                .last_modified_time(zip::DateTime::default());
            zip.start_file("bootstrap", options)
                .context("writing bootstrap into the zip")?;
            zip.write_all(bytes)
                .context("writing bootstrap into the zip")?;
            zip.finish().context("finishing the zip")?;
        }
        let zip = cursor.into_inner();
        let code_sha256 = code_sha256(&zip);
        Ok(Artifact { zip, code_sha256 })
    }
}

/// The bytes of the executable at `path`.
pub fn read_bootstrap(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| {
        format!(
            "reading the bootstrap binary {} (build it with `cargo xtask build`)",
            path.display()
        )
    })
}

/// base64(SHA-256(bytes)), the form of Lambda's `CodeSha256`.
pub fn code_sha256(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(artifacts::digest::sha256(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn same_bytes_same_zip_and_sha() {
        let a = Artifact::from_bootstrap_bytes(b"\x7fELF pretend binary").unwrap();
        let b = Artifact::from_bootstrap_bytes(b"\x7fELF pretend binary").unwrap();
        assert_eq!(a.zip, b.zip);
        assert_eq!(a.code_sha256, b.code_sha256);
        let c = Artifact::from_bootstrap_bytes(b"\x7fELF another binary").unwrap();
        assert_ne!(a.code_sha256, c.code_sha256);
        assert_eq!(a.code_sha256, code_sha256(&a.zip));
        assert_eq!(a.code_sha256.len(), 44, "base64 of 32 bytes");
    }

    #[test]
    fn zip_holds_executable_bootstrap_at_root() {
        let a = Artifact::from_bootstrap_bytes(b"hello").unwrap();
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(&a.zip)).unwrap();
        assert_eq!(archive.len(), 1);
        let mut f = archive.by_name("bootstrap").unwrap();
        assert_eq!(f.unix_mode().unwrap() & 0o777, 0o755);
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello");
    }

    #[test]
    fn from_file_and_missing_file() {
        let dir = std::env::temp_dir().join(format!("infra-artifact-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("bootstrap");
        std::fs::write(&p, b"binary").unwrap();
        let a = Artifact::from_bootstrap(&p).unwrap();
        assert_eq!(
            a.code_sha256,
            Artifact::from_bootstrap_bytes(b"binary")
                .unwrap()
                .code_sha256
        );
        let e = Artifact::from_bootstrap(&dir.join("nope")).unwrap_err();
        assert!(e.to_string().contains("cargo xtask build"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
