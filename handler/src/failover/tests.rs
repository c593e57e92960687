use super::*;
use crate::breaker::BreakerSettings;
use crate::config::SecretConfig;
use crate::upstream::Operation;
use crate::ProxyRequest;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use http::{HeaderMap, Method, StatusCode};
use std::collections::VecDeque;
use std::sync::Mutex;

/// What a scripted provider answers, one per call.
#[derive(Debug, Clone, Copy)]
enum Script {
    Status(u16, bool),
    Timeout,
    Unreachable,
    Invalid,
}

fn response(status: u16, retryable: bool) -> UpstreamResponse {
    UpstreamResponse {
        status: StatusCode::from_u16(status).unwrap(),
        headers: HeaderMap::new(),
        body: futures_util::stream::iter([Ok(Bytes::from_static(b"{}"))]).boxed(),
        attempts: 3,
        retryable,
    }
}

fn result(s: Script) -> Result<UpstreamResponse, ProxyError> {
    match s {
        Script::Status(status, retryable) => Ok(response(status, retryable)),
        Script::Timeout => Err(ProxyError::Timeout("no answer in time".into())),
        Script::Unreachable => Err(ProxyError::Upstream("could not reach it".into())),
        Script::Invalid => Err(ProxyError::InvalidRequest("no such model".into())),
    }
}

/// A provider that answers from a script (then 200s) and records every budget it got.
struct Scripted {
    name: &'static str,
    serves: bool,
    script: Mutex<VecDeque<Script>>,
    budgets: Mutex<Vec<Budget>>,
}

impl Scripted {
    fn new(name: &'static str, serves: bool, script: &[Script]) -> Arc<Self> {
        Arc::new(Scripted {
            name,
            serves,
            script: Mutex::new(script.iter().copied().collect()),
            budgets: Mutex::new(Vec::new()),
        })
    }
    fn calls(&self) -> usize {
        self.budgets.lock().unwrap().len()
    }
    fn budgets(&self) -> Vec<Budget> {
        self.budgets.lock().unwrap().clone()
    }
}

impl Provider for Scripted {
    fn name(&self) -> &'static str {
        self.name
    }
    fn send<'a>(
        &'a self,
        req: UpstreamRequest,
        secret: &'a Secret,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<UpstreamResponse, ProxyError>> {
        self.send_within(req, secret, Budget::whole(deadline))
    }
    fn send_within<'a>(
        &'a self,
        _req: UpstreamRequest,
        _secret: &'a Secret,
        budget: Budget,
    ) -> BoxFuture<'a, Result<UpstreamResponse, ProxyError>> {
        self.budgets.lock().unwrap().push(budget);
        let next = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Script::Status(200, false));
        Box::pin(async move { result(next) })
    }
    fn can_serve(&self, _req: &UpstreamRequest, _secret: &Secret) -> bool {
        self.serves
    }
}

fn config(failures: u32) -> Config {
    let mut c = Config::new(SecretConfig::Local {
        anthropic_api_key: "k".into(),
        caller_tokens: vec![],
    });
    c.breaker = BreakerSettings {
        failures,
        window: Duration::from_secs(600),
        cool_down: Duration::from_secs(600),
    };
    c
}

fn request() -> UpstreamRequest {
    UpstreamRequest {
        operation: Operation::Messages,
        body: Bytes::from_static(br#"{"model":"claude-haiku-4-5","max_tokens":1,"messages":[]}"#),
        anthropic_version: None,
        anthropic_beta: None,
        stream: false,
    }
}

fn log() -> RequestLog {
    RequestLog::start(
        &ProxyRequest {
            method: Method::POST,
            path: "/v1/messages".into(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
            deadline: Instant::now(),
            api_key: None,
        },
        None,
    )
}

fn secret() -> Secret {
    Secret {
        anthropic_api_key: "k".into(),
        caller_tokens: vec![],
        callers: vec![],
    }
}

/// One request through `send`: its status (or error status), and who answered.
async fn one(
    primary: &Scripted,
    failover: &Failover,
    deadline: Instant,
) -> (u16, Option<&'static str>, Option<&'static str>) {
    let log = log();
    let r = send(
        primary,
        Some(failover),
        request(),
        &secret(),
        deadline,
        &log,
    )
    .await;
    let status = match r {
        Ok(r) => r.status.as_u16(),
        Err(e) => e.status().as_u16(),
    };
    let (served, reason) = log.with(|f| (f.provider, f.failover));
    (status, served, reason)
}

#[test]
fn the_decision_follows_the_retry_policy() {
    for (script, expected) in [
        (Script::Status(200, false), Outcome::Answered),
        (Script::Status(529, true), Outcome::Retryable),
        (Script::Status(429, true), Outcome::Retryable),
        (Script::Status(503, true), Outcome::Retryable),
        // The policy would not retry these: the caller's own error, the proxy's key refused,
        // an upstream that said x-should-retry: false on its 500.
        (Script::Status(400, false), Outcome::Final),
        (Script::Status(401, false), Outcome::Final),
        (Script::Status(403, false), Outcome::Final),
        (Script::Status(500, false), Outcome::Final),
        (Script::Status(302, false), Outcome::Final),
        (Script::Timeout, Outcome::Retryable),
        (Script::Unreachable, Outcome::Retryable),
        (Script::Invalid, Outcome::NotSent),
    ] {
        assert_eq!(outcome(&result(script)), expected, "{script:?}");
    }
}

#[test]
fn the_primary_gets_half_the_time_or_failover_after() {
    let fallback = Scripted::new("bedrock", true, &[]);
    let now = Instant::now();
    let deadline = now + Duration::from_secs(60);
    let f = Failover::new(fallback.clone(), &config(3));
    let b = f.primary_budget(now, deadline, false);
    assert_eq!(b.answer_by, now + Duration::from_secs(30));
    assert_eq!((b.deadline, b.max_retries), (deadline, None));
    // A probe is one attempt.
    assert_eq!(f.primary_budget(now, deadline, true).max_retries, Some(0));
    let mut c = config(3);
    c.failover_after = Some(Duration::from_secs(5));
    let f = Failover::new(fallback.clone(), &c);
    assert_eq!(
        f.primary_budget(now, deadline, false).answer_by,
        now + Duration::from_secs(5)
    );
    // Never past the deadline.
    assert_eq!(
        f.primary_budget(now, now + Duration::from_secs(2), false)
            .answer_by,
        now + Duration::from_secs(2)
    );
}

#[tokio::test]
async fn retryable_failures_fail_over_and_final_answers_do_not() {
    let deadline = Instant::now() + Duration::from_secs(60);
    for (script, status, served, reason) in [
        (
            Script::Status(529, true),
            200,
            "bedrock",
            Some("primary_failed"),
        ),
        (Script::Timeout, 200, "bedrock", Some("primary_failed")),
        (Script::Unreachable, 200, "bedrock", Some("primary_failed")),
        (Script::Status(400, false), 400, "anthropic", None),
        (Script::Status(401, false), 401, "anthropic", None),
        (Script::Invalid, 400, "anthropic", None),
        (Script::Status(200, false), 200, "anthropic", None),
    ] {
        let primary = Scripted::new("anthropic", true, &[script]);
        let fallback = Scripted::new("bedrock", true, &[]);
        let f = Failover::new(fallback.clone(), &config(100));
        let got = one(&primary, &f, deadline).await;
        assert_eq!(got, (status, Some(served), reason), "{script:?}");
        assert_eq!(primary.calls(), 1, "{script:?}");
        assert_eq!(
            fallback.calls(),
            usize::from(served == "bedrock"),
            "{script:?}"
        );
        // The primary had half the time; the fallback the whole request.
        assert!(primary.budgets()[0].answer_by < deadline);
        if let Some(b) = fallback.budgets().first() {
            assert_eq!(*b, Budget::whole(deadline));
        }
    }
}

#[tokio::test]
async fn what_the_fallback_cannot_serve_stays_with_the_primary_and_its_whole_time() {
    let deadline = Instant::now() + Duration::from_secs(60);
    let primary = Scripted::new("anthropic", true, &[Script::Status(529, true)]);
    let fallback = Scripted::new("bedrock", false, &[]);
    let f = Failover::new(fallback.clone(), &config(1));
    assert_eq!(
        one(&primary, &f, deadline).await,
        (529, Some("anthropic"), None)
    );
    assert_eq!(primary.budgets(), [Budget::whole(deadline)]);
    assert_eq!(fallback.calls(), 0);
    // Its failure still counts towards the breaker (here: one is enough) ...
    assert!(f.breaker().is_open());
    // ... and with the breaker open, it still goes to the primary.
    assert_eq!(
        one(&primary, &f, deadline).await,
        (200, Some("anthropic"), None)
    );
    assert_eq!((primary.calls(), fallback.calls()), (2, 0));
    assert!(!f.breaker().is_open(), "the primary's answer closed it");
}

#[tokio::test]
async fn an_open_breaker_skips_the_primary_and_one_probe_decides() {
    let deadline = Instant::now() + Duration::from_secs(60);
    let storm = [Script::Status(529, true); 3];
    let primary = Scripted::new("anthropic", true, &storm);
    let fallback = Scripted::new("bedrock", true, &[]);
    let mut c = config(2);
    c.breaker.cool_down = Duration::from_millis(1);
    let f = Failover::new(fallback.clone(), &c);
    // Two failures open it (cool-down 1 ms).
    for _ in 0..2 {
        assert_eq!(
            one(&primary, &f, deadline).await,
            (200, Some("bedrock"), Some("primary_failed"))
        );
    }
    assert!(f.breaker().is_open());
    assert_eq!((primary.calls(), fallback.calls()), (2, 2));
    // Wait for the cool-down's end (the condition), then the probe: one attempt, failed.
    let cooled = Instant::now() + c.breaker.cool_down;
    tokio::time::sleep_until(cooled).await;
    assert_eq!(
        one(&primary, &f, deadline).await,
        (200, Some("bedrock"), Some("probe_failed"))
    );
    assert_eq!(primary.budgets()[2].max_retries, Some(0));
    assert!(f.breaker().is_open());
    tokio::time::sleep_until(Instant::now() + c.breaker.cool_down).await;
    // The next probe succeeds: closed.
    assert_eq!(
        one(&primary, &f, deadline).await,
        (200, Some("anthropic"), None)
    );
    assert!(!f.breaker().is_open());
    assert_eq!((primary.calls(), fallback.calls()), (4, 3));
    assert_eq!(primary.budgets()[3].max_retries, Some(0));
    assert_eq!(primary.budgets().len(), 4);
}

#[tokio::test]
async fn while_open_no_request_reaches_the_primary() {
    let deadline = Instant::now() + Duration::from_secs(60);
    let primary = Scripted::new("anthropic", true, &[Script::Unreachable]);
    let fallback = Scripted::new("bedrock", true, &[]);
    let f = Failover::new(fallback.clone(), &config(1));
    one(&primary, &f, deadline).await;
    for _ in 0..5 {
        assert_eq!(
            one(&primary, &f, deadline).await,
            (200, Some("bedrock"), Some("breaker_open"))
        );
    }
    assert_eq!((primary.calls(), fallback.calls()), (1, 6));
}

#[tokio::test]
async fn no_time_left_means_no_fallback() {
    let primary = Scripted::new("anthropic", true, &[Script::Timeout]);
    let fallback = Scripted::new("bedrock", true, &[]);
    let f = Failover::new(fallback.clone(), &config(100));
    let past = Instant::now();
    assert_eq!(
        one(&primary, &f, past).await,
        (504, Some("anthropic"), None)
    );
    assert_eq!(fallback.calls(), 0);
}

#[test]
fn fallback_settings_are_read_and_checked() {
    let env = |pairs: Vec<(&'static str, &'static str)>| {
        Config::from_lookup(move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    };
    let c = env(vec![
        ("ANTHROPIC_API_KEY", "k"),
        ("FALLBACK", "Bedrock"),
        ("FAILOVER_AFTER_MS", "2500"),
        ("FAILOVER_BREAKER_FAILURES", "4"),
    ])
    .unwrap();
    assert_eq!(c.fallback, Some(ProviderKind::Bedrock));
    assert_eq!(c.failover_after, Some(Duration::from_millis(2500)));
    assert_eq!(c.breaker.failures, 4);
    let none = env(vec![("ANTHROPIC_API_KEY", "k"), ("FALLBACK", "none")]).unwrap();
    assert_eq!((none.fallback, none.failover_after), (None, None));
    for (pairs, name) in [
        (
            vec![("ANTHROPIC_API_KEY", "k"), ("FALLBACK", "anthropic")],
            "FALLBACK",
        ),
        (
            vec![("ANTHROPIC_API_KEY", "k"), ("FALLBACK", "openai")],
            "FALLBACK",
        ),
        (
            vec![("ANTHROPIC_API_KEY", "k"), ("FAILOVER_AFTER_MS", "0")],
            "FAILOVER_AFTER_MS",
        ),
        // Bedrock primary, Anthropic fallback: the key must come from somewhere.
        (
            vec![("PROVIDER", "bedrock"), ("FALLBACK", "anthropic")],
            "ANTHROPIC_API_KEY",
        ),
    ] {
        let e = env(pairs.clone()).unwrap_err().to_string();
        assert!(e.contains(name), "{pairs:?}: {e}");
    }
    let b = env(vec![
        ("PROVIDER", "bedrock"),
        ("FALLBACK", "anthropic"),
        ("ANTHROPIC_API_KEY", "k"),
    ])
    .unwrap();
    assert_eq!(
        (b.provider, b.fallback),
        (ProviderKind::Bedrock, Some(ProviderKind::Anthropic))
    );
}
