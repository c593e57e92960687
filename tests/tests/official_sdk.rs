//! The official Anthropic Python SDK, pointed at the proxy with `base_url` and the caller
//! token as its API key, works unchanged: a plain call, a streamed call, token counting,
//! and an error surfaces as the SDK's typed exception.

use anyhow::{bail, Context, Result};
use emulators::anthropic::FakeAnthropic;
use stand_ins::handler_support::{
    local_config, LocalServer, TEST_ANTHROPIC_KEY, TEST_CALLER_TOKEN,
};
use std::path::PathBuf;

fn venv_python() -> Result<PathBuf> {
    let python = emulators::moto::venv_dir().join("bin").join("python");
    let ok = std::process::Command::new(&python)
        .args(["-c", "import anthropic"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        bail!(
            "the official Anthropic Python SDK is not installed in {}: run `cargo xtask test` \
             or `cargo xtask test --setup-only` (it installs .ci/requirements.txt)",
            python.display()
        );
    }
    Ok(python)
}

const SCRIPT: &str = r#"
import sys, anthropic
client = anthropic.Anthropic(base_url=sys.argv[1], api_key=sys.argv[2], max_retries=0)
msg = client.messages.create(model="claude-haiku-4-5", max_tokens=64,
    messages=[{"role": "user", "content": "hello from the sdk"}])
print("CREATE", msg.content[0].text, msg.stop_reason, msg.usage.output_tokens > 0)
with client.messages.stream(model="claude-haiku-4-5", max_tokens=64,
        messages=[{"role": "user", "content": "stream this please"}]) as stream:
    pieces = [t for t in stream.text_stream]
    final = stream.get_final_message()
print("STREAM", len(pieces), "".join(pieces), final.stop_reason)
count = client.messages.count_tokens(model="claude-haiku-4-5",
    messages=[{"role": "user", "content": "count me"}])
print("COUNT", count.input_tokens > 0)
bad = anthropic.Anthropic(base_url=sys.argv[1], api_key="not-a-caller-token", max_retries=0)
try:
    bad.messages.create(model="claude-haiku-4-5", max_tokens=8,
        messages=[{"role": "user", "content": "x"}])
    print("AUTH accepted")
except anthropic.AuthenticationError as e:
    print("AUTH", e.status_code, e.body["error"]["type"])
"#;

#[tokio::test]
async fn the_python_sdk_works_against_the_proxy() -> Result<()> {
    let python = venv_python()?;
    let upstream = FakeAnthropic::start(TEST_ANTHROPIC_KEY).await?;
    let app = handler::App::new(local_config(&upstream.base_url())).await?;
    let server = LocalServer::start(app).await?;
    let base = server.url("");
    // The caller token goes in through the SDK's own api_key argument; it is a test token.
    let out = tokio::process::Command::new(&python)
        .arg("-c")
        .arg(SCRIPT)
        .arg(&base)
        .arg(TEST_CALLER_TOKEN)
        .output()
        .await
        .context("running the Python SDK script")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "SDK script failed:\n{stdout}\n{stderr}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[0], "CREATE Echo: hello from the sdk end_turn True",
        "{stdout}"
    );
    assert!(lines[1].starts_with("STREAM "), "{stdout}");
    let streamed: Vec<&str> = lines[1].splitn(3, ' ').collect();
    assert!(
        streamed[1].parse::<usize>()? > 1,
        "text arrived in several deltas: {stdout}"
    );
    assert_eq!(streamed[2], "Echo: stream this please end_turn", "{stdout}");
    assert_eq!(lines[2], "COUNT True", "{stdout}");
    assert_eq!(lines[3], "AUTH 401 authentication_error", "{stdout}");
    // The upstream saw the real key, never the caller token; the refused call never reached it.
    let requests = upstream.requests();
    assert_eq!(requests.len(), 3, "create, stream, count_tokens");
    for r in &requests {
        assert_eq!(
            r.header("x-api-key"),
            Some(TEST_ANTHROPIC_KEY),
            "{} {}",
            r.method,
            r.path
        );
        assert!(!String::from_utf8_lossy(&r.body).contains(TEST_CALLER_TOKEN));
    }
    Ok(())
}
