//! The same routes over plain HTTP/1.1 (for `cargo xtask dev`, tests and benches). Bodies
//! stream chunk by chunk; each request's deadline is `LOCAL_DEADLINE_MS`.

use crate::{App, ProxyRequest, ProxyResponse, ResponseBody};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::time::Instant;

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Serves `app` on `listener` until the future is dropped (accept errors are logged and
/// serving goes on, so it does not return on its own).
pub async fn serve(listener: TcpListener, app: Arc<App>) -> std::io::Result<()> {
    loop {
        let (stream, _peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: wait a little, keep serving.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(handle(&app, req).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
}

async fn handle(app: &App, req: http::Request<Incoming>) -> http::Response<Body> {
    let deadline = Instant::now() + app.config.local_deadline;
    let (parts, body) = req.into_parts();
    let limit = app.config.max_request_bytes;
    let body = match Limited::new(body, limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            let err = if e
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                crate::ProxyError::RequestTooLarge {
                    size: parts
                        .headers
                        .get(http::header::CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok()?.parse().ok())
                        .unwrap_or(limit + 1),
                    limit,
                }
            } else {
                crate::ProxyError::InvalidRequest(format!("could not read the request body: {e}"))
            };
            return to_http(ProxyResponse::error(&err));
        }
    };
    let response = app
        .handle(ProxyRequest {
            method: parts.method,
            path: parts.uri.path().to_string(),
            headers: parts.headers,
            body,
            deadline,
        })
        .await;
    to_http(response)
}

fn to_http(response: ProxyResponse) -> http::Response<Body> {
    let body: Body = match response.body {
        ResponseBody::Full(b) => Full::new(b).boxed_unsync(),
        ResponseBody::Stream(s) => {
            StreamBody::new(s.map(|b| Ok::<_, Infallible>(Frame::data(b)))).boxed_unsync()
        }
    };
    let mut out = http::Response::new(body);
    *out.status_mut() = response.status;
    *out.headers_mut() = response.headers;
    out
}
