//! Requests through an API Gateway REST API (payload format 1.0): the event read into a
//! [`ProxyRequest`] and the buffered answer in the REST proxy response format.
//!
//! The event's `path` is the resource path without the stage (`/v1/messages`), which is what
//! the routes match (`lambda_http` would put the stage in front). When the method required an
//! API key, `requestContext.identity.apiKeyId` names the key API Gateway checked; the key's
//! value (`identity.apiKey`) is dropped here and never logged.

use crate::{GatewayKey, ProxyRequest};
use base64::Engine;
use bytes::Bytes;
use http::HeaderMap;
use lambda_http::aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use lambda_http::aws_lambda_events::encodings::Body as LambdaBody;
use tokio::time::Instant;

/// The request in a REST API event. An event whose body is marked base64 but is not is read
/// as an empty body (the routes then answer what they answer to a missing body).
pub fn request(ev: ApiGatewayProxyRequest, deadline: Instant) -> ProxyRequest {
    let api_key = gateway_key(&ev);
    let headers: HeaderMap = if ev.multi_value_headers.is_empty() {
        ev.headers
    } else {
        ev.multi_value_headers
    };
    let body = match ev.body {
        None => Bytes::new(),
        Some(b) if ev.is_base64_encoded => base64::engine::general_purpose::STANDARD
            .decode(b.as_bytes())
            .map(Bytes::from)
            .unwrap_or_default(),
        Some(b) => Bytes::from(b),
    };
    let path = ev
        .path
        .filter(|p| p.starts_with('/'))
        .unwrap_or_else(|| "/".to_string());
    // The query string is not part of the path (the routes take none).
    let path = path.split('?').next().unwrap_or("/").to_string();
    ProxyRequest {
        method: ev.http_method,
        path,
        headers,
        body,
        deadline,
        api_key,
    }
}

/// The API key API Gateway checked, when the event names one.
pub fn gateway_key(ev: &ApiGatewayProxyRequest) -> Option<GatewayKey> {
    let ctx = &ev.request_context;
    let key_id = ctx.identity.api_key_id.as_deref()?.trim();
    if key_id.is_empty() {
        return None;
    }
    Some(GatewayKey {
        api_id: ctx.apiid.clone().unwrap_or_default(),
        stage: ctx.stage.clone().unwrap_or_default(),
        key_id: key_id.to_string(),
    })
}

/// A buffered answer in the REST proxy response format.
pub fn response(
    status: http::StatusCode,
    headers: HeaderMap,
    body: Bytes,
) -> ApiGatewayProxyResponse {
    let mut out = ApiGatewayProxyResponse::default();
    out.status_code = status.as_u16() as i64;
    out.headers = headers;
    match String::from_utf8(body.to_vec()) {
        Ok(text) => {
            out.body = Some(LambdaBody::Text(text));
            out.is_base64_encoded = false;
        }
        Err(e) => {
            out.body = Some(LambdaBody::Binary(e.into_bytes()));
            out.is_base64_encoded = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::request::LambdaRequest;

    /// A REST API proxy event as API Gateway sends it (trimmed to what matters).
    fn event(identity: serde_json::Value, body: Option<&str>, base64: bool) -> LambdaRequest {
        let ev = serde_json::json!({
            "resource": "/{proxy+}",
            "path": "/v1/messages",
            "httpMethod": "POST",
            "headers": {"content-type": "application/json", "x-api-key": "the-key-value"},
            "multiValueHeaders": {
                "content-type": ["application/json"],
                "x-api-key": ["the-key-value"]
            },
            "queryStringParameters": null,
            "multiValueQueryStringParameters": null,
            "pathParameters": {"proxy": "v1/messages"},
            "stageVariables": null,
            "requestContext": {
                "resourceId": "abc123",
                "resourcePath": "/{proxy+}",
                "httpMethod": "POST",
                "path": "/live/v1/messages",
                "accountId": "123456789012",
                "stage": "live",
                "requestId": "r-1",
                "apiId": "a1b2c3d4e5",
                "domainName": "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com",
                "identity": identity,
            },
            "body": body,
            "isBase64Encoded": base64,
        });
        serde_json::from_value(ev).expect("a REST event parses")
    }

    fn rest(ev: LambdaRequest) -> ApiGatewayProxyRequest {
        match ev {
            LambdaRequest::ApiGatewayV1(ev) => ev,
            other => panic!("a payload-1.0 event was read as {other:?}"),
        }
    }

    #[test]
    fn the_key_id_is_kept_and_the_key_value_is_not() {
        let ev = rest(event(
            serde_json::json!({"apiKey": "the-key-value", "apiKeyId": "k1d", "sourceIp": "1.2.3.4"}),
            Some("{}"),
            false,
        ));
        let req = request(ev, Instant::now());
        assert_eq!(req.method, http::Method::POST);
        // The stage is not in the path the routes see.
        assert_eq!(req.path, "/v1/messages");
        assert_eq!(&req.body[..], b"{}");
        assert_eq!(
            req.api_key,
            Some(GatewayKey {
                api_id: "a1b2c3d4e5".into(),
                stage: "live".into(),
                key_id: "k1d".into()
            })
        );
        assert!(!format!("{:?}", req.api_key).contains("the-key-value"));
        assert_eq!(req.headers["content-type"], "application/json");
    }

    #[test]
    fn a_method_without_a_key_gives_no_gateway_key() {
        for identity in [
            serde_json::json!({"sourceIp": "1.2.3.4"}),
            serde_json::json!({"apiKey": "", "apiKeyId": ""}),
            serde_json::json!({"apiKey": null, "apiKeyId": null}),
        ] {
            let req = request(rest(event(identity, None, false)), Instant::now());
            assert_eq!(req.api_key, None);
            assert!(req.body.is_empty());
        }
    }

    #[test]
    fn base64_bodies_are_decoded() {
        let ev = rest(event(serde_json::json!({}), Some("eyJhIjoxfQ=="), true));
        assert_eq!(&request(ev, Instant::now()).body[..], br#"{"a":1}"#);
    }

    #[test]
    fn function_url_events_are_not_read_as_rest_events() {
        let ev = serde_json::json!({
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": "/v1/messages",
            "rawQueryString": "",
            "headers": {"x-api-key": "t"},
            "requestContext": {
                "accountId": "anonymous",
                "apiId": "u",
                "domainName": "u.lambda-url.us-east-1.on.aws",
                "http": {"method": "POST", "path": "/v1/messages", "protocol": "HTTP/1.1",
                         "sourceIp": "1.2.3.4", "userAgent": "x"},
                "requestId": "r", "routeKey": "$default", "stage": "$default",
                "time": "04/Dec/2026:18:00:00 +0000", "timeEpoch": 0
            },
            "isBase64Encoded": false
        });
        let ev: LambdaRequest = serde_json::from_value(ev).unwrap();
        assert!(matches!(ev, LambdaRequest::ApiGatewayV2(_)));
    }

    #[test]
    fn buffered_answers_use_the_rest_format() {
        let out = response(
            http::StatusCode::CREATED,
            HeaderMap::new(),
            Bytes::from("hi"),
        );
        let v = serde_json::to_value(&out).unwrap();
        assert_eq!(v["statusCode"], 201);
        assert_eq!(v["body"], "hi");
        assert_eq!(v["isBase64Encoded"], false);
        assert!(v.get("cookies").is_none(), "{v}");
    }
}
