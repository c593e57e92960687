//! The HTTP fronts: a Function URL and an API Gateway HTTP API (payload format 2.0), plus the
//! small HTTP/1.1 server every listener of the emulator uses.

use super::pool::{self, InvokeError, Outcome, Pool, StreamEvent};
use super::{ids, FunctionError, GatewayOptions, InvokeMode};
use base64::Engine as _;
use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use serde_json::{json, Map, Value};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub(crate) type Body = UnsyncBoxBody<Bytes, BoxError>;

/// The `Content-Type` of a streamed HTTP response: JSON prelude, 8 NUL bytes, body.
pub(crate) const HTTP_INTEGRATION: &str = "application/vnd.awslambda.http-integration-response";
const PRELUDE_DELIMITER: [u8; 8] = [0; 8];
const MAX_PRELUDE: usize = 1024 * 1024;
/// A Function URL takes requests up to Lambda's 6 MB synchronous payload.
const URL_MAX_REQUEST: usize = 6 * 1024 * 1024;
/// An HTTP API takes payloads up to 10 MB.
const GATEWAY_MAX_REQUEST: usize = 10 * 1024 * 1024;

pub(crate) fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Serves HTTP/1.1 on `listener`, one task per connection, until aborted.
pub(crate) async fn serve<F, Fut>(listener: TcpListener, handler: F)
where
    F: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let handler = handler.clone();
                async move { Ok::<_, Infallible>(handler(req, peer).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The Function URL front.
pub(crate) struct UrlFront {
    pool: Arc<Pool>,
    mode: InvokeMode,
    url_id: String,
    domain: String,
}

impl UrlFront {
    pub fn new(pool: Arc<Pool>, mode: InvokeMode) -> Arc<UrlFront> {
        let url_id = ids::lower_alnum(32);
        let domain = format!("{url_id}.lambda-url.{}.on.aws", pool.config().region);
        Arc::new(UrlFront {
            pool,
            mode,
            url_id,
            domain,
        })
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let now = SystemTime::now();
        let request_id = ids::uuid_v4();
        let mut resp = self.respond(req, peer, now, &request_id).await;
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            resp.headers_mut().insert("x-amzn-requestid", v);
        }
        resp
    }

    async fn respond(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        now: SystemTime,
        request_id: &str,
    ) -> Response<Body> {
        let cfg = self.pool.config();
        let (parts, body) = req.into_parts();
        let Some(body) = read_body(body, URL_MAX_REQUEST).await else {
            return json_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"Message": format!("Request must be smaller than {URL_MAX_REQUEST} bytes for the InvokeFunction operation")}),
            );
        };
        let event = build_event(
            &EventSource {
                account_id: &cfg.account_id,
                api_id: &self.url_id,
                domain: &self.domain,
                request_id,
                route_key: "$default".into(),
                path_parameters: None,
            },
            &parts,
            &body,
            peer,
            now,
        );
        let outcome = match self
            .pool
            .invoke(request_id.to_string(), Bytes::from(event.to_string()))
            .await
        {
            Ok(o) => o,
            Err(InvokeError::Throttled) => {
                return json_response(
                    StatusCode::TOO_MANY_REQUESTS,
                    json!({"Message": "Rate Exceeded."}),
                )
            }
            Err(InvokeError::TooLarge(_)) => {
                return json_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    json!({"Message": format!("Request must be smaller than {URL_MAX_REQUEST} bytes for the InvokeFunction operation")}),
                )
            }
            Err(e @ InvokeError::Unavailable(_)) => {
                cfg.platform(0, format!("{request_id} {e}"));
                return url_error();
            }
        };
        match (outcome, self.mode) {
            (Outcome::Error(e), _) => {
                self.log_error(request_id, &e);
                url_error()
            }
            (Outcome::Buffered(payload), _) => self.buffered(request_id, &payload, false),
            (
                Outcome::Streaming {
                    content_type,
                    events,
                },
                InvokeMode::Buffered,
            ) => match pool::collect_stream(events).await {
                Ok(payload) => self.buffered(
                    request_id,
                    &payload,
                    content_type.as_deref() == Some(HTTP_INTEGRATION),
                ),
                Err(e) => {
                    self.log_error(request_id, &e);
                    url_error()
                }
            },
            (
                Outcome::Streaming {
                    content_type,
                    events,
                },
                InvokeMode::ResponseStream,
            ) => match stream_response(content_type, events).await {
                Ok(resp) => resp,
                Err(e) => {
                    self.log_error(request_id, &e);
                    url_error()
                }
            },
        }
    }

    fn buffered(&self, request_id: &str, payload: &[u8], streamed: bool) -> Response<Body> {
        match response_from_payload(payload) {
            Ok(resp) => resp,
            Err(why) => {
                let hint = if streamed {
                    " (the function streamed its response, but the Function URL's invoke mode is BUFFERED: set InvokeMode RESPONSE_STREAM)"
                } else {
                    ""
                };
                self.pool.config().platform(
                    0,
                    format!("{request_id} the Function URL could not use the function's response: {why}{hint}"),
                );
                url_error()
            }
        }
    }

    fn log_error(&self, request_id: &str, e: &FunctionError) {
        self.pool
            .config()
            .platform(0, format!("{request_id} function error: {e}"));
    }
}

pub(crate) async fn serve_function_url(listener: TcpListener, front: Arc<UrlFront>) {
    serve(listener, move |req, peer| front.clone().handle(req, peer)).await
}

/// What a Function URL answers when the invocation failed (function error, timeout, crash,
/// unusable response).
fn url_error() -> Response<Body> {
    Response::builder()
        .status(StatusCode::BAD_GATEWAY)
        .header("content-type", "application/json")
        .body(full(Bytes::from_static(b"Internal Server Error")))
        .expect("valid response")
}

fn json_response(status: StatusCode, body: Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(full(Bytes::from(body.to_string())))
        .expect("valid response")
}

/// The API Gateway HTTP API front.
pub(crate) struct GatewayFront {
    pool: Arc<Pool>,
    api_id: String,
    domain: String,
    routes: Vec<Route>,
    timeout: Duration,
}

impl GatewayFront {
    pub fn new(pool: Arc<Pool>, opts: &GatewayOptions) -> anyhow::Result<Arc<GatewayFront>> {
        let api_id = ids::lower_alnum(10);
        let domain = format!(
            "{api_id}.execute-api.{}.amazonaws.com",
            pool.config().region
        );
        let routes = opts
            .routes
            .iter()
            .map(|r| Route::parse(r))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Arc::new(GatewayFront {
            pool,
            api_id,
            domain,
            routes,
            timeout: opts.timeout,
        }))
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let now = SystemTime::now();
        let mut id_bytes = [0u8; 11];
        fastrand::fill(&mut id_bytes);
        let apigw_id = base64::engine::general_purpose::STANDARD.encode(id_bytes);
        let mut resp = self.respond(req, peer, now, &apigw_id).await;
        if let Ok(v) = HeaderValue::from_str(&apigw_id) {
            resp.headers_mut().insert("apigw-requestid", v);
        }
        resp
    }

    async fn respond(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        now: SystemTime,
        apigw_id: &str,
    ) -> Response<Body> {
        let cfg = self.pool.config();
        let (parts, body) = req.into_parts();
        let Some((route, path_parameters)) = self.route(parts.method.as_str(), parts.uri.path())
        else {
            return json_response(StatusCode::NOT_FOUND, json!({"message": "Not Found"}));
        };
        let Some(body) = read_body(body, GATEWAY_MAX_REQUEST).await else {
            return json_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"message": "Request Entity Too Large"}),
            );
        };
        let event = build_event(
            &EventSource {
                account_id: &cfg.account_id,
                api_id: &self.api_id,
                domain: &self.domain,
                request_id: apigw_id,
                route_key: route,
                path_parameters,
            },
            &parts,
            &body,
            peer,
            now,
        );
        let lambda_request_id = ids::uuid_v4();
        let invocation = async {
            let outcome = self
                .pool
                .invoke(lambda_request_id.clone(), Bytes::from(event.to_string()))
                .await?;
            Ok::<_, InvokeError>(match outcome {
                Outcome::Buffered(b) => (Ok(b), false),
                Outcome::Error(e) => (Err(e), false),
                Outcome::Streaming {
                    content_type,
                    events,
                } => (
                    pool::collect_stream(events).await,
                    content_type.as_deref() == Some(HTTP_INTEGRATION),
                ),
            })
        };
        let internal_error = || {
            json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"message": "Internal Server Error"}),
            )
        };
        match tokio::time::timeout(self.timeout, invocation).await {
            Err(_) => {
                cfg.platform(
                    0,
                    format!(
                        "{lambda_request_id} API Gateway gave up after {:?} (integration timeout)",
                        self.timeout
                    ),
                );
                json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"message": "Service Unavailable"}),
                )
            }
            Ok(Err(InvokeError::Throttled)) => json_response(
                StatusCode::TOO_MANY_REQUESTS,
                json!({"message": "Too Many Requests"}),
            ),
            Ok(Err(e)) => {
                cfg.platform(0, format!("{lambda_request_id} {e}"));
                internal_error()
            }
            Ok(Ok((Err(e), _))) => {
                cfg.platform(0, format!("{lambda_request_id} function error: {e}"));
                internal_error()
            }
            Ok(Ok((Ok(payload), streamed))) => match response_from_payload(&payload) {
                Ok(resp) => resp,
                Err(why) => {
                    let hint = if streamed {
                        " (the function streamed its response; HTTP APIs cannot stream, answer API Gateway requests buffered)"
                    } else {
                        ""
                    };
                    cfg.platform(
                        0,
                        format!("{lambda_request_id} API Gateway could not use the function's response: {why}{hint}"),
                    );
                    internal_error()
                }
            },
        }
    }

    /// The matching route key and its path parameters: the most specific route wins, then
    /// `$default`.
    fn route(&self, method: &str, path: &str) -> Option<(String, Option<Map<String, Value>>)> {
        let mut best: Option<(&Route, Map<String, Value>)> = None;
        for r in &self.routes {
            if let Some(params) = r.matches(method, path) {
                if best
                    .as_ref()
                    .is_none_or(|(b, _)| r.specificity() > b.specificity())
                {
                    best = Some((r, params));
                }
            }
        }
        match best {
            Some((r, params)) => Some((r.key.clone(), (!params.is_empty()).then_some(params))),
            None => self
                .routes
                .iter()
                .any(|r| r.key == "$default")
                .then(|| ("$default".to_string(), None)),
        }
    }
}

pub(crate) async fn serve_gateway(listener: TcpListener, front: Arc<GatewayFront>) {
    serve(listener, move |req, peer| front.clone().handle(req, peer)).await
}

/// A route key: `METHOD /path/{param}/{greedy+}` (or `$default`, which matches nothing here).
struct Route {
    key: String,
    method: Option<String>,
    segments: Vec<Segment>,
}

enum Segment {
    Static(String),
    Param(String),
    Greedy(String),
}

impl Route {
    fn parse(key: &str) -> anyhow::Result<Route> {
        if key == "$default" {
            return Ok(Route {
                key: key.into(),
                method: None,
                segments: Vec::new(),
            });
        }
        let (method, path) = key.split_once(' ').ok_or_else(|| {
            anyhow::anyhow!("route key {key:?} is not `$default` or `METHOD /path`")
        })?;
        if !path.starts_with('/') {
            anyhow::bail!("route key {key:?}: the path must start with '/'");
        }
        let segments = path
            .split('/')
            .skip(1)
            .filter(|s| !s.is_empty())
            .map(
                |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(p) => match p.strip_suffix('+') {
                        Some(g) => Segment::Greedy(g.to_string()),
                        None => Segment::Param(p.to_string()),
                    },
                    None => Segment::Static(s.to_string()),
                },
            )
            .collect();
        Ok(Route {
            key: key.into(),
            method: (method != "ANY").then(|| method.to_ascii_uppercase()),
            segments,
        })
    }

    fn matches(&self, method: &str, path: &str) -> Option<Map<String, Value>> {
        if self.key == "$default" {
            return None;
        }
        if let Some(m) = &self.method {
            if m != method {
                return None;
            }
        }
        let parts: Vec<&str> = path.split('/').skip(1).filter(|s| !s.is_empty()).collect();
        let mut params = Map::new();
        for (i, seg) in self.segments.iter().enumerate() {
            match seg {
                Segment::Static(s) => {
                    if parts.get(i) != Some(&s.as_str()) {
                        return None;
                    }
                }
                Segment::Param(p) => {
                    let v = parts.get(i)?;
                    params.insert(p.clone(), Value::String(percent_decode(v)));
                }
                Segment::Greedy(p) => {
                    if i >= parts.len() {
                        return None;
                    }
                    params.insert(
                        p.clone(),
                        Value::String(percent_decode(&parts[i..].join("/"))),
                    );
                    return Some(params);
                }
            }
        }
        (parts.len() == self.segments.len()).then_some(params)
    }

    fn specificity(&self) -> (bool, usize, bool) {
        let greedy = self
            .segments
            .iter()
            .any(|s| matches!(s, Segment::Greedy(_)));
        let statics = self
            .segments
            .iter()
            .filter(|s| matches!(s, Segment::Static(_)))
            .count();
        (!greedy, statics, self.method.is_some())
    }
}

/// Reads a request body, or `None` when it exceeds `limit`.
async fn read_body(mut body: Incoming, limit: usize) -> Option<Bytes> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Some(buf.freeze());
        };
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return None;
            }
            buf.extend_from_slice(&data);
        }
    }
    Some(buf.freeze())
}

struct EventSource<'a> {
    account_id: &'a str,
    api_id: &'a str,
    domain: &'a str,
    request_id: &'a str,
    route_key: String,
    path_parameters: Option<Map<String, Value>>,
}

/// A payload-format-2.0 event, as Function URLs and HTTP APIs send it.
fn build_event(
    src: &EventSource<'_>,
    parts: &http::request::Parts,
    body: &[u8],
    peer: SocketAddr,
    now: SystemTime,
) -> Value {
    let mut headers = Map::new();
    let mut cookies: Vec<Value> = Vec::new();
    for name in parts.headers.keys() {
        let values: Vec<String> = parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        if name == http::header::COOKIE {
            cookies.extend(
                values
                    .iter()
                    .flat_map(|v| v.split(';'))
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(|c| Value::String(c.to_string())),
            );
            continue;
        }
        headers.insert(name.as_str().to_string(), Value::String(values.join(",")));
    }
    let forwarded_for = match headers.get("x-forwarded-for").and_then(Value::as_str) {
        Some(prev) => format!("{prev}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    headers.insert("x-forwarded-for".into(), forwarded_for.into());
    headers.insert("x-forwarded-proto".into(), "http".into());
    let local_port = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.rsplit_once(':'))
        .map(|(_, p)| p.to_string())
        .unwrap_or_else(|| "80".into());
    headers.insert("x-forwarded-port".into(), local_port.into());
    headers.insert(
        "x-amzn-trace-id".into(),
        format!("Root={}", ids::trace_root(now)).into(),
    );

    let raw_path = parts.uri.path().to_string();
    let raw_query = parts.uri.query().unwrap_or("").to_string();
    let user_agent = parts
        .headers
        .get(http::header::USER_AGENT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();

    let mut event = Map::new();
    event.insert("version".into(), "2.0".into());
    event.insert("routeKey".into(), src.route_key.clone().into());
    event.insert("rawPath".into(), raw_path.clone().into());
    event.insert("rawQueryString".into(), raw_query.clone().into());
    if !cookies.is_empty() {
        event.insert("cookies".into(), Value::Array(cookies));
    }
    event.insert("headers".into(), Value::Object(headers));
    let query = query_parameters(&raw_query);
    if !query.is_empty() {
        event.insert("queryStringParameters".into(), Value::Object(query));
    }
    event.insert(
        "requestContext".into(),
        json!({
            "accountId": src.account_id,
            "apiId": src.api_id,
            "domainName": src.domain,
            "domainPrefix": src.api_id,
            "http": {
                "method": parts.method.as_str(),
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": peer.ip().to_string(),
                "userAgent": user_agent,
            },
            "requestId": src.request_id,
            "routeKey": src.route_key,
            "stage": "$default",
            "time": ids::request_time(now),
            "timeEpoch": ids::epoch_millis(now),
        }),
    );
    if let Some(params) = &src.path_parameters {
        event.insert("pathParameters".into(), Value::Object(params.clone()));
    }
    if body.is_empty() {
        event.insert("isBase64Encoded".into(), false.into());
    } else {
        let content_type = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        match text_body(content_type, body) {
            Some(text) => {
                event.insert("body".into(), text.into());
                event.insert("isBase64Encoded".into(), false.into());
            }
            None => {
                event.insert(
                    "body".into(),
                    base64::engine::general_purpose::STANDARD
                        .encode(body)
                        .into(),
                );
                event.insert("isBase64Encoded".into(), true.into());
            }
        }
    }
    Value::Object(event)
}

/// The body as text when its content type is textual (or absent) and it is UTF-8; binary
/// bodies travel base64-encoded.
fn text_body<'a>(content_type: Option<&str>, body: &'a [u8]) -> Option<&'a str> {
    let text = std::str::from_utf8(body).ok()?;
    let Some(ct) = content_type else {
        return Some(text);
    };
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let textual = mime.starts_with("text/")
        || matches!(
            mime.as_str(),
            "application/json"
                | "application/javascript"
                | "application/xml"
                | "application/yaml"
                | "application/x-yaml"
        )
        || mime.ends_with("+json")
        || mime.ends_with("+xml")
        || mime.ends_with("+yaml");
    textual.then_some(text)
}

/// `queryStringParameters`: decoded, repeated keys joined with commas.
fn query_parameters(raw: &str) -> Map<String, Value> {
    let mut out: Map<String, Value> = Map::new();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (percent_decode(k), percent_decode(v));
        match out.get_mut(&k) {
            Some(Value::String(prev)) => {
                prev.push(',');
                prev.push_str(&v);
            }
            _ => {
                out.insert(k, Value::String(v));
            }
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Turns a buffered function result into the HTTP response, as payload format 2.0 says:
/// an object with `statusCode` is a response description; any other JSON is a `200` with
/// that JSON as an `application/json` body.
pub(crate) fn response_from_payload(payload: &[u8]) -> Result<Response<Body>, String> {
    let value: Value = serde_json::from_slice(payload)
        .map_err(|e| format!("the function's result is not JSON ({e})"))?;
    let Some(obj) = value.as_object().filter(|o| o.contains_key("statusCode")) else {
        return Ok(Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(full(Bytes::copy_from_slice(payload)))
            .expect("valid response"));
    };
    let status = status_code(&obj["statusCode"])?;
    let mut headers = HeaderMap::new();
    if let Some(h) = obj.get("headers").and_then(Value::as_object) {
        for (name, v) in h {
            for v in header_values(v) {
                append_header(&mut headers, name, &v)?;
            }
        }
    }
    if let Some(h) = obj.get("multiValueHeaders").and_then(Value::as_object) {
        for (name, v) in h {
            for v in header_values(v) {
                append_header(&mut headers, name, &v)?;
            }
        }
    }
    if let Some(cookies) = obj.get("cookies").and_then(Value::as_array) {
        for c in cookies.iter().filter_map(Value::as_str) {
            append_header(&mut headers, "set-cookie", c)?;
        }
    }
    let is_base64 = obj
        .get("isBase64Encoded")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let body = match obj.get("body") {
        None | Some(Value::Null) => Bytes::new(),
        Some(Value::String(s)) if is_base64 => Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| format!("isBase64Encoded is true but body is not base64 ({e})"))?,
        ),
        Some(Value::String(s)) => Bytes::from(s.clone()),
        Some(other) => Bytes::from(other.to_string()),
    };
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    Ok(resp)
}

fn status_code(v: &Value) -> Result<StatusCode, String> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| format!("statusCode {v} is not a number"))?;
    u16::try_from(n)
        .ok()
        .and_then(|n| StatusCode::from_u16(n).ok())
        .ok_or_else(|| format!("statusCode {n} is not an HTTP status"))
}

fn header_values(v: &Value) -> Vec<String> {
    match v {
        Value::Null => Vec::new(),
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().flat_map(header_values).collect(),
        other => vec![other.to_string()],
    }
}

fn append_header(headers: &mut HeaderMap, name: &str, value: &str) -> Result<(), String> {
    let name = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{name:?} is not a valid header name"))?;
    // Framing is the server's business, not the function's.
    if matches!(
        name.as_str(),
        "content-length" | "transfer-encoding" | "connection"
    ) {
        return Ok(());
    }
    let value = HeaderValue::from_str(value)
        .map_err(|_| format!("the value of header {name} is not valid"))?;
    headers.append(name, value);
    Ok(())
}

/// A streamed response for a `RESPONSE_STREAM` Function URL: waits for the prelude (or, for
/// a non-HTTP stream, the first bytes), then forwards every chunk as it arrives. An error
/// before that point is returned; after it, it breaks the connection, as Lambda does.
async fn stream_response(
    content_type: Option<String>,
    mut events: mpsc::Receiver<StreamEvent>,
) -> Result<Response<Body>, FunctionError> {
    let malformed = |why: &str| FunctionError {
        error_type: "Runtime.InvalidResponse".into(),
        error_message: why.to_string(),
    };
    if content_type.as_deref() == Some(HTTP_INTEGRATION) {
        let mut buf = BytesMut::new();
        loop {
            match events.recv().await {
                Some(StreamEvent::Data(b)) => {
                    buf.extend_from_slice(&b);
                    if let Some(pos) = buf
                        .windows(PRELUDE_DELIMITER.len())
                        .position(|w| w == PRELUDE_DELIMITER)
                    {
                        let prelude = buf.split_to(pos);
                        buf.advance(PRELUDE_DELIMITER.len());
                        let mut resp = prelude_response(&prelude).map_err(|e| malformed(&e))?;
                        *resp.body_mut() = stream_body(buf.freeze(), events);
                        return Ok(resp);
                    }
                    if buf.len() > MAX_PRELUDE {
                        return Err(malformed("no prelude delimiter in the first 1 MB"));
                    }
                }
                Some(StreamEvent::End) => {
                    return Err(malformed(
                        "the stream ended before the prelude delimiter (8 NUL bytes)",
                    ))
                }
                Some(StreamEvent::Error(e)) => return Err(e),
                None => return Err(pool::lost_stream()),
            }
        }
    }
    let first = match events.recv().await {
        Some(StreamEvent::Data(b)) => Some(StreamEvent::Data(b)),
        Some(StreamEvent::End) => Some(StreamEvent::End),
        Some(StreamEvent::Error(e)) => return Err(e),
        None => return Err(pool::lost_stream()),
    };
    let (first_bytes, ended) = match first {
        Some(StreamEvent::Data(b)) => (b, false),
        _ => (Bytes::new(), true),
    };
    let body = if ended {
        full(first_bytes)
    } else {
        stream_body(first_bytes, events)
    };
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(
            "content-type",
            content_type
                .as_deref()
                .unwrap_or("application/octet-stream"),
        )
        .body(body)
        .expect("valid response"))
}

fn prelude_response(prelude: &[u8]) -> Result<Response<Body>, String> {
    let v: Value = serde_json::from_slice(prelude)
        .map_err(|e| format!("the response prelude is not JSON ({e})"))?;
    let status = match v.get("statusCode") {
        None | Some(Value::Null) => StatusCode::OK,
        Some(s) => status_code(s)?,
    };
    let mut headers = HeaderMap::new();
    if let Some(h) = v.get("headers").and_then(Value::as_object) {
        for (name, v) in h {
            for v in header_values(v) {
                append_header(&mut headers, name, &v)?;
            }
        }
    }
    if let Some(cookies) = v.get("cookies").and_then(Value::as_array) {
        for c in cookies.iter().filter_map(Value::as_str) {
            append_header(&mut headers, "set-cookie", c)?;
        }
    }
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    Ok(resp)
}

/// A body fed by the stream events; a stream error aborts the response.
fn stream_body(first: Bytes, events: mpsc::Receiver<StreamEvent>) -> Body {
    let state = (Some(first).filter(|b| !b.is_empty()), events, false);
    let stream = futures_util::stream::unfold(state, |(first, mut rx, done)| async move {
        if done {
            return None;
        }
        if let Some(b) = first {
            return Some((Ok(Frame::data(b)), (None, rx, false)));
        }
        match rx.recv().await {
            Some(StreamEvent::Data(b)) => Some((Ok(Frame::data(b)), (None, rx, false))),
            Some(StreamEvent::End) => None,
            Some(StreamEvent::Error(e)) => {
                // Let the server flush what it already has before it breaks the connection.
                tokio::task::yield_now().await;
                Some((Err(BoxError::from(e)), (None, rx, true)))
            }
            None => {
                tokio::task::yield_now().await;
                Some((Err(BoxError::from(pool::lost_stream())), (None, rx, true)))
            }
        }
    });
    StreamBody::new(stream).boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_join_repeated_keys() {
        let q = query_parameters("a=1&b=x%20y&a=2&flag");
        assert_eq!(q["a"], "1,2");
        assert_eq!(q["b"], "x y");
        assert_eq!(q["flag"], "");
    }

    #[test]
    fn percent_decode_keeps_bad_escapes() {
        assert_eq!(percent_decode("a%2Fb%zz%4"), "a/b%zz%4");
    }

    #[test]
    fn non_response_json_is_a_200_json_body() {
        let resp = response_from_payload(br#"{"hello":"world"}"#).unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "application/json");
    }

    #[test]
    fn response_description_is_applied() {
        let resp = response_from_payload(
            br#"{"statusCode":201,"headers":{"x-a":"1","content-length":"99"},"multiValueHeaders":{"x-b":["2","3"]},"cookies":["c=1"],"body":"aGk=","isBase64Encoded":true}"#,
        )
        .unwrap();
        assert_eq!(resp.status(), 201);
        assert_eq!(resp.headers()["x-a"], "1");
        assert!(resp.headers().get("content-length").is_none());
        assert_eq!(resp.headers().get_all("x-b").iter().count(), 2);
        assert_eq!(resp.headers()["set-cookie"], "c=1");
    }

    #[test]
    fn bad_status_is_rejected() {
        assert!(response_from_payload(br#"{"statusCode":"abc"}"#).is_err());
        assert!(response_from_payload(b"not json").is_err());
    }

    #[test]
    fn routes_prefer_the_most_specific() {
        let r = Route::parse("POST /chat").unwrap();
        assert!(r.matches("POST", "/chat").is_some());
        assert!(r.matches("GET", "/chat").is_none());
        assert!(r.matches("POST", "/chat/x").is_none());
        let g = Route::parse("ANY /{proxy+}").unwrap();
        assert_eq!(g.matches("GET", "/a/b").unwrap()["proxy"], "a/b");
        assert!(r.specificity() > g.specificity());
        assert!(Route::parse("chat").is_err());
    }

    #[test]
    fn text_detection() {
        assert!(text_body(Some("application/json; charset=utf-8"), b"{}").is_some());
        assert!(text_body(None, b"hi").is_some());
        assert!(text_body(Some("application/octet-stream"), b"hi").is_none());
        assert!(text_body(Some("text/plain"), &[0xff, 0xfe]).is_none());
    }
}
