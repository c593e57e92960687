//! What a programmed [`Fault`] makes of one request of the fake Messages API.

use super::{error_response, sse, sse_response, Fault};
use crate::http::{full, Body, BoxError};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use hyper::body::Frame;
use serde_json::json;
use std::time::Duration;
use tokio::sync::mpsc;

/// What a programmed fault makes of a request.
pub(super) enum FaultPlan {
    /// This answer instead of the normal one.
    Answer(Response<Body>),
    /// The normal answer, after `delay`, its stream broken as `breaks` says.
    Serve {
        delay: Option<Duration>,
        breaks: StreamBreak,
    },
}

/// Where a normal event stream is cut short.
#[derive(Clone, Copy)]
pub(super) struct StreamBreak {
    /// The connection breaks before this event.
    pub(super) drop_after: Option<usize>,
    /// An `error` event (overloaded) replaces this event and ends the stream.
    pub(super) error_after: Option<usize>,
}

/// What `fault` (the next programmed one, if any) makes of this request.
pub(super) fn plan_fault(
    fault: Option<Fault>,
    headers: &HeaderMap,
    request_id: &str,
    received_key: &str,
) -> FaultPlan {
    let mut headers = headers.clone();
    let serve = |delay, drop_after, error_after| FaultPlan::Serve {
        delay,
        breaks: StreamBreak {
            drop_after,
            error_after,
        },
    };
    match fault {
        Some(Fault::Redirect { status, location }) => {
            headers.insert(
                "location",
                HeaderValue::from_str(&location).expect("a valid Location"),
            );
            let mut r = Response::new(full(Bytes::new()));
            *r.status_mut() = StatusCode::from_u16(status).expect("a valid status");
            *r.headers_mut() = headers;
            FaultPlan::Answer(r)
        }
        Some(Fault::QuoteKey { status }) => FaultPlan::Answer(error_response(
            status,
            &format!("invalid x-api-key: {received_key}"),
            headers,
            request_id,
        )),
        Some(Fault::Html { status }) => {
            headers.insert(
                "content-type",
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            let mut r = Response::new(full(
                "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>",
            ));
            *r.status_mut() = StatusCode::from_u16(status).expect("a valid status");
            *r.headers_mut() = headers;
            FaultPlan::Answer(r)
        }
        Some(Fault::ShouldRetry { status }) => {
            headers.insert("x-should-retry", HeaderValue::from_static("true"));
            FaultPlan::Answer(error_response(
                status,
                "Bad request (marked retryable)",
                headers,
                request_id,
            ))
        }
        Some(Fault::Unterminated { bytes }) => {
            let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
            tokio::spawn(async move {
                let start = json!({"type": "message_start", "message": {"id": "msg_unterminated",
                    "type": "message", "role": "assistant", "model": "claude-haiku-4-5", "content": [],
                    "usage": {"input_tokens": 1, "output_tokens": 1}}});
                if tx
                    .send(Ok(Frame::data(sse("message_start", &start))))
                    .await
                    .is_err()
                {
                    return;
                }
                let head = Bytes::from_static(b"event: content_block_delta\ndata: ");
                if tx.send(Ok(Frame::data(head))).await.is_err() {
                    return;
                }
                let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
                let mut sent = 0;
                while sent < bytes {
                    let n = chunk.len().min(bytes - sent);
                    if tx.send(Ok(Frame::data(chunk.slice(..n)))).await.is_err() {
                        return;
                    }
                    sent += n;
                }
            });
            FaultPlan::Answer(sse_response(headers, rx))
        }
        Some(Fault::StreamErrorQuotingKey) => {
            let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
            let err = json!({"type": "error", "error": {"type": "authentication_error",
                "message": format!("invalid x-api-key: {received_key}")}});
            tokio::spawn(async move {
                let _ = tx.send(Ok(Frame::data(sse("error", &err)))).await;
            });
            FaultPlan::Answer(sse_response(headers, rx))
        }
        Some(Fault::Error {
            status,
            retry_after,
            retry_after_ms,
        }) => {
            if let Some(v) = retry_after {
                headers.insert("retry-after", HeaderValue::from_str(&v).unwrap());
            }
            if let Some(v) = retry_after_ms {
                headers.insert("retry-after-ms", HeaderValue::from_str(&v).unwrap());
            }
            let message = match status {
                429 => "Number of request tokens has exceeded your per-minute rate limit",
                529 => "Overloaded",
                _ => "Internal server error",
            };
            FaultPlan::Answer(error_response(status, message, headers, request_id))
        }
        Some(Fault::DelayFirstByte(d)) => serve(Some(d), None, None),
        Some(Fault::DropMidStream { after_events }) => serve(None, Some(after_events), None),
        Some(Fault::StreamError { after_events }) => serve(None, None, Some(after_events)),
        None => serve(None, None, None),
    }
}
