//! `Invoke` of a published version, answered by a stand-in that runs the version's code.
//! moto cannot run the handler (it would need Docker and Lambda's images), so the proxy
//! hands `POST /2015-03-31/functions/<name>/invocations?Qualifier=<N>` (N a version number)
//! to an [`InvokeRouter`] when a test set one ([`super::AwsProxy::route_invocations`]), e.g.
//! [`crate::versions::VersionServer`], which serves that version's code under the local
//! Lambda emulator. Other invocations go to moto as before.

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use std::future::Future;
use std::pin::Pin;

/// What `Invoke` answered: the payload, and the function error if the invocation failed
/// (`X-Amz-Function-Error`, e.g. `Unhandled`), with Lambda's request id.
#[derive(Debug, Clone)]
pub struct Invoked {
    pub payload: Bytes,
    pub function_error: Option<String>,
    pub request_id: String,
}

pub type InvokeFuture<'a> = Pin<Box<dyn Future<Output = anyhow::Result<Invoked>> + Send + 'a>>;

/// Runs an invocation of `function` version `version`.
pub trait InvokeRouter: Send + Sync {
    fn invoke<'a>(
        &'a self,
        function: &'a str,
        version: &'a str,
        payload: Bytes,
    ) -> InvokeFuture<'a>;
}

/// The function and version an `Invoke` request names, when it names a published version.
pub fn published_version(
    method: &http::Method,
    path: &str,
    query: Option<&str>,
) -> Option<(String, String)> {
    if method != http::Method::POST {
        return None;
    }
    let name = path
        .strip_prefix("/2015-03-31/functions/")?
        .strip_suffix("/invocations")?;
    let name = super::partition::url_decode(name, false);
    let (function, in_name) = match name.split_once(':') {
        Some((f, q)) if !name.starts_with("arn:") => (f.to_string(), Some(q.to_string())),
        _ => (name.clone(), None),
    };
    let version = query
        .unwrap_or_default()
        .split('&')
        .find_map(|kv| kv.strip_prefix("Qualifier="))
        .map(|q| super::partition::url_decode(q, true))
        .or(in_name)?;
    version
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then_some((function, version))
}

/// The `Invoke` response Lambda sends for `i` (200; the error type in
/// `X-Amz-Function-Error` when the function failed).
pub fn response(i: &Invoked) -> Response {
    let mut r = Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("x-amzn-requestid", i.request_id.as_str())
        .header("x-amz-executed-version", "");
    if let Some(e) = &i.function_error {
        r = r.header("x-amz-function-error", e.as_str());
    }
    r.body(Body::from(i.payload.clone())).unwrap()
}

/// Lambda's answer when the stand-in itself could not run the invocation.
pub fn service_error(message: &str) -> Response {
    Response::builder()
        .status(500)
        .header("content-type", "application/json")
        .header("x-amzn-errortype", "ServiceException")
        .body(Body::from(
            serde_json::json!({"Type": "Service", "message": message}).to_string(),
        ))
        .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_published_versions_are_routed() {
        let m = http::Method::POST;
        let p = "/2015-03-31/functions/claude-proxy-x/invocations";
        assert_eq!(
            published_version(&m, p, Some("Qualifier=3")),
            Some(("claude-proxy-x".into(), "3".into()))
        );
        assert_eq!(published_version(&m, p, Some("Qualifier=live")), None);
        assert_eq!(published_version(&m, p, None), None);
        assert_eq!(
            published_version(
                &m,
                "/2015-03-31/functions/claude-proxy-x%3A7/invocations",
                None
            ),
            Some(("claude-proxy-x".into(), "7".into()))
        );
    }
}
