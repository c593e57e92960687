//! A recording, fault-injecting HTTP proxy between the AWS SDK and moto server.
//!
//! Every request is forwarded to moto; each is recorded as (service, operation), with the
//! service taken from the SigV4 credential scope and the operation from `X-Amz-Target`
//! (JSON protocols), the `Action` form field (query protocols: IAM, STS) or the REST method
//! and path (Lambda, API Gateway). Tests count mutating calls with it and make chosen calls
//! fail in the service's own error format.
//!
//! Start one proxy per test (they are cheap) so parallel tests do not share counters.

use anyhow::{Context, Result};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use std::sync::{Arc, Mutex};

/// One request seen by the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// Signing name: `lambda`, `iam`, `secretsmanager`, `logs`, `apigateway`, `sts`.
    pub service: String,
    /// `CreateSecret`, `CreateRole`, ... or `POST /2015-03-31/functions` for REST services.
    pub operation: String,
    pub method: String,
    pub path: String,
    pub mutating: bool,
    /// Set when the proxy answered with an injected fault.
    pub injected: bool,
    /// Status code returned to the SDK.
    pub status: u16,
}

impl std::fmt::Display for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.service, self.operation)
    }
}

/// Which calls a fault applies to.
#[derive(Debug, Clone)]
pub enum Matcher {
    /// A named operation: service and operation as recorded (see [`Call`]).
    Operation { service: String, operation: String },
    /// The n-th mutating call (1-based) since the proxy started or was last cleared,
    /// whatever it is.
    NthMutating(usize),
}

/// An error the proxy returns instead of forwarding (or after forwarding, see
/// `after_forwarding`).
#[derive(Debug, Clone)]
pub struct Fault {
    pub matcher: Matcher,
    /// How many matching calls fail.
    pub times: usize,
    pub status: u16,
    /// The error code (e.g. `InvalidParameterValueException`).
    pub code: String,
    pub message: String,
    /// Forward the request to moto first (so it takes effect) and fail the answer anyway:
    /// a crash between the call and its response.
    pub after_forwarding: bool,
}

impl Fault {
    /// Lambda's IAM-propagation error on `CreateFunction`, `times` times.
    pub fn role_not_assumable(times: usize) -> Fault {
        Fault {
            matcher: Matcher::Operation {
                service: "lambda".into(),
                operation: "POST /2015-03-31/functions".into(),
            },
            times,
            status: 400,
            code: "InvalidParameterValueException".into(),
            message: "The role defined for the function cannot be assumed by Lambda.".into(),
            after_forwarding: false,
        }
    }

    /// The n-th mutating call fails with a non-retryable error (an interrupted deploy).
    pub fn interrupt_at_mutating(n: usize) -> Fault {
        Fault {
            matcher: Matcher::NthMutating(n),
            times: 1,
            status: 400,
            code: "InjectedFault".into(),
            message: format!("injected failure at mutating call {n}"),
            after_forwarding: false,
        }
    }
}

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    faults: Vec<Fault>,
    mutating_seen: usize,
}

#[derive(Clone)]
struct Shared {
    upstream: String,
    client: reqwest::Client,
    inner: Arc<Mutex<Inner>>,
}

/// The running proxy. Stops when dropped.
pub struct AwsProxy {
    port: u16,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AwsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AwsProxy {
    /// Starts on a free loopback port, forwarding to `upstream` (e.g. moto's endpoint URL).
    pub async fn start(upstream: &str) -> Result<AwsProxy> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the AWS proxy on loopback")?;
        let port = listener.local_addr()?.port();
        let inner = Arc::new(Mutex::new(Inner::default()));
        let shared = Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            client: reqwest::Client::builder().build()?,
            inner: inner.clone(),
        };
        let app = axum::Router::new().fallback(forward).with_state(shared);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(AwsProxy { port, inner, task })
    }

    pub fn endpoint_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.inner.lock().unwrap().calls.clone()
    }

    /// The mutating calls so far (everything but Get*/List*/Describe* and REST GETs).
    pub fn mutating_calls(&self) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.mutating).collect()
    }

    /// Forgets recorded calls, pending faults and the mutating-call counter.
    pub fn clear(&self) {
        let mut i = self.inner.lock().unwrap();
        *i = Inner::default();
    }

    pub fn inject(&self, fault: Fault) {
        self.inner.lock().unwrap().faults.push(fault);
    }

    /// How many calls were answered with an injected fault.
    pub fn injected_count(&self) -> usize {
        self.calls().iter().filter(|c| c.injected).count()
    }
}

fn service_of(req: &http::HeaderMap) -> String {
    // Authorization: AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/lambda/aws4_request, ...
    req.get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').nth(3))
        .unwrap_or("unknown")
        .to_string()
}

fn form_action(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&')
        .find_map(|kv| kv.strip_prefix("Action=").map(str::to_string))
}

fn classify(
    method: &http::Method,
    path: &str,
    headers: &http::HeaderMap,
    body: &[u8],
) -> (String, bool) {
    let read_only = |op: &str| {
        ["Get", "List", "Describe"]
            .iter()
            .any(|p| op.starts_with(p))
    };
    if let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        let op = target.rsplit('.').next().unwrap_or(target).to_string();
        let m = !read_only(&op);
        return (op, m);
    }
    let is_form = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    if is_form {
        if let Some(op) = form_action(body) {
            let m = !read_only(&op);
            return (op, m);
        }
    }
    let m = !(method == http::Method::GET || method == http::Method::HEAD);
    (format!("{method} {path}"), m)
}

fn error_response(service: &str, f: &Fault) -> Response {
    let (content_type, body) = match service {
        "iam" | "sts" => (
            "text/xml",
            format!(
                "<ErrorResponse><Error><Type>Sender</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>injected</RequestId></ErrorResponse>",
                f.code, f.message
            ),
        ),
        "lambda" => (
            "application/json",
            serde_json::json!({"Type": "User", "message": f.message}).to_string(),
        ),
        _ => (
            "application/x-amz-json-1.1",
            serde_json::json!({"__type": f.code, "message": f.message, "Message": f.message}).to_string(),
        ),
    };
    Response::builder()
        .status(f.status)
        .header("content-type", content_type)
        .header("x-amzn-errortype", f.code.as_str())
        .header("x-amzn-requestid", "injected")
        .body(Body::from(body))
        .unwrap()
}

async fn forward(State(s): State<Shared>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, 64 * 1024 * 1024).await {
        Ok(b) => b,
        Err(e) => {
            return Response::builder()
                .status(502)
                .body(Body::from(format!("proxy: reading request body: {e}")))
                .unwrap()
        }
    };
    let service = service_of(&parts.headers);
    let path = parts.uri.path().to_string();
    let (operation, mutating) = classify(&parts.method, &path, &parts.headers, &body);

    // Decide on a fault (and count) under the lock.
    let fault = {
        let mut i = s.inner.lock().unwrap();
        if mutating {
            i.mutating_seen += 1;
        }
        let n = i.mutating_seen;
        let hit = i.faults.iter_mut().find(|f| {
            f.times > 0
                && match &f.matcher {
                    Matcher::Operation {
                        service: sv,
                        operation: op,
                    } => *sv == service && *op == operation,
                    Matcher::NthMutating(k) => mutating && *k == n,
                }
        });
        hit.map(|f| {
            f.times -= 1;
            f.clone()
        })
    };

    let record = |status: u16, injected: bool| {
        s.inner.lock().unwrap().calls.push(Call {
            service: service.clone(),
            operation: operation.clone(),
            method: parts.method.to_string(),
            path: path.clone(),
            mutating,
            injected,
            status,
        });
    };

    if let Some(f) = &fault {
        if !f.after_forwarding {
            record(f.status, true);
            return error_response(&service, f);
        }
    }

    let url = format!(
        "{}{}",
        s.upstream,
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let mut upstream = s.client.request(parts.method.clone(), url).body(body);
    for (k, v) in parts.headers.iter() {
        if k == http::header::HOST
            || k == http::header::CONTENT_LENGTH
            || k == http::header::CONNECTION
        {
            continue;
        }
        upstream = upstream.header(k, v);
    }
    let resp = match upstream.send().await {
        Ok(r) => r,
        Err(e) => {
            record(502, false);
            return Response::builder()
                .status(502)
                .body(Body::from(format!("proxy: forwarding to moto: {e}")))
                .unwrap();
        }
    };
    if let Some(f) = &fault {
        record(f.status, true);
        return error_response(&service, f);
    }
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap_or_default();
    record(status.as_u16(), false);
    let mut out = Response::builder().status(status);
    for (k, v) in headers.iter() {
        if k == http::header::TRANSFER_ENCODING
            || k == http::header::CONNECTION
            || k == http::header::CONTENT_LENGTH
        {
            continue;
        }
        out = out.header(k, v);
    }
    out.body(Body::from(bytes)).unwrap()
}
