//! Build artifacts for Lambda beyond the plain zip (`infra::artifact` owns that one):
//!
//! - [`elf`]: read a built `bootstrap` (machine, static or not, newest `GLIBC_x.y` it needs)
//!   and refuse one the function's runtime or architecture cannot run.
//! - [`build`]: the cargo invocation for a target (native, static, or cross through
//!   cargo-zigbuild against the runtime's glibc), run, then checked.
//! - [`oci`]: a single-architecture OCI image (one deterministic layer holding `/bootstrap`)
//!   built without a Docker daemon.
//! - [`digest`]: SHA-256 that is fast in a debug build.
//! - [`registry`]: push that image over the registry HTTP API v2 (ECR included).

pub mod build;
pub mod digest;
pub mod elf;
pub mod oci;
pub mod registry;

pub use elf::{Arch, ElfError, ElfReport, GlibcVersion, Machine, Runtime};
pub use oci::{Image, ManifestFormat};
pub use registry::{Credentials, PushReport, Registry, RegistryError};
