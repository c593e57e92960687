//! The one log line per request ([`RequestLog`]) and, beside it, the request's metrics as
//! one CloudWatch Embedded Metric Format line ([`crate::metrics`]): both written when the
//! request (and its stream, if any) is done, both metadata only (never prompt or reply text,
//! keys or tokens).

use crate::metrics::{self, Sink};
use crate::{redact, routes, ProxyError, ProxyRequest};
use http::StatusCode;
use std::sync::{Arc, Mutex};

/// The one log line per request, written when the request (and its stream, if any) is done.
/// Holds only metadata: never prompt or reply text, keys or tokens.
#[derive(Clone)]
pub struct RequestLog(Arc<LogInner>);

struct LogInner {
    span: tracing::Span,
    started: std::time::Instant,
    method: String,
    path: String,
    /// The API key API Gateway checked (its id, never its value).
    api_key_id: Option<String>,
    fields: Mutex<LogFields>,
    /// Where the EMF line goes (none: no metrics, e.g. local runs), and the function's name.
    metrics: Option<(Sink, String)>,
}

#[derive(Default)]
pub(crate) struct LogFields {
    pub(crate) route: Option<&'static str>,
    pub(crate) status: Option<u16>,
    pub(crate) upstream_status: Option<u16>,
    pub(crate) upstream_request_id: Option<String>,
    pub(crate) attempts: Option<u32>,
    pub(crate) input_tokens: Option<u64>,
    pub(crate) output_tokens: Option<u64>,
    pub(crate) cache_creation_input_tokens: Option<u64>,
    pub(crate) cache_read_input_tokens: Option<u64>,
    /// When the first byte of the answer was ready (upstream headers of a buffered answer,
    /// the first event of a stream).
    pub(crate) first_byte: Option<std::time::Instant>,
    /// The caller's name (never its token) and the model asked for.
    pub(crate) caller: Option<String>,
    pub(crate) model: Option<String>,
    pub(crate) streamed: bool,
    pub(crate) error_type: Option<String>,
    pub(crate) error: Option<String>,
    /// What the upstream said when it answered an error (it may differ from what the caller
    /// was answered: a 401 becomes a 502 that says the proxy's credentials were refused).
    pub(crate) upstream_error: Option<String>,
    /// The provider that answered (`anthropic`, `bedrock`).
    pub(crate) provider: Option<&'static str>,
    /// Why the fallback answered (`primary_failed`, `breaker_open`, `probe_failed`).
    pub(crate) failover: Option<&'static str>,
    /// How the primary failed before the fallback answered.
    pub(crate) primary_error: Option<String>,
}

impl RequestLog {
    pub(crate) fn start(req: &ProxyRequest, metrics: Option<(Sink, String)>) -> Self {
        RequestLog(Arc::new(LogInner {
            span: tracing::Span::current(),
            started: std::time::Instant::now(),
            method: req.method.to_string(),
            // The path is one of a handful of routes; anything else is cut to keep logs tidy.
            path: req.path.chars().take(64).collect(),
            api_key_id: req
                .api_key
                .as_ref()
                .map(|k| k.key_id.chars().take(64).collect()),
            fields: Mutex::new(LogFields::default()),
            metrics,
        }))
    }

    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut LogFields) -> R) -> R {
        f(&mut self.0.fields.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub(crate) fn route(&self, r: routes::Route) {
        self.with(|f| f.route = Some(r.name()));
    }
    pub(crate) fn caller(&self, name: &str) {
        self.with(|f| f.caller = Some(name.chars().take(64).collect()));
    }
    pub(crate) fn model(&self, model: &str) {
        self.with(|f| f.model = Some(model.chars().take(128).collect()));
    }
    /// The answer's first byte is ready (the first call counts).
    pub(crate) fn first_byte(&self) {
        self.with(|f| {
            f.first_byte.get_or_insert_with(std::time::Instant::now);
        });
    }
    pub(crate) fn status(&self, s: StatusCode) {
        self.with(|f| f.status = Some(s.as_u16()));
    }
    pub(crate) fn upstream(&self, status: StatusCode, request_id: Option<String>, attempts: u32) {
        self.with(|f| {
            f.upstream_status = Some(status.as_u16());
            f.upstream_request_id = request_id;
            f.attempts = Some(attempts);
        });
    }
    pub(crate) fn streamed(&self) {
        self.with(|f| f.streamed = true);
    }
    /// Token usage from a Messages API `usage` object (either key may be missing).
    pub(crate) fn usage(&self, usage: &serde_json::Value) {
        self.with(|f| {
            if let Some(n) = usage.get("input_tokens").and_then(|v| v.as_u64()) {
                f.input_tokens = Some(n);
            }
            if let Some(n) = usage.get("output_tokens").and_then(|v| v.as_u64()) {
                f.output_tokens = Some(n);
            }
            if let Some(n) = usage
                .get("cache_creation_input_tokens")
                .and_then(|v| v.as_u64())
            {
                f.cache_creation_input_tokens = Some(n);
            }
            if let Some(n) = usage
                .get("cache_read_input_tokens")
                .and_then(|v| v.as_u64())
            {
                f.cache_read_input_tokens = Some(n);
            }
        });
    }
    /// Records the upstream's own error (type and message; key-shaped strings redacted).
    pub(crate) fn upstream_error(&self, error_type: &str, message: &str) {
        let text = format!("{error_type}: {message}");
        let text = redact::redact(&text, "");
        self.with(|f| f.upstream_error = Some(text.chars().take(300).collect()));
    }
    pub(crate) fn provider(&self, name: &'static str) {
        self.with(|f| f.provider = Some(name));
    }
    /// The provider that answered, once the upstream was asked.
    pub(crate) fn served_by(&self) -> Option<&'static str> {
        self.with(|f| f.provider)
    }
    /// Records a failover: why, and how the primary failed (keys redacted).
    pub(crate) fn failover(&self, reason: &'static str, primary_error: Option<&str>) {
        let primary_error =
            primary_error.map(|e| redact::redact(e, "").chars().take(300).collect::<String>());
        self.with(|f| {
            f.failover = Some(reason);
            f.primary_error = primary_error;
        });
    }
    pub(crate) fn error(&self, e: &ProxyError) {
        self.error_parts(e.error_type(), &e.to_string());
    }
    /// Records the error; anything shaped like an API key is redacted from the message.
    pub(crate) fn error_parts(&self, error_type: &str, message: &str) {
        let message = redact::redact(message, "");
        self.with(|f| {
            f.error_type = Some(error_type.chars().take(64).collect());
            f.error = Some(message.chars().take(300).collect());
        });
    }
}

impl Drop for LogInner {
    fn drop(&mut self) {
        let f = self.fields.get_mut().unwrap_or_else(|e| e.into_inner());
        let _entered = self.span.enter();
        let latency_ms = self.started.elapsed().as_millis() as u64;
        let ttfb_ms = f
            .first_byte
            .map(|t| t.duration_since(self.started).as_millis() as u64);
        if let Some((sink, function)) = &self.metrics {
            let usage = metrics::Usage {
                function: function.clone(),
                caller: f.caller.clone(),
                model: f.model.clone(),
                route: f.route,
                status: f.status,
                provider: f.provider,
                streamed: f.streamed,
                input_tokens: f.input_tokens.unwrap_or(0),
                output_tokens: f.output_tokens.unwrap_or(0),
                cache_creation_input_tokens: f.cache_creation_input_tokens.unwrap_or(0),
                cache_read_input_tokens: f.cache_read_input_tokens.unwrap_or(0),
                ttfb_ms,
                latency_ms,
            };
            sink(&metrics::emf(&usage, metrics::now_ms()).to_string());
        }
        tracing::info!(
            method = %self.method,
            path = %self.path,
            api_key_id = self.api_key_id.as_deref(),
            route = f.route.unwrap_or("none"),
            status = f.status,
            latency_ms,
            ttfb_ms,
            caller = f.caller.as_deref(),
            model = f.model.as_deref(),
            cache_creation_input_tokens = f.cache_creation_input_tokens,
            cache_read_input_tokens = f.cache_read_input_tokens,
            upstream_status = f.upstream_status,
            upstream_request_id = f.upstream_request_id.as_deref(),
            attempts = f.attempts,
            input_tokens = f.input_tokens,
            output_tokens = f.output_tokens,
            streamed = f.streamed,
            error_type = f.error_type.as_deref(),
            error = f.error.as_deref(),
            upstream_error = f.upstream_error.as_deref(),
            provider = f.provider,
            failover = f.failover,
            primary_error = f.primary_error.as_deref(),
            "request"
        );
    }
}
