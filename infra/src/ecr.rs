//! The ECR repository `claude-proxy-<stack>` and the image in it (`package = "image"`).
//!
//! The repository is created with the stack's tags, scan-on-push off and mutable tags. The
//! image (built by `artifacts::oci` from the static `bootstrap`: one manifest, never an
//! index) is pushed over the registry HTTP API (`artifacts::registry`) with the credentials
//! of `GetAuthorizationToken`, to the registry its `proxyEndpoint` names, or to
//! [`Aws::ecr_registry_url`] when set (emulators: moto has no registry data plane). The
//! function references it by digest, `<repository URI>@sha256:...`.
//!
//! Nothing is pushed when the repository already lists the digest (ListImages): an
//! unchanged image is a no-op. Each push moves the `latest` tag to the new image, so the
//! previous one is left untagged: the repository's lifecycle policy ([`lifecycle_policy`])
//! keeps the newest untagged image (the previous build, to go back to) and expires the older
//! ones. Teardown deletes the repository with its images (force).

use crate::aws::{ctx, describe, Aws};
use crate::change::{Change, FieldChange, Kind, Late, Output, Setting};
use crate::config::Package;
use crate::desired::StackSpec;
use crate::names::{self, Names};
use crate::step::{Done, ResourceChange, Step, StepContext, StepFuture};
use anyhow::{bail, Context, Result};
use artifacts::registry::{Credentials, Registry};
use artifacts::Image;
use aws_sdk_ecr::types::{ImageScanningConfiguration, ImageTagMutability, Tag};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use std::collections::BTreeMap;

/// The tag each push moves to the newest image (the function uses the digest, not this).
pub const IMAGE_TAG: &str = "latest";

#[derive(Debug, Clone)]
pub struct State {
    pub arn: String,
    /// `<registry>/<name>`, e.g. `123456789012.dkr.ecr.us-east-1.amazonaws.com/claude-proxy-dev`.
    pub uri: String,
    pub scan_on_push: bool,
    pub tags: BTreeMap<String, String>,
    /// Digests (`sha256:...`) of the images the repository holds.
    pub image_digests: Vec<String>,
    /// The lifecycle policy (`GetLifecyclePolicy`, parsed), `None` when there is none.
    pub lifecycle_policy: Option<serde_json::Value>,
}

/// The repository's lifecycle policy: untagged images beyond the newest one expire (every
/// changed build untags the one before it).
pub fn lifecycle_policy() -> serde_json::Value {
    serde_json::json!({
        "rules": [{
            "rulePriority": 1,
            "description": "Expire untagged images (older builds), keeping the newest one",
            "selection": {
                "tagStatus": "untagged",
                "countType": "imageCountMoreThan",
                "countNumber": 1
            },
            "action": {"type": "expire"}
        }]
    })
}

fn lifecycle_text(p: &Option<serde_json::Value>) -> String {
    match p {
        None => "(none)".into(),
        Some(p) if *p == lifecycle_policy() => {
            "expire untagged images beyond the newest one".into()
        }
        Some(p) => p.to_string(),
    }
}

#[derive(Debug, Clone)]
pub struct Spec {
    pub name: String,
    pub stack: String,
}

/// The repository a desired stack needs (`package = "image"`), else `None`.
pub fn spec(names: &Names, s: &StackSpec) -> Option<Spec> {
    (s.config.function.package == Package::Image).then(|| Spec {
        name: names.ecr_repository.clone(),
        stack: names.stack.clone(),
    })
}

/// The planned changes to the repository and the image in it, with what apply does for
/// each. `repository_uri` is where the image goes (known once the repository exists).
pub fn plan(
    names: &Names,
    spec: Option<Spec>,
    image: Option<&Image>,
    actual: Option<&State>,
    repository_uri: &Late,
) -> Vec<ResourceChange> {
    let mut out = Vec::new();
    let name = &names.ecr_repository;
    if let Some(change) = diff_repository(spec.as_ref(), actual) {
        let action = match (spec, actual) {
            (Some(spec), None) => Action::Create(spec),
            (Some(spec), Some(a)) => Action::Update(spec, a.clone()),
            (None, _) => Action::Delete(name.clone()),
        };
        out.push(ResourceChange::new(Kind::Repository, name, change, action));
    }
    if let Some(image) = image {
        if let Some(change) = diff_image(Some(image), actual) {
            let action = Action::Push {
                repository: name.clone(),
                repository_uri: repository_uri.clone(),
                image: image.clone(),
            };
            out.push(ResourceChange::new(
                Kind::Image,
                &format!("{name}@{}", image.digest()),
                change,
                action,
            ));
        }
    }
    out
}

/// What apply does to the repository or its image.
#[derive(Debug)]
pub enum Action {
    Create(Spec),
    Update(Spec, State),
    Delete(String),
    /// Pushes the image (images go with their repository: nothing deletes one alone).
    Push {
        repository: String,
        repository_uri: Late,
        image: Image,
    },
}

impl Step for Action {
    fn run<'a>(&'a self, cx: StepContext<'a>) -> StepFuture<'a> {
        Box::pin(async move {
            match self {
                Action::Create(spec) => {
                    let uri = create(cx.aws, spec, cx.created_at).await?;
                    return Done::output(Output::RepositoryUri, uri);
                }
                Action::Update(spec, a) => update(cx.aws, spec, a, cx.created_at).await?,
                Action::Delete(name) => delete(cx.aws, name).await?,
                Action::Push {
                    repository,
                    repository_uri,
                    image,
                } => {
                    let uri = repository_uri.resolve(cx.produced)?;
                    let image_uri = push(cx.aws, repository, &uri, image).await?;
                    return Done::output(Output::ImageUri, image_uri);
                }
            }
            Done::nothing()
        })
    }
}

/// The URI ECR gives a repository (known before it exists; replaced by the real one once
/// created).
pub fn repository_uri(account: &str, region: &str, name: &str) -> String {
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("{account}.dkr.ecr.{region}.{suffix}/{name}")
}

/// What Lambda's `ImageUri` gets: the repository URI and the manifest digest.
pub fn image_uri(repository_uri: &str, digest: &str) -> String {
    format!("{repository_uri}@{digest}")
}

fn repository_missing<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.as_service_error()
        .and_then(|s| s.code())
        .is_some_and(|c| c == "RepositoryNotFoundException")
}

pub async fn read(aws: &Aws, names: &Names) -> Result<Option<State>> {
    let name = &names.ecr_repository;
    let out = match aws
        .ecr
        .describe_repositories()
        .repository_names(name)
        .send()
        .await
    {
        Ok(o) => o,
        Err(e) if repository_missing(&e) => return Ok(None),
        Err(e) => return Err(ctx(format!("ecr:DescribeRepositories {name}"))(e)),
    };
    let Some(repo) = out
        .repositories()
        .iter()
        .find(|r| r.repository_name() == Some(name.as_str()))
    else {
        return Ok(None);
    };
    let arn = repo.repository_arn().unwrap_or_default().to_string();
    let tags = aws
        .ecr
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .map_err(ctx(format!("ecr:ListTagsForResource {name}")))?
        .tags()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    let mut image_digests = Vec::new();
    let mut pages = aws
        .ecr
        .list_images()
        .repository_name(name)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(ctx(format!("ecr:ListImages {name}")))?;
        for id in page.image_ids() {
            if let Some(d) = id.image_digest() {
                if !image_digests.iter().any(|x| x == d) {
                    image_digests.push(d.to_string());
                }
            }
        }
    }
    let lifecycle_policy = match aws
        .ecr
        .get_lifecycle_policy()
        .repository_name(name)
        .send()
        .await
    {
        Ok(o) => o
            .lifecycle_policy_text()
            .map(|t| {
                serde_json::from_str(t)
                    .with_context(|| format!("ecr:GetLifecyclePolicy {name}: not JSON: {t}"))
            })
            .transpose()?,
        Err(e)
            if e.as_service_error().and_then(|s| s.code())
                == Some("LifecyclePolicyNotFoundException") =>
        {
            None
        }
        Err(e) => return Err(ctx(format!("ecr:GetLifecyclePolicy {name}"))(e)),
    };
    Ok(Some(State {
        arn,
        lifecycle_policy,
        uri: repo.repository_uri().unwrap_or_default().to_string(),
        scan_on_push: repo
            .image_scanning_configuration()
            .is_some_and(|c| c.scan_on_push()),
        tags,
        image_digests,
    }))
}

pub fn diff_repository(desired: Option<&Spec>, actual: Option<&State>) -> Option<Change> {
    match (desired, actual) {
        (None, None) => None,
        (None, Some(_)) => Some(Change::Delete),
        (Some(_), None) => Some(Change::Create {
            settings: vec![
                Setting::new("image_tag_mutability", "MUTABLE"),
                Setting::new("scan_on_push", false),
                Setting::new(
                    "lifecycle_policy",
                    lifecycle_text(&Some(lifecycle_policy())),
                ),
            ],
        }),
        (Some(d), Some(a)) => {
            let mut fields = Vec::new();
            if a.scan_on_push {
                fields.push(FieldChange::new("scan_on_push", "true", "false"));
            }
            if a.lifecycle_policy.as_ref() != Some(&lifecycle_policy()) {
                fields.push(FieldChange::new(
                    "lifecycle_policy",
                    lifecycle_text(&a.lifecycle_policy),
                    lifecycle_text(&Some(lifecycle_policy())),
                ));
            }
            let missing = names::missing_tags(&d.stack, &a.tags);
            if !missing.is_empty() {
                fields.push(FieldChange::new("tags", "", missing.join(",")));
            }
            (!fields.is_empty()).then_some(Change::Update { fields })
        }
    }
}

/// A push when the repository does not hold the image's digest yet.
pub fn diff_image(image: Option<&Image>, actual: Option<&State>) -> Option<Change> {
    let image = image?;
    let digest = image.digest();
    if actual.is_some_and(|a| a.image_digests.iter().any(|d| d == digest)) {
        return None;
    }
    Some(Change::Create {
        settings: vec![
            Setting::new("digest", digest),
            Setting::new("architecture", image.arch.lambda_name()),
            Setting::new("manifest", &image.manifest.media_type),
            Setting::new(
                "size",
                format!(
                    "{} bytes (compressed layer and config)",
                    image.layer.bytes.len() + image.config.bytes.len()
                ),
            ),
        ],
    })
}

fn sdk_tags(stack: &str, created_at: &str, keep_created_at: bool) -> Vec<Tag> {
    let mut tags = names::tags_at_creation(stack, created_at);
    if keep_created_at {
        tags.remove(names::TAG_CREATED_AT);
    }
    tags.into_iter()
        .map(|(k, v)| {
            Tag::builder()
                .key(k)
                .value(v)
                .build()
                .expect("key and value set")
        })
        .collect()
}

/// Creates the repository; returns its URI.
pub async fn create(aws: &Aws, spec: &Spec, created_at: &str) -> Result<String> {
    let out = aws
        .ecr
        .create_repository()
        .repository_name(&spec.name)
        .image_tag_mutability(ImageTagMutability::Mutable)
        .image_scanning_configuration(
            ImageScanningConfiguration::builder()
                .scan_on_push(false)
                .build(),
        )
        .set_tags(Some(sdk_tags(&spec.stack, created_at, false)))
        .send()
        .await
        .map_err(ctx(format!("ecr:CreateRepository {}", &spec.name)))?;
    let uri = out
        .repository()
        .and_then(|r| r.repository_uri())
        .map(str::to_string)
        .with_context(|| format!("CreateRepository {} returned no URI", &spec.name))?;
    put_lifecycle_policy(aws, &spec.name).await?;
    Ok(uri)
}

async fn put_lifecycle_policy(aws: &Aws, name: &str) -> Result<()> {
    aws.ecr
        .put_lifecycle_policy()
        .repository_name(name)
        .lifecycle_policy_text(lifecycle_policy().to_string())
        .send()
        .await
        .map_err(ctx(format!("ecr:PutLifecyclePolicy {name}")))?;
    Ok(())
}

pub async fn update(aws: &Aws, spec: &Spec, actual: &State, created_at: &str) -> Result<()> {
    if actual.scan_on_push {
        aws.ecr
            .put_image_scanning_configuration()
            .repository_name(&spec.name)
            .image_scanning_configuration(
                ImageScanningConfiguration::builder()
                    .scan_on_push(false)
                    .build(),
            )
            .send()
            .await
            .map_err(ctx(format!(
                "ecr:PutImageScanningConfiguration {}",
                &spec.name
            )))?;
    }
    if actual.lifecycle_policy.as_ref() != Some(&lifecycle_policy()) {
        put_lifecycle_policy(aws, &spec.name).await?;
    }
    if !names::missing_tags(&spec.stack, &actual.tags).is_empty() {
        let keep = actual.tags.contains_key(names::TAG_CREATED_AT);
        aws.ecr
            .tag_resource()
            .resource_arn(&actual.arn)
            .set_tags(Some(sdk_tags(&spec.stack, created_at, keep)))
            .send()
            .await
            .map_err(ctx(format!("ecr:TagResource {}", &spec.name)))?;
    }
    Ok(())
}

/// Deletes the repository and every image in it (gone already is fine).
pub async fn delete(aws: &Aws, name: &str) -> Result<()> {
    match aws
        .ecr
        .delete_repository()
        .repository_name(name)
        .force(true)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if repository_missing(&e) => Ok(()),
        Err(e) => Err(ctx(format!("ecr:DeleteRepository {name}"))(e)),
    }
}

/// The registry to push to and its credentials: `GetAuthorizationToken`'s token, sent to its
/// `proxyEndpoint` (or to the override).
pub async fn registry(aws: &Aws, repository: &str) -> Result<Registry> {
    let out = aws
        .ecr
        .get_authorization_token()
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("ecr:GetAuthorizationToken: {}", describe(&e)))?;
    let data = out
        .authorization_data()
        .first()
        .context("ecr:GetAuthorizationToken returned no authorization data")?;
    let token = data
        .authorization_token()
        .context("ecr:GetAuthorizationToken returned no token")?;
    let credentials =
        Credentials::from_ecr_token(token).context("decoding the ECR authorization token")?;
    let endpoint = match &aws.ecr_registry_url {
        Some(url) => url.clone(),
        None => data
            .proxy_endpoint()
            .context("ecr:GetAuthorizationToken returned no proxyEndpoint")?
            .to_string(),
    };
    Registry::new(&endpoint, repository, Some(credentials))
        .with_context(|| format!("the ECR registry {endpoint}"))
}

/// Pushes the image (only what the registry lacks) and returns its `ImageUri` by digest.
pub async fn push(
    aws: &Aws,
    repository: &str,
    repository_uri: &str,
    image: &Image,
) -> Result<String> {
    let registry = registry(aws, repository).await?;
    let report = registry
        .push(image, IMAGE_TAG)
        .await
        .with_context(|| format!("pushing the image to the ECR repository {repository}"))?;
    if report.digest != image.digest() {
        bail!(
            "the registry stored the image as {}, expected {}",
            report.digest,
            image.digest()
        );
    }
    Ok(image_uri(repository_uri, &report.digest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use artifacts::Arch;

    #[test]
    fn uris() {
        assert_eq!(
            repository_uri("123456789012", "us-east-1", "claude-proxy-dev"),
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/claude-proxy-dev"
        );
        assert!(repository_uri("1", "cn-north-1", "r").ends_with(".amazonaws.com.cn/r"));
        assert_eq!(image_uri("h/r", "sha256:ab"), "h/r@sha256:ab");
    }

    #[test]
    fn image_pushed_only_when_missing() {
        let image = Image::from_bootstrap(b"\x7fELF", Arch::X86_64);
        assert!(matches!(
            diff_image(Some(&image), None),
            Some(Change::Create { .. })
        ));
        let mut state = State {
            arn: "arn".into(),
            uri: "u".into(),
            scan_on_push: false,
            tags: names::tags_at_creation("dev", "t"),
            image_digests: vec!["sha256:other".into()],
            lifecycle_policy: Some(lifecycle_policy()),
        };
        assert!(diff_image(Some(&image), Some(&state)).is_some());
        state.image_digests.push(image.digest().to_string());
        assert!(diff_image(Some(&image), Some(&state)).is_none());
        assert!(diff_image(None, Some(&state)).is_none());
        let spec = Spec {
            name: "claude-proxy-dev".into(),
            stack: "dev".into(),
        };
        assert!(diff_repository(Some(&spec), Some(&state)).is_none());
        assert_eq!(diff_repository(None, Some(&state)), Some(Change::Delete));
    }

    #[test]
    fn untagged_images_expire() {
        let spec = Spec {
            name: "claude-proxy-dev".into(),
            stack: "dev".into(),
        };
        let Some(Change::Create { settings }) = diff_repository(Some(&spec), None) else {
            panic!()
        };
        assert!(
            settings.iter().any(|s| s.field == "lifecycle_policy"),
            "{settings:?}"
        );
        // A repository made before the policy existed gets it; one with it has no change.
        let mut state = State {
            arn: "arn:aws:ecr:us-east-1:1:repository/claude-proxy-dev".into(),
            uri: repository_uri("1", "us-east-1", "claude-proxy-dev"),
            scan_on_push: false,
            tags: names::tags_at_creation("dev", "2026-01-01T00:00:00Z"),
            image_digests: vec![],
            lifecycle_policy: None,
        };
        let Some(Change::Update { fields }) = diff_repository(Some(&spec), Some(&state)) else {
            panic!()
        };
        assert_eq!(fields[0].field, "lifecycle_policy");
        state.lifecycle_policy = Some(lifecycle_policy());
        assert_eq!(diff_repository(Some(&spec), Some(&state)), None);
        let rule = &lifecycle_policy()["rules"][0];
        assert_eq!(rule["selection"]["tagStatus"], "untagged");
        assert_eq!(rule["action"]["type"], "expire");
    }
}
