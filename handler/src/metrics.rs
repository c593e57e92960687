//! Usage metering: one CloudWatch Embedded Metric Format (EMF) line per request, written to
//! the function's standard output, which Lambda sends to its log group, where CloudWatch turns
//! it into metrics without any API call from the function.
//!
//! The line (namespace [`NAMESPACE`]; dimension sets `[function]`, `[function, caller]`,
//! `[function, model]`): metrics `Requests`, `InputTokens`, `OutputTokens`,
//! `CacheCreationInputTokens`, `CacheReadInputTokens` (Count), `TimeToFirstByte`, `Latency`
//! (Milliseconds), `Errors5xx`, `Throttles` (Count, 0 or 1), and the properties `caller`,
//! `model`, `status`, `provider`, `route`, `streamed`, `event = "usage"`. Token counts come
//! from the upstream's `usage` (for streams from `message_start` and `message_delta`). No
//! prompt or reply text, no key or token: the caller is named, never identified by its token.
//! `cargo xtask usage` reads these lines back with `FilterLogEvents`.

use serde_json::{json, Value};
use std::sync::Arc;

/// The metrics' namespace.
pub const NAMESPACE: &str = "ClaudeProxy";

/// Where EMF lines go: standard output on Lambda; tests capture them.
pub type Sink = Arc<dyn Fn(&str) + Send + Sync>;

/// A sink that prints each line on its own line of standard output.
pub fn stdout_sink() -> Sink {
    Arc::new(|line: &str| {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    })
}

/// One request's measurements.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    pub function: String,
    pub caller: Option<String>,
    pub model: Option<String>,
    pub route: Option<&'static str>,
    pub status: Option<u16>,
    pub provider: Option<&'static str>,
    pub streamed: bool,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub ttfb_ms: Option<u64>,
    pub latency_ms: u64,
}

/// The EMF document for `u`, timestamped `timestamp_ms` (milliseconds since the epoch).
pub fn emf(u: &Usage, timestamp_ms: u64) -> Value {
    let status = u.status.unwrap_or(0);
    let mut metrics = vec![
        json!({"Name": "Requests", "Unit": "Count"}),
        json!({"Name": "InputTokens", "Unit": "Count"}),
        json!({"Name": "OutputTokens", "Unit": "Count"}),
        json!({"Name": "CacheCreationInputTokens", "Unit": "Count"}),
        json!({"Name": "CacheReadInputTokens", "Unit": "Count"}),
        json!({"Name": "Latency", "Unit": "Milliseconds"}),
        json!({"Name": "Errors5xx", "Unit": "Count"}),
        json!({"Name": "Throttles", "Unit": "Count"}),
    ];
    if u.ttfb_ms.is_some() {
        metrics.push(json!({"Name": "TimeToFirstByte", "Unit": "Milliseconds"}));
    }
    let mut doc = json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["function"], ["function", "caller"], ["function", "model"]],
                "Metrics": metrics,
            }],
        },
        "event": "usage",
        "function": u.function,
        "caller": u.caller.as_deref().unwrap_or("none"),
        "model": u.model.as_deref().unwrap_or("none"),
        "route": u.route.unwrap_or("none"),
        "status": status,
        "provider": u.provider.unwrap_or("none"),
        "streamed": u.streamed,
        "Requests": 1,
        "InputTokens": u.input_tokens,
        "OutputTokens": u.output_tokens,
        "CacheCreationInputTokens": u.cache_creation_input_tokens,
        "CacheReadInputTokens": u.cache_read_input_tokens,
        "Latency": u.latency_ms,
        "Errors5xx": u64::from(status >= 500),
        "Throttles": u64::from(status == 429),
    });
    if let Some(t) = u.ttfb_ms {
        doc["TimeToFirstByte"] = json!(t);
    }
    doc
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_names_every_metric_it_carries_and_no_other_member_is_a_metric() {
        let u = Usage {
            function: "claude-proxy-s".into(),
            caller: Some("alice".into()),
            model: Some("claude-haiku-4-5".into()),
            route: Some("messages"),
            status: Some(529),
            output_tokens: 7,
            ttfb_ms: Some(3),
            latency_ms: 9,
            ..Usage::default()
        };
        let d = emf(&u, 1_700_000_000_000);
        let m = &d["_aws"]["CloudWatchMetrics"][0];
        for def in m["Metrics"].as_array().unwrap() {
            let name = def["Name"].as_str().unwrap();
            assert!(d[name].is_u64(), "{name} has no numeric value");
        }
        for set in m["Dimensions"].as_array().unwrap() {
            for dim in set.as_array().unwrap() {
                assert!(d[dim.as_str().unwrap()].is_string());
            }
        }
        assert_eq!(d["Errors5xx"], 1);
        assert_eq!(d["Throttles"], 0);
        assert_eq!(d["OutputTokens"], 7);
    }
}
