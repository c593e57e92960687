//! The container image path end to end against a real registry (Debian's `docker-registry`
//! on loopback with basic auth, like ECR's token): push, `skopeo inspect`, an unchanged
//! second push, and the static `bootstrap` pulled back out of the registry running in an
//! empty root filesystem under a Runtime API stand-in.

mod common;

use artifacts::build::{self, LinkerChoice, Target};
use artifacts::oci::{sha256_digest, ImageSpec};
use artifacts::registry::{Credentials, Registry, RegistryError};
use artifacts::{Arch, Image, ManifestFormat, Runtime};
use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The fixture runtime, built static for x86_64 (the host of these tests).
fn static_bootstrap(test: &str) -> Vec<u8> {
    let arch = Arch::host().expect("an x86_64 or arm64 test machine");
    let mut opts = fixture_options(
        test,
        Target {
            arch,
            static_: true,
        },
        Runtime::ProvidedAl2023,
    );
    opts.linker = LinkerChoice::Auto;
    let built = build::build(&opts).unwrap_or_else(|e| panic!("static build: {e}"));
    assert!(built.report.is_static());
    std::fs::read(&built.path).unwrap()
}

fn registry(server: &RegistryServer, repo: &str) -> Registry {
    Registry::new(
        &server.address(),
        repo,
        Some(Credentials::new(&server.user, &server.password)),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_image_is_one_manifest_with_the_right_architecture_entrypoint_and_digest() {
    let Some(server) = RegistryServer::start() else {
        return;
    };
    let arch = Arch::host().unwrap();
    let bytes = tokio::task::spawn_blocking(|| static_bootstrap("image-push"))
        .await
        .unwrap();
    let image = Image::from_bootstrap(&bytes, arch);
    // Small chunks, so the upload really is POST + several PATCHes + PUT ?digest=.
    let reg = registry(&server, "claude-proxy-test").with_chunk_size(256 * 1024);
    let report = reg.push(&image, "latest").await.unwrap();
    assert_eq!(report.digest, image.digest());
    assert!(report.manifest_pushed);
    assert_eq!(report.uploaded.len(), 2);
    assert_eq!(
        report.image_uri,
        format!("{}/claude-proxy-test@{}", server.address(), image.digest())
    );
    let patches = reg
        .requests()
        .iter()
        .filter(|r| r.method == reqwest::Method::PATCH)
        .count();
    assert!(
        patches >= 2,
        "expected a chunked upload, saw {patches} PATCHes"
    );

    // What skopeo (containers/image, independent of our code) sees.
    let by_digest = format!(
        "docker://{}@{}",
        report.image_uri.split('@').next().unwrap(),
        report.digest
    );
    let creds = server.creds();
    let common = ["--tls-verify=false", "--creds", creds.as_str()];
    let raw = skopeo(&[&["inspect", "--raw"][..], &common, &[&by_digest]].concat());
    assert_eq!(
        sha256_digest(&raw),
        image.digest(),
        "the manifest bytes hash to the digest"
    );
    let manifest: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert!(manifest.get("manifests").is_none(), "an index: {manifest}");
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);

    let config: Value = serde_json::from_slice(&skopeo(
        &[&["inspect", "--config"][..], &common, &[&by_digest]].concat(),
    ))
    .unwrap();
    assert_eq!(config["architecture"], arch.oci_name());
    assert_eq!(config["os"], "linux");
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/bootstrap"])
    );

    let by_tag = format!("docker://{}/claude-proxy-test:latest", server.address());
    let info: Value =
        serde_json::from_slice(&skopeo(&[&["inspect"][..], &common, &[&by_tag]].concat())).unwrap();
    assert_eq!(info["Digest"], image.digest());
    assert_eq!(info["Architecture"], arch.oci_name());

    // The same image again, from a fresh client: HEAD only, nothing uploaded.
    let writes_before = ["POST", "PATCH", "PUT"].map(|m| server.logged_requests(m));
    let again = registry(&server, "claude-proxy-test");
    let report2 = again
        .push(&Image::from_bootstrap(&bytes, arch), "latest")
        .await
        .unwrap();
    assert_eq!(report2.digest, report.digest);
    assert!(!report2.manifest_pushed);
    assert!(report2.uploaded.is_empty());
    let methods: Vec<_> = again.requests().iter().map(|r| r.method.clone()).collect();
    assert!(
        methods.iter().all(|m| m == reqwest::Method::HEAD),
        "second push made {methods:?}"
    );
    assert!(again.manifest_exists(image.digest()).await.unwrap());
    // The registry's own log agrees: no upload, no manifest write.
    let writes_after = ["POST", "PATCH", "PUT"].map(|m| server.logged_requests(m));
    assert!(
        writes_before[2] >= 3,
        "the first push's PUTs were logged: {}",
        server.log()
    );
    assert_eq!(writes_before, writes_after);

    // A changed binary is a different digest; only its layer, config and manifest go up.
    let mut changed = bytes.clone();
    changed.extend_from_slice(b"\0changed");
    let image3 = Image::from_bootstrap(&changed, arch);
    assert_ne!(image3.digest(), image.digest());
    assert!(!again.manifest_exists(image3.digest()).await.unwrap());

    // Docker v2 schema 2 is accepted too, and is still a single manifest.
    let mut spec = ImageSpec::bootstrap(bytes.clone(), arch);
    spec.format = ManifestFormat::DockerV2;
    let docker = Image::build(&spec);
    let r = again.push(&docker, "docker").await.unwrap();
    assert!(r.manifest_pushed);
    // Blobs are content-addressed: the layer and config bytes are the same as the OCI
    // image's, so only the manifest goes up.
    assert!(r.uploaded.is_empty(), "{r:?}");
    assert_eq!(r.skipped.len(), 2);
    let raw = skopeo(
        &[
            &["inspect", "--raw"][..],
            &common,
            &[&format!(
                "docker://{}/claude-proxy-test:docker",
                server.address()
            )],
        ]
        .concat(),
    );
    let m: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        m["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(sha256_digest(&raw), docker.digest());
}

#[tokio::test]
async fn wrong_credentials_are_refused_with_a_clear_error() {
    let Some(server) = RegistryServer::start() else {
        return;
    };
    let reg = Registry::new(
        &server.address(),
        "repo",
        Some(Credentials::new("AWS", "not-the-password")),
    )
    .unwrap();
    let err = reg
        .push(&Image::from_bootstrap(b"x", Arch::X86_64), "t")
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("credentials"), "{msg}");
    assert!(!msg.contains("not-the-password"), "{msg}");
}

/// A tiny Lambda Runtime API: hands out one invocation, returns the function's response.
struct RuntimeApi {
    port: u16,
    responses: std::sync::mpsc::Receiver<(String, String)>,
    polls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl RuntimeApi {
    fn start(event: &'static str) -> RuntimeApi {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = std::sync::mpsc::channel();
        let polls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let p = polls.clone();
        std::thread::spawn(move || {
            let mut parked = Vec::new();
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { break };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let mut len = 0usize;
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    if h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            len = v.trim().parse().unwrap();
                        }
                    }
                }
                let mut body = vec![0; len];
                reader.read_exact(&mut body).unwrap();
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                if path == "/2018-06-01/runtime/invocation/next" {
                    let n = p.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if n == 0 {
                        let _ = write!(
                            stream,
                            "HTTP/1.1 200 OK\r\nLambda-Runtime-Aws-Request-Id: req-1\r\nLambda-Runtime-Deadline-Ms: 9999999999999\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{event}",
                            event.len()
                        );
                    } else {
                        parked.push(stream); // the next poll waits, as on Lambda
                    }
                } else {
                    let _ = tx.send((path, String::from_utf8_lossy(&body).into_owned()));
                    let _ = write!(
                        stream,
                        "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                }
            }
        });
        RuntimeApi {
            port,
            responses: rx,
            polls,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_pulled_from_the_registry_runs_in_an_empty_root_filesystem() {
    let Some(server) = RegistryServer::start() else {
        return;
    };
    let arch = Arch::host().unwrap();
    let bytes = tokio::task::spawn_blocking(|| static_bootstrap("image-run"))
        .await
        .unwrap();
    let image = Image::from_bootstrap(&bytes, arch);
    let report = registry(&server, "runme").push(&image, "v1").await.unwrap();

    // Copy the image out of the registry with skopeo and unpack its layer with tar.
    let work = tempfile::tempdir().unwrap();
    let root = pull_and_unpack(&server, &report.image_uri, image.digest(), work.path());
    let listing: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        listing,
        ["bootstrap"],
        "the root filesystem holds only the bootstrap"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(root.join("bootstrap"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    assert_eq!(std::fs::read(root.join("bootstrap")).unwrap(), bytes);

    // Run it with that directory as `/`: no libc, no loader, no /etc, no CA bundle.
    let api = RuntimeApi::start(r#"{"hello":"from the test"}"#);
    let argv = chroot_command(&root);
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    let mut child = cmd
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{}", api.port))
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the bootstrap under chroot");
    let got = api.responses.recv_timeout(Duration::from_secs(30));
    // It answered and went back to polling for the next event.
    let deadline = Instant::now() + Duration::from_secs(10);
    while api.polls.load(std::sync::atomic::Ordering::SeqCst) < 2 && Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let exited = child.try_wait().unwrap();
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let (path, body) = got.unwrap_or_else(|_| {
        panic!(
            "the bootstrap never answered (exit: {exited:?}); stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(path, "/2018-06-01/runtime/invocation/req-1/response");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["echo"]["hello"], "from the test");
    assert_eq!(body["libc_present"], false);
    assert_eq!(body["ca_bundle_present"], false);
    assert!(
        exited.is_none(),
        "the bootstrap exited instead of polling again"
    );
    assert_eq!(api.polls.load(std::sync::atomic::Ordering::SeqCst), 2);
}
