//! `PutMetricData` and `GetMetricData` over the stand-in's stored datapoints.

use super::{dimensions_of, list_of, str_of, CwError};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Two weeks, the oldest a datapoint may be; two hours, the furthest ahead.
const MAX_AGE_SECS: f64 = 14.0 * 86_400.0;
const MAX_AHEAD_SECS: f64 = 2.0 * 3_600.0;

/// Which series a datapoint belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    pub region: String,
    pub namespace: String,
    pub metric: String,
    pub dimensions: BTreeMap<String, String>,
}

/// One `MetricDatum` as stored.
#[derive(Debug, Clone)]
pub struct Point {
    pub series: Series,
    pub unit: Option<String>,
    pub time: f64,
    pub count: f64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    /// (value, count) pairs, for percentiles; empty for a statistic set.
    pub values: Vec<(f64, f64)>,
}

#[derive(Debug, Default)]
pub struct Store {
    pub points: Vec<Point>,
}

/// A statistic CloudWatch computes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stat {
    SampleCount,
    Sum,
    Average,
    Minimum,
    Maximum,
    /// `pNN`: the percentile (0..=100).
    Percentile(f64),
}

impl Stat {
    pub fn parse(s: &str) -> Option<Stat> {
        Some(match s {
            "SampleCount" => Stat::SampleCount,
            "Sum" => Stat::Sum,
            "Average" => Stat::Average,
            "Minimum" => Stat::Minimum,
            "Maximum" => Stat::Maximum,
            p => {
                let n: f64 = p.strip_prefix('p')?.parse().ok()?;
                if !(0.0..=100.0).contains(&n) {
                    return None;
                }
                Stat::Percentile(n)
            }
        })
    }

    fn of(self, points: &[&Point]) -> Option<f64> {
        let count: f64 = points.iter().map(|p| p.count).sum();
        if count == 0.0 {
            return None;
        }
        let sum: f64 = points.iter().map(|p| p.sum).sum();
        Some(match self {
            Stat::SampleCount => count,
            Stat::Sum => sum,
            Stat::Average => sum / count,
            Stat::Minimum => points.iter().map(|p| p.min).fold(f64::INFINITY, f64::min),
            Stat::Maximum => points
                .iter()
                .map(|p| p.max)
                .fold(f64::NEG_INFINITY, f64::max),
            Stat::Percentile(q) => {
                let mut values: Vec<(f64, f64)> = points
                    .iter()
                    .flat_map(|p| p.values.iter().copied())
                    .collect();
                let total: f64 = values.iter().map(|(_, c)| c).sum();
                if total == 0.0 {
                    return None;
                }
                values.sort_by(|a, b| a.0.total_cmp(&b.0));
                // Nearest rank.
                let rank = (q / 100.0 * total).ceil().max(1.0);
                let mut seen = 0.0;
                values
                    .iter()
                    .find(|(_, c)| {
                        seen += c;
                        seen >= rank
                    })
                    .map_or(values[values.len() - 1].0, |(v, _)| *v)
            }
        })
    }
}

/// Whether `period` is one CloudWatch accepts (high resolution 1, 5, 10, 20, 30, or a
/// multiple of 60).
pub fn valid_period(period: i64) -> bool {
    matches!(period, 1 | 5 | 10 | 20 | 30) || (period > 0 && period % 60 == 0)
}

fn number(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

impl Store {
    pub fn put(&mut self, region: &str, input: &Value, now: f64) -> Result<Value, CwError> {
        let Some(namespace) = str_of(input, "Namespace") else {
            return Err(CwError::missing("The parameter Namespace is required."));
        };
        if namespace.starts_with("AWS/") {
            return Err(CwError::invalid(
                "The value AWS/ for parameter Namespace is invalid.",
            ));
        }
        let data = list_of(input, "MetricData");
        if data.is_empty() {
            return Err(CwError::missing("The parameter MetricData is required."));
        }
        if data.len() > 1000 {
            return Err(CwError::invalid(
                "The collection MetricData must not have a size greater than 1000.",
            ));
        }
        let mut points = Vec::with_capacity(data.len());
        for (i, d) in data.iter().enumerate() {
            let param = format!("MetricData.member.{}", i + 1);
            let Some(metric) = str_of(d, "MetricName") else {
                return Err(CwError::missing(format!(
                    "The parameter {param}.MetricName is required."
                )));
            };
            let dimensions = dimensions_of(d, &param)?;
            let time = number(d, "Timestamp").unwrap_or(now);
            if time > now + MAX_AHEAD_SECS {
                return Err(CwError::invalid(format!(
                    "The parameter {param}.Timestamp must specify a time no more than two hours in the future."
                )));
            }
            if time < now - MAX_AGE_SECS {
                return Err(CwError::invalid(format!(
                    "The parameter {param}.Timestamp must specify a time within the past two weeks."
                )));
            }
            let value = d.get("Value");
            let set = d.get("StatisticValues");
            let values = list_of(d, "Values");
            let counts = list_of(d, "Counts");
            let exclusive = |a: &str, b: &str| {
                CwError::combination(format!(
                    "The parameters {param}.{a} and {param}.{b} are mutually exclusive and you have specified both."
                ))
            };
            if value.is_some() && set.is_some() {
                return Err(exclusive("Value", "StatisticValues"));
            }
            if value.is_some() && !values.is_empty() {
                return Err(exclusive("Value", "Values"));
            }
            if set.is_some() && !values.is_empty() {
                return Err(exclusive("StatisticValues", "Values"));
            }
            if values.len() > 150 {
                return Err(CwError::invalid(format!(
                    "The collection {param}.Values must not have a size greater than 150."
                )));
            }
            if !counts.is_empty() && counts.len() != values.len() {
                return Err(CwError::invalid(format!(
                    "The parameters {param}.Values and {param}.Counts must be of the same size."
                )));
            }
            let mut point = Point {
                series: Series {
                    region: region.to_string(),
                    namespace: namespace.to_string(),
                    metric: metric.to_string(),
                    dimensions,
                },
                unit: str_of(d, "Unit")
                    .filter(|u| *u != "None")
                    .map(str::to_string),
                time,
                count: 0.0,
                sum: 0.0,
                min: f64::INFINITY,
                max: f64::NEG_INFINITY,
                values: Vec::new(),
            };
            if let Some(set) = set {
                let field = |k: &str| {
                    number(set, k).ok_or_else(|| {
                        CwError::missing(format!(
                            "The parameter {param}.StatisticValues.{k} is required."
                        ))
                    })
                };
                point.count = field("SampleCount")?;
                point.sum = field("Sum")?;
                point.min = field("Minimum")?;
                point.max = field("Maximum")?;
            } else {
                let pairs: Vec<(Option<f64>, f64)> = match value {
                    Some(v) => vec![(v.as_f64(), 1.0)],
                    None if !values.is_empty() => values
                        .iter()
                        .enumerate()
                        .map(|(j, v)| (v.as_f64(), counts.get(j).and_then(Value::as_f64).unwrap_or(1.0)))
                        .collect(),
                    None => {
                        return Err(CwError::missing(format!(
                            "At least one of the parameters {param}.Value, {param}.Values or {param}.StatisticValues must be specified."
                        )))
                    }
                };
                for (v, c) in pairs {
                    let Some(v) = v.filter(|v| v.is_finite()) else {
                        return Err(CwError::invalid(format!(
                            "The value NaN for parameter {param}.Value is invalid."
                        )));
                    };
                    point.count += c;
                    point.sum += v * c;
                    point.min = point.min.min(v);
                    point.max = point.max.max(v);
                    point.values.push((v, c));
                }
            }
            points.push(point);
        }
        self.points.extend(points);
        Ok(json!({}))
    }

    /// `stat` of `series` (and `unit`, when given) per `period`, for the periods starting in
    /// `[start, end)`, oldest first: (period start, value).
    pub fn series(
        &self,
        series: &Series,
        unit: Option<&str>,
        stat: Stat,
        period: i64,
        start: f64,
        end: f64,
    ) -> Vec<(f64, f64)> {
        let period = period as f64;
        let mut buckets: BTreeMap<i64, Vec<&Point>> = BTreeMap::new();
        for p in &self.points {
            let unit_ok = unit
                .is_none_or(|u| p.unit.as_deref() == Some(u) || (u == "None" && p.unit.is_none()));
            if p.series == *series && unit_ok && p.time >= start && p.time < end {
                let b = (p.time / period).floor() * period;
                buckets.entry(b as i64).or_default().push(p);
            }
        }
        buckets
            .into_iter()
            .filter_map(|(b, ps)| stat.of(&ps).map(|v| (b as f64, v)))
            .collect()
    }

    pub fn get(&self, region: &str, input: &Value) -> Result<Value, CwError> {
        let (Some(start), Some(end)) = (number(input, "StartTime"), number(input, "EndTime"))
        else {
            return Err(CwError::missing(
                "The parameters StartTime and EndTime are required.",
            ));
        };
        if end <= start {
            return Err(CwError::invalid(
                "The parameter StartTime must be less than the parameter EndTime.",
            ));
        }
        let queries = list_of(input, "MetricDataQueries");
        if queries.is_empty() {
            return Err(CwError::missing(
                "The parameter MetricDataQueries is required.",
            ));
        }
        if queries.len() > 500 {
            return Err(CwError::invalid(
                "The collection MetricDataQueries must not have a size greater than 500.",
            ));
        }
        let ascending = str_of(input, "ScanBy") == Some("TimestampAscending");
        let mut ids = std::collections::BTreeSet::new();
        let mut results = Vec::new();
        for (i, q) in queries.iter().enumerate() {
            let param = format!("MetricDataQueries.member.{}", i + 1);
            let id = str_of(q, "Id").unwrap_or_default();
            let id_ok = id.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !id_ok {
                return Err(CwError::invalid(format!(
                    "The value {id} for parameter {param}.Id is not valid."
                )));
            }
            if !ids.insert(id) {
                return Err(CwError::invalid(
                    "The values for parameter id in MetricDataQueries are not unique.",
                ));
            }
            if q.get("Expression").is_some() {
                return Err(CwError::invalid(format!(
                    "{param}.Expression: the CloudWatch stand-in does not evaluate metric math"
                )));
            }
            let Some(ms) = q.get("MetricStat") else {
                return Err(CwError::missing(format!(
                    "Exactly one of {param}.MetricStat and {param}.Expression must be specified."
                )));
            };
            let metric = ms.get("Metric").cloned().unwrap_or_default();
            let (Some(namespace), Some(name)) =
                (str_of(&metric, "Namespace"), str_of(&metric, "MetricName"))
            else {
                return Err(CwError::missing(format!(
                    "The parameters {param}.MetricStat.Metric.Namespace and MetricName are required."
                )));
            };
            let period = ms.get("Period").and_then(Value::as_i64).unwrap_or(0);
            if !valid_period(period) {
                return Err(CwError::invalid(format!(
                    "The parameter {param}.MetricStat.Period must be a multiple of 60."
                )));
            }
            let stat_name = str_of(ms, "Stat").unwrap_or_default();
            let Some(stat) = Stat::parse(stat_name) else {
                return Err(CwError::invalid(format!(
                    "The value {stat_name} for parameter {param}.MetricStat.Stat is not valid."
                )));
            };
            if q.get("ReturnData").and_then(Value::as_bool) == Some(false) {
                continue;
            }
            let series = Series {
                region: region.to_string(),
                namespace: namespace.to_string(),
                metric: name.to_string(),
                dimensions: dimensions_of(&metric, &format!("{param}.MetricStat.Metric"))?,
            };
            let mut points = self.series(&series, str_of(ms, "Unit"), stat, period, start, end);
            if !ascending {
                points.reverse();
            }
            results.push(json!({
                "Id": id,
                "Label": str_of(q, "Label").unwrap_or(name),
                "Timestamps": points.iter().map(|(t, _)| json!(*t)).collect::<Vec<_>>(),
                "Values": points.iter().map(|(_, v)| json!(*v)).collect::<Vec<_>>(),
                "StatusCode": "Complete",
            }));
        }
        Ok(json!({"MetricDataResults": results, "Messages": []}))
    }
}
