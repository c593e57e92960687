//! A test function for the local Lambda emulator, built on the official runtime crates.
//!
//! `ECHO_MODE` picks how it runs:
//! * `http` (default): `lambda_http::run`, answers buffered with a JSON echo of the request
//!   (method, path, query, headers, body, cookies, the Lambda context's request id and
//!   deadline, the request context's domain name, the process id).
//! * `raw`: `lambda_runtime::run` with the raw event, answering `{statusCode, headers, body}`
//!   whose body is `{"event": <the raw event>, "context": {...}, "env": {...}}`.
//! * `stream`: `lambda_http::run_with_streaming_response`.
//!
//! Paths with special behaviour (all modes unless noted):
//! * `/error`: the handler fails (a function error).
//! * `/sleep`: never answers (for timeouts).
//! * `/wait`: creates `$ECHO_SIGNAL_DIR/started-<request id>`, waits for `$ECHO_SIGNAL_DIR/go`,
//!   then answers the echo (http mode).
//! * `/binary`: answers bytes 0..=255 as `application/octet-stream` (http mode).
//! * `/stream` (stream mode): status 201, headers, a cookie; writes `first\n`, waits for
//!   `$ECHO_SIGNAL_DIR/release`, writes `last\n`.
//! * `/stream-error` (stream mode): writes `partial\n`, then fails mid-stream.
//!
//! Build it with `cargo build -p emulators --example echo_bootstrap`.

use base64::Engine as _;
use lambda_http::{
    lambda_runtime::{self, streaming},
    service_fn, Body, Error, Request, RequestExt, Response,
};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[tokio::main]
async fn main() -> Result<(), Error> {
    eprintln!("echo_bootstrap: init pid {}", std::process::id());
    match std::env::var("ECHO_MODE").as_deref() {
        Ok("raw") => lambda_runtime::run(service_fn(raw)).await,
        Ok("stream") => lambda_http::run_with_streaming_response(service_fn(stream)).await,
        _ => lambda_http::run(service_fn(http)).await,
    }
}

fn signal_dir() -> PathBuf {
    PathBuf::from(std::env::var("ECHO_SIGNAL_DIR").unwrap_or_else(|_| "/tmp".into()))
}

async fn wait_for_file(path: PathBuf) {
    while !path.exists() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

fn echo(req: &Request) -> Value {
    let ctx = req.lambda_context_ref().cloned().unwrap_or_default();
    let headers: serde_json::Map<String, Value> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
            )
        })
        .collect();
    let (body, body_base64) = match req.body() {
        Body::Empty => (Value::Null, Value::Null),
        Body::Text(t) => (Value::String(t.clone()), Value::Null),
        Body::Binary(b) => (
            Value::Null,
            Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        ),
        _ => (Value::Null, Value::Null),
    };
    let domain = match req.request_context_ref() {
        Some(lambda_http::request::RequestContext::ApiGatewayV2(c)) => c.domain_name.clone(),
        _ => None,
    };
    json!({
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "query": req.query_string_parameters().iter().map(|(k, v)| (k.to_string(), Value::String(v.to_string()))).collect::<serde_json::Map<_, _>>(),
        "headers": headers,
        "body": body,
        "bodyBase64": body_base64,
        "requestId": ctx.request_id,
        "deadlineMs": ctx.deadline,
        "nowMs": millis(SystemTime::now()),
        "functionArn": ctx.invoked_function_arn,
        "domainName": domain,
        "pid": std::process::id(),
    })
}

async fn http(req: Request) -> Result<Response<Body>, Error> {
    match req.uri().path() {
        "/error" => return Err("echo: asked to fail".into()),
        "/sleep" => std::future::pending::<()>().await,
        "/wait" => {
            let id = req
                .lambda_context_ref()
                .map(|c| c.request_id.clone())
                .unwrap_or_default();
            std::fs::write(signal_dir().join(format!("started-{id}")), b"")?;
            wait_for_file(signal_dir().join("go")).await;
        }
        "/binary" => {
            return Ok(Response::builder()
                .status(200)
                .header("content-type", "application/octet-stream")
                .body(Body::Binary((0..=255u8).collect()))?)
        }
        _ => {}
    }
    Ok(Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("x-echo", "1")
        .header("set-cookie", "echo=1; Path=/")
        .body(Body::Text(echo(&req).to_string()))?)
}

async fn raw(event: lambda_runtime::LambdaEvent<Value>) -> Result<Value, Error> {
    let (payload, ctx) = event.into_parts();
    match payload.get("rawPath").and_then(Value::as_str) {
        Some("/error") => return Err("echo: asked to fail".into()),
        Some("/sleep") => std::future::pending::<()>().await,
        _ => {}
    }
    let env: serde_json::Map<String, Value> = [
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_LAMBDA_RUNTIME_API",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "LAMBDA_TASK_ROOT",
        "_HANDLER",
        "TZ",
        "ECHO_EXTRA",
        "HOME",
    ]
    .iter()
    .map(|k| {
        (
            k.to_string(),
            std::env::var(k).map(Value::String).unwrap_or(Value::Null),
        )
    })
    .collect();
    let body = json!({
        "event": payload,
        "context": {
            "requestId": ctx.request_id,
            "deadlineMs": ctx.deadline,
            "functionArn": ctx.invoked_function_arn,
            "traceId": ctx.xray_trace_id,
        },
        "env": env,
    });
    Ok(json!({
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": body.to_string(),
    }))
}

async fn stream(req: Request) -> Result<Response<streaming::Body>, Error> {
    let (mut tx, body) = streaming::channel();
    match req.uri().path() {
        "/error" => Err("echo: asked to fail".into()),
        "/sleep" => std::future::pending().await,
        "/stream" => {
            tokio::spawn(async move {
                tx.send_data("first\n".into()).await.ok();
                wait_for_file(signal_dir().join("release")).await;
                tx.send_data("last\n".into()).await.ok();
            });
            Ok(Response::builder()
                .status(201)
                .header("content-type", "text/plain")
                .header("x-echo", "stream")
                .header("set-cookie", "s=1")
                .body(body)?)
        }
        "/stream-error" => {
            tokio::spawn(async move {
                tx.send_data("partial\n".into()).await.ok();
                // Ends the body with an error: the runtime reports it as a stream error.
                tx.abort();
            });
            Ok(Response::builder()
                .status(200)
                .header("content-type", "text/plain")
                .body(body)?)
        }
        _ => {
            let echoed = echo(&req).to_string();
            tokio::spawn(async move {
                tx.send_data(echoed.into()).await.ok();
            });
            Ok(Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(body)?)
        }
    }
}
