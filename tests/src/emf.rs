//! The CloudWatch Embedded Metric Format specification, as a checker: a line is a JSON object
//! with `_aws` = `{Timestamp: integer ms, CloudWatchMetrics: [MetricDirective]}`, each
//! directive `{Namespace: 1-1024 chars, Dimensions: [[dimension name, ≤ 30]], Metrics: [{Name:
//! 1-1024 chars, Unit?: one of CloudWatch's units, StorageResolution?: 1 | 60}] (≤ 100)}`;
//! every dimension names a string member of the root, every metric a number (or a list of
//! ≤ 100 numbers) member. Written from the specification
//! (docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html).

use serde_json::Value;

/// CloudWatch's metric units.
pub const UNITS: &[&str] = &[
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// Checks one line against the specification; the error says what is wrong.
pub fn check(line: &str) -> Result<Value, String> {
    let root: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let obj = root.as_object().ok_or("the root is not an object")?;
    let aws = obj
        .get("_aws")
        .and_then(Value::as_object)
        .ok_or("no _aws object")?;
    if !aws.get("Timestamp").is_some_and(Value::is_u64) {
        return Err("_aws.Timestamp is not a non-negative integer (milliseconds)".into());
    }
    let directives = aws
        .get("CloudWatchMetrics")
        .and_then(Value::as_array)
        .ok_or("_aws.CloudWatchMetrics is not an array")?;
    for d in directives {
        let ns = d
            .get("Namespace")
            .and_then(Value::as_str)
            .ok_or("a directive has no Namespace string")?;
        if ns.is_empty() || ns.len() > 1024 {
            return Err(format!("Namespace {ns:?} is not 1 to 1024 characters"));
        }
        let dims = d
            .get("Dimensions")
            .and_then(Value::as_array)
            .ok_or("a directive has no Dimensions array")?;
        for set in dims {
            let set = set.as_array().ok_or("a DimensionSet is not an array")?;
            if set.len() > 30 {
                return Err("a DimensionSet has more than 30 dimensions".into());
            }
            for name in set {
                let name = name.as_str().ok_or("a dimension name is not a string")?;
                if !obj.get(name).is_some_and(Value::is_string) {
                    return Err(format!(
                        "dimension {name} is not a string member of the root"
                    ));
                }
            }
        }
        let metrics = d
            .get("Metrics")
            .and_then(Value::as_array)
            .ok_or("a directive has no Metrics array")?;
        if metrics.len() > 100 {
            return Err("more than 100 metrics in a directive".into());
        }
        for m in metrics {
            let name = m
                .get("Name")
                .and_then(Value::as_str)
                .ok_or("a metric has no Name string")?;
            if name.is_empty() || name.len() > 1024 {
                return Err(format!("metric name {name:?} is not 1 to 1024 characters"));
            }
            if let Some(unit) = m.get("Unit") {
                if !unit.as_str().is_some_and(|u| UNITS.contains(&u)) {
                    return Err(format!("metric {name}: {unit} is not a CloudWatch unit"));
                }
            }
            if let Some(r) = m.get("StorageResolution") {
                if !(r == 1 || r == 60) {
                    return Err(format!(
                        "metric {name}: StorageResolution {r} is not 1 or 60"
                    ));
                }
            }
            let ok = match obj.get(name) {
                Some(Value::Number(_)) => true,
                Some(Value::Array(a)) => a.len() <= 100 && a.iter().all(Value::is_number),
                _ => false,
            };
            if !ok {
                return Err(format!("metric {name} has no numeric member in the root"));
            }
        }
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checker_refuses_what_the_specification_refuses() {
        let good = r#"{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"N","Dimensions":[["f"]],"Metrics":[{"Name":"M","Unit":"Count"}]}]},"f":"x","M":1}"#;
        check(good).unwrap();
        for bad in [
            r#"{"f":"x","M":1}"#,
            r#"{"_aws":{"Timestamp":"1","CloudWatchMetrics":[]}}"#,
            r#"{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"N","Dimensions":[["g"]],"Metrics":[]}]},"f":"x"}"#,
            r#"{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"N","Dimensions":[],"Metrics":[{"Name":"M","Unit":"Tokens"}]}]},"M":1}"#,
            r#"{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"N","Dimensions":[],"Metrics":[{"Name":"M"}]}]},"M":"1"}"#,
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
    }
}
