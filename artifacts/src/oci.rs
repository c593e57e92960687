//! A single-architecture container image for Lambda, built without a Docker daemon.
//!
//! One layer (a gzipped tar holding `/bootstrap`, mode 0755, owner 0:0, every timestamp
//! zero), an image config (`os` linux, the architecture, `Entrypoint ["/bootstrap"]`) and a
//! manifest naming both. Never an index: Lambda rejects image indexes / manifest lists. All
//! three are deterministic, so the same binary always gives the same manifest digest, and an
//! unchanged image is recognised by digest alone.

use crate::elf::Arch;
use serde_json::json;
use std::io::Write;

/// The manifest flavour. Lambda (and ECR) accept both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ManifestFormat {
    /// `application/vnd.oci.image.manifest.v1+json`
    #[default]
    Oci,
    /// Docker Image Manifest V2, Schema 2 (`application/vnd.docker.distribution.manifest.v2+json`).
    DockerV2,
}

impl ManifestFormat {
    pub fn manifest_media_type(self) -> &'static str {
        match self {
            ManifestFormat::Oci => "application/vnd.oci.image.manifest.v1+json",
            ManifestFormat::DockerV2 => "application/vnd.docker.distribution.manifest.v2+json",
        }
    }

    pub fn config_media_type(self) -> &'static str {
        match self {
            ManifestFormat::Oci => "application/vnd.oci.image.config.v1+json",
            ManifestFormat::DockerV2 => "application/vnd.docker.container.image.v1+json",
        }
    }

    pub fn layer_media_type(self) -> &'static str {
        match self {
            ManifestFormat::Oci => "application/vnd.oci.image.layer.v1.tar+gzip",
            ManifestFormat::DockerV2 => "application/vnd.docker.image.rootfs.diff.tar.gzip",
        }
    }
}

/// Content-addressed bytes: a layer, a config or a manifest.
#[derive(Clone, PartialEq, Eq)]
pub struct Blob {
    pub media_type: String,
    /// `sha256:<hex>` of `bytes`.
    pub digest: String,
    pub bytes: Vec<u8>,
}

impl Blob {
    pub fn new(media_type: &str, bytes: Vec<u8>) -> Blob {
        Blob {
            media_type: media_type.to_string(),
            digest: sha256_digest(&bytes),
            bytes,
        }
    }

    /// The OCI descriptor (`mediaType`, `digest`, `size`) naming this blob.
    pub fn descriptor(&self) -> serde_json::Value {
        json!({
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.bytes.len(),
        })
    }
}

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blob")
            .field("media_type", &self.media_type)
            .field("digest", &self.digest)
            .field("size", &self.bytes.len())
            .finish()
    }
}

/// `sha256:<lowercase hex>`, the digest form registries use.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(crate::digest::sha256(bytes)))
}

/// A file in the image's only layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerFile {
    /// Path inside the image, without the leading `/` (`bootstrap`).
    pub path: String,
    pub mode: u32,
    pub bytes: Vec<u8>,
}

/// What to put in an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    pub arch: Arch,
    pub files: Vec<LayerFile>,
    pub entrypoint: Vec<String>,
    /// `KEY=value` entries for the config's `Env` (none needed for a static bootstrap).
    pub env: Vec<String>,
    pub format: ManifestFormat,
}

impl ImageSpec {
    /// `/bootstrap` (0755) as the entry point on an empty base.
    pub fn bootstrap(bootstrap: Vec<u8>, arch: Arch) -> ImageSpec {
        ImageSpec {
            arch,
            files: vec![LayerFile {
                path: "bootstrap".into(),
                mode: 0o755,
                bytes: bootstrap,
            }],
            entrypoint: vec!["/bootstrap".into()],
            env: Vec::new(),
            format: ManifestFormat::Oci,
        }
    }
}

/// A built image: push `layer` and `config`, then `manifest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub arch: Arch,
    pub format: ManifestFormat,
    pub layer: Blob,
    /// `sha256` of the uncompressed layer tar (the config's `rootfs.diff_ids`).
    pub diff_id: String,
    pub config: Blob,
    pub manifest: Blob,
}

impl Image {
    /// The image for a `bootstrap` binary (see [`ImageSpec::bootstrap`]).
    pub fn from_bootstrap(bootstrap: &[u8], arch: Arch) -> Image {
        Image::build(&ImageSpec::bootstrap(bootstrap.to_vec(), arch))
    }

    pub fn build(spec: &ImageSpec) -> Image {
        let format = spec.format;
        let tar = layer_tar(&spec.files);
        let diff_id = sha256_digest(&tar);
        let layer = Blob::new(format.layer_media_type(), gzip(&tar));
        let mut container_config = serde_json::Map::new();
        container_config.insert("Entrypoint".into(), json!(spec.entrypoint));
        if !spec.env.is_empty() {
            container_config.insert("Env".into(), json!(spec.env));
        }
        container_config.insert("WorkingDir".into(), json!("/"));
        let config = json!({
            "architecture": spec.arch.oci_name(),
            "os": "linux",
            "created": "1970-01-01T00:00:00Z",
            "config": container_config,
            "rootfs": { "type": "layers", "diff_ids": [diff_id] },
            "history": [{ "created": "1970-01-01T00:00:00Z", "created_by": "claude-lambda-toolkit" }],
        });
        let config = Blob::new(
            format.config_media_type(),
            serde_json::to_vec(&config).expect("JSON values serialize"),
        );
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": format.manifest_media_type(),
            "config": config.descriptor(),
            "layers": [layer.descriptor()],
        });
        let manifest = Blob::new(
            format.manifest_media_type(),
            serde_json::to_vec(&manifest).expect("JSON values serialize"),
        );
        Image {
            arch: spec.arch,
            format,
            layer,
            diff_id,
            config,
            manifest,
        }
    }

    /// The manifest digest: what Lambda's `ImageUri` names (`repo@sha256:...`).
    pub fn digest(&self) -> &str {
        &self.manifest.digest
    }

    /// The blobs the manifest references, pushed before it.
    pub fn blobs(&self) -> [&Blob; 2] {
        [&self.layer, &self.config]
    }
}

/// A POSIX ustar archive of `files`: owner 0:0, mtime 0, no user or group names, in the
/// order given. Same input, same bytes.
pub fn layer_tar(files: &[LayerFile]) -> Vec<u8> {
    let mut out = Vec::new();
    for file in files {
        let mut header = [0u8; 512];
        let path = file.path.trim_start_matches('/').as_bytes();
        let (prefix, name) = split_ustar_path(path);
        header[..name.len()].copy_from_slice(name);
        octal(&mut header[100..108], file.mode as u64 & 0o7777);
        octal(&mut header[108..116], 0); // uid
        octal(&mut header[116..124], 0); // gid
        octal(&mut header[124..136], file.bytes.len() as u64);
        octal(&mut header[136..148], 0); // mtime
        header[156] = b'0'; // regular file
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        octal(&mut header[329..337], 0); // devmajor
        octal(&mut header[337..345], 0); // devminor
        header[345..345 + prefix.len()].copy_from_slice(prefix);
        // The checksum is computed with its own field as spaces.
        header[148..156].copy_from_slice(b"        ");
        let sum: u32 = header.iter().map(|&b| b as u32).sum();
        let cks = format!("{sum:06o}\0 ");
        header[148..156].copy_from_slice(cks.as_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&file.bytes);
        let pad = (512 - file.bytes.len() % 512) % 512;
        out.extend(std::iter::repeat_n(0u8, pad));
    }
    out.extend(std::iter::repeat_n(0u8, 1024));
    out
}

/// Splits a path into ustar's prefix (155 bytes) and name (100 bytes) fields.
fn split_ustar_path(path: &[u8]) -> (&[u8], &[u8]) {
    if path.len() <= 100 {
        return (&[], path);
    }
    // Split at a '/' so that the name fits in 100 and the prefix in 155.
    for (i, &b) in path.iter().enumerate() {
        if b == b'/' && path.len() - i - 1 <= 100 && i <= 155 {
            return (&path[..i], &path[i + 1..]);
        }
    }
    panic!(
        "layer path too long for a ustar header: {}",
        String::from_utf8_lossy(path)
    );
}

/// Writes `value` as zero-padded octal, NUL-terminated, filling the field.
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let s = format!("{value:0digits$o}");
    assert!(s.len() == digits, "{value} does not fit a tar header field");
    field[..digits].copy_from_slice(s.as_bytes());
    field[digits] = 0;
}

/// gzip with no name, mtime 0 and OS "unknown", best compression: deterministic bytes.
fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), flate2::Compression::best());
    enc.write_all(bytes).expect("writing to a Vec");
    enc.finish().expect("writing to a Vec")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_binary_same_digest_and_different_binary_different_digest() {
        let a = Image::from_bootstrap(b"\x7fELF one", Arch::X86_64);
        let b = Image::from_bootstrap(b"\x7fELF one", Arch::X86_64);
        assert_eq!(a, b);
        assert_eq!(a.digest(), b.digest());
        assert_ne!(
            a.digest(),
            Image::from_bootstrap(b"\x7fELF two", Arch::X86_64).digest()
        );
        assert_ne!(
            a.digest(),
            Image::from_bootstrap(b"\x7fELF one", Arch::Arm64).digest()
        );
        assert!(a.digest().starts_with("sha256:") && a.digest().len() == 71);
    }

    #[test]
    fn manifest_is_a_single_manifest_naming_config_and_layer() {
        let img = Image::from_bootstrap(b"binary", Arch::Arm64);
        let m: serde_json::Value = serde_json::from_slice(&img.manifest.bytes).unwrap();
        assert_eq!(m["schemaVersion"], 2);
        assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
        assert!(m.get("manifests").is_none());
        assert_eq!(m["config"]["digest"], img.config.digest.as_str());
        assert_eq!(m["layers"][0]["digest"], img.layer.digest.as_str());
        assert_eq!(m["layers"][0]["size"], img.layer.bytes.len());
        let c: serde_json::Value = serde_json::from_slice(&img.config.bytes).unwrap();
        assert_eq!(c["architecture"], "arm64");
        assert_eq!(c["os"], "linux");
        assert_eq!(c["config"]["Entrypoint"], json!(["/bootstrap"]));
        assert_eq!(c["rootfs"]["diff_ids"][0], img.diff_id.as_str());
    }

    #[test]
    fn tar_header_is_valid_ustar() {
        let tar = layer_tar(&[LayerFile {
            path: "/bootstrap".into(),
            mode: 0o755,
            bytes: vec![1; 700],
        }]);
        assert_eq!(tar.len(), 512 + 1024 + 1024);
        assert_eq!(&tar[..10], b"bootstrap\0");
        assert_eq!(&tar[100..108], b"0000755\0");
        assert_eq!(&tar[124..136], b"00000001274\0");
        let stored = u32::from_str_radix(std::str::from_utf8(&tar[148..154]).unwrap(), 8).unwrap();
        let mut h = tar[..512].to_vec();
        h[148..156].copy_from_slice(b"        ");
        assert_eq!(stored, h.iter().map(|&b| b as u32).sum::<u32>());
    }
}
