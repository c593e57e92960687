//! `cargo xtask releases` and `cargo xtask rollback`: the function's published versions,
//! what each carries, where `live` points; and putting `live` back in one `UpdateAlias`.

use crate::alias;
use crate::aws::Aws;
use crate::names::{Names, ALIAS};
use crate::version;
use anyhow::{bail, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

#[derive(Debug, Clone, Serialize)]
pub struct Live {
    pub version: String,
    /// Additional version → share of requests (0.0 to 1.0); empty when all go to `version`.
    pub weights: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Release {
    pub version: String,
    pub code_sha256: String,
    pub config_hash: Option<String>,
    /// `LastModified` of the version: when it was published.
    pub published_at: String,
    pub commit: Option<String>,
    /// The share of requests `live` sends to it now (percent).
    pub live_percent: u32,
}

/// What `cargo xtask releases` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Releases {
    pub stack: String,
    pub live: Option<Live>,
    /// Newest first.
    pub versions: Vec<Release>,
}

pub async fn read(aws: &Aws, stack: &str) -> Result<Releases> {
    crate::names::validate_stack_name(stack)?;
    let names = Names::new(stack);
    let (versions, live) = tokio::try_join!(
        version::read(aws, &names.function),
        alias::read(aws, &names.function)
    )?;
    Ok(Releases {
        stack: stack.to_string(),
        versions: versions
            .iter()
            .rev()
            .map(|v| Release {
                version: v.version.clone(),
                code_sha256: v.code_sha256.clone(),
                config_hash: v.config_hash().map(str::to_string),
                published_at: v.last_modified.clone(),
                commit: v.commit().map(str::to_string),
                live_percent: live.as_ref().map_or(0, |l| l.percent_of(&v.version)),
            })
            .collect(),
        live: live.map(|l| Live {
            version: l.version,
            weights: l.weights,
        }),
    })
}

impl fmt::Display for Releases {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.live {
            None => writeln!(
                f,
                "stack `{}`: no alias `{ALIAS}` (not deployed yet?)",
                self.stack
            )?,
            Some(l) if l.weights.is_empty() => writeln!(
                f,
                "stack `{}`: `{ALIAS}` -> version {} (100%)",
                self.stack, l.version
            )?,
            Some(l) => {
                let state = alias::State {
                    version: l.version.clone(),
                    weights: l.weights.clone(),
                    revision_id: None,
                };
                writeln!(
                    f,
                    "stack `{}`: `{ALIAS}` -> {} (a release in progress or interrupted: `cargo xtask deploy` finishes it, `cargo xtask rollback` takes it back)",
                    self.stack,
                    state.routing()
                )?
            }
        }
        if self.versions.is_empty() {
            return writeln!(f, "no published versions");
        }
        writeln!(
            f,
            "{:>7}  {:>5}  {:<44}  {:<16}  {:<28}  commit",
            "version", "live", "code_sha256", "config", "published"
        )?;
        for v in &self.versions {
            writeln!(
                f,
                "{:>7}  {:>5}  {:<44}  {:<16}  {:<28}  {}",
                v.version,
                if v.live_percent > 0 {
                    format!("{}%", v.live_percent)
                } else {
                    String::new()
                },
                v.code_sha256,
                v.config_hash.as_deref().unwrap_or("-"),
                v.published_at,
                v.commit.as_deref().unwrap_or("-")
            )?;
        }
        Ok(())
    }
}

/// What a rollback did.
#[derive(Debug, Clone, Serialize)]
pub struct Rollback {
    pub stack: String,
    /// Where `live` pointed before (e.g. `3=100%`, or `2=90% 3=10%`).
    pub from: String,
    pub to: String,
    /// False when `live` was already there (nothing was called).
    pub changed: bool,
}

impl fmt::Display for Rollback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.changed {
            writeln!(
                f,
                "stack `{}`: `{ALIAS}` rolled back from {} to version {} (100%).",
                self.stack, self.from, self.to
            )
        } else {
            writeln!(
                f,
                "stack `{}`: `{ALIAS}` is already on version {} (100%): nothing to do.",
                self.stack, self.to
            )
        }
    }
}

/// The version a rollback goes to: `to`, else the version `live` shifts from during an
/// interrupted release, else the newest version before the one `live` is on.
pub fn rollback_target(
    live: &alias::State,
    versions: &[version::State],
    to: Option<u64>,
) -> Result<String> {
    let target = match to {
        Some(n) => n.to_string(),
        None if !live.weights.is_empty() => live.version.clone(),
        None => {
            let current: u64 = live.version.parse().unwrap_or(0);
            match versions.iter().rev().find(|v| v.number() < current) {
                Some(v) => v.version.clone(),
                None => bail!(
                    "`{ALIAS}` is on version {} and no earlier version is left to roll back to (see `cargo xtask releases`)",
                    live.version
                ),
            }
        }
    };
    if !versions.iter().any(|v| v.version == target) {
        bail!("version {target} does not exist (any more): pick one `cargo xtask releases` lists");
    }
    Ok(target)
}

/// Puts `live` on the rollback target, in one `UpdateAlias` (with the `RevisionId` read).
pub async fn rollback(aws: &Aws, stack: &str, to: Option<u64>) -> Result<Rollback> {
    crate::names::validate_stack_name(stack)?;
    let names = Names::new(stack);
    let f = names.function.as_str();
    let (versions, live) = tokio::try_join!(version::read(aws, f), alias::read(aws, f))?;
    let Some(live) = live else {
        bail!("stack `{stack}` has no alias `{ALIAS}` to roll back (deploy it first)");
    };
    let target = rollback_target(&live, &versions, to)?;
    let from = live.routing();
    if live.version == target && live.weights.is_empty() {
        return Ok(Rollback {
            stack: stack.to_string(),
            from,
            to: target,
            changed: false,
        });
    }
    alias::update(aws, f, &target, None, live.revision_id.as_deref()).await?;
    Ok(Rollback {
        stack: stack.to_string(),
        from,
        to: target,
        changed: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(n: &str) -> version::State {
        version::State {
            version: n.into(),
            code_sha256: "c".into(),
            description: String::new(),
            last_modified: String::new(),
        }
    }

    fn live(version: &str, weights: &[(&str, f64)]) -> alias::State {
        alias::State {
            version: version.into(),
            weights: weights.iter().map(|(k, w)| (k.to_string(), *w)).collect(),
            revision_id: None,
        }
    }

    #[test]
    fn rollback_goes_to_the_previous_version_or_the_one_shifted_from() {
        let versions = vec![v("1"), v("3"), v("4")];
        assert_eq!(
            rollback_target(&live("4", &[]), &versions, None).unwrap(),
            "3"
        );
        assert_eq!(
            rollback_target(&live("3", &[("4", 0.1)]), &versions, None).unwrap(),
            "3"
        );
        assert_eq!(
            rollback_target(&live("4", &[]), &versions, Some(1)).unwrap(),
            "1"
        );
        assert!(rollback_target(&live("4", &[]), &versions, Some(2))
            .unwrap_err()
            .to_string()
            .contains("does not exist"));
        assert!(rollback_target(&live("1", &[]), &versions, None).is_err());
    }
}
