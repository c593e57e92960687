//! Claude behind an HTTP endpoint: the routes of the Lambda function, independent of how
//! requests arrive ([`lambda`] adapts the Lambda runtime, [`local`] serves plain HTTP).
//!
//! A request goes top to bottom through [`App::handle`]:
//! route → auth → validate/policy → upstream → response (buffered or streamed).
//!
//! Routes:
//! - `POST /chat` and `POST /`: `{"message", "system"?, "model"?, "max_tokens"?, "stream"?}` →
//!   `{"reply", "model", "stop_reason", "usage", "request_id"}`. With `"stream": true` or
//!   `Accept: text/event-stream` the reply streams as SSE: `event: text` with
//!   `{"text": "..."}` per fragment, then `event: done` with
//!   `{"model", "stop_reason", "usage", "request_id"}`; errors after the first byte arrive as
//!   `event: error` with the Anthropic error JSON.
//! - `POST /v1/messages`: the Messages API, validated (strictly: no duplicate keys; models,
//!   beta flags, tools and paid features against the allowlists) and passed on byte for byte
//!   with the real key; status, body and `request-id`, `anthropic-ratelimit-*`,
//!   `retry-after`, `retry-after-ms` come back unchanged (error bodies with keys redacted;
//!   `x-should-retry` says `false` for what the proxy retried or would not retry); streams
//!   pass through event by event. Redirects, upstream 401/403 and non-Anthropic error bodies
//!   are answered by the proxy (see `routes::pass_through`).
//! - `POST /v1/messages/count_tokens`: passed through the same way.
//! - `GET /health`: `{"status":"ok"}` without authentication.
//!
//! Every answer a provider gave says which one in the `x-claude-proxy-provider` header
//! (`anthropic` or `bedrock`); with `FALLBACK` set, [`failover`] picks it per request.

pub mod auth;
pub mod aws;
pub mod bedrock;
pub mod breaker;
pub mod config;
pub mod error;
pub mod failover;
pub mod lambda;
pub mod local;
pub mod model_map;
pub mod redact;
pub mod routes;
pub mod secrets;
pub mod sse;
pub mod tls;
pub mod upstream;
pub mod validate;

pub use bedrock::BedrockProvider;
pub use config::{BedrockConfig, CallerAuth, Config, ProviderKind, ResponseMode, SecretConfig};
pub use error::{ConfigError, ProxyError};
pub use secrets::{Secret, SecretCache, SecretSource};
pub use upstream::{AnthropicProvider, Provider, RetryPolicy};

use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use std::sync::{Arc, Mutex};
use tokio::time::Instant;

/// A request, whichever way it arrived.
#[derive(Debug, Clone)]
pub struct ProxyRequest {
    pub method: Method,
    /// The path without query string, e.g. `/v1/messages`.
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Everything (retries, sleeps, streaming) ends by this instant.
    pub deadline: Instant,
    /// Set when API Gateway checked the caller's API key before invoking the function (a REST
    /// API method with `apiKeyRequired`); such a request needs no caller token.
    pub api_key: Option<GatewayKey>,
}

/// The API key API Gateway checked for a request (from the REST event's
/// `requestContext.identity`). Holds the key's id only: its value (`identity.apiKey`) is a
/// credential and is never kept, logged or echoed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayKey {
    /// `requestContext.apiId`.
    pub api_id: String,
    /// `requestContext.stage`.
    pub stage: String,
    /// `requestContext.identity.apiKeyId`: the caller's name in the request log.
    pub key_id: String,
}

/// A response body: complete, or chunks sent as they come (errors already in-band).
pub enum ResponseBody {
    Full(Bytes),
    Stream(BoxStream<'static, Bytes>),
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResponseBody::Full(b) => write!(f, "Full({} bytes)", b.len()),
            ResponseBody::Stream(_) => write!(f, "Stream"),
        }
    }
}

#[derive(Debug)]
pub struct ProxyResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: ResponseBody,
}

impl ProxyResponse {
    pub fn json(status: StatusCode, value: &serde_json::Value) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        ProxyResponse {
            status,
            headers,
            body: ResponseBody::Full(Bytes::from(value.to_string())),
        }
    }

    pub fn error(e: &ProxyError) -> Self {
        let mut r = Self::json(e.status(), &e.to_json());
        match e {
            ProxyError::MethodNotAllowed { allowed, .. } => {
                r.headers
                    .insert(http::header::ALLOW, HeaderValue::from_static(allowed));
            }
            // Already retried by the proxy, or not the caller's to fix by retrying (its own
            // credentials refused, a redirect): the caller's SDK should not retry a 502.
            ProxyError::Upstream(_) => {
                r.headers
                    .insert("x-should-retry", HeaderValue::from_static("false"));
            }
            _ => {}
        }
        r
    }

    /// The whole body (a stream is read to its end; it ends by the request deadline).
    pub async fn into_bytes(self) -> (StatusCode, HeaderMap, Bytes) {
        let body = match self.body {
            ResponseBody::Full(b) => b,
            ResponseBody::Stream(mut s) => {
                let mut out = bytes::BytesMut::new();
                while let Some(chunk) = s.next().await {
                    out.extend_from_slice(&chunk);
                }
                out.freeze()
            }
        };
        (self.status, self.headers, body)
    }
}

/// The function: configuration, the secret cache and the upstream, built once at cold start.
pub struct App {
    pub config: Config,
    secrets: SecretCache,
    provider: Arc<dyn Provider>,
    /// With `FALLBACK`: the other provider and the breaker in front of `provider`.
    failover: Option<failover::Failover>,
}

impl App {
    /// Lambda and `cargo xtask dev`: configuration from the environment. With `SECRET_ARN`
    /// the secret is read from Secrets Manager (the SDK honours `AWS_ENDPOINT_URL`); without
    /// it `ANTHROPIC_API_KEY` (+ optional `CALLER_TOKEN`) are used, for local runs only.
    pub async fn from_env() -> Result<Arc<App>, ConfigError> {
        App::new(Config::from_env()?).await
    }

    /// Builds the app from explicit configuration and reads the secret once (cold start).
    ///
    /// With `PROVIDER=bedrock` the Bedrock client shares this one SDK configuration, and no
    /// Anthropic key is read; with `CALLER_AUTH=none` as well (and no `FALLBACK=anthropic`),
    /// no secret is read at all. With `FALLBACK` both providers are built now.
    pub async fn new(config: Config) -> Result<Arc<App>, ConfigError> {
        let bedrock = config.provider == ProviderKind::Bedrock;
        let no_secret = bedrock
            && config.caller_auth == CallerAuth::None
            && config.fallback != Some(ProviderKind::Anthropic);
        let shared_sdk = if bedrock || config.fallback == Some(ProviderKind::Bedrock) {
            Some(aws::sdk_config_from_env()?)
        } else {
            None
        };
        let source = match &config.secret {
            _ if no_secret => SecretSource::Static(Secret {
                anthropic_api_key: String::new(),
                caller_tokens: Vec::new(),
            }),
            SecretConfig::SecretsManager { arn } => {
                let sdk = match &shared_sdk {
                    Some(sdk) => sdk.clone(),
                    None => aws::sdk_config_from_env()?,
                };
                SecretSource::SecretsManager {
                    client: aws_sdk_secretsmanager::Client::new(&sdk),
                    arn: arn.clone(),
                }
            }
            SecretConfig::Local {
                anthropic_api_key,
                caller_tokens,
            } => SecretSource::Static(Secret {
                anthropic_api_key: anthropic_api_key.clone(),
                caller_tokens: caller_tokens.clone(),
            }),
        };
        let primary = failover::build_provider(config.provider, &config, shared_sdk.as_ref())?;
        let app = match config.fallback {
            Some(kind) => {
                let fallback = failover::build_provider(kind, &config, shared_sdk.as_ref())?;
                App::with_failover(config, source, primary, fallback)
            }
            None => App::with_provider(config, source, primary),
        };
        app.warm_up().await;
        Ok(app)
    }

    /// Explicit secret source (tests point a Secrets Manager client at moto); the Anthropic
    /// provider from `config`. Reads nothing yet: call [`App::warm_up`] for the cold-start read.
    pub fn with_secret_source(
        config: Config,
        source: SecretSource,
    ) -> Result<Arc<App>, ConfigError> {
        let retry = RetryPolicy {
            max_retries: config.upstream_max_retries,
            ..RetryPolicy::default()
        };
        let provider = AnthropicProvider::new(&config.anthropic_base_url, retry)
            .map_err(|e| ConfigError::HttpClient(e.to_string()))?;
        Ok(App::with_provider(config, source, Arc::new(provider)))
    }

    /// Fully explicit: any [`Provider`].
    pub fn with_provider(
        config: Config,
        source: SecretSource,
        provider: Arc<dyn Provider>,
    ) -> Arc<App> {
        let secrets = SecretCache::new(source, config.secret_ttl);
        Arc::new(App {
            config,
            secrets,
            provider,
            failover: None,
        })
    }

    /// A primary and a fallback provider, with the breaker and `FAILOVER_AFTER_MS` of
    /// `config` (`config.fallback` is not consulted: `fallback` is the fallback).
    pub fn with_failover(
        config: Config,
        source: SecretSource,
        primary: Arc<dyn Provider>,
        fallback: Arc<dyn Provider>,
    ) -> Arc<App> {
        let failover = failover::Failover::new(fallback, &config);
        let secrets = SecretCache::new(source, config.secret_ttl);
        Arc::new(App {
            config,
            secrets,
            provider: primary,
            failover: Some(failover),
        })
    }

    /// The fallback and its breaker, when there is one.
    pub fn failover(&self) -> Option<&failover::Failover> {
        self.failover.as_ref()
    }

    /// Reads the secret now so the first request does not wait for it. A failure is logged
    /// (requests then retry the read and answer 500 with the reason until it works).
    pub async fn warm_up(&self) {
        let _ = self.secrets.get().await;
    }

    /// How many times the secret has been read from its source.
    pub fn secret_fetch_count(&self) -> u64 {
        self.secrets.fetch_count()
    }

    /// Answers one request. Never panics on input; every error is an Anthropic-shaped response.
    pub async fn handle(&self, req: ProxyRequest) -> ProxyResponse {
        let log = RequestLog::start(&req);
        let mut response = self.handle_inner(&req, &log).await.unwrap_or_else(|e| {
            log.error(&e);
            ProxyResponse::error(&e)
        });
        log.status(response.status);
        if let Some(p) = log.served_by() {
            response
                .headers
                .insert(failover::PROVIDER_HEADER, HeaderValue::from_static(p));
        }
        response
    }

    /// Checks what can be checked from the request head alone (route, caller auth) before
    /// the body is read. `None`: go on and read the body; else the (logged) refusal to send
    /// without reading the body. The local server uses this so that unauthenticated callers
    /// get no `100 Continue` and cost no body buffer.
    pub async fn admit(&self, head: &ProxyRequest) -> Option<ProxyResponse> {
        let check = async {
            if routes::route(&head.method, &head.path)? == routes::Route::Health {
                return Ok(());
            }
            let secret = tokio::time::timeout_at(head.deadline, self.secrets.get())
                .await
                .map_err(|_| {
                    ProxyError::Timeout(
                        "reading the secret did not finish before the request deadline".into(),
                    )
                })??;
            authenticate(self.config.caller_auth, head, &secret)
        };
        match check.await {
            Ok(()) => None,
            // The same checks again through `handle`, which logs the request and answers.
            Err(_) => Some(self.handle(head.clone()).await),
        }
    }

    async fn handle_inner(
        &self,
        req: &ProxyRequest,
        log: &RequestLog,
    ) -> Result<ProxyResponse, ProxyError> {
        // 1. route
        let route = routes::route(&req.method, &req.path)?;
        log.route(route);
        if route == routes::Route::Health {
            return Ok(routes::health());
        }
        // 2. auth
        let secret = tokio::time::timeout_at(req.deadline, self.secrets.get())
            .await
            .map_err(|_| {
                ProxyError::Timeout(
                    "reading the secret did not finish before the request deadline".into(),
                )
            })??;
        authenticate(self.config.caller_auth, req, &secret)?;
        // 3. validate (shape, policy) → 4. upstream → 5. response, per route
        validate::check_body(&req.headers, &req.body, self.config.max_request_bytes)?;
        match route {
            routes::Route::Chat => routes::chat(self, req, &secret, log).await,
            routes::Route::Messages => {
                routes::messages(self, req, &secret, upstream::Operation::Messages, log).await
            }
            routes::Route::CountTokens => {
                routes::messages(self, req, &secret, upstream::Operation::CountTokens, log).await
            }
            routes::Route::Health => Ok(routes::health()),
        }
    }

    pub(crate) fn provider(&self) -> &dyn Provider {
        self.provider.as_ref()
    }

    /// Step 4, the upstream: the provider, or with a fallback the one [`failover`] picks;
    /// `log` records which.
    pub(crate) async fn upstream(
        &self,
        req: upstream::UpstreamRequest,
        secret: &Secret,
        deadline: Instant,
        log: &RequestLog,
    ) -> Result<upstream::UpstreamResponse, ProxyError> {
        failover::send(
            self.provider(),
            self.failover.as_ref(),
            req,
            secret,
            deadline,
            log,
        )
        .await
    }
}

/// Step 2: a request whose API key API Gateway checked is the key's caller; any other
/// request (a Function URL, an HTTP API, a REST method without `apiKeyRequired`) presents a
/// caller token.
fn authenticate(mode: CallerAuth, req: &ProxyRequest, secret: &Secret) -> Result<(), ProxyError> {
    if req.api_key.is_some() {
        return Ok(());
    }
    auth::authenticate(mode, &req.headers, &secret.caller_tokens)
}

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
}

#[derive(Default)]
struct LogFields {
    route: Option<&'static str>,
    status: Option<u16>,
    upstream_status: Option<u16>,
    upstream_request_id: Option<String>,
    attempts: Option<u32>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    streamed: bool,
    error_type: Option<String>,
    error: Option<String>,
    /// What the upstream said when it answered an error (it may differ from what the caller
    /// was answered: a 401 becomes a 502 that says the proxy's credentials were refused).
    upstream_error: Option<String>,
    /// The provider that answered (`anthropic`, `bedrock`).
    provider: Option<&'static str>,
    /// Why the fallback answered (`primary_failed`, `breaker_open`, `probe_failed`).
    failover: Option<&'static str>,
    /// How the primary failed before the fallback answered.
    primary_error: Option<String>,
}

impl RequestLog {
    fn start(req: &ProxyRequest) -> Self {
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
        }))
    }

    fn with<R>(&self, f: impl FnOnce(&mut LogFields) -> R) -> R {
        f(&mut self.0.fields.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn route(&self, r: routes::Route) {
        self.with(|f| f.route = Some(r.name()));
    }
    fn status(&self, s: StatusCode) {
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
        tracing::info!(
            method = %self.method,
            path = %self.path,
            api_key_id = self.api_key_id.as_deref(),
            route = f.route.unwrap_or("none"),
            status = f.status,
            latency_ms = self.started.elapsed().as_millis() as u64,
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
