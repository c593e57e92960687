//! Named callers in the handler and its usage metering, in process against the fake Messages
//! API: callers identified by token hash, per-caller limits refused with a 400 that names the
//! limit and sends nothing upstream, and one EMF line per request, valid by the format's
//! specification (`stand_ins::emf`), carrying the tokens the fake reported, buffered and
//! streamed, and neither text nor token.

use emulators::anthropic::FakeAnthropic;
use handler::callers::token_sha256_hex;
use handler::{Secret, SecretSource};
use serde_json::{json, Value};
use stand_ins::emf;
use stand_ins::handler_support::*;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ALICE: &str = "alice-token-DO-NOT-LOG-1";
const CI: &str = "ci-token-DO-NOT-LOG-2";

fn secret() -> Secret {
    Secret::parse(
        &json!({
            "anthropic_api_key": TEST_ANTHROPIC_KEY,
            "callers": [
                {"name": "alice", "token_sha256": token_sha256_hex(ALICE),
                 "created_at": "2026-01-01T00:00:00Z", "rotated_at": null, "limits": {}},
                {"name": "ci", "token_sha256": token_sha256_hex(CI),
                 "created_at": "2026-01-01T00:00:00Z", "rotated_at": null,
                 "limits": {"allowed_models": ["claude-haiku-4-5"], "max_tokens": 50}},
            ],
        })
        .to_string(),
    )
    .unwrap()
}

/// EMF lines as the handler writes them, and a way to wait for them.
#[derive(Clone, Default)]
struct Lines(Arc<(Mutex<Vec<String>>, tokio::sync::Notify)>);

impl Lines {
    fn sink(&self) -> handler::metrics::Sink {
        let me = self.clone();
        Arc::new(move |l: &str| {
            me.0 .0.lock().unwrap().push(l.to_string());
            me.0 .1.notify_waiters();
        })
    }
    /// Waits until `n` lines were written (the line is written once the request is done,
    /// which may be just after the client read the last byte).
    async fn wait_for(&self, n: usize) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.0 .1.notified();
            {
                let l = self.0 .0.lock().unwrap();
                if l.len() >= n {
                    return l.clone();
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("fewer than {n} EMF lines: {:?}", self.0 .0.lock().unwrap());
            }
        }
    }
}

async fn server(fake: &FakeAnthropic) -> (LocalServer, Lines) {
    let mut config = local_config(&fake.base_url());
    config.allowed_models = vec!["claude-haiku-4-5".into(), "claude-sonnet-4-5".into()];
    let app = handler::App::with_secret_source(config, SecretSource::Static(secret())).unwrap();
    let lines = Lines::default();
    app.set_metrics_sink(lines.sink(), "claude-proxy-test");
    (LocalServer::start(app).await.unwrap(), lines)
}

async fn send(url: &str, token: &str, body: Value) -> reqwest::Response {
    client()
        .post(url)
        .header("x-api-key", token)
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

fn messages(model: &str, max_tokens: u64, stream: bool) -> Value {
    json!({"model": model, "max_tokens": max_tokens, "stream": stream,
           "messages": [{"role": "user", "content": "three little words"}]})
}

#[tokio::test]
async fn a_callers_limits_refuse_with_a_400_naming_the_limit_and_nothing_goes_upstream() {
    let fake = FakeAnthropic::start(TEST_ANTHROPIC_KEY).await.unwrap();
    let (s, lines) = server(&fake).await;
    let url = s.url("/v1/messages");

    let r = send(&url, CI, messages("claude-sonnet-4-5", 10, false)).await;
    let (status, body) = json_of(r).await.unwrap();
    assert_eq!(status, 400, "{body}");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("allowed_models") && msg.contains("`ci`"),
        "{msg}"
    );

    let r = send(&url, CI, messages("claude-haiku-4-5", 51, false)).await;
    let (status, body) = json_of(r).await.unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limit max_tokens"),
        "{body}"
    );

    // /chat without max_tokens: the default, cut to the caller's cap, is what goes upstream.
    let r = client()
        .post(s.url("/chat"))
        .header("x-api-key", CI)
        .header("content-type", "application/json")
        .body(json!({"message": "hi"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        fake.request_count(),
        1,
        "the refused requests went upstream"
    );
    assert_eq!(fake.requests()[0].json().unwrap()["max_tokens"], 50);

    // The same model and size is fine for a caller without limits.
    let r = send(&url, ALICE, messages("claude-sonnet-4-5", 60, false)).await;
    assert_eq!(r.status(), 200);
    // Unknown tokens and the hash itself are refused.
    let r = send(
        &url,
        &token_sha256_hex(ALICE),
        messages("claude-haiku-4-5", 5, false),
    )
    .await;
    assert_eq!(r.status(), 401);

    let all = lines.wait_for(5).await;
    let refused: Vec<Value> = all
        .iter()
        .map(|l| emf::check(l).unwrap())
        .filter(|v| v["status"] == 400)
        .collect();
    assert_eq!(refused.len(), 2);
    assert!(refused
        .iter()
        .all(|v| v["caller"] == "ci" && v["OutputTokens"] == 0));
}

#[tokio::test]
async fn one_emf_line_per_request_with_the_upstreams_tokens_buffered_and_streamed() {
    let fake = FakeAnthropic::start(TEST_ANTHROPIC_KEY).await.unwrap();
    let (s, lines) = server(&fake).await;
    let url = s.url("/v1/messages");

    let r = send(&url, ALICE, messages("claude-haiku-4-5", 100, false)).await;
    let (status, buffered) = json_of(r).await.unwrap();
    assert_eq!(status, 200);
    let r = send(&url, ALICE, messages("claude-sonnet-4-5", 100, true)).await;
    assert_eq!(r.status(), 200);
    let events = SseReader::new(r)
        .collect(Duration::from_secs(10))
        .await
        .unwrap();
    let delta = events
        .iter()
        .find(|e| e.event.as_deref() == Some("message_delta"))
        .unwrap();
    let streamed_out: u64 = serde_json::from_str::<Value>(&delta.data).unwrap()["usage"]
        ["output_tokens"]
        .as_u64()
        .unwrap();
    let start = events
        .iter()
        .find(|e| e.event.as_deref() == Some("message_start"))
        .unwrap();
    let streamed_in = serde_json::from_str::<Value>(&start.data).unwrap()["message"]["usage"]
        ["input_tokens"]
        .as_u64()
        .unwrap();

    let all = lines.wait_for(2).await;
    assert_eq!(all.len(), 2, "one line per request: {all:?}");
    for l in &all {
        assert!(!l.contains(ALICE) && !l.contains(TEST_ANTHROPIC_KEY), "{l}");
        assert!(
            !l.contains("Echo") && !l.contains("little words"),
            "text in {l}"
        );
    }
    let b = emf::check(&all[0]).unwrap();
    assert_eq!(
        b["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "ClaudeProxy"
    );
    assert_eq!(b["function"], "claude-proxy-test");
    assert_eq!(b["caller"], "alice");
    assert_eq!(b["model"], "claude-haiku-4-5");
    assert_eq!(b["status"], 200);
    assert_eq!(b["provider"], "anthropic");
    assert_eq!(b["streamed"], false);
    assert_eq!(b["InputTokens"], buffered["usage"]["input_tokens"]);
    assert_eq!(b["OutputTokens"], buffered["usage"]["output_tokens"]);
    assert!(b["TimeToFirstByte"].as_u64().unwrap() <= b["Latency"].as_u64().unwrap());
    let st = emf::check(&all[1]).unwrap();
    assert_eq!(st["streamed"], true);
    assert_eq!(st["model"], "claude-sonnet-4-5");
    assert_eq!(st["InputTokens"], streamed_in);
    assert_eq!(st["OutputTokens"], streamed_out);
    assert!(streamed_out > 1, "the final count comes from message_delta");
    assert!(st["TimeToFirstByte"].is_u64());
}
