//! The proxy's CloudWatch stand-in (`stand_ins::aws_proxy::cloudwatch`) through the real
//! aws-sdk-cloudwatch client, which speaks Smithy RPC v2 CBOR: metrics in and statistics out,
//! alarms created, described (paged, evaluated from the data), tagged and deleted, and
//! CloudWatch's own errors (codes, status, messages) where a call is wrong. No moto needed:
//! the proxy answers CloudWatch itself.

use aws_sdk_cloudwatch::error::ProvideErrorMetadata;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{
    ComparisonOperator, Dimension, Metric, MetricDataQuery, MetricDatum, MetricStat, StateValue,
    Statistic, StatisticSet, Tag,
};
use aws_sdk_cloudwatch::Client;
use stand_ins::aws_proxy::{AwsProxy, Fault, Matcher};
use stand_ins::stack_support::sdk_config;
use std::time::{SystemTime, UNIX_EPOCH};

/// A proxy whose upstream is never used (CloudWatch is answered by the proxy), and a client.
async fn client() -> (AwsProxy, Client) {
    let proxy = AwsProxy::start("http://127.0.0.1:9").await.unwrap();
    let conf = sdk_config(&proxy.endpoint_url()).await;
    (proxy, Client::new(&conf))
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn dim(name: &str, value: &str) -> Dimension {
    Dimension::builder().name(name).value(value).build()
}

fn datum(metric: &str, caller: &str, value: f64, at: i64) -> MetricDatum {
    MetricDatum::builder()
        .metric_name(metric)
        .dimensions(dim("caller", caller))
        .dimensions(dim("stack", "s1"))
        .value(value)
        .timestamp(DateTime::from_secs(at))
        .build()
}

fn query(
    id: &str,
    metric: &str,
    dims: &[(&str, &str)],
    stat: &str,
    period: i32,
) -> MetricDataQuery {
    let mut m = Metric::builder()
        .namespace("ClaudeProxy")
        .metric_name(metric);
    for (n, v) in dims {
        m = m.dimensions(dim(n, v));
    }
    MetricDataQuery::builder()
        .id(id)
        .metric_stat(
            MetricStat::builder()
                .metric(m.build())
                .period(period)
                .stat(stat)
                .build(),
        )
        .build()
}

#[tokio::test]
async fn metrics_put_then_statistics_per_period_by_dimensions() {
    let (proxy, cw) = client().await;
    // Aligned to two minutes (so one 120 s period holds both minutes) and in the past.
    let base = (now() / 120 - 2) * 120;
    cw.put_metric_data()
        .namespace("ClaudeProxy")
        .metric_data(datum("OutputTokens", "alice", 100.0, base + 1))
        .metric_data(datum("OutputTokens", "alice", 300.0, base + 30))
        .metric_data(datum("OutputTokens", "alice", 50.0, base + 61))
        .metric_data(datum("OutputTokens", "bob", 7.0, base + 2))
        .metric_data(
            MetricDatum::builder()
                .metric_name("OutputTokens")
                .dimensions(dim("stack", "s1"))
                .dimensions(dim("caller", "carol"))
                .statistic_values(
                    StatisticSet::builder()
                        .sample_count(4.0)
                        .sum(40.0)
                        .minimum(1.0)
                        .maximum(20.0)
                        .build(),
                )
                .timestamp(DateTime::from_secs(base + 5))
                .build(),
        )
        .send()
        .await
        .expect("PutMetricData");
    let calls = proxy.calls();
    assert_eq!(calls[0].service, "monitoring");
    assert_eq!(calls[0].operation, "PutMetricData");
    assert!(calls[0].mutating);

    let alice = [("caller", "alice"), ("stack", "s1")];
    // Dimensions match as a set: carol's datum was put in the other order.
    let carol = [("caller", "carol"), ("stack", "s1")];
    let out = cw
        .get_metric_data()
        .start_time(DateTime::from_secs(base))
        .end_time(DateTime::from_secs(base + 180))
        .metric_data_queries(query("sum", "OutputTokens", &alice, "Sum", 60))
        .metric_data_queries(query("avg", "OutputTokens", &alice, "Average", 60))
        .metric_data_queries(query("max", "OutputTokens", &alice, "Maximum", 120))
        .metric_data_queries(query("carol", "OutputTokens", &carol, "Average", 60))
        .metric_data_queries(query(
            "nobody",
            "OutputTokens",
            &[("caller", "alice")],
            "Sum",
            60,
        ))
        .send()
        .await
        .expect("GetMetricData");
    let results = out.metric_data_results();
    let by_id = |id: &str| results.iter().find(|r| r.id() == Some(id)).unwrap();
    // Newest first (TimestampDescending is the default).
    assert_eq!(by_id("sum").values(), &[50.0, 400.0]);
    assert_eq!(
        by_id("sum").timestamps(),
        &[DateTime::from_secs(base + 60), DateTime::from_secs(base)]
    );
    assert_eq!(by_id("avg").values(), &[50.0, 200.0]);
    assert_eq!(by_id("max").values(), &[300.0]);
    assert_eq!(by_id("carol").values(), &[10.0]);
    assert_eq!(by_id("sum").label(), Some("OutputTokens"));
    // A subset of the dimensions is another metric.
    assert!(by_id("nobody").values().is_empty());
}

#[tokio::test]
async fn metric_errors_are_cloudwatchs() {
    let (_proxy, cw) = client().await;
    let err = cw
        .put_metric_data()
        .namespace("AWS/Lambda")
        .metric_data(datum("X", "a", 1.0, now()))
        .send()
        .await
        .unwrap_err();
    let err = err.into_service_error();
    assert!(err.is_invalid_parameter_value_exception(), "{err:?}");
    assert_eq!(err.code(), Some("InvalidParameterValue"));
    assert_eq!(
        err.message(),
        Some("The value AWS/ for parameter Namespace is invalid.")
    );

    let both = MetricDatum::builder()
        .metric_name("X")
        .value(1.0)
        .statistic_values(
            StatisticSet::builder()
                .sample_count(1.0)
                .sum(1.0)
                .minimum(1.0)
                .maximum(1.0)
                .build(),
        )
        .build();
    let err = cw
        .put_metric_data()
        .namespace("ClaudeProxy")
        .metric_data(both)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_parameter_combination_exception(), "{err:?}");

    let future = datum("X", "a", 1.0, now() + 3 * 3600);
    let err = cw
        .put_metric_data()
        .namespace("ClaudeProxy")
        .metric_data(future)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        err.message().unwrap().contains("two hours in the future"),
        "{err:?}"
    );

    let err = cw
        .get_metric_data()
        .start_time(DateTime::from_secs(now()))
        .end_time(DateTime::from_secs(now() - 60))
        .metric_data_queries(query("q", "X", &[], "Sum", 60))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("InvalidParameterValue"));
    let err = cw
        .get_metric_data()
        .start_time(DateTime::from_secs(now() - 60))
        .end_time(DateTime::from_secs(now()))
        .metric_data_queries(query("Q", "X", &[], "Sum", 60))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(
        err.message(),
        Some("The value Q for parameter MetricDataQueries.member.1.Id is not valid.")
    );
}

async fn put_alarm(
    cw: &Client,
    name: &str,
    threshold: f64,
) -> Result<(), aws_sdk_cloudwatch::Error> {
    cw.put_metric_alarm()
        .alarm_name(name)
        .namespace("ClaudeProxy")
        .metric_name("OutputTokens")
        .dimensions(dim("stack", "s1"))
        .statistic(Statistic::Sum)
        .period(60)
        .evaluation_periods(1)
        .threshold(threshold)
        .comparison_operator(ComparisonOperator::GreaterThanThreshold)
        .alarm_actions("arn:aws:sns:us-east-1:123456789012:claude-proxy-s1-alarms")
        .tags(
            Tag::builder()
                .key("claude-lambda:stack")
                .value("s1")
                .build(),
        )
        .send()
        .await?;
    Ok(())
}

#[tokio::test]
async fn alarms_are_created_described_evaluated_tagged_and_deleted() {
    let (proxy, cw) = client().await;
    put_alarm(&cw, "s1-output-tokens", 1000.0)
        .await
        .expect("PutMetricAlarm");
    let out = cw
        .describe_alarms()
        .alarm_names("s1-output-tokens")
        .send()
        .await
        .unwrap();
    let a = &out.metric_alarms()[0];
    assert_eq!(a.alarm_name(), Some("s1-output-tokens"));
    let arn = a.alarm_arn().unwrap().to_string();
    assert_eq!(
        arn,
        "arn:aws:cloudwatch:us-east-1:123456789012:alarm:s1-output-tokens"
    );
    assert_eq!(a.threshold(), Some(1000.0));
    assert_eq!(a.period(), Some(60));
    assert_eq!(a.statistic(), Some(&Statistic::Sum));
    assert_eq!(a.state_value(), Some(&StateValue::InsufficientData));
    assert_eq!(a.actions_enabled(), Some(true));
    assert_eq!(
        a.alarm_actions(),
        &["arn:aws:sns:us-east-1:123456789012:claude-proxy-s1-alarms".to_string()]
    );

    // Data under the threshold: OK; over it: ALARM.
    cw.put_metric_data()
        .namespace("ClaudeProxy")
        .metric_data(
            MetricDatum::builder()
                .metric_name("OutputTokens")
                .dimensions(dim("stack", "s1"))
                .value(600.0)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let state = |cw: Client| async move {
        cw.describe_alarms()
            .alarm_names("s1-output-tokens")
            .send()
            .await
            .unwrap()
            .metric_alarms()[0]
            .state_value()
            .cloned()
    };
    assert_eq!(state(cw.clone()).await, Some(StateValue::Ok));
    cw.put_metric_data()
        .namespace("ClaudeProxy")
        .metric_data(
            MetricDatum::builder()
                .metric_name("OutputTokens")
                .dimensions(dim("stack", "s1"))
                .value(600.0)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(state(cw.clone()).await, Some(StateValue::Alarm));
    let alarming = cw
        .describe_alarms()
        .state_value(StateValue::Alarm)
        .send()
        .await
        .unwrap();
    assert_eq!(alarming.metric_alarms().len(), 1);

    // Tags: given on create, added, removed.
    let tags = |cw: Client, arn: String| async move {
        let mut t: Vec<(String, String)> = cw
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await
            .unwrap()
            .tags()
            .iter()
            .map(|t| {
                (
                    t.key().unwrap_or_default().to_string(),
                    t.value().unwrap_or_default().to_string(),
                )
            })
            .collect();
        t.sort();
        t
    };
    assert_eq!(
        tags(cw.clone(), arn.clone()).await,
        vec![("claude-lambda:stack".into(), "s1".into())]
    );
    cw.tag_resource()
        .resource_arn(&arn)
        .tags(Tag::builder().key("owner").value("ci").build())
        .send()
        .await
        .unwrap();
    assert_eq!(tags(cw.clone(), arn.clone()).await.len(), 2);
    cw.untag_resource()
        .resource_arn(&arn)
        .tag_keys("owner")
        .send()
        .await
        .unwrap();
    assert_eq!(tags(cw.clone(), arn.clone()).await.len(), 1);
    // An update keeps the tags (AWS ignores Tags on an existing alarm) and the new threshold.
    put_alarm(&cw, "s1-output-tokens", 5000.0).await.unwrap();
    assert_eq!(tags(cw.clone(), arn.clone()).await.len(), 1);

    // Delete; a missing name is ignored, as CloudWatch does.
    cw.delete_alarms()
        .alarm_names("s1-output-tokens")
        .alarm_names("never-existed")
        .send()
        .await
        .unwrap();
    assert!(cw
        .describe_alarms()
        .send()
        .await
        .unwrap()
        .metric_alarms()
        .is_empty());
    let err = cw
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");
    let mutating: Vec<String> = proxy
        .mutating_calls()
        .iter()
        .map(|c| c.operation.clone())
        .collect();
    assert!(
        mutating.contains(&"DeleteAlarms".to_string()),
        "{mutating:?}"
    );
    assert!(!mutating.contains(&"DescribeAlarms".to_string()));
}

#[tokio::test]
async fn describe_alarms_pages_through_the_sdk_paginator() {
    let (_proxy, cw) = client().await;
    for i in 0..7 {
        put_alarm(&cw, &format!("a{i}"), 1.0).await.unwrap();
    }
    let pages: Vec<_> = cw
        .describe_alarms()
        .max_records(3)
        .into_paginator()
        .send()
        .collect::<Vec<_>>()
        .await;
    let sizes: Vec<usize> = pages
        .iter()
        .map(|p| p.as_ref().unwrap().metric_alarms().len())
        .collect();
    assert_eq!(sizes, vec![3, 3, 1]);
    let names: Vec<String> = pages
        .iter()
        .flat_map(|p| p.as_ref().unwrap().metric_alarms().to_vec())
        .filter_map(|a| a.alarm_name().map(str::to_string))
        .collect();
    assert_eq!(names, (0..7).map(|i| format!("a{i}")).collect::<Vec<_>>());
    let prefixed = cw
        .describe_alarms()
        .alarm_name_prefix("a1")
        .send()
        .await
        .unwrap();
    assert_eq!(prefixed.metric_alarms().len(), 1);
}

#[tokio::test]
async fn alarm_errors_and_injected_faults_come_in_cloudwatchs_form() {
    let (proxy, cw) = client().await;
    // An action in another Region.
    let err = cw
        .put_metric_alarm()
        .alarm_name("x")
        .namespace("ClaudeProxy")
        .metric_name("OutputTokens")
        .statistic(Statistic::Sum)
        .period(60)
        .evaluation_periods(1)
        .threshold(1.0)
        .comparison_operator(ComparisonOperator::GreaterThanThreshold)
        .alarm_actions("arn:aws:sns:us-west-2:123456789012:t")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("InvalidParameterValue"), "{err:?}");
    assert_eq!(
        err.message(),
        Some("Invalid region us-west-2 specified. Only us-east-1 is supported.")
    );
    // A period CloudWatch does not take.
    let err = cw
        .put_metric_alarm()
        .alarm_name("x")
        .namespace("ClaudeProxy")
        .metric_name("OutputTokens")
        .statistic(Statistic::Sum)
        .period(45)
        .evaluation_periods(1)
        .threshold(1.0)
        .comparison_operator(ComparisonOperator::GreaterThanThreshold)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(err.code(), Some("InvalidParameterValue"), "{err:?}");
    let err = cw
        .tag_resource()
        .resource_arn("not-an-arn")
        .tags(Tag::builder().key("k").value("v").build())
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_invalid_parameter_value_exception(), "{err:?}");

    // Throttling is retried by the SDK; a non-retryable injected error reaches the caller.
    proxy.inject(Fault::throttling(
        Matcher::Operation {
            service: "monitoring".into(),
            operation: "PutMetricAlarm".into(),
        },
        1,
    ));
    put_alarm(&cw, "after-throttle", 1.0)
        .await
        .expect("retried after throttling");
    assert_eq!(proxy.injected_count(), 1);
    proxy.inject(Fault::interrupt_at_mutating(
        proxy.mutating_calls().len() + 1,
    ));
    let err = put_alarm(&cw, "interrupted", 1.0).await.unwrap_err();
    assert_eq!(err.code(), Some("InjectedFault"), "{err:?}");
    let names: Vec<String> = cw
        .describe_alarms()
        .send()
        .await
        .unwrap()
        .metric_alarms()
        .iter()
        .filter_map(|a| a.alarm_name().map(str::to_string))
        .collect();
    assert_eq!(names, vec!["after-throttle".to_string()]);
}

#[tokio::test]
async fn a_large_put_compressed_by_the_sdk_is_read() {
    let (proxy, cw) = client().await;
    let at = now() - 30;
    // Well above the SDK's 10 KiB request-compression threshold: the body is gzipped.
    let mut put = cw.put_metric_data().namespace("ClaudeProxy");
    for i in 0..400 {
        put = put.metric_data(datum("InputTokens", &format!("caller-{}", i % 2), 1.0, at));
    }
    put.send().await.expect("PutMetricData");
    assert_eq!(proxy.calls().len(), 1);
    let out = cw
        .get_metric_data()
        .start_time(DateTime::from_secs(at - 60))
        .end_time(DateTime::from_secs(at + 60))
        .metric_data_queries(query(
            "n",
            "InputTokens",
            &[("caller", "caller-1"), ("stack", "s1")],
            "SampleCount",
            300,
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(out.metric_data_results()[0].values(), &[200.0]);
}
