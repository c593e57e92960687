//! A recording, fault-injecting HTTP proxy between the AWS SDK and moto server.
//!
//! Every request is forwarded to moto; each is recorded as (service, operation), with the
//! service taken from the SigV4 credential scope and the operation from `X-Amz-Target`
//! (JSON protocols), the `Action` form field (query protocols: IAM, STS) or the REST method
//! and path (Lambda, API Gateway). Tests count mutating calls with it and make chosen calls
//! fail in the service's own error format.
//!
//! Transient faults: throttling in each service's own form ([`Fault::throttling`]), 5xx
//! ([`Fault::server_error`]) and connection resets ([`Fault::reset`]: the socket is closed
//! without an answer), on chosen calls or on every n-th call ([`Matcher::EveryNth`]).
//!
//! Crashes: [`AwsProxy::hold_after_mutating`] lets the k-th mutating call reach moto, then
//! holds its answer and every later request, and tells the test ([`AwsProxy::wait_held`]),
//! which kills the client. Held requests are never forwarded.
//!
//! Latency: [`AwsProxy::set_latency`] delays every call as real AWS would (the model in
//! `emulators/src/aws_latency.toml`), holds new functions `Pending` and updates
//! `InProgress`, and keeps a new role unassumable for the propagation window; see [`latency`].
//! Each [`Call`] records when it arrived and when it was answered.
//!
//! Strictness: [`AwsProxy::enable`] switches on a [`strict::Profile`] under which the proxy
//! answers as real AWS does where moto is lenient (a new account's concurrency, IAM
//! propagation lag, reads lagging deletes); see [`strict`].
//!
//! Start one proxy per test (they are cheap) so parallel tests do not share counters.
//!
//! Stricter-than-moto answers, each in its own module:
//! - [`bedrock_profiles`]: Bedrock's `GetInferenceProfile`, which moto lacks (always on;
//!   [`AwsProxy::set_inference_profiles`] adds application profiles or refuses lookups);
//! - [`partition`]: ARNs of another partition refused as AWS refuses them
//!   ([`AwsProxy::strict_partition`]);
//! - [`function_urls`]: one Function URL per qualifier, as Lambda keeps them (always on);
//! - [`invocations`]: `Invoke` of a published version run by a test's [`invocations::InvokeRouter`]
//!   (the version's code under the local Lambda emulator), when one is set;
//! - [`cloudwatch`]: CloudWatch (RPC v2 CBOR, which moto does not serve) answered statefully:
//!   metrics, alarms and their tags, per proxy (always on; faults still apply to it).

pub mod bedrock_profiles;
pub mod cloudwatch;
pub mod function_urls;
pub mod invocations;
pub mod latency;
pub mod partition;

pub mod strict;

use anyhow::{Context, Result};
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    /// The request body as the SDK sent it (lossy UTF-8), to check what the toolkit sends
    /// where moto does not echo it back.
    pub body: String,
    /// The operation's API name (`CreateFunction` for `POST /2015-03-31/functions`).
    pub api: String,
    /// When the request arrived, and when its answer was ready.
    pub started: std::time::Instant,
    pub answered: std::time::Instant,
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
    /// Calls number `offset`, `offset + every`, `offset + 2 * every`, ... (1-based count of
    /// all calls since the last clear, reads and retries included).
    EveryNth { every: usize, offset: usize },
}

/// What the proxy does instead of answering normally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// The error in `status`, `code`, `message`.
    Error,
    /// The service's throttling error: Lambda and API Gateway 429 `TooManyRequestsException`,
    /// IAM/STS 400 `Throttling`, JSON services 400 `ThrottlingException`.
    Throttling,
    /// Close the connection without any answer (a reset).
    Reset,
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
    pub kind: FaultKind,
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
            kind: FaultKind::Error,
        }
    }

    /// Throttling in the service's own form, on `times` matching calls.
    pub fn throttling(matcher: Matcher, times: usize) -> Fault {
        Fault {
            matcher,
            times,
            status: 400,
            code: "ThrottlingException".into(),
            message: "Rate exceeded (injected)".into(),
            after_forwarding: false,
            kind: FaultKind::Throttling,
        }
    }

    /// A 5xx (500 `InternalFailure`, 503 `ServiceUnavailable`, ...) on `times` matching calls.
    pub fn server_error(matcher: Matcher, status: u16, times: usize) -> Fault {
        let code = match status {
            503 => "ServiceUnavailable",
            502 => "BadGateway",
            504 => "GatewayTimeout",
            _ => "InternalFailure",
        };
        Fault {
            matcher,
            times,
            status,
            code: code.into(),
            message: format!("injected {status}"),
            after_forwarding: false,
            kind: FaultKind::Error,
        }
    }

    /// The connection is closed without an answer, on `times` matching calls.
    pub fn reset(matcher: Matcher, times: usize) -> Fault {
        Fault {
            matcher,
            times,
            status: 0,
            code: "ConnectionReset".into(),
            message: "connection closed without a response (injected)".into(),
            after_forwarding: false,
            kind: FaultKind::Reset,
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
            kind: FaultKind::Error,
        }
    }
}

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    faults: Vec<Fault>,
    mutating_seen: usize,
    seen: usize,
    /// Hold the answer of this mutating call (1-based) and everything after it.
    hold_after: Option<usize>,
    /// Set once the held call was let through: later requests are held.
    holding: bool,
    /// Mutating calls let through and not answered yet.
    in_flight: usize,
    /// The held call was answered by moto (its answer is kept back).
    held_call_done: bool,
    /// See [`bedrock_profiles`].
    inference_profiles: bedrock_profiles::InferenceProfiles,
    /// See [`partition`].
    strict_partition: bool,
    /// See [`function_urls`].
    url_qualifiers: function_urls::UrlQualifiers,
}

#[derive(Clone)]
struct Shared {
    upstream: String,
    client: reqwest::Client,
    inner: Arc<Mutex<Inner>>,
    /// Incremented by `release`/`clear`: held requests end (unforwarded) when it changes.
    generation: Arc<tokio::sync::watch::Sender<u64>>,
    /// Set to true when holding starts.
    held: Arc<tokio::sync::watch::Sender<bool>>,
    /// The strictness profiles and what they remember (kept across `clear`).
    strict: Arc<Mutex<strict::Strict>>,
    /// The CloudWatch stand-in's metrics and alarms (kept across `clear`).
    cloudwatch: Arc<Mutex<cloudwatch::CloudWatch>>,
    /// Who runs `Invoke` of a published version (see [`invocations`]).
    router: Arc<Mutex<Option<Arc<dyn invocations::InvokeRouter>>>>,
    /// The latency profile (kept across `clear`).
    latency: Arc<Mutex<latency::State>>,
}

/// The running proxy. Stops when dropped.
pub struct AwsProxy {
    port: u16,
    inner: Arc<Mutex<Inner>>,
    generation: Arc<tokio::sync::watch::Sender<u64>>,
    held: Arc<tokio::sync::watch::Sender<bool>>,
    strict: Arc<Mutex<strict::Strict>>,
    cloudwatch: Arc<Mutex<cloudwatch::CloudWatch>>,
    router: Arc<Mutex<Option<Arc<dyn invocations::InvokeRouter>>>>,
    latency: Arc<Mutex<latency::State>>,
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
        let generation = Arc::new(tokio::sync::watch::channel(0u64).0);
        let held = Arc::new(tokio::sync::watch::channel(false).0);
        let strict = Arc::new(Mutex::new(strict::Strict::default()));
        let cloudwatch = Arc::new(Mutex::new(cloudwatch::CloudWatch::default()));
        let router = Arc::new(Mutex::new(None));
        let latency = Arc::new(Mutex::new(latency::State::default()));
        let shared = Shared {
            router: router.clone(),
            strict: strict.clone(),
            cloudwatch: cloudwatch.clone(),
            latency: latency.clone(),
            upstream: upstream.trim_end_matches('/').to_string(),
            client: reqwest::Client::builder().build()?,
            inner: inner.clone(),
            generation: generation.clone(),
            held: held.clone(),
        };
        // One task per connection, so a fault can close a connection without answering.
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let (close_tx, close_rx) = tokio::sync::oneshot::channel::<()>();
                    let close_tx = Arc::new(Mutex::new(Some(close_tx)));
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let shared = shared.clone();
                            let close_tx = close_tx.clone();
                            async move {
                                let resp = forward(shared, req.map(Body::new)).await;
                                Ok::<_, std::convert::Infallible>(match resp {
                                    Some(r) => r,
                                    None => {
                                        if let Some(tx) = close_tx.lock().unwrap().take() {
                                            let _ = tx.send(());
                                        }
                                        // Never sent: the connection is closed first.
                                        std::future::pending::<()>().await;
                                        unreachable!()
                                    }
                                })
                            }
                        },
                    );
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                    tokio::select! {
                        _ = conn => {}
                        _ = close_rx => {} // dropping the connection closes the socket
                    }
                });
            }
        });
        Ok(AwsProxy {
            port,
            inner,
            generation,
            held,
            strict,
            cloudwatch,
            router,
            latency,
            task,
        })
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

    /// Forgets recorded calls, pending faults, the counters and any hold (held requests
    /// end unanswered and are never forwarded).
    pub fn clear(&self) {
        let mut i = self.inner.lock().unwrap();
        *i = Inner {
            inference_profiles: std::mem::take(&mut i.inference_profiles),
            strict_partition: i.strict_partition,
            // What the account holds, not what was counted.
            url_qualifiers: std::mem::take(&mut i.url_qualifiers),
            ..Inner::default()
        };
        drop(i);
        self.release();
    }

    /// After the `k`-th mutating call (1-based, counted from the last `clear`) has reached
    /// moto, hold its answer and every later request until [`AwsProxy::release`].
    pub fn hold_after_mutating(&self, k: usize) {
        let mut i = self.inner.lock().unwrap();
        i.hold_after = Some(k);
        i.holding = false;
        i.held_call_done = false;
        self.held.send_replace(false);
    }

    /// Waits until the proxy holds requests (the k-th mutating call went through); false
    /// when `within` passed first.
    pub async fn wait_held(&self, within: Duration) -> bool {
        let mut rx = self.held.subscribe();
        let ok = tokio::time::timeout(within, rx.wait_for(|h| *h))
            .await
            .is_ok();
        ok
    }

    /// Stops holding: held requests end with a 503 and are never forwarded; new requests
    /// are forwarded again.
    pub fn release(&self) {
        {
            let mut i = self.inner.lock().unwrap();
            i.hold_after = None;
            i.holding = false;
            i.held_call_done = false;
        }
        self.held.send_replace(false);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Refuse ARNs of another partition than the Region's, as AWS does (see [`partition`]).
    /// Survives [`AwsProxy::clear`].
    pub fn strict_partition(&self) {
        self.inner.lock().unwrap().strict_partition = true;
    }

    /// Replaces the stand-in's application inference profiles and refusal switch (see
    /// [`bedrock_profiles`]). Survives [`AwsProxy::clear`].
    pub fn set_inference_profiles(&self, profiles: bedrock_profiles::InferenceProfiles) {
        self.inner.lock().unwrap().inference_profiles = profiles;
    }

    /// Answers as real AWS does under `profile` from now on (replacing an earlier profile of
    /// the same kind). Profiles stay on across [`AwsProxy::clear`].
    pub fn enable(&self, profile: strict::Profile) {
        self.strict.lock().unwrap().enable(profile);
    }

    /// [`AwsProxy::enable`] for each of `profiles`.
    pub fn enable_all(&self, profiles: impl IntoIterator<Item = strict::Profile>) {
        for p in profiles {
            self.enable(p);
        }
    }

    /// Answers as slowly as real AWS from now on (`None`: as fast as moto), and keeps a new
    /// role unassumable for the model's propagation window. Survives [`AwsProxy::clear`].
    pub fn set_latency(&self, profile: Option<latency::Latency>) {
        if let Some(p) = &profile {
            self.enable(strict::Profile::IamPropagationLag(p.iam_propagation()));
        }
        self.latency.lock().unwrap().set(profile);
    }

    pub fn inject(&self, fault: Fault) {
        self.inner.lock().unwrap().faults.push(fault);
    }

    /// From now on `Invoke` of a published version is run by `router` (see [`invocations`]).
    pub fn route_invocations(&self, router: Arc<dyn invocations::InvokeRouter>) {
        *self.router.lock().unwrap() = Some(router);
    }

    /// Reads or changes the CloudWatch stand-in's metrics and alarms (see [`cloudwatch`]).
    pub fn with_cloudwatch<T>(&self, f: impl FnOnce(&mut cloudwatch::CloudWatch) -> T) -> T {
        f(&mut self.cloudwatch.lock().unwrap())
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

/// The Region of the SigV4 credential scope.
fn region_of(req: &http::HeaderMap) -> String {
    req.get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').nth(2))
        .unwrap_or("us-east-1")
        .to_string()
}

/// What the proxy answers itself instead of moto (see [`bedrock_profiles`], [`partition`]):
/// (status, error code or "" for success, body, content type).
fn stand_in_answer(
    s: &Shared,
    service: &str,
    parts: &http::request::Parts,
    body: &[u8],
) -> Option<(u16, String, String)> {
    let (profiles, strict_partition) = {
        let i = s.inner.lock().unwrap();
        (i.inference_profiles.clone(), i.strict_partition)
    };
    let region = region_of(&parts.headers);
    if service == "bedrock" && parts.method == http::Method::GET {
        if let Some(a) = bedrock_profiles::answer(&profiles, &region, parts.uri.path()) {
            return Some(a);
        }
    }
    if strict_partition {
        let form = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
        let path_and_query = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        if let Some((status, code, message)) =
            partition::check(&region, service, path_and_query, body, form)
        {
            let f = Fault {
                matcher: Matcher::NthMutating(0),
                times: 0,
                status,
                code,
                message,
                after_forwarding: false,
                kind: FaultKind::Error,
            };
            return Some((f.status, f.code.clone(), error_body(service, &f)));
        }
    }
    None
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
    if headers.contains_key("smithy-protocol") {
        if let Some(op) = cloudwatch::operation_of(path) {
            return (op.to_string(), cloudwatch::is_mutating(op));
        }
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

/// The fault as this service sends it (throttling differs by protocol).
fn for_service(service: &str, f: &Fault) -> Fault {
    let mut f = f.clone();
    if f.kind == FaultKind::Throttling {
        let (status, code) = match service {
            "lambda" | "apigateway" => (429, "TooManyRequestsException"),
            // SNS, a query-protocol service too: "Rate exceeded (Service: AmazonSNS; Status
            // Code: 400; Error Code: Throttling)".
            "iam" | "sts" | "sns" | "monitoring" => (400, "Throttling"),
            _ => (400, "ThrottlingException"),
        };
        f.status = status;
        f.code = code.into();
    }
    f
}

fn error_content_type(service: &str) -> &'static str {
    match service {
        "iam" | "sts" | "sns" => "text/xml",
        "lambda" | "apigateway" | "bedrock" => "application/json",
        _ => "application/x-amz-json-1.1",
    }
}

fn error_body(service: &str, f: &Fault) -> String {
    error_response_parts(service, f).1
}

fn error_response(service: &str, f: &Fault) -> Response {
    if service == "monitoring" {
        return cloudwatch::error_response(f.status, &f.code, &f.message);
    }
    let (content_type, body) = error_response_parts(service, f);
    Response::builder()
        .status(f.status)
        .header("content-type", content_type)
        .header("x-amzn-errortype", f.code.as_str())
        .header("x-amzn-requestid", "injected")
        .body(Body::from(body))
        .unwrap()
}

fn error_response_parts(service: &str, f: &Fault) -> (&'static str, String) {
    match service {
        // The query protocol's XML errors.
        "iam" | "sts" | "sns" => (
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
    }
}

/// Waits until the hold is released, then answers 503 (never forwarded).
async fn held(s: &Shared, generation: u64) -> Response {
    let mut rx = s.generation.subscribe();
    let _ = rx.wait_for(|g| *g != generation).await;
    Response::builder()
        .status(503)
        .body(Body::from("proxy: held and released, not forwarded"))
        .unwrap()
}

/// The answer to one request; `None` closes the connection without an answer.
/// The request `parts` with `body`, to be sent on to `base` (the same method, path, query and
/// headers, less those the client sets itself).
pub(crate) fn forwarded(
    client: &reqwest::Client,
    base: &str,
    parts: &http::request::Parts,
    body: bytes::Bytes,
) -> reqwest::RequestBuilder {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut upstream = client
        .request(parts.method.clone(), format!("{base}{path}"))
        .body(body);
    for (k, v) in parts.headers.iter() {
        if k == http::header::HOST
            || k == http::header::CONTENT_LENGTH
            || k == http::header::CONNECTION
        {
            continue;
        }
        upstream = upstream.header(k, v);
    }
    upstream
}

async fn forward(s: Shared, req: Request) -> Option<Response> {
    let started = std::time::Instant::now();
    let generation = *s.generation.borrow();
    if s.inner.lock().unwrap().holding {
        return Some(held(&s, generation).await);
    }
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, 64 * 1024 * 1024).await {
        Ok(b) => b,
        Err(e) => {
            return Some(
                Response::builder()
                    .status(502)
                    .body(Body::from(format!("proxy: reading request body: {e}")))
                    .unwrap(),
            )
        }
    };
    let service = service_of(&parts.headers);
    let path = parts.uri.path().to_string();
    let (operation, mutating) = classify(&parts.method, &path, &parts.headers, &body);
    let api =
        latency::operation_name(&service, parts.method.as_str(), &path, &operation).into_owned();

    // Decide on a fault (and count) under the lock.
    let decided = {
        let mut i = s.inner.lock().unwrap();
        if i.holding {
            None
        } else {
            if mutating {
                i.mutating_seen += 1;
                i.in_flight += 1;
            }
            i.seen += 1;
            let (n, seen) = (i.mutating_seen, i.seen);
            let hold_this = mutating && i.hold_after == Some(n);
            // Nothing after the held call reaches moto (calls run in parallel).
            if hold_this {
                i.holding = true;
            }
            let hit = i.faults.iter_mut().find(|f| {
                f.times > 0
                    && match &f.matcher {
                        Matcher::Operation {
                            service: sv,
                            operation: op,
                        } => *sv == service && *op == operation,
                        Matcher::NthMutating(k) => mutating && *k == n,
                        Matcher::EveryNth { every, offset } => {
                            *every > 0 && seen >= *offset && (seen - *offset) % *every == 0
                        }
                    }
            });
            let fault = hit.map(|f| {
                f.times -= 1;
                for_service(&service, f)
            });
            Some((fault, hold_this))
        }
    };
    let Some((fault, hold_this)) = decided else {
        return Some(held(&s, generation).await);
    };
    // As long as the call takes on AWS (simulated: nothing to wait for here).
    let delay = s.latency.lock().unwrap().delay(&service, &api);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }

    let record = |status: u16, injected: bool| {
        let mut i = s.inner.lock().unwrap();
        if mutating {
            i.in_flight = i.in_flight.saturating_sub(1);
        }
        i.calls.push(Call {
            service: service.clone(),
            operation: operation.clone(),
            method: parts.method.to_string(),
            path: path.clone(),
            mutating,
            injected,
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
            api: api.clone(),
            started,
            answered: std::time::Instant::now(),
        });
        // Held: once the held call and every mutating call let through before it are done.
        if i.held_call_done && i.in_flight == 0 {
            s.held.send_replace(true);
        }
    };

    // CloudWatch is answered here, never by moto; a fault after forwarding takes effect first.
    let after = fault.as_ref().is_none_or(|f| f.after_forwarding);
    if after && cloudwatch::handles(&service, &path) {
        let region = region_of(&parts.headers);
        let resp = cloudwatch::answer(
            &mut s.cloudwatch.lock().unwrap(),
            &region,
            &path,
            &parts.headers,
            &body,
        );
        if let Some(f) = &fault {
            record(f.status, true);
            if f.kind == FaultKind::Reset {
                return None;
            }
            return Some(error_response(&service, f));
        }
        record(resp.status().as_u16(), false);
        if hold_this {
            // The call took effect; its answer never leaves. Held (the test is told) once
            // the calls let through before it are answered too, as for moto's calls.
            {
                let mut i = s.inner.lock().unwrap();
                i.held_call_done = true;
                if i.in_flight == 0 {
                    s.held.send_replace(true);
                }
            }
            return Some(held(&s, generation).await);
        }
        return Some(resp);
    }

    // Lambda's answer for a Function URL of another qualifier: AWS's normal answer, not a
    // fault.
    if fault.is_none() && service == "lambda" {
        let call = function_urls::parse(&parts.method, &path, parts.uri.query());
        let refused = call.and_then(|c| s.inner.lock().unwrap().url_qualifiers.refuse(&c));
        if let Some((status, code, message)) = refused {
            record(status, false);
            let f = Fault {
                matcher: Matcher::NthMutating(0),
                times: 0,
                status,
                code,
                message,
                after_forwarding: false,
                kind: FaultKind::Error,
            };
            return Some(error_response(&service, &f));
        }
    }

    let router = s.router.lock().unwrap().clone();
    if let (None, Some(router), "lambda") = (&fault, router, service.as_str()) {
        let target = invocations::published_version(&parts.method, &path, parts.uri.query());
        if let Some((function, version)) = target {
            let resp = match router.invoke(&function, &version, body.clone()).await {
                Ok(i) => invocations::response(&i),
                Err(e) => invocations::service_error(&format!("{e:#}")),
            };
            record(resp.status().as_u16(), false);
            return Some(resp);
        }
    }

    if fault.is_none() {
        if let Some((status, code, body)) = stand_in_answer(&s, &service, &parts, &body) {
            record(status, !code.is_empty());
            let mut out = Response::builder()
                .status(status)
                .header("x-amzn-requestid", "stand-in");
            if code.is_empty() {
                out = out.header("content-type", "application/json");
            } else {
                out = out
                    .header("content-type", error_content_type(&service))
                    .header("x-amzn-errortype", code.as_str());
            }
            return Some(out.body(Body::from(body)).unwrap());
        }
    }

    if let Some(f) = &fault {
        if !f.after_forwarding {
            record(f.status, true);
            if f.kind == FaultKind::Reset {
                return None;
            }
            return Some(error_response(&service, f));
        }
    }

    let req = strict::Req {
        service: &service,
        operation: &operation,
        method: &parts.method,
        path: &path,
        body: &body,
    };
    if fault.is_none() {
        let answer = s.strict.lock().unwrap().answer(&req);
        if let Some(r) = answer {
            record(r.status().as_u16(), true);
            return Some(r);
        }
    }

    let upstream = forwarded(&s.client, &s.upstream, &parts, body.clone());
    let resp = match upstream.send().await {
        Ok(r) => r,
        Err(e) => {
            record(502, false);
            return Some(
                Response::builder()
                    .status(502)
                    .body(Body::from(format!("proxy: forwarding to moto: {e}")))
                    .unwrap(),
            );
        }
    };
    let observe_url = |status: u16| {
        if service == "lambda" {
            if let Some(c) = function_urls::parse(&parts.method, &path, parts.uri.query()) {
                s.inner.lock().unwrap().url_qualifiers.observe(&c, status);
            }
        }
    };
    if let Some(f) = &fault {
        // The call took effect in moto.
        observe_url(resp.status().as_u16());
        record(f.status, true);
        if f.kind == FaultKind::Reset {
            return None;
        }
        return Some(error_response(&service, f));
    }
    let status = resp.status();
    let headers = resp.headers().clone();
    let mut bytes = resp.bytes().await.unwrap_or_default();
    {
        let mut l = s.latency.lock().unwrap();
        l.observe(&service, &api, &path, &body, status.as_u16());
        if status.is_success() {
            if let Some(b) = l.rewrite(&api, &path, &body, &bytes) {
                bytes = b.into();
            }
        }
    }
    record(status.as_u16(), false);
    observe_url(status.as_u16());
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    s.strict
        .lock()
        .unwrap()
        .observe(&req, status.as_u16(), &content_type, &bytes);
    if hold_this {
        // The call took effect in moto; its answer never leaves. Held (the test is told)
        // once the calls let through before it are answered too.
        {
            let mut i = s.inner.lock().unwrap();
            i.held_call_done = true;
            if i.in_flight == 0 {
                s.held.send_replace(true);
            }
        }
        return Some(held(&s, generation).await);
    }
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
    Some(out.body(Body::from(bytes)).unwrap())
}
