//! The payload-format-2.0 event a Function URL or an HTTP API sends the function for one
//! HTTP request: headers (cookies apart, repeated headers joined), the `x-forwarded-*` and
//! trace headers the front adds, the decoded query, the request context, and the body as
//! text or base64.

use super::ids;
use base64::Engine as _;
use serde_json::{json, Map, Value};
use std::net::SocketAddr;
use std::time::SystemTime;

/// Where an event comes from: the front (its API id and domain) and the route it matched.
pub(super) struct EventSource<'a> {
    pub account_id: &'a str,
    pub api_id: &'a str,
    pub domain: &'a str,
    pub request_id: &'a str,
    pub route_key: String,
    pub path_parameters: Option<Map<String, Value>>,
}

/// A payload-format-2.0 event, as Function URLs and HTTP APIs send it.
pub(super) fn build_event(
    src: &EventSource<'_>,
    parts: &http::request::Parts,
    body: &[u8],
    peer: SocketAddr,
    now: SystemTime,
) -> Value {
    let mut headers = Map::new();
    let mut cookies: Vec<Value> = Vec::new();
    for name in parts.headers.keys() {
        let values: Vec<String> = parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        if name == http::header::COOKIE {
            cookies.extend(
                values
                    .iter()
                    .flat_map(|v| v.split(';'))
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(|c| Value::String(c.to_string())),
            );
            continue;
        }
        headers.insert(name.as_str().to_string(), Value::String(values.join(",")));
    }
    let forwarded_for = match headers.get("x-forwarded-for").and_then(Value::as_str) {
        Some(prev) => format!("{prev}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    headers.insert("x-forwarded-for".into(), forwarded_for.into());
    headers.insert("x-forwarded-proto".into(), "http".into());
    let local_port = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.rsplit_once(':'))
        .map(|(_, p)| p.to_string())
        .unwrap_or_else(|| "80".into());
    headers.insert("x-forwarded-port".into(), local_port.into());
    headers.insert(
        "x-amzn-trace-id".into(),
        format!("Root={}", ids::trace_root(now)).into(),
    );

    let raw_path = parts.uri.path().to_string();
    let raw_query = parts.uri.query().unwrap_or("").to_string();
    let user_agent = parts
        .headers
        .get(http::header::USER_AGENT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();

    let mut event = Map::new();
    event.insert("version".into(), "2.0".into());
    event.insert("routeKey".into(), src.route_key.clone().into());
    event.insert("rawPath".into(), raw_path.clone().into());
    event.insert("rawQueryString".into(), raw_query.clone().into());
    if !cookies.is_empty() {
        event.insert("cookies".into(), Value::Array(cookies));
    }
    event.insert("headers".into(), Value::Object(headers));
    let query = query_parameters(&raw_query);
    if !query.is_empty() {
        event.insert("queryStringParameters".into(), Value::Object(query));
    }
    event.insert(
        "requestContext".into(),
        json!({
            "accountId": src.account_id,
            "apiId": src.api_id,
            "domainName": src.domain,
            "domainPrefix": src.api_id,
            "http": {
                "method": parts.method.as_str(),
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": peer.ip().to_string(),
                "userAgent": user_agent,
            },
            "requestId": src.request_id,
            "routeKey": src.route_key,
            "stage": "$default",
            "time": ids::request_time(now),
            "timeEpoch": ids::epoch_millis(now),
        }),
    );
    if let Some(params) = &src.path_parameters {
        event.insert("pathParameters".into(), Value::Object(params.clone()));
    }
    if body.is_empty() {
        event.insert("isBase64Encoded".into(), false.into());
    } else {
        let content_type = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        match text_body(content_type, body) {
            Some(text) => {
                event.insert("body".into(), text.into());
                event.insert("isBase64Encoded".into(), false.into());
            }
            None => {
                event.insert(
                    "body".into(),
                    base64::engine::general_purpose::STANDARD
                        .encode(body)
                        .into(),
                );
                event.insert("isBase64Encoded".into(), true.into());
            }
        }
    }
    Value::Object(event)
}

/// The body as text when its content type is textual (or absent) and it is UTF-8; binary
/// bodies travel base64-encoded.
fn text_body<'a>(content_type: Option<&str>, body: &'a [u8]) -> Option<&'a str> {
    let text = std::str::from_utf8(body).ok()?;
    let Some(ct) = content_type else {
        return Some(text);
    };
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let textual = mime.starts_with("text/")
        || matches!(
            mime.as_str(),
            "application/json"
                | "application/javascript"
                | "application/xml"
                | "application/yaml"
                | "application/x-yaml"
        )
        || mime.ends_with("+json")
        || mime.ends_with("+xml")
        || mime.ends_with("+yaml");
    textual.then_some(text)
}

/// `queryStringParameters`: decoded, repeated keys joined with commas.
fn query_parameters(raw: &str) -> Map<String, Value> {
    let mut out: Map<String, Value> = Map::new();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (percent_decode(k), percent_decode(v));
        match out.get_mut(&k) {
            Some(Value::String(prev)) => {
                prev.push(',');
                prev.push_str(&v);
            }
            _ => {
                out.insert(k, Value::String(v));
            }
        }
    }
    out
}

/// `%XX` decoded; a malformed escape is kept as it is.
pub(super) fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn parts(req: http::request::Builder) -> http::request::Parts {
        req.body(()).unwrap().into_parts().0
    }

    fn source(path_parameters: Option<Map<String, Value>>) -> EventSource<'static> {
        EventSource {
            account_id: "123456789012",
            api_id: "abc123",
            domain: "abc123.lambda-url.us-east-1.on.aws",
            request_id: "req-1",
            route_key: "$default".into(),
            path_parameters,
        }
    }

    #[test]
    fn query_parameters_join_repeated_keys() {
        let q = query_parameters("a=1&b=x%20y&a=2&flag");
        assert_eq!(q["a"], "1,2");
        assert_eq!(q["b"], "x y");
        assert_eq!(q["flag"], "");
    }

    #[test]
    fn percent_decode_keeps_bad_escapes() {
        assert_eq!(percent_decode("a%2Fb%zz%4"), "a/b%zz%4");
    }

    #[test]
    fn text_detection() {
        assert!(text_body(Some("application/json; charset=utf-8"), b"{}").is_some());
        assert!(text_body(Some("application/problem+json"), b"{}").is_some());
        assert!(text_body(None, b"hi").is_some());
        assert!(text_body(Some("application/octet-stream"), b"hi").is_none());
        assert!(text_body(Some("text/plain"), &[0xff, 0xfe]).is_none());
    }

    #[test]
    fn an_event_carries_the_request() {
        let p = parts(
            http::Request::post("/chat?x=1&x=2")
                .header("host", "127.0.0.1:8080")
                .header("user-agent", "test/1")
                .header("cookie", "a=1; b=2")
                .header("x-multi", "1")
                .header("x-multi", "2")
                .header("x-forwarded-for", "10.0.0.1")
                .header("content-type", "application/json"),
        );
        let peer = SocketAddr::from(([127, 0, 0, 1], 5555));
        let now = UNIX_EPOCH + Duration::from_millis(1_584_039_838_123);
        let e = build_event(&source(None), &p, br#"{"a":1}"#, peer, now);
        assert_eq!(e["version"], "2.0");
        assert_eq!(e["routeKey"], "$default");
        assert_eq!(e["rawPath"], "/chat");
        assert_eq!(e["rawQueryString"], "x=1&x=2");
        assert_eq!(e["queryStringParameters"]["x"], "1,2");
        assert_eq!(e["cookies"], json!(["a=1", "b=2"]));
        assert!(e["headers"].get("cookie").is_none());
        assert_eq!(e["headers"]["x-multi"], "1,2");
        assert_eq!(e["headers"]["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(e["headers"]["x-forwarded-port"], "8080");
        assert_eq!(e["headers"]["x-forwarded-proto"], "http");
        assert!(e["headers"]["x-amzn-trace-id"]
            .as_str()
            .unwrap()
            .starts_with("Root=1-5e6a879e-"));
        let ctx = &e["requestContext"];
        assert_eq!(ctx["http"]["method"], "POST");
        assert_eq!(ctx["http"]["sourceIp"], "127.0.0.1");
        assert_eq!(ctx["http"]["userAgent"], "test/1");
        assert_eq!(ctx["requestId"], "req-1");
        assert_eq!(ctx["domainPrefix"], "abc123");
        assert_eq!(ctx["time"], "12/Mar/2020:19:03:58 +0000");
        assert_eq!(ctx["timeEpoch"], 1_584_039_838_123u64);
        assert_eq!(e["body"], r#"{"a":1}"#);
        assert_eq!(e["isBase64Encoded"], false);
        assert!(e.get("pathParameters").is_none());
    }

    #[test]
    fn binary_bodies_travel_base64_and_path_parameters_are_kept() {
        let p = parts(http::Request::put("/files/a").header("content-type", "image/png"));
        let mut params = Map::new();
        params.insert("name".into(), "a".into());
        let peer = SocketAddr::from(([127, 0, 0, 1], 1));
        let e = build_event(&source(Some(params)), &p, &[0, 1, 2], peer, UNIX_EPOCH);
        assert_eq!(e["body"], "AAEC");
        assert_eq!(e["isBase64Encoded"], true);
        assert_eq!(e["pathParameters"]["name"], "a");
        assert_eq!(e["headers"]["x-forwarded-port"], "80");
        assert!(e.get("queryStringParameters").is_none() && e.get("cookies").is_none());

        let empty = build_event(&source(None), &p, b"", peer, UNIX_EPOCH);
        assert!(empty.get("body").is_none());
        assert_eq!(empty["isBase64Encoded"], false);
    }
}
