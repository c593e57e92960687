//! The real `cargo xtask` binary, run as a user runs it: help, package, the plan/deploy/
//! teardown cycle against moto server, `dev --mock`, and `deploy --local`.

mod common;
use base64::Engine;
use common::handler_bootstrap;
use emulators::moto::{free_port, MotoServer};
use sha2::Digest;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A distinctive fake Anthropic key: it must never show up in any output.
const KEY: &str = "sk-ant-test-NEVER-PRINT-7f3a9c2e51d84b06";

const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;

const COMMANDS: &[&str] = &[
    "build", "package", "plan", "deploy", "releases", "rollback", "invoke", "logs", "dev",
    "teardown",
];

/// The xtask binary in a scratch directory, with no AWS or Anthropic settings inherited.
struct Env {
    dir: tempfile::TempDir,
    endpoint: Option<String>,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
            endpoint: None,
        }
    }

    fn moto(moto: &MotoServer) -> Env {
        Env {
            endpoint: Some(moto.endpoint_url()),
            ..Env::new()
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        for (k, _) in std::env::vars() {
            if k.starts_with("AWS_")
                || k.starts_with("ANTHROPIC_")
                || k == "CLAUDE_PROXY_STACK"
                || k == "RUST_LOG"
            {
                cmd.env_remove(k);
            }
        }
        cmd.env("CARGO_TARGET_DIR", self.path("target"));
        if let Some(e) = &self.endpoint {
            cmd.env("AWS_ENDPOINT_URL", e)
                .env("AWS_ACCESS_KEY_ID", "testing")
                .env("AWS_SECRET_ACCESS_KEY", "testing")
                .env("AWS_REGION", "us-east-1")
                .env("AWS_EC2_METADATA_DISABLED", "true")
                .env("AWS_CONFIG_FILE", self.path("no-aws-config"))
                .env(
                    "AWS_SHARED_CREDENTIALS_FILE",
                    self.path("no-aws-credentials"),
                );
        }
        cmd
    }

    fn run(&self, args: &[&str]) -> Run {
        Run::from(self.cmd(args).output().unwrap())
    }

    fn run_with_key(&self, args: &[&str]) -> Run {
        Run::from(
            self.cmd(args)
                .env("ANTHROPIC_API_KEY", KEY)
                .output()
                .unwrap(),
        )
    }

    fn run_stdin(&self, args: &[&str], stdin: &str) -> Run {
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        Run::from(child.wait_with_output().unwrap())
    }

    /// A small stand-in for the bootstrap binary: a static x86_64 ELF (the default
    /// architecture) whose bytes vary with `content`. It is packaged and uploaded, never run.
    fn fake_bootstrap(&self, content: &str) -> PathBuf {
        self.fake_elf("bootstrap", EM_X86_64, content)
    }

    /// A 64-bit little-endian ELF header for `machine` (no program or section headers:
    /// static, no glibc needed), then `content`.
    fn fake_elf(&self, name: &str, machine: u16, content: &str) -> PathBuf {
        let mut bytes = vec![0u8; 64];
        bytes[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
        bytes[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        bytes[18..20].copy_from_slice(&machine.to_le_bytes());
        bytes[20..24].copy_from_slice(&1u32.to_le_bytes());
        bytes[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
        bytes.extend_from_slice(content.as_bytes());
        let p = self.path(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }
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

impl Run {
    fn ok(&self) -> &Run {
        assert_eq!(self.code, Some(0), "expected success:\n{self}");
        self
    }
    fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
    fn assert_no_key(&self) {
        assert!(
            !self.all().contains(KEY),
            "the Anthropic key leaked into the output:\n{self}"
        );
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

#[test]
fn help_lists_every_command_with_a_description() {
    let env = Env::new();
    let help = env.run(&["--help"]);
    help.ok();
    for c in COMMANDS {
        let line = help
            .stdout
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{c} ")))
            .unwrap_or_else(|| panic!("`{c}` is not listed in --help:\n{help}"));
        assert!(
            line.trim().len() > c.len() + 10,
            "`{c}` has no description: {line:?}"
        );
        env.run(&[c, "--help"]).ok();
    }
    for flag in [
        "--stack",
        "--profile",
        "--region",
        "--endpoint-url",
        "--output",
        "--yes",
        "--verbose",
    ] {
        assert!(
            help.stdout.contains(flag),
            "{flag} missing from --help:\n{help}"
        );
    }
    assert!(help.stdout.contains("Exit codes"), "{help}");
    let deploy = env.run(&["deploy", "--help"]);
    for flag in [
        "--api-key-stdin",
        "--rotate-token",
        "--local",
        "--memory",
        "--concurrency",
        "--invoke-mode",
        "--url-auth",
        "--http-api",
    ] {
        assert!(
            deploy.stdout.contains(flag),
            "{flag} missing from deploy --help:\n{deploy}"
        );
    }
    assert!(
        !deploy.stdout.contains("--api-key "),
        "the key must not be accepted in argv"
    );
}

#[test]
fn bad_flags_are_errors() {
    let env = Env::new();
    let r = env.run(&["deploy", "--concurrency", "lots"]);
    assert_eq!(r.code, Some(2), "{r}");
    assert!(
        r.stderr.contains("auto") && r.stderr.contains("none"),
        "{r}"
    );
    let r = env.run(&["deploy", "--api-key", "sk-ant-x"]);
    assert_ne!(r.code, Some(0), "{r}");
    let r = env.run(&["plan", "--fallback", "openai"]);
    assert_eq!(r.code, Some(2), "{r}");
    assert!(
        r.stderr.contains("bedrock") && r.stderr.contains("none"),
        "{r}"
    );
    // The fallback must be the other provider, said before anything is read from AWS.
    let r = env.run(&["plan", "--fallback", "anthropic"]);
    assert_eq!(r.code, Some(1), "{r}");
    assert!(r.stderr.contains("provider.fallback"), "{r}");
    let r = env.run(&["deploy", "--provider", "bedrock", "--fallback", "bedrock"]);
    assert_eq!(r.code, Some(1), "{r}");
    assert!(r.stderr.contains("the other one"), "{r}");
}

fn zip_entry(zip: &Path) -> (u32, Vec<u8>, usize) {
    let file = std::fs::File::open(zip).unwrap();
    let mut archive = zip::ZipArchive::new(file).unwrap();
    let len = archive.len();
    let mut entry = archive.by_name("bootstrap").unwrap();
    let mode = entry.unix_mode().unwrap();
    let mut bytes = Vec::new();
    entry.read_to_end(&mut bytes).unwrap();
    (mode, bytes, len)
}

fn sha(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(bytes))
}

#[test]
fn package_is_deterministic_and_executable() {
    let env = Env::new();
    let bootstrap = env.fake_bootstrap("#!/bin/sh\necho pretend bootstrap\n");
    let b = bootstrap.to_str().unwrap();
    let first = env.run(&[
        "package",
        "--bootstrap",
        b,
        "--out",
        "a.zip",
        "--output",
        "json",
    ]);
    first.ok();
    // Written at another time, to another place: same bytes.
    std::thread::sleep(Duration::from_millis(1100));
    let second = env.run(&["package", "--bootstrap", b, "--out", "b.zip"]);
    second.ok();
    let a = std::fs::read(env.path("a.zip")).unwrap();
    let bz = std::fs::read(env.path("b.zip")).unwrap();
    assert_eq!(a, bz, "same bootstrap, different zip bytes");

    let json: serde_json::Value = serde_json::from_str(&first.stdout).unwrap();
    assert_eq!(json["code_sha256"], sha(&a));
    assert_eq!(json["size"], a.len());
    assert!(
        second.stdout.contains(&format!("CodeSha256:  {}", sha(&a))),
        "{second}"
    );
    assert!(second.stdout.contains("b.zip"), "{second}");

    let (mode, content, entries) = zip_entry(&env.path("a.zip"));
    assert_eq!(entries, 1, "only bootstrap in the zip");
    assert_eq!(mode & 0o777, 0o755);
    assert_eq!(content, std::fs::read(&bootstrap).unwrap());

    // Default location: <target>/lambda/<arch>/bootstrap.zip.
    env.run(&["package", "--bootstrap", b]).ok();
    assert_eq!(
        std::fs::read(env.path("target/lambda/x86_64/bootstrap.zip")).unwrap(),
        a
    );

    // A different binary gives a different CodeSha256.
    let other = env.fake_elf("other", EM_X86_64, "#!/bin/sh\necho other\n");
    let r = env.run(&[
        "package",
        "--bootstrap",
        other.to_str().unwrap(),
        "--out",
        "c.zip",
    ]);
    r.ok();
    assert_ne!(sha(&std::fs::read(env.path("c.zip")).unwrap()), sha(&a));
}

#[test]
fn package_explains_a_missing_bootstrap() {
    let env = Env::new();
    let r = env.run(&["package", "--bootstrap", "does-not-exist"]);
    assert_eq!(r.code, Some(1), "{r}");
    assert!(r.stderr.contains("cargo xtask build"), "{r}");
}

#[test]
fn package_refuses_a_bootstrap_for_another_architecture_or_runtime() {
    let env = Env::new();
    let arm = env.fake_elf("arm-bootstrap", EM_AARCH64, "arm64 code");
    let arm = arm.to_str().unwrap();
    // The default architecture is x86_64: an arm64 binary is refused before zipping.
    let r = env.run(&["package", "--bootstrap", arm, "--out", "x.zip"]);
    assert_eq!(r.code, Some(1), "{r}");
    assert!(
        r.stderr.contains("is built for aarch64 (arm64)")
            && r.stderr.contains("the function's architecture is x86_64"),
        "{r}"
    );
    assert!(!env.path("x.zip").exists(), "a refused binary was packaged");
    // The same binary for --arch arm64 is fine, on either runtime.
    for runtime in ["provided.al2023", "provided.al2"] {
        let r = env.run(&[
            "package",
            "--bootstrap",
            arm,
            "--arch",
            "aarch64",
            "--runtime",
            runtime,
            "--output",
            "json",
        ]);
        r.ok();
        let json: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(json["arch"], "arm64", "{r}");
        assert_eq!(json["runtime"], runtime, "{r}");
        assert_eq!(json["static"], true, "{r}");
    }
    // Not an ELF at all.
    let script = env.path("script");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    let r = env.run(&["package", "--bootstrap", script.to_str().unwrap()]);
    assert_eq!(r.code, Some(1), "{r}");
    assert!(r.stderr.contains("is not an ELF executable"), "{r}");
    // Unknown runtime or architecture names are flag errors naming the choices.
    let r = env.run(&["package", "--bootstrap", arm, "--runtime", "provided"]);
    assert_eq!(r.code, Some(2), "{r}");
    assert!(r.stderr.contains("provided.al2023 or provided.al2"), "{r}");
    let r = env.run(&["build", "--arch", "sparc"]);
    assert_eq!(r.code, Some(2), "{r}");
    assert!(r.stderr.contains("x86_64 or arm64"), "{r}");
}

/// On a machine with neither the arm64 Rust target, zig, cargo-zigbuild nor a cross gcc
/// (simulated: a rustc whose sysroot holds only x86_64, an empty PATH, no venv), one error
/// lists every missing tool with the exact command that installs it.
#[test]
fn build_arm64_without_the_tools_says_how_to_install_them() {
    let env = Env::new();
    let sysroot = env.path("sysroot");
    std::fs::create_dir_all(sysroot.join("lib/rustlib/x86_64-unknown-linux-gnu/lib")).unwrap();
    let rustc = env.path("fake-rustc");
    std::fs::write(&rustc, format!("#!/bin/sh\necho {}\n", sysroot.display())).unwrap();
    std::fs::set_permissions(&rustc, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let empty = env.path("empty-path");
    std::fs::create_dir_all(&empty).unwrap();
    let r = Run::from(
        env.cmd(&["build", "--arch", "arm64"])
            .env("RUSTC", &rustc)
            .env("PATH", &empty)
            .env("CARGO", env.path("no-cargo"))
            .env("CLAUDE_LAMBDA_VENV", env.path("no-venv"))
            .env_remove("CARGO_ZIGBUILD_ZIG_PATH")
            .env_remove("CARGO_ZIGBUILD_PYTHON_PATH")
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, Some(1), "{r}");
    for fix in [
        "rustup target add aarch64-unknown-linux-gnu",
        "pip install ziglang",
        "cargo install --locked cargo-zigbuild",
    ] {
        assert!(r.stderr.contains(fix), "`{fix}` missing:\n{r}");
    }
    assert!(!env.path("target/lambda").exists(), "{r}");
}

async fn moto_config(moto: &MotoServer) -> aws_config::SdkConfig {
    infra::tls::sdk_defaults()
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(moto.endpoint_url())
        .credentials_provider(aws_credential_types::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .load()
        .await
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_deploy_redeploy_teardown_against_moto() {
    let moto = MotoServer::start().await.unwrap();
    let env = Env::moto(&moto);
    let bootstrap = env.fake_bootstrap("#!/bin/sh\necho pretend bootstrap\n");
    let b = bootstrap.to_str().unwrap();
    let stack = ["--stack", "cli-test", "-vv"];
    let with = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        v.extend(stack.iter().map(|s| s.to_string()));
        v
    };

    // plan on an empty account: creates, exit 2, nothing changed.
    let plan_args = with(&["plan", "--bootstrap", b]);
    let plan = env.run_with_key(&args(&plan_args));
    plan.assert_no_key();
    assert_eq!(plan.code, Some(2), "{plan}");
    for what in [
        "+ secret claude-proxy/cli-test",
        "+ function claude-proxy-cli-test",
        "+ IAM role claude-proxy-cli-test-role",
        "+ function URL",
    ] {
        assert!(plan.stdout.contains(what), "plan lacks `{what}`:\n{plan}");
    }
    let again = env.run_with_key(&args(&plan_args));
    assert_eq!(again.code, Some(2), "plan changed something:\n{again}");

    // No key at all: the error says where a key comes from.
    let deploy_args = with(&["deploy", "--skip-smoke-test", "--bootstrap", b, "--yes"]);
    let r = env.run(&args(&deploy_args));
    r.assert_no_key();
    assert_eq!(r.code, Some(1), "{r}");
    assert!(
        r.stderr.contains("ANTHROPIC_API_KEY") && r.stderr.contains("--api-key-stdin"),
        "{r}"
    );

    // No --yes and stdin is not a terminal: refuses, naming --yes.
    let no_yes = with(&["deploy", "--skip-smoke-test", "--bootstrap", b]);
    let r = env.run_with_key(&args(&no_yes));
    r.assert_no_key();
    assert_eq!(r.code, Some(1), "{r}");
    assert!(r.stderr.contains("--yes"), "{r}");

    // --dry-run: the plan and every step the deploy would run; no confirmation needed,
    // nothing changes in the account.
    let dry = with(&["deploy", "--skip-smoke-test", "--bootstrap", b, "--dry-run"]);
    let r = env.run_with_key(&args(&dry));
    r.assert_no_key();
    assert_eq!(r.code, Some(2), "{r}");
    for what in [
        "(dry run) would create secret claude-proxy/cli-test",
        "(dry run) would create function claude-proxy-cli-test",
        "nothing was changed",
    ] {
        assert!(r.stdout.contains(what), "dry run lacks `{what}`:\n{r}");
    }
    let after = env.run_with_key(&args(&plan_args));
    assert_eq!(after.code, Some(2), "{after}");
    assert_eq!(
        after.stdout, plan.stdout,
        "the dry run changed the account:\n{after}"
    );

    // Deploy with the key on stdin, JSON outputs.
    let json_args = with(&[
        "deploy",
        "--skip-smoke-test",
        "--bootstrap",
        b,
        "--yes",
        "--api-key-stdin",
        "--output",
        "json",
    ]);
    let r = env.run_stdin(&args(&json_args), &format!("{KEY}\n"));
    r.assert_no_key();
    r.ok();
    let out: serde_json::Value = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{r}"));
    for key in [
        "stack",
        "function_url",
        "api_url",
        "function_arn",
        "role_arn",
        "secret_arn",
        "caller_token",
    ] {
        assert!(
            out.get(key).is_some(),
            "`{key}` missing from the deploy JSON:\n{r}"
        );
    }
    assert_eq!(out["stack"], "cli-test");
    let token = out["caller_token"]
        .as_str()
        .expect("a caller token on first deploy");
    assert!(token.len() >= 32, "{token}");
    assert!(
        out["function_url"].as_str().unwrap().starts_with("http"),
        "{r}"
    );

    // Second deploy: no changes, exit 3 (nothing to do), and the token is not shown again.
    let r = env.run_with_key(&args(&deploy_args));
    r.assert_no_key();
    assert_eq!(r.code, Some(3), "{r}");
    assert!(r.all().contains("no changes"), "{r}");
    assert!(
        !r.all().contains(token),
        "the caller token was shown again:\n{r}"
    );
    let r = env.run_with_key(&args(&plan_args));
    assert_eq!(r.code, Some(0), "plan after deploy should be empty:\n{r}");

    // releases: version 1, live on it (JSON for scripts); rollback has nothing before it.
    let r = env.run(&args(&with(&["releases", "--output", "json"])));
    r.ok();
    let rel: serde_json::Value = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("releases is not JSON ({e}):\n{r}"));
    assert_eq!(rel["live"]["version"], "1", "{r}");
    assert_eq!(rel["live"]["weights"], serde_json::json!({}), "{r}");
    assert_eq!(rel["versions"][0]["version"], "1", "{r}");
    assert_eq!(rel["versions"][0]["live_percent"], 100, "{r}");
    let r = env.run(&args(&with(&["releases"])));
    r.ok();
    assert!(r.stdout.contains("`live` -> version 1 (100%)"), "{r}");
    let r = env.run(&args(&with(&["rollback", "--yes"])));
    assert_eq!(r.code, Some(1), "{r}");
    assert!(r.stderr.contains("no earlier version"), "{r}");
    let r = env.run(&args(&with(&["rollback", "--to", "1", "--yes"])));
    assert_eq!(r.code, Some(3), "already there: nothing to do\n{r}");

    // logs: the function's own log group, made by the deploy.
    let r = env.run(&args(&with(&["logs", "--since", "5m"])));
    r.ok();
    assert!(r.stderr.contains("no log events"), "{r}");
    let logs = aws_sdk_cloudwatchlogs::Client::new(&moto_config(&moto).await);
    let group = "/aws/lambda/claude-proxy-cli-test";
    logs.create_log_stream()
        .log_group_name(group)
        .log_stream_name("s1")
        .send()
        .await
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let event = aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
        .timestamp(now)
        .message("{\"msg\":\"hello from the function\"}")
        .build()
        .unwrap();
    logs.put_log_events()
        .log_group_name(group)
        .log_stream_name("s1")
        .log_events(event)
        .send()
        .await
        .unwrap();
    let r = env.run(&args(&with(&["logs", "--since", "5m"])));
    r.ok();
    assert!(r.stdout.contains("hello from the function"), "{r}");

    // --rotate-token: a new token, shown once.
    let rotate = with(&[
        "deploy",
        "--skip-smoke-test",
        "--bootstrap",
        b,
        "--yes",
        "--rotate-token",
        "--output",
        "json",
    ]);
    let r = env.run_with_key(&args(&rotate));
    r.assert_no_key();
    r.ok();
    let out: serde_json::Value =
        serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}:\n{r}"));
    let new_token = out["caller_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no new token:\n{r}"));
    assert_ne!(new_token, token);

    // One setting changed: the plan shows that field.
    let mem = with(&["plan", "--bootstrap", b, "--memory", "512"]);
    let r = env.run_with_key(&args(&mem));
    assert_eq!(r.code, Some(2), "{r}");
    assert!(
        r.stdout.contains("memory") && r.stdout.contains("512"),
        "{r}"
    );

    // Teardown: without --yes refused; with --yes everything goes; again: nothing to do.
    let td = with(&["teardown"]);
    let r = env.run(&args(&td));
    assert_eq!(r.code, Some(1), "{r}");
    assert!(r.stderr.contains("--yes"), "{r}");
    let td_yes = with(&["teardown", "--yes"]);
    let r = env.run(&args(&td_yes));
    r.assert_no_key();
    r.ok();
    assert!(
        r.all().contains("claude-proxy-cli-test"),
        "teardown did not say what it deletes:\n{r}"
    );
    let r = env.run(&args(&td_yes));
    assert_eq!(r.code, Some(3), "{r}");
    assert!(r.all().contains("nothing to delete"), "{r}");
    let r = env.run(&args(&with(&["logs"])));
    assert_eq!(r.code, Some(1), "{r}");
    assert!(r.stderr.contains("cargo xtask deploy"), "{r}");
    // And the plan is back to creating everything.
    let r = env.run_with_key(&args(&plan_args));
    assert_eq!(r.code, Some(2), "{r}");
    // Only creations: no resource line is an update (`~`), replacement or deletion (`-`);
    // the notes below the changes are a bulleted list of their own.
    let changes = r.stdout.split("\nNotes:").next().unwrap_or_default();
    assert!(
        r.stdout
            .contains(" to create, 0 to update, 0 to replace, 0 to delete")
            && !changes.contains("~ ")
            && !changes.contains("- "),
        "leftovers after teardown:\n{r}"
    );
}

/// A running xtask whose stdout is read line by line.
struct Served {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Served {
    fn spawn(mut cmd: Command) -> Served {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Served {
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// Waits for a line starting with `prefix` and returns the rest.
    fn value(&mut self, prefix: &str, within: Duration) -> String {
        if let Some(v) = self.seen.iter().find_map(|l| l.strip_prefix(prefix)) {
            return v.trim().to_string();
        }
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let v = line.strip_prefix(prefix).map(|v| v.trim().to_string());
                    self.seen.push(line);
                    if let Some(v) = v {
                        return v;
                    }
                }
                Err(_) => {
                    let status = self.child.try_wait().unwrap();
                    panic!(
                        "no `{prefix}` line (exit {status:?}); stdout so far:\n{}",
                        self.seen.join("\n")
                    );
                }
            }
        }
    }

    /// Ctrl-C, then wait for a clean exit.
    fn interrupt(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-INT", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "exit after Ctrl-C: {status}");
                return;
            }
            if Instant::now() > deadline {
                self.child.kill().ok();
                panic!("did not stop within 20 s of Ctrl-C");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

async fn post_chat(url: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    let client = reqwest::Client::new();
    let mut req = client
        .post(format!("{}/chat", url.trim_end_matches('/')))
        .header("content-type", "application/json")
        .body(r#"{"message": "Hello there"}"#);
    if let Some(t) = token {
        req = req.header("x-api-key", t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.bytes().await.unwrap();
    let json = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&body)));
    (status, json)
}

#[tokio::test(flavor = "multi_thread")]
async fn dev_mock_serves_chat_with_the_printed_token() {
    let env = Env::new();
    let port = free_port().unwrap().to_string();
    let mut served = Served::spawn(env.cmd(&["dev", "--mock", "--port", &port]));
    let url = served.value("URL:", Duration::from_secs(60));
    let token = served.value("Caller token:", Duration::from_secs(5));
    assert_eq!(url, format!("http://127.0.0.1:{port}"));
    let curl = served.value("  curl ", Duration::from_secs(5));
    assert!(
        curl.contains(&token) && curl.contains(&format!("{url}/chat")),
        "curl line: {curl}"
    );

    let (status, body) = post_chat(&url, Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["reply"].as_str().is_some_and(|r| !r.is_empty()),
        "{body}"
    );
    let (status, body) = post_chat(&url, Some("wrong-token")).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["type"], "error");
    let (status, _) = post_chat(&url, None).await;
    assert_eq!(status, 401);
    served.interrupt();
}

#[tokio::test(flavor = "multi_thread")]
async fn dev_uses_the_given_caller_token() {
    let env = Env::new();
    let port = free_port().unwrap().to_string();
    let mut served = Served::spawn(env.cmd(&[
        "dev",
        "--port",
        &port,
        "--caller-token",
        "my-local-token-123",
    ]));
    let token = served.value("Caller token:", Duration::from_secs(60));
    assert_eq!(token, "my-local-token-123");
    let url = served.value("URL:", Duration::from_secs(5));
    let (status, body) = post_chat(&url, Some("my-local-token-123")).await;
    assert_eq!(status, 200, "{body}");
    served.interrupt();
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_local_serves_the_deployed_function() {
    // deploy --local starts its own moto; make sure the test fails clearly when it is missing.
    assert!(
        emulators::moto::find_moto_server().is_some(),
        "moto server is not installed: run `cargo xtask test --setup-only`"
    );
    let bootstrap = handler_bootstrap();
    let env = Env::new();
    let port = free_port().unwrap().to_string();
    let mut served = Served::spawn(env.cmd(&[
        "deploy",
        "--local",
        "--bootstrap",
        bootstrap.to_str().unwrap(),
        "--port",
        &port,
        "--stack",
        "local-test",
    ]));
    let url = served.value("URL:", Duration::from_secs(180));
    let token = served.value("Caller token:", Duration::from_secs(5));
    assert_eq!(url, format!("http://127.0.0.1:{port}/"));
    assert!(
        served
            .seen
            .iter()
            .any(|l| l.contains("+ function claude-proxy-local-test")),
        "the plan was not printed"
    );

    let (status, body) = post_chat(&url, Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["reply"].as_str().is_some_and(|r| !r.is_empty()),
        "{body}"
    );
    let (status, _) = post_chat(&url, Some("wrong")).await;
    assert_eq!(status, 401);

    // `invoke` is the smoke test: with the token from the environment, streaming...
    let r = Run::from(
        env.cmd(&["invoke", "--url", &url, "--message", "Hello from invoke"])
            .env("CLAUDE_PROXY_TOKEN", &token)
            .output()
            .unwrap(),
    );
    r.ok();
    assert!(!r.stdout.trim().is_empty(), "no answer streamed:\n{r}");
    // ...buffered through the Messages API route...
    let r = Run::from(
        env.cmd(&[
            "invoke",
            "--url",
            &url,
            "--path",
            "/v1/messages",
            "--no-stream",
        ])
        .env("CLAUDE_PROXY_TOKEN", &token)
        .output()
        .unwrap(),
    );
    r.ok();
    assert!(!r.stdout.trim().is_empty(), "no answer:\n{r}");
    // ...with the token read from the stack's secret (in moto)...
    let moto = served.value("AWS endpoint:", Duration::from_secs(5));
    let r = Run::from(
        env.cmd(&[
            "invoke",
            "--url",
            &url,
            "--stack",
            "local-test",
            "--no-stream",
        ])
        .env("AWS_ENDPOINT_URL", &moto)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap(),
    );
    r.ok();
    assert!(!r.stdout.trim().is_empty(), "no answer:\n{r}");
    // ...and a refused token is a failure with the error body.
    let r = Run::from(
        env.cmd(&["invoke", "--url", &url])
            .env("CLAUDE_PROXY_TOKEN", "not-the-token")
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, Some(1), "{r}");
    assert!(
        r.stderr.contains("401") && r.stderr.contains("authentication_error"),
        "{r}"
    );
    served.interrupt();
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_uses_the_last_package_or_a_given_zip() {
    let moto = MotoServer::start().await.unwrap();
    let env = Env::moto(&moto);
    let bootstrap = env.fake_bootstrap("#!/bin/sh\necho packaged earlier\n");

    // Nothing packaged yet: --skip-build says what to run.
    let r = env.run_with_key(&["plan", "--skip-build"]);
    assert_eq!(r.code, Some(1), "{r}");
    assert!(r.stderr.contains("cargo xtask package"), "{r}");

    let p = env.run(&[
        "package",
        "--bootstrap",
        bootstrap.to_str().unwrap(),
        "--output",
        "json",
    ]);
    p.ok();
    let packaged: serde_json::Value = serde_json::from_str(&p.stdout).unwrap();
    let sha = packaged["code_sha256"].as_str().unwrap();

    let r = env.run_with_key(&["plan", "--skip-build", "--output", "json"]);
    assert_eq!(r.code, Some(2), "{r}");
    let plan: serde_json::Value =
        serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}:\n{r}"));
    assert!(
        plan["changes"].as_array().is_some_and(|c| !c.is_empty()),
        "{r}"
    );
    assert!(
        r.stdout.contains(sha),
        "the plan does not use the last package {sha}:\n{r}"
    );

    let zip = packaged["path"].as_str().unwrap();
    let r = env.run_with_key(&["plan", "--zip", zip]);
    assert_eq!(r.code, Some(2), "{r}");
    assert!(r.stdout.contains(sha), "{r}");

    // A zip without bootstrap is refused before anything is read.
    let bad = env.path("bad.zip");
    {
        let mut w = zip::ZipWriter::new(std::fs::File::create(&bad).unwrap());
        w.start_file("handler", zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(b"x").unwrap();
        w.finish().unwrap();
    }
    let r = env.run_with_key(&["plan", "--zip", bad.to_str().unwrap()]);
    assert_eq!(r.code, Some(1), "{r}");
    assert!(r.stderr.contains("no `bootstrap`"), "{r}");
}
