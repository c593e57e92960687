//! The payload-format-1.0 event an API Gateway REST API (`AWS_PROXY` integration) sends the
//! function: `resource`, `path` (without the stage), `httpMethod`, `headers` (the last value of
//! a repeated header) and `multiValueHeaders`, the query in both forms, `pathParameters`, and
//! a `requestContext` whose `identity` carries the API key API Gateway checked (`apiKey`, its
//! value, and `apiKeyId`).

use super::event::percent_decode;
use super::ids;
use base64::Engine as _;
use serde_json::{json, Map, Value};
use std::net::SocketAddr;
use std::time::SystemTime;

/// Where a REST event comes from.
pub(super) struct RestSource<'a> {
    pub account_id: &'a str,
    pub api_id: &'a str,
    pub domain: &'a str,
    pub stage: &'a str,
    pub request_id: &'a str,
    /// The path after the stage, e.g. `/v1/messages` (`/` for the root resource).
    pub path: &'a str,
    /// The key API Gateway checked: (value, id).
    pub api_key: Option<(&'a str, &'a str)>,
}

/// A payload-format-1.0 event, as REST APIs send it.
pub(super) fn build_rest_event(
    src: &RestSource<'_>,
    parts: &http::request::Parts,
    body: &[u8],
    peer: SocketAddr,
    now: SystemTime,
) -> Value {
    let mut headers = Map::new();
    let mut multi = Map::new();
    for name in parts.headers.keys() {
        let values: Vec<Value> = parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        if let Some(last) = values.last() {
            headers.insert(name.as_str().to_string(), last.clone());
        }
        multi.insert(name.as_str().to_string(), Value::Array(values));
    }
    let forwarded_for = match headers.get("x-forwarded-for").and_then(Value::as_str) {
        Some(prev) => format!("{prev}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    for (k, v) in [
        ("x-forwarded-for", forwarded_for),
        ("x-forwarded-proto", "http".to_string()),
        ("x-amzn-trace-id", format!("Root={}", ids::trace_root(now))),
    ] {
        headers.insert(k.into(), v.clone().into());
        multi.insert(k.into(), json!([v]));
    }

    let (query, multi_query) = query(parts.uri.query().unwrap_or(""));
    let (resource, path_parameters) = if src.path == "/" {
        ("/", Value::Null)
    } else {
        (
            "/{proxy+}",
            json!({"proxy": percent_decode(src.path.trim_start_matches('/'))}),
        )
    };
    let user_agent = parts
        .headers
        .get(http::header::USER_AGENT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let (api_key, api_key_id) = match src.api_key {
        Some((value, id)) => (Value::from(value), Value::from(id)),
        None => (Value::Null, Value::Null),
    };
    let (body, is_base64) = if body.is_empty() {
        (Value::Null, false)
    } else {
        match std::str::from_utf8(body) {
            Ok(text) => (Value::from(text), false),
            Err(_) => (
                base64::engine::general_purpose::STANDARD
                    .encode(body)
                    .into(),
                true,
            ),
        }
    };
    json!({
        "resource": resource,
        "path": src.path,
        "httpMethod": parts.method.as_str(),
        "headers": headers,
        "multiValueHeaders": multi,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": path_parameters,
        "stageVariables": null,
        "requestContext": {
            "accountId": src.account_id,
            "apiId": src.api_id,
            "domainName": src.domain,
            "domainPrefix": src.api_id,
            "extendedRequestId": src.request_id,
            "httpMethod": parts.method.as_str(),
            "identity": {
                "accessKey": null,
                "accountId": null,
                "apiKey": api_key,
                "apiKeyId": api_key_id,
                "caller": null,
                "cognitoAuthenticationProvider": null,
                "cognitoAuthenticationType": null,
                "cognitoIdentityId": null,
                "cognitoIdentityPoolId": null,
                "principalOrgId": null,
                "sourceIp": peer.ip().to_string(),
                "user": null,
                "userAgent": user_agent,
                "userArn": null,
            },
            "path": format!("/{}{}", src.stage, src.path),
            "protocol": "HTTP/1.1",
            "requestId": src.request_id,
            "requestTime": ids::request_time(now),
            "requestTimeEpoch": ids::epoch_millis(now),
            "resourceId": "emul01",
            "resourcePath": resource,
            "stage": src.stage,
        },
        "body": body,
        "isBase64Encoded": is_base64,
    })
}

/// `queryStringParameters` (the last value of a repeated key) and
/// `multiValueQueryStringParameters`; both `null` without a query.
fn query(raw: &str) -> (Value, Value) {
    let mut single = Map::new();
    let mut multi: Map<String, Value> = Map::new();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (percent_decode(k), percent_decode(v));
        single.insert(k.clone(), Value::String(v.clone()));
        match multi.get_mut(&k) {
            Some(Value::Array(a)) => a.push(Value::String(v)),
            _ => {
                multi.insert(k, json!([v]));
            }
        }
    }
    if single.is_empty() {
        (Value::Null, Value::Null)
    } else {
        (Value::Object(single), Value::Object(multi))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn a_rest_event_carries_the_request_and_the_key() {
        let p = http::Request::post("/live/v1/messages?a=1&a=2")
            .header("x-multi", "1")
            .header("x-multi", "2")
            .header("content-type", "application/json")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let src = RestSource {
            account_id: "123456789012",
            api_id: "abcdefghij",
            domain: "abcdefghij.execute-api.us-east-1.amazonaws.com",
            stage: "live",
            request_id: "r-1",
            path: "/v1/messages",
            api_key: Some(("value", "id1")),
        };
        let peer = SocketAddr::from(([127, 0, 0, 1], 9));
        let e = build_rest_event(&src, &p, b"{}", peer, UNIX_EPOCH);
        assert_eq!(e["httpMethod"], "POST");
        assert_eq!(e["path"], "/v1/messages");
        assert_eq!(e["resource"], "/{proxy+}");
        assert_eq!(e["pathParameters"]["proxy"], "v1/messages");
        assert_eq!(e["headers"]["x-multi"], "2");
        assert_eq!(e["multiValueHeaders"]["x-multi"], json!(["1", "2"]));
        assert_eq!(e["queryStringParameters"]["a"], "2");
        assert_eq!(e["multiValueQueryStringParameters"]["a"], json!(["1", "2"]));
        let ctx = &e["requestContext"];
        assert_eq!(ctx["stage"], "live");
        assert_eq!(ctx["path"], "/live/v1/messages");
        assert_eq!(ctx["identity"]["apiKeyId"], "id1");
        assert_eq!(ctx["identity"]["apiKey"], "value");
        assert_eq!(e["body"], "{}");
        assert_eq!(e["isBase64Encoded"], false);

        let root = RestSource {
            path: "/",
            api_key: None,
            ..src
        };
        let e = build_rest_event(&root, &p, &[0xff], peer, UNIX_EPOCH);
        assert_eq!(e["resource"], "/");
        assert!(e["pathParameters"].is_null());
        assert!(e["requestContext"]["identity"]["apiKeyId"].is_null());
        assert_eq!(e["body"], "/w==");
        assert_eq!(e["isBase64Encoded"], true);
    }
}
