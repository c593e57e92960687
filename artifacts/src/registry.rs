//! Pushing an [`Image`] over the Docker Registry HTTP API v2 (the OCI distribution API):
//! what ECR, Docker Hub and `docker-registry` speak.
//!
//! Credentials are a user name and password sent as HTTP basic auth (ECR's
//! `GetAuthorizationToken` gives base64 `AWS:<password>`: [`Credentials::from_ecr_token`]).
//! When a registry answers 401 with a `Bearer` challenge, a token is fetched from its realm
//! with those credentials and the request retried with it.
//!
//! A push HEADs each blob and uploads only the missing ones (POST an upload session, PATCH
//! the bytes in chunks, PUT `?digest=`), then PUTs the manifest. When the manifest's digest
//! already exists in the repository nothing is uploaded at all.

use crate::oci::{Blob, Image};
use base64::Engine;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode, Url};
use std::sync::Mutex;

/// User name and password for the registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials {
            username: username.into(),
            password: password.into(),
        }
    }

    /// Decodes ECR's `authorizationToken` (base64 of `AWS:<password>`).
    pub fn from_ecr_token(token: &str) -> Result<Credentials, RegistryError> {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(token.trim())
            .map_err(|e| RegistryError::BadToken(format!("not base64: {e}")))?;
        let text = String::from_utf8(decoded)
            .map_err(|_| RegistryError::BadToken("not UTF-8 once decoded".into()))?;
        let (user, password) = text
            .split_once(':')
            .ok_or_else(|| RegistryError::BadToken("no `user:password` inside".into()))?;
        Ok(Credentials::new(user, password))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("invalid registry address `{address}`: {reason}")]
    BadAddress { address: String, reason: String },
    #[error("invalid registry authorization token: {0}")]
    BadToken(String),
    #[error("{method} {url}: {source}")]
    Http {
        method: Method,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{method} {url} answered {status}: {body}")]
    Status {
        method: Method,
        url: String,
        status: StatusCode,
        body: String,
    },
    #[error("{method} {url} was refused ({status}): check the registry credentials (for ECR, a fresh GetAuthorizationToken){body}")]
    Unauthorized {
        method: Method,
        url: String,
        status: StatusCode,
        body: String,
    },
    #[error("{0}")]
    Protocol(String),
}

/// One HTTP request the client made (for logs and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: Method,
    pub path: String,
    pub status: u16,
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushReport {
    /// The manifest digest (`sha256:...`).
    pub digest: String,
    /// `<registry host>/<repository>@<digest>`: what Lambda's `ImageUri` takes.
    pub image_uri: String,
    /// Blobs uploaded by this push.
    pub uploaded: Vec<String>,
    /// Blobs the registry already had.
    pub skipped: Vec<String>,
    /// Whether the manifest was PUT (false: the registry already had this digest).
    pub manifest_pushed: bool,
}

/// A client for one repository in one registry.
pub struct Registry {
    client: reqwest::Client,
    base: Url,
    host: String,
    repository: String,
    credentials: Option<Credentials>,
    bearer: Mutex<Option<String>>,
    /// Upload chunk size for PATCH requests.
    chunk_size: usize,
    log: Mutex<Vec<RequestRecord>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("base", &self.base.as_str())
            .field("repository", &self.repository)
            .field("credentials", &self.credentials)
            .finish()
    }
}

/// The default PATCH size: ECR wants parts of at least 5 MiB (but the last).
pub const DEFAULT_CHUNK_SIZE: usize = 16 * 1024 * 1024;

impl Registry {
    /// `registry` is a host (`123456789012.dkr.ecr.us-east-1.amazonaws.com`,
    /// `127.0.0.1:5000`) or a URL. HTTPS unless the host is loopback (`127.0.0.1`,
    /// `localhost`, `[::1]`), where plain HTTP is used; `http://` to anything else is refused.
    pub fn new(
        registry: &str,
        repository: &str,
        credentials: Option<Credentials>,
    ) -> Result<Registry, RegistryError> {
        let bad = |reason: &str| RegistryError::BadAddress {
            address: registry.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = registry.trim().trim_end_matches('/');
        let with_scheme = if trimmed.contains("://") {
            trimmed.to_string()
        } else {
            format!("https://{trimmed}")
        };
        let mut base = Url::parse(&with_scheme).map_err(|e| bad(&e.to_string()))?;
        let host = base.host_str().ok_or_else(|| bad("no host"))?.to_string();
        let loopback = matches!(host.as_str(), "localhost" | "127.0.0.1" | "[::1]" | "::1")
            || host.starts_with("127.");
        match (base.scheme(), loopback) {
            ("https", true) if !trimmed.contains("://") => {
                base.set_scheme("http").expect("http is a valid scheme");
            }
            ("https", _) => {}
            ("http", true) => {}
            ("http", false) => {
                return Err(bad("plain HTTP is only allowed to a loopback registry"))
            }
            (other, _) => return Err(bad(&format!("unsupported scheme {other}"))),
        }
        if base.path() != "/" && !base.path().is_empty() {
            return Err(bad(
                "give the registry host only; the repository is separate",
            ));
        }
        if repository.is_empty()
            || !repository.split('/').all(|part| {
                !part.is_empty()
                    && part.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)
                    })
            })
        {
            return Err(RegistryError::BadAddress {
                address: repository.to_string(),
                reason: "a repository name is lowercase letters, digits, `._-` and `/`".into(),
            });
        }
        let host_port = match base.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let client = reqwest::Client::builder()
            .user_agent(concat!("claude-lambda-toolkit/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .map_err(|e| bad(&e.to_string()))?;
        Ok(Registry {
            client,
            base,
            host: host_port,
            repository: repository.to_string(),
            credentials,
            bearer: Mutex::new(None),
            chunk_size: DEFAULT_CHUNK_SIZE,
            log: Mutex::new(Vec::new()),
        })
    }

    /// Uploads in PATCH requests of at most `bytes` (at least 1).
    pub fn with_chunk_size(mut self, bytes: usize) -> Registry {
        self.chunk_size = bytes.max(1);
        self
    }

    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// `<host>/<repository>@<digest>`.
    pub fn image_uri(&self, digest: &str) -> String {
        format!("{}/{}@{}", self.host, self.repository, digest)
    }

    /// Every request made so far.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.log.lock().unwrap().clone()
    }

    /// Does the repository hold this blob?
    pub async fn blob_exists(&self, digest: &str) -> Result<bool, RegistryError> {
        let url = self.url(&format!("blobs/{digest}"));
        self.exists(url, None).await
    }

    /// Does the repository hold a manifest with this digest?
    pub async fn manifest_exists(&self, digest: &str) -> Result<bool, RegistryError> {
        let url = self.url(&format!("manifests/{digest}"));
        self.exists(url, Some(MANIFEST_ACCEPT)).await
    }

    /// Uploads a blob: POST a session, PATCH the bytes in chunks, PUT `?digest=`.
    pub async fn upload_blob(&self, blob: &Blob) -> Result<(), RegistryError> {
        let start = self.url("blobs/uploads/");
        let resp = self
            .send(Method::POST, start.clone(), |r| r.header(CONTENT_LENGTH, 0))
            .await?;
        let resp = expect(Method::POST, &start, resp, &[StatusCode::ACCEPTED]).await?;
        let mut location = self.location(&resp)?;

        let mut offset = 0usize;
        while offset < blob.bytes.len() {
            let end = (offset + self.chunk_size).min(blob.bytes.len());
            let chunk = blob.bytes[offset..end].to_vec();
            let range = format!("{}-{}", offset, end - 1);
            let url = location.clone();
            let resp = self
                .send(Method::PATCH, url.clone(), move |r| {
                    r.header(CONTENT_TYPE, "application/octet-stream")
                        .header("Content-Range", range.clone())
                        .body(chunk.clone())
                })
                .await?;
            let resp = expect(Method::PATCH, &url, resp, &[StatusCode::ACCEPTED]).await?;
            location = self.location(&resp)?;
            offset = end;
        }

        let mut done = location;
        done.query_pairs_mut().append_pair("digest", &blob.digest);
        let resp = self
            .send(Method::PUT, done.clone(), |r| r.header(CONTENT_LENGTH, 0))
            .await?;
        expect(Method::PUT, &done, resp, &[StatusCode::CREATED]).await?;
        Ok(())
    }

    /// PUTs a manifest under `reference` (a tag, or its own digest) and returns the digest
    /// the registry reports (checked against the manifest's).
    pub async fn put_manifest(
        &self,
        reference: &str,
        manifest: &Blob,
    ) -> Result<String, RegistryError> {
        let url = self.url(&format!("manifests/{reference}"));
        let bytes = manifest.bytes.clone();
        let media = manifest.media_type.clone();
        let resp = self
            .send(Method::PUT, url.clone(), move |r| {
                r.header(CONTENT_TYPE, media.clone()).body(bytes.clone())
            })
            .await?;
        let resp = expect(Method::PUT, &url, resp, &[StatusCode::CREATED]).await?;
        if let Some(d) = resp
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
        {
            if d != manifest.digest {
                return Err(RegistryError::Protocol(format!(
                    "the registry stored the manifest as {d}, but its bytes hash to {}",
                    manifest.digest
                )));
            }
        }
        Ok(manifest.digest.clone())
    }

    /// Pushes `image` and tags it `tag`. Nothing is uploaded when the registry already has
    /// the manifest's digest; otherwise only the missing blobs, then the manifest.
    pub async fn push(&self, image: &Image, tag: &str) -> Result<PushReport, RegistryError> {
        let digest = image.digest().to_string();
        let mut report = PushReport {
            image_uri: self.image_uri(&digest),
            digest: digest.clone(),
            uploaded: Vec::new(),
            skipped: Vec::new(),
            manifest_pushed: false,
        };
        if self.manifest_exists(&digest).await? {
            report.skipped = image.blobs().iter().map(|b| b.digest.clone()).collect();
            return Ok(report);
        }
        for blob in image.blobs() {
            if self.blob_exists(&blob.digest).await? {
                report.skipped.push(blob.digest.clone());
            } else {
                self.upload_blob(blob).await?;
                report.uploaded.push(blob.digest.clone());
            }
        }
        self.put_manifest(tag, &image.manifest).await?;
        report.manifest_pushed = true;
        Ok(report)
    }

    fn url(&self, rest: &str) -> Url {
        self.base
            .join(&format!("/v2/{}/{}", self.repository, rest))
            .expect("registry paths are valid URLs")
    }

    fn location(&self, resp: &reqwest::Response) -> Result<Url, RegistryError> {
        let loc = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                RegistryError::Protocol(format!(
                    "{} answered an upload request without a Location",
                    resp.url()
                ))
            })?;
        resp.url()
            .join(loc)
            .map_err(|e| RegistryError::Protocol(format!("bad upload Location `{loc}`: {e}")))
    }

    async fn exists(&self, url: Url, accept: Option<&'static str>) -> Result<bool, RegistryError> {
        let resp = self
            .send(Method::HEAD, url.clone(), move |r| match accept {
                Some(a) => r.header(ACCEPT, a),
                None => r,
            })
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => expect(Method::HEAD, &url, resp, &[]).await.map(|_| false),
        }
    }

    /// Sends a request with the current authorization; on a 401 answers the challenge
    /// (basic, or a bearer token from the realm) and sends it once more.
    async fn send(
        &self,
        method: Method,
        url: Url,
        build: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RegistryError> {
        let mut answered_challenge = false;
        loop {
            let mut req = build(self.client.request(method.clone(), url.clone()));
            let bearer = self.bearer.lock().unwrap().clone();
            if let Some(token) = bearer {
                req = req.bearer_auth(token);
            } else if let Some(c) = &self.credentials {
                req = req.basic_auth(&c.username, Some(&c.password));
            }
            let resp = req.send().await.map_err(|source| RegistryError::Http {
                method: method.clone(),
                url: url.to_string(),
                source,
            })?;
            self.log.lock().unwrap().push(RequestRecord {
                method: method.clone(),
                path: url.path().to_string(),
                status: resp.status().as_u16(),
            });
            if resp.status() != StatusCode::UNAUTHORIZED || answered_challenge {
                return Ok(resp);
            }
            let challenge = resp
                .headers()
                .get(reqwest::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .map(Challenge::parse);
            match challenge {
                Some(Challenge::Bearer { realm, params }) => {
                    let token = self.fetch_token(&realm, &params).await?;
                    *self.bearer.lock().unwrap() = Some(token);
                }
                // Basic: our credentials were sent (or there are none); nothing else to try.
                _ => return Ok(resp),
            }
            answered_challenge = true;
        }
    }

    async fn fetch_token(
        &self,
        realm: &str,
        params: &[(String, String)],
    ) -> Result<String, RegistryError> {
        let mut url = Url::parse(realm).map_err(|e| {
            RegistryError::Protocol(format!(
                "the registry's token realm `{realm}` is not a URL: {e}"
            ))
        })?;
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in params {
                if k == "service" || k == "scope" {
                    q.append_pair(k, v);
                }
            }
            if !params.iter().any(|(k, _)| k == "scope") {
                q.append_pair(
                    "scope",
                    &format!("repository:{}:pull,push", self.repository),
                );
            }
        }
        if url.scheme() == "http"
            && !matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"))
        {
            return Err(RegistryError::Protocol(format!(
                "refusing to send credentials to a plain-HTTP token realm {realm}"
            )));
        }
        let mut req = self.client.get(url.clone());
        if let Some(c) = &self.credentials {
            req = req.basic_auth(&c.username, Some(&c.password));
        }
        let resp = req.send().await.map_err(|source| RegistryError::Http {
            method: Method::GET,
            url: url.to_string(),
            source,
        })?;
        self.log.lock().unwrap().push(RequestRecord {
            method: Method::GET,
            path: url.path().to_string(),
            status: resp.status().as_u16(),
        });
        let resp = expect(Method::GET, &url, resp, &[StatusCode::OK]).await?;
        let bytes = resp.bytes().await.map_err(|source| RegistryError::Http {
            method: Method::GET,
            url: url.to_string(),
            source,
        })?;
        let body: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            RegistryError::Protocol(format!(
                "the token endpoint {realm} returned invalid JSON: {e}"
            ))
        })?;
        body["token"]
            .as_str()
            .or_else(|| body["access_token"].as_str())
            .map(String::from)
            .ok_or_else(|| {
                RegistryError::Protocol(format!("the token endpoint {realm} returned no token"))
            })
    }
}

const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

async fn expect(
    method: Method,
    url: &Url,
    resp: reqwest::Response,
    ok: &[StatusCode],
) -> Result<reqwest::Response, RegistryError> {
    let status = resp.status();
    if ok.contains(&status) {
        return Ok(resp);
    }
    let mut body = resp.text().await.unwrap_or_default();
    body.truncate(2000);
    // Never echo a query string (upload state) or credentials: the path is enough.
    let url = format!("{}{}", url.origin().ascii_serialization(), url.path());
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        let body = if body.is_empty() {
            String::new()
        } else {
            format!(": {body}")
        };
        return Err(RegistryError::Unauthorized {
            method,
            url,
            status,
            body,
        });
    }
    Err(RegistryError::Status {
        method,
        url,
        status,
        body,
    })
}

/// A parsed `WWW-Authenticate` header.
#[derive(Debug, PartialEq, Eq)]
enum Challenge {
    Basic,
    Bearer {
        realm: String,
        params: Vec<(String, String)>,
    },
    Other,
}

impl Challenge {
    fn parse(header: &str) -> Challenge {
        let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => Challenge::Basic,
            "bearer" => {
                let params = parse_auth_params(rest);
                let realm = params
                    .iter()
                    .find(|(k, _)| k == "realm")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                Challenge::Bearer { realm, params }
            }
            _ => Challenge::Other,
        }
    }
}

/// `realm="https://x",service="y",scope="repository:a:pull,push"` → pairs. Commas inside
/// quoted values are kept.
fn parse_auth_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(c) if *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        if key.is_empty() || chars.next() != Some('=') {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect();
        }
        out.push((key.trim().to_ascii_lowercase(), value));
    }
    out
}

#[cfg(test)]
mod tests;
