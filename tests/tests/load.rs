//! The handler under load: 200 concurrent streaming requests (`/v1/messages` and `/chat`)
//! through one serving process (`handler/examples/serve.rs`, i.e. `handler::local::serve`
//! alone) in front of the fake Messages API. The fake holds every event until all 200
//! streams are open upstream at the same time, then lets them go. Every stream must come
//! back 200, complete, well-formed and with exactly the content the fake sent; the serving
//! process's peak RSS (`VmHWM`) is printed and bounded.
//!
//! A second test measures the real `bootstrap` under the local Lambda emulator, where one
//! instance serves one request at a time (so N concurrent streams are N instances), and
//! reports the largest instance's peak RSS.
//!
//! Run with the figures shown: `cargo test -p integration-tests --test load -- --nocapture`.

use anyhow::{bail, ensure, Context, Result};
use emulators::anthropic::{FakeAnthropic, Gate};
use emulators::lambda::{InvokeMode, LocalLambda, LocalLambdaOptions, LogSink};
use handler::sse::SseEvent;
use serde_json::{json, Value};
use stand_ins::handler_support::*;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;
use tokio::time::Instant;

/// Concurrent streams through one serving process.
const STREAMS: usize = 200;
/// Every `CHAT_EVERY`-th stream goes to `/chat`, the others to `/v1/messages`.
const CHAT_EVERY: usize = 4;
/// A leak guard for the one serving process, not a performance target.
const SERVING_PEAK_LIMIT: u64 = 200 * 1024 * 1024;
/// Concurrent streams (= instances) in the Lambda emulator form.
const LAMBDA_STREAMS: usize = 4;
/// A leak guard per Lambda instance (the smallest Lambda memory size).
const LAMBDA_PEAK_LIMIT: u64 = 128 * 1024 * 1024;

/// `VmHWM` (peak resident set size) of a live process, in bytes.
fn vm_hwm(pid: u32) -> Result<u64> {
    emulators::procfs::peak_rss(pid).with_context(|| format!("no VmHWM in /proc/{pid}/status"))
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Messages,
    Chat,
}

/// One stream: which route, and the text the fake will echo back word by word.
#[derive(Debug, Clone)]
struct Spec {
    route: Route,
    text: String,
}

impl Spec {
    fn new(i: usize) -> Spec {
        Spec {
            route: if i % CHAT_EVERY == CHAT_EVERY - 1 {
                Route::Chat
            } else {
                Route::Messages
            },
            // Distinct per stream, so crossed streams would show.
            text: format!("stream {i} of the load test carries these exact words"),
        }
    }

    fn path(&self) -> &'static str {
        match self.route {
            Route::Messages => "/v1/messages",
            Route::Chat => "/chat",
        }
    }

    fn body(&self) -> String {
        match self.route {
            Route::Messages => json!({
                "model": "claude-haiku-4-5",
                "max_tokens": 100,
                "stream": true,
                "messages": [{"role": "user", "content": self.text}],
            }),
            Route::Chat => json!({"message": self.text, "stream": true}),
        }
        .to_string()
    }

    /// What the fake sends: `Echo: <text>`, one word per delta.
    fn reply(&self) -> String {
        format!("Echo: {}", self.text)
    }
}

/// Checks one complete stream against what the fake sent.
fn check_stream(spec: &Spec, events: &[SseEvent]) -> Result<()> {
    let names = names(events);
    ensure!(
        !names.iter().any(|n| n == "error"),
        "an in-band error: {events:?}"
    );
    let mut data = Vec::new();
    for ev in events {
        let v: Value = serde_json::from_str(&ev.data)
            .with_context(|| format!("event data is not JSON: {ev:?}"))?;
        data.push(v);
    }
    let words = spec.reply().split_whitespace().count();
    match spec.route {
        Route::Messages => {
            let mut expected = vec!["message_start", "content_block_start", "ping"];
            expected.extend(std::iter::repeat_n("content_block_delta", words));
            expected.extend(["content_block_stop", "message_delta", "message_stop"]);
            ensure!(names == expected, "event sequence: {names:?}");
            // Each event's own `type` matches its name (the pass-through did not cut or glue).
            for (n, d) in names.iter().zip(&data) {
                ensure!(d["type"] == n.as_str(), "event {n} carries {d}");
            }
            let text: String = data
                .iter()
                .filter(|d| d["type"] == "content_block_delta")
                .map(|d| {
                    d["delta"]["text"]
                        .as_str()
                        .unwrap_or("<missing>")
                        .to_string()
                })
                .collect();
            ensure!(text == spec.reply(), "content `{text}`");
            ensure!(
                data[data.len() - 2]["delta"]["stop_reason"] == "end_turn",
                "message_delta: {}",
                data[data.len() - 2]
            );
            ensure!(
                data[data.len() - 2]["usage"]["output_tokens"] == words,
                "message_delta: {}",
                data[data.len() - 2]
            );
        }
        Route::Chat => {
            let mut expected = vec!["text"; words];
            expected.push("done");
            ensure!(names == expected, "event sequence: {names:?}");
            let text: String = data[..words]
                .iter()
                .map(|d| d["text"].as_str().unwrap_or("<missing>").to_string())
                .collect();
            ensure!(text == spec.reply(), "content `{text}`");
            let done = &data[words];
            ensure!(done["stop_reason"] == "end_turn", "done: {done}");
            ensure!(done["usage"]["output_tokens"] == words, "done: {done}");
            ensure!(done["model"] == "claude-haiku-4-5", "done: {done}");
            ensure!(
                done["request_id"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("req_fake_")),
                "done: {done}"
            );
        }
    }
    Ok(())
}

/// Sends one stream and reads it to its end.
async fn one_stream(client: reqwest::Client, base: String, spec: Spec) -> Result<Vec<SseEvent>> {
    let url = format!("{}{}", base.trim_end_matches('/'), spec.path());
    let resp = client
        .post(&url)
        .header("content-type", "application/json")
        .header("x-api-key", TEST_CALLER_TOKEN)
        .header("anthropic-version", "2023-06-01")
        .body(spec.body())
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = resp.status();
    if status != 200 {
        let text = resp.text().await.unwrap_or_default();
        bail!("POST {url} answered {status}: {text}");
    }
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    ensure!(
        ct.starts_with("text/event-stream"),
        "content-type `{ct}` for {url}"
    );
    // Generous per-event timeout: the events are held until every stream is open.
    SseReader::new(resp)
        .collect(Duration::from_secs(120))
        .await
        .with_context(|| format!("reading the stream from {url}"))
}

/// Starts `specs.len()` streams against `base`, waits until the fake has all of them open at
/// once with not one event sent, releases the gate, and checks every stream.
async fn hold_and_check(
    base: &str,
    specs: &[Spec],
    fake: &FakeAnthropic,
    gate: &Gate,
) -> Result<()> {
    let n = specs.len();
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(300))
        .build()?;
    let mut tasks = Vec::new();
    for spec in specs {
        tasks.push(tokio::spawn(one_stream(
            client.clone(),
            base.to_string(),
            spec.clone(),
        )));
    }

    // The condition: all n streams in flight upstream at the same moment.
    let deadline = Instant::now() + Duration::from_secs(180);
    while fake.streams_open() < n {
        if let Some(i) = tasks.iter().position(|t| t.is_finished()) {
            let r = tasks.remove(i).await.context("stream task")?;
            bail!(
                "stream {i} ended while every event was held: {:?}",
                r.map(|ev| names(&ev))
            );
        }
        ensure!(
            Instant::now() < deadline,
            "only {} of {n} streams were open upstream after 180 s ({} requests received)",
            fake.streams_open(),
            fake.request_count()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ensure!(
        fake.events_sent() == 0,
        "events went out before the gate opened"
    );
    ensure!(
        fake.max_streams_open() == n,
        "the fake saw {} streams at once, expected exactly {n}",
        fake.max_streams_open()
    );
    println!("{n} streams open upstream at once; releasing their events");
    gate.release(n * 1000);

    let mut failures = Vec::new();
    for (i, (task, spec)) in tasks.into_iter().zip(specs).enumerate() {
        let r = task
            .await
            .context("stream task")
            .and_then(|r| r)
            .and_then(|ev| check_stream(spec, &ev));
        if let Err(e) = r {
            failures.push(format!("stream {i} ({}): {e:#}", spec.path()));
        }
    }
    ensure!(
        failures.is_empty(),
        "{} of {n} streams failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    Ok(())
}

/// The `serve` example with the local secret, in front of `upstream`, as a child process.
struct ServingProcess {
    child: tokio::process::Child,
    pid: u32,
    url: String,
    stderr: Output,
}

impl ServingProcess {
    async fn start(upstream: &str) -> Result<ServingProcess> {
        let bin = serve_example_bin().await?;
        let mut child = tokio::process::Command::new(&bin)
            .env_clear()
            .env("ANTHROPIC_API_KEY", TEST_ANTHROPIC_KEY)
            .env("CALLER_TOKEN", TEST_CALLER_TOKEN)
            .env("ANTHROPIC_BASE_URL", upstream)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let pid = child.id().context("the serving process has no pid")?;
        let stderr = Output::default();
        stderr.capture(child.stderr.take().context("no stderr")?);
        let mut lines =
            tokio::io::BufReader::new(child.stdout.take().context("no stdout")?).lines();
        let addr = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .context("the serving process printed no address within 30 s")??
            .with_context(|| {
                format!(
                    "the serving process exited before printing its address:\n{}",
                    stderr.text()
                )
            })?;
        let addr: std::net::SocketAddr = addr
            .trim()
            .parse()
            .with_context(|| format!("the serving process printed `{addr}`, not an address"))?;
        Ok(ServingProcess {
            child,
            pid,
            url: format!("http://{addr}"),
            stderr,
        })
    }

    fn assert_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "the serving process exited ({status}):\n{}",
                self.stderr.text()
            );
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_streams_through_one_serving_process() {
    let fake = FakeAnthropic::start(TEST_ANTHROPIC_KEY).await.unwrap();
    let gate = fake.enable_gate();
    let mut server = ServingProcess::start(&fake.base_url()).await.unwrap();
    let idle = vm_hwm(server.pid).unwrap();

    let specs: Vec<Spec> = (0..STREAMS).map(Spec::new).collect();
    let started = std::time::Instant::now();
    let result = hold_and_check(&server.url, &specs, &fake, &gate).await;
    server.assert_running().unwrap();
    let peak = vm_hwm(server.pid).unwrap();
    result.unwrap_or_else(|e| panic!("{e:#}\nserving process stderr:\n{}", server.stderr.text()));

    // Exactly one upstream request per stream (no retries), the pass-through bodies unchanged.
    let seen = fake.requests();
    assert_eq!(seen.len(), STREAMS, "upstream requests");
    for spec in specs.iter().filter(|s| s.route == Route::Messages) {
        assert!(
            seen.iter().any(|r| r.body == spec.body().as_bytes()),
            "the body of `{}` did not reach the upstream unchanged",
            spec.text
        );
    }
    assert!(
        seen.iter()
            .all(|r| r.header("x-api-key") == Some(TEST_ANTHROPIC_KEY)),
        "an upstream request without the real key"
    );
    assert_eq!(fake.streams_open(), 0, "streams still open upstream");

    let chats = specs.iter().filter(|s| s.route == Route::Chat).count();
    println!(
        "load: {STREAMS} concurrent streams ({} /v1/messages, {chats} /chat) through one \
         serving process (handler::local::serve, {} build) in {:.1} s: all 200 OK, complete, \
         content as sent; max streams open upstream at once: {}",
        STREAMS - chats,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        started.elapsed().as_secs_f64(),
        fake.max_streams_open(),
    );
    println!(
        "load: serving process peak RSS (VmHWM) {} (idle before the load: {}, +{})",
        mib(peak),
        mib(idle),
        mib(peak.saturating_sub(idle))
    );
    assert!(
        peak < SERVING_PEAK_LIMIT,
        "peak RSS {} is above the {} leak guard",
        mib(peak),
        mib(SERVING_PEAK_LIMIT)
    );
    assert!(
        !server.stderr.text().contains(TEST_ANTHROPIC_KEY),
        "the key leaked into the serving process's output"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bootstrap_instances_under_the_lambda_emulator_stay_small() {
    let bootstrap = bootstrap_bin().await.unwrap();
    let fake = FakeAnthropic::start(TEST_ANTHROPIC_KEY).await.unwrap();
    let gate = fake.enable_gate();
    let mut opts = LocalLambdaOptions::new(&bootstrap);
    opts.env = vec![
        ("ANTHROPIC_API_KEY".into(), TEST_ANTHROPIC_KEY.into()),
        ("CALLER_TOKEN".into(), TEST_CALLER_TOKEN.into()),
        ("ANTHROPIC_BASE_URL".into(), fake.base_url()),
    ];
    opts.logs = LogSink::Discard;
    opts.invoke_mode = InvokeMode::ResponseStream;
    opts.max_instances = LAMBDA_STREAMS;
    opts.timeout = Duration::from_secs(120);
    let lambda = LocalLambda::start(opts).await.unwrap();

    let specs: Vec<Spec> = (0..LAMBDA_STREAMS).map(Spec::new).collect();
    let result = hold_and_check(&lambda.url(), &specs, &fake, &gate).await;
    // Read while the instances are still alive.
    let peaks: Vec<u64> = emulators::procfs::children_running(&bootstrap)
        .into_iter()
        .filter_map(|pid| vm_hwm(pid).ok())
        .collect();
    let instances = lambda.live_instances();
    lambda.stop().await;
    result.unwrap();

    assert_eq!(
        peaks.len(),
        LAMBDA_STREAMS,
        "one bootstrap instance per concurrent stream (emulator reports {instances})"
    );
    let max = *peaks.iter().max().unwrap();
    println!(
        "load: bootstrap ({} build) under the Lambda emulator, {LAMBDA_STREAMS} concurrent \
         streams = {} instances; peak RSS (VmHWM) per instance: largest {}, all: [{}]",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        peaks.len(),
        mib(max),
        peaks.iter().map(|p| mib(*p)).collect::<Vec<_>>().join(", ")
    );
    assert!(
        max < LAMBDA_PEAK_LIMIT,
        "an instance peaked at {}, above {}",
        mib(max),
        mib(LAMBDA_PEAK_LIMIT)
    );
}
