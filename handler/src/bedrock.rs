//! Claude on Amazon Bedrock: a [`Provider`] that serves the same routes through Bedrock's
//! `InvokeModel` / `InvokeModelWithResponseStream` / `CountTokens`.
//!
//! The request body goes in Bedrock's Messages form: `model` and `stream` removed (the model
//! id travels in the request path), `anthropic_version: "bedrock-2023-05-31"` added, the
//! caller's `anthropic-beta` header turned into the `anthropic_beta` array. Anthropic model
//! names map to Bedrock ids through a [`ModelMap`]; Bedrock ids and ARNs pass through.
//!
//! Answers come back in the Anthropic format, so the routes cannot tell the providers apart:
//! a non-streamed answer is the Messages JSON as Bedrock returns it; each event-stream
//! `chunk` carries one Messages event, re-emitted as the SSE block `event: <type>` /
//! `data: <json>` the Messages API would have sent. Bedrock's exceptions become the matching
//! Anthropic status and error shape; after the stream has started they arrive in-band as
//! `event: error`. The SDK's own retries are off: attempts are made here with the same
//! [`RetryPolicy`] as the Anthropic provider (throttling counts as a 429), never past the
//! request deadline and never once a stream has started.

use crate::config::BedrockConfig;
use crate::error::{error_json, ProxyError};
use crate::model_map::ModelMap;
use crate::secrets::Secret;
use crate::sse;
use crate::upstream::{
    Budget, Operation, Provider, RetryPolicy, UpstreamBody, UpstreamRequest, UpstreamResponse,
};
use aws_sdk_bedrockruntime::operation::RequestId;
use aws_sdk_bedrockruntime::primitives::event_stream::EventReceiver;
use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::error::ResponseStreamError;
use aws_sdk_bedrockruntime::types::{CountTokensInput, InvokeModelTokensRequest, ResponseStream};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::{json, Map, Value};
use std::future::Future;
use tokio::time::Instant;

/// The `anthropic_version` Bedrock's Messages form requires.
pub const BEDROCK_ANTHROPIC_VERSION: &str = "bedrock-2023-05-31";

/// The id for `CountTokens`, which takes a foundation model: a profile's prefix is dropped.
fn foundation_model_id(id: &str) -> &str {
    match id.split_once('.') {
        Some((_, rest)) if !id.starts_with("arn:") && rest.starts_with("anthropic.") => rest,
        _ => id,
    }
}

/// A request body in Bedrock's Messages form, and the Bedrock model id it is for.
pub fn bedrock_body(
    body: &[u8],
    beta: Option<&HeaderValue>,
    models: &ModelMap,
    operation: Operation,
) -> Result<(String, Vec<u8>), ProxyError> {
    let mut obj: Map<String, Value> = serde_json::from_slice(body)
        .map_err(|e| ProxyError::InvalidRequest(format!("the body is not a JSON object: {e}")))?;
    let model = match obj.remove("model") {
        Some(Value::String(m)) if !m.trim().is_empty() => m,
        _ => {
            return Err(ProxyError::InvalidRequest(
                "model: a model name is required".into(),
            ))
        }
    };
    let id = models.resolve(&model)?;
    obj.remove("stream");
    obj.insert(
        "anthropic_version".into(),
        Value::String(BEDROCK_ANTHROPIC_VERSION.into()),
    );
    if let Some(beta) = beta.and_then(|b| b.to_str().ok()) {
        let mut list: Vec<Value> = match obj.remove("anthropic_beta") {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        };
        for b in beta.split(',').map(str::trim).filter(|b| !b.is_empty()) {
            if !list.iter().any(|v| v == b) {
                list.push(Value::String(b.to_string()));
            }
        }
        obj.insert("anthropic_beta".into(), Value::Array(list));
    }
    if operation == Operation::CountTokens && !obj.contains_key("max_tokens") {
        // The InvokeModel body CountTokens takes requires max_tokens; it does not change the count.
        obj.insert("max_tokens".into(), json!(1));
    }
    let bytes = serde_json::to_vec(&Value::Object(obj))
        .map_err(|e| ProxyError::Internal(format!("serializing the Bedrock body: {e}")))?;
    Ok((id, bytes))
}

/// Claude on Amazon Bedrock.
pub struct BedrockProvider {
    client: aws_sdk_bedrockruntime::Client,
    models: ModelMap,
    retry: RetryPolicy,
}

impl BedrockProvider {
    /// A client from the handler's one `SdkConfig` (its HTTP client, credentials and region),
    /// with `BEDROCK_REGION` / `BEDROCK_ENDPOINT_URL` applied, the SDK's retries and
    /// stalled-stream protection off (attempts and the deadline are handled here).
    pub fn new(
        sdk: &aws_types::sdk_config::SdkConfig,
        settings: &BedrockConfig,
        retry: RetryPolicy,
    ) -> Self {
        let mut b = aws_sdk_bedrockruntime::config::Builder::from(sdk)
            .retry_config(aws_sdk_bedrockruntime::config::retry::RetryConfig::disabled())
            .stalled_stream_protection(
                aws_sdk_bedrockruntime::config::StalledStreamProtectionConfig::disabled(),
            );
        if let Some(region) = &settings.region {
            b = b.region(aws_sdk_bedrockruntime::config::Region::new(region.clone()));
        }
        if let Some(url) = &settings.endpoint_url {
            b = b.endpoint_url(url.clone());
        }
        BedrockProvider {
            client: aws_sdk_bedrockruntime::Client::from_conf(b.build()),
            models: settings.model_map.clone().unwrap_or_default(),
            retry,
        }
    }

    pub fn models(&self) -> &ModelMap {
        &self.models
    }

    /// Runs `attempt` until it succeeds, fails for good, or the next try would pass
    /// `budget.answer_by` (or its retries are spent). Returns the result and the number of
    /// attempts.
    async fn with_retries<T, Fut>(
        &self,
        budget: Budget,
        mut attempt: impl FnMut() -> Fut,
    ) -> Result<(Result<T, BedrockFailure>, u32), ProxyError>
    where
        Fut: Future<Output = Result<T, BedrockFailure>>,
    {
        let answer_by = budget.answer_by;
        let max_retries = budget.retries(&self.retry);
        let mut n: u32 = 0;
        loop {
            n += 1;
            let retries_done = n - 1;
            let Ok(result) = tokio::time::timeout_at(answer_by, attempt()).await else {
                if answer_by < budget.deadline {
                    return Err(ProxyError::Timeout(format!(
                        "Amazon Bedrock did not answer within the time it was given before the \
                         fallback (attempt {n})"
                    )));
                }
                return Err(ProxyError::Timeout(format!(
                    "Amazon Bedrock did not answer before this request's deadline (attempt {n}); \
                     try a smaller max_tokens, streaming, or a longer function timeout"
                )));
            };
            match result {
                Ok(v) => return Ok((Ok(v), n)),
                Err(f) if f.retryable() && retries_done < max_retries => {
                    let delay = self.retry.delay(None, retries_done, fastrand::f64());
                    if Instant::now() + delay < answer_by {
                        tracing::info!(
                            attempt = n,
                            status = f.status.as_u16(),
                            delay_ms = delay.as_millis() as u64,
                            "Bedrock asked for a retry"
                        );
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    return Ok((Err(f), n));
                }
                Err(f) => return Ok((Err(f), n)),
            }
        }
    }

    async fn send_inner(
        &self,
        req: UpstreamRequest,
        budget: Budget,
    ) -> Result<UpstreamResponse, ProxyError> {
        let (model_id, body) = bedrock_body(
            &req.body,
            req.anthropic_beta.as_ref(),
            &self.models,
            req.operation,
        )?;
        match (req.operation, req.stream) {
            (Operation::CountTokens, _) => self.count_tokens(model_id, body, budget).await,
            (Operation::Messages, false) => self.invoke(model_id, body, budget).await,
            (Operation::Messages, true) => self.invoke_stream(model_id, body, budget).await,
        }
    }

    async fn invoke(
        &self,
        model_id: String,
        body: Vec<u8>,
        budget: Budget,
    ) -> Result<UpstreamResponse, ProxyError> {
        let (result, attempts) = self
            .with_retries(budget, || {
                let call = self
                    .client
                    .invoke_model()
                    .model_id(&model_id)
                    .content_type("application/json")
                    .accept("application/json")
                    .body(Blob::new(body.clone()))
                    .send();
                async move {
                    match call.await {
                        Ok(out) => {
                            let id = out.request_id().map(String::from);
                            Ok((out.body.into_inner(), id))
                        }
                        Err(e) => Err(sdk_failure(&e, http_status)),
                    }
                }
            })
            .await?;
        Ok(match result {
            Ok((bytes, request_id)) => full_response(
                StatusCode::OK,
                Bytes::from(bytes),
                request_id,
                attempts,
                false,
            ),
            Err(f) => error_response(f, attempts)?,
        })
    }

    async fn count_tokens(
        &self,
        model_id: String,
        body: Vec<u8>,
        budget: Budget,
    ) -> Result<UpstreamResponse, ProxyError> {
        let model_id = foundation_model_id(&model_id).to_string();
        let input = CountTokensInput::InvokeModel(
            InvokeModelTokensRequest::builder()
                .body(Blob::new(body))
                .build()
                .map_err(|e| ProxyError::Internal(format!("building CountTokens input: {e}")))?,
        );
        let (result, attempts) = self
            .with_retries(budget, || {
                let call = self
                    .client
                    .count_tokens()
                    .model_id(&model_id)
                    .input(input.clone())
                    .send();
                async move {
                    match call.await {
                        Ok(out) => Ok((out.input_tokens(), out.request_id().map(String::from))),
                        Err(e) => Err(sdk_failure(&e, http_status)),
                    }
                }
            })
            .await?;
        Ok(match result {
            Ok((n, request_id)) => full_response(
                StatusCode::OK,
                Bytes::from(json!({"input_tokens": n}).to_string()),
                request_id,
                attempts,
                false,
            ),
            Err(f) => error_response(f, attempts)?,
        })
    }

    async fn invoke_stream(
        &self,
        model_id: String,
        body: Vec<u8>,
        budget: Budget,
    ) -> Result<UpstreamResponse, ProxyError> {
        // An attempt lasts until the first event: an exception before any event was passed
        // on is still retried (and answered with its own status); after it, never.
        let (result, attempts) = self
            .with_retries(budget, || {
                let call = self
                    .client
                    .invoke_model_with_response_stream()
                    .model_id(&model_id)
                    .content_type("application/json")
                    .accept("application/json")
                    .body(Blob::new(body.clone()))
                    .send();
                async move {
                    let out = call.await.map_err(|e| sdk_failure(&e, http_status))?;
                    let request_id = out.request_id().map(String::from);
                    let mut receiver = out.body;
                    let first = match receiver.recv().await {
                        Ok(first) => first,
                        Err(e) => return Err(stream_failure(&e)),
                    };
                    Ok((receiver, first, request_id))
                }
            })
            .await?;
        match result {
            Ok((receiver, first, request_id)) => {
                let mut headers = HeaderMap::new();
                headers.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("text/event-stream; charset=utf-8"),
                );
                insert_request_id(&mut headers, request_id);
                Ok(UpstreamResponse {
                    status: StatusCode::OK,
                    headers,
                    body: event_stream_body(receiver, first, budget.deadline),
                    attempts,
                    retryable: false,
                })
            }
            Err(f) => error_response(f, attempts),
        }
    }
}

fn insert_request_id(headers: &mut HeaderMap, request_id: Option<String>) {
    if let Some(v) = request_id.and_then(|id| HeaderValue::from_str(&id).ok()) {
        headers.insert("request-id", v);
    }
}

fn full_response(
    status: StatusCode,
    body: Bytes,
    request_id: Option<String>,
    attempts: u32,
    retryable: bool,
) -> UpstreamResponse {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    insert_request_id(&mut headers, request_id);
    UpstreamResponse {
        status,
        headers,
        body: futures_util::stream::once(async move { Ok(body) }).boxed(),
        attempts,
        retryable,
    }
}

/// A Bedrock error answered before anything was streamed: the Anthropic status and body.
/// Bedrock that cannot be reached at all is a 502 from the proxy itself.
fn error_response(f: BedrockFailure, attempts: u32) -> Result<UpstreamResponse, ProxyError> {
    if f.unreachable {
        return Err(ProxyError::Upstream(format!(
            "{} (after {attempts} attempt(s))",
            f.message
        )));
    }
    let body = Bytes::from(error_json(f.error_type, &f.message).to_string());
    let retryable = f.retryable();
    Ok(full_response(f.status, body, None, attempts, retryable))
}

/// One Messages event (the bytes of a `chunk`) as the SSE block the Messages API sends.
pub fn sse_block(json_event: &[u8]) -> Result<Bytes, String> {
    let value: Value = serde_json::from_slice(json_event)
        .map_err(|e| format!("a Bedrock chunk is not a JSON event: {e}"))?;
    let kind = value
        .get("type")
        .and_then(Value::as_str)
        .ok_or("a Bedrock chunk has no event type")?;
    let text = std::str::from_utf8(json_event)
        .map_err(|e| e.to_string())?
        .trim();
    // Pass the event's own bytes on when they fit on one `data:` line, as the API sends them.
    let data = if text.contains(['\n', '\r']) {
        value.to_string()
    } else {
        text.to_string()
    };
    Ok(sse::format_event(kind, &data))
}

type Receiver = EventReceiver<ResponseStream, ResponseStreamError>;

/// The event stream as SSE bytes; an exception or broken stream ends it with `event: error`.
fn event_stream_body(
    receiver: Receiver,
    first: Option<ResponseStream>,
    deadline: Instant,
) -> UpstreamBody {
    struct St {
        receiver: Receiver,
        first: Option<Option<ResponseStream>>,
        done: bool,
    }
    let st = St {
        receiver,
        first: Some(first),
        done: false,
    };
    futures_util::stream::unfold(st, move |mut st| async move {
        loop {
            if st.done {
                return None;
            }
            let next = match st.first.take() {
                Some(first) => Ok(first),
                None => match tokio::time::timeout_at(deadline, st.receiver.recv()).await {
                    Err(_) => {
                        st.done = true;
                        return Some((
                            Err(ProxyError::Timeout(
                                "the request deadline passed while Amazon Bedrock was still answering"
                                    .into(),
                            )),
                            st,
                        ));
                    }
                    Ok(r) => r,
                },
            };
            match next {
                Ok(None) => return None,
                Ok(Some(ResponseStream::Chunk(part))) => {
                    let Some(bytes) = part.bytes() else { continue };
                    match sse_block(bytes.as_ref()) {
                        Ok(block) => return Some((Ok(block), st)),
                        Err(m) => {
                            st.done = true;
                            return Some((Ok(sse::error_event("api_error", &m)), st));
                        }
                    }
                }
                // Event kinds this SDK does not know: skipped, as an SSE client skips them.
                Ok(Some(_)) => continue,
                Err(e) => {
                    st.done = true;
                    let f = stream_failure(&e);
                    return Some((Ok(sse::error_event(f.error_type, &f.message)), st));
                }
            }
        }
    })
    .boxed()
}

impl Provider for BedrockProvider {
    fn name(&self) -> &'static str {
        "bedrock"
    }

    fn send<'a>(
        &'a self,
        req: UpstreamRequest,
        _secret: &'a Secret,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<UpstreamResponse, ProxyError>> {
        Box::pin(self.send_inner(req, Budget::whole(deadline)))
    }

    fn send_within<'a>(
        &'a self,
        req: UpstreamRequest,
        _secret: &'a Secret,
        budget: Budget,
    ) -> BoxFuture<'a, Result<UpstreamResponse, ProxyError>> {
        Box::pin(self.send_inner(req, budget))
    }

    /// A model that maps to a Bedrock id (or is one).
    fn can_serve(&self, req: &UpstreamRequest, _secret: &Secret) -> bool {
        crate::upstream::model_of(&req.body).is_some_and(|m| self.models.resolve(&m).is_ok())
    }
}

mod failure;
pub use failure::{classify, BedrockFailure};
use failure::{http_status, sdk_failure, stream_failure};

#[cfg(test)]
mod tests;
