//! Claude on Amazon Bedrock end to end: the handler (in-process, and the real `bootstrap`
//! under the Runtime API emulator) in front of the fake Bedrock runtime, compared byte for
//! byte with the Anthropic provider in front of the fake Messages API; throttling retries,
//! Bedrock errors in the Anthropic shape, model-name mapping, and no Anthropic key anywhere.

use emulators::anthropic::FakeAnthropic;
use emulators::bedrock::{BedrockFault, FakeBedrock};
use emulators::moto::MotoServer;
use handler::model_map::ModelMap;
use handler::{BedrockProvider, Config, ProviderKind, RetryPolicy, Secret, SecretSource};
use serde_json::{json, Value};
use stand_ins::handler_support::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

/// Bedrock answers `claude-sonnet-4-5` (→ `global.anthropic.claude-sonnet-4-5-20250929-v1:0`)
/// with the model `claude-sonnet-4-5-20250929`; the fake Messages API echoes the model it is
/// asked for. Asking it for this name makes both answers identical.
const SONNET_AS_REPORTED: &str = "claude-sonnet-4-5-20250929";
const HAIKU_AS_REPORTED: &str = "claude-haiku-4-5-20251001";

fn messages_body(model: &str, text: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": text}],
        "stream": stream,
    })
}

/// An SDK configuration with fixed test credentials (the bootstrap test below builds its own
/// from the Lambda environment, as on Lambda).
async fn sdk_config() -> aws_config::SdkConfig {
    infra::tls::sdk_defaults()
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
            "AKIDTESTBEDROCK",
            "test-secret",
            None,
            None,
            "tests",
        ))
        .load()
        .await
}

fn bedrock_config(fake: &FakeBedrock) -> Config {
    let mut c = Config::new(handler::SecretConfig::Local {
        anthropic_api_key: String::new(),
        caller_tokens: vec![TEST_CALLER_TOKEN.into()],
    });
    c.provider = ProviderKind::Bedrock;
    c.bedrock.endpoint_url = Some(fake.endpoint_url());
    c
}

/// Backoff shortened for the tests; the same rules otherwise.
fn fast_retries(max_retries: u32) -> RetryPolicy {
    RetryPolicy {
        max_retries,
        initial_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
    }
}

/// The handler with the Bedrock provider, served locally; the secret holds only caller tokens.
async fn bedrock_server(config: Config, source: Option<SecretSource>) -> LocalServer {
    let provider = BedrockProvider::new(
        &sdk_config().await,
        &config.bedrock,
        fast_retries(config.upstream_max_retries),
    );
    let source = source.unwrap_or_else(|| {
        SecretSource::Static(
            Secret::parse(&json!({"caller_tokens": [TEST_CALLER_TOKEN]}).to_string()).unwrap(),
        )
    });
    let app = handler::App::with_provider(config, source, Arc::new(provider));
    app.warm_up().await;
    LocalServer::start(app).await.expect("server")
}

async fn anthropic_server(fake: &FakeAnthropic) -> LocalServer {
    let mut config = local_config(&fake.base_url());
    // The comparison sends the model names Bedrock reports; the allowlist is not under test.
    config.allowed_models = vec!["*".into()];
    let app = handler::App::new(config).await.expect("app");
    LocalServer::start(app).await.expect("server")
}

/// Status, selected headers and the raw body of a POST.
async fn post_raw(url: &str, body: &Value) -> (u16, String, String) {
    let resp = post_json(url, body).await.unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, resp.text().await.unwrap())
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bedrock_answers_byte_for_byte_like_the_anthropic_provider() {
    let fake_b = FakeBedrock::start().await.unwrap();
    let fake_a = FakeAnthropic::start(TEST_ANTHROPIC_KEY).await.unwrap();
    let bedrock = bedrock_server(bedrock_config(&fake_b), None).await;
    let anthropic = anthropic_server(&fake_a).await;

    // The same requests, in the same order on both sides (the fakes number their ids).
    let cases: Vec<(&str, Value, Value)> = vec![
        (
            "/v1/messages",
            messages_body("claude-sonnet-4-5", "one two three", true),
            messages_body(SONNET_AS_REPORTED, "one two three", true),
        ),
        (
            "/v1/messages",
            messages_body("claude-sonnet-4-5", "four five", false),
            messages_body(SONNET_AS_REPORTED, "four five", false),
        ),
        (
            "/chat",
            json!({"message": "six seven", "model": "claude-haiku-4-5", "stream": true}),
            json!({"message": "six seven", "model": HAIKU_AS_REPORTED, "stream": true}),
        ),
        (
            "/chat",
            json!({"message": "eight", "model": "claude-haiku-4-5"}),
            json!({"message": "eight", "model": HAIKU_AS_REPORTED}),
        ),
        (
            "/v1/messages/count_tokens",
            json!({"model": "claude-sonnet-4-5", "system": "be brief", "messages": [{"role": "user", "content": "count these words"}]}),
            json!({"model": SONNET_AS_REPORTED, "system": "be brief", "messages": [{"role": "user", "content": "count these words"}]}),
        ),
    ];
    for (path, to_bedrock, to_anthropic) in &cases {
        let b = post_raw(&bedrock.url(path), to_bedrock).await;
        let a = post_raw(&anthropic.url(path), to_anthropic).await;
        assert_eq!(b.0, 200, "{path}: {}", b.2);
        assert_eq!(b, a, "{path}: Bedrock (left) and Anthropic (right) differ");
    }
    // The streams were real streams with the whole event sequence.
    let first = post_raw(
        &bedrock.url("/v1/messages"),
        &messages_body("claude-sonnet-4-5", "x y", true),
    )
    .await;
    assert!(first.1.starts_with("text/event-stream"), "{}", first.1);
    assert_eq!(
        names(&parse_sse(&first.2)),
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );

    // What Bedrock received: its Messages form, the id in the path, SigV4, no Anthropic key.
    let seen = fake_b.requests();
    assert_eq!(
        seen.iter()
            .map(|r| r.operation.as_str())
            .collect::<Vec<_>>(),
        [
            "invoke-with-response-stream",
            "invoke",
            "invoke-with-response-stream",
            "invoke",
            "count-tokens",
            "invoke-with-response-stream"
        ]
    );
    for r in &seen {
        let body = r.json().unwrap();
        assert!(body.get("model").is_none(), "{body}");
        assert!(body.get("stream").is_none(), "{body}");
        assert_eq!(body["anthropic_version"], "bedrock-2023-05-31", "{body}");
        assert!(r.header("x-api-key").is_none());
        assert!(r
            .header("authorization")
            .unwrap()
            .starts_with("AWS4-HMAC-SHA256 Credential=AKIDTESTBEDROCK/"));
    }
    assert_eq!(
        seen[0].model_id,
        "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
    );
    assert_eq!(
        seen[2].model_id,
        "global.anthropic.claude-haiku-4-5-20251001-v1:0"
    );
    // CountTokens takes the foundation model, not the profile.
    assert_eq!(
        seen[4].model_id,
        "anthropic.claude-sonnet-4-5-20250929-v1:0"
    );
    assert_eq!(seen[0].json().unwrap()["max_tokens"], 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn throttling_is_retried_like_a_429_and_then_answered_as_one() {
    let fake = FakeBedrock::start().await.unwrap();
    let server = bedrock_server(bedrock_config(&fake), None).await;

    // Twice throttled, then success: exactly three attempts, buffered and streamed.
    fake.push_faults(BedrockFault::throttling(), 2);
    let (status, body) = json_of(
        post_json(
            &server.url("/v1/messages"),
            &messages_body("claude-haiku-4-5", "hi", false),
        )
        .await
        .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["content"][0]["text"], "Echo: hi");
    assert_eq!(fake.request_count(), 3);

    fake.clear_requests();
    fake.push_faults(BedrockFault::throttling(), 2);
    let resp = post_json(
        &server.url("/v1/messages"),
        &messages_body("claude-haiku-4-5", "a b", true),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let events = SseReader::new(resp).collect(T).await.unwrap();
    assert_eq!(names(&events).last().unwrap(), "message_stop");
    assert_eq!(fake.request_count(), 3);

    // Throttled beyond the retries: the caller gets the 429 in the Anthropic shape.
    fake.clear_requests();
    fake.push_faults(BedrockFault::throttling(), 3);
    let (status, body) = json_of(
        post_json(
            &server.url("/v1/messages"),
            &messages_body("claude-haiku-4-5", "hi", true),
        )
        .await
        .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(status, 429, "{body}");
    assert_error_shape(&body, "rate_limit_error");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("ThrottlingException"));
    assert_eq!(fake.request_count(), 3);
    assert_eq!(fake.pending_faults(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bedrock_errors_arrive_in_the_anthropic_shape() {
    let fake = FakeBedrock::start().await.unwrap();
    let server = bedrock_server(bedrock_config(&fake), None).await;
    let body = messages_body("claude-haiku-4-5", "hi", false);

    for (fault, status, error_type, attempts) in [
        // The function role was refused: not the caller's fault, so not a 403 to the caller
        // (issue 12: the proxy's own credentials refused upstream are a 502 that says so).
        (BedrockFault::access_denied(), 502, "api_error", 1),
        (BedrockFault::validation(), 400, "invalid_request_error", 1),
        (
            BedrockFault::error(404, "ResourceNotFoundException"),
            404,
            "not_found_error",
            1,
        ),
        (
            BedrockFault::error(424, "ModelErrorException"),
            500,
            "api_error",
            3,
        ),
    ] {
        fake.clear_requests();
        fake.push_faults(fault.clone(), attempts);
        let (s, v) = json_of(post_json(&server.url("/v1/messages"), &body).await.unwrap())
            .await
            .unwrap();
        assert_eq!(s, status, "{fault:?}: {v}");
        assert_error_shape(&v, error_type);
        assert_eq!(fake.request_count(), attempts, "{fault:?}");
    }
    fake.clear_requests();
    fake.push_faults(BedrockFault::model_not_ready(), 3);
    let (s, v) = json_of(
        post_json(&server.url("/chat"), &json!({"message": "hi"}))
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(s, 529, "{v}");
    assert_error_shape(&v, "overloaded_error");
    assert_eq!(fake.request_count(), 3);

    // An exception after the stream started: in-band, after the events already sent.
    fake.push_fault(BedrockFault::stream_exception(
        3,
        "modelStreamErrorException",
    ));
    let resp = post_json(
        &server.url("/v1/messages"),
        &messages_body("claude-haiku-4-5", "a b c", true),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let events = SseReader::new(resp).collect(T).await.unwrap();
    assert_eq!(
        names(&events),
        ["message_start", "content_block_start", "ping", "error"]
    );
    let err: Value = serde_json::from_str(&events[3].data).unwrap();
    assert_error_shape(&err, "api_error");
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("ModelStreamErrorException"));

    // The same through /chat: text so far, then the error event.
    fake.push_fault(BedrockFault::stream_exception(4, "throttlingException"));
    let resp = post_json(
        &server.url("/chat"),
        &json!({"message": "a b c", "stream": true}),
    )
    .await
    .unwrap();
    let events = SseReader::new(resp).collect(T).await.unwrap();
    assert_eq!(names(&events), ["text", "error"]);
    let err: Value = serde_json::from_str(&events[1].data).unwrap();
    assert_error_shape(&err, "rate_limit_error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn model_names_map_to_the_configured_bedrock_ids() {
    let fake = FakeBedrock::start().await.unwrap();
    let mut config = bedrock_config(&fake);
    config.bedrock.model_map = Some(
        ModelMap::parse(
            "claude-haiku-4-5=us.anthropic.claude-haiku-4-5-20251001-v1:0,\
             claude-sonnet-4-5=eu.anthropic.claude-sonnet-4-5-20250929-v1:0",
        )
        .unwrap(),
    );
    config.default_model = "claude-haiku-4-5".into();
    // Any model and the one beta flag used below: this test is about the map, not the
    // allowlists (which default to the configured models and no beta flags).
    config.allowed_models = vec!["*".into()];
    config.allowed_betas = vec!["context-1m-2025-08-07".into()];
    let server = bedrock_server(config, None).await;

    let (s, v) = json_of(
        post_json(
            &server.url("/v1/messages"),
            &messages_body("claude-sonnet-4-5", "hi", false),
        )
        .await
        .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["model"], "claude-sonnet-4-5-20250929");
    // /chat's default model goes through the map too.
    let (s, v) = json_of(
        post_json(&server.url("/chat"), &json!({"message": "hi"}))
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(s, 200, "{v}");
    // A Bedrock id (and an ARN) passes through as it is; anthropic-beta becomes anthropic_beta.
    let arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123";
    for id in ["apac.anthropic.claude-sonnet-4-20250514-v1:0", arn] {
        let resp = client()
            .post(server.url("/v1/messages"))
            .header("content-type", "application/json")
            .header("x-api-key", TEST_CALLER_TOKEN)
            .header("anthropic-beta", "context-1m-2025-08-07")
            .body(messages_body(id, "hi", false).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{id}");
    }
    let seen: Vec<String> = fake.requests().iter().map(|r| r.model_id.clone()).collect();
    assert_eq!(
        seen,
        [
            "eu.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "us.anthropic.claude-haiku-4-5-20251001-v1:0",
            "apac.anthropic.claude-sonnet-4-20250514-v1:0",
            arn
        ]
    );
    assert_eq!(
        fake.requests()[2].json().unwrap()["anthropic_beta"],
        json!(["context-1m-2025-08-07"])
    );

    // An Anthropic name without a configured id: 400 naming it and the configured names.
    let (s, v) = json_of(
        post_json(
            &server.url("/v1/messages"),
            &messages_body("claude-opus-4-5", "hi", false),
        )
        .await
        .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(s, 400, "{v}");
    assert_error_shape(&v, "invalid_request_error");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("claude-opus-4-5")
            && msg.contains("claude-haiku-4-5")
            && msg.contains("claude-sonnet-4-5"),
        "{msg}"
    );
    assert_eq!(
        fake.request_count(),
        4,
        "nothing was sent for the unknown name"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_secret_with_only_caller_tokens_is_enough() {
    let fake = FakeBedrock::start().await.unwrap();
    let moto = MotoServer::start().await.unwrap();
    let sm = secrets_client(&moto.endpoint_url()).await;
    let arn = sm
        .create_secret()
        .name("claude-proxy/bedrock")
        .secret_string(json!({"caller_tokens": [TEST_CALLER_TOKEN]}).to_string())
        .send()
        .await
        .unwrap()
        .arn()
        .unwrap()
        .to_string();
    let mut config = bedrock_config(&fake);
    config.secret = handler::SecretConfig::SecretsManager { arn: arn.clone() };
    let source = SecretSource::SecretsManager {
        client: sm.clone(),
        arn,
    };
    let server = bedrock_server(config, Some(source)).await;
    let (s, v) = json_of(
        post_json(&server.url("/chat"), &json!({"message": "hi"}))
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["reply"], "Echo: hi");
    assert_eq!(server.app.secret_fetch_count(), 1);
    // The caller token is still checked.
    let resp = client()
        .post(server.url("/chat"))
        .header("content-type", "application/json")
        .header("x-api-key", "wrong")
        .body(json!({"message": "hi"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bootstrap_serves_bedrock_without_any_secret_under_the_runtime_emulator() {
    let fake = FakeBedrock::start().await.unwrap();
    // A Secrets Manager that cannot be reached: with CALLER_AUTH=none and Bedrock the
    // function must not try (it would answer 500 if it did).
    let closed = emulators::moto::free_port().unwrap();
    let env: Vec<(&str, String)> = vec![
        ("PROVIDER", "bedrock".into()),
        ("CALLER_AUTH", "none".into()),
        (
            "SECRET_ARN",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:claude-proxy/x-AbCdEf".into(),
        ),
        ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{closed}")),
        ("BEDROCK_ENDPOINT_URL", fake.endpoint_url()),
        (
            "BEDROCK_MODEL_MAP",
            json!({"claude-haiku-4-5": "us.anthropic.claude-haiku-4-5-20251001-v1:0"}).to_string(),
        ),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "AKIDTESTBEDROCK".into()),
        ("AWS_SECRET_ACCESS_KEY", "test-secret".into()),
        ("RESPONSE_MODE", "stream".into()),
    ];
    let mut lambda = LambdaUnderEmulator::start(&env).await.unwrap();

    let resp = post_json(
        &lambda.url("/v1/messages"),
        &messages_body("claude-haiku-4-5", "from lambda", true),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200, "{}", lambda.logs.text());
    let events = SseReader::new(resp).collect(T).await.unwrap();
    assert_eq!(names(&events).first().unwrap(), "message_start");
    assert_eq!(names(&events).last().unwrap(), "message_stop");
    let text: String = events
        .iter()
        .filter(|e| e.event.as_deref() == Some("content_block_delta"))
        .map(|e| {
            serde_json::from_str::<Value>(&e.data).unwrap()["delta"]["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(text, "Echo: from lambda");

    let (s, v) = json_of(
        post_json(&lambda.url("/chat"), &json!({"message": "hello"}))
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(s, 200, "{v}\n{}", lambda.logs.text());
    assert_eq!(v["reply"], "Echo: hello");
    assert_eq!(v["model"], "claude-haiku-4-5-20251001");

    let seen = fake.requests();
    assert_eq!(seen.len(), 2);
    assert!(seen
        .iter()
        .all(|r| r.model_id == "us.anthropic.claude-haiku-4-5-20251001-v1:0"));
    lambda.assert_running().unwrap();
    let logs = lambda.logs.text();
    assert!(!logs.contains("secret unavailable"), "{logs}");
    assert!(!logs.contains("test-secret"), "{logs}");
}

#[test]
fn the_handler_and_the_deployer_default_to_the_same_model_table() {
    let handler: BTreeMap<&str, &str> = handler::model_map::DEFAULT_MODEL_MAP
        .iter()
        .copied()
        .collect();
    let deployer: BTreeMap<&str, &str> = infra::config::DEFAULT_BEDROCK_MODELS
        .iter()
        .copied()
        .collect();
    assert_eq!(handler, deployer);
}
