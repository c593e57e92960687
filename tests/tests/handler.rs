//! The handler end to end: the real `bootstrap` under cargo-lambda's Runtime API emulator,
//! and the same routes in-process against the fake Messages API with faults, secrets in moto,
//! bad input and caller auth.

use emulators::anthropic::{FakeAnthropic, Fault};
use emulators::moto::MotoServer;
use serde_json::{json, Value};
use stand_ins::handler_support::*;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

fn messages_body(text: &str, stream: bool) -> Value {
    json!({
        "model": "claude-haiku-4-5",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": text}],
        "stream": stream,
    })
}

async fn local(fake: &FakeAnthropic, tweak: impl FnOnce(&mut handler::Config)) -> LocalServer {
    let mut config = local_config(&fake.base_url());
    tweak(&mut config);
    let app = handler::App::new(config).await.expect("app");
    LocalServer::start(app).await.expect("server")
}

fn assert_error_shape(body: &Value, error_type: &str) {
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], error_type, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

fn assert_no_secrets(logs: &str) {
    assert!(
        !logs.contains(TEST_ANTHROPIC_KEY),
        "the Anthropic key leaked into the logs:\n{logs}"
    );
    assert!(
        !logs.contains(TEST_CALLER_TOKEN),
        "a caller token leaked into the logs:\n{logs}"
    );
    assert!(
        !logs.contains("Echo:"),
        "reply text leaked into the logs:\n{logs}"
    );
}

// ----------------------------------------------------------------------------------------
// The real bootstrap under the Runtime API emulator

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bootstrap_streams_events_one_by_one_under_the_runtime_emulator() {
    let fake = FakeAnthropic::start(TEST_ANTHROPIC_KEY).await.unwrap();
    let moto = MotoServer::start().await.unwrap();
    let sm = secrets_client(&moto.endpoint_url()).await;
    let arn = create_secret(
        &sm,
        "claude-proxy/test",
        TEST_ANTHROPIC_KEY,
        &[TEST_CALLER_TOKEN],
    )
    .await
    .unwrap();
    let mut env = moto_env(&moto.endpoint_url(), &arn);
    env.push(("ANTHROPIC_BASE_URL", fake.base_url()));
    env.push(("RESPONSE_MODE", "stream".into()));
    let mut lambda = LambdaUnderEmulator::start(&env).await.unwrap();

    // Buffered JSON through a streaming Function URL.
    let resp = post_json(
        &lambda.url("/chat"),
        &json!({"message": "hello from lambda"}),
    )
    .await
    .unwrap();
    assert_eq!(resp.headers()["request-id"], "req_fake_000001");
    let (status, body) = json_of(resp).await.unwrap();
    assert_eq!(status, 200, "{body}\n{}", lambda.logs.text());
    assert_eq!(body["reply"], "Echo: hello from lambda");
    assert_eq!(body["stop_reason"], "end_turn");
    assert_eq!(body["request_id"], "req_fake_000001");
    assert_eq!(body["usage"]["output_tokens"], 4);
    // The upstream got the real key and the default version, never the caller token.
    let seen = fake.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("x-api-key"), Some(TEST_ANTHROPIC_KEY));
    assert_eq!(seen[0].header("anthropic-version"), Some("2023-06-01"));
    assert!(seen[0].header("authorization").is_none());

    // The Messages API pass-through, buffered: status, body and headers unchanged.
    let resp = post_json(
        &lambda.url("/v1/messages"),
        &messages_body("one two", false),
    )
    .await
    .unwrap();
    assert_eq!(
        resp.headers()["anthropic-ratelimit-requests-remaining"],
        "999"
    );
    assert_eq!(resp.headers()["request-id"], "req_fake_000002");
    let (status, body) = json_of(resp).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["content"][0]["text"], "Echo: one two");

    // Streaming, gated: the client must see event k while the upstream has sent only k.
    let gate = fake.enable_gate();
    let resp = post_json(&lambda.url("/v1/messages"), &messages_body("a b c d", true))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let before = fake.events_sent();
    let mut reader = SseReader::new(resp);
    let mut seen = Vec::new();
    loop {
        gate.release(1);
        let Some(ev) = reader.next(T).await.unwrap() else {
            break;
        };
        seen.push(ev.event.clone().unwrap_or_default());
        // The upstream has not been allowed to send more than this event yet.
        assert_eq!(fake.events_sent() - before, seen.len(), "events: {seen:?}");
        if seen.last().map(String::as_str) == Some("message_stop") {
            break;
        }
    }
    assert_eq!(
        seen,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert!(reader.next(T).await.unwrap().is_none());

    // /chat streaming, gated too: text events one by one, then done.
    let resp = post_json(
        &lambda.url("/chat"),
        &json!({"message": "x y", "stream": true}),
    )
    .await
    .unwrap();
    let mut reader = SseReader::new(resp);
    gate.release(3); // message_start, content_block_start, ping: no /chat events for these
    let mut texts = Vec::new();
    for _ in 0..3 {
        gate.release(1);
        let ev = reader.next(T).await.unwrap().unwrap();
        assert_eq!(ev.event.as_deref(), Some("text"));
        texts.push(serde_json::from_str::<Value>(&ev.data).unwrap()["text"].clone());
    }
    assert_eq!(texts, [json!("Echo: "), json!("x "), json!("y")]);
    gate.release(3);
    let done = reader.next(T).await.unwrap().unwrap();
    assert_eq!(done.event.as_deref(), Some("done"));
    let done: Value = serde_json::from_str(&done.data).unwrap();
    assert_eq!(done["stop_reason"], "end_turn");
    assert_eq!(done["usage"]["output_tokens"], 3);

    // Errors keep their status through the streaming prelude.
    let resp = client()
        .post(lambda.url("/v1/messages"))
        .header("content-type", "application/json")
        .body(messages_body("x", false).to_string())
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(resp).await.unwrap();
    assert_eq!(status, 401);
    assert_error_shape(&body, "authentication_error");

    lambda.assert_running().unwrap();
    let logs = lambda.logs.text();
    assert!(
        logs.contains("\"upstream_request_id\":\"req_fake_000001\""),
        "{logs}"
    );
    assert!(logs.contains("\"input_tokens\""), "{logs}");
    assert!(
        logs.contains("\"requestId\""),
        "the Lambda request id is missing:\n{logs}"
    );
    assert_no_secrets(&logs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bootstrap_buffered_mode_and_api_gateway_events() {
    let fake = FakeAnthropic::start(TEST_ANTHROPIC_KEY).await.unwrap();
    let moto = MotoServer::start().await.unwrap();
    let sm = secrets_client(&moto.endpoint_url()).await;
    let arn = create_secret(
        &sm,
        "claude-proxy/buffered",
        TEST_ANTHROPIC_KEY,
        &[TEST_CALLER_TOKEN],
    )
    .await
    .unwrap();
    let mut env = moto_env(&moto.endpoint_url(), &arn);
    env.push(("ANTHROPIC_BASE_URL", fake.base_url()));
    env.push(("RESPONSE_MODE", "buffered".into()));
    env.push(("GATEWAY_DEADLINE_MS", "1500".into()));
    let mut lambda = LambdaUnderEmulator::start(&env).await.unwrap();

    // A buffered Function URL still answers a streaming request, in one piece.
    let resp = post_json(
        &lambda.url("/v1/messages"),
        &messages_body("buffered stream", true),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["request-id"], "req_fake_000001");
    let events = parse_sse(&resp.text().await.unwrap());
    assert_eq!(
        names(&events).first().map(String::as_str),
        Some("message_start")
    );
    assert_eq!(
        names(&events).last().map(String::as_str),
        Some("message_stop")
    );

    let (status, body) = json_of(
        post_json(&lambda.url("/chat"), &json!({"message": "plain"}))
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!((status, body["reply"].clone()), (200, json!("Echo: plain")));

    // An API Gateway HTTP API (payload 2.0) event through the Invoke API: buffered JSON.
    let event = |path: &str, body: &Value| {
        json!({
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": path,
            "rawQueryString": "",
            "headers": {
                "content-type": "application/json",
                "authorization": format!("Bearer {TEST_CALLER_TOKEN}"),
                "host": "abc123.execute-api.us-east-1.amazonaws.com"
            },
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "abc123",
                "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
                "domainPrefix": "abc123",
                "http": {"method": "POST", "path": path, "protocol": "HTTP/1.1",
                         "sourceIp": "127.0.0.1", "userAgent": "test"},
                "requestId": "gw-req-1",
                "routeKey": "$default",
                "stage": "$default",
                "time": "21/Nov/2026:22:00:00 +0000",
                "timeEpoch": 1795298400000i64
            },
            "body": body.to_string(),
            "isBase64Encoded": false
        })
        .to_string()
    };
    let invoke = |payload: String| {
        let url = lambda.invoke_url();
        async move {
            let resp = client().post(url).body(payload).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            serde_json::from_str::<Value>(&resp.text().await.unwrap()).unwrap()
        }
    };
    let out = invoke(event("/chat", &json!({"message": "via gateway"}))).await;
    assert_eq!(out["statusCode"], 200, "{out}");
    let body: Value = serde_json::from_str(out["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["reply"], "Echo: via gateway");

    // Through the gateway the deadline is GATEWAY_DEADLINE_MS: a slow upstream gets a clean
    // 504 timeout_error instead of the gateway's own failure.
    fake.push_fault(Fault::DelayFirstByte(Duration::from_secs(10)));
    let started = Instant::now();
    let out = invoke(event("/v1/messages", &messages_body("slow", false))).await;
    assert_eq!(out["statusCode"], 504, "{out}");
    let body: Value = serde_json::from_str(out["body"].as_str().unwrap()).unwrap();
    assert_error_shape(&body, "timeout_error");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );

    lambda.assert_running().unwrap();
    assert_no_secrets(&lambda.logs.text());
}

#[tokio::test]
async fn bootstrap_without_a_secret_source_exits_with_a_clear_error() {
    let bin = bootstrap_bin().await.unwrap();
    let out = tokio::process::Command::new(bin)
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
        .env("AWS_LAMBDA_FUNCTION_NAME", "f")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("RESPONSE_MODE", "stream")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("SECRET_ARN") && text.contains("ANTHROPIC_API_KEY"),
        "{text}"
    );

    // A bad value names its variable.
    let out = tokio::process::Command::new(bootstrap_bin().await.unwrap())
        .env_clear()
        .env("ANTHROPIC_API_KEY", TEST_ANTHROPIC_KEY)
        .env("RESPONSE_MODE", "sometimes")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("RESPONSE_MODE") && text.contains("sometimes"),
        "{text}"
    );
    assert_no_secrets(&text);
}

// ----------------------------------------------------------------------------------------
// Upstream faults (in-process, same routes)

#[tokio::test]
async fn retryable_statuses_are_retried_then_succeed() {
    let fake = FakeAnthropic::start(TEST_ANTHROPIC_KEY).await.unwrap();
    let server = local(&fake, |_| {}).await;

    // 429 twice (retry-after: 0), then success: three attempts.
    fake.push_faults(Fault::rate_limited("0"), 2);
    let (status, body) = json_of(
        post_json(&server.url("/v1/messages"), &messages_body("hi", false))
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(fake.request_count(), 3);

    // 529 then 500 (exponential backoff, no retry-after), then success.
    fake.clear_requests();
    fake.push_fault(Fault::overloaded());
    fake.push_fault(Fault::server_error());
    let (status, body) = json_of(
        post_json(&server.url("/chat"), &json!({"message": "retry me"}))
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reply"], "Echo: retry me");
    assert_eq!(fake.request_count(), 3);
    // Every attempt carried the same body.
    let bodies: Vec<_> = fake.requests().iter().map(|r| r.body.clone()).collect();
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let fake = FakeAnthropic::start(TEST_ANTHROPIC_KEY).await.unwrap();
    let server = local(&fake, |_| {}).await;
    fake.push_fault(Fault::rate_limited("2"));
    let started = Instant::now();
    let resp = post_json(&server.url("/v1/messages"), &messages_body("hi", false))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(2),
        "retried after {elapsed:?}, before retry-after: 2"
    );
    assert!(elapsed < Duration::from_secs(6), "{elapsed:?}");
    assert_eq!(fake.request_count(), 2);

    // retry-after-ms wins over retry-after.
    fake.clear_requests();
    fake.push_fault(Fault::Error {
        status: 429,
        retry_after: Some("30".into()),
        retry_after_ms: Some("100".into()),
    });
    let started = Instant::now();
    let resp = post_json(&server.url("/v1/messages"), &messages_body("hi", false))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(fake.request_count(), 2);
}

#[tokio::test]
async fn exhausted_retries_return_the_upstream_error() {
    let fake = FakeAnthropic::start(TEST_ANTHROPIC_KEY).await.unwrap();
    let server = local(&fake, |_| {}).await;
    let fault = Fault::Error {
        status: 529,
        retry_after: None,
        retry_after_ms: Some("10".into()),
    };
    fake.push_faults(fault.clone(), 5);
    let resp = post_json(&server.url("/v1/messages"), &messages_body("hi", false))
        .await
        .unwrap();
    assert_eq!(resp.status(), 529);
    assert_eq!(resp.headers()["request-id"], "req_fake_000003");
    assert_eq!(resp.headers()["retry-after-ms"], "10");
    let (_, body) = json_of(resp).await.unwrap();
    assert_error_shape(&body, "overloaded_error");
    assert_eq!(body["request_id"], "req_fake_000003");
    // 1 attempt + 2 retries (the default), no more.
    assert_eq!(fake.request_count(), 3);
    assert_eq!(fake.pending_faults(), 2);
    fake.clear_faults();
    fake.push_fault(fault);

    // /chat passes the upstream's error through the same way; UPSTREAM_MAX_RETRIES=0 means one try.
    let server = local(&fake, |c| c.upstream_max_retries = 0).await;
    fake.clear_requests();
    let (status, body) = json_of(
        post_json(&server.url("/chat"), &json!({"message": "x"}))
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(status, 529);
    assert_error_shape(&body, "overloaded_error");
    assert_eq!(fake.request_count(), 1);

    // Not retryable: 400 comes back at once.
    fake.clear_requests();
    fake.push_fault(Fault::status(400));
    let resp = post_json(&server.url("/v1/messages"), &messages_body("hi", false))
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test]
async fn connection_errors_are_retried_then_reported() {
    // Nothing listens on this port: every attempt fails to connect.
    let port = emulators::moto::free_port().unwrap();
    let mut config = local_config(&format!("http://127.0.0.1:{port}"));
    config.upstream_max_retries = 1;
    let server = LocalServer::start(handler::App::new(config).await.unwrap())
        .await
        .unwrap();
    let (status, body) = json_of(
        post_json(&server.url("/v1/messages"), &messages_body("hi", false))
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(status, 502);
    assert_error_shape(&body, "api_error");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("2 attempt"), "{body}");
    // The internal upstream address stays in the log (issue 12).
    assert!(
        !message.contains(&port.to_string()) && !message.contains("127.0.0.1"),
        "the upstream URL reached the caller: {message}"
    );
}

#[tokio::test]
async fn a_dropped_stream_ends_with_an_in_band_error_event() {
    let fake = FakeAnthropic::start(TEST_ANTHROPIC_KEY).await.unwrap();
    let server = local(&fake, |_| {}).await;

    fake.push_fault(Fault::DropMidStream { after_events: 4 });
    let resp = post_json(
        &server.url("/v1/messages"),
        &messages_body("a b c d e f", true),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let events = SseReader::new(resp).collect(T).await.unwrap();
    assert_eq!(
        names(&events),
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "error"
        ]
    );
    let err: Value = serde_json::from_str(&events.last().unwrap().data).unwrap();
    assert_error_shape(&err, "api_error");
    // Never retried once the stream had started.
    assert_eq!(fake.request_count(), 1);

    // The same for /chat.
    fake.push_fault(Fault::DropMidStream { after_events: 5 });
    let resp = post_json(
        &server.url("/chat"),
        &json!({"message": "a b c d", "stream": true}),
    )
    .await
    .unwrap();
    let events = SseReader::new(resp).collect(T).await.unwrap();
    assert_eq!(names(&events), ["text", "text", "error"]);

    // An upstream `event: error` after the 200 is passed on as is.
    fake.push_fault(Fault::StreamError { after_events: 3 });
    let resp = post_json(&server.url("/v1/messages"), &messages_body("a b", true))
        .await
        .unwrap();
    let events = SseReader::new(resp).collect(T).await.unwrap();
    assert_eq!(
        names(&events),
        ["message_start", "content_block_start", "ping", "error"]
    );
    let err: Value = serde_json::from_str(&events[3].data).unwrap();
    assert_error_shape(&err, "overloaded_error");
}

#[tokio::test]
async fn a_slow_upstream_gets_a_clean_timeout() {
    let fake = FakeAnthropic::start(TEST_ANTHROPIC_KEY).await.unwrap();
    let server = local(&fake, |c| c.local_deadline = Duration::from_millis(1000)).await;

    fake.push_fault(Fault::DelayFirstByte(Duration::from_secs(5)));
    let started = Instant::now();
    let (status, body) = json_of(
        post_json(&server.url("/v1/messages"), &messages_body("hi", false))
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(status, 504, "{body}");
    assert_error_shape(&body, "timeout_error");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(fake.request_count(), 1, "no retry past the deadline");

    // A retry that would sleep past the deadline is not attempted: the upstream's answer stands.
    fake.clear_requests();
    fake.push_fault(Fault::rate_limited("5"));
    let started = Instant::now();
    let resp = post_json(&server.url("/v1/messages"), &messages_body("hi", false))
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(fake.request_count(), 1);

    // A stream that outlives the deadline ends with an in-band timeout_error.
    let gate = fake.enable_gate();
    gate.release(2);
    let resp = post_json(&server.url("/v1/messages"), &messages_body("a b", true))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let events = SseReader::new(resp).collect(T).await.unwrap();
    assert_eq!(
        names(&events),
        ["message_start", "content_block_start", "error"]
    );
    let err: Value = serde_json::from_str(&events[2].data).unwrap();
    assert_error_shape(&err, "timeout_error");
}

// ----------------------------------------------------------------------------------------
// The secret

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_is_read_once_per_ttl_and_rotation_takes_effect() {
    let fake = FakeAnthropic::start(TEST_ANTHROPIC_KEY).await.unwrap();
    let moto = MotoServer::start().await.unwrap();
    let sm = secrets_client(&moto.endpoint_url()).await;
    let arn = create_secret(
        &sm,
        "claude-proxy/ttl",
        TEST_ANTHROPIC_KEY,
        &[TEST_CALLER_TOKEN],
    )
    .await
    .unwrap();

    let mut config = local_config(&fake.base_url());
    config.secret = handler::SecretConfig::SecretsManager { arn: arn.clone() };
    config.secret_ttl = Duration::from_secs(4);
    let app = handler::App::with_secret_source(
        config,
        handler::SecretSource::SecretsManager {
            client: sm.clone(),
            arn: arn.clone(),
        },
    )
    .unwrap();
    app.warm_up().await;
    let loaded_at = Instant::now();
    assert_eq!(app.secret_fetch_count(), 1, "read once at cold start");
    let server = LocalServer::start(app.clone()).await.unwrap();

    for i in 0..15 {
        let resp = post_json(&server.url("/chat"), &json!({"message": format!("n{i}")}))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(
        app.secret_fetch_count(),
        1,
        "fetched per request instead of per TTL"
    );

    // Rotate: a new caller token. The old one keeps working until the TTL runs out.
    sm.put_secret_value()
        .secret_id(&arn)
        .secret_string(
            json!({"anthropic_api_key": TEST_ANTHROPIC_KEY, "caller_tokens": ["rotated-token"]})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        post_json(&server.url("/chat"), &json!({"message": "still old"}))
            .await
            .unwrap()
            .status(),
        200
    );

    // After the TTL: many concurrent requests, exactly one more read.
    tokio::time::sleep_until((loaded_at + Duration::from_millis(4100)).into()).await;
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let url = server.url("/chat");
            tokio::spawn(async move {
                client()
                    .post(url)
                    .header("content-type", "application/json")
                    .header("authorization", "Bearer rotated-token")
                    .body(json!({"message": "new"}).to_string())
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(app.secret_fetch_count(), 2);
    let (status, body) = json_of(
        post_json(&server.url("/chat"), &json!({"message": "old"}))
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(status, 401);
    assert_error_shape(&body, "authentication_error");
    assert_eq!(app.secret_fetch_count(), 2);
}

// ----------------------------------------------------------------------------------------
// Bad input and auth

#[tokio::test]
async fn bad_requests_get_their_4xx_and_reach_no_upstream() {
    let fake = FakeAnthropic::start(TEST_ANTHROPIC_KEY).await.unwrap();
    let server = local(&fake, |c| {
        c.allowed_models = vec!["claude-haiku-4-5".into()];
        c.max_tokens_cap = 500;
        c.max_request_bytes = 64 * 1024;
    })
    .await;

    let valid_msgs = json!([{"role": "user", "content": "hi"}]);
    let big = "x".repeat(100 * 1024);
    // (method, path, content type, body, status, error type, words the message must contain)
    let cases: Vec<(&str, &str, &str, String, u16, &str, &str)> = vec![
        ("POST", "/v1/messages", "application/json", "{not json".into(), 400, "invalid_request_error", "not valid JSON"),
        ("POST", "/v1/messages", "application/json", "[1,2]".into(), 400, "invalid_request_error", "JSON object"),
        ("POST", "/v1/messages", "application/json", "".into(), 400, "invalid_request_error", "empty"),
        ("POST", "/v1/messages", "application/json", json!({"model": 7, "max_tokens": 5, "messages": valid_msgs}).to_string(), 400, "invalid_request_error", "model: expected a string"),
        ("POST", "/v1/messages", "application/json", json!({"model": "claude-haiku-4-5", "max_tokens": "5", "messages": valid_msgs}).to_string(), 400, "invalid_request_error", "max_tokens"),
        ("POST", "/v1/messages", "application/json", json!({"model": "claude-haiku-4-5", "messages": valid_msgs}).to_string(), 400, "invalid_request_error", "max_tokens: field required"),
        ("POST", "/v1/messages", "application/json", json!({"model": "claude-haiku-4-5", "max_tokens": 5, "messages": []}).to_string(), 400, "invalid_request_error", "at least one message"),
        ("POST", "/v1/messages", "application/json", json!({"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "robot", "content": "x"}]}).to_string(), 400, "invalid_request_error", "messages.0.role"),
        ("POST", "/v1/messages", "application/json", json!({"model": "claude-haiku-4-5", "max_tokens": 5, "messages": valid_msgs, "stream": "yes"}).to_string(), 400, "invalid_request_error", "stream"),
        ("POST", "/v1/messages", "application/json", json!({"model": "claude-opus-4-6", "max_tokens": 5, "messages": valid_msgs}).to_string(), 400, "invalid_request_error", "ALLOWED_MODELS"),
        ("POST", "/v1/messages", "application/json", json!({"model": "claude-haiku-4-5", "max_tokens": 501, "messages": valid_msgs}).to_string(), 400, "invalid_request_error", "500 (MAX_TOKENS_CAP)"),
        ("POST", "/v1/messages/count_tokens", "application/json", json!({"model": "claude-haiku-4-5", "messages": []}).to_string(), 400, "invalid_request_error", "at least one message"),
        ("POST", "/v1/messages", "text/plain", json!({"model": "claude-haiku-4-5", "max_tokens": 5, "messages": valid_msgs}).to_string(), 415, "invalid_request_error", "application/json"),
        ("POST", "/v1/messages", "application/json", format!("{{\"model\":\"{big}\"}}"), 413, "request_too_large", "MAX_REQUEST_BYTES"),
        ("POST", "/chat", "application/json", json!({"message": ""}).to_string(), 400, "invalid_request_error", "message must not be empty"),
        ("POST", "/chat", "application/json", json!({"message": 12}).to_string(), 400, "invalid_request_error", "invalid type"),
        ("POST", "/chat", "application/json", json!({"mesage": "typo"}).to_string(), 400, "invalid_request_error", "unknown field"),
        ("POST", "/", "application/json", json!({"message": "x", "max_tokens": 9999}).to_string(), 400, "invalid_request_error", "MAX_TOKENS_CAP"),
        ("POST", "/chat", "application/x-www-form-urlencoded", "message=hi".into(), 415, "invalid_request_error", "Content-Type"),
        ("GET", "/v1/messages", "application/json", "".into(), 405, "invalid_request_error", "POST"),
        ("PUT", "/chat", "application/json", "{}".into(), 405, "invalid_request_error", "POST"),
        ("POST", "/v1/complete", "application/json", "{}".into(), 404, "not_found_error", "/v1/messages"),
        ("POST", "/health", "application/json", "{}".into(), 405, "invalid_request_error", "GET"),
    ];
    for (method, path, ct, body, status, error_type, words) in cases {
        let resp = client()
            .request(method.parse().unwrap(), server.url(path))
            .header("content-type", ct)
            .header("x-api-key", TEST_CALLER_TOKEN)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let got = resp.status().as_u16();
        let (_, v) = json_of(resp).await.unwrap();
        let case = format!("{method} {path} {ct} {}", &body[..body.len().min(80)]);
        assert_eq!(got, status, "{case}: {v}");
        assert_error_shape(&v, error_type);
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains(words),
            "{case}: message `{msg}` lacks `{words}`"
        );
    }
    assert_eq!(
        fake.request_count(),
        0,
        "bad requests reached the upstream: {:?}",
        fake.requests()
    );

    // Health needs no token and goes nowhere.
    let resp = client().get(server.url("/health")).send().await.unwrap();
    let (status, v) = json_of(resp).await.unwrap();
    assert_eq!((status, v), (200, json!({"status": "ok"})));
    assert_eq!(fake.request_count(), 0);
}

#[tokio::test]
async fn callers_authenticate_with_either_header_and_nothing_goes_upstream_without() {
    let fake = FakeAnthropic::start(TEST_ANTHROPIC_KEY).await.unwrap();
    let server = local(&fake, |_| {}).await;
    let body = messages_body("auth", false).to_string();
    let send = |headers: Vec<(&'static str, String)>| {
        let url = server.url("/v1/messages");
        let body = body.clone();
        async move {
            let mut req = client()
                .post(url)
                .header("content-type", "application/json")
                .body(body);
            for (k, v) in headers {
                req = req.header(k, v);
            }
            json_of(req.send().await.unwrap()).await.unwrap()
        }
    };

    for headers in [
        vec![],
        vec![("x-api-key", "wrong".to_string())],
        vec![("authorization", "Bearer wrong".to_string())],
        vec![("authorization", format!("Basic {TEST_CALLER_TOKEN}"))],
        vec![("x-api-key", TEST_ANTHROPIC_KEY.to_string())],
    ] {
        let (status, v) = send(headers.clone()).await;
        assert_eq!(status, 401, "{headers:?}: {v}");
        assert_error_shape(&v, "authentication_error");
        assert!(!v.to_string().contains(TEST_CALLER_TOKEN));
    }
    assert_eq!(fake.request_count(), 0);

    let (status, _) = send(vec![("x-api-key", TEST_CALLER_TOKEN.to_string())]).await;
    assert_eq!(status, 200);
    let (status, _) = send(vec![(
        "authorization",
        format!("Bearer {TEST_CALLER_TOKEN}"),
    )])
    .await;
    assert_eq!(status, 200);
    assert_eq!(fake.request_count(), 2);
    for r in fake.requests() {
        assert_eq!(r.header("x-api-key"), Some(TEST_ANTHROPIC_KEY));
        assert!(r.header("authorization").is_none());
    }

    // CALLER_AUTH=none (the URL uses AWS_IAM): no token needed.
    let open = local(&fake, |c| c.caller_auth = handler::CallerAuth::None).await;
    let resp = client()
        .post(open.url("/chat"))
        .header("content-type", "application/json")
        .body(json!({"message": "open"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn count_tokens_and_headers_pass_through() {
    let fake = FakeAnthropic::start(TEST_ANTHROPIC_KEY).await.unwrap();
    let server = local(&fake, |c| {
        c.allowed_betas = vec!["token-counting-2024-11-01".into()]
    })
    .await;
    let resp = client()
        .post(server.url("/v1/messages/count_tokens"))
        .header("content-type", "application/json")
        .header("x-api-key", TEST_CALLER_TOKEN)
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "token-counting-2024-11-01")
        .body(json!({"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "one two three"}]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["anthropic-ratelimit-tokens-remaining"],
        "99000"
    );
    let (_, v) = json_of(resp).await.unwrap();
    assert_eq!(v, json!({"input_tokens": 3}));
    let r = &fake.requests()[0];
    assert_eq!(r.path, "/v1/messages/count_tokens");
    assert_eq!(
        r.header("anthropic-beta"),
        Some("token-counting-2024-11-01")
    );

    // Unknown fields in a Messages request are forwarded untouched.
    let body = json!({"model": "claude-haiku-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}],
                      "metadata": {"user_id": "u1"}, "temperature": 0.5});
    let resp = post_json(&server.url("/v1/messages"), &body).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(fake.requests()[1].json().unwrap(), body);

    // Accept: text/event-stream on /chat streams.
    let resp = client()
        .post(server.url("/chat"))
        .header("content-type", "application/json")
        .header("accept", "text/event-stream")
        .header("x-api-key", TEST_CALLER_TOKEN)
        .body(json!({"message": "sse please"}).to_string())
        .send()
        .await
        .unwrap();
    let events = SseReader::new(resp).collect(T).await.unwrap();
    assert_eq!(names(&events), ["text", "text", "text", "done"]);
}

// ----------------------------------------------------------------------------------------
// Issue 12: a hostile or broken upstream, and callers trying to get past the limits. The fake
// Messages API records every request it receives (headers and body byte for byte).

/// POSTs raw bytes to `url` with the caller token and the given extra headers.
async fn post_raw_bytes(
    url: &str,
    body: impl Into<reqwest::Body>,
    extra: &[(&str, &[u8])],
) -> reqwest::Response {
    let mut req = client()
        .post(url)
        .header("content-type", "application/json")
        .header("x-api-key", TEST_CALLER_TOKEN);
    for (k, v) in extra {
        req = req.header(*k, reqwest::header::HeaderValue::from_bytes(v).unwrap());
    }
    req.body(body).send().await.unwrap()
}

#[tokio::test]
async fn redirects_from_the_upstream_are_not_followed_and_the_key_stays_home() {
    let fake = FakeAnthropic::start(TEST_ANTHROPIC_KEY).await.unwrap();
    // Another host that would receive the key if the redirect were followed.
    let other = FakeAnthropic::start("any-other-key").await.unwrap();
    let server = local(&fake, |_| {}).await;
    for (path, body) in [
        ("/v1/messages", messages_body("hi", false)),
        ("/chat", json!({"message": "hi"})),
    ] {
        for status in [307, 308, 302] {
            fake.push_fault(Fault::Redirect {
                status,
                location: other.base_url() + "/v1/messages",
            });
            let resp = post_json(&server.url(path), &body).await.unwrap();
            assert_eq!(
                other.request_count(),
                0,
                "the redirect was followed: the other host got the key"
            );
            assert_eq!(resp.headers()["x-should-retry"], "false");
            let (s, v) = json_of(resp).await.unwrap();
            assert_eq!(s, 502, "{path} {status}: {v}");
            assert_error_shape(&v, "api_error");
            assert!(v.to_string().contains("redirect"), "{v}");
            assert!(!v.to_string().contains(&other.base_url()), "{v}");
        }
    }
    assert_eq!(
        other.request_count(),
        0,
        "the redirect was followed: the other host got the key"
    );
    assert_eq!(fake.request_count(), 6, "one attempt each, no retry");
}

#[tokio::test]
async fn upstream_auth_failures_are_502_and_keys_are_redacted() {
    let fake = FakeAnthropic::start(TEST_ANTHROPIC_KEY).await.unwrap();
    let server = local(&fake, |_| {}).await;
    for (path, body, status) in [
        ("/v1/messages", messages_body("hi", false), 401),
        ("/v1/messages", messages_body("hi", false), 403),
        ("/chat", json!({"message": "hi"}), 401),
    ] {
        fake.push_fault(Fault::QuoteKey { status });
        let resp = post_json(&server.url(path), &body).await.unwrap();
        let (s, v) = json_of(resp).await.unwrap();
        // Not a 401 authentication_error: the caller's token was fine.
        assert_eq!(s, 502, "{path} {status}: {v}");
        assert_error_shape(&v, "api_error");
        let text = v.to_string();
        assert!(text.contains("credentials"), "{text}");
        assert!(!text.contains(TEST_ANTHROPIC_KEY), "the key leaked: {text}");
    }
    // Whatever the upstream put in an error passed on, anything key-shaped is redacted: in a
    // stream's error event too, on both routes.
    for (path, body) in [
        ("/v1/messages", messages_body("hi", true)),
        ("/chat", json!({"message": "hi", "stream": true})),
    ] {
        fake.push_fault(Fault::StreamErrorQuotingKey);
        let resp = post_json(&server.url(path), &body).await.unwrap();
        let text = resp.text().await.unwrap();
        assert!(text.contains("event: error"), "{text}");
        assert!(!text.contains(TEST_ANTHROPIC_KEY), "the key leaked: {text}");
        assert!(text.contains("sk-ant-[REDACTED]"), "{text}");
    }
    let seen = fake.requests();
    assert_eq!(seen.len(), 5);
    assert!(seen
        .iter()
        .all(|r| r.header("x-api-key") == Some(TEST_ANTHROPIC_KEY)));
}

#[tokio::test]
async fn non_json_upstream_errors_are_wrapped_in_the_anthropic_shape() {
    let fake = FakeAnthropic::start(TEST_ANTHROPIC_KEY).await.unwrap();
    let server = local(&fake, |c| c.upstream_max_retries = 0).await;
    for (path, body, status, ty) in [
        ("/v1/messages", messages_body("hi", false), 502, "api_error"),
        ("/chat", json!({"message": "hi"}), 502, "api_error"),
        ("/v1/messages", messages_body("hi", true), 503, "api_error"),
        ("/chat", json!({"message": "hi"}), 429, "rate_limit_error"),
    ] {
        fake.push_fault(Fault::Html { status });
        let resp = post_json(&server.url(path), &body).await.unwrap();
        assert_eq!(resp.status(), status, "{path}");
        assert_eq!(resp.headers()["content-type"], "application/json", "{path}");
        let (_, v) = json_of(resp).await.unwrap();
        assert_error_shape(&v, ty);
        assert!(!v.to_string().contains("<html>"), "{v}");
    }
}

#[tokio::test]
async fn x_should_retry_true_on_a_400_is_neither_retried_nor_passed_back() {
    let fake = FakeAnthropic::start(TEST_ANTHROPIC_KEY).await.unwrap();
    let server = local(&fake, |_| {}).await;
    fake.push_faults(Fault::ShouldRetry { status: 400 }, 3);
    let resp = post_json(&server.url("/v1/messages"), &messages_body("hi", false))
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()["x-should-retry"], "false");
    assert_eq!(fake.request_count(), 1, "a 400 was retried");
    fake.clear_faults();

    // What the proxy retried until it gave up is not offered to the caller's SDK again.
    fake.clear_requests();
    fake.push_faults(Fault::ShouldRetry { status: 529 }, 3);
    let resp = post_json(&server.url("/v1/messages"), &messages_body("hi", false))
        .await
        .unwrap();
    assert_eq!(resp.status(), 529);
    assert_eq!(resp.headers()["x-should-retry"], "false");
    assert_eq!(fake.request_count(), 3);
}

#[tokio::test]
async fn duplicate_keys_are_refused_and_what_is_forwarded_is_what_was_validated() {
    let fake = FakeAnthropic::start(TEST_ANTHROPIC_KEY).await.unwrap();
    let server = local(&fake, |c| c.max_tokens_cap = 100).await;
    for body in [
        r#"{"model":"claude-opus-4-1","model":"claude-haiku-4-5","max_tokens":10,"messages":[{"role":"user","content":"x"}]}"#,
        r#"{"max_tokens":999999,"model":"claude-haiku-4-5","max_tokens":10,"messages":[{"role":"user","content":"x"}]}"#,
        r#"{"mod\u0065l":"claude-opus-4-1","model":"claude-haiku-4-5","max_tokens":10,"messages":[{"role":"user","content":"x"}]}"#,
        r#"{"model":"claude-haiku-4-5","max_tokens":10,"messages":[{"role":"user","content":"x"}],"stream":false,"str\u0065am":true}"#,
    ] {
        let resp = post_raw_bytes(&server.url("/v1/messages"), body, &[]).await;
        let (s, v) = json_of(resp).await.unwrap();
        assert_eq!(s, 400, "{body}: {v}");
        assert_error_shape(&v, "invalid_request_error");
        assert!(v.to_string().contains("duplicate key"), "{v}");
    }
    assert_eq!(fake.request_count(), 0, "a refused body went upstream");
    // An accepted body (escapes, odd spacing) arrives byte for byte.
    let body = "{ \"model\" : \"claude-haiku-4-5\", \"max_tokens\":10,\n\"messages\":[{\"role\":\"user\",\"content\":\"caf\\u00e9 \\\"q\\\"\"}]}";
    let resp = post_raw_bytes(&server.url("/v1/messages"), body, &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(&fake.requests()[0].body[..], body.as_bytes());
}

#[tokio::test]
async fn models_betas_and_paid_features_are_allowlisted() {
    let fake = FakeAnthropic::start(TEST_ANTHROPIC_KEY).await.unwrap();
    // Defaults: the configured model only, no beta flags, no server tools, MCP, files,
    // containers or service tiers.
    let server = local(&fake, |_| {}).await;
    let base = messages_body("hi", false);
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let refused = [
        (with("model", json!("claude-opus-4-1")), "ALLOWED_MODELS"),
        (
            with(
                "tools",
                json!([{"type": "web_search_20250305", "name": "web_search", "max_uses": 500}]),
            ),
            "ALLOWED_TOOL_TYPES",
        ),
        (
            with(
                "mcp_servers",
                json!([{"type": "url", "url": "https://mcp.example", "name": "x"}]),
            ),
            "ALLOW_MCP_SERVERS",
        ),
        (with("container", json!("container_1")), "ALLOW_CONTAINER"),
        (with("service_tier", json!("auto")), "ALLOWED_SERVICE_TIERS"),
        (
            with(
                "messages",
                json!([{"role": "user", "content": [{"type": "document", "source": {"type": "file", "file_id": "file_1"}}]}]),
            ),
            "ALLOW_FILES",
        ),
    ];
    for (body, expected) in &refused {
        let (s, v) = json_of(post_json(&server.url("/v1/messages"), body).await.unwrap())
            .await
            .unwrap();
        assert_eq!(s, 400, "{body}: {v}");
        assert!(v.to_string().contains(expected), "{v}");
    }
    let (s, v) = json_of(
        post_json(
            &server.url("/chat"),
            &json!({"message": "x", "model": "claude-opus-4-1"}),
        )
        .await
        .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(s, 400, "{v}");
    for beta in [&b"context-1m-2025-08-07"[..], b"files-api-2025-04-14"] {
        let resp = post_raw_bytes(
            &server.url("/v1/messages"),
            base.to_string(),
            &[("anthropic-beta", beta)],
        )
        .await;
        let (s, v) = json_of(resp).await.unwrap();
        assert_eq!(s, 400, "{v}");
        assert!(v.to_string().contains("ALLOWED_BETAS"), "{v}");
    }
    for version in [&b""[..], b"\xff\xfe", b"latest"] {
        let resp = post_raw_bytes(
            &server.url("/v1/messages"),
            base.to_string(),
            &[("anthropic-version", version)],
        )
        .await;
        assert_eq!(resp.status(), 400);
    }
    // Client tools are always allowed.
    let client_tool = with(
        "tools",
        json!([{"name": "get_weather", "input_schema": {"type": "object"}}]),
    );
    let resp = post_json(&server.url("/v1/messages"), &client_tool)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        fake.request_count(),
        1,
        "only the client-tool request went upstream"
    );

    // The owner turns them on; several anthropic-beta headers are all forwarded, joined.
    let server = local(&fake, |c| {
        c.allowed_models = vec!["claude-haiku-4-5".into(), "claude-opus-4-1".into()];
        c.allowed_betas = vec!["a-2025-01-01".into(), "b-2025-01-01".into()];
        c.allowed_tool_types = vec!["web_search".into()];
        c.allow_mcp_servers = true;
        c.allow_container = true;
        c.allow_files = true;
        c.allowed_service_tiers = vec!["auto".into()];
    })
    .await;
    fake.clear_requests();
    for (body, _) in &refused {
        let resp = post_json(&server.url("/v1/messages"), body).await.unwrap();
        assert_eq!(resp.status(), 200, "{body}");
    }
    let resp = post_raw_bytes(
        &server.url("/v1/messages"),
        base.to_string(),
        &[
            ("anthropic-beta", b"a-2025-01-01"),
            ("anthropic-beta", b"b-2025-01-01"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let seen = fake.requests();
    assert_eq!(seen.len(), refused.len() + 1);
    assert_eq!(
        seen.last().unwrap().header("anthropic-beta"),
        Some("a-2025-01-01,b-2025-01-01")
    );
}

#[tokio::test]
async fn an_event_that_never_ends_is_cut_with_an_error_event() {
    let fake = FakeAnthropic::start(TEST_ANTHROPIC_KEY).await.unwrap();
    let server = local(&fake, |_| {}).await;
    for (path, body) in [
        ("/v1/messages", messages_body("hi", true)),
        ("/chat", json!({"message": "hi", "stream": true})),
    ] {
        fake.push_fault(Fault::Unterminated {
            bytes: handler::sse::MAX_EVENT_BYTES + 1024 * 1024,
        });
        let resp = post_json(&server.url(path), &body).await.unwrap();
        assert_eq!(resp.status(), 200);
        let events = SseReader::new(resp).collect(T).await.unwrap();
        let last = events.last().expect("events");
        assert_eq!(last.event.as_deref(), Some("error"), "{path}");
        let v: Value = serde_json::from_str(&last.data).unwrap();
        assert_error_shape(&v, "api_error");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("larger than"),
            "{path}: {v}"
        );
    }
}

/// Reads what the server sends on `stream` until it closes or `within` passes.
async fn read_until_close(stream: &mut tokio::net::TcpStream, within: Duration) -> (String, bool) {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn the_local_server_authenticates_before_reading_and_drops_slow_clients() {
    use tokio::io::AsyncWriteExt;
    let fake = FakeAnthropic::start(TEST_ANTHROPIC_KEY).await.unwrap();
    let server = local(&fake, |c| {
        c.local_read_timeout = Duration::from_millis(500);
        c.max_request_bytes = 1000;
    })
    .await;
    let addr = server.url("").trim_start_matches("http://").to_string();
    let head = |auth: bool, length: usize| {
        format!(
            "POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
             content-length: {length}\r\nexpect: 100-continue\r\n{}\r\n",
            if auth {
                format!("x-api-key: {TEST_CALLER_TOKEN}\r\n")
            } else {
                String::new()
            }
        )
    };

    // No token, a body announced but never sent: 401 at once, no 100 Continue.
    let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
    c.write_all(head(false, 900).as_bytes()).await.unwrap();
    let (text, _) = read_until_close(&mut c, Duration::from_secs(3)).await;
    assert!(text.starts_with("HTTP/1.1 401"), "{text:?}");
    assert!(!text.contains("100 Continue"), "{text:?}");

    // With the token, a Content-Length over the limit: 413 before any body byte is sent.
    let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
    c.write_all(head(true, 5_000_000).as_bytes()).await.unwrap();
    let (text, _) = read_until_close(&mut c, Duration::from_secs(3)).await;
    assert!(text.starts_with("HTTP/1.1 413"), "{text:?}");
    assert!(!text.contains("100 Continue"), "{text:?}");

    // Admitted, then the body stalls: 408 after the read timeout.
    let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
    c.write_all(head(true, 100).as_bytes()).await.unwrap();
    c.write_all(b"{\"model\":").await.unwrap();
    let (text, _) = read_until_close(&mut c, Duration::from_secs(5)).await;
    assert!(text.contains("HTTP/1.1 408"), "{text:?}");
    assert!(text.contains("timeout_error"), "{text:?}");

    // Headers that never finish: the connection is closed.
    let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
    c.write_all(b"POST /chat HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let (_, closed) = read_until_close(&mut c, Duration::from_secs(5)).await;
    assert!(closed, "a client that never finished its headers was kept");
    assert_eq!(fake.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bootstrap_keeps_a_quoted_key_out_of_answers_and_logs() {
    let fake = FakeAnthropic::start(TEST_ANTHROPIC_KEY).await.unwrap();
    let mut lambda = LambdaUnderEmulator::start(&[
        ("ANTHROPIC_API_KEY", TEST_ANTHROPIC_KEY.to_string()),
        ("CALLER_TOKEN", TEST_CALLER_TOKEN.to_string()),
        ("ANTHROPIC_BASE_URL", fake.base_url()),
        ("RESPONSE_MODE", "buffered".to_string()),
    ])
    .await
    .unwrap();
    for status in [401, 403] {
        fake.push_fault(Fault::QuoteKey { status });
        let resp = post_json(&lambda.url("/v1/messages"), &messages_body("hi", false))
            .await
            .unwrap();
        let (s, v) = json_of(resp).await.unwrap();
        assert_eq!(s, 502, "{v}\n{}", lambda.logs.text());
        assert_error_shape(&v, "api_error");
        assert!(!v.to_string().contains(TEST_ANTHROPIC_KEY), "{v}");
    }
    lambda.assert_running().unwrap();
    // The request log line is written when the request is done; wait for both.
    let deadline = Instant::now() + T;
    while lambda
        .logs
        .text()
        .matches("\"message\":\"request\"")
        .count()
        < 2
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let logs = lambda.logs.text();
    assert!(
        logs.contains("invalid x-api-key"),
        "the upstream's reason is logged:\n{logs}"
    );
    assert_no_secrets(&logs);
}
