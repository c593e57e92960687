//! The local Lambda, driven end to end with a real bootstrap built on the official runtime
//! crates (`examples/echo_bootstrap.rs`, built by these tests on first use).

use base64::Engine as _;
use emulators::lambda::{
    GatewayOptions, InvokeMode, LocalLambda, LocalLambdaOptions, LogLine, LogSink, LogSource,
};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Builds the example bootstrap once (`cargo build -p emulators --example echo_bootstrap`)
/// and returns its path; `ECHO_BOOTSTRAP` names a prebuilt one instead.
fn echo_bootstrap() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Ok(prebuilt) = std::env::var("ECHO_BOOTSTRAP") {
            return PathBuf::from(prebuilt);
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = std::process::Command::new(cargo)
            .args([
                "build",
                "-p",
                "emulators",
                "--example",
                "echo_bootstrap",
                "--message-format=json-render-diagnostics",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("running cargo build for the echo_bootstrap example");
        assert!(
            out.status.success(),
            "building the test function failed; run `cargo build -p emulators --example echo_bootstrap` to see why"
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "echo_bootstrap")
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("cargo reported no executable for echo_bootstrap")
    })
    .clone()
}

struct Logs(Arc<Mutex<Vec<LogLine>>>);

impl Logs {
    fn platform(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.source == LogSource::Platform)
            .map(|l| l.line.clone())
            .collect()
    }
    fn all(&self) -> Vec<LogLine> {
        self.0.lock().unwrap().clone()
    }
}

fn options(mode: &str, dir: &Path) -> (LocalLambdaOptions, Logs) {
    let mut o = LocalLambdaOptions::new(echo_bootstrap());
    o.env = vec![
        ("ECHO_MODE".into(), mode.into()),
        ("ECHO_SIGNAL_DIR".into(), dir.display().to_string()),
        ("ECHO_EXTRA".into(), "yes".into()),
    ];
    o.function_name = "echo-test".into();
    o.timeout = Duration::from_secs(20);
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    o.logs = LogSink::Capture(Arc::new(move |l| sink.lock().unwrap().push(l)));
    (o, Logs(lines))
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("http client")
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Polls `cond` every 10 ms until it holds, failing with `what` after `limit`.
async fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn json_body(resp: reqwest::Response) -> Value {
    let text = resp.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_round_trip_sends_a_function_url_event() {
    let dir = tempfile::tempdir().unwrap();
    let (opts, logs) = options("raw", dir.path());
    let lambda = LocalLambda::start(opts).await.unwrap();
    assert!(lambda.url().starts_with("http://127.0.0.1:") && lambda.url().ends_with('/'));

    let before = now_ms();
    let resp = client()
        .post(format!("{}some/path?a=1&b=x%20y&a=2", lambda.url()))
        .header("x-custom", "one")
        .header("X-Custom", "two")
        .header("cookie", "c1=v1; c2=v2")
        .header("content-type", "application/json")
        .header("user-agent", "echo-test-agent")
        .body(r#"{"hi":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let request_id = resp.headers()["x-amzn-requestid"]
        .to_str()
        .unwrap()
        .to_string();
    let echoed = json_body(resp).await;
    let event = &echoed["event"];

    assert_eq!(event["version"], "2.0");
    assert_eq!(event["routeKey"], "$default");
    assert_eq!(event["rawPath"], "/some/path");
    assert_eq!(event["rawQueryString"], "a=1&b=x%20y&a=2");
    assert_eq!(event["cookies"], serde_json::json!(["c1=v1", "c2=v2"]));
    assert_eq!(event["headers"]["x-custom"], "one,two");
    assert_eq!(event["headers"]["content-type"], "application/json");
    assert!(
        event["headers"].get("cookie").is_none(),
        "cookies travel in `cookies`"
    );
    assert_eq!(event["headers"]["x-forwarded-for"], "127.0.0.1");
    assert!(event["headers"]["x-amzn-trace-id"]
        .as_str()
        .unwrap()
        .starts_with("Root=1-"));
    assert_eq!(
        event["queryStringParameters"],
        serde_json::json!({"a": "1,2", "b": "x y"})
    );
    assert_eq!(event["body"], r#"{"hi":1}"#);
    assert_eq!(event["isBase64Encoded"], false);

    let rc = &event["requestContext"];
    let api_id = rc["apiId"].as_str().unwrap();
    assert_eq!(api_id.len(), 32);
    assert_eq!(rc["accountId"], "123456789012");
    assert_eq!(
        rc["domainName"],
        format!("{api_id}.lambda-url.us-east-1.on.aws")
    );
    assert_eq!(rc["domainPrefix"], api_id);
    assert_eq!(rc["http"]["method"], "POST");
    assert_eq!(rc["http"]["path"], "/some/path");
    assert_eq!(rc["http"]["protocol"], "HTTP/1.1");
    assert_eq!(rc["http"]["sourceIp"], "127.0.0.1");
    assert_eq!(rc["http"]["userAgent"], "echo-test-agent");
    assert_eq!(rc["requestId"], request_id.as_str());
    assert_eq!(rc["routeKey"], "$default");
    assert_eq!(rc["stage"], "$default");
    assert!(rc["time"].as_str().unwrap().ends_with(" +0000"));
    let epoch = rc["timeEpoch"].as_u64().unwrap();
    assert!(epoch >= before - 1000 && epoch <= now_ms());

    let ctx = &echoed["context"];
    assert_eq!(ctx["requestId"], request_id.as_str());
    let deadline = ctx["deadlineMs"].as_u64().unwrap();
    assert!(deadline >= before + 19_000 && deadline <= now_ms() + 20_000);
    assert_eq!(
        ctx["functionArn"],
        "arn:aws:lambda:us-east-1:123456789012:function:echo-test"
    );
    assert_eq!(ctx["functionArn"], lambda.function_arn());
    assert!(ctx["traceId"].as_str().unwrap().starts_with("Root=1-"));

    let env = &echoed["env"];
    assert_eq!(env["AWS_LAMBDA_FUNCTION_NAME"], "echo-test");
    assert_eq!(env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "128");
    assert_eq!(env["AWS_LAMBDA_FUNCTION_VERSION"], "$LATEST");
    assert_eq!(env["AWS_LAMBDA_LOG_GROUP_NAME"], "/aws/lambda/echo-test");
    assert!(env["AWS_LAMBDA_LOG_STREAM_NAME"]
        .as_str()
        .unwrap()
        .contains("/[$LATEST]"));
    assert!(env["AWS_LAMBDA_RUNTIME_API"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert_eq!(env["AWS_REGION"], "us-east-1");
    assert_eq!(env["AWS_DEFAULT_REGION"], "us-east-1");
    assert_eq!(env["_HANDLER"], "bootstrap");
    assert_eq!(env["TZ"], ":UTC");
    assert_eq!(env["ECHO_EXTRA"], "yes");
    assert_eq!(
        env["HOME"],
        Value::Null,
        "the caller's environment is not inherited"
    );

    let platform = logs.platform();
    assert!(platform.contains(&format!("START RequestId: {request_id} Version: $LATEST")));
    assert!(platform.contains(&format!("END RequestId: {request_id}")));
    let report = platform
        .iter()
        .find(|l| l.starts_with(&format!("REPORT RequestId: {request_id}")))
        .expect("a REPORT line");
    assert!(report.contains("Init Duration:"), "{report}");
    assert!(logs
        .all()
        .iter()
        .any(|l| l.source == LogSource::Stderr && l.line.starts_with("echo_bootstrap: init")));
    lambda.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_http_reads_the_event_and_its_response_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let (opts, _logs) = options("http", dir.path());
    let lambda = LocalLambda::start(opts).await.unwrap();

    let before = now_ms();
    let resp = client()
        .put(format!("{}hello/world?x=1", lambda.url()))
        .header("x-custom", "v")
        .header("content-type", "text/plain")
        .body("some text")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-echo"], "1");
    assert_eq!(resp.headers()["set-cookie"], "echo=1; Path=/");
    let request_id = resp.headers()["x-amzn-requestid"]
        .to_str()
        .unwrap()
        .to_string();
    let echoed = json_body(resp).await;
    assert_eq!(echoed["method"], "PUT");
    assert_eq!(echoed["path"], "/hello/world");
    assert_eq!(echoed["query"]["x"], "1");
    assert_eq!(echoed["headers"]["x-custom"], "v");
    assert_eq!(echoed["body"], "some text");
    assert_eq!(echoed["requestId"], request_id.as_str());
    let deadline = echoed["deadlineMs"].as_u64().unwrap();
    assert!(deadline > echoed["nowMs"].as_u64().unwrap());
    assert!(deadline >= before + 19_000);
    assert!(echoed["domainName"]
        .as_str()
        .unwrap()
        .ends_with(".lambda-url.us-east-1.on.aws"));
    lambda.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_bodies_travel_base64_encoded() {
    let dir = tempfile::tempdir().unwrap();
    let bytes: Vec<u8> = vec![0, 159, 146, 150, 255, b'a'];
    let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);

    // The event carries a binary request body base64-encoded.
    let (opts, _logs) = options("raw", dir.path());
    let lambda = LocalLambda::start(opts).await.unwrap();
    let resp = client()
        .post(lambda.url())
        .header("content-type", "application/octet-stream")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    let event = &json_body(resp).await["event"];
    assert_eq!(event["isBase64Encoded"], true);
    assert_eq!(event["body"], b64.as_str());
    lambda.stop().await;

    // lambda_http decodes it, and a binary response comes back as the original bytes.
    let (opts, _logs) = options("http", dir.path());
    let lambda = LocalLambda::start(opts).await.unwrap();
    let resp = client()
        .post(lambda.url())
        .header("content-type", "image/png")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(json_body(resp).await["bodyBase64"], b64.as_str());
    let resp = client()
        .get(format!("{}binary", lambda.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/octet-stream");
    let body = resp.bytes().await.unwrap();
    assert_eq!(body.to_vec(), (0..=255u8).collect::<Vec<u8>>());
    lambda.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_chunks_arrive_before_the_function_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let (mut opts, logs) = options("stream", dir.path());
    opts.invoke_mode = InvokeMode::ResponseStream;
    let lambda = LocalLambda::start(opts).await.unwrap();

    let mut resp = client()
        .get(format!("{}stream", lambda.url()))
        .send()
        .await
        .unwrap();
    // Status and headers come from the prelude.
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["content-type"], "text/plain");
    assert_eq!(resp.headers()["x-echo"], "stream");
    assert_eq!(resp.headers()["set-cookie"], "s=1");

    // The function holds its last chunk until the release file exists: the first chunk must
    // reach us before we create it.
    let mut received = Vec::new();
    while !received.ends_with(b"first\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(20), resp.chunk())
            .await
            .expect("the first chunk must arrive while the function is still running")
            .unwrap()
            .expect("the stream ended before the first chunk");
        received.extend_from_slice(&chunk);
    }
    assert_eq!(received, b"first\n");
    let request_id = resp.headers()["x-amzn-requestid"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        !logs
            .platform()
            .iter()
            .any(|l| l == &format!("END RequestId: {request_id}")),
        "the invocation is still running"
    );
    std::fs::write(dir.path().join("release"), b"").unwrap();
    while let Some(chunk) = resp.chunk().await.unwrap() {
        received.extend_from_slice(&chunk);
    }
    assert_eq!(received, b"first\nlast\n");
    wait_until(Duration::from_secs(10), "the END line", || {
        logs.platform()
            .contains(&format!("END RequestId: {request_id}"))
    })
    .await;
    lambda.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mid_stream_error_breaks_the_response() {
    let dir = tempfile::tempdir().unwrap();
    let (mut opts, _logs) = options("stream", dir.path());
    opts.invoke_mode = InvokeMode::ResponseStream;
    let lambda = LocalLambda::start(opts).await.unwrap();

    let mut resp = client()
        .get(format!("{}stream-error", lambda.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut received = Vec::new();
    let outcome = loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => received.extend_from_slice(&chunk),
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    assert_eq!(
        String::from_utf8_lossy(&received),
        "partial\n",
        "outcome: {outcome:?}"
    );
    assert!(
        outcome.is_err(),
        "the body must end abnormally, not look complete"
    );

    // The instance is still good for the next request.
    let resp = client().get(lambda.url()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(json_body(resp).await["path"], "/");
    assert_eq!(lambda.cold_starts().len(), 1);
    lambda.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_function_behind_a_buffered_url_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (opts, logs) = options("stream", dir.path());
    assert_eq!(opts.invoke_mode, InvokeMode::Buffered);
    let lambda = LocalLambda::start(opts).await.unwrap();
    let resp = client().get(lambda.url()).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    assert!(
        logs.platform()
            .iter()
            .any(|l| l.contains("set InvokeMode RESPONSE_STREAM")),
        "{:?}",
        logs.platform()
    );
    lambda.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_error_is_a_502() {
    let dir = tempfile::tempdir().unwrap();
    let (opts, logs) = options("http", dir.path());
    let lambda = LocalLambda::start(opts).await.unwrap();

    let resp = client()
        .get(format!("{}error", lambda.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.text().await.unwrap(), "Internal Server Error");
    assert!(logs
        .platform()
        .iter()
        .any(|l| l.contains("function error") && l.contains("echo: asked to fail")));

    // The direct invoke reports the function's error document.
    let event = serde_json::json!({
        "version": "2.0", "routeKey": "$default", "rawPath": "/error", "rawQueryString": "",
        "headers": {}, "isBase64Encoded": false,
        "requestContext": {"http": {"method": "GET", "path": "/error", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "t"},
                           "accountId": "123456789012", "apiId": "x", "domainName": "x", "domainPrefix": "x",
                           "requestId": "r", "routeKey": "$default", "stage": "$default", "time": "t", "timeEpoch": 0}
    });
    let err = lambda
        .invoke(event.to_string().into())
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.error_message.contains("echo: asked to fail"), "{err}");

    // The instance survives a function error.
    let resp = client().get(lambda.url()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(lambda.cold_starts().len(), 1);
    lambda.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_kills_the_instance_and_the_next_request_gets_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let (mut opts, logs) = options("http", dir.path());
    opts.timeout = Duration::from_secs(1);
    let lambda = LocalLambda::start(opts).await.unwrap();

    let first_pid = json_body(client().get(lambda.url()).send().await.unwrap()).await["pid"]
        .as_u64()
        .unwrap();

    let resp = client()
        .get(format!("{}sleep", lambda.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    assert!(logs
        .platform()
        .iter()
        .any(|l| l.ends_with("Task timed out after 1.00 seconds")));
    wait_until(
        Duration::from_secs(10),
        "the timed-out instance to exit",
        || lambda.live_instances() == 0,
    )
    .await;

    let resp = client().get(lambda.url()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let second_pid = json_body(resp).await["pid"].as_u64().unwrap();
    assert_ne!(
        first_pid, second_pid,
        "a fresh instance serves the next request"
    );
    assert_eq!(lambda.cold_starts().len(), 2);
    lambda.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_are_served_by_two_instances() {
    let dir = tempfile::tempdir().unwrap();
    let (mut opts, _logs) = options("http", dir.path());
    opts.max_instances = 2;
    let lambda = LocalLambda::start(opts).await.unwrap();

    // Each request blocks in the function until `go` exists; `go` is created only once both
    // have started, which is impossible with a single instance.
    let a = tokio::spawn(client().get(format!("{}wait", lambda.url())).send());
    let b = tokio::spawn(client().get(format!("{}wait", lambda.url())).send());
    let started = |dir: &Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("started-")
            })
            .count()
    };
    wait_until(Duration::from_secs(30), "both invocations to start", || {
        started(dir.path()) == 2
    })
    .await;
    assert_eq!(lambda.live_instances(), 2);
    std::fs::write(dir.path().join("go"), b"").unwrap();

    let a = a.await.unwrap().unwrap();
    let b = b.await.unwrap().unwrap();
    assert_eq!(a.status(), 200);
    assert_eq!(b.status(), 200);
    let (pa, pb) = (
        json_body(a).await["pid"].clone(),
        json_body(b).await["pid"].clone(),
    );
    assert_ne!(pa, pb);
    let cold: Vec<usize> = lambda.cold_starts().iter().map(|c| c.instance).collect();
    assert_eq!(cold.len(), 2);
    assert!(cold.contains(&1) && cold.contains(&2));
    lambda.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_function_throttles_when_asked_to() {
    let dir = tempfile::tempdir().unwrap();
    let (mut opts, _logs) = options("http", dir.path());
    opts.throttle_when_busy = true;
    let lambda = LocalLambda::start(opts).await.unwrap();

    let busy = tokio::spawn(client().get(format!("{}wait", lambda.url())).send());
    wait_until(
        Duration::from_secs(30),
        "the first invocation to start",
        || std::fs::read_dir(dir.path()).unwrap().count() == 1,
    )
    .await;
    let resp = client().get(lambda.url()).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(json_body(resp).await["Message"], "Rate Exceeded.");
    std::fs::write(dir.path().join("go"), b"").unwrap();
    assert_eq!(busy.await.unwrap().unwrap().status(), 200);
    lambda.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cold_start_is_recorded_once_per_instance() {
    let dir = tempfile::tempdir().unwrap();
    let (opts, logs) = options("http", dir.path());
    let lambda = LocalLambda::start(opts).await.unwrap();
    assert!(lambda.cold_starts().is_empty(), "instances start on demand");
    assert_eq!(lambda.live_instances(), 0);

    let started = Instant::now();
    let first = client().get(lambda.url()).send().await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(first.status(), 200);
    let cold = lambda.cold_starts();
    assert_eq!(cold.len(), 1);
    assert_eq!(cold[0].instance, 1);
    assert!(cold[0].duration > Duration::ZERO && cold[0].duration <= elapsed);

    let second = client().get(lambda.url()).send().await.unwrap();
    let second_id = second.headers()["x-amzn-requestid"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(second.status(), 200);
    assert_eq!(
        lambda.cold_starts().len(),
        1,
        "a warm instance has no cold start"
    );
    wait_until(Duration::from_secs(10), "the second REPORT line", || {
        logs.platform()
            .iter()
            .any(|l| l.starts_with(&format!("REPORT RequestId: {second_id}")))
    })
    .await;
    let report = logs
        .platform()
        .into_iter()
        .find(|l| l.starts_with(&format!("REPORT RequestId: {second_id}")))
        .unwrap();
    assert!(!report.contains("Init Duration"), "{report}");
    lambda.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_front_sends_http_api_events_and_buffers() {
    let dir = tempfile::tempdir().unwrap();
    let (mut opts, _logs) = options("raw", dir.path());
    opts.invoke_mode = InvokeMode::ResponseStream;
    opts.gateway = Some(GatewayOptions {
        routes: vec!["POST /chat".into(), "$default".into()],
        ..GatewayOptions::default()
    });
    let lambda = LocalLambda::start(opts).await.unwrap();
    let gw = lambda.gateway_url().expect("gateway front enabled");
    assert!(!gw.ends_with('/'));

    let resp = client()
        .post(format!("{gw}/chat?q=1"))
        .header("content-type", "application/json")
        .body(r#"{"m":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers().get("content-length").is_some(),
        "a buffered response has a length"
    );
    let apigw_id = resp.headers()["apigw-requestid"]
        .to_str()
        .unwrap()
        .to_string();
    let echoed = json_body(resp).await;
    let event = &echoed["event"];
    assert_eq!(event["version"], "2.0");
    assert_eq!(event["routeKey"], "POST /chat");
    assert_eq!(event["rawPath"], "/chat");
    assert_eq!(event["queryStringParameters"]["q"], "1");
    assert_eq!(event["body"], r#"{"m":1}"#);
    let rc = &event["requestContext"];
    let api_id = rc["apiId"].as_str().unwrap();
    assert_eq!(api_id.len(), 10);
    assert_eq!(
        rc["domainName"],
        format!("{api_id}.execute-api.us-east-1.amazonaws.com")
    );
    assert_eq!(rc["routeKey"], "POST /chat");
    assert_eq!(rc["stage"], "$default");
    assert_eq!(rc["requestId"], apigw_id.as_str());
    assert_ne!(
        echoed["context"]["requestId"],
        apigw_id.as_str(),
        "the Lambda request id is not API Gateway's"
    );

    let resp = client().get(format!("{gw}/other")).send().await.unwrap();
    assert_eq!(json_body(resp).await["event"]["routeKey"], "$default");

    let resp = client().get(format!("{gw}/error")).send().await.unwrap();
    assert_eq!(resp.status(), 500);
    assert_eq!(
        json_body(resp).await,
        serde_json::json!({"message": "Internal Server Error"})
    );
    lambda.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_gives_up_at_its_timeout_with_503() {
    let dir = tempfile::tempdir().unwrap();
    let (mut opts, _logs) = options("http", dir.path());
    opts.gateway = Some(GatewayOptions {
        routes: vec!["GET /sleep".into()],
        timeout: Duration::from_millis(500),
        ..GatewayOptions::default()
    });
    let lambda = LocalLambda::start(opts).await.unwrap();
    let gw = lambda.gateway_url().unwrap();

    let resp = client().get(format!("{gw}/sleep")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(
        json_body(resp).await,
        serde_json::json!({"message": "Service Unavailable"})
    );
    let resp = client().get(format!("{gw}/nowhere")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(
        json_body(resp).await,
        serde_json::json!({"message": "Not Found"})
    );
    lambda.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_bootstrap_gives_502_instead_of_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("bootstrap");
    std::fs::write(&script, "#!/bin/sh\necho crashing >&2\nexit 3\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let (mut opts, logs) = options("http", dir.path());
    opts.bootstrap = script;
    let lambda = LocalLambda::start(opts).await.unwrap();

    let resp = client().get(lambda.url()).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    let err = lambda.invoke("{}".into()).await.unwrap().unwrap_err();
    assert_eq!(err.error_type, "Runtime.ExitError");
    assert!(err.error_message.contains("exit status: 3"), "{err}");
    wait_until(Duration::from_secs(10), "the crash output", || {
        logs.all()
            .iter()
            .any(|l| l.source == LogSource::Stderr && l.line == "crashing")
    })
    .await;
    lambda.stop().await;
}

#[tokio::test]
async fn start_refuses_a_missing_bootstrap_or_a_public_address() {
    let err = LocalLambda::start(LocalLambdaOptions::new("/nonexistent/bootstrap"))
        .await
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("does not exist"), "{err:#}");

    let mut opts = LocalLambdaOptions::new(echo_bootstrap());
    opts.listen = "0.0.0.0:0".parse().unwrap();
    let err = LocalLambda::start(opts).await.err().unwrap();
    assert!(format!("{err:#}").contains("loopback"), "{err:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_mid_stream_breaks_the_response_and_replaces_the_instance() {
    let dir = tempfile::tempdir().unwrap();
    let (mut opts, logs) = options("stream", dir.path());
    opts.invoke_mode = InvokeMode::ResponseStream;
    opts.timeout = Duration::from_secs(1);
    let lambda = LocalLambda::start(opts).await.unwrap();

    // `/stream` never gets its release file: the function times out after the first chunk.
    let mut resp = client()
        .get(format!("{}stream", lambda.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let mut received = Vec::new();
    let outcome = loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => received.extend_from_slice(&chunk),
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    assert_eq!(String::from_utf8_lossy(&received), "first\n");
    assert!(
        outcome.is_err(),
        "a timed-out stream must not look complete"
    );
    assert!(logs
        .platform()
        .iter()
        .any(|l| l.ends_with("Task timed out after 1.00 seconds")));

    let resp = client().get(lambda.url()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(lambda.cold_starts().len(), 2);
    lambda.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_handle_kills_the_instances() {
    let dir = tempfile::tempdir().unwrap();
    let (opts, _logs) = options("http", dir.path());
    let lambda = LocalLambda::start(opts).await.unwrap();
    let resp = client().get(lambda.url()).send().await.unwrap();
    let pid = json_body(resp).await["pid"].as_u64().unwrap();
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    assert!(proc_dir.exists());
    drop(lambda);
    wait_until(
        Duration::from_secs(10),
        "the instance process to go away",
        || !proc_dir.exists(),
    )
    .await;
}
