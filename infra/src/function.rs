//! The Lambda function `claude-proxy-<stack>`: `provided.al2023`, a zip holding `bootstrap`
//! (or, with `package = "layer"`, a zip without one and the stack's layer attached; or,
//! with `package = "image"`, PackageType Image and an ECR image by digest), architecture,
//! memory, timeout, non-secret environment, tags.
//!
//! Lambda cannot change a function's PackageType in place: switching between `image` and
//! `zip`/`layer` is a replacement (delete, then create), and the plan says so.
//!
//! Code is uploaded only when the zip's CodeSha256 differs. After every create/update the
//! SDK waiters (`wait_until_function_active_v2`, `wait_until_function_updated_v2`) hold the
//! next step until Lambda is ready. `CreateFunction` and `UpdateFunctionConfiguration` (both
//! name the role) are retried with backoff only on the two errors a just-created role gives
//! while IAM propagates it.

use crate::artifact::Artifact;
use crate::aws::{ctx, describe, Aws, OrNotFound};
use crate::change::{Change, FieldChange, Kind, Late, Output, Produced, Refs, Setting};
use crate::config::Package;
use crate::desired::StackSpec;
use crate::names::{self, Names};
use crate::step::{Done, ResourceChange, Step, StepContext, StepFuture};
use anyhow::{Context, Result};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{Architecture, Environment, FunctionCode, PackageType, Runtime};
use std::collections::BTreeMap;

pub use crate::artifact::RUNTIME;
pub const HANDLER: &str = "bootstrap";

mod ready;
pub use ready::{is_iam_propagation_error, retry_iam_propagation, IAM_PROPAGATION_ERRORS, WAIT};
use ready::{wait_active, wait_updated};

#[derive(Debug, Clone)]
pub struct State {
    pub arn: String,
    pub runtime: Option<String>,
    pub architecture: Option<String>,
    pub memory_mb: Option<i32>,
    pub timeout_seconds: Option<i32>,
    pub handler: Option<String>,
    pub role_arn: Option<String>,
    pub env: BTreeMap<String, String>,
    pub code_sha256: Option<String>,
    pub package_type: Option<String>,
    /// ARNs of the attached layer versions, in order.
    pub layers: Vec<String>,
    /// `Code.ImageUri` of an Image function.
    pub image_uri: Option<String>,
    pub tags: BTreeMap<String, String>,
}

impl State {
    /// The package kind this function has: `image` for PackageType Image, `layer` when a
    /// layer is attached, else `zip`.
    pub fn package_kind(&self) -> Package {
        match self.package_type.as_deref() {
            Some("Image") => Package::Image,
            _ if !self.layers.is_empty() => Package::Layer,
            _ => Package::Zip,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Spec {
    pub name: String,
    pub stack: String,
    pub architecture: &'static str,
    pub memory_mb: u32,
    pub timeout_seconds: u32,
    pub role_arn: Late,
    /// The environment as planned; `SECRET_ARN` is [`Spec::secret_arn`] once resolved.
    pub env: BTreeMap<String, String>,
    pub secret_arn: Late,
    pub package: Package,
    /// The function's zip (zip: `bootstrap`; layer: the note without one). `None` when no
    /// artifact was given (e.g. `plan` without a build): code not compared. Unused for images.
    pub code: Option<Artifact>,
    /// Layer version ARNs (`package = "layer"`: the stack's layer), empty otherwise.
    pub layers: Vec<Late>,
    /// `<repository URI>@sha256:...` for `package = "image"`; `None` when not known (plan
    /// without a build: not compared).
    pub image_uri: Option<Late>,
}

impl Spec {
    /// This spec with every reference taken from what earlier steps produced.
    pub fn resolve(&self, produced: &Produced) -> Result<Spec> {
        let known = |l: &Late| l.resolve(produced).map(Late::Known);
        let secret_arn = self.secret_arn.resolve(produced)?;
        let mut env = self.env.clone();
        env.insert(SECRET_ARN.into(), secret_arn.clone());
        Ok(Spec {
            role_arn: known(&self.role_arn)?,
            env,
            secret_arn: Late::Known(secret_arn),
            layers: self.layers.iter().map(known).collect::<Result<_>>()?,
            image_uri: self.image_uri.as_ref().map(known).transpose()?,
            ..self.clone()
        })
    }

    fn layer_arns(&self) -> Vec<String> {
        self.layers
            .iter()
            .map(|l| l.planned().to_string())
            .collect()
    }
}

/// The environment variable that names the secret.
pub const SECRET_ARN: &str = "SECRET_ARN";

/// The function a desired stack needs, given the references between resources.
pub fn spec(names: &Names, s: &StackSpec, refs: &Refs) -> Spec {
    let f = &s.config.function;
    let package = f.package;
    Spec {
        package,
        layers: match package {
            Package::Layer => vec![refs.layer_arn.clone()],
            _ => Vec::new(),
        },
        image_uri: match package {
            Package::Image => refs.image_uri.clone(),
            _ => None,
        },
        name: names.function.clone(),
        stack: names.stack.clone(),
        architecture: f.architecture.lambda_name(),
        memory_mb: f.memory_mb,
        timeout_seconds: f.timeout_seconds,
        role_arn: refs.role_arn.clone(),
        env: s.env(refs.secret_arn.planned()),
        secret_arn: refs.secret_arn.clone(),
        code: match package {
            Package::Zip => s.artifact.clone(),
            Package::Layer => Some(crate::layer::function_zip().clone()),
            Package::Image => None,
        },
    }
}

/// The planned change to the function, with what apply does for it.
pub fn plan(
    names: &Names,
    spec: Option<Spec>,
    actual: Option<&State>,
    blockers: &mut Vec<String>,
) -> Option<ResourceChange> {
    let change = diff(spec.as_ref(), actual, blockers)?;
    let action = match (spec, &change) {
        (Some(spec), Change::Replace { .. }) => Action::Replace(spec),
        (Some(spec), _) => match actual {
            Some(a) => Action::Update(spec, Box::new(a.clone())),
            None => Action::Create(spec),
        },
        (None, _) => Action::Delete(names.function.clone()),
    };
    Some(ResourceChange::new(
        Kind::Function,
        &names.function,
        change,
        action,
    ))
}

/// What apply does to the function.
#[derive(Debug)]
pub enum Action {
    Create(Spec),
    /// Delete, then create (Lambda cannot change `PackageType` in place).
    Replace(Spec),
    Update(Spec, Box<State>),
    Delete(String),
}

impl Step for Action {
    fn run<'a>(&'a self, cx: StepContext<'a>) -> StepFuture<'a> {
        Box::pin(async move {
            let on_retry = |m: &str| cx.progress.warn(m);
            match self {
                Action::Create(spec) | Action::Replace(spec) => {
                    let spec = spec.resolve(cx.produced)?;
                    if let Action::Replace(_) = self {
                        delete(cx.aws, &spec.name).await?;
                    }
                    let arn = create(cx.aws, &spec, cx.created_at, &on_retry).await?;
                    Done::output(Output::FunctionArn, arn)
                }
                Action::Update(spec, a) => {
                    let spec = spec.resolve(cx.produced)?;
                    update(cx.aws, &spec, a, cx.created_at, &on_retry).await?;
                    Done::nothing()
                }
                Action::Delete(name) => {
                    delete(cx.aws, name).await?;
                    Done::nothing()
                }
            }
        })
    }
}

pub fn function_arn(partition: &str, region: &str, account_id: &str, name: &str) -> String {
    format!("arn:{partition}:lambda:{region}:{account_id}:function:{name}")
}

pub async fn read(aws: &Aws, names: &Names) -> Result<Option<State>> {
    read_named(aws, &names.function).await
}

/// Waits until the function's last update is done (`LastUpdateStatus` `Successful`).
pub async fn wait_until_updated(aws: &Aws, function: &str) -> Result<()> {
    wait_updated(aws, function).await
}

/// [`read`] by the function's name.
pub async fn read_named(aws: &Aws, function: &str) -> Result<Option<State>> {
    let Some(out) = aws
        .lambda
        .get_function()
        .function_name(function)
        .send()
        .await
        .or_not_found()
        .map_err(ctx(format!("lambda:GetFunction {function}")))?
    else {
        return Ok(None);
    };
    let c = out
        .configuration()
        .context("GetFunction returned no configuration")?;
    Ok(Some(State {
        arn: c.function_arn().unwrap_or_default().to_string(),
        runtime: c.runtime().map(|r| r.as_str().to_string()),
        architecture: c.architectures().first().map(|a| a.as_str().to_string()),
        memory_mb: c.memory_size(),
        timeout_seconds: c.timeout(),
        handler: c.handler().map(str::to_string),
        role_arn: c.role().map(str::to_string),
        env: c
            .environment()
            .and_then(|e| e.variables())
            .map(|v| v.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
        code_sha256: c.code_sha256().map(str::to_string),
        package_type: c.package_type().map(|p| p.as_str().to_string()),
        layers: c
            .layers()
            .iter()
            .filter_map(|l| l.arn().map(str::to_string))
            .collect(),
        image_uri: out.code().and_then(|c| c.image_uri()).map(str::to_string),
        tags: out
            .tags()
            .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
    }))
}

/// Configuration fields that differ (name, from, to); code and tags are separate.
fn config_changes(d: &Spec, a: &State) -> Vec<FieldChange> {
    let mut f = Vec::new();
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "(unset)".into());
    // Image functions have no runtime or handler: the image's entry point runs.
    if d.package != Package::Image {
        if a.runtime.as_deref() != Some(RUNTIME) {
            f.push(FieldChange::new("runtime", opt(&a.runtime), RUNTIME));
        }
        if a.handler.as_deref() != Some(HANDLER) {
            f.push(FieldChange::new("handler", opt(&a.handler), HANDLER));
        }
    }
    if a.layers != d.layer_arns() {
        let show = |l: &[String]| {
            if l.is_empty() {
                "(none)".to_string()
            } else {
                l.join(",")
            }
        };
        f.push(FieldChange::new(
            "layers",
            show(&a.layers),
            show(&d.layer_arns()),
        ));
    }
    if a.memory_mb != Some(d.memory_mb as i32) {
        f.push(FieldChange::new(
            "memory_mb",
            a.memory_mb.map(|m| m.to_string()).unwrap_or_default(),
            d.memory_mb.to_string(),
        ));
    }
    if a.timeout_seconds != Some(d.timeout_seconds as i32) {
        f.push(FieldChange::new(
            "timeout_seconds",
            a.timeout_seconds.map(|m| m.to_string()).unwrap_or_default(),
            d.timeout_seconds.to_string(),
        ));
    }
    if a.role_arn.as_deref() != Some(d.role_arn.planned()) {
        f.push(FieldChange::new(
            "role",
            opt(&a.role_arn),
            d.role_arn.planned(),
        ));
    }
    for (k, v) in &d.env {
        if a.env.get(k) != Some(v) {
            f.push(FieldChange::new(
                format!("env.{k}"),
                a.env.get(k).cloned().unwrap_or_else(|| "(unset)".into()),
                v.clone(),
            ));
        }
    }
    for (k, v) in &a.env {
        if !d.env.contains_key(k) {
            f.push(FieldChange::new(format!("env.{k}"), v.clone(), "(unset)"));
        }
    }
    f
}

fn code_changes(d: &Spec, a: &State) -> Vec<FieldChange> {
    let mut f = Vec::new();
    if a.architecture.as_deref() != Some(d.architecture) {
        f.push(FieldChange::new(
            "architecture",
            a.architecture.clone().unwrap_or_default(),
            d.architecture,
        ));
    }
    if d.package == Package::Image {
        if let Some(uri) = &d.image_uri {
            if a.image_uri.as_deref() != Some(uri.planned()) {
                f.push(FieldChange::new(
                    "image_uri",
                    a.image_uri.clone().unwrap_or_default(),
                    uri.planned(),
                ));
            }
        }
    } else if let Some(code) = &d.code {
        if a.code_sha256.as_deref() != Some(code.code_sha256.as_str()) {
            f.push(FieldChange::new(
                "code_sha256",
                a.code_sha256.clone().unwrap_or_default(),
                code.code_sha256.clone(),
            ));
        }
    }
    f
}

pub fn diff(
    desired: Option<&Spec>,
    actual: Option<&State>,
    blockers: &mut Vec<String>,
) -> Option<Change> {
    match (desired, actual) {
        (None, None) => None,
        (None, Some(_)) => Some(Change::Delete),
        (Some(d), a) => {
            if let Some(a) = a {
                let wanted = d.package.package_type();
                if a.package_type.as_deref().is_some_and(|p| p != wanted) {
                    if !has_code(d) {
                        blockers.push(no_artifact(&d.name));
                    }
                    return Some(Change::Replace {
                        reason: format!(
                            "package {} -> {} (Lambda cannot change PackageType in place)",
                            a.package_kind(),
                            d.package
                        ),
                    });
                }
                let mut fields = config_changes(d, a);
                fields.extend(code_changes(d, a));
                let missing = names::missing_tags(&d.stack, &a.tags);
                if !missing.is_empty() {
                    fields.push(FieldChange::new("tags", "", missing.join(",")));
                }
                return (!fields.is_empty()).then_some(Change::Update { fields });
            }
            let mut settings = vec![Setting::new("package", d.package)];
            if d.package != Package::Image {
                settings.push(Setting::new("runtime", RUNTIME));
            }
            settings.extend([
                Setting::new("architecture", d.architecture),
                Setting::new("memory_mb", d.memory_mb),
                Setting::new("timeout_seconds", d.timeout_seconds),
            ]);
            match (d.package, &d.code, &d.image_uri) {
                (Package::Image, _, Some(uri)) => {
                    settings.push(Setting::new("image_uri", uri.planned()))
                }
                (Package::Zip | Package::Layer, Some(c), _) => {
                    settings.push(Setting::new("code_sha256", &c.code_sha256))
                }
                _ => blockers.push(no_artifact(&d.name)),
            }
            for l in &d.layers {
                settings.push(Setting::new("layer", l.planned()));
            }
            for (k, v) in &d.env {
                settings.push(Setting::new(format!("env.{k}"), v));
            }
            Some(Change::Create { settings })
        }
    }
}

fn has_code(d: &Spec) -> bool {
    match d.package {
        Package::Image => d.image_uri.is_some(),
        Package::Zip | Package::Layer => d.code.is_some(),
    }
}

fn no_artifact(name: &str) -> String {
    format!("the function {name} needs code: build it with `cargo xtask build` and pass the bootstrap artifact")
}

fn sdk_env(spec: &Spec) -> Environment {
    Environment::builder()
        .set_variables(Some(spec.env.clone().into_iter().collect()))
        .build()
}

/// Creates the function and waits until it is Active. Returns its ARN.
pub async fn create(
    aws: &Aws,
    spec: &Spec,
    created_at: &str,
    on_retry: &dyn Fn(&str),
) -> Result<String> {
    let tags = names::tags_at_creation(&spec.stack, created_at)
        .into_iter()
        .collect();
    let request = aws
        .lambda
        .create_function()
        .function_name(&spec.name)
        .role(spec.role_arn.planned())
        .architectures(Architecture::from(spec.architecture))
        .memory_size(spec.memory_mb as i32)
        .timeout(spec.timeout_seconds as i32);
    let request = if spec.package == Package::Image {
        let uri = spec
            .image_uri
            .as_ref()
            .with_context(|| no_artifact(&spec.name))?
            .planned();
        request
            .package_type(PackageType::Image)
            .code(FunctionCode::builder().image_uri(uri).build())
    } else {
        let code = spec
            .code
            .as_ref()
            .with_context(|| no_artifact(&spec.name))?;
        request
            .runtime(Runtime::from(RUNTIME))
            .handler(HANDLER)
            .package_type(PackageType::Zip)
            .code(
                FunctionCode::builder()
                    .zip_file(Blob::new(code.zip.clone()))
                    .build(),
            )
            .set_layers((!spec.layers.is_empty()).then(|| spec.layer_arns()))
    };
    let request = request
        .environment(sdk_env(spec))
        .set_tags(Some(tags))
        .description(format!(
            "Claude proxy for the claude-lambda stack {}",
            &spec.stack
        ));
    let out = retry_iam_propagation(&aws.iam_retry, on_retry, || request.clone().send())
        .await
        .map_err(|e| anyhow::anyhow!("lambda:CreateFunction {}: {}", &spec.name, describe(&e)))?;
    let arn = out.function_arn().unwrap_or_default().to_string();
    wait_active(aws, &spec.name).await?;
    Ok(arn)
}

/// Brings an existing function to the spec: configuration, then code, then tags, waiting
/// for each update to finish before the next.
/// `UpdateFunctionConfiguration` names the role too, so it is retried like `CreateFunction`
/// while a just-created role propagates (`on_retry` hears each retry).
pub async fn update(
    aws: &Aws,
    spec: &Spec,
    actual: &State,
    created_at: &str,
    on_retry: &dyn Fn(&str),
) -> Result<()> {
    if !config_changes(spec, actual).is_empty() {
        let request = aws
            .lambda
            .update_function_configuration()
            .function_name(&spec.name)
            .role(spec.role_arn.planned())
            .memory_size(spec.memory_mb as i32)
            .timeout(spec.timeout_seconds as i32)
            .environment(sdk_env(spec));
        let request = if spec.package == Package::Image {
            request
        } else {
            // An empty list detaches every layer.
            request
                .runtime(Runtime::from(RUNTIME))
                .handler(HANDLER)
                .set_layers(Some(spec.layer_arns()))
        };
        retry_iam_propagation(&aws.iam_retry, on_retry, || request.clone().send())
            .await
            .map_err(ctx(format!(
                "lambda:UpdateFunctionConfiguration {}",
                &spec.name
            )))?;
        wait_updated(aws, &spec.name).await?;
    }
    if !code_changes(spec, actual).is_empty() {
        let missing = || {
            format!(
                "changing the architecture of {} needs the code built for it: {}",
                &spec.name,
                no_artifact(&spec.name)
            )
        };
        let request = aws
            .lambda
            .update_function_code()
            .function_name(&spec.name)
            .architectures(Architecture::from(spec.architecture));
        let request = if spec.package == Package::Image {
            request.image_uri(spec.image_uri.as_ref().with_context(missing)?.planned())
        } else {
            request.zip_file(Blob::new(
                spec.code.as_ref().with_context(missing)?.zip.clone(),
            ))
        };
        request
            .send()
            .await
            .map_err(ctx(format!("lambda:UpdateFunctionCode {}", &spec.name)))?;
        wait_updated(aws, &spec.name).await?;
    }
    if !names::missing_tags(&spec.stack, &actual.tags).is_empty() {
        let tags = names::tags_to_restore(&spec.stack, created_at, &actual.tags);
        aws.lambda
            .tag_resource()
            .resource(&actual.arn)
            .set_tags(Some(tags.into_iter().collect()))
            .send()
            .await
            .map_err(ctx(format!("lambda:TagResource {}", &spec.name)))?;
    }
    Ok(())
}

pub async fn delete(aws: &Aws, name: &str) -> Result<()> {
    aws.lambda
        .delete_function()
        .function_name(name)
        .send()
        .await
        .or_not_found()
        .map_err(ctx(format!("lambda:DeleteFunction {name}")))?;
    Ok(())
}
