//! `cargo xtask usage [--since 24h] [--by caller|model]`: tokens and an estimated cost per
//! caller and model, from the function's per-request EMF lines (`handler::metrics`) in its
//! log group, read with `FilterLogEvents`. Prices: `infra::prices` (built-in table with its
//! date and source, `[prices]` in stack.toml over it); the report says which it used.

use crate::flags::{Common, Usage, UsageBy};
use crate::output;
use crate::stack::StackContext;
use anyhow::Result;
use infra::aws::OrNotFound;
use infra::prices::{self, ModelPrice, Priced};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::process::ExitCode;

/// The EMF lines' filter (CloudWatch Logs JSON pattern; lines are checked again here).
const PATTERN: &str = r#"{ $.event = "usage" }"#;

/// One row of the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Row {
    pub caller: String,
    pub model: String,
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_read_input_tokens: u64,
    /// `None` when no price is known for the model.
    pub cost_usd: Option<f64>,
    /// Where the price came from (`None`: unknown model).
    pub price: Option<Priced>,
}

#[derive(Serialize)]
#[serde(transparent)]
struct Report {
    rows: Vec<Row>,
    #[serde(skip)]
    since: String,
}

/// Adds the EMF line `message` to `rows` (keyed by caller and model); false when it is not one.
pub fn add_line(
    rows: &mut BTreeMap<(String, String), Row>,
    message: &str,
    by: Option<UsageBy>,
) -> bool {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(message.trim()) else {
        return false;
    };
    if v.get("event").and_then(|e| e.as_str()) != Some("usage") || v.get("_aws").is_none() {
        return false;
    }
    let text = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_str())
            .unwrap_or("none")
            .to_string()
    };
    let n = |k: &str| v.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
    let (caller, model) = match by {
        Some(UsageBy::Caller) => (text("caller"), "(all)".to_string()),
        Some(UsageBy::Model) => ("(all)".to_string(), text("model")),
        None => (text("caller"), text("model")),
    };
    let row = rows
        .entry((caller.clone(), model.clone()))
        .or_insert_with(|| Row {
            caller,
            model,
            ..Row::default()
        });
    row.requests += 1;
    row.input_tokens += n("InputTokens");
    row.output_tokens += n("OutputTokens");
    row.cache_creation_input_tokens += n("CacheCreationInputTokens");
    row.cache_read_input_tokens += n("CacheReadInputTokens");
    // Costs need the model even when rows are by caller: kept per model below.
    true
}

/// The cost of `tokens` of `model`.
fn priced(model: &str, overrides: &BTreeMap<String, ModelPrice>) -> Option<Priced> {
    prices::price_of(model, overrides)
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.rows.is_empty() {
            return write!(f, "no requests since {}", self.since);
        }
        writeln!(f, "usage since {}:", self.since)?;
        writeln!(
            f,
            "{:<20} {:<28} {:>8} {:>12} {:>12} {:>12} {:>12} {:>10}",
            "caller",
            "model",
            "requests",
            "input",
            "output",
            "cache write",
            "cache read",
            "cost USD"
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "{:<20} {:<28} {:>8} {:>12} {:>12} {:>12} {:>12} {:>10}",
                r.caller,
                r.model,
                r.requests,
                r.input_tokens,
                r.output_tokens,
                r.cache_creation_input_tokens,
                r.cache_read_input_tokens,
                r.cost_usd
                    .map_or("unknown".to_string(), |c| format!("{c:.4}"))
            )?;
        }
        let total: f64 = self.rows.iter().filter_map(|r| r.cost_usd).sum();
        writeln!(f, "estimated total: {total:.4} USD")?;
        write!(
            f,
            "prices used (USD per million tokens: input / output / cache write / cache read):"
        )?;
        let mut seen = BTreeMap::new();
        for p in self.rows.iter().filter_map(|r| r.price.as_ref()) {
            seen.insert(p.entry.clone(), p.clone());
        }
        for (entry, p) in seen {
            write!(
                f,
                "\n  {entry}: {} / {} / {} / {} from {}",
                p.price.input, p.price.output, p.price.cache_write, p.price.cache_read, p.source
            )?;
        }
        for r in self.rows.iter().filter(|r| r.price.is_none()) {
            write!(
                f,
                "\n  {}: no price known (add it under [prices] in stack.toml)",
                r.model
            )?;
        }
        Ok(())
    }
}

impl Usage {
    pub async fn run(self, common: &Common) -> Result<ExitCode> {
        let ctx = StackContext::new(common).await?;
        let group = ctx.names.log_group.clone();
        let since = std::time::SystemTime::now() - self.since;
        let start_ms = since
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        // Per caller and model always (costs are per model); grouped at the end.
        let mut fine: BTreeMap<(String, String), Row> = BTreeMap::new();
        let mut pages = ctx
            .aws
            .logs
            .filter_log_events()
            .log_group_name(&group)
            .start_time(start_ms)
            .filter_pattern(PATTERN)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let Some(page) = page
                .or_not_found()
                .map_err(infra::aws::ctx(format!("logs:FilterLogEvents {group}")))?
            else {
                anyhow::bail!(
                    "log group {group} does not exist: is stack `{}` deployed in {}?",
                    ctx.stack,
                    ctx.where_()
                );
            };
            for e in page.events() {
                add_line(&mut fine, e.message().unwrap_or_default(), None);
            }
        }
        let rows = group_rows(fine, self.by, &ctx.config.prices);
        let report = Report {
            rows,
            since: humantime::format_rfc3339_seconds(since).to_string(),
        };
        output::emit(common.output, &report)?;
        Ok(ExitCode::SUCCESS)
    }
}

/// Prices each (caller, model) row, then groups by `by`.
pub fn group_rows(
    fine: BTreeMap<(String, String), Row>,
    by: Option<UsageBy>,
    overrides: &BTreeMap<String, ModelPrice>,
) -> Vec<Row> {
    let mut out: BTreeMap<(String, String), Row> = BTreeMap::new();
    for (_, mut r) in fine {
        r.price = priced(&r.model, overrides);
        r.cost_usd = r.price.as_ref().map(|p| {
            prices::cost_usd(
                &p.price,
                r.input_tokens,
                r.output_tokens,
                r.cache_creation_input_tokens,
                r.cache_read_input_tokens,
            )
        });
        let key = match by {
            Some(UsageBy::Caller) => (r.caller.clone(), "(all)".to_string()),
            Some(UsageBy::Model) => ("(all)".to_string(), r.model.clone()),
            None => (r.caller.clone(), r.model.clone()),
        };
        match out.get_mut(&key) {
            None => {
                let mut r = r;
                (r.caller, r.model) = key.clone();
                out.insert(key, r);
            }
            Some(acc) => {
                acc.requests += r.requests;
                acc.input_tokens += r.input_tokens;
                acc.output_tokens += r.output_tokens;
                acc.cache_creation_input_tokens += r.cache_creation_input_tokens;
                acc.cache_read_input_tokens += r.cache_read_input_tokens;
                acc.cost_usd = match (acc.cost_usd, r.cost_usd) {
                    (Some(a), Some(b)) => Some(a + b),
                    _ => None,
                };
                if acc.price != r.price {
                    acc.price = None;
                }
            }
        }
    }
    out.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(caller: &str, model: &str, input: u64, output: u64) -> String {
        serde_json::json!({
            "_aws": {"Timestamp": 1, "CloudWatchMetrics": []},
            "event": "usage", "caller": caller, "model": model,
            "InputTokens": input, "OutputTokens": output,
            "CacheCreationInputTokens": 0, "CacheReadInputTokens": 0,
        })
        .to_string()
    }

    #[test]
    fn rows_sum_per_caller_and_model_and_are_priced() {
        let mut fine = BTreeMap::new();
        assert!(add_line(
            &mut fine,
            &line("alice", "claude-haiku-4-5", 1_000_000, 0),
            None
        ));
        assert!(add_line(
            &mut fine,
            &line("alice", "claude-haiku-4-5", 0, 200_000),
            None
        ));
        assert!(add_line(
            &mut fine,
            &line("bob", "claude-sonnet-4-5", 1_000_000, 0),
            None
        ));
        assert!(!add_line(
            &mut fine,
            r#"{"level":"INFO","message":"request"}"#,
            None
        ));
        assert!(!add_line(&mut fine, "START RequestId: x", None));
        let rows = group_rows(fine.clone(), None, &BTreeMap::new());
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].caller, "alice");
        assert_eq!(rows[0].requests, 2);
        assert_eq!(rows[0].cost_usd, Some(2.0)); // 1 MTok in at $1 + 0.2 MTok out at $5
        let by_caller = group_rows(fine.clone(), Some(UsageBy::Caller), &BTreeMap::new());
        assert_eq!(by_caller.len(), 2);
        assert_eq!(by_caller[0].model, "(all)");
        let by_model = group_rows(fine, Some(UsageBy::Model), &BTreeMap::new());
        assert_eq!(by_model[1].model, "claude-sonnet-4-5");
        assert_eq!(by_model[1].cost_usd, Some(3.0));
    }
}
