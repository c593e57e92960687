//! The Lambda adapter. The response mode is chosen per invocation:
//! - requests through API Gateway HTTP API (payload 2.0) are answered buffered, with the
//!   `GATEWAY_DEADLINE_MS` deadline (the gateway gives up at 30 s and cannot stream);
//! - requests through an API Gateway REST API (payload 1.0, [`rest`]) follow
//!   `REST_RESPONSE_MODE`: `stream` (an integration in `responseTransferMode: STREAM`, invoked
//!   with InvokeWithResponseStream, up to 15 minutes) answers in the same streaming format as a
//!   Function URL; `buffered` in the REST proxy response format, with the gateway deadline;
//! - Function URL requests follow `RESPONSE_MODE`: `stream` answers with a streaming
//!   response (JSON prelude, then the body as it is produced), `buffered` with one JSON
//!   response document.

pub mod rest;

use crate::config::ResponseMode;
use crate::{App, ProxyRequest, ProxyResponse, ResponseBody};
use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};
use lambda_http::aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayV2httpResponse};
use lambda_http::aws_lambda_events::encodings::Body as LambdaBody;
use lambda_http::request::LambdaRequest;
use lambda_runtime::{FunctionResponse, LambdaEvent, MetadataPrelude, StreamResponse};
use serde::Serialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// The streamed body type handed to the runtime.
pub type LambdaStream = BoxStream<'static, Result<Bytes, Infallible>>;
/// What one invocation returns.
pub type LambdaResponse = FunctionResponse<BufferedResponse, LambdaStream>;

/// A buffered answer, in the format of the front that sent the event.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum BufferedResponse {
    /// Function URL and HTTP API (payload 2.0).
    V2(ApiGatewayV2httpResponse),
    /// REST API (payload 1.0).
    Rest(ApiGatewayProxyResponse),
}

/// How an invocation is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Buffered, deadline capped by `GATEWAY_DEADLINE_MS`.
    Gateway,
    /// A Function URL in `RESPONSE_MODE`.
    FunctionUrl(ResponseMode),
    /// A REST API in `REST_RESPONSE_MODE` (buffered: capped by `GATEWAY_DEADLINE_MS`).
    Rest(ResponseMode),
}

impl Delivery {
    /// The deadline cap of this delivery (`None`: the Lambda context's deadline alone).
    fn cap(self, gateway_deadline: Duration) -> Option<Duration> {
        match self {
            Delivery::Gateway | Delivery::Rest(ResponseMode::Buffered) => Some(gateway_deadline),
            Delivery::FunctionUrl(_) | Delivery::Rest(ResponseMode::Stream) => None,
        }
    }
}

/// True for events from API Gateway HTTP API: its domain (`*.execute-api.*`) or a route
/// key other than the `$default` that Function URLs always carry.
pub fn is_api_gateway(domain_name: Option<&str>, route_key: Option<&str>) -> bool {
    domain_name.is_some_and(|d| d.contains(".execute-api."))
        || route_key.is_some_and(|k| k != "$default")
}

/// Deadline values below this (1 Jan 2001 in ms since the epoch) are not timestamps: Lambda
/// emulators such as cargo-lambda's send a duration (600000) instead. Those are taken as
/// milliseconds from the start of the invocation.
const PLAUSIBLE_EPOCH_MS: u64 = 978_307_200_000;

/// Time left for this invocation: the context deadline minus `margin`, capped by `cap`.
pub fn time_budget(
    context_deadline_ms: u64,
    now: SystemTime,
    margin: Duration,
    cap: Option<Duration>,
) -> Duration {
    let left = if context_deadline_ms < PLAUSIBLE_EPOCH_MS {
        Duration::from_millis(context_deadline_ms)
    } else {
        let deadline = UNIX_EPOCH + Duration::from_millis(context_deadline_ms);
        deadline.duration_since(now).unwrap_or(Duration::ZERO)
    };
    let left = left.saturating_sub(margin);
    match cap {
        Some(c) => left.min(c),
        None => left,
    }
}

/// Answers one invocation; never fails (errors are HTTP responses).
pub async fn handle_event(app: &App, event: LambdaEvent<LambdaRequest>) -> LambdaResponse {
    let LambdaEvent { payload, context } = event;
    let delivery = delivery(app, &payload);
    let budget = time_budget(
        context.deadline,
        SystemTime::now(),
        app.config.deadline_margin,
        delivery.cap(app.config.gateway_deadline),
    );
    let deadline = Instant::now() + budget;
    tracing::debug!(
        ?delivery,
        budget_ms = budget.as_millis() as u64,
        "invocation"
    );
    let request = match payload {
        LambdaRequest::ApiGatewayV1(ev) => rest::request(ev, deadline),
        other => v2_request(other, deadline),
    };
    let response = app.handle(request).await;

    match delivery {
        Delivery::FunctionUrl(ResponseMode::Stream) | Delivery::Rest(ResponseMode::Stream) => {
            streaming(response)
        }
        Delivery::Rest(ResponseMode::Buffered) => {
            let (status, headers, body) = response.into_bytes().await;
            FunctionResponse::BufferedResponse(BufferedResponse::Rest(rest::response(
                status, headers, body,
            )))
        }
        _ => buffered(response).await,
    }
}

/// Which front sent the event, and so how it is answered.
pub fn delivery(app: &App, payload: &LambdaRequest) -> Delivery {
    #[allow(unreachable_patterns)]
    match payload {
        LambdaRequest::ApiGatewayV2(ev) => {
            let route_key = ev
                .route_key
                .as_deref()
                .or(ev.request_context.route_key.as_deref());
            if is_api_gateway(ev.request_context.domain_name.as_deref(), route_key) {
                Delivery::Gateway
            } else {
                Delivery::FunctionUrl(app.config.response_mode)
            }
        }
        LambdaRequest::ApiGatewayV1(_) => Delivery::Rest(app.config.rest_response_mode),
        _ => Delivery::Gateway,
    }
}

/// A payload-2.0 event (Function URL, HTTP API) read into a request.
fn v2_request(payload: LambdaRequest, deadline: Instant) -> ProxyRequest {
    let request: lambda_http::Request = payload.into();
    let (parts, body) = request.into_parts();
    let body = match body {
        lambda_http::Body::Empty => Bytes::new(),
        lambda_http::Body::Text(s) => Bytes::from(s),
        lambda_http::Body::Binary(b) => Bytes::from(b),
        #[allow(unreachable_patterns)]
        _ => Bytes::new(),
    };
    ProxyRequest {
        method: parts.method,
        path: parts.uri.path().to_string(),
        headers: parts.headers,
        body,
        deadline,
        api_key: None,
    }
}

fn streaming(response: ProxyResponse) -> LambdaResponse {
    let stream: LambdaStream = match response.body {
        ResponseBody::Full(b) => futures_util::stream::iter([Ok(b)]).boxed(),
        ResponseBody::Stream(s) => s.map(Ok).boxed(),
    };
    let prelude = MetadataPrelude {
        status_code: response.status,
        headers: response.headers,
        ..Default::default()
    };
    FunctionResponse::StreamingResponse(StreamResponse {
        metadata_prelude: prelude,
        stream,
    })
}

async fn buffered(response: ProxyResponse) -> LambdaResponse {
    let (status, headers, body) = response.into_bytes().await;
    let mut out = ApiGatewayV2httpResponse::default();
    out.status_code = status.as_u16() as i64;
    out.headers = headers;
    match String::from_utf8(body.to_vec()) {
        Ok(text) => {
            out.body = Some(LambdaBody::Text(text));
            out.is_base64_encoded = false;
        }
        Err(e) => {
            out.body = Some(LambdaBody::Binary(e.into_bytes()));
            out.is_base64_encoded = true;
        }
    }
    FunctionResponse::BufferedResponse(BufferedResponse::V2(out))
}

/// Runs the Lambda runtime loop with this app (the `bootstrap` binary's main loop).
pub async fn run(app: Arc<App>) -> Result<(), lambda_runtime::Error> {
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: LambdaEvent<LambdaRequest>| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(handle_event(&app, event).await) }
        },
    ))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_detection() {
        assert!(is_api_gateway(
            Some("abc.execute-api.us-east-1.amazonaws.com"),
            Some("$default")
        ));
        assert!(is_api_gateway(Some("api.example.com"), Some("POST /chat")));
        assert!(!is_api_gateway(
            Some("abc.lambda-url.us-east-1.on.aws"),
            Some("$default")
        ));
        assert!(!is_api_gateway(Some("localhost"), Some("$default")));
        assert!(!is_api_gateway(None, None));
    }

    /// A request API Gateway checked the key of needs no caller token; any other does.
    #[tokio::test]
    async fn a_checked_api_key_stands_in_for_the_caller_token() {
        let config = crate::Config::new(crate::SecretConfig::Local {
            anthropic_api_key: "sk-test".into(),
            caller_tokens: vec!["tok".into()],
        });
        let app = App::new(config).await.unwrap();
        let req = |api_key: Option<crate::GatewayKey>| ProxyRequest {
            method: http::Method::POST,
            path: "/v1/messages".into(),
            headers: http::HeaderMap::new(),
            // Not JSON: a request past authentication answers 400.
            body: Bytes::from_static(b"not json"),
            deadline: Instant::now() + Duration::from_secs(5),
            api_key,
        };
        assert_eq!(app.handle(req(None)).await.status, 401);
        let key = crate::GatewayKey {
            api_id: "a".into(),
            stage: "live".into(),
            key_id: "k".into(),
        };
        assert_eq!(app.handle(req(Some(key.clone()))).await.status, 400);
        assert!(app.admit(&req(Some(key))).await.is_none());
        assert!(app.admit(&req(None)).await.is_some());
    }

    #[test]
    fn rest_streaming_has_no_gateway_cap() {
        let g = Duration::from_secs(28);
        assert_eq!(Delivery::Rest(ResponseMode::Stream).cap(g), None);
        assert_eq!(Delivery::Rest(ResponseMode::Buffered).cap(g), Some(g));
        assert_eq!(Delivery::Gateway.cap(g), Some(g));
        assert_eq!(Delivery::FunctionUrl(ResponseMode::Buffered).cap(g), None);
    }

    #[test]
    fn budget_from_context_deadline() {
        let now = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let deadline_ms = 2_000_000_000_000 + 30_000;
        let m = Duration::from_millis(1_500);
        assert_eq!(
            time_budget(deadline_ms, now, m, None),
            Duration::from_millis(28_500)
        );
        assert_eq!(
            time_budget(deadline_ms, now, m, Some(Duration::from_secs(10))),
            Duration::from_secs(10)
        );
        // Already past: nothing left (the request answers 504 at once).
        assert_eq!(
            time_budget(2_000_000_000_000 - 5, now, m, None),
            Duration::ZERO
        );
        // An emulator's relative value.
        assert_eq!(
            time_budget(600_000, now, m, None),
            Duration::from_millis(598_500)
        );
    }
}
