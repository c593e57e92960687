//! The layer `claude-proxy-<stack>-bootstrap` (`package = "layer"`): the handler's
//! `bootstrap` at the root of the layer zip, so Lambda extracts it to `/opt/bootstrap`.
//!
//! The function's own zip then holds no `bootstrap` (only a note saying where the runtime
//! is): for a custom runtime Lambda runs `bootstrap` from the deployment package when there
//! is one, and otherwise looks for it in the function's layers (`/opt/bootstrap`). The zip
//! cannot be empty (Lambda refuses an empty deployment package), hence the note.
//!
//! Layers take no tags, so the layer is found by its deterministic name. A version is
//! published only when the bytes changed: the newest version's `CodeSha256`
//! (GetLayerVersion; ListLayerVersions does not carry it) is compared with the zip's, as are
//! its compatible architectures and runtimes. Versions other than the one the function uses
//! are deleted, and teardown (or a switch to another package kind) deletes every version.

use crate::artifact::{code_sha256, Artifact};
use crate::aws::{ctx, Aws, OrNotFound};
use crate::change::{Change, Kind, Output, Setting};
use crate::config::Package;
use crate::desired::StackSpec;
use crate::names::Names;
use crate::step::{Done, ResourceChange, Step, StepContext, StepFuture};
use anyhow::{Context, Result};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{Architecture, LayerVersionContentInput, Runtime};
use std::io::Write;
use std::sync::LazyLock;

/// The only file of the function's own zip when the runtime comes from the layer.
pub const NOTE_FILE: &str = "RUNTIME-IN-LAYER.txt";
const NOTE: &str = "This function's runtime is /opt/bootstrap, from the layer attached to it \
(claude-lambda-toolkit, package = \"layer\"). There is deliberately no bootstrap here: \
Lambda runs the layer's when the deployment package has none.\n";

/// The function's own zip for `package = "layer"` (same bytes every time).
pub fn function_zip() -> &'static Artifact {
    static ZIP: LazyLock<Artifact> = LazyLock::new(|| {
        let mut cursor = std::io::Cursor::new(Vec::new());
        {
            let mut zip = zip::ZipWriter::new(&mut cursor);
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .unix_permissions(0o644)
                .last_modified_time(zip::DateTime::default());
            zip.start_file(NOTE_FILE, options)
                .expect("writing to memory");
            zip.write_all(NOTE.as_bytes()).expect("writing to memory");
            zip.finish().expect("writing to memory");
        }
        let zip = cursor.into_inner();
        Artifact {
            code_sha256: code_sha256(&zip),
            zip,
        }
    });
    &ZIP
}

/// One published version of the stack's layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub version: i64,
    /// `arn:aws:lambda:<region>:<account>:layer:<name>:<version>`.
    pub arn: String,
    /// Only read for the newest version (the one compared).
    pub code_sha256: Option<String>,
    pub compatible_architectures: Vec<String>,
    pub compatible_runtimes: Vec<String>,
}

/// What the layer should hold.
#[derive(Debug, Clone)]
pub struct Spec {
    pub name: String,
    pub stack: String,
    pub architecture: &'static str,
    pub runtime: &'static str,
    /// The zip with `bootstrap` at its root; `None` when planning without a build (the
    /// content is then not compared).
    pub content: Option<Artifact>,
}

/// The layer a desired stack needs (`package = "layer"`), else `None`.
pub fn spec(names: &Names, s: &StackSpec) -> Option<Spec> {
    (s.config.function.package == Package::Layer).then(|| Spec {
        name: names.layer.clone(),
        stack: names.stack.clone(),
        architecture: s.config.function.architecture.lambda_name(),
        runtime: crate::artifact::RUNTIME,
        content: s.artifact.clone(),
    })
}

/// The planned changes to the layer's versions, with what apply does for each.
pub fn plan(
    names: &Names,
    spec: Option<&Spec>,
    versions: &[Version],
    blockers: &mut Vec<String>,
) -> Vec<ResourceChange> {
    diff(spec, &names.layer, versions, blockers)
        .into_iter()
        .map(|(name, change)| {
            let action = match (&change, spec) {
                (Change::Delete, _) | (_, None) => Action::DeleteVersion {
                    layer: names.layer.clone(),
                    version: versions
                        .iter()
                        .find(|v| version_name(&names.layer, v.version) == name)
                        .map(|v| v.version)
                        .unwrap_or_default(),
                },
                (_, Some(spec)) => Action::Publish(spec.clone()),
            };
            ResourceChange::new(Kind::Layer, &name, change, action)
        })
        .collect()
}

/// What apply does to the layer.
#[derive(Debug)]
pub enum Action {
    Publish(Spec),
    DeleteVersion { layer: String, version: i64 },
}

impl Step for Action {
    fn run<'a>(&'a self, cx: StepContext<'a>) -> StepFuture<'a> {
        Box::pin(async move {
            match self {
                Action::Publish(spec) => {
                    let arn = publish(cx.aws, spec).await?;
                    Done::output(Output::LayerVersionArn, arn)
                }
                Action::DeleteVersion { layer, version } => {
                    delete_version(cx.aws, layer, *version).await?;
                    Done::nothing()
                }
            }
        })
    }
}

/// Which version the function should use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// This existing version already holds the bytes.
    Existing(String),
    /// A new version must be published.
    Publish,
}

/// Every version of the stack's layer, newest first; the newest with its `CodeSha256`.
pub async fn read(aws: &Aws, names: &Names) -> Result<Vec<Version>> {
    let mut versions = Vec::new();
    let mut pages = aws
        .lambda
        .list_layer_versions()
        .layer_name(&names.layer)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let Some(out) = page
            .or_not_found()
            .map_err(ctx(format!("lambda:ListLayerVersions {}", names.layer)))?
        else {
            return Ok(Vec::new());
        };
        for v in out.layer_versions() {
            versions.push(Version {
                version: v.version(),
                arn: v.layer_version_arn().unwrap_or_default().to_string(),
                code_sha256: None,
                compatible_architectures: v
                    .compatible_architectures()
                    .iter()
                    .map(|a| a.as_str().to_string())
                    .collect(),
                compatible_runtimes: v
                    .compatible_runtimes()
                    .iter()
                    .map(|r| r.as_str().to_string())
                    .collect(),
            });
        }
    }
    versions.sort_by_key(|v| std::cmp::Reverse(v.version));
    if let Some(newest) = versions.first_mut() {
        // None: deleted between the two calls; the next deploy sees it gone.
        let v = aws
            .lambda
            .get_layer_version()
            .layer_name(&names.layer)
            .version_number(newest.version)
            .send()
            .await
            .or_not_found()
            .map_err(ctx(format!(
                "lambda:GetLayerVersion {}:{}",
                names.layer, newest.version
            )))?;
        newest.code_sha256 = v
            .as_ref()
            .and_then(|v| v.content())
            .and_then(|c| c.code_sha256())
            .map(str::to_string);
    }
    Ok(versions)
}

/// The version the function should use, given what exists.
pub fn target(spec: &Spec, versions: &[Version]) -> Target {
    let Some(newest) = versions.first() else {
        return Target::Publish;
    };
    let Some(content) = &spec.content else {
        // Planning without a build: keep what is there.
        return Target::Existing(newest.arn.clone());
    };
    let same_bytes = newest.code_sha256.as_deref() == Some(content.code_sha256.as_str());
    let same_arch = newest.compatible_architectures == [spec.architecture];
    let same_runtime = newest.compatible_runtimes == [spec.runtime];
    if same_bytes && same_arch && same_runtime {
        Target::Existing(newest.arn.clone())
    } else {
        Target::Publish
    }
}

/// `name:version`, how a version is named in the plan.
pub fn version_name(layer: &str, version: i64) -> String {
    format!("{layer}:{version}")
}

/// The changes: publish a version (named after the layer) and/or delete versions (named
/// `layer:version`). `None` spec: every version goes.
pub fn diff(
    spec: Option<&Spec>,
    layer: &str,
    versions: &[Version],
    blockers: &mut Vec<String>,
) -> Vec<(String, Change)> {
    let mut out = Vec::new();
    let keep = match spec {
        None => None,
        Some(s) => match target(s, versions) {
            Target::Existing(arn) => Some(arn),
            Target::Publish => {
                let mut settings = Vec::new();
                match &s.content {
                    Some(c) => {
                        settings.push(Setting::new("code_sha256", &c.code_sha256));
                        settings.push(Setting::new("content", "bootstrap (lands at /opt/bootstrap)"));
                    }
                    None => blockers.push(format!(
                        "the layer {layer} needs code: build it with `cargo xtask build` and pass the bootstrap artifact"
                    )),
                }
                settings.push(Setting::new("compatible_architectures", s.architecture));
                settings.push(Setting::new("compatible_runtimes", s.runtime));
                out.push((layer.to_string(), Change::Create { settings }));
                None
            }
        },
    };
    for v in versions {
        if keep.as_deref() != Some(v.arn.as_str()) {
            out.push((version_name(layer, v.version), Change::Delete));
        }
    }
    out
}

/// Publishes a new version; returns its ARN.
pub async fn publish(aws: &Aws, spec: &Spec) -> Result<String> {
    let stack = &spec.stack;
    let content = spec.content.as_ref().with_context(|| {
        format!(
            "the layer {} needs code: build it with `cargo xtask build`",
            &spec.name
        )
    })?;
    let out = aws
        .lambda
        .publish_layer_version()
        .layer_name(&spec.name)
        .description(format!(
            "bootstrap of the Claude proxy, claude-lambda stack {stack} (CodeSha256 {})",
            content.code_sha256
        ))
        .content(
            LayerVersionContentInput::builder()
                .zip_file(Blob::new(content.zip.clone()))
                .build(),
        )
        .compatible_architectures(Architecture::from(spec.architecture))
        .compatible_runtimes(Runtime::from(spec.runtime))
        .send()
        .await
        .map_err(ctx(format!("lambda:PublishLayerVersion {}", &spec.name)))?;
    out.layer_version_arn()
        .map(str::to_string)
        .with_context(|| format!("PublishLayerVersion {} returned no ARN", &spec.name))
}

/// Deletes one version (gone already is fine).
pub async fn delete_version(aws: &Aws, layer: &str, version: i64) -> Result<()> {
    aws.lambda
        .delete_layer_version()
        .layer_name(layer)
        .version_number(version)
        .send()
        .await
        .or_not_found()
        .map_err(ctx(format!("lambda:DeleteLayerVersion {layer}:{version}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn version(n: i64, sha: Option<&str>) -> Version {
        Version {
            version: n,
            arn: format!("arn:aws:lambda:us-east-1:123456789012:layer:l:{n}"),
            code_sha256: sha.map(str::to_string),
            compatible_architectures: vec!["x86_64".into()],
            compatible_runtimes: vec!["provided.al2023".into()],
        }
    }

    #[test]
    fn function_zip_has_no_bootstrap_and_is_stable() {
        let a = function_zip();
        let mut z = zip::ZipArchive::new(std::io::Cursor::new(&a.zip)).unwrap();
        assert_eq!(z.len(), 1);
        assert!(z.by_name("bootstrap").is_err());
        let mut s = String::new();
        z.by_name(NOTE_FILE)
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert!(s.contains("/opt/bootstrap"));
        assert_eq!(a.code_sha256, code_sha256(&a.zip));
    }

    #[test]
    fn publishes_only_when_something_differs() {
        let content = Artifact::from_bootstrap_bytes(b"v1").unwrap();
        let spec = Spec {
            name: "l".into(),
            stack: "dev".into(),
            architecture: "x86_64",
            runtime: "provided.al2023",
            content: Some(content.clone()),
        };
        assert_eq!(target(&spec, &[]), Target::Publish);
        let same = [version(2, Some(&content.code_sha256)), version(1, None)];
        assert_eq!(target(&spec, &same), Target::Existing(same[0].arn.clone()));
        let mut blockers = Vec::new();
        let d = diff(Some(&spec), "l", &same, &mut blockers);
        assert_eq!(d, [("l:1".to_string(), Change::Delete)]);
        let other = [version(1, Some("other"))];
        assert_eq!(target(&spec, &other), Target::Publish);
        let mut arm = version(1, Some(&content.code_sha256));
        arm.compatible_architectures = vec!["arm64".into()];
        assert_eq!(target(&spec, &[arm]), Target::Publish);
        let d = diff(Some(&spec), "l", &other, &mut blockers);
        assert!(matches!(d[0].1, Change::Create { .. }));
        assert_eq!(d[1], ("l:1".to_string(), Change::Delete));
        assert!(blockers.is_empty());
        // Teardown: every version.
        let d = diff(None, "l", &same, &mut blockers);
        assert_eq!(d.len(), 2);
    }
}
