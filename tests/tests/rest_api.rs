//! The handler behind an API Gateway REST API: the real `bootstrap` under the local Lambda
//! emulator's REST front (payload-1.0 events, `x-api-key` checked against the usage plan's
//! keys before the function runs, the integration in `responseTransferMode` `STREAM` or
//! `BUFFERED`), against the fake Messages API. Streams arrive event by event; a missing or
//! wrong key and a spent quota never reach the function; the key's id, never its value, is
//! in the request log; a method without `apiKeyRequired` still takes the caller token.

use emulators::anthropic::FakeAnthropic;
use emulators::lambda::{
    InvokeMode, LocalLambda, LocalLambdaOptions, LogSink, RestApiKey, RestApiOptions,
};
use serde_json::{json, Value};
use stand_ins::handler_support::*;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);
/// The usage plan's key as the caller sends it, and its id as API Gateway names it.
const KEY_VALUE: &str = "rest-api-key-value-DO-NOT-LOG-91c2e7";
const KEY_ID: &str = "k3y1d0001";

fn messages_body(text: &str, stream: bool) -> Value {
    json!({
        "model": "claude-haiku-4-5",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": text}],
        "stream": stream,
    })
}

struct Rest {
    lambda: LocalLambda,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Rest {
    async fn start(fake: &FakeAnthropic, rest: RestApiOptions, env: &[(&str, &str)]) -> Rest {
        let bootstrap = bootstrap_bin().await.unwrap();
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = {
            let lines = lines.clone();
            LogSink::Capture(Arc::new(move |l| lines.lock().unwrap().push(l.line)))
        };
        let mut opts = LocalLambdaOptions::new(&bootstrap);
        opts.env = vec![
            ("ANTHROPIC_API_KEY".into(), TEST_ANTHROPIC_KEY.into()),
            ("CALLER_TOKEN".into(), TEST_CALLER_TOKEN.into()),
            ("ANTHROPIC_BASE_URL".into(), fake.base_url()),
            ("AWS_REGION".into(), "us-east-1".into()),
            ("RUST_LOG".into(), "info".into()),
        ];
        opts.env
            .extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        opts.function_name = "claude-proxy-rest".into();
        opts.timeout = Duration::from_secs(60);
        opts.invoke_mode = InvokeMode::ResponseStream;
        opts.rest_api = Some(rest);
        opts.logs = sink;
        Rest {
            lambda: LocalLambda::start(opts).await.unwrap(),
            lines,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.lambda.rest_url().unwrap())
    }

    fn logs(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// The request log lines, once there are `n`.
    async fn request_lines(&self, n: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + T;
        loop {
            let lines: Vec<Value> = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|v| v["fields"]["message"] == "request")
                .collect();
            if lines.len() >= n {
                return lines;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} request lines, expected {n}:\n{}",
                lines.len(),
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn keyed(quota: Option<u64>) -> RestApiOptions {
    RestApiOptions {
        api_keys: vec![RestApiKey {
            id: KEY_ID.into(),
            value: KEY_VALUE.into(),
            quota,
        }],
        ..RestApiOptions::default()
    }
}

/// POSTs JSON with `x-api-key: key` (no caller token).
async fn post_with_key(url: &str, key: Option<&str>, body: &Value) -> reqwest::Response {
    let mut req = client()
        .post(url)
        .header("content-type", "application/json")
        .header("anthropic-version", "2023-06-01")
        .body(body.to_string());
    if let Some(k) = key {
        req = req.header("x-api-key", k);
    }
    req.send().await.unwrap()
}

fn assert_no_key_values(logs: &str) {
    for secret in [KEY_VALUE, TEST_ANTHROPIC_KEY, TEST_CALLER_TOKEN] {
        assert!(
            !logs.contains(secret),
            "a key leaked into the logs:\n{logs}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_streaming_rest_api_streams_event_by_event_with_the_api_key_alone() {
    let fake = FakeAnthropic::start(TEST_ANTHROPIC_KEY).await.unwrap();
    let rest = Rest::start(&fake, keyed(None), &[]).await;

    // Buffered JSON through the streaming integration, authenticated by the API key only.
    let resp = post_with_key(
        &rest.url("/chat"),
        Some(KEY_VALUE),
        &json!({"message": "through the REST API"}),
    )
    .await;
    let (status, body) = json_of(resp).await.unwrap();
    assert_eq!(status, 200, "{body}\n{}", rest.logs());
    assert_eq!(body["reply"], "Echo: through the REST API");
    // The upstream got the Anthropic key; neither the API key nor a caller token went there.
    let seen = fake.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("x-api-key"), Some(TEST_ANTHROPIC_KEY));

    // Streaming, gated: the caller sees event k while the upstream has sent only k.
    let gate = fake.enable_gate();
    let resp = post_with_key(
        &rest.url("/v1/messages"),
        Some(KEY_VALUE),
        &messages_body("a b c", true),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let before = fake.events_sent();
    let mut reader = SseReader::new(resp);
    let mut names = Vec::new();
    loop {
        gate.release(1);
        let Some(ev) = reader.next(T).await.unwrap() else {
            break;
        };
        names.push(ev.event.clone().unwrap_or_default());
        assert_eq!(
            fake.events_sent() - before,
            names.len(),
            "events: {names:?}"
        );
        if names.last().map(String::as_str) == Some("message_stop") {
            break;
        }
    }
    assert_eq!(names.first().map(String::as_str), Some("message_start"));
    assert_eq!(names.last().map(String::as_str), Some("message_stop"));

    // The request log names the key by its id, streamed; never by its value.
    let lines = rest.request_lines(2).await;
    for l in &lines {
        assert_eq!(l["fields"]["api_key_id"], KEY_ID, "{l}");
        assert_eq!(l["fields"]["status"], 200, "{l}");
    }
    assert_eq!(lines[1]["fields"]["streamed"], true);
    assert_no_key_values(&rest.logs());
    rest.lambda.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn missing_wrong_and_spent_keys_never_reach_the_function() {
    let fake = FakeAnthropic::start(TEST_ANTHROPIC_KEY).await.unwrap();
    let rest = Rest::start(&fake, keyed(Some(2)), &[]).await;
    let body = json!({"message": "hi"});

    // No key, a wrong key, and the caller token instead of the key: API Gateway's 403.
    for key in [None, Some("not-the-key"), Some(TEST_CALLER_TOKEN)] {
        let (status, v) = json_of(post_with_key(&rest.url("/chat"), key, &body).await)
            .await
            .unwrap();
        assert_eq!((status, &v), (403, &json!({"message": "Forbidden"})));
    }
    // Another stage is no resource of this API.
    let other = rest.url("/chat").replace("/live/", "/prod/");
    let (status, v) = json_of(post_with_key(&other, Some(KEY_VALUE), &body).await)
        .await
        .unwrap();
    assert_eq!(status, 403);
    assert_eq!(v["message"], "Missing Authentication Token");
    assert!(rest.lambda.cold_starts().is_empty(), "the function ran");

    // The quota: two requests, then the usage plan's 429 before the function runs.
    for _ in 0..2 {
        let resp = post_with_key(&rest.url("/chat"), Some(KEY_VALUE), &body).await;
        assert_eq!(resp.status(), 200);
    }
    let (status, v) = json_of(post_with_key(&rest.url("/chat"), Some(KEY_VALUE), &body).await)
        .await
        .unwrap();
    assert_eq!((status, &v), (429, &json!({"message": "Limit Exceeded"})));
    assert_eq!(fake.request_count(), 2);
    assert_eq!(rest.request_lines(2).await.len(), 2);
    rest.lambda.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_method_without_api_keys_still_takes_the_caller_token() {
    let fake = FakeAnthropic::start(TEST_ANTHROPIC_KEY).await.unwrap();
    let open = RestApiOptions {
        api_key_required: false,
        ..RestApiOptions::default()
    };
    let rest = Rest::start(&fake, open, &[]).await;
    let body = json!({"message": "hi"});
    let (status, v) = json_of(post_with_key(&rest.url("/chat"), None, &body).await)
        .await
        .unwrap();
    assert_eq!(status, 401, "{v}");
    assert_eq!(v["error"]["type"], "authentication_error");
    let resp = post_json(&rest.url("/chat"), &body).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(fake.request_count(), 1);
    let lines = rest.request_lines(2).await;
    assert!(lines
        .iter()
        .all(|l| l["fields"].get("api_key_id").is_none()));
    assert_no_key_values(&rest.logs());
    rest.lambda.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_buffered_integration_takes_the_rest_response_format() {
    let fake = FakeAnthropic::start(TEST_ANTHROPIC_KEY).await.unwrap();
    let buffered = RestApiOptions {
        stream: false,
        timeout: Duration::from_secs(29),
        ..keyed(None)
    };
    let rest = Rest::start(
        &fake,
        buffered.clone(),
        &[("REST_RESPONSE_MODE", "buffered")],
    )
    .await;
    let resp = post_with_key(
        &rest.url("/v1/messages"),
        Some(KEY_VALUE),
        &messages_body("one two", true),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let events = parse_sse(&text);
    assert_eq!(
        names(&events).last().map(String::as_str),
        Some("message_stop")
    );
    rest.lambda.stop().await;

    // A function streaming into a buffered integration is API Gateway's 502, and the
    // platform log says why.
    let rest = Rest::start(&fake, buffered, &[]).await;
    let (status, v) = json_of(
        post_with_key(
            &rest.url("/chat"),
            Some(KEY_VALUE),
            &json!({"message": "x"}),
        )
        .await,
    )
    .await
    .unwrap();
    assert_eq!(
        (status, &v),
        (502, &json!({"message": "Internal server error"}))
    );
    let deadline = tokio::time::Instant::now() + T;
    while !rest.logs().contains("responseTransferMode STREAM") {
        assert!(tokio::time::Instant::now() < deadline, "{}", rest.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    rest.lambda.stop().await;
}

/// A named caller's API key names the caller: the handler reads the secret (in moto), finds
/// the entry whose `api_key_id` is the key API Gateway checked, logs and limits the request
/// as that caller; a key no entry names is `api-key-<id>`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_callers_api_key_names_the_caller_and_brings_its_limits() {
    let e = stand_ins::stack_support::env().await;
    let sm = aws_sdk_secretsmanager::Client::new(&e.direct);
    let value = json!({
        "anthropic_api_key": TEST_ANTHROPIC_KEY,
        "callers": [{
            "name": "alice",
            "token_sha256": handler::callers::token_sha256_hex(TEST_CALLER_TOKEN),
            "created_at": "2026-01-01T00:00:00Z",
            "limits": {"max_tokens": 50},
            "api_key_id": KEY_ID,
        }],
    });
    let arn = sm
        .create_secret()
        .name("claude-proxy/rest-callers")
        .secret_string(value.to_string())
        .send()
        .await
        .unwrap()
        .arn()
        .unwrap()
        .to_string();
    let fake = FakeAnthropic::start(TEST_ANTHROPIC_KEY).await.unwrap();
    const OTHER_ID: &str = "k3y1d0002";
    const OTHER_VALUE: &str = "rest-api-key-value-OTHER-DO-NOT-LOG-55aa";
    let mut opts = keyed(None);
    opts.api_keys.push(RestApiKey {
        id: OTHER_ID.into(),
        value: OTHER_VALUE.into(),
        quota: None,
    });
    let moto = e.moto.endpoint_url();
    let rest = Rest::start(
        &fake,
        opts,
        &[
            ("SECRET_ARN", arn.as_str()),
            ("AWS_ENDPOINT_URL", moto.as_str()),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
        ],
    )
    .await;
    let url = rest.url("/v1/messages");
    // Alice's own max_tokens limit, before anything goes upstream.
    let (status, v) =
        json_of(post_with_key(&url, Some(KEY_VALUE), &messages_body("hi", false)).await)
            .await
            .unwrap();
    assert_eq!(status, 400, "{v}\n{}", rest.logs());
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("`alice`") && msg.contains("limit max_tokens"),
        "{msg}"
    );
    assert_eq!(fake.request_count(), 0);
    // Within it: answered, logged as alice.
    let mut small = messages_body("hi", false);
    small["max_tokens"] = json!(20);
    let resp = post_with_key(&url, Some(KEY_VALUE), &small).await;
    assert_eq!(resp.status(), 200);
    // A key no caller's entry names: the usage plan's key, by id.
    let resp = post_with_key(&url, Some(OTHER_VALUE), &messages_body("hi", false)).await;
    assert_eq!(resp.status(), 200);
    let lines = rest.request_lines(3).await;
    let callers: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| {
            (
                l["fields"]["caller"].as_str().unwrap_or("-"),
                l["fields"]["api_key_id"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        callers,
        [
            ("alice", KEY_ID),
            ("alice", KEY_ID),
            ("api-key-k3y1d0002", OTHER_ID)
        ],
        "{}",
        rest.logs()
    );
    let logs = rest.logs();
    assert_no_key_values(&logs);
    assert!(!logs.contains(OTHER_VALUE), "{logs}");
    rest.lambda.stop().await;
}
