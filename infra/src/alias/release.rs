//! A release: moving `live` onto a new version. Before any traffic moves, the smoke test
//! (a real request through the new version's own qualified endpoint); then the strategy's
//! steps (`ReleaseSection::steps`), each held and watched (`watch`); a failed check puts
//! 100% back on the version `live` pointed to, and the deploy fails saying what failed.
//!
//! An interrupted release (a deploy killed mid-shift) leaves `live` on the old version with
//! a share on the new one; the plan shows it, and the next run resumes from that share (the
//! steps at or below it are skipped), or `rollback` takes it back.

use super::{create, read, update, Spec, State};
use crate::aws::Aws;
use crate::progress::Progress;
use anyhow::Result;
use std::fmt;

pub mod watch;

/// A release its checks stopped (the smoke test failed, or a check during the shift, which
/// then put 100% back): the new version gets no traffic; the rest of the deploy is applied.
/// Found with `anyhow::Error::downcast_ref`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseStopped {
    pub version: String,
    /// Where `live` is left: the version before (or the new one's first creation refused).
    pub live: Option<String>,
}

impl fmt::Display for ReleaseStopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.live {
            Some(live) => write!(
                f,
                "the release of version {} was stopped: `live` stays on version {live}",
                self.version
            ),
            None => write!(
                f,
                "the release of version {} was stopped: `live` was not created",
                self.version
            ),
        }
    }
}

/// Runs the release of `version` (already published) for the alias `spec` describes.
pub async fn run(aws: &Aws, spec: &Spec, version: &str, progress: &dyn Progress) -> Result<()> {
    let function = spec.function.as_str();
    let current = read(aws, function).await?;
    let Some(current) = current else {
        smoke(aws, spec, version, None, progress).await?;
        return create(aws, function, version).await;
    };
    if current.version == version {
        // Already on it: only clear what an interrupted rollback left routed elsewhere.
        if !current.weights.is_empty() {
            update(aws, function, version, None, current.revision_id.as_deref()).await?;
        }
        return Ok(());
    }
    smoke(aws, spec, version, Some(&current.version), progress).await?;
    shift(aws, spec, &current, version, progress).await
}

async fn smoke(
    aws: &Aws,
    spec: &Spec,
    version: &str,
    live: Option<&str>,
    progress: &dyn Progress,
) -> Result<()> {
    let Some(check) = &spec.smoke_test else {
        progress.warn(&format!(
            "version {version} gets traffic without a smoke test (skipped: --skip-smoke-test, or an emulator that cannot run it)"
        ));
        return Ok(());
    };
    check
        .check(aws, &spec.function, version)
        .await
        .map_err(|e| {
            e.context(format!(
                "the smoke test of version {version} failed: no traffic was moved to it (live is unchanged)"
            ))
            .context(ReleaseStopped {
                version: version.to_string(),
                live: live.map(str::to_string),
            })
        })
}

/// The strategy's steps from `current` to `version`.
async fn shift(
    aws: &Aws,
    spec: &Spec,
    current: &State,
    version: &str,
    progress: &dyn Progress,
) -> Result<()> {
    let function = spec.function.as_str();
    let from = current.version.as_str();
    let already = current.percent_of(version);
    let mut revision = current.revision_id.clone();
    for (percent, hold) in spec.release.steps() {
        if percent == 100 {
            update(aws, function, version, None, revision.as_deref()).await?;
            return Ok(());
        }
        if percent <= already {
            continue;
        }
        let now = update(
            aws,
            function,
            from,
            Some((version, f64::from(percent) / 100.0)),
            revision.as_deref(),
        )
        .await?;
        revision = now.revision_id;
        progress.warn(&format!(
            "{percent}% of requests on version {version} ({} on {from}): watching it for {hold} s",
            100 - percent
        ));
        let window = watch::Window {
            function,
            version,
            hold_seconds: hold,
            max_error_percent: spec.release.max_error_percent,
        };
        if let Err(failure) = watch::watch(aws, &window).await {
            update(aws, function, from, None, revision.as_deref()).await?;
            return Err(anyhow::anyhow!(
                "release of version {version} rolled back: {failure}; live is back on version {from} (100%), automatically"
            )
            .context(ReleaseStopped {
                version: version.to_string(),
                live: Some(from.to_string()),
            }));
        }
    }
    Ok(())
}
