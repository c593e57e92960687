//! Watching a new version while it takes a share of requests: its Errors and Throttles
//! against its Invocations (CloudWatch `AWS/Lambda`, dimensions `FunctionName`, `Resource` =
//! `<function>:live`, `ExecutedVersion` = the version), read with `GetMetricData`, and the
//! share of 5xx answers the proxy logged (its `request` log lines, JSON with `status`, in the
//! version's log streams `YYYY/MM/DD/[<version>]...`, read with `FilterLogEvents`), through
//! the hold; the first read above `max_error_percent` fails the release.

use crate::aws::Aws;
use crate::names::ALIAS;
use anyhow::{Context, Result};
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
use std::time::{Duration, SystemTime};

/// How often the metrics are read during a hold.
pub const POLL: Duration = Duration::from_secs(15);

/// What is watched.
#[derive(Debug, Clone)]
pub struct Window<'a> {
    pub function: &'a str,
    pub version: &'a str,
    pub hold_seconds: u32,
    pub max_error_percent: f64,
}

/// The new version's numbers since its share started.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    pub invocations: f64,
    pub errors: f64,
    pub throttles: f64,
    /// Requests the proxy logged (its `request` lines) in the version's log streams.
    pub requests_logged: f64,
    /// Of those, answered with a 5xx status.
    pub answers_5xx: f64,
}

/// Why a release is stopped, or `None` to go on. Pure: the watch reads, this decides.
pub fn decide(version: &str, s: &Sample, max_error_percent: f64) -> Option<String> {
    let failed = s.errors + s.throttles;
    if failed <= 0.0 {
        return decide_5xx(version, s, max_error_percent);
    }
    // Throttled requests are not counted as invocations by Lambda.
    let seen = (s.invocations + s.throttles).max(failed);
    let share = failed / seen * 100.0;
    if share > max_error_percent {
        return Some(format!(
            "version {version} had {} errors and {} throttles in {} requests ({share:.1}%, above release.max_error_percent = {max_error_percent}) (CloudWatch AWS/Lambda Errors/Throttles of {ALIAS})",
            s.errors, s.throttles, seen
        ));
    }
    decide_5xx(version, s, max_error_percent)
}

fn decide_5xx(version: &str, s: &Sample, max_error_percent: f64) -> Option<String> {
    if s.requests_logged <= 0.0 || s.answers_5xx <= 0.0 {
        return None;
    }
    let share = s.answers_5xx / s.requests_logged * 100.0;
    (share > max_error_percent).then(|| {
        format!(
            "version {version} answered {} of {} requests with a 5xx status ({share:.1}%, above release.max_error_percent = {max_error_percent}) (the proxy's request log lines)",
            s.answers_5xx, s.requests_logged
        )
    })
}

/// `(1, 1)` for a request log line answered 5xx, `(1, 0)` for another, `(0, 0)` for other
/// lines: the handler logs JSON, `{"fields": {"message": "request", "status": 502, ...}}`.
pub fn request_status(message: &str) -> (f64, f64) {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(message.trim()) else {
        return (0.0, 0.0);
    };
    let fields = &v["fields"];
    if fields["message"] != "request" {
        return (0.0, 0.0);
    }
    let status = fields["status"].as_u64().unwrap_or(0);
    (1.0, if status >= 500 { 1.0 } else { 0.0 })
}

/// Holds for the window's time, reading the metrics every [`POLL`] (and once at the end);
/// `Err` with the reason as soon as a read fails the check.
pub async fn watch(aws: &Aws, w: &Window<'_>) -> Result<(), String> {
    let started = SystemTime::now();
    let hold = Duration::from_secs(u64::from(w.hold_seconds));
    let until = tokio::time::Instant::now() + hold;
    loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        tokio::time::sleep(left.min(POLL)).await;
        let sample = read(aws, w, started).await.map_err(|e| format!("{e:#}"))?;
        if let Some(reason) = decide(w.version, &sample, w.max_error_percent) {
            return Err(reason);
        }
        if left <= POLL {
            return Ok(());
        }
    }
}

/// Sums of Invocations, Errors and Throttles of the version behind `live` since `since`.
pub async fn read(aws: &Aws, w: &Window<'_>, since: SystemTime) -> Result<Sample> {
    let dims = [
        ("FunctionName", w.function.to_string()),
        ("Resource", format!("{}:{ALIAS}", w.function)),
        ("ExecutedVersion", w.version.to_string()),
    ];
    let query = |id: &str, metric: &str| {
        let mut m = Metric::builder()
            .namespace("AWS/Lambda")
            .metric_name(metric);
        for (k, v) in &dims {
            m = m.dimensions(Dimension::builder().name(*k).value(v).build());
        }
        MetricDataQuery::builder()
            .id(id)
            .metric_stat(
                MetricStat::builder()
                    .metric(m.build())
                    .period(60)
                    .stat("Sum")
                    .build(),
            )
            .build()
    };
    // Whole minutes around the window: datapoints are per minute.
    let start = since - Duration::from_secs(60);
    let end = SystemTime::now() + Duration::from_secs(60);
    let mut pages = aws
        .cloudwatch
        .get_metric_data()
        .metric_data_queries(query("invocations", "Invocations"))
        .metric_data_queries(query("errors", "Errors"))
        .metric_data_queries(query("throttles", "Throttles"))
        .start_time(DateTime::from(start))
        .end_time(DateTime::from(end))
        .into_paginator()
        .send();
    let mut s = Sample::default();
    let (requests, answers_5xx) = read_logs(aws, w, since).await?;
    s.requests_logged = requests;
    s.answers_5xx = answers_5xx;
    while let Some(page) = pages.next().await {
        let page = page
            .map_err(|e| anyhow::anyhow!(crate::aws::describe(&e)))
            .with_context(|| {
                format!(
                    "cloudwatch:GetMetricData AWS/Lambda of {}:{ALIAS} version {}",
                    w.function, w.version
                )
            })?;
        for r in page.metric_data_results() {
            let sum: f64 = r.values().iter().sum();
            match r.id() {
                Some("invocations") => s.invocations += sum,
                Some("errors") => s.errors += sum,
                Some("throttles") => s.throttles += sum,
                _ => {}
            }
        }
    }
    Ok(s)
}

/// The proxy's request log lines in the version's log streams since `since`: (requests,
/// 5xx answers). A log group not there yet is none.
async fn read_logs(aws: &Aws, w: &Window<'_>, since: SystemTime) -> Result<(f64, f64)> {
    let group = format!("/aws/lambda/{}", w.function);
    let marker = format!("/[{}]", w.version);
    let day =
        |t: SystemTime| humantime::format_rfc3339_seconds(t).to_string()[..10].replace('-', "/");
    let start = since - Duration::from_secs(5);
    // One day's streams are named by it: ask for those only (a shift across midnight
    // reads every stream and keeps the version's).
    let prefix = (day(start) == day(SystemTime::now())).then(|| format!("{}{marker}", day(start)));
    let millis = start
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64;
    let mut pages = aws
        .logs
        .filter_log_events()
        .log_group_name(&group)
        .set_log_stream_name_prefix(prefix)
        .start_time(millis)
        .into_paginator()
        .send();
    let (mut requests, mut failed) = (0.0, 0.0);
    while let Some(page) = pages.next().await {
        let Some(page) = crate::aws::OrNotFound::or_not_found(page)
            .map_err(crate::aws::ctx(format!("logs:FilterLogEvents {group}")))?
        else {
            return Ok((0.0, 0.0));
        };
        for e in page.events() {
            if !e.log_stream_name().unwrap_or_default().contains(&marker) {
                continue;
            }
            let (r, f) = request_status(e.message().unwrap_or_default());
            requests += r;
            failed += f;
        }
    }
    Ok((requests, failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_follows_the_numbers() {
        let s = |invocations, errors, throttles| Sample {
            invocations,
            errors,
            throttles,
            ..Sample::default()
        };
        assert_eq!(decide("3", &s(0.0, 0.0, 0.0), 1.0), None);
        assert_eq!(decide("3", &s(200.0, 1.0, 0.0), 1.0), None);
        let why = decide("3", &s(100.0, 5.0, 0.0), 1.0).unwrap();
        assert!(
            why.contains("5 errors") && why.contains("version 3"),
            "{why}"
        );
        assert!(decide("3", &s(10.0, 0.0, 2.0), 1.0).is_some());
        // Errors with no invocation counted yet (datapoints arrive apart) still stop it.
        assert!(decide("3", &s(0.0, 1.0, 0.0), 50.0).is_some());
        assert_eq!(decide("3", &s(10.0, 1.0, 0.0), 50.0), None);
        // The proxy's own 5xx answers count too, as a share of the requests it logged.
        let answered = |requests_logged, answers_5xx| Sample {
            invocations: requests_logged,
            requests_logged,
            answers_5xx,
            ..Sample::default()
        };
        let why = decide("4", &answered(20.0, 4.0), 1.0).unwrap();
        assert!(
            why.contains("answered 4 of 20 requests with a 5xx"),
            "{why}"
        );
        assert_eq!(decide("4", &answered(200.0, 1.0), 1.0), None);
        assert_eq!(decide("4", &answered(0.0, 0.0), 1.0), None);
    }

    #[test]
    fn request_log_lines_are_counted_by_status() {
        let line = |status: u16| {
            format!(
                r#"{{"timestamp":"t","level":"INFO","fields":{{"message":"request","status":{status},"route":"chat"}}}}"#
            )
        };
        assert_eq!(request_status(&line(200)), (1.0, 0.0));
        assert_eq!(request_status(&line(502)), (1.0, 1.0));
        assert_eq!(
            request_status(r#"{"fields":{"message":"secret refreshed"}}"#),
            (0.0, 0.0)
        );
        assert_eq!(request_status("START RequestId: x Version: 3"), (0.0, 0.0));
    }
}
