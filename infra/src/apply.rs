//! Apply: runs the steps the plan carries, in its order, through a writer; no resource
//! logic lives here. Dry-run is enforced in the writer (the step's future is never polled,
//! so nothing is called and no reference is resolved). Every step is idempotent, and the next run re-reads
//! the account, so a failed apply converges when run again.

use crate::aws::Aws;
use crate::change::{Late, Output, Produced};
use crate::credentials::CallerToken;
use crate::desired::Desired;
use crate::plan::Plan;
use crate::progress::Progress;
use crate::step::StepContext;
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
    /// The version the alias `live` points to (what callers reach).
    pub live_version: Option<String>,
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
        if let Some(v) = &self.live_version {
            writeln!(
                f,
                "  live version:  {v} (alias `live`; `cargo xtask releases` lists them)"
            )?;
        }
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

/// The dispatch: every change's step, in the plan's order, through the writer. What a step
/// produces (an ARN, a URL, a caller token) is there for the steps after it.
async fn run(
    aws: &Aws,
    plan: &Plan,
    desired: &Desired,
    progress: &dyn Progress,
    options: ApplyOptions,
) -> Result<(Vec<String>, Outputs)> {
    let spec = desired.spec.as_ref();
    let created_at = spec.map(|s| s.created_at.clone()).unwrap_or_default();
    let mut w = Writer {
        progress,
        dry_run: options.dry_run,
        done: Vec::new(),
        token_made: false,
    };
    let mut produced = Produced::default();
    let mut caller_token: Option<CallerToken> = None;
    for c in &plan.changes {
        let cx = StepContext {
            aws,
            produced: &produced,
            created_at: &created_at,
            progress,
        };
        let Some(done) = w.run(c.label(), c.step.run(cx)).await? else {
            continue;
        };
        if let Some(token) = done.caller_token {
            caller_token = Some(token);
            w.token_made = true;
        }
        for (output, value) in done.outputs {
            produced.set(output, value);
        }
    }

    // Each output as the last step that touched it left it, else as planned.
    let last = |output: Output, planned: Option<String>| match produced.get(output) {
        Some(value) => value.map(str::to_string),
        None => planned,
    };
    let refs = &plan.refs;
    let arn = |output: Output, planned: &Late| {
        last(output, Some(planned.planned().to_string())).unwrap_or_default()
    };
    // What the function ends up reserving (the plan's decision unless Lambda refused `auto`).
    let reserved_after = match produced.get(Output::ReservedConcurrency) {
        Some(value) => value.and_then(|v| v.parse().ok()),
        None => plan.reserved_concurrency,
    };
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
    let actual = &plan.actual;
    let url_enabled = spec.is_some_and(|s| s.config.function_url.enabled);
    let api_enabled = spec.is_some_and(|s| s.config.http_api.enabled);
    let url = last(
        Output::FunctionUrl,
        actual.function_url.as_ref().map(|u| u.url.clone()),
    );
    let api_endpoint = last(
        Output::ApiEndpoint,
        actual.http_apis.first().and_then(|a| a.endpoint.clone()),
    );
    let outputs = Outputs {
        stack: desired.stack.clone(),
        region: actual.region.clone(),
        function_url: url.filter(|_| url_enabled),
        api_url: api_endpoint.filter(|_| api_enabled),
        function_arn: arn(Output::FunctionArn, &refs.function_arn),
        live_version: last(
            Output::AliasVersion,
            actual.alias.as_ref().map(|a| a.version.clone()),
        )
        .filter(|_| spec.is_some()),
        role_arn: arn(Output::RoleArn, &refs.role_arn),
        secret_arn: arn(Output::SecretArn, &refs.secret_arn),
        caller_token,
        changed: !plan.is_empty(),
        steps: Vec::new(),
        spend_bound,
    };
    Ok((w.done, outputs))
}
