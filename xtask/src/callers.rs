//! `cargo xtask callers add|list|revoke|rotate`: the stack's named callers. A token is shown
//! once (`add`, `rotate`); `list` never shows one, nor a hash. With a REST API front each
//! caller has its own API key, shown once the same way (`list` shows its id only).

use crate::caller_admin;
use crate::flags::{Callers, CallersAction, Common};
use crate::output;
use crate::progress::Progress;
use crate::stack::StackContext;
use anyhow::Result;
use infra::callers::{CallerEntry, CallerLimits};
use serde::Serialize;
use std::fmt;
use std::process::ExitCode;

/// A token, shown once.
#[derive(Serialize)]
struct Shown {
    name: String,
    token: String,
    /// The caller's own API key (a REST API front), shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    api_key: Option<String>,
}

impl Shown {
    fn new(name: String, c: caller_admin::NewCredentials) -> Shown {
        Shown {
            name,
            token: c.token.expose().to_string(),
            api_key: c.api_key.map(|k| k.expose().to_string()),
        }
    }
}

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "caller: {}", self.name)?;
        writeln!(f, "token:  {}", self.token)?;
        if let Some(k) = &self.api_key {
            writeln!(f, "api key: {k}")?;
        }
        write!(
            f,
            "This token is shown only now: the stack keeps its SHA-256 only. Callers send it as `x-api-key: <token>` or `Authorization: Bearer <token>`; the function accepts it within its secret cache TTL."
        )?;
        if self.api_key.is_some() {
            write!(
                f,
                "\nThe API key is shown only now too: through the REST API (rest_url) the caller sends it as `x-api-key: <api key>`; the usage plan throttles it and the function knows the caller by it."
            )?;
        }
        Ok(())
    }
}

/// One caller as listed: no token, no hash.
#[derive(Serialize)]
struct Listed {
    name: String,
    created_at: String,
    rotated_at: Option<String>,
    /// Its own limits as stored (absent fields: the stack's).
    limits: CallerLimits,
    /// With a REST front: the usage plan its key is in and that plan's numbers.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage_plan: Option<ListedPlan>,
    /// Its API key's id (a REST API front; the request log's `api_key_id`), never the value.
    api_key_id: Option<String>,
}

#[derive(Serialize)]
struct ListedPlan {
    /// `claude-proxy-<stack>` (shared) or `claude-proxy-<stack>-<caller>` (its own).
    name: String,
    /// Whether the plan is the caller's own.
    own: bool,
    rate_limit: f64,
    burst_limit: u32,
    /// 0 = no quota.
    quota_limit: u32,
    quota_period: infra::config::QuotaPeriod,
}

impl Listed {
    /// A caller with an API key (a REST front) is in a usage plan: its own, or the shared one.
    fn new(c: CallerEntry, ctx: &StackContext) -> Listed {
        let usage_plan = c.api_key_id.is_some().then(|| {
            let own = c.limits.has_own_plan();
            let t = c.limits.throttle(&ctx.config.api);
            ListedPlan {
                name: if own {
                    infra::rest_api::caller_keys::key_name(&ctx.names, &c.name)
                } else {
                    ctx.names.usage_plan.clone()
                },
                own,
                rate_limit: t.rate_limit,
                burst_limit: t.burst_limit,
                quota_limit: t.quota_limit,
                quota_period: t.quota_period,
            }
        });
        Listed {
            name: c.name,
            created_at: c.created_at,
            rotated_at: c.rotated_at,
            limits: c.limits,
            usage_plan,
            api_key_id: c.api_key_id,
        }
    }
}

#[derive(Serialize)]
#[serde(transparent)]
struct List(Vec<Listed>);

impl fmt::Display for List {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return write!(f, "no callers (add one: cargo xtask callers add NAME)");
        }
        writeln!(
            f,
            "{:<24} {:<22} {:<22} {:<12} limits",
            "name", "created", "rotated", "api key id"
        )?;
        for (i, c) in self.0.iter().enumerate() {
            let mut limits = Vec::new();
            if let Some(m) = &c.limits.allowed_models {
                limits.push(format!("models={}", m.join(",")));
            }
            if let Some(n) = c.limits.max_tokens {
                limits.push(format!("max_tokens={n}"));
            }
            if let Some(p) = &c.usage_plan {
                let quota = if p.quota_limit == 0 {
                    "none".to_string()
                } else {
                    format!(
                        "{}/{}",
                        p.quota_limit,
                        p.quota_period.as_aws().to_ascii_lowercase()
                    )
                };
                limits.push(format!(
                    "{}: rate={} burst={} quota={quota}",
                    if p.own { "own plan" } else { "shared plan" },
                    p.rate_limit,
                    p.burst_limit
                ));
            }
            let limits = if limits.is_empty() {
                "(the stack's)".to_string()
            } else {
                limits.join(" ")
            };
            write!(
                f,
                "{:<24} {:<22} {:<22} {:<12} {limits}",
                c.name,
                c.created_at,
                c.rotated_at.as_deref().unwrap_or("-"),
                c.api_key_id.as_deref().unwrap_or("-")
            )?;
            if i + 1 < self.0.len() {
                writeln!(f)?;
            }
        }
        Ok(())
    }
}

#[derive(Serialize)]
struct Revoked {
    name: String,
    revoked: bool,
}

impl fmt::Display for Revoked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "caller {} revoked: its token stops working within the function's secret cache TTL (its API key, if it had one, is deleted)",
            self.name
        )
    }
}

impl Callers {
    pub async fn run(self, common: &Common, progress: &Progress) -> Result<ExitCode> {
        let ctx = StackContext::new(common).await?;
        let lock = self.lock.options("callers");
        let on_wait = |m: &str| progress.note(m);
        match self.action {
            CallersAction::Add {
                name,
                models,
                max_tokens,
                rate_limit,
                burst_limit,
                quota_limit,
                quota_period,
            } => {
                let limits = CallerLimits {
                    allowed_models: models,
                    max_tokens,
                    rate_limit,
                    burst_limit,
                    quota_limit,
                    quota_period,
                };
                let new = caller_admin::add(&ctx, &lock, &on_wait, &name, limits).await?;
                output::emit(common.output, &Shown::new(name, new))?;
            }
            CallersAction::Rotate { name } => {
                let new = caller_admin::rotate(&ctx, &lock, &on_wait, &name).await?;
                output::emit(common.output, &Shown::new(name, new))?;
            }
            CallersAction::Revoke { name } => {
                caller_admin::revoke(&ctx, &lock, &on_wait, &name).await?;
                output::emit(
                    common.output,
                    &Revoked {
                        name,
                        revoked: true,
                    },
                )?;
            }
            CallersAction::List => {
                let callers = caller_admin::list(&ctx).await?;
                output::emit(
                    common.output,
                    &List(callers.into_iter().map(|c| Listed::new(c, &ctx)).collect()),
                )?;
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
