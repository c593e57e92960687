//! Metric alarms and their tags: `PutMetricAlarm`, `DescribeAlarms`, `DeleteAlarms`,
//! `TagResource`, `UntagResource`, `ListTagsForResource`.
//!
//! An alarm's state is evaluated from the stored datapoints when it is described: over the
//! last `EvaluationPeriods` periods up to the end of the current one, `ALARM` when at least
//! `DatapointsToAlarm` of them breach the threshold, `OK` when some data is there (or missing
//! data is `notBreaching`), `INSUFFICIENT_DATA` otherwise.

use super::metrics::{valid_period, Series, Stat, Store};
use super::{dimensions_of, list_of, str_of, CwError, ACCOUNT};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// CloudWatch's quota of metric alarms per Region.
const MAX_ALARMS: usize = 5000;
const MAX_TAGS: usize = 50;

const COMPARISONS: &[&str] = &[
    "GreaterThanOrEqualToThreshold",
    "GreaterThanThreshold",
    "LessThanThreshold",
    "LessThanOrEqualToThreshold",
];

/// The members of `PutMetricAlarm` that `DescribeAlarms` gives back as they were put.
const ECHOED: &[&str] = &[
    "AlarmDescription",
    "OKActions",
    "AlarmActions",
    "InsufficientDataActions",
    "MetricName",
    "Namespace",
    "Statistic",
    "ExtendedStatistic",
    "Dimensions",
    "Period",
    "Unit",
    "EvaluationPeriods",
    "DatapointsToAlarm",
    "Threshold",
    "ComparisonOperator",
    "TreatMissingData",
    "EvaluateLowSampleCountPercentile",
];

#[derive(Debug, Clone)]
pub struct Alarm {
    pub region: String,
    pub name: String,
    pub arn: String,
    /// The `PutMetricAlarm` input, less its tags.
    pub input: Value,
    pub tags: BTreeMap<String, String>,
    pub updated: f64,
    pub state: String,
    pub reason: String,
    pub state_updated: f64,
}

#[derive(Debug, Default)]
pub struct Alarms {
    /// By (Region, name).
    pub alarms: BTreeMap<(String, String), Alarm>,
}

fn partition_of(region: &str) -> &'static str {
    super::super::partition::partition_of_region(region)
}

fn alarm_arn(region: &str, name: &str) -> String {
    format!(
        "arn:{}:cloudwatch:{region}:{ACCOUNT}:alarm:{name}",
        partition_of(region)
    )
}

fn tags_of(v: &Value, param: &str) -> Result<BTreeMap<String, String>, CwError> {
    let mut out = BTreeMap::new();
    for (i, t) in list_of(v, param).iter().enumerate() {
        let (Some(k), Some(val)) = (str_of(t, "Key"), str_of(t, "Value")) else {
            return Err(CwError::missing(format!(
                "The parameter {param}.member.{}.Key and Value are required.",
                i + 1
            )));
        };
        if k.is_empty() || k.len() > 128 || val.len() > 256 || k.starts_with("aws:") {
            return Err(CwError::invalid(format!(
                "The value {k} for parameter {param}.member.{}.Key is invalid.",
                i + 1
            )));
        }
        out.insert(k.to_string(), val.to_string());
    }
    Ok(out)
}

fn tags_json(tags: &BTreeMap<String, String>) -> Value {
    Value::Array(
        tags.iter()
            .map(|(k, v)| json!({"Key": k, "Value": v}))
            .collect(),
    )
}

/// Checks the alarm's actions: ARNs, in this Region, at most 5 per list.
fn check_actions(region: &str, input: &Value) -> Result<(), CwError> {
    for list in ["OKActions", "AlarmActions", "InsufficientDataActions"] {
        let actions = list_of(input, list);
        if actions.len() > 5 {
            return Err(CwError::invalid(format!(
                "The collection {list} must not have a size greater than 5."
            )));
        }
        for a in actions {
            let a = a.as_str().unwrap_or_default();
            let parts: Vec<&str> = a.splitn(6, ':').collect();
            if parts.len() != 6 || parts[0] != "arn" || parts[5].is_empty() {
                return Err(CwError::invalid(format!("Invalid arn syntax: {a}")));
            }
            if parts[3] != region {
                return Err(CwError::invalid(format!(
                    "Invalid region {} specified. Only {region} is supported.",
                    parts[3]
                )));
            }
        }
    }
    Ok(())
}

impl Alarms {
    pub fn put(&mut self, region: &str, input: &Value, now: f64) -> Result<Value, CwError> {
        let Some(name) = str_of(input, "AlarmName") else {
            return Err(CwError::missing("The parameter AlarmName is required."));
        };
        if name.is_empty() || name.len() > 255 {
            return Err(CwError::invalid(format!(
                "The value {name} for parameter AlarmName is invalid: it must be 1 to 255 characters."
            )));
        }
        let evaluation_periods = input.get("EvaluationPeriods").and_then(Value::as_i64);
        let Some(evaluation_periods) = evaluation_periods else {
            return Err(CwError::missing(
                "The parameter EvaluationPeriods is required.",
            ));
        };
        if evaluation_periods < 1 {
            return Err(CwError::invalid(
                "The parameter EvaluationPeriods must be greater than or equal to 1.",
            ));
        }
        let comparison = str_of(input, "ComparisonOperator").unwrap_or_default();
        if !COMPARISONS.contains(&comparison) {
            return Err(CwError::invalid(format!(
                "The value {comparison} for parameter ComparisonOperator is not valid (the stand-in serves static thresholds only)."
            )));
        }
        if input.get("Metrics").is_some() {
            return Err(CwError::invalid(
                "Metrics: the CloudWatch stand-in does not evaluate metric math alarms",
            ));
        }
        if str_of(input, "MetricName").is_none() || str_of(input, "Namespace").is_none() {
            return Err(CwError::missing(
                "The parameters MetricName and Namespace are required.",
            ));
        }
        match (
            str_of(input, "Statistic"),
            str_of(input, "ExtendedStatistic"),
        ) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(CwError::combination(
                    "Exactly one of Statistic and ExtendedStatistic must be specified.",
                ))
            }
            (_, Some(e)) if !matches!(Stat::parse(e), Some(Stat::Percentile(_))) => {
                return Err(CwError::invalid(format!(
                    "The value {e} for parameter ExtendedStatistic is not supported."
                )))
            }
            _ => {}
        }
        let period = input.get("Period").and_then(Value::as_i64).unwrap_or(0);
        if !valid_period(period) {
            return Err(CwError::invalid(
                "The parameter Period must be 10, 20, 30 or a multiple of 60.",
            ));
        }
        if period * evaluation_periods > 7 * 86_400 {
            return Err(CwError::invalid(
                "The evaluation period multiplied by the number of evaluation periods must not exceed one week.",
            ));
        }
        if input.get("Threshold").and_then(Value::as_f64).is_none() {
            return Err(CwError::missing("The parameter Threshold is required."));
        }
        if let Some(m) = input.get("DatapointsToAlarm").and_then(Value::as_i64) {
            if m < 1 || m > evaluation_periods {
                return Err(CwError::invalid(
                    "DatapointsToAlarm must be between 1 and EvaluationPeriods.",
                ));
            }
        }
        if let Some(t) = str_of(input, "TreatMissingData") {
            if !["breaching", "notBreaching", "ignore", "missing"].contains(&t) {
                return Err(CwError::invalid(format!(
                    "The value {t} for parameter TreatMissingData is not valid."
                )));
            }
        }
        dimensions_of(input, "Dimensions")?;
        check_actions(region, input)?;
        let tags = tags_of(input, "Tags")?;
        if tags.len() > MAX_TAGS {
            return Err(CwError::invalid(
                "The collection Tags must not have a size greater than 50.",
            ));
        }
        let mut stored = input.clone();
        if let Some(m) = stored.as_object_mut() {
            m.remove("Tags");
        }
        let key = (region.to_string(), name.to_string());
        let in_region = self.alarms.keys().filter(|(r, _)| r == region).count();
        match self.alarms.get_mut(&key) {
            // An update replaces the configuration, keeps the state, ignores tags.
            Some(a) => {
                a.input = stored;
                a.updated = now;
            }
            None if in_region >= MAX_ALARMS => {
                return Err(CwError {
                    status: 400,
                    code: "LimitExceeded",
                    message: format!(
                        "The maximum allowed number of alarms ({MAX_ALARMS}) has been reached."
                    ),
                })
            }
            None => {
                self.alarms.insert(
                    key,
                    Alarm {
                        region: region.to_string(),
                        name: name.to_string(),
                        arn: alarm_arn(region, name),
                        input: stored,
                        tags,
                        updated: now,
                        state: "INSUFFICIENT_DATA".into(),
                        reason: "Unchecked: Initial alarm creation".into(),
                        state_updated: now,
                    },
                );
            }
        }
        Ok(json!({}))
    }

    pub fn describe(
        &mut self,
        region: &str,
        input: &Value,
        metrics: &Store,
        now: f64,
    ) -> Result<Value, CwError> {
        let names: Vec<&str> = list_of(input, "AlarmNames")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let prefix = str_of(input, "AlarmNamePrefix");
        if !names.is_empty() && prefix.is_some() {
            return Err(CwError::combination(
                "AlarmNames and AlarmNamePrefix cannot be specified together.",
            ));
        }
        if names.len() > 100 {
            return Err(CwError::invalid(
                "The collection AlarmNames must not have a size greater than 100.",
            ));
        }
        let max = input
            .get("MaxRecords")
            .and_then(Value::as_i64)
            .unwrap_or(50);
        if !(1..=100).contains(&max) {
            return Err(CwError::invalid(
                "The parameter MaxRecords must be between 1 and 100.",
            ));
        }
        let types = list_of(input, "AlarmTypes");
        let metric_alarms_wanted =
            types.is_empty() || types.iter().any(|t| t.as_str() == Some("MetricAlarm"));
        let after =
            match str_of(input, "NextToken") {
                Some(t) => Some(t.strip_prefix("stand-in:").map(str::to_string).ok_or_else(
                    || CwError {
                        status: 400,
                        code: "InvalidNextToken",
                        message: "The service returned an invalid next token.".into(),
                    },
                )?),
                None => None,
            };
        let state_filter = str_of(input, "StateValue");
        let action_prefix = str_of(input, "ActionPrefix");
        let mut out = Vec::new();
        let mut next = None;
        for ((r, name), alarm) in self.alarms.iter_mut() {
            if r != region || !metric_alarms_wanted {
                continue;
            }
            if after.as_deref().is_some_and(|a| name.as_str() <= a) {
                continue;
            }
            if !names.is_empty() && !names.contains(&name.as_str()) {
                continue;
            }
            if prefix.is_some_and(|p| !name.starts_with(p)) {
                continue;
            }
            if let Some(p) = action_prefix {
                let any = ["OKActions", "AlarmActions", "InsufficientDataActions"]
                    .iter()
                    .flat_map(|l| list_of(&alarm.input, l))
                    .any(|a| a.as_str().is_some_and(|a| a.starts_with(p)));
                if !any {
                    continue;
                }
            }
            evaluate(alarm, metrics, now);
            if state_filter.is_some_and(|s| s != alarm.state) {
                continue;
            }
            if out.len() as i64 == max {
                next = Some(format!("stand-in:{}", out_last_name(&out)));
                break;
            }
            out.push(describe_one(alarm));
        }
        let mut answer = json!({"MetricAlarms": out, "CompositeAlarms": []});
        if let Some(n) = next {
            answer["NextToken"] = json!(n);
        }
        Ok(answer)
    }

    /// Deletes the named alarms; names that do not exist are ignored, as CloudWatch does.
    pub fn delete(&mut self, region: &str, input: &Value) -> Result<Value, CwError> {
        let names = list_of(input, "AlarmNames");
        if names.is_empty() {
            return Err(CwError::missing("The parameter AlarmNames is required."));
        }
        if names.len() > 100 {
            return Err(CwError::invalid(
                "The collection AlarmNames must not have a size greater than 100.",
            ));
        }
        for n in names.iter().filter_map(Value::as_str) {
            self.alarms.remove(&(region.to_string(), n.to_string()));
        }
        Ok(json!({}))
    }

    fn by_arn(&mut self, region: &str, input: &Value) -> Result<&mut Alarm, CwError> {
        let Some(arn) = str_of(input, "ResourceARN") else {
            return Err(CwError::missing("The parameter ResourceARN is required."));
        };
        let prefix = format!("arn:{}:cloudwatch:", partition_of(region));
        let well_formed =
            arn.starts_with(&prefix) && (arn.contains(":alarm:") || arn.contains(":insight-rule/"));
        if !well_formed {
            return Err(CwError::invalid(format!(
                "The value {arn} for parameter ResourceARN is invalid."
            )));
        }
        self.alarms
            .values_mut()
            .find(|a| a.arn == arn && a.region == region)
            .ok_or_else(|| CwError {
                status: 404,
                code: "ResourceNotFoundException",
                message: format!("The resource {arn} does not exist."),
            })
    }

    pub fn tag(&mut self, region: &str, input: &Value) -> Result<Value, CwError> {
        let tags = tags_of(input, "Tags")?;
        let alarm = self.by_arn(region, input)?;
        let mut merged = alarm.tags.clone();
        merged.extend(tags);
        if merged.len() > MAX_TAGS {
            return Err(CwError::invalid(format!(
                "A resource can have at most {MAX_TAGS} tags."
            )));
        }
        alarm.tags = merged;
        Ok(json!({}))
    }

    pub fn untag(&mut self, region: &str, input: &Value) -> Result<Value, CwError> {
        let keys: Vec<String> = list_of(input, "TagKeys")
            .iter()
            .filter_map(|k| k.as_str().map(str::to_string))
            .collect();
        let alarm = self.by_arn(region, input)?;
        for k in keys {
            alarm.tags.remove(&k);
        }
        Ok(json!({}))
    }

    pub fn list_tags(&mut self, region: &str, input: &Value) -> Result<Value, CwError> {
        let alarm = self.by_arn(region, input)?;
        Ok(json!({"Tags": tags_json(&alarm.tags)}))
    }
}

fn out_last_name(out: &[Value]) -> String {
    out.last()
        .and_then(|a| str_of(a, "AlarmName"))
        .unwrap_or_default()
        .to_string()
}

fn describe_one(a: &Alarm) -> Value {
    let mut m = Map::new();
    m.insert("AlarmName".into(), json!(a.name));
    m.insert("AlarmArn".into(), json!(a.arn));
    for k in ECHOED {
        if let Some(v) = a.input.get(*k) {
            m.insert((*k).into(), v.clone());
        }
    }
    let enabled = a
        .input
        .get("ActionsEnabled")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    m.insert("ActionsEnabled".into(), json!(enabled));
    m.insert(
        "AlarmConfigurationUpdatedTimestamp".into(),
        json!(a.updated),
    );
    m.insert("StateValue".into(), json!(a.state));
    m.insert("StateReason".into(), json!(a.reason));
    m.insert("StateUpdatedTimestamp".into(), json!(a.state_updated));
    m.insert("StateTransitionedTimestamp".into(), json!(a.state_updated));
    Value::Object(m)
}

/// Sets the alarm's state from the datapoints (see the module's documentation).
fn evaluate(a: &mut Alarm, metrics: &Store, now: f64) {
    let i = &a.input;
    let period = i.get("Period").and_then(Value::as_i64).unwrap_or(60);
    let n = i
        .get("EvaluationPeriods")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let m = i
        .get("DatapointsToAlarm")
        .and_then(Value::as_i64)
        .unwrap_or(n);
    let threshold = i
        .get("Threshold")
        .and_then(Value::as_f64)
        .unwrap_or_default();
    let comparison = str_of(i, "ComparisonOperator").unwrap_or_default();
    let stat = str_of(i, "Statistic")
        .or(str_of(i, "ExtendedStatistic"))
        .and_then(Stat::parse)
        .unwrap_or(Stat::Sum);
    let series = Series {
        region: a.region.clone(),
        namespace: str_of(i, "Namespace").unwrap_or_default().to_string(),
        metric: str_of(i, "MetricName").unwrap_or_default().to_string(),
        dimensions: dimensions_of(i, "Dimensions").unwrap_or_default(),
    };
    let end = ((now / period as f64).floor() + 1.0) * period as f64;
    let start = end - (n * period) as f64;
    let points = metrics.series(&series, str_of(i, "Unit"), stat, period, start, end);
    let breaches = |v: f64| match comparison {
        "GreaterThanOrEqualToThreshold" => v >= threshold,
        "GreaterThanThreshold" => v > threshold,
        "LessThanThreshold" => v < threshold,
        _ => v <= threshold,
    };
    let missing = n - points.len() as i64;
    let treat = str_of(i, "TreatMissingData").unwrap_or("missing");
    let mut breaching = points.iter().filter(|(_, v)| breaches(*v)).count() as i64;
    if treat == "breaching" {
        breaching += missing;
    }
    let (state, reason) = if breaching >= m {
        (
            "ALARM",
            format!(
                "Threshold Crossed: {breaching} out of the last {n} datapoints were {comparison} ({threshold})."
            ),
        )
    } else if !points.is_empty() || treat == "notBreaching" {
        (
            "OK",
            format!("Threshold Crossed: {breaching} out of the last {n} datapoints breached ({threshold})."),
        )
    } else {
        (
            "INSUFFICIENT_DATA",
            format!("Insufficient Data: {n} datapoints were unknown."),
        )
    };
    if a.state != state {
        a.state = state.to_string();
        a.reason = reason;
        a.state_updated = now;
    }
}
