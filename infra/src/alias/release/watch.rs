//! Watching a new version while it takes a share of requests: its Errors and Throttles
//! against its Invocations (CloudWatch `AWS/Lambda`, dimensions `FunctionName`, `Resource` =
//! `<function>:live`, `ExecutedVersion` = the version), read with `GetMetricData` through
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
}

/// Why a release is stopped, or `None` to go on. Pure: the watch reads, this decides.
pub fn decide(version: &str, s: &Sample, max_error_percent: f64) -> Option<String> {
    let failed = s.errors + s.throttles;
    if failed <= 0.0 {
        return None;
    }
    // Throttled requests are not counted as invocations by Lambda.
    let seen = (s.invocations + s.throttles).max(failed);
    let share = failed / seen * 100.0;
    (share > max_error_percent).then(|| {
        format!(
            "version {version} had {} errors and {} throttles in {} requests ({share:.1}%, above release.max_error_percent = {max_error_percent}) (CloudWatch AWS/Lambda Errors/Throttles of {ALIAS})",
            s.errors, s.throttles, seen
        )
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_follows_the_numbers() {
        let s = |invocations, errors, throttles| Sample {
            invocations,
            errors,
            throttles,
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
    }
}
