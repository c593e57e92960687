//! Shared by the integration tests: the fixture crate, per-test target directories, and the
//! rule that a missing stand-in fails under CI (with the command that installs it) and is
//! reported loudly elsewhere.
#![allow(dead_code)]

use artifacts::build::{BuildOptions, Profile, Target};
use artifacts::Runtime;
use std::path::{Path, PathBuf};

/// The tiny stand-alone crate whose `bootstrap` is a minimal Lambda custom runtime.
pub fn fixture_manifest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hello/Cargo.toml")
}

/// A target directory of its own for each test (tests run in parallel, and a static and a
/// dynamic build of one triple write the same path in cargo's tree).
pub fn target_dir(test: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("artifacts-fixture")
        .join(test)
}

/// Build options for the fixture, debug profile.
pub fn fixture_options(test: &str, target: Target, runtime: Runtime) -> BuildOptions {
    BuildOptions {
        target,
        runtime,
        profile: Profile::Debug,
        linker: Default::default(),
        manifest_path: Some(fixture_manifest()),
        package: "hello-bootstrap".into(),
        bin: "bootstrap".into(),
        target_dir: Some(target_dir(test)),
    }
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// A required tool is missing: fail under CI, otherwise say so loudly and return (the
/// caller returns too). Never a silent skip.
pub fn missing(what: &str, fix: &str) {
    let msg = format!("{what} is not installed; install it with `{fix}`");
    if in_ci() {
        panic!("{msg}");
    }
    eprintln!("SKIPPED (not CI): {msg}");
}

pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A real OCI registry (Debian's `docker-registry`, the CNCF distribution server) on a
/// loopback port with htpasswd basic auth, storing into a temporary directory.
pub struct RegistryServer {
    pub port: u16,
    pub user: String,
    pub password: String,
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl RegistryServer {
    /// Starts the registry, or returns `None` (outside CI) when it is not installed.
    pub fn start() -> Option<RegistryServer> {
        let (Some(bin), Some(_)) = (which("docker-registry"), which("skopeo")) else {
            missing(
                "docker-registry or skopeo",
                "apt-get install -y docker-registry skopeo",
            );
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let user = "AWS".to_string();
        let password = format!("pw-{}", std::process::id());
        let hash = bcrypt::hash_with_salt(&password, 5, *b"0123456789abcdef")
            .unwrap()
            .format_for_version(bcrypt::Version::TwoY);
        std::fs::write(dir.path().join("htpasswd"), format!("{user}:{hash}\n")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\nauth:\n  htpasswd:\n    realm: test-registry\n    path: {htpasswd}\n",
            data = dir.path().join("data").display(),
            htpasswd = dir.path().join("htpasswd").display(),
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = std::process::Command::new(bin)
            .arg("serve")
            .arg(&config_path)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting docker-registry");
        let mut server = RegistryServer {
            port,
            user,
            password,
            child,
            dir,
        };
        // Ready when /v2/ answers (401: it wants our credentials).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!(
                    "docker-registry exited ({status}) before listening:\n{}",
                    server.log()
                );
            }
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                use std::io::{Read, Write};
                let _ = write!(
                    s,
                    "GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                );
                let mut buf = String::new();
                let _ = s.read_to_string(&mut buf);
                if buf.starts_with("HTTP/1.1 401") {
                    return Some(server);
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "docker-registry did not answer on 127.0.0.1:{port} within 30 s:\n{}",
                server.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn creds(&self) -> String {
        format!("{}:{}", self.user, self.password)
    }

    /// The registry's own log (one line per request it served).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Requests the registry logged with this HTTP method (from its access log lines).
    pub fn logged_requests(&self, method: &str) -> usize {
        let needle = format!("http.request.method={method} ");
        self.log()
            .lines()
            .filter(|l| l.contains("response completed") && l.contains(&needle))
            .count()
    }
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs skopeo against the registry and returns its stdout.
pub fn skopeo(args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new("skopeo")
        .args(args)
        .output()
        .expect("running skopeo");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Copies `image_uri` (`host:port/repo@sha256:...`) out of the registry with `skopeo copy`
/// to an OCI layout, checks the manifest digest, and unpacks its single layer with `tar`
/// into `<work>/root`, which it returns.
pub fn pull_and_unpack(
    server: &RegistryServer,
    image_uri: &str,
    digest: &str,
    work: &Path,
) -> PathBuf {
    let oci_dir = work.join("oci");
    let creds = server.creds();
    skopeo(&[
        "--insecure-policy",
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        &creds,
        &format!("docker://{image_uri}"),
        &format!("oci:{}:pulled", oci_dir.display()),
    ]);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(oci_dir.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(manifest_digest, digest);
    let blob = |d: &str| {
        oci_dir
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(&manifest_digest)).unwrap()).unwrap();
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);
    let layer = blob(manifest["layers"][0]["digest"].as_str().unwrap());
    let root = work.join("root");
    std::fs::create_dir(&root).unwrap();
    let status = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(&layer)
        .arg("-C")
        .arg(&root)
        .status()
        .unwrap();
    assert!(status.success(), "tar -xzf {}", layer.display());
    root
}

/// The command that runs `/bootstrap` with `root` as its `/`: `chroot` as root, otherwise
/// `unshare --user --map-root-user chroot`.
pub fn chroot_command(root: &Path) -> Vec<String> {
    let is_root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    let chroot = which("chroot").expect("chroot (coreutils)");
    let mut argv = Vec::new();
    if !is_root {
        argv.push(
            which("unshare")
                .expect("unshare (util-linux)")
                .display()
                .to_string(),
        );
        argv.extend(["--user".into(), "--map-root-user".into()]);
    }
    argv.push(chroot.display().to_string());
    argv.push(root.display().to_string());
    argv.push("/bootstrap".into());
    argv
}
