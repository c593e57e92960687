//! Published versions of the function (`PublishVersion`). A deploy that changes the
//! function's code or configuration publishes one; a deploy that changes nothing finds the
//! version that matches `$LATEST` (same `CodeSha256`, same configuration hash in its
//! description) and publishes nothing. Versions take no tags: they are found by the
//! function's name (`ListVersionsByFunction`).
//!
//! Each version's description records what it carries:
//! `claude-proxy release code=<CodeSha256> config=<hash> commit=<sha or ->`.
//! `PublishVersion` is sent with the `CodeSha256` that was uploaded, after the function's
//! update is `Successful`, so a version never carries other code than the plan's.
//!
//! Old versions beyond `release.keep_versions` are deleted, newest kept, never one an alias
//! uses (nor the one this deploy moves `live` to); they are deleted after the alias moved.

use crate::aws::{ctx, Aws, OrNotFound};
use crate::change::{Change, FieldChange, Kind, Late, Output, Setting};
use crate::function;
use crate::step::{Done, ResourceChange, Step, StepContext, StepFuture};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::collections::BTreeSet;

pub const DESCRIPTION_PREFIX: &str = "claude-proxy release";

/// One published version, as `ListVersionsByFunction` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct State {
    pub version: String,
    pub code_sha256: String,
    pub description: String,
    pub last_modified: String,
}

impl State {
    /// The version number (versions are "1", "2", ...).
    pub fn number(&self) -> u64 {
        self.version.parse().unwrap_or(0)
    }

    fn field(&self, key: &str) -> Option<&str> {
        self.description
            .strip_prefix(DESCRIPTION_PREFIX)?
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .filter(|v| *v != "-")
    }

    /// The configuration hash recorded when it was published.
    pub fn config_hash(&self) -> Option<&str> {
        self.field("config")
    }

    /// The commit recorded when it was published, if the deploy knew it.
    pub fn commit(&self) -> Option<&str> {
        self.field("commit")
    }
}

/// The description a version is published with.
pub fn description(code_sha256: &str, config_hash: &str, commit: Option<&str>) -> String {
    format!(
        "{DESCRIPTION_PREFIX} code={code_sha256} config={config_hash} commit={}",
        commit.unwrap_or("-")
    )
}

/// A short hash of everything about the function that is not its code: what Lambda copies
/// into a version (runtime, handler, architecture, memory, timeout, role, environment,
/// layers, package type).
pub fn config_hash(f: &function::State) -> String {
    let mut text = String::new();
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    for (k, v) in [
        ("runtime", opt(&f.runtime)),
        ("handler", opt(&f.handler)),
        ("architecture", opt(&f.architecture)),
        (
            "memory",
            f.memory_mb.map(|m| m.to_string()).unwrap_or_default(),
        ),
        (
            "timeout",
            f.timeout_seconds.map(|m| m.to_string()).unwrap_or_default(),
        ),
        ("role", opt(&f.role_arn)),
        ("package", opt(&f.package_type)),
        ("layers", f.layers.join(",")),
    ] {
        text.push_str(&format!("{k}={v}\n"));
    }
    for (k, v) in &f.env {
        text.push_str(&format!("env.{k}={v}\n"));
    }
    hex::encode(&artifacts::digest::sha256(text.as_bytes())[..8])
}

/// Every published version of the function, oldest first (`$LATEST` left out).
pub async fn read(aws: &Aws, function: &str) -> Result<Vec<State>> {
    let mut pages = aws
        .lambda
        .list_versions_by_function()
        .function_name(function)
        .into_paginator()
        .send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        let Some(page) = page
            .or_not_found()
            .map_err(ctx(format!("lambda:ListVersionsByFunction {function}")))?
        else {
            return Ok(Vec::new());
        };
        for v in page.versions() {
            let version = v.version().unwrap_or_default();
            if version == "$LATEST" || version.is_empty() {
                continue;
            }
            out.push(State {
                version: version.to_string(),
                code_sha256: v.code_sha256().unwrap_or_default().to_string(),
                description: v.description().unwrap_or_default().to_string(),
                last_modified: v.last_modified().unwrap_or_default().to_string(),
            });
        }
    }
    out.sort_by_key(State::number);
    Ok(out)
}

/// The version `live` should point to, as the plan knows it.
#[derive(Debug, Clone)]
pub enum Target {
    /// An existing version carries what `$LATEST` holds.
    Existing(String),
    /// A version is published in this apply.
    Publish,
}

impl Target {
    pub fn late(&self) -> Late {
        match self {
            Target::Existing(v) => Late::Known(v.clone()),
            Target::Publish => Late::After {
                output: Output::FunctionVersion,
                planned: "(new version)".into(),
            },
        }
    }
}

/// Which version carries `$LATEST` as it is (`function` is the state read, and
/// `function_changes` whether this apply changes its code or configuration).
pub fn target(
    function: Option<&function::State>,
    function_changes: bool,
    versions: &[State],
) -> Target {
    let Some(f) = function.filter(|_| !function_changes) else {
        return Target::Publish;
    };
    let hash = config_hash(f);
    versions
        .iter()
        .rev()
        .find(|v| {
            Some(v.code_sha256.as_str()) == f.code_sha256.as_deref()
                && v.config_hash() == Some(hash.as_str())
        })
        .map(|v| Target::Existing(v.version.clone()))
        .unwrap_or(Target::Publish)
}

/// What the plan publishes and prunes.
pub struct PlanInput<'a> {
    pub function: &'a str,
    pub stack_stays: bool,
    pub target: &'a Target,
    /// The code the function's step uploads (`CodeSha256`), when the plan knows it.
    pub code_sha256: Option<String>,
    pub commit: Option<String>,
    pub keep: u32,
    /// Versions an alias points to or routes to now.
    pub in_use: BTreeSet<String>,
}

/// The version to publish (if any) and the old ones to delete.
pub fn plan(p: PlanInput<'_>, versions: &[State]) -> Vec<ResourceChange> {
    let mut out = Vec::new();
    if !p.stack_stays {
        // Teardown: every version (the alias goes first).
        for v in versions {
            out.push(delete_change(p.function, &v.version));
        }
        return out;
    }
    if let Target::Publish = p.target {
        let mut settings = Vec::new();
        if let Some(c) = &p.code_sha256 {
            settings.push(Setting::new("code_sha256", c));
        }
        if let Some(c) = &p.commit {
            settings.push(Setting::new("commit", c));
        }
        out.push(ResourceChange::new(
            Kind::Version,
            &format!("{}:(new version)", p.function),
            Change::Create { settings },
            Action::Publish {
                function: p.function.to_string(),
                code_sha256: p.code_sha256.clone(),
                commit: p.commit.clone(),
            },
        ));
    }
    let mut protected = p.in_use.clone();
    if let Target::Existing(v) = p.target {
        protected.insert(v.clone());
    }
    // The newest `keep` versions stay, the one published now counted among them.
    let keep = p.keep as usize - usize::from(matches!(p.target, Target::Publish));
    let newest: BTreeSet<&str> = versions
        .iter()
        .rev()
        .take(keep)
        .map(|v| v.version.as_str())
        .collect();
    for v in versions {
        if !newest.contains(v.version.as_str()) && !protected.contains(&v.version) {
            out.push(delete_change(p.function, &v.version));
        }
    }
    out
}

fn delete_change(function: &str, version: &str) -> ResourceChange {
    ResourceChange::new(
        Kind::Version,
        &format!("{function}:{version}"),
        Change::Delete,
        Action::Delete {
            function: function.to_string(),
            version: version.to_string(),
        },
    )
}

/// What apply does to a version.
#[derive(Debug)]
pub enum Action {
    Publish {
        function: String,
        code_sha256: Option<String>,
        commit: Option<String>,
    },
    Delete {
        function: String,
        version: String,
    },
}

impl Step for Action {
    fn run<'a>(&'a self, cx: StepContext<'a>) -> StepFuture<'a> {
        Box::pin(async move {
            match self {
                Action::Publish {
                    function,
                    code_sha256,
                    commit,
                } => {
                    let v = publish(cx.aws, function, code_sha256.as_deref(), commit.as_deref())
                        .await?;
                    Done::output(Output::FunctionVersion, v)
                }
                Action::Delete { function, version } => {
                    delete(cx.aws, function, version).await?;
                    Done::nothing()
                }
            }
        })
    }
}

/// Publishes `$LATEST` once its last update is `Successful`, guarded by the code the plan
/// uploaded. Returns the version number.
pub async fn publish(
    aws: &Aws,
    function: &str,
    code_sha256: Option<&str>,
    commit: Option<&str>,
) -> Result<String> {
    function::wait_until_updated(aws, function).await?;
    let f = function::read_named(aws, function)
        .await?
        .with_context(|| format!("publishing a version of {function}: the function is gone"))?;
    let read_sha = f.code_sha256.clone().unwrap_or_default();
    if let Some(want) = code_sha256 {
        if want != read_sha {
            bail!("publishing a version of {function}: its code is {read_sha}, not the {want} this deploy uploaded (another deploy changed it?): run the deploy again");
        }
    }
    let out = aws
        .lambda
        .publish_version()
        .function_name(function)
        .code_sha256(&read_sha)
        .description(description(&read_sha, &config_hash(&f), commit))
        .send()
        .await
        .map_err(ctx(format!("lambda:PublishVersion {function}")))?;
    out.version()
        .map(str::to_string)
        .with_context(|| format!("lambda:PublishVersion {function}: no version in the answer"))
}

pub async fn delete(aws: &Aws, function: &str, version: &str) -> Result<()> {
    aws.lambda
        .delete_function()
        .function_name(function)
        .qualifier(version)
        .send()
        .await
        .or_not_found()
        .map_err(ctx(format!("lambda:DeleteFunction {function}:{version}")))?;
    Ok(())
}

/// A field change naming versions (for the alias's diff).
pub fn version_change(from: &str, to: &Late) -> FieldChange {
    FieldChange::new("version", from, to.planned())
}

#[cfg(test)]
mod tests;
