//! The Lambda adapter. The response mode is chosen per invocation:
//! - requests through API Gateway HTTP API (payload 2.0) are answered buffered, with the
//!   `GATEWAY_DEADLINE_MS` deadline (the gateway gives up at 30 s and cannot stream);
//! - Function URL requests follow `RESPONSE_MODE`: `stream` answers with a streaming
//!   response (JSON prelude, then the body as it is produced), `buffered` with one JSON
//!   response document.

use crate::config::ResponseMode;
use crate::{App, ProxyRequest, ProxyResponse, ResponseBody};
use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};
use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use lambda_http::aws_lambda_events::encodings::Body as LambdaBody;
use lambda_http::request::LambdaRequest;
use lambda_runtime::{FunctionResponse, LambdaEvent, MetadataPrelude, StreamResponse};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// The streamed body type handed to the runtime.
pub type LambdaStream = BoxStream<'static, Result<Bytes, Infallible>>;
/// What one invocation returns.
pub type LambdaResponse = FunctionResponse<ApiGatewayV2httpResponse, LambdaStream>;

/// How an invocation is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Buffered, deadline capped by `GATEWAY_DEADLINE_MS`.
    Gateway,
    /// A Function URL in `RESPONSE_MODE`.
    FunctionUrl(ResponseMode),
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
    #[allow(unreachable_patterns)]
    let delivery = match &payload {
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
        _ => Delivery::Gateway,
    };
    let cap = (delivery == Delivery::Gateway).then_some(app.config.gateway_deadline);
    let budget = time_budget(
        context.deadline,
        SystemTime::now(),
        app.config.deadline_margin,
        cap,
    );
    let deadline = Instant::now() + budget;

    let request: lambda_http::Request = payload.into();
    let (parts, body) = request.into_parts();
    let body = match body {
        lambda_http::Body::Empty => Bytes::new(),
        lambda_http::Body::Text(s) => Bytes::from(s),
        lambda_http::Body::Binary(b) => Bytes::from(b),
        #[allow(unreachable_patterns)]
        _ => Bytes::new(),
    };
    tracing::debug!(
        ?delivery,
        budget_ms = budget.as_millis() as u64,
        "invocation"
    );
    let response = app
        .handle(ProxyRequest {
            method: parts.method,
            path: parts.uri.path().to_string(),
            headers: parts.headers,
            body,
            deadline,
        })
        .await;

    match delivery {
        Delivery::FunctionUrl(ResponseMode::Stream) => streaming(response),
        _ => buffered(response).await,
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
    FunctionResponse::BufferedResponse(out)
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
