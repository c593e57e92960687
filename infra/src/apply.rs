//! Apply: walks the plan, in its order, through a writer. Dry-run is enforced in the writer
//! (the step's future is never polled). Every step is idempotent, and the next run re-reads
//! the account, so a failed apply converges when run again.

use crate::aws::Aws;
use crate::desired::Desired;
use crate::plan::{self, Change, Kind, Plan, Refs, KNOWN_AFTER_APPLY};
use crate::progress::Progress;
use crate::secret::CallerToken;
use crate::{
    concurrency, ecr, function, function_url, http_api, layer, log_group, permission, role, secret,
};
use anyhow::{bail, Context, Result};
use serde::{Serialize, Serializer};
use std::fmt;
use std::future::Future;

#[derive(Debug, Clone, Copy, Default)]
pub struct ApplyOptions {
    /// Report every step, call nothing.
    pub dry_run: bool,
}

/// The writer: the only place mutating calls are started.
struct Writer<'a> {
    progress: &'a dyn Progress,
    dry_run: bool,
    done: Vec<String>,
    /// A caller token was generated in this run: if a later step fails, say how to get one.
    token_made: bool,
}

impl Writer<'_> {
    async fn run<T>(
        &mut self,
        step: String,
        fut: impl Future<Output = Result<T>>,
    ) -> Result<Option<T>> {
        if self.dry_run {
            self.progress.start(&format!("(dry run) would {step}"));
            return Ok(None);
        }
        self.progress.start(&step);
        let token_made = self.token_made;
        let out = fut
            .await
            .with_context(|| format!("failed to {step}"))
            .map_err(|e| {
                if token_made {
                    e.context(
                        "a caller token was generated before this failure and could not be shown: \
                     run the deploy again with --rotate-token to get one",
                    )
                } else {
                    e
                }
            })?;
        self.progress.finish(&step);
        self.done.push(step);
        Ok(Some(out))
    }
}

/// The worst case the stack's settings allow.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SpendBound {
    pub reserved_concurrency: Option<u32>,
    pub timeout_seconds: u32,
    pub memory_mb: u32,
    pub max_tokens_cap: u32,
    /// = reserved concurrency.
    pub max_in_flight_requests: Option<u32>,
    /// = reserved concurrency × max_tokens cap.
    pub max_output_tokens_in_flight: Option<u64>,
    /// = reserved concurrency × memory (GB) × 3600.
    pub max_lambda_gb_seconds_per_hour: Option<f64>,
    /// What the `[limits]` allowlists let callers switch on beyond output tokens, each billed
    /// or reaching out on its own (server tools, beta flags, MCP, files, containers, service
    /// tiers); not counted in the numbers above. Empty with the defaults.
    pub allowed_extras: Vec<String>,
    pub summary: String,
}

impl SpendBound {
    pub fn new(
        reserved: Option<u32>,
        timeout_seconds: u32,
        memory_mb: u32,
        max_tokens_cap: u32,
    ) -> SpendBound {
        let tokens = reserved.map(|r| r as u64 * max_tokens_cap as u64);
        let gbs = reserved.map(|r| (r as f64 * memory_mb as f64 / 1024.0 * 3600.0).round());
        let summary = match reserved {
            Some(0) => "reserved concurrency is 0: the function is stopped and costs nothing".to_string(),
            Some(r) => format!(
                "at most {r} requests in flight, each up to {timeout_seconds} s and {max_tokens_cap} output tokens: \
                 at most {} output tokens in flight and {} Lambda GB-s per hour",
                tokens.unwrap_or(0),
                gbs.unwrap_or(0.0)
            ),
            None => format!(
                "no reserved concurrency: only the account's concurrency limit caps requests in flight \
                 (each up to {timeout_seconds} s and {max_tokens_cap} output tokens)"
            ),
        };
        SpendBound {
            reserved_concurrency: reserved,
            timeout_seconds,
            memory_mb,
            max_tokens_cap,
            max_in_flight_requests: reserved,
            max_output_tokens_in_flight: tokens,
            max_lambda_gb_seconds_per_hour: gbs,
            allowed_extras: Vec::new(),
            summary,
        }
    }

    /// Adds what the allowlists let callers switch on ([`crate::config::StackConfig::allowed_extras`])
    /// to the bound and its summary.
    pub fn with_extras(mut self, extras: Vec<String>) -> SpendBound {
        if self.reserved_concurrency != Some(0) {
            if extras.is_empty() {
                self.summary.push_str(
                    "; callers cannot switch on server tools, beta flags, MCP servers, files, containers or service tiers",
                );
            } else {
                self.summary.push_str(&format!(
                    "; on top, per request, whatever these allow (billed separately, not bounded here): {}",
                    extras.join(", ")
                ));
            }
        }
        self.allowed_extras = extras;
        self
    }
}

/// What a deploy produced.
#[derive(Debug, Clone, Serialize)]
pub struct Outputs {
    pub stack: String,
    pub region: String,
    pub function_url: Option<String>,
    pub api_url: Option<String>,
    pub function_arn: String,
    pub role_arn: String,
    pub secret_arn: String,
    /// Only when one was just generated (first deploy or `--rotate-token`).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "expose_token"
    )]
    pub caller_token: Option<CallerToken>,
    /// False when the plan was empty ("no changes").
    pub changed: bool,
    /// The steps that ran.
    pub steps: Vec<String>,
    pub spend_bound: SpendBound,
}

fn expose_token<S: Serializer>(t: &Option<CallerToken>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(t.expose()),
        None => s.serialize_none(),
    }
}

impl fmt::Display for Outputs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.changed {
            writeln!(f, "stack `{}`: no changes.", self.stack)?;
        } else {
            writeln!(
                f,
                "stack `{}` deployed ({} steps).",
                self.stack,
                self.steps.len()
            )?;
        }
        let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "(not enabled)".into());
        writeln!(f, "  function URL:  {}", opt(&self.function_url))?;
        writeln!(f, "  API URL:       {}", opt(&self.api_url))?;
        writeln!(f, "  function ARN:  {}", self.function_arn)?;
        writeln!(f, "  role ARN:      {}", self.role_arn)?;
        writeln!(f, "  secret ARN:    {}", self.secret_arn)?;
        if let Some(t) = &self.caller_token {
            writeln!(f, "  caller token:  {}", t.expose())?;
            writeln!(
                f,
                "                 (shown once: store it now; send it as `Authorization: Bearer <token>`; `--rotate-token` makes a new one)"
            )?;
        }
        writeln!(f, "  spend bound:   {}", self.spend_bound.summary)?;
        Ok(())
    }
}

/// True when the plan creates or replaces the function (it then starts without a
/// reservation).
fn plan_replaces_function(plan: &Plan) -> bool {
    plan.changes.iter().any(|c| {
        c.kind == Kind::Function
            && matches!(c.change, Change::Create { .. } | Change::Replace { .. })
    })
}

/// Applies the plan. Fails before any call when the plan has blockers.
pub async fn apply(
    aws: &Aws,
    plan: &Plan,
    desired: &Desired,
    progress: &dyn Progress,
) -> Result<Outputs> {
    apply_with(aws, plan, desired, progress, ApplyOptions::default()).await
}

pub async fn apply_with(
    aws: &Aws,
    plan: &Plan,
    desired: &Desired,
    progress: &dyn Progress,
    options: ApplyOptions,
) -> Result<Outputs> {
    if plan.stack != desired.stack {
        bail!(
            "the plan is for stack `{}`, not `{}`",
            plan.stack,
            desired.stack
        );
    }
    if !plan.blockers.is_empty() {
        bail!(
            "cannot apply the plan for stack `{}`:\n  - {}",
            plan.stack,
            plan.blockers.join("\n  - ")
        );
    }
    // Boxed: the walk over every resource kind is a large future, and callers (tests, the
    // CLI) should not have to carry it on their stack.
    let (steps, outputs) = Box::pin(run(aws, plan, desired, progress, options)).await?;
    let mut outputs = outputs;
    outputs.steps = steps;
    Ok(outputs)
}

async fn run(
    aws: &Aws,
    plan: &Plan,
    desired: &Desired,
    progress: &dyn Progress,
    options: ApplyOptions,
) -> Result<(Vec<String>, Outputs)> {
    let names = &desired.names;
    let actual = &plan.actual;
    let spec = desired.spec.as_ref();
    let region = actual.region.as_str();
    let created_at = spec.map(|s| s.created_at.clone()).unwrap_or_default();
    let mut refs = Refs::resolve(names, spec, actual);
    let mut w = Writer {
        progress,
        dry_run: options.dry_run,
        done: Vec::new(),
        token_made: false,
    };
    let mut caller_token: Option<CallerToken> = None;
    let mut url = actual.function_url.as_ref().map(|u| u.url.clone());
    let mut api_endpoint = actual.http_apis.first().and_then(|a| a.endpoint.clone());
    let need = || spec.context("internal: a create/update change without a desired stack");
    // What the function ends up reserving (the plan's decision unless Lambda refuses `auto`).
    let mut reserved_after = plan.reserved_concurrency;

    for c in &plan.changes {
        let verb = match c.change {
            Change::Create { .. } => "create",
            Change::Update { .. } => "update",
            Change::Replace { .. } => "replace",
            Change::Delete => "delete",
        };
        let id = c.id.as_ref().map(|i| format!(" ({i})")).unwrap_or_default();
        let step = format!("{verb} {} {}{id}", c.kind.label(), c.name);
        match (c.kind, &c.change) {
            // Secret.
            (Kind::Secret, Change::Delete) => {
                let arn = actual
                    .secret
                    .as_ref()
                    .map(|s| s.arn.clone())
                    .unwrap_or(names.secret.clone());
                w.run(step, secret::delete(aws, &arn)).await?;
            }
            (Kind::Secret, Change::Create { .. }) => {
                let s = plan::secret_spec(names, need()?);
                let on_retry = |m: &str| progress.warn(m);
                if let Some((arn, token)) = w
                    .run(step, secret::create(aws, &s, &created_at, &on_retry))
                    .await?
                {
                    refs.secret_arn = arn;
                    caller_token = Some(token);
                    w.token_made = true;
                }
            }
            (Kind::Secret, _) => {
                let s = plan::secret_spec(names, need()?);
                let a = actual
                    .secret
                    .as_ref()
                    .context("internal: secret update without a secret")?;
                if let Some(token) = w
                    .run(step, secret::update(aws, &s, a, &created_at))
                    .await?
                    .flatten()
                {
                    caller_token = Some(token);
                    w.token_made = true;
                }
            }
            // Log group.
            (Kind::LogGroup, Change::Delete) => {
                w.run(step, log_group::delete(aws, &names.log_group))
                    .await?;
            }
            (Kind::LogGroup, Change::Create { .. }) => {
                let s = plan::log_group_spec(names, need()?);
                w.run(step, log_group::create(aws, &s, &created_at)).await?;
            }
            (Kind::LogGroup, _) => {
                let s = plan::log_group_spec(names, need()?);
                let a = actual
                    .log_group
                    .as_ref()
                    .context("internal: log group update without a log group")?;
                w.run(step, log_group::update(aws, &s, a, &created_at))
                    .await?;
            }
            // Role and its policies.
            (Kind::Role, Change::Delete) => {
                w.run(step, role::delete(aws, &names.role)).await?;
            }
            (Kind::Role, Change::Create { .. }) => {
                let s = plan::role_spec(names, need()?, &refs, actual);
                if let Some(arn) = w.run(step, role::create(aws, &s, &created_at)).await? {
                    if !arn.is_empty() {
                        refs.role_arn = arn;
                    }
                }
            }
            (Kind::Role, _) => {
                let s = plan::role_spec(names, need()?, &refs, actual);
                let a = actual
                    .role
                    .as_ref()
                    .context("internal: role update without a role")?;
                w.run(step, role::update(aws, &s, a, &created_at)).await?;
            }
            (Kind::RolePolicy, Change::Delete) => {
                w.run(
                    step,
                    role::delete_policy(aws, &names.role, role::PolicyRef::Inline, &c.name),
                )
                .await?;
            }
            (Kind::AttachedPolicy, _) => {
                w.run(
                    step,
                    role::delete_policy(aws, &names.role, role::PolicyRef::Attached, &c.name),
                )
                .await?;
            }
            (Kind::RolePolicy, _) => {
                let s = plan::role_spec(names, need()?, &refs, actual);
                if !options.dry_run && s.policy.to_string().contains(KNOWN_AFTER_APPLY) {
                    bail!(
                        "internal: the secret's ARN is unknown when writing {}",
                        names.role_policy
                    );
                }
                w.run(
                    step,
                    role::put_policy(aws, &names.role, s.policy_name, &s.policy),
                )
                .await?;
            }
            // Layer versions.
            (Kind::Layer, Change::Delete) => {
                let v = actual
                    .layer_versions
                    .iter()
                    .find(|v| layer::version_name(&names.layer, v.version) == c.name)
                    .context("internal: layer version delete without a version")?;
                w.run(
                    step,
                    Box::pin(layer::delete_version(aws, &names.layer, v.version)),
                )
                .await?;
            }
            (Kind::Layer, _) => {
                let s = plan::layer_spec(names, need()?)
                    .context("internal: layer change without package = \"layer\"")?;
                if let Some(arn) = w
                    .run(step, Box::pin(layer::publish(aws, &s, &names.stack)))
                    .await?
                {
                    refs.layer_arn = arn;
                }
            }
            // ECR repository and image.
            (Kind::Repository, Change::Delete) => {
                w.run(step, Box::pin(ecr::delete(aws, &names.ecr_repository)))
                    .await?;
            }
            (Kind::Repository, Change::Create { .. }) => {
                let s = plan::repository_spec(names, need()?)
                    .context("internal: repository change without package = \"image\"")?;
                if let Some(uri) = w
                    .run(step, Box::pin(ecr::create(aws, &s, &created_at)))
                    .await?
                {
                    if let Some(image) = need()?.image.as_ref() {
                        refs.image_uri = Some(ecr::image_uri(&uri, image.digest()));
                    }
                    refs.repository_uri = uri;
                }
            }
            (Kind::Repository, _) => {
                let s = plan::repository_spec(names, need()?)
                    .context("internal: repository change without package = \"image\"")?;
                let a = actual
                    .repository
                    .as_ref()
                    .context("internal: repository update without a repository")?;
                w.run(step, Box::pin(ecr::update(aws, &s, a, &created_at)))
                    .await?;
            }
            (Kind::Image, Change::Delete) => {
                // Images go with their repository; nothing deletes one alone.
            }
            (Kind::Image, _) => {
                let image = need()?
                    .image
                    .as_ref()
                    .context("internal: image push without an image")?;
                let repo_uri = refs.repository_uri.clone();
                if let Some(uri) = w
                    .run(
                        step,
                        // Boxed (as are the other new steps): keeps apply's future small.
                        Box::pin(ecr::push(aws, &names.ecr_repository, &repo_uri, image)),
                    )
                    .await?
                {
                    refs.image_uri = Some(uri);
                }
            }
            // Function.
            (Kind::Function, Change::Delete) => {
                w.run(step, function::delete(aws, &names.function)).await?;
            }
            (Kind::Function, Change::Create { .. }) | (Kind::Function, Change::Replace { .. }) => {
                let s = plan::function_spec(names, need()?, &refs);
                if !options.dry_run && s.layers.iter().any(|l| l == KNOWN_AFTER_APPLY) {
                    bail!(
                        "internal: the layer version is unknown when creating {}",
                        names.function
                    );
                }
                let on_retry = |m: &str| progress.warn(m);
                let replace = matches!(c.change, Change::Replace { .. });
                let fut = async {
                    if replace {
                        function::delete(aws, &names.function).await?;
                    }
                    function::create(aws, &s, &created_at, &on_retry).await
                };
                if let Some(arn) = w.run(step, fut).await? {
                    refs.function_arn = arn;
                }
            }
            (Kind::Function, _) => {
                let s = plan::function_spec(names, need()?, &refs);
                if !options.dry_run && s.layers.iter().any(|l| l == KNOWN_AFTER_APPLY) {
                    bail!(
                        "internal: the layer version is unknown when updating {}",
                        names.function
                    );
                }
                let a = actual
                    .function
                    .as_ref()
                    .context("internal: function update without a function")?;
                let on_retry = |m: &str| progress.warn(m);
                w.run(step, function::update(aws, &s, a, &created_at, &on_retry))
                    .await?;
            }
            // Reserved concurrency.
            (Kind::Concurrency, Change::Delete) => {
                w.run(step, concurrency::delete(aws, &names.function))
                    .await?;
            }
            (Kind::Concurrency, _) => {
                let reserved = plan
                    .reserved_concurrency
                    .context("internal: concurrency change without a reservation")?;
                // `auto` may go without a reservation; an explicit number may not.
                let optional =
                    need()?.config.concurrency.reserved == crate::config::ConcurrencySetting::Auto;
                if let Some(concurrency::Put::Skipped { floor, message }) = w
                    .run(
                        step,
                        concurrency::put(aws, &names.function, reserved, optional),
                    )
                    .await?
                {
                    progress.warn(&format!(
                        "Lambda refused reserving {reserved} for {} ({message}): this account keeps at least {floor} unreserved executions in {region}, so the function runs without a reservation (`auto`). Request a higher \"Concurrent executions\" quota in Service Quotas to reserve",
                        names.function
                    ));
                    reserved_after = actual
                        .concurrency
                        .filter(|_| !plan_replaces_function(plan))
                        .map(|c| c.max(0) as u32);
                }
            }
            // Function URL.
            (Kind::FunctionUrl, Change::Delete) => {
                w.run(step, function_url::delete(aws, &names.function))
                    .await?;
                url = None;
            }
            (Kind::FunctionUrl, Change::Create { .. }) => {
                let s = plan::url_spec(need()?).context("internal: URL create without a URL")?;
                if let Some(u) = w
                    .run(step, function_url::create(aws, &names.function, &s))
                    .await?
                {
                    url = Some(u);
                }
            }
            (Kind::FunctionUrl, _) => {
                let s = plan::url_spec(need()?).context("internal: URL update without a URL")?;
                w.run(step, function_url::update(aws, &names.function, &s))
                    .await?;
            }
            // HTTP API.
            (Kind::HttpApi, Change::Delete) => {
                let id = c.id.clone().context("internal: API delete without an id")?;
                w.run(step, http_api::delete(aws, &id)).await?;
                if refs.api_id.as_ref() == Some(&id) {
                    refs.api_id = None;
                    api_endpoint = None;
                }
            }
            (Kind::HttpApi, Change::Create { .. }) => {
                let s = plan::api_spec(names, need()?, &refs)
                    .context("internal: API create without an API")?;
                if let Some((id, endpoint)) =
                    w.run(step, http_api::create(aws, &s, &created_at)).await?
                {
                    refs.api_id = Some(id);
                    api_endpoint = Some(endpoint);
                }
            }
            (Kind::HttpApi, _) => {
                let s = plan::api_spec(names, need()?, &refs)
                    .context("internal: API update without an API")?;
                let a = actual
                    .http_apis
                    .iter()
                    .find(|a| Some(&a.id) == c.id.as_ref())
                    .context("internal: API update without an API")?;
                w.run(step, http_api::reconcile(aws, &s, a, &created_at))
                    .await?;
            }
            // Resource-policy statements.
            (Kind::Permission, Change::Delete) => {
                w.run(step, permission::remove(aws, &names.function, &c.name))
                    .await?;
            }
            (Kind::Permission, change) => {
                let wanted = plan::permission_specs(need()?, &refs, actual)
                    .into_iter()
                    .find(|s| s.sid == c.name)
                    .context("internal: permission change without a statement")?;
                let replace = matches!(change, Change::Replace { .. });
                let fut = async {
                    if replace {
                        permission::remove(aws, &names.function, &wanted.sid).await?;
                    }
                    permission::add(aws, &names.function, &wanted).await
                };
                w.run(step, fut).await?;
            }
        }
    }

    let spend_bound = match spec {
        Some(s) => SpendBound::new(
            reserved_after,
            s.config.function.timeout_seconds,
            s.config.function.memory_mb,
            s.config.limits.max_tokens_cap,
        )
        .with_extras(s.config.allowed_extras()),
        None => SpendBound::new(Some(0), 0, 0, 0),
    };
    let url_enabled = spec.is_some_and(|s| s.config.function_url.enabled);
    let api_enabled = spec.is_some_and(|s| s.config.http_api.enabled);
    let outputs = Outputs {
        stack: desired.stack.clone(),
        region: region.to_string(),
        function_url: url.filter(|_| url_enabled),
        api_url: api_endpoint.filter(|_| api_enabled),
        function_arn: refs.function_arn,
        role_arn: refs.role_arn,
        secret_arn: refs.secret_arn,
        caller_token,
        changed: !plan.is_empty(),
        steps: Vec::new(),
        spend_bound,
    };
    Ok((w.done, outputs))
}
