//! A fake Anthropic Messages API on a loopback port, for `cargo xtask dev --mock`,
//! `deploy --local` and the tests.
//!
//! Without faults it answers deterministically: the reply is `Echo: <last user text>`, one
//! word per `content_block_delta`, in the real SSE event sequence (`message_start`,
//! `content_block_start`, `ping`, `content_block_delta` x N, `content_block_stop`,
//! `message_delta` with usage, `message_stop`), with `request-id` and
//! `anthropic-ratelimit-*` headers. It checks `x-api-key` and `anthropic-version` like the
//! real API. Tests program faults per request ([`Fault`]), hold every event of a stream until
//! released ([`Gate`]), play an outage with one fault for every request
//! ([`FakeAnthropic::storm`], e.g. a 529 storm, or a hang with [`Fault::DelayFirstByte`]),
//! and read back every request received ([`FakeAnthropic::requests`]:
//! method, path, every header and the body byte for byte, so it doubles as a capture
//! upstream). Hostile faults play an upstream that tries to get the key or the proxy's
//! limits: redirects, key-quoting 401s, HTML error pages, `x-should-retry` on a 400 and
//! events that never end.

use crate::answer::{input_tokens, Answer};
use crate::http::{channel_body, full, Body, BoxError, Server};
use anyhow::Result;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};

/// One programmed misbehaviour, applied to one request (faults are used in push order, one
/// per authenticated request).
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status and the matching Anthropic error body, optionally with
    /// `retry-after` / `retry-after-ms` headers.
    Error {
        status: u16,
        retry_after: Option<String>,
        retry_after_ms: Option<String>,
    },
    /// Wait this long before sending the response headers.
    DelayFirstByte(Duration),
    /// Stream normally for `after_events` events, then break the connection.
    DropMidStream { after_events: usize },
    /// Stream normally for `after_events` events, then send `event: error` (overloaded) and end.
    StreamError { after_events: usize },
    /// Hostile: answer `status` (a 3xx) with `Location: location` and no body.
    Redirect { status: u16, location: String },
    /// Hostile: answer `status` (401, 403) with an Anthropic error whose message quotes the
    /// `x-api-key` the request carried (`invalid x-api-key: sk-ant-...`).
    QuoteKey { status: u16 },
    /// Hostile: answer `status` with an HTML page (`text/html`), as a load balancer does.
    Html { status: u16 },
    /// Answer `status` with the Anthropic error body and `x-should-retry: true`.
    ShouldRetry { status: u16 },
    /// Hostile: a 200 event stream that sends `message_start`, then one event of `bytes`
    /// bytes in 64 KiB chunks that never ends (no blank line), then closes.
    Unterminated { bytes: usize },
    /// Hostile: a 200 event stream whose first event is an `error` quoting the request's
    /// `x-api-key`.
    StreamErrorQuotingKey,
}

impl Fault {
    pub fn status(status: u16) -> Self {
        Fault::Error {
            status,
            retry_after: None,
            retry_after_ms: None,
        }
    }
    /// 429 with `retry-after: <seconds>`.
    pub fn rate_limited(retry_after_seconds: &str) -> Self {
        Fault::Error {
            status: 429,
            retry_after: Some(retry_after_seconds.to_string()),
            retry_after_ms: None,
        }
    }
    /// 529 overloaded.
    pub fn overloaded() -> Self {
        Fault::status(529)
    }
    /// 500 api_error.
    pub fn server_error() -> Self {
        Fault::status(500)
    }
}

/// A request the fake received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Holds each SSE event of gated streams until the test releases it.
#[derive(Clone)]
pub struct Gate {
    permits: Arc<Semaphore>,
}

impl Gate {
    /// Lets `n` more events go out.
    pub fn release(&self, n: usize) {
        self.permits.add_permits(n);
    }
}

struct State {
    expected_key: String,
    faults: Mutex<VecDeque<Fault>>,
    /// The fault for every request that has none queued (an outage), until calmed.
    storm: Mutex<Option<Fault>>,
    requests: Mutex<Vec<RecordedRequest>>,
    gate: Mutex<Option<Gate>>,
    events_sent: AtomicUsize,
    counter: AtomicUsize,
    streams_open: AtomicUsize,
    max_streams_open: AtomicUsize,
}

/// The running fake. Stopped when dropped.
pub struct FakeAnthropic {
    server: Server,
    state: Arc<State>,
}

impl FakeAnthropic {
    /// Starts on 127.0.0.1 on a free port; requests must carry `x-api-key: expected_key`.
    pub async fn start(expected_key: &str) -> Result<Self> {
        let state = Arc::new(State {
            expected_key: expected_key.to_string(),
            faults: Mutex::new(VecDeque::new()),
            storm: Mutex::new(None),
            requests: Mutex::new(Vec::new()),
            gate: Mutex::new(None),
            events_sent: AtomicUsize::new(0),
            counter: AtomicUsize::new(0),
            streams_open: AtomicUsize::new(0),
            max_streams_open: AtomicUsize::new(0),
        });
        let st = state.clone();
        let server = Server::bind(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            "the fake Messages API",
            move |req, _peer| handle(st.clone(), req),
        )
        .await?;
        Ok(FakeAnthropic { server, state })
    }

    /// `http://127.0.0.1:<port>` (what `ANTHROPIC_BASE_URL` is set to).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    pub fn port(&self) -> u16 {
        self.server.addr().port()
    }

    /// Applies `fault` to the next request without a fault of its own.
    pub fn push_fault(&self, fault: Fault) {
        self.state.faults.lock().unwrap().push_back(fault);
    }

    /// The same fault for the next `n` requests.
    pub fn push_faults(&self, fault: Fault, n: usize) {
        let mut q = self.state.faults.lock().unwrap();
        for _ in 0..n {
            q.push_back(fault.clone());
        }
    }

    /// From now on `fault` applies to every request without a queued fault of its own:
    /// `storm(Fault::overloaded())` is a 529 storm, `storm(Fault::DelayFirstByte(..))` a
    /// hang. Lasts until [`FakeAnthropic::calm`].
    pub fn storm(&self, fault: Fault) {
        *self.state.storm.lock().unwrap() = Some(fault);
    }

    /// Ends the storm: requests are answered normally again.
    pub fn calm(&self) {
        *self.state.storm.lock().unwrap() = None;
    }

    /// Forgets the faults not used yet.
    pub fn clear_faults(&self) {
        self.state.faults.lock().unwrap().clear();
    }

    /// Faults not used yet.
    pub fn pending_faults(&self) -> usize {
        self.state.faults.lock().unwrap().len()
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn request_count(&self) -> usize {
        self.state.requests.lock().unwrap().len()
    }

    pub fn clear_requests(&self) {
        self.state.requests.lock().unwrap().clear();
    }

    /// From now on every SSE event waits for [`Gate::release`].
    pub fn enable_gate(&self) -> Gate {
        let gate = Gate {
            permits: Arc::new(Semaphore::new(0)),
        };
        *self.state.gate.lock().unwrap() = Some(gate.clone());
        gate
    }

    /// SSE events released to the connection so far (all streams; counted just before each
    /// is sent).
    pub fn events_sent(&self) -> usize {
        self.state.events_sent.load(Ordering::SeqCst)
    }

    /// SSE streams in flight now: counted from the moment their headers are ready until
    /// their last event is handed over (or the caller goes away).
    pub fn streams_open(&self) -> usize {
        self.state.streams_open.load(Ordering::SeqCst)
    }

    /// The most SSE streams that were in flight at the same time.
    pub fn max_streams_open(&self) -> usize {
        self.state.max_streams_open.load(Ordering::SeqCst)
    }
}

fn error_type_for(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        _ => "api_error",
    }
}

fn common_headers(request_id: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("request-id", HeaderValue::from_str(request_id).unwrap());
    h.insert(
        "anthropic-ratelimit-requests-limit",
        HeaderValue::from_static("1000"),
    );
    h.insert(
        "anthropic-ratelimit-requests-remaining",
        HeaderValue::from_static("999"),
    );
    h.insert(
        "anthropic-ratelimit-requests-reset",
        HeaderValue::from_static("2026-01-01T00:00:00Z"),
    );
    h.insert(
        "anthropic-ratelimit-tokens-limit",
        HeaderValue::from_static("100000"),
    );
    h.insert(
        "anthropic-ratelimit-tokens-remaining",
        HeaderValue::from_static("99000"),
    );
    h
}

fn error_response(
    status: u16,
    message: &str,
    mut headers: HeaderMap,
    request_id: &str,
) -> Response<Body> {
    let body = json!({
        "type": "error",
        "error": {"type": error_type_for(status), "message": message},
        "request_id": request_id,
    });
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    let mut r = Response::new(full(body.to_string()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    *r.headers_mut() = headers;
    r
}

async fn handle(state: Arc<State>, req: http::Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    state.requests.lock().unwrap().push(RecordedRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        headers: parts.headers.clone(),
        body: body.clone(),
    });
    let n = state.counter.fetch_add(1, Ordering::SeqCst) + 1;
    let request_id = format!("req_fake_{n:06}");
    let headers = common_headers(&request_id);

    let route = match (&parts.method, parts.uri.path()) {
        (&Method::POST, "/v1/messages") => "messages",
        (&Method::POST, "/v1/messages/count_tokens") => "count_tokens",
        _ => return error_response(404, "Not found", headers, &request_id),
    };
    let key = parts.headers.get("x-api-key").and_then(|v| v.to_str().ok());
    if key != Some(state.expected_key.as_str()) {
        return error_response(401, "invalid x-api-key", headers, &request_id);
    }
    if parts.headers.get("anthropic-version").is_none() {
        return error_response(
            400,
            "anthropic-version: header is required",
            headers,
            &request_id,
        );
    }

    let queued = state.faults.lock().unwrap().pop_front();
    let fault = queued.or_else(|| state.storm.lock().unwrap().clone());
    let breaks = match plan_fault(fault, &headers, &request_id, key.unwrap_or("")) {
        FaultPlan::Answer(r) => return r,
        FaultPlan::Serve { delay, breaks } => {
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            breaks
        }
    };

    let Ok(req_json) = serde_json::from_slice::<Value>(&body) else {
        return error_response(400, "invalid JSON body", headers, &request_id);
    };
    let model = req_json.get("model").and_then(Value::as_str).unwrap_or("");
    if model.is_empty() {
        return error_response(400, "model: Field required", headers, &request_id);
    }
    if route == "count_tokens" {
        let mut h = headers;
        h.insert("content-type", HeaderValue::from_static("application/json"));
        let tokens = input_tokens(&req_json);
        let mut r = Response::new(full(json!({ "input_tokens": tokens }).to_string()));
        *r.headers_mut() = h;
        return r;
    }
    let max_tokens = req_json
        .get("max_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    if max_tokens == 0 {
        return error_response(400, "max_tokens: Field required", headers, &request_id);
    }
    let answer = Answer::new(&req_json, model, n);
    let stream = req_json
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if !stream {
        let mut h = headers;
        h.insert("content-type", HeaderValue::from_static("application/json"));
        let mut r = Response::new(full(answer.message.to_string()));
        *r.headers_mut() = h;
        return r;
    }
    stream_events(&state, headers, answer.events, breaks)
}

/// The events as a 200 event stream, each held by the gate when one is enabled, cut short
/// as `breaks` says.
fn stream_events(
    state: &Arc<State>,
    headers: HeaderMap,
    events: Vec<(&'static str, Value)>,
    breaks: StreamBreak,
) -> Response<Body> {
    let gate = state.gate.lock().unwrap().clone();
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
    let st = state.clone();
    let open = OpenStream::new(state.clone());
    tokio::spawn(async move {
        let _open = open;
        for (i, (name, data)) in events.into_iter().enumerate() {
            if breaks.drop_after == Some(i) {
                let _ = tx
                    .send(Err(BoxError::from("fake upstream dropped the connection")))
                    .await;
                return;
            }
            if breaks.error_after == Some(i) {
                let err = json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}});
                let _ = tx.send(Ok(Frame::data(sse("error", &err)))).await;
                return;
            }
            if let Some(g) = &gate {
                match g.permits.acquire().await {
                    Ok(p) => p.forget(),
                    Err(_) => return,
                }
            }
            // Counted before it is handed over, so a reader that sees event k always finds
            // events_sent() >= k.
            st.events_sent.fetch_add(1, Ordering::SeqCst);
            if tx.send(Ok(Frame::data(sse(name, &data)))).await.is_err() {
                return;
            }
        }
    });
    sse_response(headers, rx)
}

/// A 200 event stream fed from `rx`.
fn sse_response(
    headers: HeaderMap,
    rx: mpsc::Receiver<Result<Frame<Bytes>, BoxError>>,
) -> Response<Body> {
    let mut h = headers;
    h.insert(
        "content-type",
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert("cache-control", HeaderValue::from_static("no-cache"));
    let mut r = Response::new(channel_body(rx));
    *r.headers_mut() = h;
    r
}

/// Counts one stream in flight for as long as it lives.
struct OpenStream(Arc<State>);

impl OpenStream {
    fn new(state: Arc<State>) -> Self {
        let now = state.streams_open.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_streams_open.fetch_max(now, Ordering::SeqCst);
        OpenStream(state)
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.streams_open.fetch_sub(1, Ordering::SeqCst);
    }
}

fn sse(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

mod fault_plan;
use fault_plan::{plan_fault, FaultPlan, StreamBreak};
