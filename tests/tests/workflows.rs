//! The GitHub Actions workflows hold a role that can create IAM roles and read the owner's
//! key, so they are linted like code: zizmor (pinned in `.ci/requirements.txt`), auditor
//! persona, and any finding of medium severity or above fails the test.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

fn zizmor() -> Result<PathBuf> {
    let bin = emulators::moto::venv_dir().join("bin").join("zizmor");
    if !bin.is_file() {
        bail!(
            "zizmor is not installed in {}: run `cargo xtask test --setup-only` \
             (it installs .ci/requirements.txt)",
            bin.display()
        );
    }
    Ok(bin)
}

/// Runs zizmor offline over `path` and returns its findings of medium severity or above,
/// one line each (rule, severity, file:line).
fn findings(path: &Path) -> Result<Vec<String>> {
    let out = Command::new(zizmor()?)
        .args([
            "--offline",
            "--persona=auditor",
            "--min-severity=medium",
            "--format=json",
            "--no-progress",
        ])
        .arg(path)
        .output()
        .context("running zizmor")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let parsed: serde_json::Value = serde_json::from_str(&stdout).with_context(|| {
        format!(
            "zizmor's JSON output (exit {:?}): {stdout}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    let list = parsed
        .as_array()
        .context("zizmor's JSON output is not a list")?;
    Ok(list
        .iter()
        .map(|f| {
            let location = &f["locations"][0]["symbolic"];
            format!(
                "{} ({}): {}:{}",
                f["ident"].as_str().unwrap_or("?"),
                f["determinations"]["severity"].as_str().unwrap_or("?"),
                location["key"]["Local"]["verbatim_path"]
                    .as_str()
                    .unwrap_or("?"),
                f["locations"][0]["concrete"]["location"]["start_point"]["row"]
                    .as_u64()
                    .map(|r| (r + 1).to_string())
                    .unwrap_or_default(),
            )
        })
        .collect())
}

#[test]
fn workflows_have_no_medium_or_high_findings() -> Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.github/workflows");
    let found = findings(&dir)?;
    assert!(
        found.is_empty(),
        "zizmor finds {} problem(s) in .github/workflows (run `~/.cache/claude-lambda/venv/bin/zizmor \
         --persona=auditor .github/workflows` for the details):\n{}",
        found.len(),
        found.join("\n")
    );
    Ok(())
}

/// The check can fail: the workflow shapes the issue found (an action on a moving tag,
/// job-wide write permissions, a persisted checkout token, a template expansion inside a
/// `run:` script, a repository secret outside an environment) are each reported.
#[test]
fn the_linter_reports_the_shapes_it_guards_against() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let workflows = dir.path().join(".github/workflows");
    std::fs::create_dir_all(&workflows)?;
    std::fs::write(
        workflows.join("bad.yml"),
        r#"name: bad
on:
  pull_request_target:
permissions: write-all
jobs:
  deploy:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: echo "${{ github.event.pull_request.title }}"
        env:
          KEY: ${{ secrets.ANTHROPIC_API_KEY }}
"#,
    )?;
    let found = findings(&workflows)?.join("\n");
    for rule in [
        "unpinned-uses",
        "excessive-permissions",
        "artipacked",
        "template-injection",
        "secrets-outside-env",
    ] {
        assert!(
            found.contains(rule),
            "zizmor did not report {rule}:\n{found}"
        );
    }
    Ok(())
}
