//! The upstream: a [`Provider`] turns a validated Messages API request into an
//! Anthropic-format response (status, pass-through headers, body chunks). The Anthropic
//! provider calls the Messages API over one pooled rustls client with the official SDKs'
//! retry rules; another provider (Claude on Amazon Bedrock) can implement the same trait
//! and translate to and from its own wire format without touching the routes.

use crate::error::ProxyError;
use crate::secrets::Secret;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::{BoxStream, StreamExt};
use http::{HeaderMap, HeaderValue, StatusCode};
use std::time::Duration;
use tokio::time::Instant;

/// The Messages API version sent when the caller names none.
pub const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";

/// Which Messages API operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `POST /v1/messages`
    Messages,
    /// `POST /v1/messages/count_tokens`
    CountTokens,
}

impl Operation {
    pub fn path(self) -> &'static str {
        match self {
            Operation::Messages => "/v1/messages",
            Operation::CountTokens => "/v1/messages/count_tokens",
        }
    }
}

/// A validated request for the upstream.
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    pub operation: Operation,
    /// The JSON body, as the caller sent it (or as `/chat` built it).
    pub body: Bytes,
    /// The caller's `anthropic-version` (default [`DEFAULT_ANTHROPIC_VERSION`]).
    pub anthropic_version: Option<HeaderValue>,
    /// The caller's `anthropic-beta`, if any.
    pub anthropic_beta: Option<HeaderValue>,
    /// Whether the body asks for `"stream": true`.
    pub stream: bool,
}

/// Body chunks; an `Err` ends the stream (deadline, dropped connection).
pub type UpstreamBody = BoxStream<'static, Result<Bytes, ProxyError>>;

/// What the upstream answered, in the Anthropic format.
pub struct UpstreamResponse {
    pub status: StatusCode,
    /// Only the headers worth passing on (see [`PASS_THROUGH_HEADERS`]) and `content-type`.
    pub headers: HeaderMap,
    pub body: UpstreamBody,
    /// How many attempts it took (1 = no retry).
    pub attempts: u32,
    /// An error answer the retry policy would try again (408, 409, 429, 5xx, 529, and not
    /// `x-should-retry: false`), given up on because the attempts or the time for them ran
    /// out. What failover acts on; `false` for every success.
    pub retryable: bool,
}

impl UpstreamResponse {
    pub fn request_id(&self) -> Option<String> {
        self.headers
            .get("request-id")
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    }

    pub fn is_event_stream(&self) -> bool {
        self.headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/event-stream"))
    }

    /// Reads the whole body (bounded by the deadline the body stream carries).
    pub async fn collect(&mut self) -> Result<Bytes, ProxyError> {
        let mut out = bytes::BytesMut::new();
        while let Some(chunk) = self.body.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out.freeze())
    }
}

/// How long, and how often, one provider may try a request. With a fallback the primary
/// gets less than the whole request (see `failover`), so the fallback has time left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Attempts, and the waits between them, end here: by then the answer's status and
    /// headers (with Bedrock streams: its first event) must have arrived.
    pub answer_by: Instant,
    /// The answer's body ends here (the request's deadline).
    pub deadline: Instant,
    /// Retries after the first attempt, capped by the provider's policy; `None` = the
    /// policy's own number (a breaker's probe is one attempt: `Some(0)`).
    pub max_retries: Option<u32>,
}

impl Budget {
    /// The whole request: attempts and body until `deadline`, the policy's retries.
    pub fn whole(deadline: Instant) -> Budget {
        Budget {
            answer_by: deadline,
            deadline,
            max_retries: None,
        }
    }

    /// The retries this budget allows under `policy`.
    pub fn retries(&self, policy: &RetryPolicy) -> u32 {
        self.max_retries
            .map_or(policy.max_retries, |n| n.min(policy.max_retries))
    }
}

/// A model provider speaking (or translated to) the Anthropic Messages API.
pub trait Provider: Send + Sync {
    /// For logs, and the `x-claude-proxy-provider` response header.
    fn name(&self) -> &'static str;
    /// Sends `req`, retrying where allowed, never past `deadline`.
    fn send<'a>(
        &'a self,
        req: UpstreamRequest,
        secret: &'a Secret,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<UpstreamResponse, ProxyError>>;

    /// Sends `req` within `budget`. This default gives [`Provider::send`] until
    /// `budget.answer_by` to answer (a timeout error after that) and its body until
    /// `budget.deadline`; the built-in providers stop their retries at `answer_by` instead
    /// and honour `budget.max_retries`.
    fn send_within<'a>(
        &'a self,
        req: UpstreamRequest,
        secret: &'a Secret,
        budget: Budget,
    ) -> BoxFuture<'a, Result<UpstreamResponse, ProxyError>> {
        Box::pin(async move {
            let send = self.send(req, secret, budget.deadline);
            match tokio::time::timeout_at(budget.answer_by, send).await {
                Ok(result) => result,
                Err(_) => Err(ProxyError::Timeout(format!(
                    "{} did not answer within the time given to it",
                    self.name()
                ))),
            }
        })
    }

    /// Whether this provider can serve `req` at all: a fallback is tried only then (with
    /// Bedrock, the model must map to a Bedrock id). The default: always.
    fn can_serve(&self, _req: &UpstreamRequest, _secret: &Secret) -> bool {
        true
    }
}

/// The `model` of a Messages API body (the body is read, its other values skipped).
pub fn model_of(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct ModelOnly {
        model: Option<String>,
    }
    serde_json::from_slice::<ModelOnly>(body)
        .ok()?
        .model
        .filter(|m| !m.trim().is_empty())
}

/// Response headers callers rely on (besides `content-type`); `anthropic-ratelimit-*` too.
pub const PASS_THROUGH_HEADERS: &[&str] = &[
    "request-id",
    "retry-after",
    "retry-after-ms",
    "x-should-retry",
];

/// Whether a response header is passed on to the caller.
pub fn is_pass_through(name: &str) -> bool {
    PASS_THROUGH_HEADERS.contains(&name)
        || name.starts_with("anthropic-ratelimit-")
        || name == "content-type"
}

/// Retry policy of the official SDKs.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    pub initial_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 2,
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
        }
    }
}

impl RetryPolicy {
    /// Whether a response with this status and headers is worth another attempt: the
    /// official SDKs' statuses (408, 409, 429, 5xx), unless the server says
    /// `x-should-retry: false`. `x-should-retry: true` never adds a status (a 400 is not
    /// retried however it is marked: one caller request stays within the retry budget).
    pub fn should_retry(status: StatusCode, headers: &HeaderMap) -> bool {
        if headers
            .get("x-should-retry")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"false"))
        {
            return false;
        }
        Self::retryable_status(status)
    }

    /// The statuses the official SDKs retry.
    pub fn retryable_status(status: StatusCode) -> bool {
        matches!(status.as_u16(), 408 | 409 | 429) || status.as_u16() >= 500
    }

    /// The delay before the next attempt: `retry-after-ms` / `retry-after` (seconds) when
    /// they say 0..60 s, else exponential backoff from `initial_delay` capped at `max_delay`,
    /// reduced by up to 25 % jitter (`jitter` in 0..1).
    pub fn delay(&self, headers: Option<&HeaderMap>, retries_done: u32, jitter: f64) -> Duration {
        if let Some(h) = headers {
            if let Some(d) = header_seconds(h, "retry-after-ms").map(|ms| ms / 1000.0) {
                if (0.0..60.0).contains(&d) {
                    return Duration::from_secs_f64(d);
                }
            }
            if let Some(d) = header_seconds(h, "retry-after").or_else(|| header_date(h)) {
                if (0.0..60.0).contains(&d) {
                    return Duration::from_secs_f64(d);
                }
            }
        }
        let base = self.initial_delay.as_secs_f64() * 2f64.powi(retries_done.min(30) as i32);
        let capped = base.min(self.max_delay.as_secs_f64());
        Duration::from_secs_f64(capped * (1.0 - 0.25 * jitter.clamp(0.0, 1.0)))
    }
}

fn header_seconds(h: &HeaderMap, name: &str) -> Option<f64> {
    h.get(name)?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
}

/// `retry-after` as an HTTP date (`Wed, 21 Oct 2026 07:28:00 GMT`): seconds from now until
/// then (negative when it has passed), as the official SDKs read it.
fn header_date(h: &HeaderMap) -> Option<f64> {
    let when = httpdate::parse_http_date(h.get("retry-after")?.to_str().ok()?.trim()).ok()?;
    let now = std::time::SystemTime::now();
    Some(match when.duration_since(now) {
        Ok(ahead) => ahead.as_secs_f64(),
        Err(past) => -past.duration().as_secs_f64(),
    })
}

/// The Anthropic Messages API.
pub struct AnthropicProvider {
    client: reqwest::Client,
    base_url: String,
    retry: RetryPolicy,
}

impl AnthropicProvider {
    /// Builds the one pooled client (rustls, compiled-in webpki roots).
    pub fn new(base_url: &str, retry: RetryPolicy) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            // Never follow a redirect: the key would go with the request to another host
            // (reqwest strips only Authorization and Cookie). A 3xx is answered 502.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .user_agent(concat!("claude-lambda-proxy/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(AnthropicProvider {
            client,
            base_url: base_url.trim_end_matches('/').to_string(),
            retry,
        })
    }

    async fn send_inner(
        &self,
        req: UpstreamRequest,
        secret: &Secret,
        budget: Budget,
    ) -> Result<UpstreamResponse, ProxyError> {
        let Budget {
            answer_by,
            deadline,
            ..
        } = budget;
        let max_retries = budget.retries(&self.retry);
        let url = format!("{}{}", self.base_url, req.operation.path());
        let mut headers = HeaderMap::new();
        if secret.anthropic_api_key.is_empty() {
            return Err(ProxyError::Internal(
                "the secret holds no anthropic_api_key: the Anthropic provider needs one \
                 (deploy with ANTHROPIC_API_KEY set, or use provider bedrock)"
                    .into(),
            ));
        }
        let key = HeaderValue::from_str(&secret.anthropic_api_key).map_err(|_| {
            ProxyError::Internal(
                "the Anthropic API key in the secret is not a valid header value".into(),
            )
        })?;
        let mut key = key;
        key.set_sensitive(true);
        headers.insert("x-api-key", key);
        headers.insert(
            "anthropic-version",
            req.anthropic_version
                .clone()
                .unwrap_or(HeaderValue::from_static(DEFAULT_ANTHROPIC_VERSION)),
        );
        if let Some(beta) = &req.anthropic_beta {
            headers.insert("anthropic-beta", beta.clone());
        }
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );

        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let retries_done = attempt - 1;
            let can_retry = retries_done < max_retries;
            let send = self
                .client
                .post(&url)
                .headers(headers.clone())
                .body(req.body.clone())
                .send();
            let result = match tokio::time::timeout_at(answer_by, send).await {
                Ok(r) => r,
                Err(_) => return Err(deadline_error(attempt, answer_by < deadline)),
            };
            match result {
                Err(e) => {
                    let retryable = e.is_connect() || e.is_request() || e.is_timeout();
                    tracing::warn!(attempt, retryable, error = %e, "upstream request failed");
                    if retryable && can_retry {
                        let delay = self.retry.delay(None, retries_done, fastrand::f64());
                        if Instant::now() + delay < answer_by {
                            tokio::time::sleep(delay).await;
                            continue;
                        }
                    }
                    // The caller is told what failed, not where: the URL stays in the log.
                    return Err(ProxyError::Upstream(format!(
                        "could not reach the Messages API after {attempt} attempt(s): {}",
                        failure_kind(&e)
                    )));
                }
                Ok(resp) => {
                    let status = resp.status();
                    let retryable =
                        !status.is_success() && RetryPolicy::should_retry(status, resp.headers());
                    if retryable && can_retry {
                        let delay =
                            self.retry
                                .delay(Some(resp.headers()), retries_done, fastrand::f64());
                        if Instant::now() + delay < answer_by {
                            tracing::info!(
                                attempt,
                                status = status.as_u16(),
                                delay_ms = delay.as_millis() as u64,
                                "upstream asked for a retry"
                            );
                            drop(resp);
                            tokio::time::sleep(delay).await;
                            continue;
                        }
                    }
                    let mut out_headers = HeaderMap::new();
                    for (name, value) in resp.headers() {
                        if is_pass_through(name.as_str()) && name != "x-should-retry" {
                            out_headers.append(name.clone(), value.clone());
                        }
                    }
                    // The caller's SDK retries by status unless told otherwise. What the
                    // proxy's policy retries has been retried here already, and what it does
                    // not retry is not worth retrying: say so, instead of passing on the
                    // upstream's `x-should-retry: true`.
                    if !status.is_success()
                        && (self.retry.max_retries > 0 || !RetryPolicy::retryable_status(status))
                    {
                        out_headers.insert("x-should-retry", HeaderValue::from_static("false"));
                    }
                    let body = deadline_bounded(resp.bytes_stream(), deadline);
                    return Ok(UpstreamResponse {
                        status,
                        headers: out_headers,
                        body,
                        attempts: attempt,
                        retryable,
                    });
                }
            }
        }
    }
}

/// What went wrong with an upstream call, without the URL (the log has the full error).
fn failure_kind(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "the connection failed"
    } else if e.is_body() || e.is_decode() {
        "the answer's body could not be read"
    } else if e.is_redirect() {
        "it answered with a redirect"
    } else {
        "the request failed"
    }
}

fn deadline_error(attempt: u32, before_failover: bool) -> ProxyError {
    if before_failover {
        return ProxyError::Timeout(format!(
            "the Messages API did not answer within the time it was given before the fallback \
             (attempt {attempt})"
        ));
    }
    ProxyError::Timeout(format!(
        "the Messages API did not answer before this request's deadline (attempt {attempt}); \
         try a smaller max_tokens, streaming, or a longer function timeout"
    ))
}

/// Wraps the body so that waiting for any chunk ends at the deadline with a timeout error,
/// and a broken connection becomes an error item.
fn deadline_bounded(
    stream: impl futures_util::Stream<Item = Result<Bytes, reqwest::Error>> + Send + 'static,
    deadline: Instant,
) -> UpstreamBody {
    let stream = Box::pin(stream);
    futures_util::stream::unfold(Some(stream), move |state| async move {
        let mut stream = state?;
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => Some((
                Err(ProxyError::Timeout(
                    "the request deadline passed while the Messages API was still answering".into(),
                )),
                None,
            )),
            Ok(None) => None,
            Ok(Some(Ok(bytes))) => Some((Ok(bytes), Some(stream))),
            Ok(Some(Err(e))) => {
                tracing::warn!(error = %e, "the upstream answer broke off");
                Some((
                    Err(ProxyError::Upstream(format!(
                        "the connection to the Messages API broke while reading the answer: {}",
                        failure_kind(&e)
                    ))),
                    None,
                ))
            }
        }
    })
    .boxed()
}

impl Provider for AnthropicProvider {
    fn name(&self) -> &'static str {
        "anthropic"
    }

    fn send<'a>(
        &'a self,
        req: UpstreamRequest,
        secret: &'a Secret,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<UpstreamResponse, ProxyError>> {
        Box::pin(self.send_inner(req, secret, Budget::whole(deadline)))
    }

    fn send_within<'a>(
        &'a self,
        req: UpstreamRequest,
        secret: &'a Secret,
        budget: Budget,
    ) -> BoxFuture<'a, Result<UpstreamResponse, ProxyError>> {
        Box::pin(self.send_inner(req, secret, budget))
    }

    /// With the key, any model but a Bedrock id or ARN (those mean nothing to the API).
    fn can_serve(&self, req: &UpstreamRequest, secret: &Secret) -> bool {
        !secret.anthropic_api_key.is_empty()
            && model_of(&req.body).is_some_and(|m| !crate::model_map::is_bedrock_id(&m))
    }
}

#[cfg(test)]
mod tests;
