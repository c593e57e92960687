//! What the function's result becomes on the wire: a buffered payload read as a payload-2.0
//! response description (or any JSON, as a `200`), and for a `RESPONSE_STREAM` Function URL
//! the `application/vnd.awslambda.http-integration-response` stream (a JSON prelude, 8 NUL
//! bytes, then the body as it arrives).

use super::invocation::{lost_stream, FunctionError, StreamEvent};
use crate::http::{full, Body, BoxError};
use base64::Engine as _;
use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Map, Value};
use tokio::sync::mpsc;

/// The `Content-Type` of a streamed HTTP response: JSON prelude, 8 NUL bytes, body.
pub(super) const HTTP_INTEGRATION: &str = "application/vnd.awslambda.http-integration-response";
const PRELUDE_DELIMITER: [u8; 8] = [0; 8];
const MAX_PRELUDE: usize = 1024 * 1024;

/// Turns a buffered function result into the HTTP response, as payload format 2.0 says:
/// an object with `statusCode` is a response description; any other JSON is a `200` with
/// that JSON as an `application/json` body.
pub(super) fn response_from_payload(payload: &[u8]) -> Result<Response<Body>, String> {
    let value: Value = serde_json::from_slice(payload)
        .map_err(|e| format!("the function's result is not JSON ({e})"))?;
    let Some(obj) = value.as_object().filter(|o| o.contains_key("statusCode")) else {
        return Ok(Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(full(Bytes::copy_from_slice(payload)))
            .expect("valid response"));
    };
    let status = status_code(&obj["statusCode"])?;
    let headers = response_headers(obj, &["headers", "multiValueHeaders"])?;
    let is_base64 = obj
        .get("isBase64Encoded")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let body = match obj.get("body") {
        None | Some(Value::Null) => Bytes::new(),
        Some(Value::String(s)) if is_base64 => Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| format!("isBase64Encoded is true but body is not base64 ({e})"))?,
        ),
        Some(Value::String(s)) => Bytes::from(s.clone()),
        Some(other) => Bytes::from(other.to_string()),
    };
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    Ok(resp)
}

/// The headers of a response description: the objects named `fields` (a value may be a
/// string, a list, or another JSON value), and `cookies` as `set-cookie`.
fn response_headers(obj: &Map<String, Value>, fields: &[&str]) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for field in fields {
        if let Some(h) = obj.get(*field).and_then(Value::as_object) {
            for (name, v) in h {
                for v in header_values(v) {
                    append_header(&mut headers, name, &v)?;
                }
            }
        }
    }
    if let Some(cookies) = obj.get("cookies").and_then(Value::as_array) {
        for c in cookies.iter().filter_map(Value::as_str) {
            append_header(&mut headers, "set-cookie", c)?;
        }
    }
    Ok(headers)
}

fn status_code(v: &Value) -> Result<StatusCode, String> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| format!("statusCode {v} is not a number"))?;
    u16::try_from(n)
        .ok()
        .and_then(|n| StatusCode::from_u16(n).ok())
        .ok_or_else(|| format!("statusCode {n} is not an HTTP status"))
}

fn header_values(v: &Value) -> Vec<String> {
    match v {
        Value::Null => Vec::new(),
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().flat_map(header_values).collect(),
        other => vec![other.to_string()],
    }
}

fn append_header(headers: &mut HeaderMap, name: &str, value: &str) -> Result<(), String> {
    let name = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{name:?} is not a valid header name"))?;
    // Framing is the server's business, not the function's.
    if matches!(
        name.as_str(),
        "content-length" | "transfer-encoding" | "connection"
    ) {
        return Ok(());
    }
    let value = HeaderValue::from_str(value)
        .map_err(|_| format!("the value of header {name} is not valid"))?;
    headers.append(name, value);
    Ok(())
}

/// A streamed response for a `RESPONSE_STREAM` Function URL: waits for the prelude (or, for
/// a non-HTTP stream, the first bytes), then forwards every chunk as it arrives. An error
/// before that point is returned; after it, it breaks the connection, as Lambda does.
pub(super) async fn stream_response(
    content_type: Option<String>,
    mut events: mpsc::Receiver<StreamEvent>,
) -> Result<Response<Body>, FunctionError> {
    let malformed = |why: &str| FunctionError {
        error_type: "Runtime.InvalidResponse".into(),
        error_message: why.to_string(),
    };
    if content_type.as_deref() == Some(HTTP_INTEGRATION) {
        let mut buf = BytesMut::new();
        loop {
            match events.recv().await {
                Some(StreamEvent::Data(b)) => {
                    buf.extend_from_slice(&b);
                    if let Some(pos) = buf
                        .windows(PRELUDE_DELIMITER.len())
                        .position(|w| w == PRELUDE_DELIMITER)
                    {
                        let prelude = buf.split_to(pos);
                        buf.advance(PRELUDE_DELIMITER.len());
                        let mut resp = prelude_response(&prelude).map_err(|e| malformed(&e))?;
                        *resp.body_mut() = stream_body(buf.freeze(), events);
                        return Ok(resp);
                    }
                    if buf.len() > MAX_PRELUDE {
                        return Err(malformed("no prelude delimiter in the first 1 MB"));
                    }
                }
                Some(StreamEvent::End) => {
                    return Err(malformed(
                        "the stream ended before the prelude delimiter (8 NUL bytes)",
                    ))
                }
                Some(StreamEvent::Error(e)) => return Err(e),
                None => return Err(lost_stream()),
            }
        }
    }
    let first = match events.recv().await {
        Some(StreamEvent::Data(b)) => Some(StreamEvent::Data(b)),
        Some(StreamEvent::End) => Some(StreamEvent::End),
        Some(StreamEvent::Error(e)) => return Err(e),
        None => return Err(lost_stream()),
    };
    let (first_bytes, ended) = match first {
        Some(StreamEvent::Data(b)) => (b, false),
        _ => (Bytes::new(), true),
    };
    let body = if ended {
        full(first_bytes)
    } else {
        stream_body(first_bytes, events)
    };
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(
            "content-type",
            content_type
                .as_deref()
                .unwrap_or("application/octet-stream"),
        )
        .body(body)
        .expect("valid response"))
}

fn prelude_response(prelude: &[u8]) -> Result<Response<Body>, String> {
    let v: Value = serde_json::from_slice(prelude)
        .map_err(|e| format!("the response prelude is not JSON ({e})"))?;
    let status = match v.get("statusCode") {
        None | Some(Value::Null) => StatusCode::OK,
        Some(s) => status_code(s)?,
    };
    let no_fields = Map::new();
    let headers = response_headers(v.as_object().unwrap_or(&no_fields), &["headers"])?;
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    Ok(resp)
}

/// A body fed by the stream events; a stream error aborts the response.
fn stream_body(first: Bytes, events: mpsc::Receiver<StreamEvent>) -> Body {
    let state = (Some(first).filter(|b| !b.is_empty()), events, false);
    let stream = futures_util::stream::unfold(state, |(first, mut rx, done)| async move {
        if done {
            return None;
        }
        if let Some(b) = first {
            return Some((Ok(Frame::data(b)), (None, rx, false)));
        }
        match rx.recv().await {
            Some(StreamEvent::Data(b)) => Some((Ok(Frame::data(b)), (None, rx, false))),
            Some(StreamEvent::End) => None,
            Some(StreamEvent::Error(e)) => {
                // Let the server flush what it already has before it breaks the connection.
                tokio::task::yield_now().await;
                Some((Err(BoxError::from(e)), (None, rx, true)))
            }
            None => {
                tokio::task::yield_now().await;
                Some((Err(BoxError::from(lost_stream())), (None, rx, true)))
            }
        }
    });
    StreamBody::new(stream).boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_response_json_is_a_200_json_body() {
        let resp = response_from_payload(br#"{"hello":"world"}"#).unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "application/json");
    }

    #[test]
    fn response_description_is_applied() {
        let resp = response_from_payload(
            br#"{"statusCode":201,"headers":{"x-a":"1","content-length":"99"},"multiValueHeaders":{"x-b":["2","3"]},"cookies":["c=1"],"body":"aGk=","isBase64Encoded":true}"#,
        )
        .unwrap();
        assert_eq!(resp.status(), 201);
        assert_eq!(resp.headers()["x-a"], "1");
        assert!(resp.headers().get("content-length").is_none());
        assert_eq!(resp.headers().get_all("x-b").iter().count(), 2);
        assert_eq!(resp.headers()["set-cookie"], "c=1");
    }

    #[test]
    fn bad_status_is_rejected() {
        assert!(response_from_payload(br#"{"statusCode":"abc"}"#).is_err());
        assert!(response_from_payload(br#"{"statusCode":1000}"#).is_err());
        assert!(response_from_payload(b"not json").is_err());
        assert!(
            response_from_payload(br#"{"statusCode":200,"headers":{"bad name":"x"}}"#).is_err()
        );
        assert!(
            response_from_payload(br#"{"statusCode":200,"body":"%%","isBase64Encoded":true}"#)
                .is_err()
        );
    }

    async fn body_of(resp: Response<Body>) -> Result<Bytes, String> {
        resp.into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .map_err(|e| e.to_string())
    }

    async fn streamed(
        content_type: Option<&str>,
        events: Vec<StreamEvent>,
    ) -> Result<Response<Body>, FunctionError> {
        let (tx, rx) = mpsc::channel(events.len() + 1);
        for e in events {
            tx.send(e).await.unwrap();
        }
        drop(tx);
        stream_response(content_type.map(str::to_string), rx).await
    }

    fn data(b: &[u8]) -> StreamEvent {
        StreamEvent::Data(Bytes::copy_from_slice(b))
    }

    #[tokio::test]
    async fn a_prelude_split_over_chunks_becomes_the_response_head() {
        let resp = streamed(
            Some(HTTP_INTEGRATION),
            vec![
                data(br#"{"statusCode":202,"headers":{"x-a":"1"},"#),
                data(b"\"cookies\":[\"c=1\"]}\0\0\0\0"),
                data(b"\0\0\0\0first "),
                data(b"second"),
                StreamEvent::End,
            ],
        )
        .await
        .unwrap();
        assert_eq!(resp.status(), 202);
        assert_eq!(resp.headers()["x-a"], "1");
        assert_eq!(resp.headers()["set-cookie"], "c=1");
        assert_eq!(body_of(resp).await.unwrap(), "first second");
    }

    #[tokio::test]
    async fn a_broken_or_missing_prelude_is_an_invalid_response() {
        let e = streamed(Some(HTTP_INTEGRATION), vec![data(b"{}"), StreamEvent::End])
            .await
            .unwrap_err();
        assert_eq!(e.error_type, "Runtime.InvalidResponse");
        let e = streamed(Some(HTTP_INTEGRATION), vec![data(b"nope\0\0\0\0\0\0\0\0")])
            .await
            .unwrap_err();
        assert!(e.error_message.contains("prelude is not JSON"), "{e}");
        let e = streamed(Some(HTTP_INTEGRATION), vec![]).await.unwrap_err();
        assert_eq!(e, lost_stream());
    }

    #[tokio::test]
    async fn other_streams_pass_through_and_a_late_error_breaks_the_body() {
        let resp = streamed(
            Some("text/plain"),
            vec![data(b"a"), data(b"b"), StreamEvent::End],
        )
        .await
        .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/plain");
        assert_eq!(body_of(resp).await.unwrap(), "ab");

        let empty = streamed(None, vec![StreamEvent::End]).await.unwrap();
        assert_eq!(empty.headers()["content-type"], "application/octet-stream");
        assert_eq!(body_of(empty).await.unwrap(), "");

        let boom = FunctionError {
            error_type: "Boom".into(),
            error_message: "late".into(),
        };
        let early = streamed(None, vec![StreamEvent::Error(boom.clone())]).await;
        assert_eq!(early.unwrap_err(), boom);
        let late = streamed(None, vec![data(b"a"), StreamEvent::Error(boom)])
            .await
            .unwrap();
        assert!(body_of(late).await.unwrap_err().contains("late"));
    }
}
