//! The request `cargo xtask invoke` sends, shared with the deploy's smoke test: before any
//! traffic moves to a new version, `deploy` sends it that same request through the
//! version's own qualified endpoint (`Invoke` with `Qualifier=<version>`, the payload a
//! Function URL would deliver), and a failure stops the release with the request id.

use anyhow::{bail, Context, Result};
use aws_sdk_lambda::operation::RequestId;
use aws_sdk_lambda::primitives::Blob;
use infra::aws::Aws;
use infra::step::{SmokeFuture, SmokeTest};
use serde_json::{json, Value};

pub const DEFAULT_MODEL: &str = "claude-haiku-4-5";
/// Environment variable holding the caller token (tokens never go on the command line).
pub const TOKEN_ENV: &str = "CLAUDE_PROXY_TOKEN";
/// What the smoke test asks (short: it is billed like any request).
pub const SMOKE_MESSAGE: &str = "Say hello in five words.";
const SMOKE_PATH: &str = "/chat";
const SMOKE_MAX_TOKENS: u32 = 32;

/// The body of the request to `path` (`/v1/messages` takes the Messages API's shape, the
/// others the proxy's `/chat` shape).
pub fn request_body(
    path: &str,
    message: &str,
    max_tokens: u32,
    stream: bool,
    model: Option<&str>,
) -> Value {
    if path == "/v1/messages" {
        json!({
            "model": model.unwrap_or(DEFAULT_MODEL),
            "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": message}],
            "stream": stream,
        })
    } else {
        let mut body = json!({
            "message": message,
            "max_tokens": max_tokens,
            "stream": stream,
        });
        if let Some(model) = model {
            body["model"] = model.into();
        }
        body
    }
}

/// A token the smoke test can send, and the short-lived caller made for it, if one was made.
/// A secret still in the format before named callers (plaintext tokens, migrated by this
/// deploy after the function is updated) gives its newest token; otherwise a caller
/// `smoke-<random>` is added, limited to the smoke request's `max_tokens`, and [`revoke`]
/// removes it after the request: the secret keeps hashes only, and no plaintext token is left
/// at rest. Runs under the deploy's own lock.
pub async fn smoke_token(aws: &Aws, secret: &str) -> Result<(String, Option<String>)> {
    let value = infra::secret::migrate::read_value(aws, secret).await?;
    if let Some(token) = value.caller_tokens.last() {
        return Ok((token.expose().to_string(), None));
    }
    let random = infra::secret::CallerToken::generate();
    let name = format!("smoke-{}", &infra::callers::token_sha256(&random)[..8]);
    let limits = infra::callers::CallerLimits {
        allowed_models: None,
        max_tokens: Some(u64::from(SMOKE_MAX_TOKENS)),
        ..Default::default()
    };
    let now = infra::callers::now_rfc3339();
    let token = infra::secret::migrate::edit_secret_callers(aws, secret, |c| {
        Ok((infra::callers::add(c, &name, limits, &now)?, true))
    })
    .await
    .with_context(|| {
        format!("making a short-lived caller for the smoke test in secret {secret}")
    })?;
    Ok((token.expose().to_string(), Some(name)))
}

/// Removes the short-lived caller [`smoke_token`] made.
pub async fn revoke(aws: &Aws, secret: &str, name: &str) -> Result<()> {
    infra::secret::migrate::edit_secret_callers(aws, secret, |c| {
        infra::callers::revoke(c, name)?;
        Ok(((), true))
    })
    .await
    .with_context(|| {
        format!("revoking the smoke test's caller {name} (revoke it with `cargo xtask callers revoke {name}`)")
    })
}

/// The payload-2.0 event a Function URL delivers for `POST path` with these headers and body.
pub fn url_event(path: &str, headers: &[(String, String)], body: &str, request_id: &str) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let headers: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), Value::from(v.as_str())))
        .collect();
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "smoke-test",
            "domainName": "smoke-test.lambda-url.local",
            "domainPrefix": "smoke-test",
            "http": {
                "method": "POST",
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "cargo-xtask-deploy-smoke-test"
            },
            "requestId": request_id,
            "routeKey": "$default",
            "stage": "$default",
            "timeEpoch": now.as_millis() as u64
        },
        "body": body,
        "isBase64Encoded": false
    })
}

/// What the function answered: status, headers, body. Buffered answers are the JSON
/// `{statusCode, headers, body}`; a streamed answer is its JSON prelude, eight NUL bytes,
/// then the body.
pub fn parse_answer(payload: &[u8]) -> Result<(u16, Value, String)> {
    let (head, body) = match payload.windows(8).position(|w| w == [0u8; 8]) {
        Some(i) => {
            let prelude: Value = serde_json::from_slice(&payload[..i])
                .context("the streamed answer's prelude is not JSON")?;
            (
                prelude,
                String::from_utf8_lossy(&payload[i + 8..]).into_owned(),
            )
        }
        None => {
            let v: Value = serde_json::from_slice(payload).with_context(|| {
                format!(
                    "the answer is neither a response object nor a stream: {}",
                    String::from_utf8_lossy(payload)
                )
            })?;
            let body = v["body"].as_str().unwrap_or_default().to_string();
            (v, body)
        }
    };
    let status = head["statusCode"].as_u64().unwrap_or(200) as u16;
    Ok((status, head["headers"].clone(), body))
}

/// The deploy's smoke test.
#[derive(Debug, Clone)]
pub struct Smoke {
    /// The stack's secret (the caller token), when callers need one.
    pub secret: Option<String>,
}

impl SmokeTest for Smoke {
    fn check<'a>(&'a self, aws: &'a Aws, function: &'a str, version: &'a str) -> SmokeFuture<'a> {
        Box::pin(async move {
            let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
            let mut made = None;
            if let Some(secret) = &self.secret {
                let (token, caller) = smoke_token(aws, secret).await?;
                headers.push(("x-api-key".into(), token));
                made = caller.map(|name| (secret, name));
            }
            let result = self.send(aws, function, version, &headers).await;
            if let Some((secret, name)) = made {
                revoke(aws, secret, &name).await?;
            }
            result
        })
    }
}

impl Smoke {
    /// The smoke request to `function:version`; an error says what failed and the request id.
    async fn send(
        &self,
        aws: &Aws,
        function: &str,
        version: &str,
        headers: &[(String, String)],
    ) -> Result<()> {
        {
            let body = request_body(SMOKE_PATH, SMOKE_MESSAGE, SMOKE_MAX_TOKENS, false, None);
            let event = url_event(
                SMOKE_PATH,
                headers,
                &body.to_string(),
                &format!("smoke-{version}"),
            );
            let out = aws
                .lambda
                .invoke()
                .function_name(function)
                .qualifier(version)
                .payload(Blob::new(serde_json::to_vec(&event)?))
                .send()
                .await
                .map_err(infra::aws::ctx(format!(
                    "lambda:Invoke {function}:{version}"
                )))?;
            let rid = out.request_id().unwrap_or("(none)").to_string();
            let payload = out
                .payload()
                .map(|p| p.as_ref().to_vec())
                .unwrap_or_default();
            if let Some(err) = out.function_error() {
                bail!(
                    "version {version} failed the smoke request (POST {SMOKE_PATH}, as `cargo xtask invoke` sends): function error {err}: {} (request id {rid})",
                    String::from_utf8_lossy(&payload).trim()
                );
            }
            let (status, headers, body) = parse_answer(&payload).with_context(|| {
                format!("the smoke request to version {version} (request id {rid})")
            })?;
            if !(200..300).contains(&status) {
                let handler_id = headers["request-id"]
                    .as_str()
                    .map(|id| format!(", the handler's request-id {id}"))
                    .unwrap_or_default();
                bail!(
                    "version {version} answered the smoke request (POST {SMOKE_PATH}, as `cargo xtask invoke` sends) with {status}: {} (request id {rid}{handler_id})",
                    body.trim()
                );
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffered_and_streamed_answers_parse() {
        let (s, _, b) =
            parse_answer(br#"{"statusCode":502,"headers":{"request-id":"r1"},"body":"bad"}"#)
                .unwrap();
        assert_eq!((s, b.as_str()), (502, "bad"));
        let mut streamed = br#"{"statusCode":200,"headers":{}}"#.to_vec();
        streamed.extend([0u8; 8]);
        streamed.extend(b"data: hi\n\n");
        let (s, _, b) = parse_answer(&streamed).unwrap();
        assert_eq!((s, b.as_str()), (200, "data: hi\n\n"));
        assert!(parse_answer(b"not json").is_err());
    }

    #[test]
    fn the_event_is_what_a_function_url_delivers() {
        let e = url_event(
            "/chat",
            &[("Content-Type".into(), "application/json".into())],
            "{}",
            "r",
        );
        assert_eq!(e["version"], "2.0");
        assert_eq!(e["requestContext"]["http"]["method"], "POST");
        assert_eq!(e["headers"]["content-type"], "application/json");
        assert_eq!(e["rawPath"], "/chat");
    }
}
