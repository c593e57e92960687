//! A fake Amazon Bedrock runtime on a loopback port, for the tests of the Bedrock provider.
//!
//! It serves `POST /model/{modelId}/invoke`, `/model/{modelId}/invoke-with-response-stream`
//! and `/model/{modelId}/count-tokens` like the real service: bodies in Bedrock's Messages
//! form (`anthropic_version: "bedrock-2023-05-31"`, no `model`, no `stream`, else a
//! `ValidationException`), SigV4-signed requests (the `Authorization` header must be there;
//! the signature is not checked), streams in AWS event-stream framing encoded with
//! `aws-smithy-eventstream` (each message `:event-type: chunk`, `:content-type:
//! application/json`, `:message-type: event`, payload `{"bytes": "<base64 of one Messages
//! event>"}`), errors as HTTP statuses with `x-amzn-errortype` or as `:message-type:
//! exception` messages inside a stream.
//!
//! The content is the fake Messages API's ([`crate::anthropic::Answer`]), so the two fakes
//! answer the same request with the same events. The `model` in answers is derived from the
//! model id as Bedrock does (`global.anthropic.claude-sonnet-4-5-20250929-v1:0` →
//! `claude-sonnet-4-5-20250929`). Tests program faults ([`BedrockFault`]) and read back
//! every request ([`FakeBedrock::requests`]); [`FakeBedrock::storm`] applies one fault to
//! every request (an outage: `ServiceUnavailableException` for all, or a hang).

use crate::answer::{input_tokens, Answer};
use crate::http::{channel_body, full, Body, BoxError, Server};
use anyhow::Result;
use aws_smithy_types::event_stream::{Header, HeaderValue as EsValue, Message};
use base64::Engine;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// One programmed misbehaviour, applied to the next request (in push order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BedrockFault {
    /// Answer with this HTTP status, `x-amzn-errortype: <code>` and `{"message": ...}`.
    Error { status: u16, code: String },
    /// Stream `after_events` chunks, then an exception message `:exception-type: <code>`
    /// (a camel-case stream member, e.g. `modelStreamErrorException`).
    StreamException { after_events: usize, code: String },
    /// Wait this long before answering (normally): a hang, when longer than the caller waits.
    Delay(std::time::Duration),
}

impl BedrockFault {
    pub fn error(status: u16, code: &str) -> Self {
        BedrockFault::Error {
            status,
            code: code.into(),
        }
    }
    /// 429 `ThrottlingException`.
    pub fn throttling() -> Self {
        Self::error(429, "ThrottlingException")
    }
    /// 400 `ValidationException`.
    pub fn validation() -> Self {
        Self::error(400, "ValidationException")
    }
    /// 403 `AccessDeniedException`.
    pub fn access_denied() -> Self {
        Self::error(403, "AccessDeniedException")
    }
    /// 429 `ModelNotReadyException`.
    pub fn model_not_ready() -> Self {
        Self::error(429, "ModelNotReadyException")
    }
    /// 503 `ServiceUnavailableException` (Bedrock overloaded).
    pub fn service_unavailable() -> Self {
        Self::error(503, "ServiceUnavailableException")
    }
    /// An exception inside the stream after `after_events` chunks.
    pub fn stream_exception(after_events: usize, code: &str) -> Self {
        BedrockFault::StreamException {
            after_events,
            code: code.into(),
        }
    }
}

/// A request the fake received.
#[derive(Debug, Clone)]
pub struct BedrockRequest {
    /// `invoke`, `invoke-with-response-stream` or `count-tokens`.
    pub operation: String,
    /// The model id from the path, percent-decoded.
    pub model_id: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl BedrockRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// The body as JSON (for count-tokens: the decoded InvokeModel body inside it).
    pub fn json(&self) -> Option<Value> {
        let v: Value = serde_json::from_slice(&self.body).ok()?;
        if self.operation == "count-tokens" {
            let b64 = v.pointer("/input/invokeModel/body")?.as_str()?;
            let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
            return serde_json::from_slice(&raw).ok();
        }
        Some(v)
    }
}

struct State {
    faults: Mutex<VecDeque<BedrockFault>>,
    /// The fault for every request that has none queued, until calmed.
    storm: Mutex<Option<BedrockFault>>,
    requests: Mutex<Vec<BedrockRequest>>,
    counter: AtomicUsize,
}

/// The running fake. Stopped when dropped.
pub struct FakeBedrock {
    server: Server,
    state: Arc<State>,
}

impl FakeBedrock {
    /// Starts on 127.0.0.1 on a free port.
    pub async fn start() -> Result<Self> {
        let state = Arc::new(State {
            faults: Mutex::new(VecDeque::new()),
            storm: Mutex::new(None),
            requests: Mutex::new(Vec::new()),
            counter: AtomicUsize::new(0),
        });
        let st = state.clone();
        let server = Server::bind(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            "the fake Bedrock runtime",
            move |req, _peer| handle(st.clone(), req),
        )
        .await?;
        Ok(FakeBedrock { server, state })
    }

    /// `http://127.0.0.1:<port>` (the handler's `BEDROCK_ENDPOINT_URL`).
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// Applies `fault` to the next request without a fault of its own.
    pub fn push_fault(&self, fault: BedrockFault) {
        self.state.faults.lock().unwrap().push_back(fault);
    }

    /// The same fault for the next `n` requests.
    pub fn push_faults(&self, fault: BedrockFault, n: usize) {
        let mut q = self.state.faults.lock().unwrap();
        for _ in 0..n {
            q.push_back(fault.clone());
        }
    }

    /// From now on `fault` applies to every request without a queued fault of its own,
    /// until [`FakeBedrock::calm`].
    pub fn storm(&self, fault: BedrockFault) {
        *self.state.storm.lock().unwrap() = Some(fault);
    }

    /// Ends the storm.
    pub fn calm(&self) {
        *self.state.storm.lock().unwrap() = None;
    }

    /// Faults not used yet.
    pub fn pending_faults(&self) -> usize {
        self.state.faults.lock().unwrap().len()
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<BedrockRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn request_count(&self) -> usize {
        self.state.requests.lock().unwrap().len()
    }

    pub fn clear_requests(&self) {
        self.state.requests.lock().unwrap().clear();
    }
}

/// The `model` Bedrock reports for a model id: the name between `anthropic.` and `-v<n>:<m>`.
pub fn reported_model(model_id: &str) -> String {
    let Some((_, rest)) = model_id.split_once("anthropic.") else {
        return model_id.to_string();
    };
    match rest.rsplit_once("-v") {
        Some((name, version))
            if version
                .split(':')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())) =>
        {
            name.to_string()
        }
        _ => rest.to_string(),
    }
}

/// `/model/{modelId}/{operation}` → (the model id percent-decoded, the operation).
fn model_operation(path: &str) -> Option<(String, String)> {
    let (model, operation) = path.strip_prefix("/model/")?.rsplit_once('/')?;
    let model = percent_encoding::percent_decode_str(model).decode_utf8_lossy();
    Some((model.into_owned(), operation.to_string()))
}

fn request_id(n: usize) -> String {
    format!("req_fake_{n:06}")
}

fn error_response(status: u16, code: &str, message: &str, n: usize) -> Response<Body> {
    let mut r = Response::new(full(json!({ "message": message }).to_string()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = r.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert("x-amzn-errortype", HeaderValue::from_str(code).unwrap());
    h.insert(
        "x-amzn-requestid",
        HeaderValue::from_str(&request_id(n)).unwrap(),
    );
    r
}

fn message_for(code: &str) -> &'static str {
    match code {
        "ThrottlingException" => "Too many requests, please wait before trying again.",
        "AccessDeniedException" => {
            "You don't have access to the model with the specified model ID."
        }
        "ValidationException" => "The provided request is not valid",
        "ModelNotReadyException" => "Model is not ready for inference.",
        "ServiceUnavailableException" => "The service is temporarily unable to handle the request.",
        _ => "The fake Bedrock runtime was told to fail.",
    }
}

/// One event-stream message, encoded with `aws-smithy-eventstream`.
fn frame(headers: Vec<(&'static str, String)>, payload: Vec<u8>) -> Bytes {
    let mut msg = Message::new(Bytes::from(payload));
    for (name, value) in headers {
        msg = msg.add_header(Header::new(name, EsValue::String(value.into())));
    }
    let mut buf = BytesMut::new();
    aws_smithy_eventstream::frame::write_message_to(&msg, &mut buf)
        .expect("an event-stream message within the size limits");
    buf.freeze()
}

/// A `chunk` event carrying one Messages event.
pub fn chunk_frame(event: &Value) -> Bytes {
    let b64 = base64::engine::general_purpose::STANDARD.encode(event.to_string());
    frame(
        vec![
            (":event-type", "chunk".into()),
            (":content-type", "application/json".into()),
            (":message-type", "event".into()),
        ],
        json!({ "bytes": b64 }).to_string().into_bytes(),
    )
}

/// An exception message inside a stream.
pub fn exception_frame(code: &str, message: &str) -> Bytes {
    frame(
        vec![
            (":exception-type", code.to_string()),
            (":content-type", "application/json".into()),
            (":message-type", "exception".into()),
        ],
        json!({ "message": message }).to_string().into_bytes(),
    )
}

async fn handle(state: Arc<State>, req: http::Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let n = state.counter.fetch_add(1, Ordering::SeqCst) + 1;
    let Some((model_id, operation)) = model_operation(parts.uri.path()) else {
        return error_response(404, "UnknownOperationException", "no such operation", n);
    };
    state.requests.lock().unwrap().push(BedrockRequest {
        operation: operation.clone(),
        model_id: model_id.clone(),
        headers: parts.headers.clone(),
        body: body.clone(),
    });
    if parts.method != Method::POST
        || !matches!(
            operation.as_str(),
            "invoke" | "invoke-with-response-stream" | "count-tokens"
        )
    {
        return error_response(404, "UnknownOperationException", "no such operation", n);
    }
    let signed = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256 "));
    if !signed {
        return error_response(
            403,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
            n,
        );
    }

    let queued = state.faults.lock().unwrap().pop_front();
    let fault = queued.or_else(|| state.storm.lock().unwrap().clone());
    let mut stream_exception = None;
    match fault {
        Some(BedrockFault::Error { status, code }) => {
            return error_response(status, &code, message_for(&code), n)
        }
        Some(BedrockFault::StreamException { after_events, code }) => {
            stream_exception = Some((after_events, code))
        }
        Some(BedrockFault::Delay(d)) => tokio::time::sleep(d).await,
        None => {}
    }

    let req_json = match invoke_model_body(&operation, &body) {
        Ok(v) => v,
        Err(why) => return error_response(400, "ValidationException", &why, n),
    };

    if operation == "count-tokens" {
        let mut r = Response::new(full(
            json!({ "inputTokens": input_tokens(&req_json) }).to_string(),
        ));
        r.headers_mut()
            .insert("content-type", HeaderValue::from_static("application/json"));
        r.headers_mut().insert(
            "x-amzn-requestid",
            HeaderValue::from_str(&request_id(n)).unwrap(),
        );
        return r;
    }

    let answer = Answer::new(&req_json, &reported_model(&model_id), n);
    if operation == "invoke" {
        let mut r = Response::new(full(answer.message.to_string()));
        let h = r.headers_mut();
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h.insert(
            "x-amzn-requestid",
            HeaderValue::from_str(&request_id(n)).unwrap(),
        );
        h.insert(
            "x-amzn-bedrock-input-token-count",
            HeaderValue::from(input_tokens(&req_json)),
        );
        return r;
    }

    event_stream(answer, stream_exception, n)
}

/// The InvokeModel body of a request (inside the count-tokens envelope for count-tokens),
/// checked as Bedrock checks it; else the `ValidationException` message.
fn invoke_model_body(operation: &str, body: &[u8]) -> Result<Value, String> {
    let req_json: Option<Value> = if operation == "count-tokens" {
        serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| {
                v.pointer("/input/invokeModel/body")?
                    .as_str()
                    .map(String::from)
            })
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .and_then(|raw| serde_json::from_slice(&raw).ok())
    } else {
        serde_json::from_slice(body).ok()
    };
    let Some(req_json) = req_json.filter(Value::is_object) else {
        return Err("Malformed input request".into());
    };
    if req_json.get("anthropic_version").and_then(Value::as_str) != Some("bedrock-2023-05-31") {
        return Err("Malformed input request: anthropic_version must be bedrock-2023-05-31".into());
    }
    for key in ["model", "stream"] {
        if req_json.get(key).is_some() {
            return Err(format!(
                "Malformed input request: extraneous key [{key}] is not permitted"
            ));
        }
    }
    if req_json
        .get("max_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0)
        == 0
    {
        return Err("Malformed input request: required key [max_tokens] not found".into());
    }
    Ok(req_json)
}

/// The answer's events as an `invoke-with-response-stream` body, broken by an exception
/// after `after` events when `stream_exception` is `Some((after, code))`.
fn event_stream(
    answer: Answer,
    stream_exception: Option<(usize, String)>,
    n: usize,
) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
    tokio::spawn(async move {
        for (i, (_, data)) in answer.events.into_iter().enumerate() {
            if let Some((after, code)) = &stream_exception {
                if *after == i {
                    let _ = tx
                        .send(Ok(Frame::data(exception_frame(
                            code,
                            "The fake Bedrock runtime broke the stream.",
                        ))))
                        .await;
                    return;
                }
            }
            if tx.send(Ok(Frame::data(chunk_frame(&data)))).await.is_err() {
                return;
            }
        }
    });
    let mut r = Response::new(channel_body(rx));
    let h = r.headers_mut();
    h.insert(
        "content-type",
        HeaderValue::from_static("application/vnd.amazon.eventstream"),
    );
    h.insert(
        "x-amzn-bedrock-content-type",
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        "x-amzn-requestid",
        HeaderValue::from_str(&request_id(n)).unwrap(),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reported_model_names() {
        assert_eq!(
            reported_model("global.anthropic.claude-sonnet-4-5-20250929-v1:0"),
            "claude-sonnet-4-5-20250929"
        );
        assert_eq!(
            reported_model("anthropic.claude-3-5-sonnet-20241022-v2:0"),
            "claude-3-5-sonnet-20241022"
        );
        assert_eq!(reported_model("other-model"), "other-model");
    }

    #[test]
    fn path_ids_are_decoded() {
        assert_eq!(
            model_operation("/model/global.anthropic.claude-haiku-4-5-20251001-v1%3A0/invoke"),
            Some((
                "global.anthropic.claude-haiku-4-5-20251001-v1:0".to_string(),
                "invoke".to_string()
            ))
        );
        let (model, op) = model_operation("/model/a%2Fb%/count-tokens").unwrap();
        assert_eq!((model.as_str(), op.as_str()), ("a/b%", "count-tokens"));
        assert_eq!(model_operation("/models"), None);
    }

    #[test]
    fn bodies_are_checked_as_bedrock_checks_them() {
        let ok =
            json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5, "messages": []});
        assert_eq!(
            invoke_model_body("invoke", ok.to_string().as_bytes()).unwrap(),
            ok
        );
        let envelope = json!({"input": {"invokeModel": {
            "body": base64::engine::general_purpose::STANDARD.encode(ok.to_string())}}});
        assert_eq!(
            invoke_model_body("count-tokens", envelope.to_string().as_bytes()).unwrap(),
            ok
        );
        let refusal = |v: Value| invoke_model_body("invoke", v.to_string().as_bytes()).unwrap_err();
        assert_eq!(refusal(json!([1])), "Malformed input request");
        assert!(refusal(json!({"max_tokens": 5})).contains("anthropic_version"));
        let mut with_model = ok.clone();
        with_model["model"] = "claude".into();
        assert!(refusal(with_model).contains("extraneous key [model]"));
        let mut no_max = ok;
        no_max["max_tokens"] = 0.into();
        assert!(refusal(no_max).contains("[max_tokens]"));
    }

    #[test]
    fn frames_decode_with_the_eventstream_crate() {
        let ev = json!({"type": "ping"});
        let bytes = chunk_frame(&ev);
        let msg = aws_smithy_eventstream::frame::read_message_from(bytes).unwrap();
        let h: Vec<(String, String)> = msg
            .headers()
            .iter()
            .map(|h| {
                (
                    h.name().as_str().to_string(),
                    h.value().as_string().unwrap().as_str().to_string(),
                )
            })
            .collect();
        assert!(h.contains(&(":event-type".into(), "chunk".into())));
        assert!(h.contains(&(":message-type".into(), "event".into())));
        let payload: Value = serde_json::from_slice(msg.payload()).unwrap();
        let inner = base64::engine::general_purpose::STANDARD
            .decode(payload["bytes"].as_str().unwrap())
            .unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&inner).unwrap(), ev);
    }
}
