//! Property tests of request parsing and validation: arbitrary bytes, arbitrary JSON values
//! and structure-aware near-valid bodies, through the public parse/validate functions and
//! through the routes ([`handler::App::handle`] with a recording upstream). Properties:
//! nothing panics; every 4xx is an Anthropic-shaped error; a body the validator accepts is
//! answered 200 and reaches the upstream byte for byte; valid bodies are always accepted.
//!
//! Bounded for CI (each property runs [`DEFAULT_CASES`] cases); run longer with
//! `PROPTEST_CASES=100000 cargo test -p claude-lambda-handler --test prop --release`.

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use handler::upstream::{Operation, UpstreamRequest, UpstreamResponse};
use handler::validate::{self, ChatRequest};
use handler::{
    App, Config, Provider, ProxyError, ProxyRequest, Secret, SecretConfig, SecretSource,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use serde_json::{json, Map, Value};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Cases per property in CI; `PROPTEST_CASES` overrides it.
const DEFAULT_CASES: u32 = 256;

const TOKEN: &str = "caller-token-prop-test";
const KEY: &str = "sk-ant-prop-test-key";
const MODELS: &[&str] = &["claude-haiku-4-5", "claude-sonnet-4-5", "claude-opus-4-1"];
const CAP: u64 = 4096;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

fn runner() -> TestRunner {
    TestRunner::new(ProptestConfig {
        cases: cases(),
        // Keep CI bounded even when shrinking a failure.
        max_shrink_iters: 2048,
        ..ProptestConfig::default()
    })
}

fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

fn config() -> Config {
    let mut c = Config::new(SecretConfig::Local {
        anthropic_api_key: KEY.into(),
        caller_tokens: vec![TOKEN.into()],
    });
    c.allowed_models = MODELS.iter().map(|m| m.to_string()).collect();
    c.max_tokens_cap = CAP;
    c.max_request_bytes = 64 * 1024;
    c
}

/// An upstream that records what it was sent and answers like the Messages API (a message,
/// or its SSE stream when the request asks for one).
#[derive(Default)]
struct Recording {
    seen: Mutex<Vec<UpstreamRequest>>,
}

impl Provider for Recording {
    fn name(&self) -> &'static str {
        "recording"
    }

    fn send<'a>(
        &'a self,
        req: UpstreamRequest,
        secret: &'a Secret,
        _deadline: tokio::time::Instant,
    ) -> BoxFuture<'a, Result<UpstreamResponse, ProxyError>> {
        async move {
            assert_eq!(secret.anthropic_api_key, KEY);
            let stream = req.stream;
            let op = req.operation;
            self.seen.lock().unwrap().push(req);
            let mut headers = HeaderMap::new();
            headers.insert("request-id", HeaderValue::from_static("req_prop"));
            let body: Vec<Bytes> = if stream {
                headers.insert(
                    "content-type",
                    HeaderValue::from_static("text/event-stream; charset=utf-8"),
                );
                [
                    ("message_start", json!({"type":"message_start","message":{"id":"m","type":"message","role":"assistant","model":"claude-haiku-4-5","content":[],"usage":{"input_tokens":1,"output_tokens":1}}})),
                    ("content_block_start", json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}})),
                    ("content_block_delta", json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"ok"}})),
                    ("content_block_stop", json!({"type":"content_block_stop","index":0})),
                    ("message_delta", json!({"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":1}})),
                    ("message_stop", json!({"type":"message_stop"})),
                ]
                .iter()
                .map(|(n, d)| Bytes::from(format!("event: {n}\ndata: {d}\n\n")))
                .collect()
            } else {
                headers.insert("content-type", HeaderValue::from_static("application/json"));
                let body = match op {
                    Operation::CountTokens => json!({"input_tokens": 3}),
                    Operation::Messages => json!({
                        "id": "m", "type": "message", "role": "assistant",
                        "model": "claude-haiku-4-5",
                        "content": [{"type": "text", "text": "ok"}],
                        "stop_reason": "end_turn",
                        "usage": {"input_tokens": 1, "output_tokens": 1},
                    }),
                };
                vec![Bytes::from(body.to_string())]
            };
            Ok(UpstreamResponse {
                status: StatusCode::OK,
                headers,
                body: futures_util::stream::iter(body.into_iter().map(Ok)).boxed(),
                attempts: 1,
                retryable: false,
            })
        }
        .boxed()
    }
}

struct Harness {
    app: Arc<App>,
    upstream: Arc<Recording>,
}

impl Harness {
    fn new() -> Harness {
        let upstream = Arc::new(Recording::default());
        let source = SecretSource::Static(Secret {
            anthropic_api_key: KEY.into(),
            caller_tokens: vec![TOKEN.into()],
            callers: vec![],
        });
        let app = App::with_provider(config(), source, upstream.clone());
        Harness { app, upstream }
    }

    /// Sends `body` to `path` with the caller token; returns status, content type, body and
    /// the upstream requests it caused.
    fn call(&self, path: &str, body: &[u8]) -> Outcome {
        self.upstream.seen.lock().unwrap().clear();
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", HeaderValue::from_static(TOKEN));
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
        let req = ProxyRequest {
            method: Method::POST,
            path: path.to_string(),
            headers,
            body: Bytes::copy_from_slice(body),
            deadline: tokio::time::Instant::now() + Duration::from_secs(30),
            api_key: None,
        };
        let app = self.app.clone();
        let (status, headers, body) = rt().block_on(async move {
            tokio::time::timeout(Duration::from_secs(30), async move {
                app.handle(req).await.into_bytes().await
            })
            .await
            .expect("the handler answered within 30 s")
        });
        let upstream = std::mem::take(&mut *self.upstream.seen.lock().unwrap());
        Outcome {
            status,
            content_type: headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string(),
            body,
            upstream,
        }
    }
}

struct Outcome {
    status: StatusCode,
    content_type: String,
    body: Bytes,
    upstream: Vec<UpstreamRequest>,
}

impl Outcome {
    fn describe(&self) -> String {
        format!(
            "{} {}: {}",
            self.status,
            self.content_type,
            String::from_utf8_lossy(&self.body)
        )
    }

    /// Either 200, or a 4xx with the Anthropic error shape and nothing sent upstream.
    fn check_shape(&self) -> Result<(), TestCaseError> {
        if self.status == StatusCode::OK {
            return Ok(());
        }
        prop_assert!(
            self.status.is_client_error(),
            "not 200 or 4xx: {}",
            self.describe()
        );
        prop_assert!(
            self.upstream.is_empty(),
            "a refused request was sent upstream: {}",
            self.describe()
        );
        prop_assert!(
            self.content_type.starts_with("application/json"),
            "{}",
            self.describe()
        );
        let v: Value = serde_json::from_slice(&self.body).map_err(|e| {
            TestCaseError::fail(format!("error body not JSON ({e}): {}", self.describe()))
        })?;
        prop_assert_eq!(&v["type"], "error", "{}", self.describe());
        let ty = v["error"]["type"].as_str().unwrap_or("");
        let expected = match self.status.as_u16() {
            400 | 405 | 415 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            _ => "",
        };
        prop_assert_eq!(ty, expected, "{}", self.describe());
        prop_assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.trim().is_empty()),
            "no message: {}",
            self.describe()
        );
        Ok(())
    }
}

/// A fresh app and upstream per call (the tests run in parallel threads).
fn harness() -> Harness {
    Harness::new()
}

/// The pass-through routes: a body the validator accepts is answered 200 and forwarded byte
/// for byte; a body it refuses gets the same 400 and nothing goes upstream.
fn check_messages_route(body: &[u8], op: Operation) -> Result<(), TestCaseError> {
    let path = match op {
        Operation::Messages => "/v1/messages",
        Operation::CountTokens => "/v1/messages/count_tokens",
    };
    let verdict = validate::messages_request(body, op, &config());
    let out = harness().call(path, body);
    out.check_shape()?;
    match verdict {
        Ok(info) => {
            prop_assert_eq!(out.status, StatusCode::OK, "{}", out.describe());
            prop_assert_eq!(out.upstream.len(), 1);
            let sent = &out.upstream[0];
            prop_assert_eq!(&sent.body[..], body, "the body was not forwarded unchanged");
            prop_assert_eq!(sent.stream, info.stream);
            prop_assert_eq!(sent.operation, op);
            if info.stream {
                prop_assert!(
                    out.content_type.starts_with("text/event-stream"),
                    "{}",
                    out.describe()
                );
                let text = String::from_utf8_lossy(&out.body);
                prop_assert!(
                    text.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"),
                    "{text}"
                );
                prop_assert!(!text.contains("event: error"), "{text}");
            }
        }
        Err(e) => {
            // Too large bodies are 413 before validation; the rest is the validator's 400.
            if body.len() > config().max_request_bytes {
                prop_assert_eq!(out.status.as_u16(), 413);
            } else if body.iter().all(u8::is_ascii_whitespace) {
                prop_assert_eq!(out.status.as_u16(), 400);
            } else {
                prop_assert_eq!(out.status, e.status(), "{}", out.describe());
                let v: Value = serde_json::from_slice(&out.body).unwrap();
                let expected = e.to_string();
                prop_assert_eq!(v["error"]["message"].as_str(), Some(expected.as_str()));
            }
        }
    }
    Ok(())
}

/// `/chat`: accepted bodies become one Messages request with the caller's text; refused ones
/// get the parser's error.
fn check_chat_route(body: &[u8]) -> Result<(), TestCaseError> {
    let verdict = ChatRequest::parse(body, &config());
    let out = harness().call("/chat", body);
    out.check_shape()?;
    match verdict {
        Ok(chat) => {
            prop_assert_eq!(out.status, StatusCode::OK, "{}", out.describe());
            prop_assert_eq!(out.upstream.len(), 1);
            let sent: Value = serde_json::from_slice(&out.upstream[0].body).unwrap();
            prop_assert_eq!(&sent["messages"][0]["content"], &json!(chat.message));
            prop_assert_eq!(&sent["model"], &json!(chat.model(&config())));
            prop_assert!(validate::messages_request(
                &out.upstream[0].body,
                Operation::Messages,
                &config()
            )
            .is_ok());
        }
        Err(e) => {
            if !body.iter().all(u8::is_ascii_whitespace) && body.len() <= config().max_request_bytes
            {
                prop_assert_eq!(out.status, e.status(), "{}", out.describe());
            } else {
                prop_assert!(out.status.is_client_error());
            }
        }
    }
    Ok(())
}

/// Every parse/validate entry point on the same input: no panics, errors are 4xx.
fn check_parsers(body: &[u8]) -> Result<(), TestCaseError> {
    let c = config();
    let headers = HeaderMap::new();
    if let Err(e) = validate::check_body(&headers, body, c.max_request_bytes) {
        prop_assert!(e.status().is_client_error());
    }
    for op in [Operation::Messages, Operation::CountTokens] {
        if let Err(e) = validate::messages_request(body, op, &c) {
            prop_assert_eq!(e.status(), StatusCode::BAD_REQUEST);
            let v = e.to_json();
            prop_assert_eq!(v["type"].as_str(), Some("error"));
        }
    }
    if let Err(e) = ChatRequest::parse(body, &c) {
        prop_assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    }
    // The SSE splitter on the same bytes, fed in two pieces.
    let cut = body.len() / 2;
    let mut s = handler::sse::SseSplitter::new();
    s.push(&body[..cut]);
    let (a, _) = s.take_complete();
    s.push(&body[cut..]);
    let (b, _) = s.take_complete();
    prop_assert!(a.len() + b.len() <= body.len());
    let _ = handler::sse::parse_block(body);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Strategies

/// Strings that stress parsers: empty, whitespace, unicode of every width, escapes, long.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-zA-Z0-9 .,!?-]{0,40}",
        2 => any::<String>(),
        1 => Just(String::new()),
        1 => Just("   \t\n".to_string()),
        1 => Just("\u{0}\u{7f}\u{feff}\u{202e}é中文😀\u{10ffff}\"\\/".to_string()),
        1 => "[\\PC]{200,600}",
    ]
}

/// Numbers around the interesting edges.
fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        prop::sample::select(vec![
            json!(0),
            json!(1),
            json!(-1),
            json!(CAP),
            json!(CAP + 1),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(1.5),
            json!(1e300),
            json!(-0.0),
        ]),
    ]
}

const KEYS: &[&str] = &[
    "model",
    "max_tokens",
    "messages",
    "stream",
    "system",
    "role",
    "content",
    "type",
    "text",
    "message",
    "metadata",
    "tools",
    "tool_choice",
    "temperature",
    "source",
    "id",
    "input",
    "tool_use_id",
    "cache_control",
    "thinking",
    "stop_sequences",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(KEYS).prop_map(String::from),
        1 => text(),
    ]
}

/// Any JSON value, nested a few levels, biased towards the Messages API's keys.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        text().prop_map(Value::String),
        prop::sample::select(MODELS).prop_map(|m| json!(m)),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A content block: text, image, tool_use, tool_result (with nested blocks), or anything.
fn content_block() -> impl Strategy<Value = Value> {
    prop_oneof![
        text().prop_map(|t| json!({"type": "text", "text": t})),
        Just(json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}})),
        (text(), json_value()).prop_map(|(id, input)| json!({"type": "tool_use", "id": id, "name": "f", "input": input})),
        (text(), prop::collection::vec(text(), 0..3)).prop_map(|(id, ts)| json!({
            "type": "tool_result", "tool_use_id": id,
            "content": ts.into_iter().map(|t| json!({"type": "text", "text": t})).collect::<Vec<_>>(),
        })),
        json_value(),
    ]
}

fn content() -> impl Strategy<Value = Value> {
    prop_oneof![
        text().prop_map(Value::String),
        prop::collection::vec(content_block(), 0..4).prop_map(Value::Array),
    ]
}

/// A body the validator must accept: allowed model, 1 <= max_tokens <= cap, well-formed
/// messages, optional system/stream/metadata and unknown extra fields (forwarded as is).
fn valid_messages_body() -> impl Strategy<Value = Map<String, Value>> {
    (
        prop::sample::select(MODELS),
        1..=CAP,
        prop::collection::vec(
            (prop::sample::select(&["user", "assistant"][..]), content()),
            1..5,
        ),
        prop::option::of(prop_oneof![
            text().prop_map(Value::String),
            prop::collection::vec(text(), 0..3).prop_map(|ts| Value::Array(
                ts.into_iter()
                    .map(|t| json!({"type": "text", "text": t}))
                    .collect()
            )),
        ]),
        prop::option::of(prop_oneof![
            any::<bool>().prop_map(Value::Bool),
            Just(Value::Null)
        ]),
        prop::collection::vec(("x_[a-z]{1,8}", json_value()), 0..3),
    )
        .prop_map(|(model, max_tokens, messages, system, stream, extra)| {
            let mut m = Map::new();
            m.insert("model".into(), json!(model));
            m.insert("max_tokens".into(), json!(max_tokens));
            m.insert(
                "messages".into(),
                Value::Array(
                    messages
                        .into_iter()
                        .map(|(role, content)| json!({"role": role, "content": content}))
                        .collect(),
                ),
            );
            if let Some(s) = system {
                m.insert("system".into(), s);
            }
            if let Some(s) = stream {
                m.insert("stream".into(), s);
            }
            for (k, v) in extra {
                m.insert(k, v);
            }
            m
        })
}

/// One change to a valid body.
#[derive(Debug, Clone)]
enum Mutation {
    Remove(&'static str),
    Set(&'static str, Value),
    MaxTokens(Value),
    Model(Value),
    Role(usize, Value),
    Content(usize, Value),
    DropMessages,
    Extra(String, Value),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let field = prop::sample::select(&["model", "max_tokens", "messages", "stream", "system"][..]);
    prop_oneof![
        field.clone().prop_map(Mutation::Remove),
        (field, json_value()).prop_map(|(f, v)| Mutation::Set(f, v)),
        number().prop_map(Mutation::MaxTokens),
        prop_oneof![
            text().prop_map(Value::String),
            Just(json!("claude-haiku-4-5 ")),
            Just(json!("CLAUDE-HAIKU-4-5")),
            "[a-z0-9.-]{1,2000}".prop_map(Value::String),
            json_value(),
        ]
        .prop_map(Mutation::Model),
        (
            0usize..5,
            prop_oneof![text().prop_map(Value::String), json_value()]
        )
            .prop_map(|(i, v)| Mutation::Role(i, v)),
        (0usize..5, prop_oneof![content(), json_value()])
            .prop_map(|(i, v)| Mutation::Content(i, v)),
        Just(Mutation::DropMessages),
        (key(), json_value()).prop_map(|(k, v)| Mutation::Extra(k, v)),
    ]
}

/// Message `i` (modulo their number) of a body, if `messages` is an array of objects.
fn message_mut(body: &mut Map<String, Value>, i: usize) -> Option<&mut Map<String, Value>> {
    let msgs = body.get_mut("messages")?.as_array_mut()?;
    let n = msgs.len();
    if n == 0 {
        return None;
    }
    msgs[i % n].as_object_mut()
}

fn apply(body: &mut Map<String, Value>, m: &Mutation) {
    match m {
        Mutation::Remove(f) => {
            body.remove(*f);
        }
        Mutation::Set(f, v) => {
            body.insert(f.to_string(), v.clone());
        }
        Mutation::MaxTokens(v) => {
            body.insert("max_tokens".into(), v.clone());
        }
        Mutation::Model(v) => {
            body.insert("model".into(), v.clone());
        }
        Mutation::Role(i, v) => {
            if let Some(o) = message_mut(body, *i) {
                o.insert("role".into(), v.clone());
            }
        }
        Mutation::Content(i, v) => {
            if let Some(o) = message_mut(body, *i) {
                o.insert("content".into(), v.clone());
            }
        }
        Mutation::DropMessages => {
            body.insert("messages".into(), json!([]));
        }
        Mutation::Extra(k, v) => {
            body.insert(k.clone(), v.clone());
        }
    }
}

fn to_bytes(m: &Map<String, Value>) -> Vec<u8> {
    serde_json::to_vec(m).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Properties

#[test]
fn arbitrary_bytes_never_panic_and_get_anthropic_errors() {
    runner()
        .run(&prop::collection::vec(any::<u8>(), 0..1024), |bytes| {
            check_parsers(&bytes)?;
            check_messages_route(&bytes, Operation::Messages)?;
            check_messages_route(&bytes, Operation::CountTokens)?;
            check_chat_route(&bytes)?;
            Ok(())
        })
        .unwrap();
}

#[test]
fn arbitrary_json_values_never_panic_and_get_anthropic_errors() {
    runner()
        .run(&json_value(), |v| {
            let bytes = serde_json::to_vec(&v).unwrap();
            check_parsers(&bytes)?;
            check_messages_route(&bytes, Operation::Messages)?;
            check_chat_route(&bytes)?;
            Ok(())
        })
        .unwrap();
}

#[test]
fn valid_messages_bodies_are_accepted_and_forwarded_unchanged() {
    runner()
        .run(&valid_messages_body(), |body| {
            let bytes = to_bytes(&body);
            let info = validate::messages_request(&bytes, Operation::Messages, &config())
                .map_err(|e| TestCaseError::fail(format!("refused a valid body: {e}")))?;
            prop_assert_eq!(info.stream, body.get("stream") == Some(&json!(true)));
            check_messages_route(&bytes, Operation::Messages)?;
            // The same body without `stream` is a valid count_tokens body.
            let mut count = body.clone();
            count.remove("stream");
            check_messages_route(&to_bytes(&count), Operation::CountTokens)?;
            prop_assert!(validate::messages_request(
                &to_bytes(&count),
                Operation::CountTokens,
                &config()
            )
            .is_ok());
            Ok(())
        })
        .unwrap();
}

#[test]
fn near_valid_messages_bodies_are_accepted_or_refused_consistently() {
    let strategy = (
        valid_messages_body(),
        prop::collection::vec(mutation(), 1..4),
    );
    runner()
        .run(&strategy, |(mut body, mutations)| {
            for m in &mutations {
                apply(&mut body, m);
            }
            let bytes = to_bytes(&body);
            check_parsers(&bytes)?;
            check_messages_route(&bytes, Operation::Messages)?;
            check_messages_route(&bytes, Operation::CountTokens)?;
            Ok(())
        })
        .unwrap();
}

/// One known fault in an otherwise valid body: refused with a message naming the field.
#[test]
fn a_single_known_fault_is_refused_naming_the_field() {
    let fault = prop_oneof![
        Just((Mutation::Remove("model"), "model")),
        Just((Mutation::Remove("max_tokens"), "max_tokens")),
        Just((Mutation::Remove("messages"), "messages")),
        Just((Mutation::DropMessages, "messages")),
        prop::sample::select(vec![
            json!(0),
            json!(-1),
            json!(1.5),
            json!("10"),
            json!(null)
        ])
        .prop_map(|v| (Mutation::MaxTokens(v), "max_tokens")),
        ((CAP + 1)..=u64::MAX).prop_map(|n| (Mutation::MaxTokens(json!(n)), "MAX_TOKENS_CAP")),
        "[a-z0-9-]{1,30}"
            .prop_filter("not allowed", |m| !MODELS.contains(&m.as_str()))
            .prop_map(|m| (Mutation::Model(json!(m)), "ALLOWED_MODELS")),
        prop::sample::select(vec![
            json!(""),
            json!("  "),
            json!(5),
            json!(null),
            json!([])
        ])
        .prop_map(|v| (Mutation::Model(v), "model")),
        prop::sample::select(vec![json!("system"), json!(""), json!(1), json!(null)])
            .prop_map(|v| (Mutation::Role(0, v), "messages.0.role")),
        prop::sample::select(vec![
            json!(5),
            json!(null),
            json!({"type": "text"}),
            json!(true)
        ])
        .prop_map(|v| (Mutation::Content(0, v), "messages.0.content")),
        prop::sample::select(vec![json!("yes"), json!(1), json!({})])
            .prop_map(|v| (Mutation::Set("stream", v), "stream")),
        prop::sample::select(vec![json!(5), json!({}), json!(true)])
            .prop_map(|v| (Mutation::Set("system", v), "system")),
    ];
    runner()
        .run(
            &(valid_messages_body(), fault),
            |(mut body, (m, expected))| {
                apply(&mut body, &m);
                let bytes = to_bytes(&body);
                let out = harness().call("/v1/messages", &bytes);
                out.check_shape()?;
                prop_assert_eq!(
                    out.status,
                    StatusCode::BAD_REQUEST,
                    "{:?}: {}",
                    m,
                    out.describe()
                );
                let v: Value = serde_json::from_slice(&out.body).unwrap();
                let msg = v["error"]["message"].as_str().unwrap_or("");
                prop_assert!(
                    msg.contains(expected),
                    "{:?}: `{}` does not mention {}",
                    m,
                    msg,
                    expected
                );
                Ok(())
            },
        )
        .unwrap();
}

/// `/chat` bodies: valid ones go through as one Messages request, near-valid ones are refused
/// or accepted consistently with the parser.
#[test]
fn chat_bodies_valid_and_near_valid() {
    let valid = (
        "[a-zA-Z0-9][\\PC]{0,60}",
        prop::option::of(text()),
        prop::option::of(prop::sample::select(MODELS)),
        prop::option::of(1..=CAP),
        prop::option::of(any::<bool>()),
    )
        .prop_map(|(message, system, model, max_tokens, stream)| {
            let mut m = Map::new();
            m.insert("message".into(), json!(message));
            if let Some(s) = system {
                m.insert("system".into(), json!(s));
            }
            if let Some(s) = model {
                m.insert("model".into(), json!(s));
            }
            if let Some(s) = max_tokens {
                m.insert("max_tokens".into(), json!(s));
            }
            if let Some(s) = stream {
                m.insert("stream".into(), json!(s));
            }
            m
        });
    let tweak = prop::option::of((
        prop::sample::select(
            &[
                "message",
                "system",
                "model",
                "max_tokens",
                "stream",
                "extra",
            ][..],
        ),
        prop::option::of(json_value()),
    ));
    runner()
        .run(&(valid, tweak), |(mut body, tweak)| {
            let untouched = tweak.is_none();
            if let Some((field, value)) = tweak {
                match value {
                    Some(v) => body.insert(field.to_string(), v),
                    None => body.remove(field),
                };
            }
            let bytes = to_bytes(&body);
            if untouched {
                ChatRequest::parse(&bytes, &config())
                    .map_err(|e| TestCaseError::fail(format!("refused a valid /chat body: {e}")))?;
            }
            check_parsers(&bytes)?;
            check_chat_route(&bytes)?;
            Ok(())
        })
        .unwrap();
}

/// Bodies above MAX_REQUEST_BYTES are refused with 413 before anything else.
#[test]
fn oversized_bodies_are_413() {
    let max = config().max_request_bytes;
    runner()
        .run(&(1usize..4096, any::<u8>()), |(extra, b)| {
            let body = vec![b; max + extra];
            let out = harness().call("/v1/messages", &body);
            out.check_shape()?;
            prop_assert_eq!(out.status.as_u16(), 413, "{}", out.describe());
            Ok(())
        })
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Duplicate and escaped keys (issue 12): parsers disagree on which of two equal keys wins, and
// the body is forwarded as sent, so a body with a duplicate key anywhere is refused, also when
// one of the two is written with `\u` escapes; escaped keys alone mean what they decode to.

/// A JSON string literal for `s`, every character as a `\uXXXX` escape (UTF-16).
fn escaped_literal(s: &str) -> String {
    let mut out = String::from("\"");
    for unit in s.encode_utf16() {
        out.push_str(&format!("\\u{unit:04x}"));
    }
    out.push('"');
    out
}

/// Where and what to duplicate while writing a body.
struct Dup {
    /// The object (pre-order index among non-empty objects) that gets a second entry.
    object: usize,
    /// Which of its keys (modulo their number).
    key: usize,
    value: Value,
    escaped: bool,
    before: bool,
}

/// Writes `v` as JSON text; object keys are escaped where `esc(n)` says so (n counts keys in
/// writing order), and `dup` adds a second entry for one key of one object.
fn write_json(
    v: &Value,
    out: &mut String,
    esc: &dyn Fn(usize) -> bool,
    keys_seen: &mut usize,
    objects_seen: &mut usize,
    dup: Option<&Dup>,
) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            let this = *objects_seen;
            *objects_seen += 1;
            let target = dup.filter(|d| d.object == this);
            let dup_key = target.map(|d| m.keys().nth(d.key % m.len()).unwrap().clone());
            out.push('{');
            let mut first = true;
            let mut entry = |out: &mut String,
                             k: &str,
                             val: &Value,
                             escape: bool,
                             ks: &mut usize,
                             os: &mut usize| {
                if !first {
                    out.push(',');
                }
                first = false;
                if escape {
                    out.push_str(&escaped_literal(k));
                } else {
                    out.push_str(&serde_json::to_string(k).unwrap());
                }
                out.push(':');
                write_json(val, out, esc, ks, os, dup);
            };
            for (k, val) in m {
                let n = *keys_seen;
                *keys_seen += 1;
                let is_dup = dup_key.as_deref() == Some(k.as_str());
                if is_dup && target.unwrap().before {
                    let d = target.unwrap();
                    entry(out, k, &d.value, d.escaped, keys_seen, objects_seen);
                }
                entry(out, k, val, esc(n), keys_seen, objects_seen);
                if is_dup && !target.unwrap().before {
                    let d = target.unwrap();
                    entry(out, k, &d.value, d.escaped, keys_seen, objects_seen);
                }
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(x, out, esc, keys_seen, objects_seen, dup);
            }
            out.push(']');
        }
        other => out.push_str(&serde_json::to_string(other).unwrap()),
    }
}

fn count_objects(v: &Value) -> usize {
    match v {
        Value::Object(m) => {
            usize::from(!m.is_empty()) + m.values().map(count_objects).sum::<usize>()
        }
        Value::Array(a) => a.iter().map(count_objects).sum(),
        _ => 0,
    }
}

fn text_of(v: &Value, esc: &dyn Fn(usize) -> bool, dup: Option<&Dup>) -> String {
    let mut out = String::new();
    write_json(v, &mut out, esc, &mut 0, &mut 0, dup);
    out
}

#[test]
fn escaped_keys_mean_what_they_decode_to_and_are_forwarded_as_sent() {
    runner()
        .run(&(valid_messages_body(), any::<u64>()), |(body, mask)| {
            let value = Value::Object(body);
            let esc = move |n: usize| mask.rotate_left(n as u32) & 1 == 1;
            let text = text_of(&value, &esc, None);
            // The escaped text decodes to what the plain text decodes to.
            let plain_text = serde_json::to_vec(&value).unwrap();
            prop_assert_eq!(
                serde_json::from_str::<Value>(&text).unwrap(),
                serde_json::from_slice::<Value>(&plain_text).unwrap()
            );
            let plain = validate::messages_request(
                &to_bytes(value.as_object().unwrap()),
                Operation::Messages,
                &config(),
            );
            let escaped =
                validate::messages_request(text.as_bytes(), Operation::Messages, &config());
            prop_assert_eq!(
                plain.as_ref().map_err(|e| e.to_string()),
                escaped.as_ref().map_err(|e| e.to_string())
            );
            // check_messages_route asserts 200 and the bytes forwarded unchanged.
            check_messages_route(text.as_bytes(), Operation::Messages)?;
            Ok(())
        })
        .unwrap();
}

#[test]
fn duplicate_keys_anywhere_are_refused_and_nothing_goes_upstream() {
    let strategy = (
        valid_messages_body(),
        any::<usize>(),
        any::<usize>(),
        prop_oneof![
            json_value(),
            prop::sample::select(MODELS).prop_map(|m| json!(m)),
            Just(json!("claude-opus-4-6")),
            Just(json!(999_999)),
            Just(json!(true)),
        ],
        any::<bool>(),
        any::<bool>(),
        any::<u64>(),
    );
    runner()
        .run(
            &strategy,
            |(body, object, key, value, escaped, before, mask)| {
                let value_doc = Value::Object(body);
                let dup = Dup {
                    object: object % count_objects(&value_doc),
                    key,
                    value,
                    escaped,
                    before,
                };
                let esc = move |n: usize| mask.rotate_left(n as u32) & 1 == 1;
                let text = text_of(&value_doc, &esc, Some(&dup));
                for op in [Operation::Messages, Operation::CountTokens] {
                    let e = validate::messages_request(text.as_bytes(), op, &config())
                        .err()
                        .ok_or_else(|| {
                            TestCaseError::fail(format!("accepted a duplicate key: {text}"))
                        })?;
                    prop_assert!(e.to_string().contains("duplicate key"), "{}: {}", e, text);
                    check_messages_route(text.as_bytes(), op)?;
                }
                let out = harness().call("/v1/messages", text.as_bytes());
                prop_assert_eq!(out.status, StatusCode::BAD_REQUEST, "{}", out.describe());
                prop_assert!(out.upstream.is_empty());
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn duplicate_chat_fields_are_refused() {
    let field = prop::sample::select(&["message", "model", "max_tokens", "system", "stream"][..]);
    runner()
        .run(&(field, any::<bool>(), any::<bool>()), |(field, escaped, before)| {
            let body = json!({"message": "hi", "model": MODELS[0], "max_tokens": 5, "system": "s", "stream": false});
            let dup = Dup {
                object: 0,
                key: body.as_object().unwrap().keys().position(|k| k == field).unwrap(),
                value: body[field].clone(),
                escaped,
                before,
            };
            let text = text_of(&body, &|_| false, Some(&dup));
            let out = harness().call("/chat", text.as_bytes());
            out.check_shape()?;
            prop_assert_eq!(out.status, StatusCode::BAD_REQUEST, "{}: {}", text, out.describe());
            prop_assert!(out.upstream.is_empty());
            Ok(())
        })
        .unwrap();
}
