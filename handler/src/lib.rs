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
pub mod callers;
pub mod config;
pub mod error;
pub mod failover;
pub mod lambda;
pub mod local;
pub mod metrics;
pub mod model_map;
pub mod redact;
pub mod request_log;
pub mod routes;
pub mod secrets;
pub mod sse;
pub mod tls;
pub mod upstream;
pub mod validate;

pub use bedrock::BedrockProvider;
pub use config::{BedrockConfig, CallerAuth, Config, ProviderKind, ResponseMode, SecretConfig};
pub use error::{ConfigError, ProxyError};
pub use request_log::RequestLog;
pub use secrets::{Secret, SecretCache, SecretSource};
pub use upstream::{AnthropicProvider, Provider, RetryPolicy};

use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use std::sync::Arc;
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
    /// `requestContext.identity.apiKeyId`: names the caller whose secret entry holds it.
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
    /// Where each request's EMF line goes ([`metrics`]): standard output on Lambda (where
    /// `AWS_LAMBDA_FUNCTION_NAME` is set), none elsewhere unless [`App::set_metrics_sink`].
    metrics: std::sync::RwLock<Option<(metrics::Sink, String)>>,
}

/// `f`, unless the request's deadline comes first (reading the secret).
async fn before<T>(
    deadline: Instant,
    f: impl std::future::Future<Output = T>,
) -> Result<T, ProxyError> {
    tokio::time::timeout_at(deadline, f).await.map_err(|_| {
        ProxyError::Timeout("reading the secret did not finish before the request deadline".into())
    })
}

/// The EMF sink on Lambda: standard output, with the function's name as dimension.
fn default_metrics() -> std::sync::RwLock<Option<(metrics::Sink, String)>> {
    let on_lambda = std::env::var("AWS_LAMBDA_FUNCTION_NAME")
        .ok()
        .filter(|n| !n.is_empty());
    std::sync::RwLock::new(on_lambda.map(|name| (metrics::stdout_sink(), name)))
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
            _ if no_secret => SecretSource::Static(Secret::default()),
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
                callers: Vec::new(),
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
            metrics: default_metrics(),
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
            metrics: default_metrics(),
        })
    }

    /// Sends each request's EMF line to `sink`, with `function` as the `function` dimension
    /// (tests, local runs).
    pub fn set_metrics_sink(&self, sink: metrics::Sink, function: &str) {
        *self.metrics.write().unwrap_or_else(|e| e.into_inner()) =
            Some((sink, function.to_string()));
    }

    fn metrics_sink(&self) -> Option<(metrics::Sink, String)> {
        self.metrics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
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
        let log = RequestLog::start(&req, self.metrics_sink());
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
            self.authenticate(head).await.map(|_| ())
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
        let (secret, caller) = self.authenticate(req).await?;
        log.caller(&caller.name);
        // 3. validate (shape, the stack's policy, the caller's limits) → 4. upstream →
        // 5. response, per route
        validate::check_body(&req.headers, &req.body, self.config.max_request_bytes)?;
        let op = |op| routes::messages(self, req, &secret, &caller, op, log);
        match route {
            routes::Route::Chat => routes::chat(self, req, &secret, &caller, log).await,
            routes::Route::Messages => op(upstream::Operation::Messages).await,
            routes::Route::CountTokens => op(upstream::Operation::CountTokens).await,
            routes::Route::Health => Ok(routes::health()),
        }
    }

    /// The secret and the caller: a token no caller has is checked once more against the
    /// secret read again (at most every [`secrets::UNKNOWN_TOKEN_REFRESH`]), so a caller added
    /// moments ago is accepted before the cache's TTL runs out.
    async fn authenticate(
        &self,
        req: &ProxyRequest,
    ) -> Result<(Arc<Secret>, callers::Identity), ProxyError> {
        let secret = before(req.deadline, self.secrets.get()).await??;
        // A request whose API key API Gateway checked (a REST API method with
        // `apiKeyRequired`) is the key's caller: the usage plan limits it. Any other request (a
        // Function URL, an HTTP API) presents a caller token.
        // The caller is the one whose secret entry holds the key's id (its own limits apply
        // too); a key no entry holds yet is looked up once more in the secret read again (a
        // caller added moments ago), else named `api-key-<id>`.
        if let Some(key) = &req.api_key {
            if let Some(caller) = callers::by_api_key(&key.key_id, &secret.callers) {
                return Ok((secret, caller));
            }
            if let Some(newer) =
                before(req.deadline, self.secrets.reread_for_unknown_token()).await?
            {
                if let Some(caller) = callers::by_api_key(&key.key_id, &newer.callers) {
                    return Ok((newer, caller));
                }
            }
            return Ok((secret, callers::unnamed_api_key(&key.key_id)));
        }
        match auth::authenticate(self.config.caller_auth, &req.headers, &secret) {
            Ok(caller) => Ok((secret, caller)),
            Err(e) if auth::presented_token(&req.headers).is_some() => {
                match before(req.deadline, self.secrets.reread_for_unknown_token()).await? {
                    Some(newer) => {
                        let caller =
                            auth::authenticate(self.config.caller_auth, &req.headers, &newer)?;
                        Ok((newer, caller))
                    }
                    None => Err(e),
                }
            }
            Err(e) => Err(e),
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
