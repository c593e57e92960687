//! The CLI as a CI pipeline uses it, against moto server: exit codes (applied / nothing to
//! do / lock held), the deploy lock (waiting, failing with the holder's name, taking over an
//! expired lock, two deploys at once), and `teardown --older-than` finding stacks by tags.

use emulators::moto::MotoServer;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

const KEY: &str = "sk-ant-test-NEVER-PRINT-pipeline-31b7";

struct Env {
    dir: tempfile::TempDir,
    endpoint: String,
    bootstrap: PathBuf,
}

#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Env {
    fn new(moto: &MotoServer) -> Env {
        let dir = tempfile::tempdir().unwrap();
        // A static x86_64 ELF header standing in for bootstrap (packaged, never run).
        let mut bytes = vec![0u8; 64];
        bytes[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
        bytes[16..18].copy_from_slice(&2u16.to_le_bytes());
        bytes[18..20].copy_from_slice(&62u16.to_le_bytes());
        bytes[20..24].copy_from_slice(&1u32.to_le_bytes());
        bytes[52..54].copy_from_slice(&64u16.to_le_bytes());
        bytes.extend_from_slice(b"pipeline test bootstrap\n");
        let bootstrap = dir.path().join("bootstrap");
        std::fs::write(&bootstrap, bytes).unwrap();
        Env {
            dir,
            endpoint: moto.endpoint_url(),
            bootstrap,
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        for (k, _) in std::env::vars() {
            if k.starts_with("AWS_")
                || k.starts_with("ANTHROPIC_")
                || k.starts_with("GITHUB_")
                || k == "CLAUDE_PROXY_STACK"
                || k == "RUST_LOG"
            {
                cmd.env_remove(k);
            }
        }
        cmd.env("CARGO_TARGET_DIR", self.dir.path().join("target"))
            .env("ANTHROPIC_API_KEY", KEY)
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", self.dir.path().join("no-aws-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                self.dir.path().join("no-aws-credentials"),
            );
        cmd
    }

    fn run(&self, args: &[&str]) -> Run {
        let r = Run::from(self.cmd(args).output().unwrap());
        assert!(
            !r.stdout.contains(KEY) && !r.stderr.contains(KEY),
            "the key leaked:\n{r}"
        );
        r
    }

    /// `deploy --stack <stack> --bootstrap <fake> --yes` plus `extra`.
    fn deploy(&self, stack: &str, extra: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = [
            "deploy",
            "--skip-smoke-test",
            "--stack",
            stack,
            "--bootstrap",
            self.bootstrap.to_str().unwrap(),
            "--yes",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    }

    fn plan(&self, stack: &str, extra: &[&str]) -> Vec<String> {
        let mut v = self.deploy(stack, extra);
        v[0] = "plan".into();
        v.retain(|a| a != "--yes" && a != "--skip-smoke-test");
        v
    }

    async fn aws(&self) -> infra::aws::Aws {
        let config = infra::tls::sdk_defaults()
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(aws_credential_types::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .load()
            .await;
        infra::aws::Aws::from_sdk_config(config).await.unwrap()
    }
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn rfc3339(t: SystemTime) -> String {
    infra::lock::rfc3339(t)
}

/// A lock held by a process on another machine, as CreateSecret would store it.
async fn foreign_lock(
    aws: &infra::aws::Aws,
    stack: &str,
    expires: SystemTime,
    created: SystemTime,
) {
    let holder = infra::lock::Holder {
        id: "foreign-holder-1".into(),
        operation: "deploy".into(),
        host: "ci-runner-7".into(),
        pid: 4242,
        pid_start: Some(1),
        ci_run_id: Some("987654".into()),
        ci_run_attempt: Some("1".into()),
        ci_url: None,
        acquired_at: rfc3339(created),
        expires_at: rfc3339(expires),
    };
    let tags = infra::names::tags_at_creation(stack, &rfc3339(created))
        .into_iter()
        .map(|(k, v)| {
            aws_sdk_secretsmanager::types::Tag::builder()
                .key(k)
                .value(v)
                .build()
        })
        .collect();
    aws.secrets
        .create_secret()
        .name(infra::lock::lock_name(stack))
        .secret_string(serde_json::to_string(&holder).unwrap())
        .set_tags(Some(tags))
        .send()
        .await
        .unwrap();
}

async fn drop_lock(aws: &infra::aws::Aws, stack: &str) {
    aws.secrets
        .delete_secret()
        .secret_id(infra::lock::lock_name(stack))
        .force_delete_without_recovery(true)
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_codes_and_the_deploy_lock() {
    // Boxed: the deploy futures are too large for a test thread's stack in debug builds.
    Box::pin(exit_codes_and_the_deploy_lock_body()).await
}

async fn exit_codes_and_the_deploy_lock_body() {
    let moto = MotoServer::start().await.unwrap();
    let env = Env::new(&moto);
    let aws = env.aws().await;
    let now = SystemTime::now();

    // Applied: 0. Nothing to do: 3. Plan after: 0.
    let r = env.run(&args(&env.deploy("pipe", &[])));
    assert_eq!(r.code, Some(0), "{r}");
    let r = env.run(&args(&env.deploy("pipe", &["--output", "json"])));
    assert_eq!(r.code, Some(3), "{r}");
    let out: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(out["changed"], false, "{r}");
    assert_eq!(env.run(&args(&env.plan("pipe", &[]))).code, Some(0));

    // A live lock held elsewhere: deploy and teardown give up after --lock-timeout with
    // exit 4, naming the holder and the expiry; nothing changes.
    let expires = now + Duration::from_secs(600);
    foreign_lock(&aws, "pipe", expires, now).await;
    let started = Instant::now();
    let r = env.run(&args(
        &env.deploy("pipe", &["--memory", "512", "--lock-timeout", "2s"]),
    ));
    assert_eq!(r.code, Some(4), "{r}");
    assert!(started.elapsed() >= Duration::from_secs(2), "{r}");
    for what in [
        "ci-runner-7",
        "4242",
        "987654",
        &rfc3339(expires),
        "--lock-timeout",
    ] {
        assert!(r.stderr.contains(what), "`{what}` missing:\n{r}");
    }
    let r = env.run(&[
        "teardown",
        "--stack",
        "pipe",
        "--yes",
        "--lock-timeout",
        "0s",
    ]);
    assert_eq!(r.code, Some(4), "{r}");
    // plan and dry runs never take the lock.
    assert_eq!(
        env.run(&args(&env.plan("pipe", &["--memory", "512"]))).code,
        Some(2)
    );
    let r = env.run(&["teardown", "--stack", "pipe", "--dry-run"]);
    assert_eq!(r.code, Some(2), "{r}");
    assert!(r.stdout.contains("ci-runner-7"), "{r}");

    // Waiting: the deploy polls the lock and goes ahead once it is released.
    let mut child =
        env.cmd(&args(
            &env.deploy("pipe", &["--memory", "512", "--lock-timeout", "60s"]),
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the deploy never said it waits:\n{}", seen.join("\n")));
        let waiting = line.contains("waiting up to");
        seen.push(line);
        if waiting {
            break;
        }
    }
    assert!(seen.iter().any(|l| l.contains("ci-runner-7")), "{seen:?}");
    drop_lock(&aws, "pipe").await;
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{}", seen.join("\n"));
    assert_eq!(
        env.run(&args(&env.plan("pipe", &["--memory", "512"]))).code,
        Some(0)
    );

    // An expired lock is taken over.
    foreign_lock(
        &aws,
        "pipe",
        now - Duration::from_secs(5),
        now - Duration::from_secs(700),
    )
    .await;
    let r = env.run(&args(&env.deploy("pipe", &["--memory", "1024"])));
    assert_eq!(r.code, Some(0), "{r}");
    assert!(
        r.stderr.contains("took over the stale deploy lock") && r.stderr.contains("expired"),
        "{r}"
    );
    assert!(infra::lock::read(&aws, "pipe").await.unwrap().is_none());

    // Two deploys of the same change at once: one applies it (0), the other waits for the
    // lock, finds nothing left to do (3); the stack converges.
    let spawn = || {
        env.cmd(&args(&env.deploy("pipe", &["--memory", "768"])))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (
        Run::from(a.wait_with_output().unwrap()),
        Run::from(b.wait_with_output().unwrap()),
    );
    let mut codes = vec![a.code, b.code];
    codes.sort();
    assert_eq!(codes, vec![Some(0), Some(3)], "{a}\n{b}");
    assert_eq!(
        env.run(&args(&env.plan("pipe", &["--memory", "768"]))).code,
        Some(0)
    );

    // Teardown: 0, then nothing to delete: 3.
    let r = env.run(&["teardown", "--stack", "pipe", "--yes"]);
    assert_eq!(r.code, Some(0), "{r}");
    let r = env.run(&["teardown", "--stack", "pipe", "--yes"]);
    assert_eq!(r.code, Some(3), "{r}");
    assert!(r.stdout.contains("nothing to delete"), "{r}");
    // --help documents the codes.
    let help = env.run(&["deploy", "--help"]);
    assert!(
        help.stdout.contains("3 nothing to do")
            && help.stdout.contains("4 the stack's deploy lock"),
        "{help}"
    );
}

/// A stack deployed `created` ago (its resources carry that created-at tag); with
/// `function_gone`, its function was deleted since, leaving the role and the rest.
async fn old_stack(aws: &infra::aws::Aws, stack: &str, created: SystemTime, function_gone: bool) {
    let desired = infra::Desired::new(
        infra::config::StackConfig::default()
            .with_overrides(&infra::config::Overrides {
                stack: Some(stack.into()),
                ..Default::default()
            })
            .unwrap(),
        Some(&infra::artifact::Artifact::from_bootstrap_bytes(b"old build").unwrap()),
        infra::SecretInput {
            anthropic_api_key: Some(infra::ApiKey::new(KEY)),
            rotate_token: false,
        },
    )
    .unwrap()
    .with_created_at(&rfc3339(created));
    let actual = infra::read_actual(aws, stack).await.unwrap();
    let plan = infra::plan(&desired, &actual);
    // Boxed: the apply future is large in debug builds.
    Box::pin(infra::apply(aws, &plan, &desired, &infra::Silent))
        .await
        .unwrap();
    if function_gone {
        aws.lambda
            .delete_function()
            .function_name(format!("claude-proxy-{stack}"))
            .send()
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn teardown_older_than_finds_old_stacks_by_their_tags() {
    // Boxed: the deploy futures are too large for a test thread's stack in debug builds.
    Box::pin(teardown_older_than_finds_old_stacks_by_their_tags_body()).await
}

async fn teardown_older_than_finds_old_stacks_by_their_tags_body() {
    let moto = MotoServer::start().await.unwrap();
    let env = Env::new(&moto);
    let aws = env.aws().await;
    let now = SystemTime::now();
    let two_days_ago = now - Duration::from_secs(48 * 3600);

    // A fresh stack, and remnants of old ones: a role whose function is gone, a lock left
    // by a killed run, and an old stack outside the prefix.
    let r = env.run(&args(&env.deploy("pr-new", &[])));
    assert_eq!(r.code, Some(0), "{r}");
    old_stack(&aws, "pr-old", two_days_ago, true).await;
    foreign_lock(
        &aws,
        "pr-gone",
        two_days_ago + Duration::from_secs(600),
        two_days_ago,
    )
    .await;
    old_stack(&aws, "main-old", two_days_ago, false).await;

    let cleanup = ["teardown", "--older-than", "24h", "--stack-prefix", "pr-"];
    let dry: Vec<&str> = cleanup
        .iter()
        .copied()
        .chain(["--dry-run", "--output", "json"])
        .collect();
    let r = env.run(&dry);
    assert_eq!(r.code, Some(2), "{r}");
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let status = |stack: &str| {
        report["stacks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["stack"] == stack)
            .map(|s| s["status"].as_str().unwrap().to_string())
    };
    assert_eq!(status("pr-old").as_deref(), Some("would-delete"), "{r}");
    assert_eq!(status("pr-gone").as_deref(), Some("would-delete"), "{r}");
    assert_eq!(status("pr-new").as_deref(), Some("kept"), "{r}");
    assert_eq!(status("main-old"), None, "outside the prefix:\n{r}");
    assert!(
        r.stdout.contains("IAM role claude-proxy-pr-old-role"),
        "{r}"
    );
    // The dry run changed nothing.
    assert!(aws
        .iam
        .get_role()
        .role_name("claude-proxy-pr-old-role")
        .send()
        .await
        .is_ok());

    // Not without --yes when nobody can confirm.
    let r = env.run(&cleanup);
    assert_eq!(r.code, Some(1), "{r}");
    assert!(r.stderr.contains("--yes"), "{r}");

    let yes: Vec<&str> = cleanup.iter().copied().chain(["--yes"]).collect();
    let r = env.run(&yes);
    assert_eq!(r.code, Some(0), "{r}");
    assert!(r.stdout.contains("deleted      pr-old"), "{r}");
    assert!(r.stdout.contains("deleted      pr-gone"), "{r}");
    assert!(r.stdout.contains("kept         pr-new"), "{r}");
    assert!(aws
        .iam
        .get_role()
        .role_name("claude-proxy-pr-old-role")
        .send()
        .await
        .is_err());
    assert!(infra::lock::read(&aws, "pr-gone").await.unwrap().is_none());
    assert!(aws
        .iam
        .get_role()
        .role_name("claude-proxy-main-old-role")
        .send()
        .await
        .is_ok());
    assert_eq!(env.run(&args(&env.plan("pr-new", &[]))).code, Some(0));

    // Again: nothing old enough left.
    let r = env.run(&yes);
    assert_eq!(r.code, Some(3), "{r}");

    // --stack makes no sense with --older-than.
    let r = env.run(&[
        "teardown",
        "--older-than",
        "24h",
        "--stack",
        "pr-new",
        "--yes",
    ]);
    assert_eq!(r.code, Some(1), "{r}");
    assert!(r.stderr.contains("--stack-prefix"), "{r}");

    // Without a prefix, every old stack goes; the fresh one stays.
    let r = env.run(&["teardown", "--older-than", "24h", "--yes"]);
    assert_eq!(r.code, Some(0), "{r}");
    assert!(aws
        .iam
        .get_role()
        .role_name("claude-proxy-main-old-role")
        .send()
        .await
        .is_err());
    let r = env.run(&["teardown", "--older-than", "1s", "--dry-run"]);
    assert_eq!(r.code, Some(2), "pr-new is older than a second:\n{r}");
}
