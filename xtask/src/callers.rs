//! `cargo xtask callers add|list|revoke|rotate`: the stack's named callers. A token is shown
//! once (`add`, `rotate`); `list` never shows one, nor a hash.

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
}

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "caller: {}", self.name)?;
        writeln!(f, "token:  {}", self.token)?;
        write!(
            f,
            "This token is shown only now: the stack keeps its SHA-256 only. Callers send it as `x-api-key: <token>` or `Authorization: Bearer <token>`; the function accepts it within its secret cache TTL."
        )
    }
}

/// One caller as listed: no token, no hash.
#[derive(Serialize)]
struct Listed {
    name: String,
    created_at: String,
    rotated_at: Option<String>,
    limits: CallerLimits,
}

impl From<CallerEntry> for Listed {
    fn from(c: CallerEntry) -> Listed {
        Listed {
            name: c.name,
            created_at: c.created_at,
            rotated_at: c.rotated_at,
            limits: c.limits,
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
            "{:<24} {:<22} {:<22} limits",
            "name", "created", "rotated"
        )?;
        for (i, c) in self.0.iter().enumerate() {
            let mut limits = Vec::new();
            if let Some(m) = &c.limits.allowed_models {
                limits.push(format!("models={}", m.join(",")));
            }
            if let Some(n) = c.limits.max_tokens {
                limits.push(format!("max_tokens={n}"));
            }
            let limits = if limits.is_empty() {
                "(the stack's)".to_string()
            } else {
                limits.join(" ")
            };
            write!(
                f,
                "{:<24} {:<22} {:<22} {limits}",
                c.name,
                c.created_at,
                c.rotated_at.as_deref().unwrap_or("-")
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
            "caller {} revoked: its token stops working within the function's secret cache TTL",
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
            } => {
                let limits = CallerLimits {
                    allowed_models: models,
                    max_tokens,
                };
                let token = caller_admin::add(&ctx, &lock, &on_wait, &name, limits).await?;
                output::emit(
                    common.output,
                    &Shown {
                        name,
                        token: token.expose().to_string(),
                    },
                )?;
            }
            CallersAction::Rotate { name } => {
                let token = caller_admin::rotate(&ctx, &lock, &on_wait, &name).await?;
                output::emit(
                    common.output,
                    &Shown {
                        name,
                        token: token.expose().to_string(),
                    },
                )?;
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
                    &List(callers.into_iter().map(Listed::from).collect()),
                )?;
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
