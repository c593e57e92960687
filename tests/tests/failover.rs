//! Provider failover end to end: the real `bootstrap` under the Runtime API emulator with
//! both fake upstreams, the Anthropic API primary and Bedrock the fallback, and the other way
//! round. A 529 storm, refused connections and a hang on the primary are answered by the
//! fallback, streamed and buffered, byte for byte as the primary answers when it is healthy
//! (compared with the same request through a handler in front of a fresh fake of the
//! primary); caller errors, started streams and models the fallback cannot serve never fail
//! over; the circuit breaker opens, probes and closes. Every case counts the requests each
//! upstream received, so sending one more than the policy allows fails the test.

use emulators::anthropic::{FakeAnthropic, Fault};
use emulators::bedrock::{BedrockFault, FakeBedrock};
use handler::{BedrockProvider, Config, ProviderKind, RetryPolicy, Secret, SecretSource};
use serde_json::{json, Value};
use stand_ins::handler_support::*;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

const T: Duration = Duration::from_secs(30);
const PROVIDER_HEADER: &str = handler::failover::PROVIDER_HEADER;
/// A name both fakes report alike: the Anthropic fake echoes it, the Bedrock fake derives it
/// from the id `claude-sonnet-4-5` maps to (a dated name matches the entry of its date).
const SONNET: &str = "claude-sonnet-4-5-20250929";

fn messages(model: &str, text: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": text}],
        "stream": stream,
    })
}

/// The requests every byte-for-byte comparison sends: both routes, streamed and buffered,
/// and count_tokens.
fn cases() -> Vec<(&'static str, Value)> {
    vec![
        ("/v1/messages", messages(SONNET, "one two three", true)),
        ("/v1/messages", messages(SONNET, "four five", false)),
        (
            "/chat",
            json!({"message": "six seven", "model": SONNET, "stream": true}),
        ),
        ("/chat", json!({"message": "eight", "model": SONNET})),
        (
            "/v1/messages/count_tokens",
            json!({"model": SONNET, "system": "be brief", "messages": [{"role": "user", "content": "count these words"}]}),
        ),
    ]
}

/// Status, content type, body and the provider header of a POST.
#[derive(Debug, PartialEq)]
struct Answer {
    status: u16,
    content_type: String,
    body: String,
    provider: Option<String>,
}

async fn post(url: &str, body: &Value) -> Answer {
    let resp = post_json(url, body).await.unwrap();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let content_type = header("content-type").unwrap_or_default();
    let provider = header(PROVIDER_HEADER);
    Answer {
        status: resp.status().as_u16(),
        content_type,
        provider,
        body: resp.text().await.unwrap(),
    }
}

/// What callers compare: everything but the provider header.
fn seen(a: &Answer) -> (u16, &str, &str) {
    (a.status, &a.content_type, &a.body)
}

fn error_type(a: &Answer) -> String {
    let v: Value = serde_json::from_str(&a.body).unwrap_or(Value::Null);
    assert_eq!(v["type"], "error", "{a:?}");
    v["error"]["type"].as_str().unwrap_or_default().to_string()
}

/// A 529 storm with `retry-after-ms: 0`: the retries happen (and are counted) at once.
fn overloaded_now() -> Fault {
    Fault::Error {
        status: 529,
        retry_after: None,
        retry_after_ms: Some("0".into()),
    }
}

/// The function's environment: the local key and caller token, dummy AWS credentials.
fn lambda_env(extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("ANTHROPIC_API_KEY", TEST_ANTHROPIC_KEY.to_string()),
        ("CALLER_TOKEN", TEST_CALLER_TOKEN.to_string()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "AKIDTESTFAILOVER".into()),
        ("AWS_SECRET_ACCESS_KEY", "test-secret".into()),
        ("RESPONSE_MODE", "stream".into()),
        ("ALLOWED_MODELS", "*".into()),
    ];
    env.extend(extra.iter().cloned());
    env
}

/// Anthropic primary (`primary`), Bedrock fallback (`fallback`).
fn anthropic_first(
    primary: &str,
    fallback: &FakeBedrock,
    extra: &[(&'static str, String)],
) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("ANTHROPIC_BASE_URL", primary.to_string()),
        ("FALLBACK", "bedrock".into()),
        ("BEDROCK_ENDPOINT_URL", fallback.endpoint_url()),
    ];
    env.extend(extra.iter().cloned());
    lambda_env(&env)
}

/// The request log lines (`"message":"request"`), once there are at least `n` of them.
async fn request_lines(lambda: &LambdaUnderEmulator, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + T;
    loop {
        let lines: Vec<Value> = lambda
            .logs
            .text()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["fields"]["message"] == "request")
            .collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{} request log lines, expected {n}:\n{}",
            lines.len(),
            lambda.logs.text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `provider` and `failover` fields of the `n`-th request log line (1-based).
async fn logged(lambda: &LambdaUnderEmulator, n: usize) -> (Option<String>, Option<String>) {
    let line = &request_lines(lambda, n).await[n - 1];
    let field = |k: &str| line["fields"][k].as_str().map(String::from);
    (field("provider"), field("failover"))
}

fn assert_no_secrets(logs: &str) {
    for secret in [
        TEST_ANTHROPIC_KEY,
        TEST_CALLER_TOKEN,
        "test-secret",
        "Echo:",
    ] {
        assert!(!logs.contains(secret), "`{secret}` in the logs:\n{logs}");
    }
}

/// A handler with only the Anthropic provider in front of a fresh, healthy fake: what the
/// primary answers when nothing is wrong.
async fn anthropic_reference() -> (FakeAnthropic, LocalServer) {
    let fake = FakeAnthropic::start(TEST_ANTHROPIC_KEY).await.unwrap();
    let mut config = local_config(&fake.base_url());
    config.allowed_models = vec!["*".into()];
    let app = handler::App::new(config).await.unwrap();
    (fake, LocalServer::start(app).await.unwrap())
}

/// The same with only the Bedrock provider.
async fn bedrock_reference() -> (FakeBedrock, LocalServer) {
    let fake = FakeBedrock::start().await.unwrap();
    let mut config = Config::new(handler::SecretConfig::Local {
        anthropic_api_key: String::new(),
        caller_tokens: vec![TEST_CALLER_TOKEN.into()],
    });
    config.provider = ProviderKind::Bedrock;
    config.allowed_models = vec!["*".into()];
    config.bedrock.endpoint_url = Some(fake.endpoint_url());
    let sdk = infra::tls::sdk_defaults()
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
            "AKIDTESTFAILOVER",
            "test-secret",
            None,
            None,
            "tests",
        ))
        .load()
        .await;
    let provider = BedrockProvider::new(&sdk, &config.bedrock, RetryPolicy::default());
    let source = SecretSource::Static(
        Secret::parse(&json!({"caller_tokens": [TEST_CALLER_TOKEN]}).to_string()).unwrap(),
    );
    let app = handler::App::with_provider(config, source, Arc::new(provider));
    (fake, LocalServer::start(app).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_529_storm_on_the_anthropic_api_is_answered_by_bedrock_byte_for_byte() {
    let primary = FakeAnthropic::start(TEST_ANTHROPIC_KEY).await.unwrap();
    let fallback = FakeBedrock::start().await.unwrap();
    let (_reference_fake, reference) = anthropic_reference().await;
    let env = anthropic_first(
        &primary.base_url(),
        &fallback,
        &[("FAILOVER_BREAKER_FAILURES", "100".into())],
    );
    let mut lambda = LambdaUnderEmulator::start(&env).await.unwrap();
    primary.storm(overloaded_now());

    for (i, (path, body)) in cases().iter().enumerate() {
        let got = post(&lambda.url(path), body).await;
        let want = post(&reference.url(path), body).await;
        assert_eq!(got.status, 200, "{path}: {got:?}\n{}", lambda.logs.text());
        assert_eq!(
            seen(&got),
            seen(&want),
            "{path}: failover (left) vs healthy primary"
        );
        assert_eq!(got.provider.as_deref(), Some("bedrock"), "{path}");
        assert_eq!(want.provider.as_deref(), Some("anthropic"), "{path}");
        // Exactly the policy: the first attempt and two retries, then one fallback request.
        assert_eq!(primary.request_count(), 3 * (i + 1), "{path}");
        assert_eq!(fallback.request_count(), i + 1, "{path}");
        assert_eq!(
            logged(&lambda, i + 1).await,
            (Some("bedrock".into()), Some("primary_failed".into())),
            "{path}"
        );
    }
    // Streams were real streams, through the Bedrock provider's translation.
    let ops: Vec<String> = fallback
        .requests()
        .iter()
        .map(|r| r.operation.clone())
        .collect();
    assert_eq!(
        ops,
        [
            "invoke-with-response-stream",
            "invoke",
            "invoke-with-response-stream",
            "invoke",
            "count-tokens"
        ]
    );
    assert!(fallback
        .requests()
        .iter()
        .all(|r| r.header("x-api-key").is_none()));

    // The storm ends: the primary answers again, and nothing goes to Bedrock.
    primary.calm();
    let got = post(&lambda.url("/chat"), &json!({"message": "calm"})).await;
    assert_eq!(
        (got.status, got.provider.as_deref()),
        (200, Some("anthropic"))
    );
    assert_eq!((primary.request_count(), fallback.request_count()), (16, 5));
    lambda.assert_running().unwrap();
    let lines = request_lines(&lambda, 6).await;
    assert!(
        lines[0]["fields"]["primary_error"]
            .as_str()
            .is_some_and(|e| e.contains("529") && e.contains("3 attempt")),
        "{}",
        lines[0]
    );
    assert_no_secrets(&lambda.logs.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refused_connections_on_the_primary_fail_over() {
    let fallback = FakeBedrock::start().await.unwrap();
    let closed = emulators::moto::free_port().unwrap();
    let env = anthropic_first(&format!("http://127.0.0.1:{closed}"), &fallback, &[]);
    let mut lambda = LambdaUnderEmulator::start(&env).await.unwrap();

    for (n, stream) in [(1, true), (2, false)] {
        let got = post(
            &lambda.url("/v1/messages"),
            &messages(SONNET, "through the other door", stream),
        )
        .await;
        assert_eq!(got.status, 200, "{got:?}\n{}", lambda.logs.text());
        assert_eq!(got.provider.as_deref(), Some("bedrock"));
        assert!(got.body.contains("door"), "{got:?}");
        assert_eq!(fallback.request_count(), n);
        assert_eq!(
            logged(&lambda, n).await,
            (Some("bedrock".into()), Some("primary_failed".into()))
        );
        // Nothing listens, so the attempts are counted where they are made: one log line
        // per failed attempt, the first and two retries per request.
        let attempts = lambda
            .logs
            .text()
            .matches("\"message\":\"upstream request failed\"")
            .count();
        assert_eq!(attempts, 3 * n, "{}", lambda.logs.text());
    }
    lambda.assert_running().unwrap();
    assert_no_secrets(&lambda.logs.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hanging_primary_fails_over_after_its_share_of_the_time() {
    let primary = FakeAnthropic::start(TEST_ANTHROPIC_KEY).await.unwrap();
    let fallback = FakeBedrock::start().await.unwrap();
    // A buffered Function URL this time: the stream is answered as one document.
    let env = anthropic_first(
        &primary.base_url(),
        &fallback,
        &[
            ("FAILOVER_AFTER_MS", "1500".into()),
            ("RESPONSE_MODE", "buffered".into()),
        ],
    );
    let mut lambda = LambdaUnderEmulator::start(&env).await.unwrap();
    // Headers never come within the primary's 1.5 s.
    primary.storm(Fault::DelayFirstByte(Duration::from_secs(300)));

    for (n, (path, body)) in [
        ("/v1/messages", messages(SONNET, "a b", true)),
        ("/chat", json!({"message": "c d", "model": SONNET})),
    ]
    .iter()
    .enumerate()
    {
        let got = post(&lambda.url(path), body).await;
        assert_eq!(got.status, 200, "{path}: {got:?}\n{}", lambda.logs.text());
        assert_eq!(got.provider.as_deref(), Some("bedrock"));
        if body["stream"] == true {
            assert_eq!(
                names(&parse_sse(&got.body)).last().map(String::as_str),
                Some("message_stop"),
                "{got:?}"
            );
        }
        // One attempt used up the primary's time: no retry, then the fallback.
        assert_eq!(primary.request_count(), n + 1, "{path}");
        assert_eq!(fallback.request_count(), n + 1, "{path}");
    }
    let lines = request_lines(&lambda, 2).await;
    assert!(
        lines[0]["fields"]["primary_error"]
            .as_str()
            .is_some_and(|e| e.contains("did not answer within the time")),
        "{}",
        lines[0]
    );
    lambda.assert_running().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn caller_errors_and_started_streams_never_fail_over() {
    let primary = FakeAnthropic::start(TEST_ANTHROPIC_KEY).await.unwrap();
    let fallback = FakeBedrock::start().await.unwrap();
    let env = anthropic_first(&primary.base_url(), &fallback, &[]);
    let mut lambda = LambdaUnderEmulator::start(&env).await.unwrap();
    let body = messages(SONNET, "hi", false);

    // The upstream's own refusals: passed on (401/403 as the proxy's credentials refused),
    // one request each, never to Bedrock.
    for (fault, status, kind) in [
        (Fault::status(400), 400, "invalid_request_error"),
        (Fault::status(401), 502, "api_error"),
        (Fault::status(403), 502, "api_error"),
        (Fault::status(404), 404, "not_found_error"),
        (
            Fault::ShouldRetry { status: 400 },
            400,
            "invalid_request_error",
        ),
    ] {
        primary.clear_requests();
        primary.push_fault(fault.clone());
        let got = post(&lambda.url("/v1/messages"), &body).await;
        assert_eq!(got.status, status, "{fault:?}: {got:?}");
        assert_eq!(error_type(&got), kind, "{fault:?}");
        assert_eq!(got.provider.as_deref(), Some("anthropic"), "{fault:?}");
        assert_eq!(primary.request_count(), 1, "{fault:?}");
        assert_eq!(fallback.request_count(), 0, "{fault:?}");
    }
    // The proxy's own 400 and 401: nothing goes anywhere, and no provider answered.
    primary.clear_requests();
    let got = post(
        &lambda.url("/v1/messages"),
        &json!({"model": SONNET, "max_tokens": 999999, "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(
        (got.status, got.provider.as_deref()),
        (400, None),
        "{got:?}"
    );
    let resp = client()
        .post(lambda.url("/v1/messages"))
        .header("content-type", "application/json")
        .header("x-api-key", "not-the-token")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().get(PROVIDER_HEADER).is_none());
    assert_eq!((primary.request_count(), fallback.request_count()), (0, 0));

    // A stream that started towards the caller is never failed over: a break is in-band.
    for fault in [
        Fault::DropMidStream { after_events: 4 },
        Fault::StreamError { after_events: 3 },
    ] {
        primary.clear_requests();
        primary.push_fault(fault.clone());
        let resp = post_json(
            &lambda.url("/v1/messages"),
            &messages(SONNET, "a b c", true),
        )
        .await
        .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()[PROVIDER_HEADER], "anthropic");
        let events = SseReader::new(resp).collect(T).await.unwrap();
        assert_eq!(names(&events).last().unwrap(), "error", "{fault:?}");
        assert_eq!(primary.request_count(), 1, "{fault:?}");
        assert_eq!(fallback.request_count(), 0, "{fault:?}");
    }
    lambda.assert_running().unwrap();
    for n in 1..=9 {
        assert_eq!(logged(&lambda, n).await.1, None, "request {n} failed over");
    }
    assert_no_secrets(&lambda.logs.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_model_missing_from_the_bedrock_map_does_not_fail_over() {
    let primary = FakeAnthropic::start(TEST_ANTHROPIC_KEY).await.unwrap();
    let fallback = FakeBedrock::start().await.unwrap();
    let env = anthropic_first(
        &primary.base_url(),
        &fallback,
        &[(
            "BEDROCK_MODEL_MAP",
            "claude-haiku-4-5=us.anthropic.claude-haiku-4-5-20251001-v1:0".into(),
        )],
    );
    let mut lambda = LambdaUnderEmulator::start(&env).await.unwrap();
    primary.storm(overloaded_now());

    // Not in the map: the caller gets the primary's 529 after its retries, in its shape.
    for (n, stream) in [(1, false), (2, true)] {
        let got = post(
            &lambda.url("/v1/messages"),
            &messages("claude-opus-4-1", "hi", stream),
        )
        .await;
        assert_eq!(got.status, 529, "{got:?}");
        assert_eq!(error_type(&got), "overloaded_error");
        assert_eq!(got.provider.as_deref(), Some("anthropic"));
        assert_eq!(primary.request_count(), 3 * n);
        assert_eq!(fallback.request_count(), 0);
    }
    // A mapped model does fail over.
    let got = post(
        &lambda.url("/chat"),
        &json!({"message": "hi", "model": "claude-haiku-4-5"}),
    )
    .await;
    assert_eq!(
        (got.status, got.provider.as_deref()),
        (200, Some("bedrock"))
    );
    assert_eq!((primary.request_count(), fallback.request_count()), (9, 1));
    assert_eq!(
        fallback.requests()[0].model_id,
        "us.anthropic.claude-haiku-4-5-20251001-v1:0"
    );
    lambda.assert_running().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_breaker_opens_probes_and_closes() {
    let primary = FakeAnthropic::start(TEST_ANTHROPIC_KEY).await.unwrap();
    let fallback = FakeBedrock::start().await.unwrap();
    let cool_down = Duration::from_secs(4);
    let env = anthropic_first(
        &primary.base_url(),
        &fallback,
        &[
            ("FAILOVER_BREAKER_FAILURES", "2".into()),
            ("FAILOVER_COOL_DOWN_MS", cool_down.as_millis().to_string()),
        ],
    );
    let mut lambda = LambdaUnderEmulator::start(&env).await.unwrap();
    primary.storm(overloaded_now());
    let url = lambda.url("/v1/messages");
    let counts = || (primary.request_count(), fallback.request_count());

    // Two failed requests (three attempts each) open it.
    for n in 1..=2 {
        let got = post(&url, &messages(SONNET, "storm", n == 1)).await;
        assert_eq!(
            (got.status, got.provider.as_deref()),
            (200, Some("bedrock"))
        );
        assert_eq!(counts(), (3 * n, n));
    }
    let opened = Instant::now();
    // Open: straight to Bedrock, the primary is not asked at all.
    let got = post(&url, &messages(SONNET, "straight", true)).await;
    assert_eq!(got.provider.as_deref(), Some("bedrock"));
    assert_eq!(counts(), (6, 3));
    assert_eq!(logged(&lambda, 3).await.1.as_deref(), Some("breaker_open"));

    // After the cool-down one request probes the primary: a single attempt, still failing,
    // so Bedrock answers it and the breaker opens for another cool-down.
    tokio::time::sleep_until(opened + cool_down).await;
    let got = post(&url, &messages(SONNET, "probe", false)).await;
    assert_eq!(got.provider.as_deref(), Some("bedrock"));
    assert_eq!(counts(), (7, 4));
    assert_eq!(logged(&lambda, 4).await.1.as_deref(), Some("probe_failed"));
    let reopened = Instant::now();
    let got = post(&url, &messages(SONNET, "still open", false)).await;
    assert_eq!(got.provider.as_deref(), Some("bedrock"));
    assert_eq!(counts(), (7, 5));

    // The primary recovers; the next probe succeeds and closes the breaker.
    primary.calm();
    tokio::time::sleep_until(reopened + cool_down).await;
    for (n, stream) in [(8, true), (9, false)] {
        let got = post(&url, &messages(SONNET, "back", stream)).await;
        assert_eq!(
            (got.status, got.provider.as_deref()),
            (200, Some("anthropic"))
        );
        assert_eq!(counts(), (n, 5));
    }
    lambda.assert_running().unwrap();
    request_lines(&lambda, 7).await;
    let logs = lambda.logs.text();
    for said in [
        "circuit breaker opened",
        "the probe of the primary failed",
        "circuit breaker closed",
    ] {
        assert_eq!(logs.matches(said).count(), 1, "{said}:\n{logs}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bedrock_as_primary_fails_over_to_the_anthropic_api() {
    let primary = FakeBedrock::start().await.unwrap();
    let fallback = FakeAnthropic::start(TEST_ANTHROPIC_KEY).await.unwrap();
    let (_reference_fake, reference) = bedrock_reference().await;
    let env = lambda_env(&[
        ("PROVIDER", "bedrock".into()),
        ("FALLBACK", "anthropic".into()),
        ("BEDROCK_ENDPOINT_URL", primary.endpoint_url()),
        ("ANTHROPIC_BASE_URL", fallback.base_url()),
        ("FAILOVER_BREAKER_FAILURES", "100".into()),
        // Room for the two retries' backoff (at most 1.5 s), not for a hang.
        ("FAILOVER_AFTER_MS", "4000".into()),
    ]);
    let mut lambda = LambdaUnderEmulator::start(&env).await.unwrap();

    // Bedrock overloaded (ServiceUnavailableException, a 529 to callers) for every request.
    primary.storm(BedrockFault::service_unavailable());
    for (i, (path, body)) in cases().iter().enumerate() {
        let got = post(&lambda.url(path), body).await;
        let want = post(&reference.url(path), body).await;
        assert_eq!(got.status, 200, "{path}: {got:?}\n{}", lambda.logs.text());
        assert_eq!(
            seen(&got),
            seen(&want),
            "{path}: failover (left) vs healthy primary"
        );
        assert_eq!(got.provider.as_deref(), Some("anthropic"), "{path}");
        assert_eq!(want.provider.as_deref(), Some("bedrock"), "{path}");
        assert_eq!(primary.request_count(), 3 * (i + 1), "{path}");
        assert_eq!(fallback.request_count(), i + 1, "{path}");
    }
    // The Anthropic API got the caller's body as sent, with the key from the secret.
    let first = &fallback.requests()[0];
    assert_eq!(first.json().unwrap(), cases()[0].1);
    assert_eq!(first.header("x-api-key"), Some(TEST_ANTHROPIC_KEY));

    // A hang: one attempt until the primary's time is up, then the Anthropic API.
    primary.storm(BedrockFault::Delay(Duration::from_secs(300)));
    primary.clear_requests();
    let got = post(
        &lambda.url("/chat"),
        &json!({"message": "hang", "model": SONNET}),
    )
    .await;
    assert_eq!(
        (got.status, got.provider.as_deref()),
        (200, Some("anthropic"))
    );
    assert_eq!((primary.request_count(), fallback.request_count()), (1, 6));

    // Never for Bedrock's own refusals, nor for a Bedrock id the Anthropic API cannot take.
    primary.calm();
    for (fault, status) in [
        (BedrockFault::validation(), 400),
        (BedrockFault::access_denied(), 502),
    ] {
        primary.clear_requests();
        primary.push_fault(fault.clone());
        let got = post(&lambda.url("/v1/messages"), &messages(SONNET, "x", false)).await;
        assert_eq!(got.status, status, "{fault:?}: {got:?}");
        assert_eq!(got.provider.as_deref(), Some("bedrock"));
        assert_eq!(primary.request_count(), 1, "{fault:?}");
    }
    primary.storm(BedrockFault::service_unavailable());
    primary.clear_requests();
    let got = post(
        &lambda.url("/v1/messages"),
        &messages("us.anthropic.claude-haiku-4-5-20251001-v1:0", "x", false),
    )
    .await;
    assert_eq!(got.status, 529, "{got:?}");
    assert_eq!(error_type(&got), "overloaded_error");
    assert_eq!(primary.request_count(), 3);
    assert_eq!(
        fallback.request_count(),
        6,
        "nothing more to the Anthropic API"
    );
    lambda.assert_running().unwrap();
    assert_no_secrets(&lambda.logs.text());
}
