//! An ECR stand-in for `package = "image"` tests: moto is ECR's control plane
//! (CreateRepository, GetAuthorizationToken, ListImages, DeleteRepository, and the image
//! lookup behind Lambda's CreateFunction with `MOTO_LAMBDA_STUB_ECR=false`), but moto has no
//! registry data plane (no `/v2/` API to push to). The data plane here is a real registry,
//! Debian's `docker-registry` (the CNCF distribution server) on loopback with htpasswd basic
//! auth for the user `AWS` and the password moto's `GetAuthorizationToken` hands out
//! (`<account>-auth-token`), so the toolkit's decoding of the ECR token is exercised.
//!
//! The glue: a small proxy in front of the registry forwards every request unchanged and,
//! when a manifest PUT succeeds, registers that same manifest in moto's ECR with `PutImage`
//! (its digest given explicitly: the sha256 of the exact bytes, as ECR computes it). That is
//! what ECR itself does when a push completes, so moto's control plane then knows the image
//! and Lambda's CreateFunction accepts `<repository URI>@<digest>`. When `PutImage` fails
//! (say, no such repository in moto), the proxy fails the manifest PUT, as ECR would.
//!
//! Reads follow the control plane too: a manifest GET/HEAD answers 404 unless moto's ECR
//! holds that image (BatchGetImage), and a blob GET/HEAD answers 404 when the repository is
//! not in moto, so a deleted repository's images are gone as they are in ECR.
//!
//! Every request the registry served through the proxy is recorded, so tests can assert that
//! an unchanged redeploy uploaded nothing.

use anyhow::{bail, Context, Result};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request the proxy forwarded to the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryCall {
    pub method: String,
    pub path: String,
    pub status: u16,
}

impl RegistryCall {
    /// True for requests that store something (blob uploads, manifest PUTs).
    pub fn is_write(&self) -> bool {
        matches!(self.method.as_str(), "POST" | "PATCH" | "PUT" | "DELETE")
    }
}

/// The registry (data plane) plus the PutImage glue to moto (control plane).
pub struct EcrStandIn {
    /// Port of the proxy: the registry URL to give the toolkit.
    port: u16,
    /// Port of `docker-registry` itself.
    registry_port: u16,
    pub user: String,
    pub password: String,
    calls: Arc<Mutex<Vec<RegistryCall>>>,
    child: std::process::Child,
    task: tokio::task::JoinHandle<()>,
    dir: tempfile::TempDir,
}

impl Drop for EcrStandIn {
    fn drop(&mut self) {
        self.task.abort();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone)]
struct Shared {
    registry: String,
    proxy_origin: String,
    client: reqwest::Client,
    ecr: aws_sdk_ecr::Client,
    calls: Arc<Mutex<Vec<RegistryCall>>>,
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The tools the image tests need: `docker-registry` and `skopeo`.
pub const INSTALL: &str = "apt-get install -y docker-registry skopeo";

/// `Ok(())` when `docker-registry` and `skopeo` are installed, else the message saying how to
/// install them.
pub fn tools_present() -> Result<(), String> {
    match (which("docker-registry"), which("skopeo")) {
        (Some(_), Some(_)) => Ok(()),
        _ => Err(format!(
            "docker-registry or skopeo is not installed; install it with `{INSTALL}`"
        )),
    }
}

impl EcrStandIn {
    /// Starts `docker-registry` with basic auth `AWS` / `<account>-auth-token` and the glue
    /// proxy; `ecr` is a plain ECR client talking to moto directly.
    pub async fn start(ecr: aws_sdk_ecr::Client, account: &str) -> Result<EcrStandIn> {
        tools_present().map_err(anyhow::Error::msg)?;
        let bin = which("docker-registry").expect("checked above");
        let dir = tempfile::tempdir()?;
        let user = "AWS".to_string();
        let password = format!("{account}-auth-token");
        let hash = bcrypt::hash_with_salt(&password, 5, *b"0123456789abcdef")?
            .format_for_version(bcrypt::Version::TwoY);
        std::fs::write(dir.path().join("htpasswd"), format!("{user}:{hash}\n"))?;
        let registry_port = emulators::moto::free_port()?;
        let config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{registry_port}\nauth:\n  htpasswd:\n    realm: ecr-stand-in\n    path: {htpasswd}\n",
            data = dir.path().join("data").display(),
            htpasswd = dir.path().join("htpasswd").display(),
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config)?;
        let log = std::fs::File::create(dir.path().join("registry.log"))?;
        let mut child = std::process::Command::new(bin)
            .arg("serve")
            .arg(&config_path)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting docker-registry")?;
        // Ready when /v2/ answers 401 (it wants credentials).
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "docker-registry exited ({status}) before listening:\n{}",
                    std::fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default()
                );
            }
            if let Ok(r) = client
                .get(format!("http://127.0.0.1:{registry_port}/v2/"))
                .send()
                .await
            {
                if r.status() == 401 {
                    break;
                }
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("docker-registry did not answer on 127.0.0.1:{registry_port} within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the ECR stand-in proxy on loopback")?;
        let port = listener.local_addr()?.port();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let shared = Shared {
            registry: format!("http://127.0.0.1:{registry_port}"),
            proxy_origin: format!("http://127.0.0.1:{port}"),
            client,
            ecr,
            calls: calls.clone(),
        };
        let app = axum::Router::new().fallback(forward).with_state(shared);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(EcrStandIn {
            port,
            registry_port,
            user,
            password,
            calls,
            child,
            task,
            dir,
        })
    }

    /// The registry URL the toolkit pushes to (`Aws::with_ecr_registry_url`).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:<port>` of the registry itself, for `skopeo`.
    pub fn registry_address(&self) -> String {
        format!("127.0.0.1:{}", self.registry_port)
    }

    /// `user:password` for `skopeo --creds`.
    pub fn creds(&self) -> String {
        format!("{}:{}", self.user, self.password)
    }

    pub fn calls(&self) -> Vec<RegistryCall> {
        self.calls.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.calls.lock().unwrap().clear();
    }

    /// The registry's own log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

/// Runs skopeo and returns its stdout (fails the test with skopeo's stderr).
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

fn respond(status: u16, text: String) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(
            serde_json::json!({"errors": [{"code": "UNKNOWN", "message": text}]}).to_string(),
        ))
        .unwrap()
}

/// `/v2/<repository>/<kind>/<reference>` → (repository, reference), for `manifests` or `blobs`.
fn split_path<'a>(path: &'a str, kind: &str) -> Option<(&'a str, &'a str)> {
    let rest = path.strip_prefix("/v2/")?;
    rest.rsplit_once(&format!("/{kind}/"))
}

/// What moto's ECR says about a manifest the registry is asked for: the data plane shows only
/// what the control plane holds (a deleted repository's images are gone, as in ECR, even
/// though `docker-registry` still has the files).
async fn known_to_ecr(ecr: &aws_sdk_ecr::Client, repo: &str, reference: Option<&str>) -> bool {
    let Some(reference) = reference else {
        return ecr
            .describe_repositories()
            .repository_names(repo)
            .send()
            .await
            .is_ok();
    };
    let id = if reference.starts_with("sha256:") {
        aws_sdk_ecr::types::ImageIdentifier::builder()
            .image_digest(reference)
            .build()
    } else {
        aws_sdk_ecr::types::ImageIdentifier::builder()
            .image_tag(reference)
            .build()
    };
    match ecr
        .batch_get_image()
        .repository_name(repo)
        .image_ids(id)
        .send()
        .await
    {
        Ok(out) => !out.images().is_empty(),
        Err(_) => false,
    }
}

/// `PUT /v2/<repository>/manifests/<reference>` → (repository, reference).
fn manifest_put(method: &http::Method, path: &str) -> Option<(String, String)> {
    if method != http::Method::PUT {
        return None;
    }
    let rest = path.strip_prefix("/v2/")?;
    let (repo, reference) = rest.rsplit_once("/manifests/")?;
    Some((repo.to_string(), reference.to_string()))
}

async fn forward(State(s): State<Shared>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, 1024 * 1024 * 1024).await {
        Ok(b) => b,
        Err(e) => return respond(502, format!("stand-in: reading the request body: {e}")),
    };
    let path = parts.uri.path().to_string();
    if parts.method == http::Method::HEAD || parts.method == http::Method::GET {
        let unknown = if let Some((repo, reference)) = split_path(&path, "manifests") {
            (!known_to_ecr(&s.ecr, repo, Some(reference)).await).then_some("MANIFEST_UNKNOWN")
        } else if let Some((repo, _)) = split_path(&path, "blobs") {
            (!known_to_ecr(&s.ecr, repo, None).await).then_some("BLOB_UNKNOWN")
        } else {
            None
        };
        if let Some(code) = unknown {
            s.calls.lock().unwrap().push(RegistryCall {
                method: parts.method.to_string(),
                path: path.clone(),
                status: 404,
            });
            return Response::builder()
                .status(404)
                .header("content-type", "application/json")
                .body(Body::from(
                    serde_json::json!({"errors": [{"code": code, "message": "not in moto's ECR"}]})
                        .to_string(),
                ))
                .unwrap();
        }
    }
    let upstream = crate::aws_proxy::forwarded(&s.client, &s.registry, &parts, body.clone());
    let record = |status: u16| {
        s.calls.lock().unwrap().push(RegistryCall {
            method: parts.method.to_string(),
            path: path.clone(),
            status,
        })
    };
    let resp = match upstream.send().await {
        Ok(r) => r,
        Err(e) => {
            record(502);
            return respond(502, format!("stand-in: forwarding to docker-registry: {e}"));
        }
    };
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap_or_default();

    // The control-plane half of a completed push: register the manifest in moto's ECR.
    if status == http::StatusCode::CREATED {
        if let Some((repo, reference)) = manifest_put(&parts.method, &path) {
            let manifest = String::from_utf8_lossy(&body).into_owned();
            let digest = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
            let media_type = parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let tag = (!reference.starts_with("sha256:")).then_some(reference);
            let put = s
                .ecr
                .put_image()
                .repository_name(&repo)
                .image_manifest(manifest)
                .set_image_manifest_media_type(media_type)
                .set_image_tag(tag)
                .image_digest(&digest)
                .send()
                .await;
            if let Err(e) = put {
                record(500);
                return respond(
                    500,
                    format!(
                        "stand-in: registering {repo}@{digest} in moto's ECR (PutImage) failed: {}",
                        aws_sdk_ecr::error::DisplayErrorContext(&e)
                    ),
                );
            }
        }
    }

    record(status.as_u16());
    let mut out = Response::builder().status(status);
    for (k, v) in headers.iter() {
        if k == http::header::TRANSFER_ENCODING
            || k == http::header::CONNECTION
            || k == http::header::CONTENT_LENGTH
        {
            continue;
        }
        if k == http::header::LOCATION {
            // Upload locations point back through the proxy.
            let loc = v
                .to_str()
                .unwrap_or_default()
                .replace(&s.registry, &s.proxy_origin);
            out = out.header(k, loc);
            continue;
        }
        out = out.header(k, v);
    }
    out.body(Body::from(bytes)).unwrap()
}
