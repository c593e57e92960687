//! The routes: which handler a request goes to, and the handlers themselves
//! (validate → upstream → buffered or streamed response).

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

/// An upstream error answered before anything was streamed: its status, body and headers as is.
async fn pass_through(
    mut resp: UpstreamResponse,
    log: &RequestLog,
) -> Result<ProxyResponse, ProxyError> {
    let body = resp.collect().await?;
    if let Some(e) = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("error").cloned())
    {
        log.error_parts(
            e.get("type").and_then(Value::as_str).unwrap_or("unknown"),
            e.get("message").and_then(Value::as_str).unwrap_or(""),
        );
    }
    Ok(ProxyResponse {
        status: resp.status,
        headers: resp.headers,
        body: ResponseBody::Full(body),
    })
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
    op: Operation,
    log: &RequestLog,
) -> Result<ProxyResponse, ProxyError> {
    let info = validate::messages_request(&req.body, op, &app.config)?;
    let upstream_req = UpstreamRequest {
        operation: op,
        body: req.body.clone(),
        anthropic_version: req.headers.get("anthropic-version").cloned(),
        anthropic_beta: req.headers.get("anthropic-beta").cloned(),
        stream: info.stream,
    };
    let mut resp = app
        .provider()
        .send(upstream_req, secret, req.deadline)
        .await?;
    log.upstream(resp.status, resp.request_id(), resp.attempts);
    if !resp.status.is_success() {
        return pass_through(resp, log).await;
    }
    if resp.is_event_stream() {
        return Ok(stream_through(resp, log.clone()));
    }
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
/// timed-out upstream, or one that ends without `message_stop`, gets an `event: error`.
fn stream_through(resp: UpstreamResponse, log: RequestLog) -> ProxyResponse {
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
                    splitter.push(&bytes);
                    let (out, events) = splitter.take_complete();
                    for ev in &events {
                        finished |= observe_event(ev, &log);
                    }
                    if !out.is_empty() && tx.send(out).await.is_err() {
                        log.error_parts("client_disconnected", "the caller closed the stream");
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

/// Records usage and errors of one upstream event; true when the stream is complete.
fn observe_event(ev: &sse::SseEvent, log: &RequestLog) -> bool {
    let name = ev.event.as_deref().unwrap_or("message");
    // Only these carry what is logged; the many content_block_* events pass unparsed.
    if !matches!(name, "message_start" | "message_delta" | "message_stop" | "error") {
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
    log: &RequestLog,
) -> Result<ProxyResponse, ProxyError> {
    let chat = ChatRequest::parse(&req.body, &app.config)?;
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
        .provider()
        .send(upstream_req, secret, req.deadline)
        .await?;
    let request_id = resp.request_id();
    log.upstream(resp.status, request_id.clone(), resp.attempts);
    if !resp.status.is_success() {
        return pass_through(resp, log).await;
    }
    if stream {
        if !resp.is_event_stream() {
            return Err(ProxyError::Upstream(
                "the Messages API answered a streaming request without an event stream".into(),
            ));
        }
        return Ok(chat_stream(resp, request_id, log.clone()));
    }
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
            splitter.push(&bytes);
            let (_, events) = splitter.take_complete();
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
                        let _ = tx.send(sse::format_event("error", &ev.data)).await;
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
mod tests {
    use super::*;

    #[test]
    fn routing() {
        assert_eq!(route(&Method::POST, "/").unwrap(), Route::Chat);
        assert_eq!(route(&Method::POST, "/chat/").unwrap(), Route::Chat);
        assert_eq!(
            route(&Method::POST, "/v1/messages").unwrap(),
            Route::Messages
        );
        assert_eq!(
            route(&Method::POST, "/v1/messages/count_tokens").unwrap(),
            Route::CountTokens
        );
        assert_eq!(route(&Method::GET, "/health").unwrap(), Route::Health);
        assert_eq!(route(&Method::GET, "/chat").unwrap_err().status(), 405);
        assert_eq!(
            route(&Method::DELETE, "/v1/messages").unwrap_err().status(),
            405
        );
        assert_eq!(
            route(&Method::POST, "/v2/messages").unwrap_err().status(),
            404
        );
    }
}
