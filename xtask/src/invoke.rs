//! `cargo xtask invoke`: the post-deploy smoke test. Sends one real request to the deployed
//! endpoint and streams the answer to stdout; a non-2xx answer is an error (exit 1).
//!
//! Without `CLAUDE_PROXY_TOKEN` it makes a short-lived caller for the request
//! (`smoke-<random>`, limited to the request's model and `max_tokens`) and revokes it after,
//! whatever the outcome: the secret keeps token hashes only, so there is no stored token to
//! read, and no plaintext token is left anywhere.

use crate::caller_admin;
use crate::flags::{self, Common, OutputFormat};
use crate::stack::StackContext;
use anyhow::{bail, Context, Result};
use futures_util::StreamExt;
use handler::sse::{self, SseEvent, SseSplitter};
use infra::aws::OrNotFound;
use std::io::Write;
use std::process::ExitCode;

use crate::smoke::TOKEN_ENV;
/// How long a 401 to a just-made smoke-test caller is retried (the function re-reads its
/// secret for an unknown token at most every `handler::secrets::UNKNOWN_TOKEN_REFRESH`).
const NEW_CALLER_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

impl flags::Invoke {
    pub async fn run(self, common: &Common) -> Result<ExitCode> {
        let env_token = std::env::var(TOKEN_ENV)
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        // AWS is needed to find the URL, to read the token from the secret, or to sign.
        let needs_aws = self.url.is_none() || env_token.is_none() || self.sigv4;
        let ctx = match needs_aws {
            true => Some(StackContext::new(common).await?),
            false => None,
        };
        let target = match (&self.url, &ctx) {
            (Some(url), _) => Target {
                base: url.clone(),
                iam: false,
                api_key: None,
            },
            (None, Some(ctx)) => self.resolve_target(ctx).await?,
            (None, None) => unreachable!("AWS is connected when there is no --url"),
        };
        let sign = self.sigv4 || target.iam;
        let (token, smoke) = match (env_token, &ctx) {
            (Some(t), _) => (Some(t), None),
            (None, _) if sign => (None, None),
            // The REST API checks its API key, read from API Gateway (never printed).
            (None, _) if target.api_key.is_some() => (target.api_key.clone(), None),
            (None, Some(ctx)) => {
                let (name, token) = self.smoke_caller(ctx).await?;
                (Some(token), Some(name))
            }
            (None, None) => unreachable!("AWS is connected when there is no token"),
        };
        let result = self
            .send(common, &target, ctx.as_ref(), token, smoke.is_some())
            .await;
        if let (Some(name), Some(ctx)) = (&smoke, &ctx) {
            let lock = infra::LockOptions::new("invoke");
            let revoked = caller_admin::revoke(ctx, &lock, &|m| eprintln!("{m}"), name)
                .await
                .with_context(|| {
                    format!(
                        "revoking the smoke-test caller {name} (revoke it with `cargo xtask callers revoke {name}`)"
                    )
                });
            if let Err(e) = revoked {
                return Err(match result {
                    Ok(_) => e,
                    Err(first) => first.context(format!("{e:#}")),
                });
            }
        }
        result
    }

    /// A caller for this one request, limited to its model and `max_tokens`.
    async fn smoke_caller(&self, ctx: &StackContext) -> Result<(String, String)> {
        // Random (from the token generator's CSPRNG), not secret.
        let random = infra::secret::CallerToken::generate();
        let name = format!("smoke-{}", &infra::callers::token_sha256(&random)[..8]);
        let limits = infra::callers::CallerLimits {
            allowed_models: self.model.clone().map(|m| vec![m]),
            max_tokens: Some(u64::from(self.max_tokens)),
            ..Default::default()
        };
        let lock = infra::LockOptions::new("invoke");
        let token = caller_admin::add(ctx, &lock, &|m| eprintln!("{m}"), &name, limits)
            .await
            .with_context(|| {
                format!(
                    "making a short-lived caller for the smoke test in secret {} (or set {TOKEN_ENV} to a caller's token)",
                    ctx.secret_name()
                )
            })?;
        tracing::info!(caller = %name, "made a short-lived caller for this request");
        Ok((name, token.token.expose().to_string()))
    }

    async fn send(
        &self,
        common: &Common,
        target: &Target,
        ctx: Option<&StackContext>,
        token: Option<String>,
        new_caller: bool,
    ) -> Result<ExitCode> {
        let stream = !self.no_stream;
        let sign = self.sigv4 || target.iam;
        let url = format!("{}{}", target.base.trim_end_matches('/'), self.path);
        let body = self.body(stream);
        let body = serde_json::to_vec(&body)?;
        let mut headers: Vec<(String, String)> =
            vec![("content-type".into(), "application/json".into())];
        if stream {
            headers.push(("accept".into(), "text/event-stream".into()));
        }
        if self.path == "/v1/messages" {
            headers.push(("anthropic-version".into(), "2023-06-01".into()));
        }
        if let Some(token) = &token {
            headers.push(("x-api-key".into(), token.clone()));
        }
        tracing::info!(%url, stream, signed = sign, "sending request");

        let client = reqwest::Client::builder()
            .build()
            .context("building the HTTP client")?;
        // A caller made just now may not be known yet to a function instance that read its
        // secret moments before (it reads it again at most every few seconds when a token is
        // unknown): a 401 is retried until the caller is accepted, for a bounded time.
        let accept_by = std::time::Instant::now() + NEW_CALLER_WAIT;
        let mut wait = std::time::Duration::from_millis(500);
        let resp = loop {
            let mut headers = headers.clone();
            if sign {
                let ctx = ctx.expect("AWS is connected when signing");
                let signed = sigv4_headers(ctx.sdk_config(), &url, &headers, &body).await?;
                headers.extend(signed);
            }
            let mut req = client.post(&url).body(body.clone());
            for (k, v) in &headers {
                req = req.header(k, v);
            }
            let resp = req.send().await.with_context(|| {
                format!(
                    "sending the request to {url} (is the URL reachable from here? against an emulator, \
                     use `cargo xtask deploy --local`, which serves the function locally)"
                )
            })?;
            let refused = resp.status() == reqwest::StatusCode::UNAUTHORIZED;
            if !(new_caller && refused && std::time::Instant::now() + wait < accept_by) {
                break resp;
            }
            tracing::info!("the new caller is not accepted yet; trying again");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(std::time::Duration::from_secs(4));
        };
        let status = resp.status();
        let request_id = resp
            .headers()
            .get("request-id")
            .or_else(|| resp.headers().get("x-amzn-requestid"))
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            bail!(
                "{url} answered {status}: {}\n{}",
                text.trim(),
                hint_for(status.as_u16(), sign)
            );
        }
        let is_sse = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/event-stream"));

        if common.output == OutputFormat::Json && !is_sse {
            let value = read_json(resp).await?;
            println!("{}", serde_json::to_string_pretty(&value)?);
            return Ok(ExitCode::SUCCESS);
        }
        if is_sse {
            print_sse(resp, common.output == OutputFormat::Json).await?;
        } else {
            let value = read_json(resp).await?;
            println!("{}", reply_text(&value));
        }
        if let Some(id) = request_id {
            eprintln!("({status}, request-id {id})");
        }
        Ok(ExitCode::SUCCESS)
    }

    fn body(&self, stream: bool) -> serde_json::Value {
        crate::smoke::request_body(
            &self.path,
            &self.message,
            self.max_tokens,
            stream,
            self.model.as_deref(),
        )
    }

    async fn resolve_target(&self, ctx: &StackContext) -> Result<Target> {
        if let Some(url) = &self.url {
            return Ok(Target {
                base: url.clone(),
                iam: false,
                api_key: None,
            });
        }
        let function = ctx.function_name();
        if !self.api {
            // The URL is on the alias `live`.
            let url = ctx
                .aws
                .lambda
                .get_function_url_config()
                .function_name(&function)
                .qualifier(infra::names::ALIAS)
                .send()
                .await
                .or_not_found()
                .map_err(infra::aws::ctx(format!(
                    "lambda:GetFunctionUrlConfig {function}:{}",
                    infra::names::ALIAS
                )))?;
            if let Some(cfg) = url {
                let iam = cfg.auth_type().as_str() == "AWS_IAM";
                return Ok(Target {
                    base: cfg.function_url().to_string(),
                    iam,
                    api_key: None,
                });
            }
        }
        let mut next = None;
        loop {
            let page = ctx
                .aws
                .apigw
                .get_apis()
                .set_next_token(next)
                .send()
                .await
                .map_err(infra::aws::ctx(format!(
                    "apigateway:GetApis (looking for {function})"
                )))?;
            if let Some(api) = page
                .items()
                .iter()
                .find(|a| a.name() == Some(function.as_str()))
            {
                let endpoint = api.api_endpoint().context("the HTTP API has no endpoint")?;
                return Ok(Target {
                    base: endpoint.to_string(),
                    iam: false,
                    api_key: None,
                });
            }
            next = page.next_token().map(str::to_owned);
            if next.is_none() {
                break;
            }
        }
        if let Some(target) = rest_target(ctx).await? {
            return Ok(target);
        }
        bail!(
            "stack {:?} has no {}endpoint in {} (is it deployed? run `cargo xtask deploy`, or pass --url)",
            ctx.stack,
            if self.api { "HTTP API " } else { "" },
            ctx.where_()
        )
    }
}

struct Target {
    base: String,
    iam: bool,
    /// The REST API's key for the stack's default caller, when the target is the REST API.
    api_key: Option<String>,
}

/// The stack's REST API stage and its default caller's key (`apigateway:GET` on the key,
/// like reading the caller token from the secret), if it has a REST API.
async fn rest_target(ctx: &StackContext) -> Result<Option<Target>> {
    let name = &ctx.names.rest_api;
    let apis = infra::rest_api::list_apis(&ctx.aws).await?;
    let Some(id) = apis
        .iter()
        .find(|a| a.name() == Some(name.as_str()))
        .and_then(|a| a.id())
    else {
        return Ok(None);
    };
    let key_name = &ctx.names.default_api_key;
    let keys = ctx
        .aws
        .apigw_rest
        .get_api_keys()
        .name_query(key_name)
        .include_values(true)
        .send()
        .await
        .map_err(infra::aws::ctx(format!("apigateway:GetApiKeys {key_name}")))?;
    let api_key = keys
        .items()
        .iter()
        .filter(|k| k.name() == Some(key_name.as_str()))
        .find_map(|k| k.value().map(str::to_owned))
        .with_context(|| {
            format!("the REST API {name} has no key {key_name}: redeploy (or with --rotate-token), or pass the key in {TOKEN_ENV}")
        })?;
    Ok(Some(Target {
        base: infra::rest_api::stage_url(&ctx.aws.partition, &ctx.aws.region, id),
        iam: false,
        api_key: Some(api_key),
    }))
}

fn hint_for(status: u16, signed: bool) -> &'static str {
    match status {
        401 => "The caller token was refused: set CLAUDE_PROXY_TOKEN to a current token (`cargo xtask callers add NAME` makes one), or unset it to use a short-lived caller.",
        403 if signed => "AWS refused the signed request: your credentials need both lambda:InvokeFunctionUrl and lambda:InvokeFunction on this function (AWS_IAM URLs ask for both since October 2025).",
        403 => "AWS refused the request: the URL may use AWS_IAM auth (try --sigv4), or the public URL is missing its resource-policy statements (redeploy).",
        429 | 529 => "The upstream is rate limiting or overloaded: try again shortly.",
        _ => "See `cargo xtask logs` for the function's side.",
    }
}

/// SigV4 headers (service `lambda`) for a Function URL with AWS_IAM auth.
async fn sigv4_headers(
    config: &aws_config::SdkConfig,
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Vec<(String, String)>> {
    use aws_credential_types::provider::ProvideCredentials;
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    use aws_sigv4::sign::v4;

    let provider = config.credentials_provider().context(
        "no AWS credentials configured to sign the request (set a profile or AWS_ACCESS_KEY_ID)",
    )?;
    let credentials = provider
        .provide_credentials()
        .await
        .context("loading AWS credentials to sign the request")?;
    let region = config
        .region()
        .context("no AWS region configured to sign the request (pass --region)")?
        .to_string();
    let identity = credentials.into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&region)
        .name("lambda")
        .time(std::time::SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .context("building SigV4 signing parameters")?
        .into();
    let signable = SignableRequest::new(
        "POST",
        url,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(body),
    )
    .context("preparing the request for signing")?;
    let (instructions, _signature) = sign(signable, &params)
        .context("signing the request")?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

async fn read_json(resp: reqwest::Response) -> Result<serde_json::Value> {
    let bytes = resp.bytes().await.context("reading the answer")?;
    serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "the answer is not JSON: {}",
            String::from_utf8_lossy(&bytes)
                .chars()
                .take(500)
                .collect::<String>()
        )
    })
}

/// The text of a buffered answer (`/chat` → `reply`, `/v1/messages` → the text blocks).
fn reply_text(value: &serde_json::Value) -> String {
    if let Some(reply) = value["reply"].as_str() {
        return reply.to_string();
    }
    if let Some(blocks) = value["content"].as_array() {
        return blocks.iter().filter_map(|b| b["text"].as_str()).collect();
    }
    value.to_string()
}

/// Prints server-sent events as they arrive: the text deltas (or, with `raw`, every event).
/// Events are cut and parsed by the handler's own SSE code.
async fn print_sse(resp: reqwest::Response, raw: bool) -> Result<()> {
    let mut body = resp.bytes_stream();
    let mut events = SseSplitter::new();
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.context("the stream broke before it finished")?;
        events.push(&chunk);
        while let Some(block) = events.next_block() {
            let text = String::from_utf8_lossy(&block);
            let text = text.trim_end_matches(['\r', '\n']);
            if raw && !text.is_empty() {
                writeln!(out, "{text}\n")?;
            }
            let Some(event) = sse::parse_block(&block) else {
                continue;
            };
            print_event(&mut out, &event, raw)?;
        }
    }
    if !raw {
        writeln!(out)?;
    }
    Ok(())
}

/// Prints one event's text delta (nothing with `raw`: the block is printed whole); an
/// `error` event (by name or by its `type`) ends the command with an error.
fn print_event(out: &mut impl Write, event: &SseEvent, raw: bool) -> Result<()> {
    let data = &event.data;
    if event.event.as_deref() == Some("error") {
        out.flush()?;
        bail!("the stream ended with an error event: {data}");
    }
    if raw {
        return Ok(());
    }
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(data) {
        if v["type"] == "error" {
            out.flush()?;
            bail!("the stream ended with an error event: {data}");
        }
        let text = v["delta"]["text"].as_str().or_else(|| v["text"].as_str());
        if let Some(text) = text {
            write!(out, "{text}")?;
            out.flush()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_403_names_both_actions_an_aws_iam_url_needs() {
        let hint = hint_for(403, true);
        assert!(hint.contains("lambda:InvokeFunctionUrl"), "{hint}");
        assert!(hint.contains("lambda:InvokeFunction "), "{hint}");
    }

    #[test]
    fn prints_text_deltas_and_stops_at_an_error_event() {
        let mut splitter = SseSplitter::new();
        splitter
            .push(b"event: content_block_delta\r\ndata: {\"delta\":{\"text\":\"hi \"}}\r\n\r\n");
        splitter.push(b"event: chat\ndata: {\"text\":\"there\"}\n\n: keep-alive\n\n");
        splitter.push(
            b"event: error\ndata: {\"type\":\"error\"}\n\nevent: late\ndata: {\"text\":\"x\"}\n\n",
        );
        let mut out = Vec::new();
        let mut result = Ok(());
        while let Some(block) = splitter.next_block() {
            if let Some(event) = sse::parse_block(&block) {
                result = print_event(&mut out, &event, false);
                if result.is_err() {
                    break;
                }
            }
        }
        assert_eq!(String::from_utf8(out).unwrap(), "hi there");
        let e = result.unwrap_err().to_string();
        assert!(e.contains("error event"), "{e}");

        // An error by its type, under another event name, ends it too.
        let typed = SseEvent {
            event: Some("message".into()),
            data: r#"{"type":"error","error":{}}"#.into(),
        };
        assert!(print_event(&mut Vec::new(), &typed, false).is_err());
        // Raw output prints the blocks themselves, not the deltas.
        let delta = SseEvent {
            event: None,
            data: r#"{"delta":{"text":"x"}}"#.into(),
        };
        let mut out = Vec::new();
        print_event(&mut out, &delta, true).unwrap();
        assert!(out.is_empty());
    }

    #[tokio::test]
    async fn signs_for_the_lambda_service() {
        use aws_credential_types::provider::SharedCredentialsProvider;
        use aws_credential_types::Credentials;
        let config = aws_config::SdkConfig::builder()
            .region(aws_config::Region::new("eu-west-1"))
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "AKIDEXAMPLE",
                "secret",
                Some("session".into()),
                None,
                "test",
            )))
            .build();
        let headers = vec![("content-type".to_string(), "application/json".to_string())];
        let signed = sigv4_headers(
            &config,
            "https://abc.lambda-url.eu-west-1.on.aws/chat",
            &headers,
            b"{}",
        )
        .await
        .unwrap();
        let get = |name: &str| {
            signed
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("no {name} header in {signed:?}"))
        };
        let auth = get("authorization");
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"),
            "{auth}"
        );
        assert!(auth.contains("/eu-west-1/lambda/aws4_request"), "{auth}");
        assert!(
            auth.contains("SignedHeaders=") && auth.contains("Signature="),
            "{auth}"
        );
        assert_eq!(get("x-amz-security-token"), "session");
        assert!(!get("x-amz-date").is_empty());
    }

    #[test]
    fn extracts_reply_text() {
        assert_eq!(reply_text(&serde_json::json!({"reply": "hello"})), "hello");
        let msg = serde_json::json!({"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]});
        assert_eq!(reply_text(&msg), "ab");
    }
}
