//! CloudWatch, which the SDK (aws-sdk-cloudwatch 1.140) speaks as Smithy RPC v2 CBOR
//! (`POST /service/GraniteServiceVersion20100801/operation/<Op>`, `smithy-protocol:
//! rpc-v2-cbor`) and moto 5.2.5 does not serve: the proxy answers it itself, always, keeping
//! metrics, alarms and tags per proxy instance (surviving [`super::AwsProxy::clear`]).
//!
//! - [`metrics`]: `PutMetricData` (values, value/count lists, statistic sets; gzip bodies as the
//!   SDK compresses them) and `GetMetricData` (`MetricStat` queries: `SampleCount`, `Sum`,
//!   `Average`, `Minimum`, `Maximum`, `pNN` over the stored datapoints, by namespace, metric,
//!   exact dimension set and unit, in periods aligned to the period, newest first).
//! - [`alarms`]: `PutMetricAlarm` (create or replace; tags only on create, as AWS does),
//!   `DescribeAlarms` (names, prefix, state, pages of `MaxRecords`), `DeleteAlarms`,
//!   `TagResource`, `UntagResource`, `ListTagsForResource`. An alarm's state is evaluated from
//!   the stored datapoints when it is described (`INSUFFICIENT_DATA` until it has data).
//! - Errors as CloudWatch sends them: a CBOR `{__type, message}` body and the
//!   query-compatible code in `x-amzn-query-error` (`ResourceNotFound;Sender`,
//!   `InvalidParameterValue;Sender`, ...), with AWS's status codes and messages.
//!
//! Operations it does not implement answer 400 `UnknownOperationException` naming the stand-in,
//! so a test that needs one fails loudly instead of passing on a fake success.

pub mod alarms;
pub mod cbor;
pub mod metrics;

use axum::body::Body;
use axum::response::Response;
use serde_json::{json, Value};

/// The path prefix of every CloudWatch operation under RPC v2 CBOR.
pub const PATH_PREFIX: &str = "/service/GraniteServiceVersion20100801/operation/";

/// The account moto uses.
pub const ACCOUNT: &str = "123456789012";

/// The operation named by an RPC v2 CBOR path.
pub fn operation_of(path: &str) -> Option<&str> {
    path.strip_prefix(PATH_PREFIX).filter(|op| !op.is_empty())
}

/// Whether an operation changes anything (for the proxy's mutating-call counts).
pub fn is_mutating(op: &str) -> bool {
    !["Get", "List", "Describe"]
        .iter()
        .any(|p| op.starts_with(p))
}

/// A CloudWatch error: status, query-compatible code, Smithy shape and message.
#[derive(Debug, Clone, PartialEq)]
pub struct CwError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl CwError {
    pub fn invalid(message: impl Into<String>) -> CwError {
        CwError {
            status: 400,
            code: "InvalidParameterValue",
            message: message.into(),
        }
    }
    pub fn missing(message: impl Into<String>) -> CwError {
        CwError {
            status: 400,
            code: "MissingParameter",
            message: message.into(),
        }
    }
    pub fn combination(message: impl Into<String>) -> CwError {
        CwError {
            status: 400,
            code: "InvalidParameterCombination",
            message: message.into(),
        }
    }
}

/// The Smithy error shape behind a query-compatible code.
fn shape_of(code: &str) -> &str {
    match code {
        "InvalidParameterValue" => "InvalidParameterValueException",
        "MissingParameter" => "MissingRequiredParameterException",
        "InvalidParameterCombination" => "InvalidParameterCombinationException",
        "LimitExceeded" => "LimitExceededFault",
        "InternalServiceError" => "InternalServiceFault",
        other => other,
    }
}

/// An error response in CloudWatch's RPC v2 CBOR form.
pub fn error_response(status: u16, code: &str, message: &str) -> Response {
    let body = cbor::encode(&json!({
        "__type": format!("com.amazonaws.cloudwatch#{}", shape_of(code)),
        "message": message,
    }));
    let kind = if status >= 500 { "Receiver" } else { "Sender" };
    Response::builder()
        .status(status)
        .header("content-type", "application/cbor")
        .header("smithy-protocol", "rpc-v2-cbor")
        .header("x-amzn-query-error", format!("{code};{kind}"))
        .header("x-amzn-requestid", "stand-in")
        .body(Body::from(body))
        .unwrap()
}

fn ok_response(v: &Value) -> Response {
    Response::builder()
        .status(200)
        .header("content-type", "application/cbor")
        .header("smithy-protocol", "rpc-v2-cbor")
        .header("x-amzn-requestid", "stand-in")
        .body(Body::from(cbor::encode(v)))
        .unwrap()
}

/// What the stand-in keeps: datapoints and alarms.
#[derive(Debug, Default)]
pub struct CloudWatch {
    pub metrics: metrics::Store,
    pub alarms: alarms::Alarms,
}

/// The request body, decompressed when the SDK gzipped it (`content-encoding: gzip`).
fn body_of(headers: &http::HeaderMap, body: &[u8]) -> Result<Value, CwError> {
    let gzip = headers
        .get(http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("gzip"));
    let raw;
    let bytes = if gzip {
        use std::io::Read;
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(body)
            .read_to_end(&mut out)
            .map_err(|e| {
                CwError::invalid(format!("The request body could not be decompressed: {e}"))
            })?;
        raw = out;
        &raw[..]
    } else {
        body
    };
    let v = cbor::decode(bytes).map_err(|e| CwError {
        status: 400,
        code: "SerializationException",
        message: e,
    })?;
    if v.is_object() {
        Ok(v)
    } else {
        Err(CwError {
            status: 400,
            code: "SerializationException",
            message: "The request body is not a CBOR map".into(),
        })
    }
}

/// Whether this request is CloudWatch's (signing name `monitoring`, an RPC v2 CBOR path).
pub fn handles(service: &str, path: &str) -> bool {
    service == "monitoring" && operation_of(path).is_some()
}

/// Answers one CloudWatch request.
pub fn answer(
    cw: &mut CloudWatch,
    region: &str,
    path: &str,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Response {
    let op = operation_of(path).unwrap_or_default();
    let now = now_secs();
    let result = body_of(headers, body).and_then(|input| match op {
        "PutMetricData" => cw.metrics.put(region, &input, now),
        "GetMetricData" => cw.metrics.get(region, &input),
        "PutMetricAlarm" => cw.alarms.put(region, &input, now),
        "DescribeAlarms" => cw.alarms.describe(region, &input, &cw.metrics, now),
        "DeleteAlarms" => cw.alarms.delete(region, &input),
        "TagResource" => cw.alarms.tag(region, &input),
        "UntagResource" => cw.alarms.untag(region, &input),
        "ListTagsForResource" => cw.alarms.list_tags(region, &input),
        other => Err(CwError {
            status: 400,
            code: "UnknownOperationException",
            message: format!("the CloudWatch stand-in does not implement {other}"),
        }),
    });
    match result {
        Ok(v) => ok_response(&v),
        Err(e) => error_response(e.status, e.code, &e.message),
    }
}

pub fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// A string member, if present.
pub(crate) fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// A list member (absent = empty).
pub(crate) fn list_of<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// `Dimensions` as a sorted name → value map (AWS matches the set, not the order).
pub(crate) fn dimensions_of(
    v: &Value,
    param: &str,
) -> Result<std::collections::BTreeMap<String, String>, CwError> {
    let dims = list_of(v, "Dimensions");
    if dims.len() > 30 {
        return Err(CwError::invalid(format!(
            "The collection {param}.Dimensions must not have a size greater than 30."
        )));
    }
    let mut out = std::collections::BTreeMap::new();
    for (i, d) in dims.iter().enumerate() {
        let (Some(name), Some(value)) = (str_of(d, "Name"), str_of(d, "Value")) else {
            return Err(CwError::missing(format!(
                "The parameter {param}.Dimensions.member.{}.Name and Value are required.",
                i + 1
            )));
        };
        out.insert(name.to_string(), value.to_string());
    }
    Ok(out)
}
