//! Named callers end to end against moto: `cargo xtask callers add|list|revoke|rotate` (the
//! real CLI), the handler reading the secret they write (a new caller accepted without waiting
//! for the cache's TTL, a revoked one refused after it), the migration of a secret of the old
//! format (plaintext tokens hashed after the function, a crash in between losing nothing),
//! `cargo xtask invoke` with its short-lived caller, and `cargo xtask usage` over EMF lines in
//! the log group.

use emulators::anthropic::FakeAnthropic;
use handler::SecretSource;
use serde_json::{json, Value};
use stand_ins::aws_proxy::{Fault, FaultKind, Matcher};
use stand_ins::handler_support::{client, local_config, LocalServer};
use stand_ins::stack_support::*;
use std::time::Duration;

async fn secret_json(e: &Env, stack: &str) -> Value {
    let sm = aws_sdk_secretsmanager::Client::new(&e.direct);
    let v = sm
        .get_secret_value()
        .secret_id(format!("claude-proxy/{stack}"))
        .send()
        .await
        .unwrap();
    serde_json::from_str(v.secret_string().unwrap()).unwrap()
}

fn json_out(run: &CliRun) -> Value {
    assert_eq!(run.code, Some(0), "{run}");
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_add_list_rotate_revoke_with_the_real_cli() {
    let e = env().await;
    let cli = Cli::new().await;
    let stack = "callers";
    deploy(&e.aws, stack).await;
    let url = e.proxy.endpoint_url();
    let run = |args: Vec<&'static str>| {
        let cli = &cli;
        let url = url.clone();
        async move {
            let mut a = vec!["--stack", stack];
            a.extend(args);
            cli.run(&url, &a).await
        }
    };

    let alice = json_out(&run(vec!["callers", "add", "alice", "--output", "json"]).await);
    assert_eq!(alice["name"], "alice");
    let alice_token = alice["token"].as_str().unwrap().to_string();
    assert!(alice_token.starts_with("clp_"), "{alice}");
    let again = run(vec!["callers", "add", "alice"]).await;
    assert_eq!(again.code, Some(1), "{again}");
    assert!(again.stderr.contains("exists already"), "{again}");
    let too_big = run(vec!["callers", "add", "big", "--max-tokens", "999999"]).await;
    assert_eq!(too_big.code, Some(1), "{too_big}");
    assert!(too_big.stderr.contains("max_tokens_cap"), "{too_big}");
    let ci = json_out(
        &run(vec![
            "callers",
            "add",
            "ci",
            "--models",
            "claude-haiku-4-5",
            "--max-tokens",
            "100",
            "--output",
            "json",
        ])
        .await,
    );
    let ci_token = ci["token"].as_str().unwrap().to_string();

    let listed = run(vec!["callers", "list", "--output", "json"]).await;
    let list = json_out(&listed);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["default", "alice", "ci"]);
    for c in list.as_array().unwrap() {
        assert!(
            c.get("token").is_none() && c.get("token_sha256").is_none(),
            "{c}"
        );
        assert!(c["created_at"].is_string(), "{c}");
    }
    assert_eq!(
        list[2]["limits"],
        json!({"allowed_models": ["claude-haiku-4-5"], "max_tokens": 100})
    );
    let text = run(vec!["callers", "list"]).await;
    assert!(text.stdout.contains("max_tokens=100"), "{text}");
    for out in [&listed.stdout, &listed.stderr, &text.stdout] {
        assert!(
            !out.contains(&alice_token) && !out.contains(&ci_token),
            "{out}"
        );
    }

    // The secret holds hashes, not tokens.
    let v = secret_json(&e, stack).await;
    assert!(!v.to_string().contains(&alice_token), "{v}");
    assert_eq!(
        v["callers"][1]["token_sha256"],
        handler::callers::token_sha256_hex(&alice_token)
    );

    let rotated = json_out(&run(vec!["callers", "rotate", "alice", "--output", "json"]).await);
    let new_token = rotated["token"].as_str().unwrap();
    assert_ne!(new_token, alice_token);
    let v = secret_json(&e, stack).await;
    assert_eq!(
        v["callers"][1]["token_sha256"],
        handler::callers::token_sha256_hex(new_token)
    );
    assert!(v["callers"][1]["rotated_at"].is_string());

    let revoked = json_out(&run(vec!["callers", "revoke", "alice", "--output", "json"]).await);
    assert_eq!(revoked, json!({"name": "alice", "revoked": true}));
    let nobody = run(vec!["callers", "revoke", "alice"]).await;
    assert_eq!(nobody.code, Some(1), "{nobody}");
    assert!(nobody.stderr.contains("no caller named alice"), "{nobody}");
    let names: Vec<String> = secret_json(&e, stack).await["callers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["default", "ci"]);
    // The lock was released each time: no lock secret is left.
    assert!(e
        .proxy
        .calls()
        .iter()
        .any(|c| c.operation == "CreateSecret"));
    let sm = aws_sdk_secretsmanager::Client::new(&e.direct);
    let left = sm.list_secrets().send().await.unwrap();
    assert!(
        left.secret_list()
            .iter()
            .all(|s| !s.name().unwrap_or_default().ends_with("/lock")),
        "{left:?}"
    );
}

/// The handler reading the stack's secret from moto, its cache TTL `ttl`.
async fn handler_on(e: &Env, stack: &str, fake: &FakeAnthropic, ttl: Duration) -> LocalServer {
    let arn = secret_json_arn(e, stack).await;
    let mut config = local_config(&fake.base_url());
    config.secret_ttl = ttl;
    let source = SecretSource::SecretsManager {
        client: aws_sdk_secretsmanager::Client::new(&e.direct),
        arn,
    };
    let app = handler::App::with_secret_source(config, source).unwrap();
    app.warm_up().await;
    LocalServer::start(app).await.unwrap()
}

async fn secret_json_arn(e: &Env, stack: &str) -> String {
    let sm = aws_sdk_secretsmanager::Client::new(&e.direct);
    sm.describe_secret()
        .secret_id(format!("claude-proxy/{stack}"))
        .send()
        .await
        .unwrap()
        .arn()
        .unwrap()
        .to_string()
}

async fn chat(server: &LocalServer, token: &str) -> u16 {
    client()
        .post(server.url("/chat"))
        .header("x-api-key", token)
        .header("content-type", "application/json")
        .body(json!({"message": "hi", "max_tokens": 10}).to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Sends until the answer is `want`, for at most `within`; the last status.
async fn until_status(server: &LocalServer, token: &str, want: u16, within: Duration) -> u16 {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let s = chat(server, token).await;
        if s == want || tokio::time::Instant::now() >= deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handler_accepts_a_new_caller_at_once_and_refuses_a_revoked_one_after_the_ttl() {
    let e = env().await;
    let cli = Cli::new().await;
    let stack = "ttl";
    deploy(&e.aws, stack).await;
    let fake = FakeAnthropic::start(KEY).await.unwrap();
    // A long TTL: a new caller is still accepted at once (the unknown token re-reads).
    let server = handler_on(&e, stack, &fake, Duration::from_secs(300)).await;
    let url = e.proxy.endpoint_url();
    let added = json_out(
        &cli.run(
            &url,
            &[
                "--stack", stack, "callers", "add", "bob", "--output", "json",
            ],
        )
        .await,
    );
    let bob = added["token"].as_str().unwrap().to_string();
    // At most one re-read per UNKNOWN_TOKEN_REFRESH: the first tries may be refused.
    let status = until_status(
        &server,
        &bob,
        200,
        handler::secrets::UNKNOWN_TOKEN_REFRESH * 3,
    )
    .await;
    assert_eq!(
        status, 200,
        "a new caller is accepted without waiting for the TTL"
    );

    // Revoked: refused once the cache's TTL has passed (here 1 s).
    let server = handler_on(&e, stack, &fake, Duration::from_secs(1)).await;
    assert_eq!(chat(&server, &bob).await, 200);
    let r = cli
        .run(&url, &["--stack", stack, "callers", "revoke", "bob"])
        .await;
    assert_eq!(r.code, Some(0), "{r}");
    assert_eq!(
        until_status(&server, &bob, 401, Duration::from_secs(10)).await,
        401
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_secret_migrates_after_the_function_and_a_crash_between_loses_nothing() {
    let e = env().await;
    let stack = "migrate";
    deploy(&e.aws, stack).await;
    // The secret as the toolkit wrote it before named callers.
    let sm = aws_sdk_secretsmanager::Client::new(&e.direct);
    let old = "clp_old-token-DO-NOT-LOG";
    sm.put_secret_value()
        .secret_id(format!("claude-proxy/{stack}"))
        .secret_string(json!({"anthropic_api_key": KEY, "caller_tokens": [old]}).to_string())
        .send()
        .await
        .unwrap();
    let fake = FakeAnthropic::start(KEY).await.unwrap();
    let server = handler_on(&e, stack, &fake, Duration::from_secs(1)).await;
    assert_eq!(
        chat(&server, old).await,
        200,
        "the new handler reads the old form"
    );

    // The deploy plans the migration; its write fails (a crash after the function update).
    let d = desired(&overrides(stack), Some(KEY));
    let p = plan_for(&e.aws, &d).await;
    assert!(p.to_string().contains("secret callers"), "{p}");
    assert!(!p.to_string().contains(old), "{p}");
    e.proxy.clear();
    e.proxy.inject(Fault {
        matcher: Matcher::Operation {
            service: "secretsmanager".into(),
            operation: "PutSecretValue".into(),
        },
        times: 1,
        status: 400,
        code: "InjectedFault".into(),
        message: "crash before the migration is written".into(),
        after_forwarding: false,
        kind: FaultKind::Error,
    });
    assert!(infra::apply(&e.aws, &p, &d, &infra::Silent).await.is_err());
    let v = secret_json(&e, stack).await;
    assert_eq!(v["caller_tokens"], json!([old]), "nothing lost: {v}");
    assert_eq!(chat(&server, old).await, 200);

    // The re-run finishes it: the same token, now a hashed caller `default`.
    let (p2, _) = deploy_with(&e.aws, &overrides(stack), Some(KEY))
        .await
        .unwrap();
    assert!(p2.to_string().contains("secret callers"), "{p2}");
    let v = secret_json(&e, stack).await;
    assert!(v.get("caller_tokens").is_none(), "{v}");
    assert_eq!(v["callers"][0]["name"], "default");
    assert_eq!(
        v["callers"][0]["token_sha256"],
        handler::callers::token_sha256_hex(old)
    );
    assert!(!v.to_string().contains(old));
    assert_eq!(
        until_status(&server, old, 200, Duration::from_secs(5)).await,
        200
    );
    let (p3, _) = deploy_with(&e.aws, &overrides(stack), Some(KEY))
        .await
        .unwrap();
    assert!(p3.is_empty(), "{p3}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_uses_a_short_lived_caller_and_revokes_it() {
    let e = env().await;
    let cli = Cli::new().await;
    let stack = "smoke";
    deploy(&e.aws, stack).await;
    let fake = FakeAnthropic::start(KEY).await.unwrap();
    let server = handler_on(&e, stack, &fake, Duration::from_secs(300)).await;
    let before = secret_json(&e, stack).await;
    let base = server.url("");
    let r = cli
        .run(
            &e.proxy.endpoint_url(),
            &[
                "--stack",
                stack,
                "invoke",
                "--url",
                &base,
                "--no-stream",
                "--message",
                "ping",
            ],
        )
        .await;
    assert_eq!(r.code, Some(0), "{r}");
    assert!(r.stdout.contains("Echo: ping"), "{r}");
    assert_eq!(fake.request_count(), 1);
    // Made and revoked: the secret's callers are what they were.
    assert_eq!(secret_json(&e, stack).await["callers"], before["callers"]);
    let writes: Vec<String> = e
        .proxy
        .mutating_calls()
        .iter()
        .map(|c| c.operation.clone())
        .filter(|o| o == "PutSecretValue")
        .collect();
    assert_eq!(writes.len(), 2, "added then revoked: {writes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_reports_tokens_and_cost_per_caller_and_model_from_the_log_group() {
    let e = env().await;
    let cli = Cli::new().await;
    let stack = "usage";
    deploy(&e.aws, stack).await;
    let logs = aws_sdk_cloudwatchlogs::Client::new(&e.direct);
    let group = format!("/aws/lambda/claude-proxy-{stack}");
    logs.create_log_stream()
        .log_group_name(&group)
        .log_stream_name("2026/01/01/[$LATEST]abc")
        .send()
        .await
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let line = |caller: &str, model: &str, input: u64, output: u64| {
        let u = handler::metrics::Usage {
            function: format!("claude-proxy-{stack}"),
            caller: Some(caller.into()),
            model: Some(model.into()),
            status: Some(200),
            input_tokens: input,
            output_tokens: output,
            ..Default::default()
        };
        handler::metrics::emf(&u, now as u64).to_string()
    };
    let messages = [
        line("alice", "claude-haiku-4-5", 1_000_000, 100_000),
        r#"{"level":"INFO","fields":{"message":"request"}}"#.to_string(),
        line("alice", "claude-haiku-4-5", 0, 100_000),
        line("bob", "claude-sonnet-4-5", 2_000, 1_000),
        "START RequestId: 1 Version: $LATEST".to_string(),
    ];
    let mut put = logs
        .put_log_events()
        .log_group_name(&group)
        .log_stream_name("2026/01/01/[$LATEST]abc");
    for (i, m) in messages.iter().enumerate() {
        put = put.log_events(
            aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                .timestamp(now + i as i64)
                .message(m)
                .build()
                .unwrap(),
        );
    }
    put.send().await.unwrap();

    let url = e.proxy.endpoint_url();
    let rows = json_out(
        &cli.run(
            &url,
            &[
                "--stack", stack, "usage", "--since", "1h", "--output", "json",
            ],
        )
        .await,
    );
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["caller"], "alice");
    assert_eq!(rows[0]["model"], "claude-haiku-4-5");
    assert_eq!(rows[0]["input_tokens"], 1_000_000);
    assert_eq!(rows[0]["output_tokens"], 200_000);
    // $1 per MTok in, $5 out (the built-in table).
    assert!(
        (rows[0]["cost_usd"].as_f64().unwrap() - 2.0).abs() < 1e-9,
        "{rows:?}"
    );
    assert_eq!(rows[1]["caller"], "bob");
    let by_model = json_out(
        &cli.run(
            &url,
            &[
                "--stack", stack, "usage", "--by", "model", "--output", "json",
            ],
        )
        .await,
    );
    assert_eq!(by_model.as_array().unwrap().len(), 2);
    let text = cli.run(&url, &["--stack", stack, "usage"]).await;
    assert_eq!(text.code, Some(0), "{text}");
    assert!(text.stdout.contains("prices used"), "{text}");
    assert!(text.stdout.contains(infra::prices::TABLE_DATE), "{text}");
    assert!(e
        .proxy
        .calls()
        .iter()
        .any(|c| c.operation == "FilterLogEvents"));
}
