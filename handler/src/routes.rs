//! The routes: which handler a request goes to, and the handlers themselves
//! (validate → upstream → buffered or streamed response).

use crate::callers::Identity;
use crate::error::ProxyError;
use crate::secrets::Secret;
use crate::sse::{self, SseSplitter};
use crate::upstream::{Operation, UpstreamRequest, UpstreamResponse};
use crate::validate::{self, ChatRequest};
use crate::{App, ProxyRequest, ProxyResponse, RequestLog, ResponseBody};
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tracing::Instrument;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Chat,
    Messages,
    CountTokens,
    Health,
}

impl Route {
    pub fn name(self) -> &'static str {
        match self {
            Route::Chat => "chat",
            Route::Messages => "messages",
            Route::CountTokens => "count_tokens",
            Route::Health => "health",
        }
    }
}

/// The route for a method and path: 404 for unknown paths, 405 for a known path with the
/// wrong method. A trailing slash is ignored.
pub fn route(method: &Method, path: &str) -> Result<Route, ProxyError> {
    let trimmed = path.trim_end_matches('/');
    let (route, allowed) = match trimmed {
        "" | "/chat" => (Route::Chat, "POST"),
        "/v1/messages" => (Route::Messages, "POST"),
        "/v1/messages/count_tokens" => (Route::CountTokens, "POST"),
        "/health" => (Route::Health, "GET, HEAD"),
        _ => {
            return Err(ProxyError::NotFound(format!(
                "no route for {}; this endpoint serves POST /chat, POST /v1/messages, \
                 POST /v1/messages/count_tokens and GET /health",
                path.chars().take(100).collect::<String>()
            )))
        }
    };
    let ok = match route {
        Route::Health => method == Method::GET || method == Method::HEAD,
        _ => method == Method::POST,
    };
    if ok {
        Ok(route)
    } else {
        Err(ProxyError::MethodNotAllowed {
            method: method.to_string(),
            path: path.chars().take(100).collect(),
            allowed,
        })
    }
}

pub fn health() -> ProxyResponse {
    ProxyResponse::json(StatusCode::OK, &json!({"status": "ok"}))
}

/// Whether the caller wants server-sent events.
fn wants_stream(headers: &HeaderMap, flag: Option<bool>) -> bool {
    flag.unwrap_or_else(|| {
        headers
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/event-stream"))
    })
}

/// Largest upstream error body read (an error page can be anything).
const MAX_ERROR_BODY: usize = 256 * 1024;

/// An upstream error answered before anything was streamed.
///
/// - A redirect (3xx) is never followed (the key would go along) and becomes a 502.
/// - 401/403 mean the proxy's own credentials were refused: a 502 that says so, so the
///   caller does not take it for a wrong caller token; the upstream message goes to the log.
/// - An Anthropic-shaped error passes on with its status and headers, anything shaped like
///   a key redacted from it (and from the log).
/// - Anything else (an HTML 502 page of a load balancer) is wrapped in the Anthropic error
///   shape with the upstream's status.
async fn pass_through(
    mut resp: UpstreamResponse,
    secret: &Secret,
    provider: &str,
    log: &RequestLog,
) -> Result<ProxyResponse, ProxyError> {
    let status = resp.status;
    if status.is_redirection() {
        log.upstream_error(
            "redirect",
            &format!("HTTP {}; redirects are not followed", status.as_u16()),
        );
        return Err(ProxyError::Upstream(format!(
            "the Messages API answered with a redirect (HTTP {}), which this proxy does not follow",
            status.as_u16()
        )));
    }
    let body = collect_bounded(&mut resp, MAX_ERROR_BODY).await?;
    let key = secret.anthropic_api_key.as_str();
    let upstream_error = serde_json::from_slice::<Value>(&body)
        .ok()
        .filter(|v| v.get("error").is_some_and(Value::is_object));
    if let Some(e) = upstream_error.as_ref().and_then(|v| v.get("error")) {
        let error_type = e.get("type").and_then(Value::as_str).unwrap_or("unknown");
        let message =
            crate::redact::redact(e.get("message").and_then(Value::as_str).unwrap_or(""), key);
        log.upstream_error(error_type, &message);
        log.error_parts(error_type, &message);
    }
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        if upstream_error.is_none() {
            log.upstream_error(
                upstream_error_type(status),
                &format!("HTTP {} without an Anthropic error body", status.as_u16()),
            );
        }
        let fix = if provider == "bedrock" {
            "the function role's Bedrock permissions and model access"
        } else {
            "the API key in its secret"
        };
        return Err(ProxyError::Upstream(format!(
            "the upstream refused this proxy's own credentials (HTTP {}); your caller token \
             was accepted: the endpoint's owner must check {fix}",
            status.as_u16()
        )));
    }
    let mut headers = resp.headers;
    let body = match upstream_error {
        Some(_) => match crate::redact::redact_bytes(&body, key) {
            Some(redacted) => Bytes::from(redacted),
            None => body,
        },
        None => {
            let content_type = headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("no content type")
                .chars()
                .take(60)
                .collect::<String>();
            let error_type = upstream_error_type(status);
            let message = format!(
                "the Messages API answered HTTP {} with a body that is not an Anthropic error ({content_type}, {} bytes)",
                status.as_u16(),
                body.len()
            );
            log.error_parts(error_type, &message);
            Bytes::from(crate::error::error_json(error_type, &message).to_string())
        }
    };
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(ProxyResponse {
        status,
        headers,
        body: ResponseBody::Full(body),
    })
}

/// The Anthropic error type for an upstream status.
fn upstream_error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 405 | 415 | 422 => "invalid_request_error",
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

/// Reads at most `limit` bytes of the body (the rest is dropped unread).
async fn collect_bounded(resp: &mut UpstreamResponse, limit: usize) -> Result<Bytes, ProxyError> {
    let mut out = bytes::BytesMut::new();
    while let Some(chunk) = resp.body.next().await {
        let chunk = chunk?;
        let room = limit.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= limit {
            break;
        }
    }
    Ok(out.freeze())
}

fn sse_headers(mut headers: HeaderMap) -> HeaderMap {
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    headers
}

/// A body fed from a spawned task through a channel.
fn channel_body() -> (mpsc::Sender<Bytes>, ResponseBody) {
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
    (tx, ResponseBody::Stream(stream.boxed()))
}

/// `POST /v1/messages` and `POST /v1/messages/count_tokens`.
pub async fn messages(
    app: &App,
    req: &ProxyRequest,
    secret: &Secret,
    caller: &Identity,
    op: Operation,
    log: &RequestLog,
) -> Result<ProxyResponse, ProxyError> {
    let api_headers = validate::api_headers(&req.headers, &app.config)?;
    let info = validate::messages_request(&req.body, op, &app.config)?;
    log.model(&info.model);
    caller.check(&info.model, info.max_tokens)?;
    let upstream_req = UpstreamRequest {
        operation: op,
        // Exactly the bytes the validator parsed (strictly: no duplicate keys).
        body: req.body.clone(),
        anthropic_version: api_headers.version,
        anthropic_beta: api_headers.beta,
        stream: info.stream,
    };
    let mut resp = app
        .upstream(upstream_req, secret, req.deadline, log)
        .await?;
    log.upstream(resp.status, resp.request_id(), resp.attempts);
    if !resp.status.is_success() {
        let provider = log.served_by().unwrap_or(app.provider().name());
        return pass_through(resp, secret, provider, log).await;
    }
    if resp.is_event_stream() {
        return Ok(stream_through(
            resp,
            secret.anthropic_api_key.clone(),
            log.clone(),
        ));
    }
    log.first_byte();
    let body = resp.collect().await?;
    if let Some(usage) = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("usage").cloned())
    {
        log.usage(&usage);
    }
    Ok(ProxyResponse {
        status: resp.status,
        headers: resp.headers,
        body: ResponseBody::Full(body),
    })
}

/// Passes the upstream's SSE events on as they arrive, cut at event boundaries. A broken or
/// timed-out upstream, one that ends without `message_stop`, or one event larger than
/// [`sse::MAX_EVENT_BYTES`] gets an `event: error`. `error` events are passed on with
/// anything shaped like a key redacted.
fn stream_through(resp: UpstreamResponse, key: String, log: RequestLog) -> ProxyResponse {
    log.streamed();
    let (tx, body) = channel_body();
    let UpstreamResponse {
        status,
        headers,
        body: mut upstream,
        ..
    } = resp;
    let task = async move {
        let mut splitter = SseSplitter::new();
        let mut finished = false;
        while let Some(chunk) = upstream.next().await {
            match chunk {
                Ok(bytes) => {
                    log.first_byte();
                    splitter.push(&bytes);
                    let (mut out, events) = splitter.take_complete();
                    for ev in &events {
                        finished |= observe_event(ev, &log);
                        if ev.event.as_deref() == Some("error") {
                            if let Some(r) = crate::redact::redact_bytes(&out, &key) {
                                out = Bytes::from(r);
                            }
                        }
                    }
                    if !out.is_empty() && tx.send(out).await.is_err() {
                        log.error_parts("client_disconnected", "the caller closed the stream");
                        return;
                    }
                    if splitter.overflowed() {
                        let msg = too_large_event();
                        log.error_parts("api_error", &msg);
                        let _ = tx.send(sse::error_event("api_error", &msg)).await;
                        return;
                    }
                }
                Err(e) => {
                    log.error(&e);
                    let _ = tx
                        .send(sse::error_event(e.error_type(), &e.to_string()))
                        .await;
                    return;
                }
            }
        }
        if !finished {
            let msg = if splitter.has_partial() {
                "the Messages API stream ended in the middle of an event"
            } else {
                "the Messages API stream ended before message_stop"
            };
            log.error_parts("api_error", msg);
            let _ = tx.send(sse::error_event("api_error", msg)).await;
        }
    };
    tokio::spawn(task.instrument(tracing::Span::current()));
    ProxyResponse {
        status,
        headers: sse_headers(headers),
        body,
    }
}

fn too_large_event() -> String {
    format!(
        "the Messages API sent an event larger than {} bytes; the stream was cut",
        sse::MAX_EVENT_BYTES
    )
}

/// Records usage and errors of one upstream event; true when the stream is complete.
fn observe_event(ev: &sse::SseEvent, log: &RequestLog) -> bool {
    let name = ev.event.as_deref().unwrap_or("message");
    // Only these carry what is logged; the many content_block_* events pass unparsed.
    if !matches!(
        name,
        "message_start" | "message_delta" | "message_stop" | "error"
    ) {
        return false;
    }
    if name == "message_stop" {
        return true;
    }
    let Ok(data) = serde_json::from_str::<Value>(&ev.data) else {
        return name == "error";
    };
    match name {
        "message_start" => {
            if let Some(u) = data.pointer("/message/usage") {
                log.usage(u);
            }
            false
        }
        "message_delta" => {
            if let Some(u) = data.get("usage") {
                log.usage(u);
            }
            false
        }
        "message_stop" => true,
        "error" => {
            log.error_parts(
                data.pointer("/error/type")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown"),
                data.pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or(""),
            );
            true
        }
        _ => false,
    }
}

/// `POST /chat` (and `POST /`).
pub async fn chat(
    app: &App,
    req: &ProxyRequest,
    secret: &Secret,
    caller: &Identity,
    log: &RequestLog,
) -> Result<ProxyResponse, ProxyError> {
    let mut chat = ChatRequest::parse(&req.body, &app.config)?;
    log.model(&chat.model(&app.config));
    caller.check(&chat.model(&app.config), chat.max_tokens)?;
    // No max_tokens given: the default, within the caller's cap.
    if let (None, Some(cap)) = (chat.max_tokens, caller.limits.max_tokens) {
        chat.max_tokens = Some(chat.max_tokens(&app.config).min(cap));
    }
    let stream = wants_stream(&req.headers, chat.stream);
    let body = chat.to_messages_body(&app.config, stream);
    let upstream_req = UpstreamRequest {
        operation: Operation::Messages,
        body: Bytes::from(body.to_string()),
        anthropic_version: None,
        anthropic_beta: None,
        stream,
    };
    let mut resp = app
        .upstream(upstream_req, secret, req.deadline, log)
        .await?;
    let request_id = resp.request_id();
    log.upstream(resp.status, request_id.clone(), resp.attempts);
    if !resp.status.is_success() {
        let provider = log.served_by().unwrap_or(app.provider().name());
        return pass_through(resp, secret, provider, log).await;
    }
    if stream {
        if !resp.is_event_stream() {
            return Err(ProxyError::Upstream(
                "the Messages API answered a streaming request without an event stream".into(),
            ));
        }
        return Ok(chat_stream(
            resp,
            request_id,
            secret.anthropic_api_key.clone(),
            log.clone(),
        ));
    }
    log.first_byte();
    let body = resp.collect().await?;
    let message: Value = serde_json::from_slice(&body).map_err(|e| {
        ProxyError::Upstream(format!("the Messages API answered with invalid JSON: {e}"))
    })?;
    let reply: String = message
        .get("content")
        .and_then(Value::as_array)
        .map(|blocks| {
            blocks
                .iter()
                .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    let usage = message.get("usage").cloned().unwrap_or(Value::Null);
    log.usage(&usage);
    let mut out = ProxyResponse::json(
        StatusCode::OK,
        &json!({
            "reply": reply,
            "model": message.get("model").cloned().unwrap_or(Value::Null),
            "stop_reason": message.get("stop_reason").cloned().unwrap_or(Value::Null),
            "usage": usage,
            "request_id": request_id,
        }),
    );
    copy_request_id(&resp.headers, &mut out.headers);
    Ok(out)
}

fn copy_request_id(from: &HeaderMap, to: &mut HeaderMap) {
    if let Some(id) = from.get("request-id") {
        to.insert("request-id", id.clone());
    }
}

/// Turns the upstream's Messages events into `/chat` events: `text`, then `done`.
fn chat_stream(
    resp: UpstreamResponse,
    request_id: Option<String>,
    key: String,
    log: RequestLog,
) -> ProxyResponse {
    log.streamed();
    let (tx, body) = channel_body();
    let mut headers = sse_headers(HeaderMap::new());
    copy_request_id(&resp.headers, &mut headers);
    let mut upstream = resp.body;
    let task = async move {
        let mut splitter = SseSplitter::new();
        let mut model = Value::Null;
        let mut stop_reason = Value::Null;
        let mut usage = serde_json::Map::new();
        while let Some(chunk) = upstream.next().await {
            let bytes = match chunk {
                Ok(b) => b,
                Err(e) => {
                    log.error(&e);
                    let _ = tx
                        .send(sse::error_event(e.error_type(), &e.to_string()))
                        .await;
                    return;
                }
            };
            log.first_byte();
            splitter.push(&bytes);
            let (_, events) = splitter.take_complete();
            let overflowed = splitter.overflowed();
            for ev in events {
                let Ok(data) = serde_json::from_str::<Value>(&ev.data) else {
                    continue;
                };
                let out = match ev.event.as_deref().unwrap_or("message") {
                    "message_start" => {
                        model = data
                            .pointer("/message/model")
                            .cloned()
                            .unwrap_or(Value::Null);
                        if let Some(Value::Object(u)) = data.pointer("/message/usage") {
                            usage.extend(u.clone());
                            log.usage(&Value::Object(u.clone()));
                        }
                        None
                    }
                    "content_block_delta" => data
                        .pointer("/delta/text")
                        .and_then(Value::as_str)
                        .filter(|_| data.pointer("/delta/type") == Some(&json!("text_delta")))
                        .map(|t| sse::format_event("text", &json!({"text": t}).to_string())),
                    "message_delta" => {
                        if let Some(r) = data.pointer("/delta/stop_reason") {
                            stop_reason = r.clone();
                        }
                        if let Some(Value::Object(u)) = data.get("usage") {
                            usage.extend(u.clone());
                            log.usage(&Value::Object(u.clone()));
                        }
                        None
                    }
                    "message_stop" => {
                        let usage = Value::Object(std::mem::take(&mut usage));
                        log.usage(&usage);
                        let done = json!({
                            "model": model,
                            "stop_reason": stop_reason,
                            "usage": usage,
                            "request_id": request_id,
                        });
                        let _ = tx.send(sse::format_event("done", &done.to_string())).await;
                        return;
                    }
                    "error" => {
                        observe_event(&ev, &log);
                        let data = crate::redact::redact(&ev.data, &key);
                        let _ = tx.send(sse::format_event("error", &data)).await;
                        return;
                    }
                    _ => None,
                };
                if let Some(out) = out {
                    if tx.send(out).await.is_err() {
                        log.error_parts("client_disconnected", "the caller closed the stream");
                        return;
                    }
                }
            }
            if overflowed {
                let msg = too_large_event();
                log.error_parts("api_error", &msg);
                let _ = tx.send(sse::error_event("api_error", &msg)).await;
                return;
            }
        }
        let msg = "the Messages API stream ended before message_stop";
        log.error_parts("api_error", msg);
        let _ = tx.send(sse::error_event("api_error", msg)).await;
    };
    tokio::spawn(task.instrument(tracing::Span::current()));
    ProxyResponse {
        status: StatusCode::OK,
        headers,
        body,
    }
}

#[cfg(test)]
mod tests;
