//! The alias `live`: what the Function URL, the HTTP API and the resource-based permissions
//! name, so callers only ever reach a published version. Its weights are Lambda's weighted
//! alias routing (`RoutingConfig.AdditionalVersionWeights`): `FunctionVersion` gets the
//! rest. Lambda allows one additional version, never `$LATEST`.
//!
//! Moving `live` to a new version is a release (`release.rs`): smoke test, then the
//! strategy's steps, watched, rolled back on a failed check. Every `UpdateAlias` carries the
//! `RevisionId` read just before, so two deploys cannot interleave their shifts.

use crate::aws::{ctx, Aws, OrNotFound};
use crate::change::{Change, FieldChange, Kind, Late, Output, Setting};
use crate::config::ReleaseSection;
use crate::names::ALIAS;
use crate::step::{Done, ResourceChange, SmokeTest, Step, StepContext, StepFuture};
use anyhow::Result;
use aws_sdk_lambda::types::AliasRoutingConfiguration;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

pub mod release;

/// The alias as Lambda holds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct State {
    /// The version that gets what the weights leave.
    pub version: String,
    /// Additional version → share of requests (0.0 to 1.0).
    pub weights: BTreeMap<String, f64>,
    #[serde(skip)]
    pub revision_id: Option<String>,
}

impl State {
    /// The versions it routes to.
    pub fn versions(&self) -> BTreeSet<String> {
        let mut v: BTreeSet<String> = self.weights.keys().cloned().collect();
        v.insert(self.version.clone());
        v
    }

    /// The share (percent) of requests `version` gets.
    pub fn percent_of(&self, version: &str) -> u32 {
        let extra: f64 = self.weights.values().sum();
        let p = match self.weights.get(version) {
            Some(w) => *w,
            None if self.version == version => 1.0 - extra,
            None => 0.0,
        };
        (p * 100.0).round() as u32
    }

    /// `2=90% 3=10%`, the plan's and `releases`' way of showing where requests go.
    pub fn routing(&self) -> String {
        let mut parts = vec![format!(
            "{}={}%",
            self.version,
            self.percent_of(&self.version)
        )];
        for v in self.weights.keys() {
            parts.push(format!("{v}={}%", self.percent_of(v)));
        }
        parts.join(" ")
    }
}

/// What the stack wants of `live`.
#[derive(Debug, Clone)]
pub struct Spec {
    pub function: String,
    /// The version `live` ends on (published by this apply, or an existing one).
    pub version: Late,
    pub release: ReleaseSection,
    pub smoke_test: Option<Arc<dyn SmokeTest>>,
}

pub fn alias_arn(function_arn: &str) -> String {
    format!("{function_arn}:{ALIAS}")
}

pub async fn read(aws: &Aws, function: &str) -> Result<Option<State>> {
    let Some(out) = aws
        .lambda
        .get_alias()
        .function_name(function)
        .name(ALIAS)
        .send()
        .await
        .or_not_found()
        .map_err(ctx(format!("lambda:GetAlias {function}:{ALIAS}")))?
    else {
        return Ok(None);
    };
    Ok(Some(State {
        version: out.function_version().unwrap_or_default().to_string(),
        weights: out
            .routing_config()
            .and_then(|r| r.additional_version_weights())
            .map(|w| w.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default(),
        revision_id: out.revision_id().map(str::to_string),
    }))
}

pub fn diff(spec: Option<&Spec>, actual: Option<&State>) -> Option<Change> {
    match (spec, actual) {
        (None, None) => None,
        (None, Some(_)) => Some(Change::Delete),
        (Some(s), None) => Some(Change::Create {
            settings: vec![
                Setting::new("version", s.version.planned()),
                Setting::new("routing", format!("{}=100%", s.version.planned())),
            ],
        }),
        (Some(s), Some(a)) => {
            let target = s.version.planned();
            if a.version == target && a.weights.is_empty() {
                return None;
            }
            let mut fields = Vec::new();
            if a.version != target {
                fields.push(FieldChange::new("version", &a.version, target));
            }
            let to = format!("{target}=100%");
            fields.push(FieldChange::new("routing", a.routing(), to));
            // Moving onto another version is a release; clearing weights on the version it
            // already points to is not.
            if a.version != target {
                fields.push(FieldChange::new(
                    "release",
                    "(none)",
                    format!("{}, after a smoke test", s.release.describe()),
                ));
            }
            Some(Change::Update { fields })
        }
    }
}

pub fn plan(function: &str, spec: Option<Spec>, actual: Option<&State>) -> Option<ResourceChange> {
    let change = diff(spec.as_ref(), actual)?;
    let name = format!("{function}:{ALIAS}");
    let action = match spec {
        Some(spec) => Action::Release(spec),
        None => Action::Delete(function.to_string()),
    };
    Some(ResourceChange::new(Kind::Alias, &name, change, action))
}

#[derive(Debug)]
pub enum Action {
    /// Create `live`, or move it onto the spec's version with the release's strategy.
    Release(Spec),
    Delete(String),
}

impl Step for Action {
    fn run<'a>(&'a self, cx: StepContext<'a>) -> StepFuture<'a> {
        Box::pin(async move {
            match self {
                Action::Release(spec) => {
                    let version = spec.version.resolve(cx.produced)?;
                    release::run(cx.aws, spec, &version, cx.progress).await?;
                    Done::output(Output::AliasVersion, version)
                }
                Action::Delete(function) => {
                    delete(cx.aws, function).await?;
                    Ok(Done {
                        outputs: vec![(Output::AliasVersion, None)],
                        caller_token: None,
                    })
                }
            }
        })
    }
}

pub async fn create(aws: &Aws, function: &str, version: &str) -> Result<()> {
    aws.lambda
        .create_alias()
        .function_name(function)
        .name(ALIAS)
        .function_version(version)
        .description("claude-proxy: what callers reach")
        .send()
        .await
        .map_err(ctx(format!("lambda:CreateAlias {function}:{ALIAS}")))?;
    Ok(())
}

/// Points `live` at `version`, with `extra` (another version and its share) or none, under
/// `revision_id` (Lambda refuses the update when the alias changed since it was read).
pub async fn update(
    aws: &Aws,
    function: &str,
    version: &str,
    extra: Option<(&str, f64)>,
    revision_id: Option<&str>,
) -> Result<State> {
    let weights: BTreeMap<String, f64> =
        extra.map(|(v, w)| (v.to_string(), w)).into_iter().collect();
    let routing = AliasRoutingConfiguration::builder()
        .set_additional_version_weights(Some(weights.clone().into_iter().collect()))
        .build();
    let out = aws
        .lambda
        .update_alias()
        .function_name(function)
        .name(ALIAS)
        .function_version(version)
        .routing_config(routing)
        .set_revision_id(revision_id.map(str::to_string))
        .send()
        .await
        .map_err(ctx(format!(
            "lambda:UpdateAlias {function}:{ALIAS} (to version {version}{})",
            extra
                .map(|(v, w)| format!(", {:.0}% on {v}", w * 100.0))
                .unwrap_or_default()
        )))?;
    Ok(State {
        version: version.to_string(),
        weights,
        revision_id: out.revision_id().map(str::to_string),
    })
}

pub async fn delete(aws: &Aws, function: &str) -> Result<()> {
    aws.lambda
        .delete_alias()
        .function_name(function)
        .name(ALIAS)
        .send()
        .await
        .or_not_found()
        .map_err(ctx(format!("lambda:DeleteAlias {function}:{ALIAS}")))?;
    Ok(())
}

#[cfg(test)]
mod tests;
