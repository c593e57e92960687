//! The same routes over plain HTTP/1.1 (for `cargo xtask dev`, tests and benches). Bodies
//! stream chunk by chunk; each request's deadline is `LOCAL_DEADLINE_MS`.
//!
//! A request is routed and its caller authenticated from the head alone, and a
//! `Content-Length` over `MAX_REQUEST_BYTES` is refused, before any of the body is read (so
//! no `100 Continue` goes to a caller that is refused). Headers, and an admitted body, must
//! arrive within `LOCAL_READ_TIMEOUT_MS`, or the connection is closed (headers) or answered
//! 408 (body).

use crate::{App, ProxyRequest, ProxyResponse, ResponseBody};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
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
        let read_timeout = app.config.local_read_timeout;
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(handle(&app, req).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(read_timeout)
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
    let mut request = ProxyRequest {
        method: parts.method,
        path: parts.uri.path().to_string(),
        headers: parts.headers,
        body: Bytes::new(),
        deadline,
        api_key: None,
    };
    // Route and authenticate from the head; the body is not read for a refused caller.
    if let Some(refused) = app.admit(&request).await {
        return to_http(refused);
    }
    let limit = app.config.max_request_bytes;
    let declared = request
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    if let Some(size) = declared.filter(|n| *n > limit as u64) {
        let err = crate::ProxyError::RequestTooLarge {
            size: size.min(usize::MAX as u64) as usize,
            limit,
        };
        tracing::info!(
            status = 413,
            declared = size,
            "request refused before its body was read"
        );
        return to_http(ProxyResponse::error(&err));
    }
    let read = tokio::time::timeout(
        app.config.local_read_timeout,
        Limited::new(body, limit).collect(),
    );
    let body = match read.await {
        Err(_) => {
            let err = crate::ProxyError::RequestTimeout(format!(
                "the request body did not arrive within {} ms (LOCAL_READ_TIMEOUT_MS)",
                app.config.local_read_timeout.as_millis()
            ));
            tracing::info!(status = 408, "request body too slow");
            return to_http(ProxyResponse::error(&err));
        }
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) => {
            let err = if e
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                crate::ProxyError::RequestTooLarge {
                    size: limit + 1,
                    limit,
                }
            } else {
                crate::ProxyError::InvalidRequest(format!("could not read the request body: {e}"))
            };
            return to_http(ProxyResponse::error(&err));
        }
    };
    request.body = body;
    to_http(app.handle(request).await)
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
