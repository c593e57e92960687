//! An instance's Lambda Runtime API (`/2018-06-01/runtime/...`), served on its own loopback
//! port: `invocation/next` long-polls, `invocation/{id}/response` takes buffered and streamed
//! answers, `invocation/{id}/error` and `init/error` report failures.

use super::instance::Instance;
use super::invocation::MAX_PAYLOAD;
use super::invocation::{exit_error, timeout_error, FunctionError, Outcome, StreamEvent};
use super::slot::ReplyError;
use crate::http::{full, read_limited, Body, ReadError, Server};
use anyhow::{Context, Result};
use base64::Engine as _;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

const STREAM_ERROR_PREFIX: &[u8] = b"Lambda-Runtime-Function-Error-Type:";

/// A free port on 127.0.0.1 for an instance's Runtime API (bound before the process starts,
/// so its address can be in the process's environment).
pub(super) fn bind() -> Result<TcpListener> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .context("binding a Runtime API port on 127.0.0.1")?;
    listener.set_nonblocking(true)?;
    Ok(TcpListener::from_std(listener)?)
}

/// Serves `instance`'s Runtime API on `listener`.
pub(super) fn serve(listener: TcpListener, instance: Arc<Instance>) -> Result<Server> {
    Server::start(listener, move |req, _peer| handle(instance.clone(), req))
        .context("starting a Runtime API server")
}

/// A Runtime API request, by method and path.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Next,
    Response(String),
    Error(String),
    InitError,
}

impl Route {
    fn of(method: &Method, path: &str) -> Option<Route> {
        let rest = path.strip_prefix("/2018-06-01/runtime/")?;
        let parts: Vec<&str> = rest.split('/').collect();
        Some(match (method, parts.as_slice()) {
            (&Method::GET, ["invocation", "next"]) => Route::Next,
            (&Method::POST, ["invocation", id, "response"]) => Route::Response(id.to_string()),
            (&Method::POST, ["invocation", id, "error"]) => Route::Error(id.to_string()),
            (&Method::POST, ["init", "error"]) => Route::InitError,
            _ => return None,
        })
    }
}

async fn handle(instance: Arc<Instance>, req: Request<Incoming>) -> Response<Body> {
    match Route::of(req.method(), req.uri().path()) {
        Some(Route::Next) => next(instance).await,
        Some(Route::Response(id)) => response(&instance, &id, req).await,
        Some(Route::Error(id)) => error(&instance, &id, req).await,
        Some(Route::InitError) => init_error(&instance, req).await,
        None => runtime_error(
            StatusCode::NOT_FOUND,
            "NotFound",
            "unknown Runtime API path",
        ),
    }
}

/// `GET /runtime/invocation/next`: long-polls until an invocation is queued.
async fn next(instance: Arc<Instance>) -> Response<Body> {
    let next = instance.next_invocation().await;
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .header("lambda-runtime-aws-request-id", &next.request_id)
        .header(
            "lambda-runtime-deadline-ms",
            super::ids::epoch_millis(next.deadline).to_string(),
        )
        .header(
            "lambda-runtime-invoked-function-arn",
            &instance.config().function_arn,
        )
        .header(
            "lambda-runtime-trace-id",
            super::ids::trace_header(next.now),
        )
        .body(full(next.payload))
        .expect("valid response")
}

/// The reply channel of the active invocation `id`, or the Runtime API's answer why not.
fn take_reply(
    instance: &Instance,
    id: &str,
) -> Result<oneshot::Sender<Outcome>, Box<Response<Body>>> {
    instance.take_reply(id).map_err(|e| {
        Box::new(match e {
            ReplyError::AlreadyAnswered => runtime_error(
                StatusCode::BAD_REQUEST,
                "InvalidStateTransition",
                "State transition from Ready to InvocationResponse failed for runtime. Error: the invocation has already been answered",
            ),
            ReplyError::UnknownRequest => runtime_error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestID",
                "Invalid request ID",
            ),
        })
    })
}

fn header<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// `POST /runtime/invocation/{id}/response`, buffered or streamed.
async fn response(instance: &Instance, id: &str, req: Request<Incoming>) -> Response<Body> {
    let streaming = header(&req, "lambda-runtime-function-response-mode")
        .is_some_and(|v| v.eq_ignore_ascii_case("streaming"));
    if streaming {
        let reply = match take_reply(instance, id) {
            Ok(r) => r,
            Err(resp) => return *resp,
        };
        let content_type = header(&req, "content-type").map(str::to_string);
        let (tx, events) = mpsc::channel(16);
        let _ = reply.send(Outcome::Streaming {
            content_type,
            events,
        });
        let end = relay_stream(instance, id, req.into_body(), &tx).await;
        let _ = tx.send(end).await;
        instance.complete(id);
        return accepted();
    }

    let body = match read_limited(req.into_body(), MAX_PAYLOAD).await {
        Ok(b) => b,
        Err(ReadError::TooLarge) => {
            if let Ok(reply) = instance.take_reply(id) {
                let _ = reply.send(Outcome::Error(FunctionError {
                    error_type: "Function.ResponseSizeTooLarge".into(),
                    error_message: format!(
                        "Response payload size exceeded maximum allowed payload size ({MAX_PAYLOAD} bytes)."
                    ),
                }));
            }
            instance.complete(id);
            return runtime_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                &format!("Exceeded maximum allowed payload size ({MAX_PAYLOAD} bytes)."),
            );
        }
        Err(ReadError::Broken(e)) => {
            return runtime_error(StatusCode::BAD_REQUEST, "InvalidRequest", &e)
        }
    };
    let reply = match take_reply(instance, id) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let _ = reply.send(Outcome::Buffered(body));
    instance.complete(id);
    accepted()
}

/// Forwards a streamed response body; returns how it ended.
async fn relay_stream(
    instance: &Instance,
    id: &str,
    mut body: Incoming,
    tx: &mpsc::Sender<StreamEvent>,
) -> StreamEvent {
    loop {
        match body.frame().await {
            None => return StreamEvent::End,
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    // lambda_runtime writes a mid-stream error into the body in the shape
                    // of the trailers it announced (`Trailer:` header).
                    if data.starts_with(STREAM_ERROR_PREFIX) {
                        if let Some(e) = parse_error_lines(&data) {
                            return StreamEvent::Error(e);
                        }
                    }
                    // A client that went away does not stop the function.
                    let _ = tx.send(StreamEvent::Data(data)).await;
                }
                Err(frame) => {
                    let trailers = frame.trailers_ref();
                    let error_type =
                        trailers.and_then(|t| t.get("lambda-runtime-function-error-type"));
                    if let Some(t) = error_type {
                        let body = trailers
                            .and_then(|t| t.get("lambda-runtime-function-error-body"))
                            .map(|v| v.as_bytes().to_vec())
                            .unwrap_or_default();
                        return StreamEvent::Error(stream_error(
                            String::from_utf8_lossy(t.as_bytes()).into_owned(),
                            &body,
                        ));
                    }
                }
            },
            Some(Err(e)) => {
                return StreamEvent::Error(if instance.timed_out(id) {
                    timeout_error(id, instance.config().timeout.as_secs_f64())
                } else {
                    exit_error(id, &format!("the response stream broke: {e}"))
                });
            }
        }
    }
}

/// `POST /runtime/invocation/{id}/error`.
async fn error(instance: &Instance, id: &str, req: Request<Incoming>) -> Response<Body> {
    let header_type = header(&req, "lambda-runtime-function-error-type")
        .unwrap_or("Unhandled")
        .to_string();
    let body = read_limited(req.into_body(), MAX_PAYLOAD)
        .await
        .unwrap_or_default();
    let reply = match take_reply(instance, id) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let _ = reply.send(Outcome::Error(diagnostic(&body, &header_type)));
    instance.complete(id);
    accepted()
}

/// `POST /runtime/init/error`: the queued invocation fails, the instance is discarded.
async fn init_error(instance: &Instance, req: Request<Incoming>) -> Response<Body> {
    let header_type = header(&req, "lambda-runtime-function-error-type")
        .unwrap_or("Runtime.InitError")
        .to_string();
    let body = read_limited(req.into_body(), MAX_PAYLOAD)
        .await
        .unwrap_or_default();
    instance.init_failed(diagnostic(&body, &header_type));
    accepted()
}

/// A Lambda error document (`{"errorType": .., "errorMessage": ..}`) or whatever was sent.
fn diagnostic(body: &[u8], header_type: &str) -> FunctionError {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Diag {
        error_type: Option<String>,
        error_message: Option<String>,
    }
    match serde_json::from_slice::<Diag>(body) {
        Ok(d) => FunctionError {
            error_type: d.error_type.unwrap_or_else(|| header_type.to_string()),
            error_message: d.error_message.unwrap_or_default(),
        },
        Err(_) => FunctionError {
            error_type: header_type.to_string(),
            error_message: String::from_utf8_lossy(body).into_owned(),
        },
    }
}

/// `Lambda-Runtime-Function-Error-Type: X\r\nLambda-Runtime-Function-Error-Body: <base64>\r\n`.
fn parse_error_lines(data: &[u8]) -> Option<FunctionError> {
    let text = std::str::from_utf8(data).ok()?;
    let mut headers: HashMap<String, String> = HashMap::new();
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        let (k, v) = line.split_once(':')?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    let error_type = headers.remove("lambda-runtime-function-error-type")?;
    let body = headers
        .remove("lambda-runtime-function-error-body")
        .unwrap_or_default();
    Some(stream_error(error_type, body.as_bytes()))
}

/// A mid-stream error: its type, and its error document in base64 (or as sent).
fn stream_error(error_type: String, body_b64: &[u8]) -> FunctionError {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(body_b64)
        .unwrap_or_else(|_| body_b64.to_vec());
    let d = diagnostic(&decoded, &error_type);
    FunctionError {
        error_type,
        error_message: d.error_message,
    }
}

fn accepted() -> Response<Body> {
    Response::builder()
        .status(StatusCode::ACCEPTED)
        .header("content-type", "application/json")
        .body(full(Bytes::from_static(b"{\"status\":\"OK\"}")))
        .expect("valid response")
}

fn runtime_error(status: StatusCode, error_type: &str, message: &str) -> Response<Body> {
    crate::http::json_response(
        status,
        &serde_json::json!({"errorMessage": message, "errorType": error_type}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_the_runtime_apis() {
        let r = |m: Method, p: &str| Route::of(&m, p);
        assert_eq!(
            r(Method::GET, "/2018-06-01/runtime/invocation/next"),
            Some(Route::Next)
        );
        assert_eq!(
            r(Method::POST, "/2018-06-01/runtime/invocation/abc/response"),
            Some(Route::Response("abc".into()))
        );
        assert_eq!(
            r(Method::POST, "/2018-06-01/runtime/invocation/abc/error"),
            Some(Route::Error("abc".into()))
        );
        assert_eq!(
            r(Method::POST, "/2018-06-01/runtime/init/error"),
            Some(Route::InitError)
        );
        assert_eq!(r(Method::POST, "/2018-06-01/runtime/invocation/next"), None);
        assert_eq!(r(Method::GET, "/2019-01-01/runtime/invocation/next"), None);
        assert_eq!(
            r(Method::POST, "/2018-06-01/runtime/invocation/a/b/response"),
            None
        );
    }

    #[test]
    fn error_documents_are_read_or_kept_as_sent() {
        let d = diagnostic(
            br#"{"errorType":"MyError","errorMessage":"boom"}"#,
            "Unhandled",
        );
        assert_eq!(
            (d.error_type.as_str(), d.error_message.as_str()),
            ("MyError", "boom")
        );
        let d = diagnostic(br#"{"errorMessage":"no type"}"#, "Unhandled");
        assert_eq!(d.error_type, "Unhandled");
        let d = diagnostic(b"plain text", "Runtime.InitError");
        assert_eq!(
            (d.error_type.as_str(), d.error_message.as_str()),
            ("Runtime.InitError", "plain text")
        );
    }

    #[test]
    fn mid_stream_errors_are_parsed_from_the_body() {
        let doc = base64::engine::general_purpose::STANDARD
            .encode(r#"{"errorType":"X","errorMessage":"broke"}"#);
        let data = format!(
            "Lambda-Runtime-Function-Error-Type: Runtime.StreamError\r\nLambda-Runtime-Function-Error-Body: {doc}\r\n"
        );
        assert!(data.as_bytes().starts_with(STREAM_ERROR_PREFIX));
        let e = parse_error_lines(data.as_bytes()).unwrap();
        // The announced type wins over the document's.
        assert_eq!(e.error_type, "Runtime.StreamError");
        assert_eq!(e.error_message, "broke");
        // A body that is not base64 is read as sent.
        let e = stream_error("T".into(), br#"{"errorMessage":"raw"}"#);
        assert_eq!(e.error_message, "raw");
        assert!(parse_error_lines(b"no colon here").is_none());
        assert!(parse_error_lines(b"Other: x\r\n").is_none());
    }
}
