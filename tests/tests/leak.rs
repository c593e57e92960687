//! Secret-leak check: a recognisable fake Anthropic key (`sk-ant-api03-LEAKCANARY-<random>`,
//! given only through `ANTHROPIC_API_KEY`, never argv) goes through the real `cargo xtask`
//! binary's `plan`, `deploy --yes`, `invoke`, `logs` and `teardown`, all with `-vv`, against
//! moto server. Every byte of every command's stdout and stderr, the deployed function's
//! configuration and tags, its role and policies, the log events, the function's own output
//! and moto's whole stored state (`/moto-api/data.json`) are scanned for the key: zero hits,
//! except the stack's Secrets Manager secret value, where the key must be found (which proves
//! the scanner can see it). The caller token may appear only in the deploy output that
//! created it and in the secret.
//!
//! How `invoke` reaches the function: moto stores functions but cannot run them, so, as
//! `cargo xtask deploy --local` does, the function configuration is read back from moto and
//! the real `bootstrap` is run with exactly that environment under the local Lambda emulator
//! (`emulators::lambda::LocalLambda`). The code uploaded to moto is a small stand-in ELF
//! (packaging the 46 MB debug `bootstrap` three times would triple the test's time and the
//! key is never in the binary either way); it reads the key from the secret in moto and calls the
//! fake Messages API, which accepts only the canary key. `invoke --url <emulator> --stack S`
//! then reads the caller token from the secret like a CI smoke test does. The function's
//! output is shipped to its log group in moto (Lambda's job), so `logs` prints real lines.
//!
//! moto 5.2.5's `/moto-api/data.json` fails (500) once a Lambda function exists unless the
//! Docker API answers, so the test serves a stub Docker `/version` on loopback and points
//! moto's `DOCKER_HOST` at it; nothing runs containers.

use anyhow::{Context, Result};
use aws_config::SdkConfig;
use emulators::anthropic::FakeAnthropic;
use emulators::lambda::{InvokeMode, LocalLambda, LocalLambdaOptions, LogSink};
use emulators::moto::MotoServer;
use serde_json::Value;
use stand_ins::handler_support::{bootstrap_bin, xtask_bin};
use stand_ins::stack_support::sdk_config;
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const STACK: &str = "leak-check";

/// A key nobody could mistake: the prefix of a real key, a marker, and a random tail.
fn canary() -> (String, String) {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    let tail = format!("{:016x}{:08x}", h.finish(), std::process::id());
    (format!("sk-ant-api03-LEAKCANARY-{tail}"), tail)
}

/// A small static x86_64 ELF header (no program headers, so no glibc requirement) that the
/// CLI packages and uploads like a `bootstrap`; moto never runs it.
fn stand_in_elf(dir: &std::path::Path) -> PathBuf {
    let mut bytes = vec![0u8; 64];
    bytes[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
    bytes[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    bytes[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    bytes[20..24].copy_from_slice(&1u32.to_le_bytes());
    bytes[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    bytes.extend_from_slice(b"stand-in for the uploaded bootstrap");
    let path = dir.join("bootstrap");
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Every offset at which `needle` occurs in `haystack`.
fn hits(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return Vec::new();
    }
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

/// Everything scanned, by where it came from.
#[derive(Default)]
struct Evidence {
    items: Vec<(String, Vec<u8>)>,
}

impl Evidence {
    fn add(&mut self, what: impl Into<String>, bytes: impl Into<Vec<u8>>) {
        self.items.push((what.into(), bytes.into()));
    }

    /// Where `needle` occurs, as `what @ offset: context`.
    fn find(&self, needle: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (what, bytes) in &self.items {
            for at in hits(bytes, needle.as_bytes()) {
                let from = at.saturating_sub(80);
                let to = (at + needle.len() + 80).min(bytes.len());
                out.push(format!(
                    "{what} @ {at}: …{}…",
                    String::from_utf8_lossy(&bytes[from..to])
                ));
            }
        }
        out
    }

    fn bytes(&self) -> usize {
        self.items.iter().map(|(_, b)| b.len()).sum()
    }
}

/// The real xtask binary in a scratch directory, against moto, with nothing inherited that
/// could point it elsewhere.
struct Xtask {
    bin: PathBuf,
    dir: tempfile::TempDir,
    moto: String,
    key: String,
}

struct Run {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Run {
    fn text(&self) -> String {
        format!(
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code,
            String::from_utf8_lossy(&self.stdout),
            String::from_utf8_lossy(&self.stderr)
        )
    }
}

impl Xtask {
    fn run(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Run {
        assert!(
            !args.iter().any(|a| a.contains(&self.key)),
            "the key must never be on the command line"
        );
        let mut cmd = std::process::Command::new(&self.bin);
        cmd.args(args)
            .arg("-vv")
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        for (k, _) in std::env::vars() {
            if k.starts_with("AWS_")
                || k.starts_with("ANTHROPIC_")
                || k.starts_with("CLAUDE_PROXY")
                || k == "RUST_LOG"
            {
                cmd.env_remove(k);
            }
        }
        cmd.env("CARGO_TARGET_DIR", self.dir.path().join("target"))
            .env("AWS_ENDPOINT_URL", &self.moto)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", self.dir.path().join("no-aws-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                self.dir.path().join("no-aws-credentials"),
            )
            // Every command gets the key, the worst case for a leak.
            .env("ANTHROPIC_API_KEY", &self.key);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("running xtask");
        Run {
            code: out.status.code(),
            stdout: out.stdout,
            stderr: out.stderr,
        }
    }
}

/// A stub of the Docker Engine API's `/version`, so moto's `data.json` can serialise Lambda
/// functions (it touches a Docker client while doing so). Nothing else is answered.
async fn stub_docker() -> Result<(String, tokio::task::JoinHandle<()>)> {
    let app = axum::Router::new().fallback(|| async {
        axum::Json(serde_json::json!({"ApiVersion": "1.41", "Version": "20.10.0"}))
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((format!("tcp://{addr}"), task))
}

/// moto's whole stored state.
async fn moto_state(moto: &MotoServer) -> Result<Value> {
    let url = format!("{}/moto-api/data.json", moto.endpoint_url());
    let resp = reqwest::Client::new()
        .get(&url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = resp.status();
    let text = resp.text().await?;
    anyhow::ensure!(status.is_success(), "GET {url}: {status}: {text}");
    serde_json::from_str(&text).with_context(|| format!("{url} is not JSON"))
}

/// Every string in `v` containing `needle`, with its JSON path.
fn json_hits(
    v: &Value,
    needle: &str,
    path: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, String)>,
) {
    match v {
        Value::String(s) if s.contains(needle) => out.push((path.clone(), s.clone())),
        Value::String(_) => {}
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                path.push(i.to_string());
                json_hits(x, needle, path, out);
                path.pop();
            }
        }
        Value::Object(o) => {
            for (k, x) in o {
                if k.contains(needle) {
                    out.push((path.clone(), format!("(key) {k}")));
                }
                path.push(k.clone());
                json_hits(x, needle, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

/// Checks moto's state: `needle` may occur only in the `secret_string` (current or a
/// version) of the secret `secret_arn`. Returns how many times it occurs there.
fn check_state(state: &Value, needle: &str, secret_arn: &str, when: &str) -> usize {
    let mut found = Vec::new();
    json_hits(state, needle, &mut Vec::new(), &mut found);
    let secrets = state
        .pointer("/secretsmanager/FakeSecret")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut in_secret = 0;
    let mut elsewhere = Vec::new();
    for (path, s) in found {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        let allowed = match p.as_slice() {
            ["secretsmanager", "FakeSecret", i, "secret_string"]
            | ["secretsmanager", "FakeSecret", i, "versions", _, "secret_string"] => {
                i.parse::<usize>()
                    .ok()
                    .and_then(|i| secrets.get(i))
                    .and_then(|s| s.get("arn"))
                    .and_then(Value::as_str)
                    == Some(secret_arn)
            }
            _ => false,
        };
        if allowed {
            in_secret += 1;
        } else {
            elsewhere.push(format!(
                "{}: {}",
                p.join("."),
                s.chars().take(300).collect::<String>()
            ));
        }
    }
    assert!(
        elsewhere.is_empty(),
        "{when}: found in moto's stored state outside the stack's secret value:\n{}",
        elsewhere.join("\n")
    );
    in_secret
}

/// The stack's resources as AWS reports them, read with plain SDK calls: the function's
/// configuration (environment variables spelled out, since the SDK's Debug hides them),
/// tags, URL, resource policy, the role and its policies, the secret's description, the
/// log group and its events.
async fn read_back(direct: &SdkConfig, ev: &mut Evidence) -> Result<()> {
    let function = format!("claude-proxy-{STACK}");
    let lambda = aws_sdk_lambda::Client::new(direct);
    let f = lambda
        .get_function()
        .function_name(&function)
        .send()
        .await
        .with_context(|| format!("GetFunction {function}"))?;
    let cfg = f.configuration().context("no configuration")?;
    let env: Vec<String> = cfg
        .environment()
        .and_then(|e| e.variables())
        .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect())
        .unwrap_or_default();
    anyhow::ensure!(
        env.iter().any(|e| e.starts_with("SECRET_ARN=")),
        "the function has no SECRET_ARN: {env:?}"
    );
    ev.add("function environment", env.join("\n"));
    ev.add("GetFunction", format!("{f:?}"));
    ev.add("function tags", format!("{:?}", f.tags()));
    if let Ok(url) = lambda
        .get_function_url_config()
        .function_name(&function)
        .send()
        .await
    {
        ev.add("GetFunctionUrlConfig", format!("{url:?}"));
    }
    if let Ok(p) = lambda.get_policy().function_name(&function).send().await {
        ev.add(
            "function resource policy",
            p.policy().unwrap_or_default().to_string(),
        );
    }

    let iam = aws_sdk_iam::Client::new(direct);
    let role = format!("claude-proxy-{STACK}-role");
    let r = iam
        .get_role()
        .role_name(&role)
        .send()
        .await
        .with_context(|| format!("GetRole {role}"))?;
    ev.add("GetRole", format!("{r:?}"));
    let names = iam
        .list_role_policies()
        .role_name(&role)
        .send()
        .await
        .with_context(|| format!("ListRolePolicies {role}"))?;
    for name in names.policy_names() {
        let p = iam
            .get_role_policy()
            .role_name(&role)
            .policy_name(name)
            .send()
            .await
            .with_context(|| format!("GetRolePolicy {name}"))?;
        ev.add(
            format!("inline policy {name}"),
            p.policy_document().to_string(),
        );
    }
    let attached = iam
        .list_attached_role_policies()
        .role_name(&role)
        .send()
        .await
        .with_context(|| format!("ListAttachedRolePolicies {role}"))?;
    ev.add("attached policies", format!("{attached:?}"));

    let sm = aws_sdk_secretsmanager::Client::new(direct);
    let d = sm
        .describe_secret()
        .secret_id(format!("claude-proxy/{STACK}"))
        .send()
        .await
        .context("DescribeSecret")?;
    ev.add("DescribeSecret", format!("{d:?}"));

    let logs = aws_sdk_cloudwatchlogs::Client::new(direct);
    let groups = logs
        .describe_log_groups()
        .log_group_name_prefix(format!("/aws/lambda/{function}"))
        .send()
        .await
        .context("DescribeLogGroups")?;
    ev.add("DescribeLogGroups", format!("{groups:?}"));
    let events = logs
        .filter_log_events()
        .log_group_name(format!("/aws/lambda/{function}"))
        .send()
        .await
        .context("FilterLogEvents")?;
    let lines: Vec<&str> = events.events().iter().filter_map(|e| e.message()).collect();
    ev.add("log events in moto", lines.join("\n"));
    Ok(())
}

/// Lambda's log shipping: the function's output lines into its log group in moto.
async fn ship_logs(direct: &SdkConfig, lines: &[String]) -> Result<()> {
    let logs = aws_sdk_cloudwatchlogs::Client::new(direct);
    let group = format!("/aws/lambda/claude-proxy-{STACK}");
    logs.create_log_stream()
        .log_group_name(&group)
        .log_stream_name("2026/11/22/[$LATEST]leakcheck")
        .send()
        .await
        .with_context(|| format!("CreateLogStream in {group}"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let events: Vec<_> = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                .timestamp(now)
                .message(l)
                .build()
                .unwrap()
        })
        .collect();
    anyhow::ensure!(!events.is_empty(), "the function wrote no log lines");
    logs.put_log_events()
        .log_group_name(&group)
        .log_stream_name("2026/11/22/[$LATEST]leakcheck")
        .set_log_events(Some(events))
        .send()
        .await
        .with_context(|| format!("PutLogEvents in {group}"))?;
    Ok(())
}

fn stdout_json(r: &Run) -> Value {
    serde_json::from_slice(&r.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", r.text()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_key_never_leaks_through_plan_deploy_invoke_logs_teardown() {
    let (key, tail) = canary();
    let t0 = std::time::Instant::now();
    let step = |what: &str| println!("leak: {:>6.1} s  {what}", t0.elapsed().as_secs_f64());
    // moto inherits this (see the module docs); the only test in this binary sets it.
    let (docker, _docker_task) = stub_docker().await.unwrap();
    std::env::set_var("DOCKER_HOST", &docker);
    let moto = MotoServer::start()
        .await
        .expect("moto server (see the message for how to install it)");
    let fake = FakeAnthropic::start(&key).await.unwrap();
    let direct = sdk_config(&moto.endpoint_url()).await;
    let bootstrap = bootstrap_bin().await.unwrap();
    step("bootstrap built");
    let x = Xtask {
        bin: xtask_bin().await.unwrap(),
        dir: tempfile::tempdir().unwrap(),
        moto: moto.endpoint_url(),
        key: key.clone(),
    };
    let uploaded = stand_in_elf(x.dir.path());
    let b = uploaded.to_str().unwrap();
    let upstream = fake.base_url();
    let stack_args = [
        "--stack",
        STACK,
        "--bootstrap",
        b,
        "--anthropic-base-url",
        upstream.as_str(),
    ];
    let with = |cmd: &[&str], extra: &[&str]| -> Vec<String> {
        cmd.iter()
            .chain(stack_args.iter())
            .chain(extra.iter())
            .map(|s| s.to_string())
            .collect()
    };
    let mut ev = Evidence::default();
    // Output that may show the caller token (the deploy that created it).
    let mut token_allowed = Evidence::default();

    step("xtask built");
    // plan: exit 2 (changes to make); nothing stored yet.
    let plan = x.run(&strs(&with(&["plan"], &[])), &[]);
    assert_eq!(plan.code, Some(2), "{}", plan.text());
    record(&mut ev, "plan", &plan);
    let before = moto_state(&moto).await.unwrap();
    assert_eq!(check_state(&before, &key, "-", "after plan"), 0);
    assert_eq!(check_state(&before, &tail, "-", "after plan (tail)"), 0);

    step("plan done");
    // deploy: creates the secret with the key and a new caller token, shown once.
    let deploy = x.run(
        &strs(&with(
            &["deploy"],
            &["--skip-smoke-test", "--yes", "--output", "json"],
        )),
        &[],
    );
    assert_eq!(deploy.code, Some(0), "{}", deploy.text());
    let out = stdout_json(&deploy);
    let token = out["caller_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no caller token on first deploy:\n{}", deploy.text()))
        .to_string();
    let secret_arn = out["secret_arn"].as_str().unwrap().to_string();
    token_allowed.add(
        "`deploy` stdout (first, creates the token)",
        deploy.stdout.clone(),
    );
    ev.add("`deploy` stderr", deploy.stderr.clone());
    // The same again in text: nothing to do (exit 3, or 0 before the exit codes of issue 6
    // part A; the cli tests pin the codes), and the token is not shown again.
    let again = x.run(
        &strs(&with(&["deploy"], &["--skip-smoke-test", "--yes"])),
        &[],
    );
    assert!(matches!(again.code, Some(0) | Some(3)), "{}", again.text());
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("no changes"),
        "{}",
        again.text()
    );
    record(&mut ev, "deploy (again)", &again);

    step("deploy (twice) done");
    // The secret holds the key: the canary is visible where it belongs.
    let sm = aws_sdk_secretsmanager::Client::new(&direct);
    let value = sm
        .get_secret_value()
        .secret_id(&secret_arn)
        .send()
        .await
        .unwrap();
    let secret_string = value.secret_string().unwrap().to_string();
    let mut secret_only = Evidence::default();
    secret_only.add("the secret value", secret_string.clone());
    assert_eq!(
        secret_only.find(&key).len(),
        1,
        "the canary is in the secret"
    );
    // Callers are stored by their token's hash: the token itself is not in the secret.
    assert_eq!(
        secret_only.find(&token).len(),
        0,
        "the token is in the secret"
    );
    assert_eq!(
        secret_only
            .find(&infra::callers::token_sha256(
                &serde_json::from_value(serde_json::json!(token)).unwrap()
            ))
            .len(),
        1,
        "the token's hash is in the secret"
    );

    // callers: a named caller's token shown once by `add` and once by `rotate`, and never by
    // `list` (text and JSON).
    let added = x.run(
        &[
            "callers",
            "add",
            "leakcheck",
            "--stack",
            STACK,
            "--output",
            "json",
        ],
        &[],
    );
    assert_eq!(added.code, Some(0), "{}", added.text());
    let added_json: Value = serde_json::from_slice(&added.stdout).unwrap();
    let named = added_json["token"].as_str().unwrap().to_string();
    let rotated = x.run(
        &[
            "callers",
            "rotate",
            "leakcheck",
            "--stack",
            STACK,
            "--output",
            "json",
        ],
        &[],
    );
    assert_eq!(rotated.code, Some(0), "{}", rotated.text());
    let rotated_json: Value = serde_json::from_slice(&rotated.stdout).unwrap();
    let named2 = rotated_json["token"].as_str().unwrap().to_string();
    let mut named_allowed = Evidence::default();
    named_allowed.add(
        "`callers add` stdout",
        String::from_utf8_lossy(&added.stdout).into_owned(),
    );
    named_allowed.add(
        "`callers rotate` stdout",
        String::from_utf8_lossy(&rotated.stdout).into_owned(),
    );
    ev.add(
        "`callers add` stderr",
        String::from_utf8_lossy(&added.stderr).into_owned(),
    );
    ev.add(
        "`callers rotate` stderr",
        String::from_utf8_lossy(&rotated.stderr).into_owned(),
    );
    for args in [
        vec!["callers", "list", "--stack", STACK],
        vec!["callers", "list", "--stack", STACK, "--output", "json"],
    ] {
        let listed = x.run(&args, &[]);
        assert_eq!(listed.code, Some(0), "{}", listed.text());
        record(&mut ev, "callers list", &listed);
    }

    // Serve the function as deployed: its configured environment, read back from moto.
    let lambda_api = aws_sdk_lambda::Client::new(&direct);
    let cfg = lambda_api
        .get_function_configuration()
        .function_name(format!("claude-proxy-{STACK}"))
        .send()
        .await
        .unwrap();
    let mut env: Vec<(String, String)> = cfg
        .environment()
        .and_then(|e| e.variables())
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    assert!(
        env.iter()
            .any(|(k, v)| k == "ANTHROPIC_BASE_URL" && *v == upstream),
        "the function does not point at the fake upstream: {env:?}"
    );
    env.extend([
        ("AWS_ENDPOINT_URL".to_string(), moto.endpoint_url()),
        ("AWS_ACCESS_KEY_ID".to_string(), "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY".to_string(), "testing".to_string()),
        ("AWS_EC2_METADATA_DISABLED".to_string(), "true".to_string()),
    ]);
    let function_lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = {
        let lines = function_lines.clone();
        LogSink::Capture(Arc::new(move |l| lines.lock().unwrap().push(l.line)))
    };
    let mut opts = LocalLambdaOptions::new(&bootstrap);
    opts.env = env;
    opts.function_name = format!("claude-proxy-{STACK}");
    opts.memory_mb = cfg.memory_size().unwrap_or(256) as u32;
    opts.timeout = Duration::from_secs(60);
    opts.invoke_mode = InvokeMode::ResponseStream;
    opts.max_instances = 2;
    opts.logs = sink;
    let lambda = LocalLambda::start(opts).await.unwrap();
    let url = lambda.url();

    // invoke, streaming /chat and buffered /v1/messages, the token read from the secret.
    let inv = x.run(
        &strs(&[
            "invoke".into(),
            "--stack".into(),
            STACK.into(),
            "--url".into(),
            url.clone(),
            "--message".into(),
            "leak check one two".into(),
        ]),
        &[],
    );
    assert_eq!(inv.code, Some(0), "{}", inv.text());
    assert!(
        String::from_utf8_lossy(&inv.stdout).contains("leak check one two"),
        "the reply did not come back:\n{}",
        inv.text()
    );
    record(&mut ev, "invoke", &inv);
    let inv2 = x.run(
        &strs(&[
            "invoke".into(),
            "--stack".into(),
            STACK.into(),
            "--url".into(),
            url.clone(),
            "--path".into(),
            "/v1/messages".into(),
            "--no-stream".into(),
        ]),
        &[],
    );
    assert_eq!(inv2.code, Some(0), "{}", inv2.text());
    record(&mut ev, "invoke --path /v1/messages --no-stream", &inv2);
    // The key reached the upstream (from the secret); the caller token did not.
    let seen = fake.requests();
    assert_eq!(seen.len(), 2, "upstream requests");
    for r in &seen {
        assert_eq!(r.header("x-api-key"), Some(key.as_str()));
        let all = format!("{:?} {}", r.headers, String::from_utf8_lossy(&r.body));
        assert!(
            !all.contains(&token),
            "the caller token went upstream: {all}"
        );
    }
    lambda.stop().await;
    let lines = function_lines.lock().unwrap().clone();
    assert!(
        lines.iter().any(|l| l.contains("\"route\":\"chat\"")),
        "no request log line from the function: {lines:?}"
    );
    ev.add("the function's own output", lines.join("\n"));

    step("invoke (twice) done");
    // logs: the function's lines, shipped to its log group, printed by the CLI.
    ship_logs(&direct, &lines).await.unwrap();
    let logs = x.run(&["logs", "--stack", STACK, "--since", "30m"], &[]);
    assert_eq!(logs.code, Some(0), "{}", logs.text());
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("request"),
        "logs printed none of the function's lines:\n{}",
        logs.text()
    );
    record(&mut ev, "logs", &logs);
    // usage: the function's EMF lines read back.
    let usage = x.run(
        &[
            "usage", "--stack", STACK, "--since", "30m", "--output", "json",
        ],
        &[],
    );
    assert_eq!(usage.code, Some(0), "{}", usage.text());
    assert!(
        String::from_utf8_lossy(&usage.stdout).contains("\"output_tokens\""),
        "usage found no EMF line:\n{}",
        usage.text()
    );
    record(&mut ev, "usage", &usage);

    step("logs done");
    // The deployed stack, read back, and moto's whole state.
    read_back(&direct, &mut ev).await.unwrap();
    let deployed = moto_state(&moto).await.unwrap();
    assert!(
        check_state(&deployed, &key, &secret_arn, "after deploy") >= 1,
        "the canary must be found in the secret's value in moto's state (scanner check)"
    );
    assert!(check_state(&deployed, &tail, &secret_arn, "after deploy (tail)") >= 1);
    assert_eq!(
        check_state(&deployed, &token, &secret_arn, "after deploy (token)"),
        0
    );
    check_state(
        &deployed,
        &named,
        &secret_arn,
        "after deploy (named caller)",
    );
    check_state(
        &deployed,
        &named2,
        &secret_arn,
        "after deploy (rotated caller)",
    );
    for needle in [key.as_str(), tail.as_str()] {
        let mut found = Vec::new();
        json_hits(&deployed, needle, &mut Vec::new(), &mut found);
        assert!(
            !found.is_empty(),
            "scanner check: {needle} is in the secret"
        );
    }

    step("read back and moto state scanned");
    // teardown.
    let td = x.run(&["teardown", "--stack", STACK, "--yes"], &[]);
    assert_eq!(td.code, Some(0), "{}", td.text());
    record(&mut ev, "teardown", &td);
    let after = moto_state(&moto).await.unwrap();
    check_state(&after, &key, &secret_arn, "after teardown");
    check_state(&after, &tail, &secret_arn, "after teardown (tail)");
    check_state(&after, &token, &secret_arn, "after teardown (token)");
    ev.add("moto state after plan", before.to_string());

    step("teardown done");
    // The scan. The key (and its random tail alone, which catches masked forms like
    // `sk-…<tail>`): nowhere. The token: only in the deploy output that created it.
    let mut leaks = ev.find(&key);
    leaks.extend(ev.find(&tail));
    leaks.extend(token_allowed.find(&key));
    leaks.extend(token_allowed.find(&tail));
    assert!(
        leaks.is_empty(),
        "the Anthropic key leaked ({} hits):\n{}",
        leaks.len(),
        leaks.join("\n")
    );
    let mut token_leaks = ev.find(&token);
    for t in [&named, &named2] {
        token_leaks.extend(ev.find(t));
        token_leaks.extend(token_allowed.find(t));
    }
    token_leaks.extend(named_allowed.find(&token));
    assert_eq!(
        named_allowed.find(&named).len(),
        1,
        "`callers add` shows its token once"
    );
    assert_eq!(
        named_allowed.find(&named2).len(),
        1,
        "`callers rotate` shows its token once"
    );
    assert!(
        token_leaks.is_empty(),
        "the caller token leaked ({} hits):\n{}",
        token_leaks.len(),
        token_leaks.join("\n")
    );
    assert_eq!(
        token_allowed.find(&token).len(),
        1,
        "the first deploy shows the new token exactly once"
    );
    println!(
        "leak check: scanned {} sources ({} bytes) plus moto's state after plan, deploy and \
         teardown: 0 hits for the key, the token only in the deploy output that created it",
        ev.items.len() + token_allowed.items.len(),
        ev.bytes() + token_allowed.bytes()
    );
}

fn record(ev: &mut Evidence, name: &str, r: &Run) {
    ev.add(format!("`{name}` stdout"), r.stdout.clone());
    ev.add(format!("`{name}` stderr"), r.stderr.clone());
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The REST API front's key: the deploy that makes it shows it once (JSON and text), and no
/// other output of `plan`, `deploy` (again) or `teardown`, all with `-vv`, nor the function's
/// configuration, carries it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_api_key_is_shown_once_and_never_again() {
    let (key, _) = canary();
    let moto = MotoServer::start()
        .await
        .expect("moto server (see the message for how to install it)");
    let direct = sdk_config(&moto.endpoint_url()).await;
    let x = Xtask {
        bin: xtask_bin().await.unwrap(),
        dir: tempfile::tempdir().unwrap(),
        moto: moto.endpoint_url(),
        key,
    };
    let uploaded = stand_in_elf(x.dir.path());
    let stack = "leak-rest";
    let args = |cmd: &str, extra: &[&str]| -> Vec<String> {
        [cmd, "--stack", stack, "--api", "rest", "--bootstrap"]
            .iter()
            .map(|s| s.to_string())
            .chain([uploaded.to_str().unwrap().to_string()])
            .chain(extra.iter().map(|s| s.to_string()))
            .collect()
    };
    let mut ev = Evidence::default();
    let plan = x.run(&strs(&args("plan", &[])), &[]);
    assert_eq!(plan.code, Some(2), "{}", plan.text());
    record(&mut ev, "plan --api rest", &plan);
    let deploy = x.run(
        &strs(&args(
            "deploy",
            &["--skip-smoke-test", "--yes", "--output", "json"],
        )),
        &[],
    );
    assert_eq!(deploy.code, Some(0), "{}", deploy.text());
    let out = stdout_json(&deploy);
    let api_key = out["api_key"]
        .as_str()
        .unwrap_or_else(|| panic!("no API key on the first deploy:\n{}", deploy.text()))
        .to_string();
    assert!(
        out["rest_url"]
            .as_str()
            .is_some_and(|u| u.ends_with("/live")),
        "{out}"
    );
    let mut shown = Evidence::default();
    shown.add("`deploy --api rest` stdout", deploy.stdout.clone());
    ev.add("`deploy --api rest` stderr", deploy.stderr.clone());
    let again = x.run(&strs(&args("deploy", &["--skip-smoke-test", "--yes"])), &[]);
    assert_eq!(again.code, Some(3), "{}", again.text());
    record(&mut ev, "deploy --api rest (again)", &again);
    let plan2 = x.run(&strs(&args("plan", &["--output", "json"])), &[]);
    assert_eq!(plan2.code, Some(0), "{}", plan2.text());
    record(&mut ev, "plan --api rest (converged)", &plan2);
    // A named caller's own API key: shown once by `callers add`, its new value once by
    // `callers rotate`, never by `list`, `revoke` or anything else.
    let callers = |a: &[&str]| -> Vec<String> {
        ["--stack", stack, "callers"]
            .iter()
            .chain(a)
            .map(|s| s.to_string())
            .collect()
    };
    let added = x.run(&strs(&callers(&["add", "alice", "--output", "json"])), &[]);
    assert_eq!(added.code, Some(0), "{}", added.text());
    let alice_key = stdout_json(&added)["api_key"].as_str().unwrap().to_string();
    ev.add("`callers add` stderr", added.stderr.clone());
    let rotated = x.run(
        &strs(&callers(&["rotate", "alice", "--output", "json"])),
        &[],
    );
    assert_eq!(rotated.code, Some(0), "{}", rotated.text());
    let rotated_key = stdout_json(&rotated)["api_key"]
        .as_str()
        .unwrap()
        .to_string();
    ev.add("`callers rotate` stderr", rotated.stderr.clone());
    for (what, a) in [
        ("callers list", &["list", "--output", "json"][..]),
        ("callers list (text)", &["list"][..]),
        ("callers revoke", &["revoke", "alice"][..]),
    ] {
        let r = x.run(&strs(&callers(a)), &[]);
        assert_eq!(r.code, Some(0), "{}", r.text());
        record(&mut ev, what, &r);
    }
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let (added_out, rotated_out, deploy_out) = (
        text(&added.stdout),
        text(&rotated.stdout),
        text(&deploy.stdout),
    );
    for (key, made_by, other) in [
        (&alice_key, &added_out, &rotated_out),
        (&rotated_key, &rotated_out, &added_out),
    ] {
        assert_eq!(made_by.matches(key.as_str()).count(), 1, "{made_by}");
        assert!(!other.contains(key.as_str()) && !deploy_out.contains(key.as_str()));
    }
    let cfg = aws_sdk_lambda::Client::new(&direct)
        .get_function_configuration()
        .function_name(format!("claude-proxy-{stack}"))
        .send()
        .await
        .unwrap();
    ev.add("function configuration", format!("{cfg:?}"));
    let td = x.run(&["teardown", "--stack", stack, "--yes"], &[]);
    assert_eq!(td.code, Some(0), "{}", td.text());
    record(&mut ev, "teardown", &td);
    let leaks = ev.find(&api_key);
    assert!(
        leaks.is_empty(),
        "the API key leaked:\n{}",
        leaks.join("\n")
    );
    assert_eq!(shown.find(&api_key).len(), 1, "shown exactly once");
    for key in [&alice_key, &rotated_key] {
        let leaks = ev.find(key);
        assert!(
            leaks.is_empty(),
            "a caller's API key leaked:\n{}",
            leaks.join("\n")
        );
    }
}
