//! Input validation and policy, before anything is sent upstream (and before money is spent).

use crate::config::Config;
use crate::error::ProxyError;
use crate::upstream::Operation;
use http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

/// Size, content type and emptiness of a POST body.
pub fn check_body(headers: &HeaderMap, body: &[u8], max_bytes: usize) -> Result<(), ProxyError> {
    if body.len() > max_bytes {
        return Err(ProxyError::RequestTooLarge {
            size: body.len(),
            limit: max_bytes,
        });
    }
    if let Some(ct) = headers.get(http::header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("").trim();
        let essence = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if essence != "application/json" && !essence.ends_with("+json") {
            return Err(ProxyError::UnsupportedMediaType(format!(
                "content type `{ct}` is not supported; send the body as JSON with `Content-Type: application/json`"
            )));
        }
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ProxyError::InvalidRequest(
            "the request body is empty; expected a JSON object".into(),
        ));
    }
    Ok(())
}

/// The model allowlist and the `max_tokens` cap.
pub fn check_policy(
    config: &Config,
    model: &str,
    max_tokens: Option<u64>,
) -> Result<(), ProxyError> {
    if !config.allowed_models.is_empty() && !config.allowed_models.iter().any(|m| m == model) {
        return Err(ProxyError::InvalidRequest(format!(
            "model `{model}` is not allowed on this endpoint; allowed models (ALLOWED_MODELS): {}",
            config.allowed_models.join(", ")
        )));
    }
    if let Some(n) = max_tokens {
        if n > config.max_tokens_cap {
            return Err(ProxyError::InvalidRequest(format!(
                "max_tokens {n} is above this endpoint's limit of {} (MAX_TOKENS_CAP)",
                config.max_tokens_cap
            )));
        }
    }
    Ok(())
}

/// `POST /chat` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatRequest {
    pub message: String,
    #[serde(default)]
    pub system: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub max_tokens: Option<u64>,
    #[serde(default)]
    pub stream: Option<bool>,
}

/// `max_tokens` for `/chat` when the caller gives none.
pub const CHAT_DEFAULT_MAX_TOKENS: u64 = 1024;

impl ChatRequest {
    /// Parses and checks a `/chat` body, applying the policy.
    pub fn parse(body: &[u8], config: &Config) -> Result<Self, ProxyError> {
        let req: ChatRequest = serde_json::from_slice(body).map_err(|e| {
            ProxyError::InvalidRequest(format!(
                "invalid /chat body: {e}; expected {{\"message\": \"...\", \"system\"?: \"...\", \"model\"?: \"...\", \"max_tokens\"?: 1024, \"stream\"?: true}}"
            ))
        })?;
        if req.message.trim().is_empty() {
            return Err(ProxyError::InvalidRequest(
                "message must not be empty".into(),
            ));
        }
        if req.model.as_deref().is_some_and(|m| m.trim().is_empty()) {
            return Err(ProxyError::InvalidRequest("model must not be empty".into()));
        }
        if req.max_tokens == Some(0) {
            return Err(ProxyError::InvalidRequest(
                "max_tokens must be at least 1".into(),
            ));
        }
        check_policy(config, &req.model(config), req.max_tokens)?;
        Ok(req)
    }

    pub fn model(&self, config: &Config) -> String {
        self.model
            .clone()
            .unwrap_or_else(|| config.default_model.clone())
    }

    pub fn max_tokens(&self, config: &Config) -> u64 {
        self.max_tokens
            .unwrap_or(CHAT_DEFAULT_MAX_TOKENS.min(config.max_tokens_cap))
    }

    /// The Messages API body for this request.
    pub fn to_messages_body(&self, config: &Config, stream: bool) -> Value {
        let mut body = serde_json::json!({
            "model": self.model(config),
            "max_tokens": self.max_tokens(config),
            "messages": [{"role": "user", "content": self.message}],
        });
        if let Some(system) = &self.system {
            body["system"] = Value::String(system.clone());
        }
        if stream {
            body["stream"] = Value::Bool(true);
        }
        body
    }
}

/// What the proxy needs to know of a Messages API request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessagesInfo {
    pub model: String,
    pub max_tokens: Option<u64>,
    pub stream: bool,
}

/// Checks a `/v1/messages` or `/v1/messages/count_tokens` body (shape and policy). The body
/// itself is forwarded unchanged, so fields this proxy does not know about still work.
pub fn messages_request(
    body: &[u8],
    op: Operation,
    config: &Config,
) -> Result<MessagesInfo, ProxyError> {
    let invalid = |m: String| ProxyError::InvalidRequest(m);
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| invalid(format!("the request body is not valid JSON: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| invalid("the request body must be a JSON object".into()))?;

    let model = match obj.get("model") {
        Some(Value::String(m)) if !m.trim().is_empty() => m.clone(),
        Some(Value::String(_)) => return Err(invalid("model: must not be empty".into())),
        Some(other) => {
            return Err(invalid(format!(
                "model: expected a string, got {}",
                kind(other)
            )))
        }
        None => return Err(invalid("model: field required".into())),
    };

    let max_tokens = match (obj.get("max_tokens"), op) {
        (Some(v), _) => match v.as_u64() {
            Some(0) => return Err(invalid("max_tokens: must be at least 1".into())),
            Some(n) => Some(n),
            None => {
                return Err(invalid(format!(
                    "max_tokens: expected a positive integer, got {}",
                    kind(v)
                )))
            }
        },
        (None, Operation::Messages) => return Err(invalid("max_tokens: field required".into())),
        (None, Operation::CountTokens) => None,
    };

    let messages = match obj.get("messages") {
        Some(Value::Array(a)) => a,
        Some(other) => {
            return Err(invalid(format!(
                "messages: expected an array, got {}",
                kind(other)
            )))
        }
        None => return Err(invalid("messages: field required".into())),
    };
    if messages.is_empty() {
        return Err(invalid(
            "messages: must contain at least one message".into(),
        ));
    }
    for (i, m) in messages.iter().enumerate() {
        let m = m
            .as_object()
            .ok_or_else(|| invalid(format!("messages.{i}: expected an object, got {}", kind(m))))?;
        match m.get("role").and_then(Value::as_str) {
            Some("user" | "assistant") => {}
            Some(r) => {
                return Err(invalid(format!(
                    "messages.{i}.role: `{r}` is not one of `user`, `assistant`"
                )))
            }
            None => {
                return Err(invalid(format!(
                    "messages.{i}.role: field required (a string)"
                )))
            }
        }
        match m.get("content") {
            Some(Value::String(_)) | Some(Value::Array(_)) => {}
            Some(other) => {
                return Err(invalid(format!(
                    "messages.{i}.content: expected a string or an array of content blocks, got {}",
                    kind(other)
                )))
            }
            None => return Err(invalid(format!("messages.{i}.content: field required"))),
        }
    }

    if let Some(system) = obj.get("system") {
        if !(system.is_string() || system.is_array()) {
            return Err(invalid(format!(
                "system: expected a string or an array of text blocks, got {}",
                kind(system)
            )));
        }
    }

    let stream = match (obj.get("stream"), op) {
        (None | Some(Value::Null), _) => false,
        (Some(Value::Bool(b)), Operation::Messages) => *b,
        (Some(Value::Bool(_)), Operation::CountTokens) => {
            return Err(invalid("stream: not supported by count_tokens".into()))
        }
        (Some(other), _) => {
            return Err(invalid(format!(
                "stream: expected a boolean, got {}",
                kind(other)
            )))
        }
    };

    check_policy(config, &model, max_tokens)?;
    Ok(MessagesInfo {
        model,
        max_tokens,
        stream,
    })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SecretConfig;

    fn config() -> Config {
        let mut c = Config::new(SecretConfig::Local {
            anthropic_api_key: "k".into(),
            caller_tokens: vec![],
        });
        c.allowed_models = vec!["claude-haiku-4-5".into()];
        c.max_tokens_cap = 1000;
        c
    }

    #[test]
    fn good_messages_request() {
        let info = messages_request(
            br#"{"model":"claude-haiku-4-5","max_tokens":10,"messages":[{"role":"user","content":"hi"}],"stream":true,"metadata":{"x":1}}"#,
            Operation::Messages,
            &config(),
        )
        .unwrap();
        assert_eq!(info.model, "claude-haiku-4-5");
        assert!(info.stream);
        messages_request(
            br#"{"model":"claude-haiku-4-5","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}"#,
            Operation::CountTokens,
            &config(),
        )
        .unwrap();
    }

    #[test]
    fn bad_messages_requests_say_what_is_wrong() {
        let cases: &[(&str, &str)] = &[
            ("{", "not valid JSON"),
            ("[]", "JSON object"),
            (
                r#"{"max_tokens":1,"messages":[{"role":"user","content":"x"}]}"#,
                "model: field required",
            ),
            (
                r#"{"model":5,"max_tokens":1,"messages":[{"role":"user","content":"x"}]}"#,
                "model: expected a string",
            ),
            (
                r#"{"model":"claude-haiku-4-5","messages":[{"role":"user","content":"x"}]}"#,
                "max_tokens: field required",
            ),
            (
                r#"{"model":"claude-haiku-4-5","max_tokens":"10","messages":[{"role":"user","content":"x"}]}"#,
                "max_tokens: expected a positive integer",
            ),
            (
                r#"{"model":"claude-haiku-4-5","max_tokens":-1,"messages":[{"role":"user","content":"x"}]}"#,
                "max_tokens: expected a positive integer",
            ),
            (
                r#"{"model":"claude-haiku-4-5","max_tokens":1,"messages":[]}"#,
                "at least one message",
            ),
            (
                r#"{"model":"claude-haiku-4-5","max_tokens":1,"messages":"hi"}"#,
                "messages: expected an array",
            ),
            (
                r#"{"model":"claude-haiku-4-5","max_tokens":1,"messages":[{"role":"system","content":"x"}]}"#,
                "messages.0.role",
            ),
            (
                r#"{"model":"claude-haiku-4-5","max_tokens":1,"messages":[{"role":"user","content":5}]}"#,
                "messages.0.content",
            ),
            (
                r#"{"model":"claude-haiku-4-5","max_tokens":1,"messages":[{"role":"user","content":"x"}],"stream":"yes"}"#,
                "stream: expected a boolean",
            ),
            (
                r#"{"model":"claude-opus-4-6","max_tokens":1,"messages":[{"role":"user","content":"x"}]}"#,
                "ALLOWED_MODELS",
            ),
            (
                r#"{"model":"claude-haiku-4-5","max_tokens":5000,"messages":[{"role":"user","content":"x"}]}"#,
                "limit of 1000 (MAX_TOKENS_CAP)",
            ),
        ];
        for (body, expected) in cases {
            let e = messages_request(body.as_bytes(), Operation::Messages, &config()).unwrap_err();
            assert_eq!(e.status(), 400, "{body}");
            assert!(e.to_string().contains(expected), "{body}: {e}");
        }
    }

    #[test]
    fn chat_requests() {
        let c = config();
        let r = ChatRequest::parse(br#"{"message":"hi"}"#, &c).unwrap();
        assert_eq!(r.max_tokens(&c), 1000);
        let body = r.to_messages_body(&c, true);
        assert_eq!(body["messages"][0]["content"], "hi");
        assert_eq!(body["stream"], true);
        for (body, expected) in [
            (r#"{"message":""}"#, "must not be empty"),
            (r#"{"message":5}"#, "invalid type"),
            (r#"{"msg":"hi"}"#, "unknown field"),
            (r#"{"message":"hi","max_tokens":0}"#, "at least 1"),
            (r#"{"message":"hi","max_tokens":100000}"#, "MAX_TOKENS_CAP"),
            (r#"{"message":"hi","model":"gpt"}"#, "ALLOWED_MODELS"),
        ] {
            let e = ChatRequest::parse(body.as_bytes(), &c)
                .unwrap_err()
                .to_string();
            assert!(e.contains(expected), "{body}: {e}");
        }
    }

    #[test]
    fn body_checks() {
        let mut h = HeaderMap::new();
        check_body(&h, b"{}", 10).unwrap();
        assert_eq!(
            check_body(&h, b"{}           ", 10).unwrap_err().status(),
            413
        );
        assert_eq!(check_body(&h, b"  ", 10).unwrap_err().status(), 400);
        h.insert("content-type", "text/plain".parse().unwrap());
        assert_eq!(check_body(&h, b"{}", 10).unwrap_err().status(), 415);
        h.insert(
            "content-type",
            "application/json; charset=utf-8".parse().unwrap(),
        );
        check_body(&h, b"{}", 10).unwrap();
    }
}
