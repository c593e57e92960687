//! The stack's CloudWatch alarms (`[alarms]`): `claude-proxy-<stack>-output-tokens`,
//! `-errors-5xx` and `-throttles`, each the Sum over `period_seconds` of a metric the
//! handler's EMF lines emit (namespace `ClaudeProxy`, dimension `function`), notifying the
//! stack's SNS topic (`topic`). Found again by these names (DescribeAlarms), tags checked;
//! `PutMetricAlarm` creates or replaces one, so an update is the same call.
//!
//! Ordering (for `Kind::waits_for`): after `Topic` (the alarm's action names it) and after
//! `Function` (the metrics' dimension names it); deleted before both.

use crate::aws::{ctx, Aws, OrNotFound};
use crate::change::{Change, FieldChange, Kind, Setting};
use crate::desired::StackSpec;
use crate::names::{self, Names};
use crate::step::{Done, ResourceChange, Step, StepContext, StepFuture};
use anyhow::Result;
use aws_sdk_cloudwatch::types::{ComparisonOperator, Dimension, Statistic, Tag};
use std::collections::BTreeMap;

/// The handler's metrics' namespace (handler `metrics::NAMESPACE`).
pub const NAMESPACE: &str = "ClaudeProxy";
/// The dimension every alarm's metric is read by (its value: the function's name).
pub const DIMENSION: &str = "function";
const COMPARISON: &str = "GreaterThanOrEqualToThreshold";
const MISSING_DATA: &str = "notBreaching";

/// The alarms, by name suffix: (suffix, metric, what it counts).
pub const ALARMS: [(&str, &str, &str); 3] = [
    ("output-tokens", "OutputTokens", "output tokens"),
    ("errors-5xx", "Errors5xx", "5xx answers"),
    ("throttles", "Throttles", "429 answers"),
];

/// The names of every alarm a stack may have (what reads and teardown look for).
pub fn alarm_names(names: &Names) -> Vec<String> {
    ALARMS
        .iter()
        .map(|(suffix, _, _)| format!("{}-{suffix}", names.function))
        .collect()
}

/// One alarm's settings, as compared by the diff.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub namespace: String,
    pub metric: String,
    /// The `function` dimension's value.
    pub function: String,
    pub statistic: String,
    pub period_seconds: i32,
    pub evaluation_periods: i32,
    pub threshold: f64,
    pub comparison: String,
    pub treat_missing_data: String,
    pub actions: Vec<String>,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct State {
    pub name: String,
    pub arn: String,
    pub settings: Settings,
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub name: String,
    pub stack: String,
    pub settings: Settings,
}

/// The alarms a desired stack needs (none without `[alarms]`), notifying `topic_arn`.
pub fn specs(names: &Names, s: &StackSpec, topic_arn: &str) -> Vec<Spec> {
    let Some(a) = s.config.alarms.as_ref() else {
        return Vec::new();
    };
    ALARMS
        .iter()
        .zip(alarm_names(names))
        .map(|((_, metric, what), name)| {
            let threshold = match *metric {
                "OutputTokens" => a.output_tokens,
                "Errors5xx" => a.errors_5xx,
                _ => a.throttles,
            };
            Spec {
                name,
                stack: names.stack.clone(),
                settings: Settings {
                    namespace: NAMESPACE.into(),
                    metric: metric.to_string(),
                    function: names.function.clone(),
                    statistic: "Sum".into(),
                    period_seconds: a.period_seconds as i32,
                    evaluation_periods: 1,
                    threshold: threshold as f64,
                    comparison: COMPARISON.into(),
                    treat_missing_data: MISSING_DATA.into(),
                    actions: vec![topic_arn.to_string()],
                    description: format!(
                        "claude-proxy stack `{}`: {threshold} or more {what} in {} s (stack.toml [alarms])",
                        names.stack, a.period_seconds
                    ),
                },
            }
        })
        .collect()
}

/// The planned changes to the alarms: each wanted one created or updated, every other one
/// the stack has deleted.
pub fn plan(wanted: &[Spec], actual: &[State]) -> Vec<ResourceChange> {
    let mut changes = Vec::new();
    for spec in wanted {
        let a = actual.iter().find(|a| a.name == spec.name);
        if let Some(change) = diff(Some(spec), a) {
            changes.push(ResourceChange::new(
                Kind::Alarm,
                &spec.name,
                change,
                Action::Put(Box::new(spec.clone()), a.cloned().map(Box::new)),
            ));
        }
    }
    for a in actual {
        if !wanted.iter().any(|w| w.name == a.name) {
            changes.push(ResourceChange::new(
                Kind::Alarm,
                &a.name,
                Change::Delete,
                Action::Delete(a.name.clone()),
            ));
        }
    }
    changes
}

fn show(s: &Settings) -> Vec<(&'static str, String)> {
    vec![
        (
            "metric",
            format!("{}/{} ({DIMENSION}={})", s.namespace, s.metric, s.function),
        ),
        ("statistic", s.statistic.clone()),
        ("period_seconds", s.period_seconds.to_string()),
        ("evaluation_periods", s.evaluation_periods.to_string()),
        ("threshold", s.threshold.to_string()),
        ("comparison", s.comparison.clone()),
        ("treat_missing_data", s.treat_missing_data.clone()),
        ("actions", s.actions.join(",")),
        ("description", s.description.clone()),
    ]
}

pub fn diff(desired: Option<&Spec>, actual: Option<&State>) -> Option<Change> {
    match (desired, actual) {
        (None, None) => None,
        (None, Some(_)) => Some(Change::Delete),
        (Some(d), None) => Some(Change::Create {
            settings: show(&d.settings)
                .into_iter()
                .filter(|(k, _)| *k != "description")
                .map(|(k, v)| Setting::new(k, v))
                .collect(),
        }),
        (Some(d), Some(a)) => {
            let mut fields: Vec<FieldChange> = show(&a.settings)
                .into_iter()
                .zip(show(&d.settings))
                .filter(|((_, from), (_, to))| from != to)
                .map(|((k, from), (_, to))| FieldChange::new(k, from, to))
                .collect();
            let missing = names::missing_tags(&d.stack, &a.tags);
            if !missing.is_empty() {
                fields.push(FieldChange::new("tags", "", missing.join(",")));
            }
            (!fields.is_empty()).then_some(Change::Update { fields })
        }
    }
}

#[derive(Debug)]
pub enum Action {
    /// Create or replace (`PutMetricAlarm`), then tag what is missing.
    Put(Box<Spec>, Option<Box<State>>),
    Delete(String),
}

impl Step for Action {
    fn run<'a>(&'a self, cx: StepContext<'a>) -> StepFuture<'a> {
        Box::pin(async move {
            match self {
                Action::Put(spec, a) => put(cx.aws, spec, a.as_deref(), cx.created_at).await?,
                Action::Delete(name) => delete(cx.aws, name).await?,
            }
            Done::nothing()
        })
    }
}

fn cw_tags(tags: BTreeMap<String, String>) -> Vec<Tag> {
    tags.into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// Reads the stack's alarms by name, with their tags.
pub async fn read(aws: &Aws, names: &Names) -> Result<Vec<State>> {
    let wanted = alarm_names(names);
    let what = |op: &str| format!("cloudwatch:{op} {}", wanted.join(","));
    let mut found = Vec::new();
    let mut pages = aws
        .cloudwatch
        .describe_alarms()
        .set_alarm_names(Some(wanted.clone()))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(ctx(what("DescribeAlarms")))?;
        found.extend(page.metric_alarms().iter().cloned());
    }
    let mut states = Vec::new();
    for m in found {
        let (Some(name), Some(arn)) = (m.alarm_name(), m.alarm_arn()) else {
            continue;
        };
        if !wanted.iter().any(|w| w == name) {
            continue;
        }
        let Some(t) = aws
            .cloudwatch
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await
            .or_not_found()
            .map_err(ctx(format!("cloudwatch:ListTagsForResource {name}")))?
        else {
            continue;
        };
        let tags = t
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
            .collect();
        let function = m
            .dimensions()
            .iter()
            .filter(|d| d.name() == Some(DIMENSION))
            .filter_map(|d| d.value())
            .collect::<Vec<_>>()
            .join(",");
        states.push(State {
            name: name.to_string(),
            arn: arn.to_string(),
            settings: Settings {
                namespace: m.namespace().unwrap_or_default().to_string(),
                metric: m.metric_name().unwrap_or_default().to_string(),
                function,
                statistic: m
                    .statistic()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
                period_seconds: m.period().unwrap_or_default(),
                evaluation_periods: m.evaluation_periods().unwrap_or_default(),
                threshold: m.threshold().unwrap_or_default(),
                comparison: m
                    .comparison_operator()
                    .map(|c| c.as_str().to_string())
                    .unwrap_or_default(),
                treat_missing_data: m.treat_missing_data().unwrap_or_default().to_string(),
                actions: m.alarm_actions().to_vec(),
                description: m.alarm_description().unwrap_or_default().to_string(),
            },
            tags,
        });
    }
    Ok(states)
}

/// `PutMetricAlarm` (tags apply only when it creates the alarm, so an existing alarm
/// missing them is tagged with `TagResource`).
pub async fn put(aws: &Aws, spec: &Spec, actual: Option<&State>, created_at: &str) -> Result<()> {
    let s = &spec.settings;
    let mut call = aws
        .cloudwatch
        .put_metric_alarm()
        .alarm_name(&spec.name)
        .alarm_description(&s.description)
        .actions_enabled(true)
        .set_alarm_actions(Some(s.actions.clone()))
        .namespace(&s.namespace)
        .metric_name(&s.metric)
        .dimensions(
            Dimension::builder()
                .name(DIMENSION)
                .value(&s.function)
                .build(),
        )
        .statistic(Statistic::from(s.statistic.as_str()))
        .period(s.period_seconds)
        .evaluation_periods(s.evaluation_periods)
        .threshold(s.threshold)
        .comparison_operator(ComparisonOperator::from(s.comparison.as_str()))
        .treat_missing_data(&s.treat_missing_data);
    if actual.is_none() {
        call = call.set_tags(Some(cw_tags(names::tags_at_creation(
            &spec.stack,
            created_at,
        ))));
    }
    call.send()
        .await
        .map_err(ctx(format!("cloudwatch:PutMetricAlarm {}", spec.name)))?;
    if let Some(a) = actual.filter(|a| !names::missing_tags(&spec.stack, &a.tags).is_empty()) {
        let tags = names::tags_to_restore(&spec.stack, created_at, &a.tags);
        aws.cloudwatch
            .tag_resource()
            .resource_arn(&a.arn)
            .set_tags(Some(cw_tags(tags)))
            .send()
            .await
            .map_err(ctx(format!("cloudwatch:TagResource {}", spec.name)))?;
    }
    Ok(())
}

/// `DeleteAlarms` of one alarm (already gone is done).
pub async fn delete(aws: &Aws, name: &str) -> Result<()> {
    aws.cloudwatch
        .delete_alarms()
        .alarm_names(name)
        .send()
        .await
        .or_not_found()
        .map_err(ctx(format!("cloudwatch:DeleteAlarms {name}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AlarmsSection, StackConfig};
    use crate::desired::Desired;
    use crate::secret::SecretInput;

    fn specs_for(a: AlarmsSection) -> Vec<Spec> {
        let config = StackConfig {
            alarms: Some(a),
            ..Default::default()
        };
        let d = Desired::new(
            config,
            Some(&crate::artifact::Artifact::from_bootstrap_bytes(b"x").unwrap()),
            SecretInput::default(),
        )
        .unwrap();
        specs(&d.names, d.spec.as_ref().unwrap(), "arn:aws:sns:r:1:t")
    }

    #[test]
    fn three_alarms_on_the_handlers_metrics_and_only_what_changed_is_updated() {
        let s = specs_for(AlarmsSection::default());
        let names: Vec<&str> = s.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "claude-proxy-dev-output-tokens",
                "claude-proxy-dev-errors-5xx",
                "claude-proxy-dev-throttles"
            ]
        );
        assert_eq!(s[0].settings.metric, "OutputTokens");
        assert_eq!(s[0].settings.threshold, 1_000_000.0);
        assert_eq!(s[0].settings.function, "claude-proxy-dev");
        assert_eq!(s[0].settings.period_seconds, 3600);
        let actual = State {
            name: s[0].name.clone(),
            arn: "arn:aws:cloudwatch:r:1:alarm:claude-proxy-dev-output-tokens".into(),
            settings: s[0].settings.clone(),
            tags: names::owned_tags("dev"),
        };
        assert_eq!(diff(Some(&s[0]), Some(&actual)), None);
        let changed = specs_for(AlarmsSection {
            period_seconds: 600,
            ..Default::default()
        });
        let Some(Change::Update { fields }) = diff(Some(&changed[0]), Some(&actual)) else {
            panic!("no update");
        };
        let fields: Vec<&str> = fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["period_seconds", "description"]);
        // Without [alarms] every alarm the stack has is deleted.
        let p = plan(&[], &[actual]);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].change, Change::Delete);
    }
}
