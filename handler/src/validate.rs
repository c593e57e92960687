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
    if !config.model_allowed(model) {
        return Err(ProxyError::InvalidRequest(format!(
            "model `{model}` is not allowed on this endpoint; allowed models (ALLOWED_MODELS): {}",
            config.allowed_models_display()
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

/// Parses JSON like `serde_json::from_slice`, but refuses an object that names the same key
/// twice at any depth, also when one of them is written with escapes (`"mod\u0065l"`), since
/// parsers disagree on which value wins and the body is forwarded as sent: what the validator
/// sees must be what the upstream sees.
pub fn parse_strict_json(body: &[u8]) -> Result<Value, serde_json::Error> {
    serde_json::from_slice::<Strict>(body).map(|s| s.0)
}

/// A `Value` whose deserialisation fails on duplicate object keys.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Strict, E> {
        Ok(Strict(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Strict, E> {
        Ok(Strict(Value::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Strict, E> {
        Ok(Strict(Value::from(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Strict, E> {
        Ok(Strict(
            serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number),
        ))
    }
    fn visit_str<E>(self, v: &str) -> Result<Strict, E> {
        Ok(Strict(Value::String(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<Strict, E> {
        Ok(Strict(Value::String(v)))
    }
    fn visit_unit<E>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }
    fn visit_none<E>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Strict(Value::Array(out)))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(serde::de::Error::custom(format_args!(
                    "duplicate key `{}`: each key may appear once per object (also when written with escapes)",
                    key.chars().take(64).collect::<String>()
                )));
            }
            let Strict(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Strict(Value::Object(out)))
    }
}

/// The `anthropic-version` and `anthropic-beta` headers a Messages request is forwarded with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApiHeaders {
    /// The caller's `anthropic-version` (checked: `YYYY-MM-DD`), if any.
    pub version: Option<http::HeaderValue>,
    /// Every `anthropic-beta` header the caller sent, joined with `,` (each flag allowed
    /// by `ALLOWED_BETAS`), if any.
    pub beta: Option<http::HeaderValue>,
}

/// Checks `anthropic-version` (one value, `YYYY-MM-DD`) and every flag of every
/// `anthropic-beta` header against `ALLOWED_BETAS`.
pub fn api_headers(headers: &HeaderMap, config: &Config) -> Result<ApiHeaders, ProxyError> {
    let invalid = |m: String| ProxyError::InvalidRequest(m);
    let mut versions = headers.get_all("anthropic-version").iter();
    let version =
        match (versions.next(), versions.next()) {
            (None, _) => None,
            (Some(_), Some(_)) => return Err(invalid(
                "anthropic-version: send the header once (e.g. `anthropic-version: 2023-06-01`)"
                    .into(),
            )),
            (Some(v), None) => {
                let b = v.as_bytes();
                let date_shaped = b.len() == 10
                    && b.iter().enumerate().all(|(i, c)| match i {
                        4 | 7 => *c == b'-',
                        _ => c.is_ascii_digit(),
                    });
                if !date_shaped {
                    return Err(invalid(
                        "anthropic-version: expected a version date such as `2023-06-01`".into(),
                    ));
                }
                Some(v.clone())
            }
        };
    let mut flags: Vec<&str> = Vec::new();
    for v in headers.get_all("anthropic-beta") {
        let v = v.to_str().map_err(|_| {
            invalid(
                "anthropic-beta: the header must be visible ASCII (comma-separated flags)".into(),
            )
        })?;
        for flag in v.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            if !config.allowed_betas.iter().any(|a| a == flag) {
                return Err(invalid(format!(
                    "anthropic-beta: `{}` is not allowed on this endpoint; allowed beta flags (ALLOWED_BETAS): {}",
                    flag.chars().take(100).collect::<String>(),
                    none_if_empty(&config.allowed_betas)
                )));
            }
            if !flags.contains(&flag) {
                flags.push(flag);
            }
        }
    }
    let beta = if flags.is_empty() {
        None
    } else {
        // Visible ASCII checked above, so this is a valid header value.
        Some(
            http::HeaderValue::from_str(&flags.join(","))
                .map_err(|_| invalid("anthropic-beta: not a valid header value".into()))?,
        )
    };
    Ok(ApiHeaders { version, beta })
}

fn none_if_empty(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// Anthropic-defined tool families that run on Anthropic's side and are billed or reach out
/// beyond the model (server tools); the rest of the typed tools run on the caller's side.
/// Every typed tool needs `ALLOWED_TOOL_TYPES`; this list only explains the refusal.
pub const SERVER_TOOL_FAMILIES: &[&str] = &[
    "web_search",
    "web_fetch",
    "code_execution",
    "tool_search_tool_regex",
    "tool_search_tool_bm25",
    "mcp_toolset",
];

/// `web_search_20250305` → `web_search`: the type without its `_YYYYMMDD` version.
pub fn tool_family(ty: &str) -> &str {
    match ty.rsplit_once('_') {
        Some((family, version))
            if version.len() == 8 && version.bytes().all(|c| c.is_ascii_digit()) =>
        {
            family
        }
        _ => ty,
    }
}

/// The features a body switches on that change cost or reach: Anthropic-defined tools,
/// `mcp_servers`, `container`, Files API references and `service_tier`.
fn check_features(obj: &serde_json::Map<String, Value>, config: &Config) -> Result<(), ProxyError> {
    let invalid = |m: String| ProxyError::InvalidRequest(m);
    if let Some(tools) = obj.get("tools") {
        let tools = tools
            .as_array()
            .ok_or_else(|| invalid(format!("tools: expected an array, got {}", kind(tools))))?;
        for (i, t) in tools.iter().enumerate() {
            let t = t.as_object().ok_or_else(|| {
                invalid(format!("tools.{i}: expected an object, got {}", kind(t)))
            })?;
            let ty = match t.get("type") {
                None | Some(Value::Null) => continue,
                Some(Value::String(ty)) if ty == "custom" => continue,
                Some(Value::String(ty)) => ty,
                Some(other) => {
                    return Err(invalid(format!(
                        "tools.{i}.type: expected a string, got {}",
                        kind(other)
                    )))
                }
            };
            let family = tool_family(ty);
            if !config
                .allowed_tool_types
                .iter()
                .any(|a| a == ty || a == family)
            {
                let side = if SERVER_TOOL_FAMILIES.contains(&family) {
                    "a server tool (runs and is billed on Anthropic's side)"
                } else {
                    "an Anthropic-defined tool"
                };
                return Err(invalid(format!(
                    "tools.{i}.type: `{}` is {side} and is not allowed on this endpoint; allowed tool types (ALLOWED_TOOL_TYPES): {}; client tools with an input_schema are always allowed",
                    ty.chars().take(100).collect::<String>(),
                    none_if_empty(&config.allowed_tool_types)
                )));
            }
        }
    }
    // Bedrock's body form of `anthropic-beta` (the Bedrock provider merges it with the
    // header's flags): the same allowlist.
    if let Some(betas) = obj.get("anthropic_beta").filter(|v| !v.is_null()) {
        let flags = betas.as_array().ok_or_else(|| {
            invalid(format!(
                "anthropic_beta: expected an array of strings, got {}",
                kind(betas)
            ))
        })?;
        for flag in flags {
            let allowed = flag
                .as_str()
                .is_some_and(|f| config.allowed_betas.iter().any(|a| a == f));
            if !allowed {
                return Err(invalid(format!(
                    "anthropic_beta: {} is not allowed on this endpoint; allowed beta flags (ALLOWED_BETAS): {}",
                    flag.to_string().chars().take(100).collect::<String>(),
                    none_if_empty(&config.allowed_betas)
                )));
            }
        }
    }
    if !config.allow_mcp_servers && obj.get("mcp_servers").is_some_and(|v| !v.is_null()) {
        return Err(invalid(
            "mcp_servers: MCP connections from Anthropic's side are not allowed on this endpoint (ALLOW_MCP_SERVERS)".into(),
        ));
    }
    if !config.allow_container && obj.get("container").is_some_and(|v| !v.is_null()) {
        return Err(invalid(
            "container: code-execution containers are not allowed on this endpoint (ALLOW_CONTAINER)".into(),
        ));
    }
    if let Some(tier) = obj.get("service_tier").filter(|v| !v.is_null()) {
        let ok = tier
            .as_str()
            .is_some_and(|t| config.allowed_service_tiers.iter().any(|a| a == t));
        if !ok {
            return Err(invalid(format!(
                "service_tier: {} is not allowed on this endpoint; allowed (ALLOWED_SERVICE_TIERS): {}",
                match tier.as_str() {
                    Some(t) => format!("`{}`", t.chars().take(40).collect::<String>()),
                    None => kind(tier).to_string(),
                },
                none_if_empty(&config.allowed_service_tiers)
            )));
        }
    }
    if !config.allow_files {
        let mut places: Vec<&Value> = Vec::new();
        if let Some(m) = obj.get("messages").and_then(Value::as_array) {
            places.extend(m.iter().filter_map(|m| m.get("content")));
        }
        places.extend(obj.get("system"));
        for p in places {
            if references_file(p, 0) {
                return Err(invalid(
                    "messages: references to Files API uploads (file_id) are not allowed on this endpoint (ALLOW_FILES)".into(),
                ));
            }
        }
    }
    Ok(())
}

/// Whether content blocks (an array, or one block) reference a Files API upload: a `source`
/// of type `file`, a `container_upload` block, or such a block nested in a block's `content`
/// (tool results). Tool inputs are data, not references, and are not looked into.
fn references_file(content: &Value, depth: usize) -> bool {
    if depth > 16 {
        // Far deeper than any content the API accepts; refuse rather than recurse on.
        return true;
    }
    match content {
        Value::Array(blocks) => blocks.iter().any(|b| references_file(b, depth + 1)),
        Value::Object(block) => {
            block.get("type").and_then(Value::as_str) == Some("container_upload")
                || block.contains_key("file_id")
                || block
                    .get("source")
                    .and_then(|s| s.get("type"))
                    .and_then(Value::as_str)
                    == Some("file")
                || block
                    .get("content")
                    .is_some_and(|c| references_file(c, depth + 1))
        }
        _ => false,
    }
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
/// itself is forwarded unchanged, so fields this proxy does not know about still work; it is
/// parsed strictly ([`parse_strict_json`]), so the forwarded bytes mean what was checked.
pub fn messages_request(
    body: &[u8],
    op: Operation,
    config: &Config,
) -> Result<MessagesInfo, ProxyError> {
    let invalid = |m: String| ProxyError::InvalidRequest(m);
    let value: Value = parse_strict_json(body)
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
    check_features(obj, config)?;
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
mod tests;
