//! Reading a built `bootstrap` before it is uploaded: which machine it is for, whether it is
//! static, and the newest `GLIBC_x.y` symbol version it asks the dynamic loader for.
//!
//! A binary linked on a newer distribution than the Lambda runtime dies at cold start with
//! "version `GLIBC_2.xx' not found"; an x86_64 binary on an arm64 function dies with
//! "exec format error". [`check`] refuses both before anything is uploaded.
//!
//! The parser reads ELF64 little-endian files (the only kind Lambda runs) straight from the
//! section and program headers; it follows the gABI and the GNU symbol-versioning spec
//! (`.gnu.version`, `.gnu.version_r`).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A Lambda function architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Arch {
    #[serde(rename = "x86_64")]
    X86_64,
    #[serde(rename = "arm64")]
    Arm64,
}

impl Arch {
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Arm64];

    /// Lambda's name (`Architectures` in the API): `x86_64` or `arm64`.
    pub fn lambda_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Arm64 => "arm64",
        }
    }

    /// The Rust target triple for a glibc build: `x86_64-unknown-linux-gnu`, `aarch64-unknown-linux-gnu`.
    pub fn rust_triple(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-unknown-linux-gnu",
            Arch::Arm64 => "aarch64-unknown-linux-gnu",
        }
    }

    /// The OCI / Go name used in image configs: `amd64` or `arm64`.
    pub fn oci_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// The ELF machine this architecture runs.
    pub fn machine(self) -> Machine {
        match self {
            Arch::X86_64 => Machine::X86_64,
            Arch::Arm64 => Machine::Aarch64,
        }
    }

    /// The architecture of the machine running this code, if Lambda has one like it.
    pub fn host() -> Option<Arch> {
        match std::env::consts::ARCH {
            "x86_64" => Some(Arch::X86_64),
            "aarch64" => Some(Arch::Arm64),
            _ => None,
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.lambda_name())
    }
}

impl FromStr for Arch {
    type Err = ParseError;
    /// Accepts Lambda's names (`x86_64`, `arm64`) and the common aliases (`amd64`, `aarch64`).
    fn from_str(s: &str) -> Result<Arch, ParseError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "x86_64" | "amd64" | "x86-64" => Ok(Arch::X86_64),
            "arm64" | "aarch64" => Ok(Arch::Arm64),
            _ => Err(ParseError {
                what: "architecture",
                value: s.to_string(),
                expected: "x86_64 or arm64",
            }),
        }
    }
}

/// A Lambda OS-only runtime for a custom `bootstrap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Runtime {
    #[default]
    #[serde(rename = "provided.al2023")]
    ProvidedAl2023,
    #[serde(rename = "provided.al2")]
    ProvidedAl2,
}

impl Runtime {
    /// Lambda's identifier: `provided.al2023` or `provided.al2`.
    pub fn lambda_name(self) -> &'static str {
        match self {
            Runtime::ProvidedAl2023 => "provided.al2023",
            Runtime::ProvidedAl2 => "provided.al2",
        }
    }

    /// The glibc the runtime ships: 2.34 on Amazon Linux 2023, 2.26 on Amazon Linux 2.
    pub fn glibc(self) -> GlibcVersion {
        match self {
            Runtime::ProvidedAl2023 => GlibcVersion::new(2, 34),
            Runtime::ProvidedAl2 => GlibcVersion::new(2, 26),
        }
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.lambda_name())
    }
}

impl FromStr for Runtime {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Runtime, ParseError> {
        match s.trim() {
            "provided.al2023" => Ok(Runtime::ProvidedAl2023),
            "provided.al2" => Ok(Runtime::ProvidedAl2),
            _ => Err(ParseError {
                what: "runtime",
                value: s.to_string(),
                expected: "provided.al2023 or provided.al2",
            }),
        }
    }
}

/// An unknown architecture or runtime name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{value}`: expected {expected}")]
pub struct ParseError {
    pub what: &'static str,
    pub value: String,
    pub expected: &'static str,
}

/// A glibc version such as 2.34 (the `GLIBC_2.34` in a symbol version).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GlibcVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl GlibcVersion {
    pub const fn new(major: u32, minor: u32) -> GlibcVersion {
        GlibcVersion {
            major,
            minor,
            patch: 0,
        }
    }

    /// Parses the name of a version requirement: `GLIBC_2.34`, `GLIBC_2.2.5`. Other names
    /// (`GLIBC_PRIVATE`, `GCC_3.0`) give `None`.
    pub fn from_version_name(name: &str) -> Option<GlibcVersion> {
        let rest = name.strip_prefix("GLIBC_")?;
        let mut parts = rest.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let patch = match parts.next() {
            Some(p) => p.parse().ok()?,
            None => 0,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(GlibcVersion {
            major,
            minor,
            patch,
        })
    }
}

impl fmt::Display for GlibcVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.patch == 0 {
            write!(f, "{}.{}", self.major, self.minor)
        } else {
            write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
        }
    }
}

/// The ELF `e_machine` of a binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Machine {
    X86_64,
    Aarch64,
    /// Any other machine, by its `e_machine` number.
    Other(u16),
}

impl Machine {
    const EM_X86_64: u16 = 62;
    const EM_AARCH64: u16 = 183;

    fn from_e_machine(e: u16) -> Machine {
        match e {
            Self::EM_X86_64 => Machine::X86_64,
            Self::EM_AARCH64 => Machine::Aarch64,
            other => Machine::Other(other),
        }
    }

    /// The Lambda architecture that runs this machine's code.
    pub fn arch(self) -> Option<Arch> {
        match self {
            Machine::X86_64 => Some(Arch::X86_64),
            Machine::Aarch64 => Some(Arch::Arm64),
            Machine::Other(_) => None,
        }
    }
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Machine::X86_64 => f.write_str("x86_64"),
            Machine::Aarch64 => f.write_str("aarch64 (arm64)"),
            Machine::Other(n) => write!(f, "ELF machine {n}"),
        }
    }
}

/// One dynamic symbol bound to a `GLIBC_x.y` version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GlibcSymbol {
    pub symbol: String,
    pub version: GlibcVersion,
    /// The library the version is required from (`libc.so.6`, `libm.so.6`, ...).
    pub library: String,
}

/// What [`inspect`] found in a binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ElfReport {
    pub path: PathBuf,
    pub machine: Machine,
    /// The program interpreter (`PT_INTERP`), e.g. `/lib64/ld-linux-x86-64.so.2`.
    pub interpreter: Option<String>,
    /// The shared libraries it needs (`DT_NEEDED`).
    pub needed: Vec<String>,
    /// Every `GLIBC_x.y` version the binary requires (from `.gnu.version_r`), oldest first.
    pub glibc_versions: Vec<GlibcVersion>,
    /// The dynamic symbols bound to a `GLIBC_x.y` version, newest version first.
    pub glibc_symbols: Vec<GlibcSymbol>,
}

impl ElfReport {
    /// No interpreter and no shared libraries: runs on an empty root filesystem.
    pub fn is_static(&self) -> bool {
        self.interpreter.is_none() && self.needed.is_empty()
    }

    /// The newest glibc version the binary needs at run time (`None` for a static binary).
    pub fn max_glibc(&self) -> Option<GlibcVersion> {
        self.glibc_versions.iter().copied().max()
    }

    /// A symbol that needs [`ElfReport::max_glibc`], if the binary has symbol versions for it.
    pub fn newest_glibc_symbol(&self) -> Option<&GlibcSymbol> {
        self.glibc_symbols.first()
    }

    /// The symbols that need a newer glibc than `glibc`, newest first.
    pub fn symbols_newer_than(&self, glibc: GlibcVersion) -> Vec<&GlibcSymbol> {
        self.glibc_symbols
            .iter()
            .filter(|s| s.version > glibc)
            .collect()
    }
}

/// Why a binary could not be read, or may not be deployed.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("reading {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not an ELF executable ({reason}); build it for Lambda with `cargo xtask build`", path.display())]
    NotElf { path: PathBuf, reason: String },
    #[error("{} is a malformed ELF file: {reason}", path.display())]
    Malformed { path: PathBuf, reason: String },
    #[error(
        "{} is built for {found}, but the function's architecture is {expected} ({expected_machine}); \
         rebuild with `cargo xtask build --arch {expected}`",
        path.display(),
        expected_machine = expected.machine()
    )]
    WrongArch {
        path: PathBuf,
        found: Machine,
        expected: Arch,
    },
    #[error(
        "{} needs glibc {required} (symbol `{symbol}` is versioned GLIBC_{required}{more}), \
         but {runtime} ships glibc {provided}: Lambda would fail at cold start with \
         \"version `GLIBC_{required}' not found\". Build against the runtime's glibc with \
         cargo-zigbuild (`pip install ziglang && cargo install cargo-zigbuild`, then \
         `cargo xtask build`), or build a static binary",
        path.display(),
        more = if *others > 0 { format!(", and {others} other symbol(s) need more than {provided}") } else { String::new() }
    )]
    GlibcTooNew {
        path: PathBuf,
        symbol: String,
        required: GlibcVersion,
        runtime: Runtime,
        provided: GlibcVersion,
        /// How many other symbols also need a newer glibc than the runtime has.
        others: usize,
    },
}

/// Reads the ELF file at `path`.
pub fn inspect(path: &Path) -> Result<ElfReport, ElfError> {
    let bytes = std::fs::read(path).map_err(|source| ElfError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    inspect_bytes(path, &bytes)
}

/// Inspects a binary and refuses it if `arch` cannot run it or `runtime`'s glibc is too old
/// for it. A static binary passes any runtime.
pub fn check(binary: &Path, runtime: Runtime, arch: Arch) -> Result<ElfReport, ElfError> {
    let report = inspect(binary)?;
    check_report(&report, runtime, arch)?;
    Ok(report)
}

/// [`check`] on an already inspected binary.
pub fn check_report(report: &ElfReport, runtime: Runtime, arch: Arch) -> Result<(), ElfError> {
    if report.machine != arch.machine() {
        return Err(ElfError::WrongArch {
            path: report.path.clone(),
            found: report.machine,
            expected: arch,
        });
    }
    let provided = runtime.glibc();
    if let Some(required) = report.max_glibc().filter(|v| *v > provided) {
        let too_new = report.symbols_newer_than(provided);
        // A version can be required without any symbol naming it (a library's verneed
        // entry); name the version itself then.
        let symbol = too_new
            .iter()
            .find(|s| s.version == required)
            .map(|s| s.symbol.clone())
            .unwrap_or_else(|| format!("(version requirement GLIBC_{required})"));
        return Err(ElfError::GlibcTooNew {
            path: report.path.clone(),
            symbol,
            required,
            runtime,
            provided,
            others: too_new.len().saturating_sub(1),
        });
    }
    Ok(())
}

const PT_INTERP: u32 = 3;
const SHT_DYNSYM: u32 = 11;
const SHT_DYNAMIC: u32 = 6;
const SHT_GNU_VERNEED: u32 = 0x6fff_fffe;
const SHT_GNU_VERSYM: u32 = 0x6fff_ffff;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;

/// Inspects ELF bytes; `path` only names the file in the report and errors.
pub fn inspect_bytes(path: &Path, data: &[u8]) -> Result<ElfReport, ElfError> {
    let r = Reader { path, data };
    if data.len() < 4 || &data[..4] != b"\x7fELF" {
        return Err(ElfError::NotElf {
            path: path.to_path_buf(),
            reason: "no ELF magic number".into(),
        });
    }
    if data.len() < 64 {
        return Err(r.malformed("shorter than an ELF64 header"));
    }
    if data[4] != 2 || data[5] != 1 {
        return Err(ElfError::NotElf {
            path: path.to_path_buf(),
            reason: "not a 64-bit little-endian ELF; Lambda runs only x86_64 and arm64".into(),
        });
    }
    let machine = Machine::from_e_machine(r.u16(18)?);
    let e_phoff = r.u64(32)? as usize;
    let e_shoff = r.u64(40)? as usize;
    let e_phentsize = r.u16(54)? as usize;
    let e_phnum = r.u16(56)? as usize;
    let e_shentsize = r.u16(58)? as usize;
    let e_shnum = r.u16(60)? as usize;

    // Program headers: the interpreter.
    let mut interpreter = None;
    if e_phnum > 0 && e_phentsize < 56 {
        return Err(r.malformed("program header entries are too small"));
    }
    for i in 0..e_phnum {
        let ph = e_phoff + i * e_phentsize;
        if r.u32(ph)? == PT_INTERP {
            let off = r.u64(ph + 8)? as usize;
            let size = r.u64(ph + 32)? as usize;
            let bytes = r.slice(off, size)?;
            let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
            interpreter = Some(String::from_utf8_lossy(&bytes[..end]).into_owned());
        }
    }

    // Section headers: dynamic section, dynamic symbols and their versions.
    if e_shnum > 0 && e_shentsize < 64 {
        return Err(r.malformed("section header entries are too small"));
    }
    let sections = (0..e_shnum)
        .map(|i| Section::read(&r, e_shoff + i * e_shentsize))
        .collect::<Result<Vec<_>, _>>()?;
    let linked_strtab = |s: &Section| -> Result<&[u8], ElfError> {
        let strtab = sections
            .get(s.link as usize)
            .ok_or_else(|| r.malformed("a section links to a missing string table"))?;
        r.slice(strtab.offset, strtab.size)
    };

    let mut needed = Vec::new();
    for s in sections.iter().filter(|s| s.kind == SHT_DYNAMIC) {
        let strtab = linked_strtab(s)?;
        let body = r.slice(s.offset, s.size)?;
        for entry in body.chunks_exact(16) {
            let tag = u64::from_le_bytes(entry[..8].try_into().unwrap());
            let val = u64::from_le_bytes(entry[8..].try_into().unwrap());
            match tag {
                DT_NULL => break,
                DT_NEEDED => needed.push(r.cstr(strtab, val as usize)?),
                _ => {}
            }
        }
    }

    // .gnu.version_r: (library, version name, version index) for each requirement.
    let mut requirements: Vec<(String, String, u16)> = Vec::new();
    for s in sections.iter().filter(|s| s.kind == SHT_GNU_VERNEED) {
        let strtab = linked_strtab(s)?;
        let body = r.slice(s.offset, s.size)?;
        let sub = Reader { path, data: body };
        let mut vn = 0usize;
        // sh_info holds the number of Verneed entries; bound the walk by it.
        for _ in 0..s.info.max(1) {
            let cnt = sub.u16(vn + 2)? as usize;
            let file = r.cstr(strtab, sub.u32(vn + 4)? as usize)?;
            let mut aux = vn + sub.u32(vn + 8)? as usize;
            for _ in 0..cnt {
                let other = sub.u16(aux + 6)?;
                let name = r.cstr(strtab, sub.u32(aux + 8)? as usize)?;
                requirements.push((file.clone(), name, other));
                let next = sub.u32(aux + 12)? as usize;
                if next == 0 {
                    break;
                }
                aux += next;
            }
            let next = sub.u32(vn + 12)? as usize;
            if next == 0 {
                break;
            }
            vn += next;
        }
    }
    let mut glibc_versions: Vec<GlibcVersion> = requirements
        .iter()
        .filter_map(|(_, name, _)| GlibcVersion::from_version_name(name))
        .collect();
    glibc_versions.sort();
    glibc_versions.dedup();

    // .dynsym + .gnu.version: which symbol is bound to which requirement.
    let mut glibc_symbols = Vec::new();
    let versym = sections.iter().find(|s| s.kind == SHT_GNU_VERSYM);
    let dynsym = sections.iter().find(|s| s.kind == SHT_DYNSYM);
    if let (Some(versym), Some(dynsym)) = (versym, dynsym) {
        let strtab = linked_strtab(dynsym)?;
        let syms = r.slice(dynsym.offset, dynsym.size)?;
        let vers = r.slice(versym.offset, versym.size)?;
        for (i, sym) in syms.chunks_exact(24).enumerate() {
            let Some(v) = vers.get(i * 2..i * 2 + 2) else {
                break;
            };
            let index = u16::from_le_bytes([v[0], v[1]]) & 0x7fff;
            if index < 2 {
                continue; // local or global (unversioned)
            }
            let shndx = u16::from_le_bytes([sym[6], sym[7]]);
            if shndx != 0 {
                continue; // defined here, not required from a library
            }
            let Some((library, name, _)) = requirements.iter().find(|(_, _, o)| *o == index) else {
                continue;
            };
            let Some(version) = GlibcVersion::from_version_name(name) else {
                continue;
            };
            let st_name = u32::from_le_bytes(sym[..4].try_into().unwrap()) as usize;
            glibc_symbols.push(GlibcSymbol {
                symbol: r.cstr(strtab, st_name)?,
                version,
                library: library.clone(),
            });
        }
    }
    glibc_symbols.sort_by(|a, b| b.version.cmp(&a.version).then(a.symbol.cmp(&b.symbol)));

    Ok(ElfReport {
        path: path.to_path_buf(),
        machine,
        interpreter,
        needed,
        glibc_versions,
        glibc_symbols,
    })
}

struct Section {
    kind: u32,
    offset: usize,
    size: usize,
    link: u32,
    info: u32,
}

impl Section {
    fn read(r: &Reader<'_>, at: usize) -> Result<Section, ElfError> {
        Ok(Section {
            kind: r.u32(at + 4)?,
            offset: r.u64(at + 24)? as usize,
            size: r.u64(at + 32)? as usize,
            link: r.u32(at + 40)?,
            info: r.u32(at + 44)?,
        })
    }
}

struct Reader<'a> {
    path: &'a Path,
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn malformed(&self, reason: &str) -> ElfError {
        ElfError::Malformed {
            path: self.path.to_path_buf(),
            reason: reason.to_string(),
        }
    }

    fn slice(&self, off: usize, len: usize) -> Result<&'a [u8], ElfError> {
        off.checked_add(len)
            .and_then(|end| self.data.get(off..end))
            .ok_or_else(|| self.malformed(&format!("{len} bytes at offset {off} are past the end")))
    }

    fn u16(&self, off: usize) -> Result<u16, ElfError> {
        Ok(u16::from_le_bytes(self.slice(off, 2)?.try_into().unwrap()))
    }

    fn u32(&self, off: usize) -> Result<u32, ElfError> {
        Ok(u32::from_le_bytes(self.slice(off, 4)?.try_into().unwrap()))
    }

    fn u64(&self, off: usize) -> Result<u64, ElfError> {
        Ok(u64::from_le_bytes(self.slice(off, 8)?.try_into().unwrap()))
    }

    fn cstr(&self, table: &[u8], off: usize) -> Result<String, ElfError> {
        let rest = table
            .get(off..)
            .ok_or_else(|| self.malformed("a string offset is past its string table"))?;
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
    }
}

#[cfg(test)]
mod tests;
