//! The function's configuration, read from its environment (names in ARCHITECTURE.md).

use crate::error::ConfigError;
use std::time::Duration;

/// Function URL invoke mode the handler answers in (API Gateway requests are always buffered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseMode {
    Stream,
    Buffered,
}

/// Whether callers must present a caller token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerAuth {
    Token,
    /// No caller tokens (the URL uses AWS_IAM auth, which Lambda checks before us).
    None,
}

/// Where the Anthropic key and the caller tokens come from.
#[derive(Clone)]
pub enum SecretConfig {
    /// The Secrets Manager secret (`SECRET_ARN`), the only source on Lambda.
    SecretsManager { arn: String },
    /// `ANTHROPIC_API_KEY` and `CALLER_TOKEN` from the environment: local runs only.
    Local {
        anthropic_api_key: String,
        caller_tokens: Vec<String>,
    },
}

impl std::fmt::Debug for SecretConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretConfig::SecretsManager { arn } => {
                f.debug_struct("SecretsManager").field("arn", arn).finish()
            }
            SecretConfig::Local { caller_tokens, .. } => f
                .debug_struct("Local")
                .field("anthropic_api_key", &"<redacted>")
                .field(
                    "caller_tokens",
                    &format!("<{} redacted>", caller_tokens.len()),
                )
                .finish(),
        }
    }
}

/// Everything the handler reads from its environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// `ANTHROPIC_BASE_URL`, without a trailing slash.
    pub anthropic_base_url: String,
    /// `RESPONSE_MODE`.
    pub response_mode: ResponseMode,
    /// `REST_RESPONSE_MODE`: how requests through an API Gateway REST API (payload 1.0) are
    /// answered; `stream` matches an integration in `responseTransferMode: STREAM`.
    pub rest_response_mode: ResponseMode,
    /// `ALLOWED_MODELS`; empty = the configured models only ([`Config::configured_models`]:
    /// `DEFAULT_MODEL`, plus the `BEDROCK_MODEL_MAP` names with Bedrock); `*` = any model.
    pub allowed_models: Vec<String>,
    /// `ALLOWED_BETAS`: `anthropic-beta` flags callers may send; empty = none.
    pub allowed_betas: Vec<String>,
    /// `ALLOWED_TOOL_TYPES`: Anthropic-defined tool types callers may declare in `tools`
    /// (a versioned type such as `web_search_20250305`, or its family `web_search`); empty =
    /// none. Client tools (no `type`, or `type: "custom"`) are always allowed.
    pub allowed_tool_types: Vec<String>,
    /// `ALLOW_MCP_SERVERS`: whether a body may carry `mcp_servers` (Anthropic-side MCP
    /// connections to any URL).
    pub allow_mcp_servers: bool,
    /// `ALLOW_FILES`: whether content may reference Files API uploads (`source.type: "file"`,
    /// `container_upload`).
    pub allow_files: bool,
    /// `ALLOW_CONTAINER`: whether a body may name a code-execution `container`.
    pub allow_container: bool,
    /// `ALLOWED_SERVICE_TIERS`: values of `service_tier` callers may send; empty = the field
    /// is refused (the API's default applies).
    pub allowed_service_tiers: Vec<String>,
    /// `MAX_TOKENS_CAP`.
    pub max_tokens_cap: u64,
    /// `DEFAULT_MODEL`: the model for `/chat` when the caller names none.
    pub default_model: String,
    /// `CALLER_AUTH`.
    pub caller_auth: CallerAuth,
    /// `SECRET_TTL_SECONDS`.
    pub secret_ttl: Duration,
    /// `GATEWAY_DEADLINE_MS`: deadline for API Gateway requests (it gives up at 30 s).
    pub gateway_deadline: Duration,
    /// `DEADLINE_MARGIN_MS`: kept free before the Lambda deadline to answer cleanly.
    pub deadline_margin: Duration,
    /// `LOCAL_DEADLINE_MS`: request deadline of the local server (`cargo xtask dev`).
    pub local_deadline: Duration,
    /// `LOCAL_READ_TIMEOUT_MS`: how long the local server waits for a request's headers, and
    /// for its body once admitted, before it gives up on a slow client.
    pub local_read_timeout: Duration,
    /// `UPSTREAM_MAX_RETRIES`: retries after the first attempt.
    pub upstream_max_retries: u32,
    /// `MAX_REQUEST_BYTES`: largest accepted request body.
    pub max_request_bytes: usize,
    /// `SECRET_ARN`, or the local key/token.
    pub secret: SecretConfig,
    /// `PROVIDER`: the Anthropic API or Claude on Amazon Bedrock.
    pub provider: ProviderKind,
    /// `BEDROCK_REGION`, `BEDROCK_ENDPOINT_URL`, `BEDROCK_MODEL_MAP` (used with Bedrock).
    pub bedrock: BedrockConfig,
    /// `FALLBACK`: the other provider, tried when the primary fails (see `failover`).
    pub fallback: Option<ProviderKind>,
    /// `FAILOVER_AFTER_MS`: how long the primary has to answer before the fallback is
    /// tried; `None` = half of the request's remaining time.
    pub failover_after: Option<Duration>,
    /// `FAILOVER_BREAKER_FAILURES`, `FAILOVER_BREAKER_WINDOW_MS`, `FAILOVER_COOL_DOWN_MS`.
    pub breaker: crate::breaker::BreakerSettings,
}

/// Which service answers (`PROVIDER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// The Anthropic Messages API with the key from the secret.
    Anthropic,
    /// Claude on Amazon Bedrock with the function role's credentials (no Anthropic key).
    Bedrock,
}

/// Settings of the Bedrock provider.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BedrockConfig {
    /// `BEDROCK_REGION`; unset = the function's region (`AWS_REGION`).
    pub region: Option<String>,
    /// `BEDROCK_ENDPOINT_URL`: another Bedrock runtime endpoint (a local stand-in in tests);
    /// unset = `AWS_ENDPOINT_URL` when set, else the Region's Bedrock runtime endpoint.
    pub endpoint_url: Option<String>,
    /// `BEDROCK_MODEL_MAP`; `None` = the built-in table ([`crate::model_map::DEFAULT_MODEL_MAP`]).
    pub model_map: Option<crate::model_map::ModelMap>,
}

pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
pub const DEFAULT_MODEL: &str = "claude-haiku-4-5";

impl Config {
    /// Defaults with the given secret source (tests and tools set fields from here).
    pub fn new(secret: SecretConfig) -> Self {
        Config {
            anthropic_base_url: DEFAULT_BASE_URL.to_string(),
            response_mode: ResponseMode::Stream,
            rest_response_mode: ResponseMode::Stream,
            allowed_models: Vec::new(),
            allowed_betas: Vec::new(),
            allowed_tool_types: Vec::new(),
            allow_mcp_servers: false,
            allow_files: false,
            allow_container: false,
            allowed_service_tiers: Vec::new(),
            max_tokens_cap: 4096,
            default_model: DEFAULT_MODEL.to_string(),
            caller_auth: CallerAuth::Token,
            secret_ttl: Duration::from_secs(300),
            gateway_deadline: Duration::from_millis(28_000),
            deadline_margin: Duration::from_millis(1_500),
            local_deadline: Duration::from_secs(600),
            local_read_timeout: Duration::from_secs(10),
            upstream_max_retries: 2,
            max_request_bytes: 6 * 1024 * 1024,
            secret,
            provider: ProviderKind::Anthropic,
            bedrock: BedrockConfig::default(),
            fallback: None,
            failover_after: None,
            breaker: crate::breaker::BreakerSettings::default(),
        }
    }

    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `get` (the environment, or a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |name: &str| {
            get(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };

        let provider = match var("PROVIDER").map(|p| p.to_ascii_lowercase()).as_deref() {
            None | Some("anthropic") => ProviderKind::Anthropic,
            Some("bedrock") => ProviderKind::Bedrock,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "PROVIDER",
                    message: format!("`{other}`; expected `anthropic` or `bedrock`"),
                })
            }
        };
        let secret = if let Some(arn) = var("SECRET_ARN") {
            SecretConfig::SecretsManager { arn }
        } else if let Some(key) = var("ANTHROPIC_API_KEY") {
            SecretConfig::Local {
                anthropic_api_key: key,
                caller_tokens: var("CALLER_TOKEN").into_iter().collect(),
            }
        } else if provider == ProviderKind::Bedrock {
            // Bedrock needs no Anthropic key: only the caller token, for local runs.
            SecretConfig::Local {
                anthropic_api_key: String::new(),
                caller_tokens: var("CALLER_TOKEN").into_iter().collect(),
            }
        } else {
            return Err(ConfigError::NoSecretSource);
        };
        let fallback = match var("FALLBACK").map(|p| p.to_ascii_lowercase()).as_deref() {
            None | Some("none") => None,
            Some("anthropic") => Some(ProviderKind::Anthropic),
            Some("bedrock") => Some(ProviderKind::Bedrock),
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "FALLBACK",
                    message: format!("`{other}`; expected `anthropic`, `bedrock` or `none`"),
                })
            }
        };
        if fallback == Some(provider) {
            return Err(ConfigError::Invalid {
                name: "FALLBACK",
                message: "the fallback must be the other provider than PROVIDER".into(),
            });
        }
        let keyless = matches!(&secret, SecretConfig::Local { anthropic_api_key, .. } if anthropic_api_key.is_empty());
        if fallback == Some(ProviderKind::Anthropic) && keyless {
            return Err(ConfigError::NoSecretSource);
        }
        let mut c = Config::new(secret);
        c.provider = provider;
        c.fallback = fallback;
        c.breaker = crate::breaker::BreakerSettings::from_lookup(&var)?;
        if let Some(v) = var("FAILOVER_AFTER_MS") {
            c.failover_after = Some(Duration::from_millis(parse_positive(
                "FAILOVER_AFTER_MS",
                &v,
            )?));
        }
        c.bedrock.region = var("BEDROCK_REGION");
        if let Some(url) = var("BEDROCK_ENDPOINT_URL") {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(ConfigError::Invalid {
                    name: "BEDROCK_ENDPOINT_URL",
                    message: format!("`{url}` is not an http(s) URL"),
                });
            }
            c.bedrock.endpoint_url = Some(url);
        }
        if let Some(map) = var("BEDROCK_MODEL_MAP") {
            c.bedrock.model_map =
                Some(crate::model_map::ModelMap::parse(&map).map_err(|message| {
                    ConfigError::Invalid {
                        name: "BEDROCK_MODEL_MAP",
                        message,
                    }
                })?);
        }

        if let Some(url) = var("ANTHROPIC_BASE_URL") {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(ConfigError::Invalid {
                    name: "ANTHROPIC_BASE_URL",
                    message: format!("`{url}` is not an http(s) URL"),
                });
            }
            c.anthropic_base_url = url.trim_end_matches('/').to_string();
        }
        if let Some(mode) = var("RESPONSE_MODE") {
            c.response_mode = response_mode("RESPONSE_MODE", &mode)?;
        }
        if let Some(mode) = var("REST_RESPONSE_MODE") {
            c.rest_response_mode = response_mode("REST_RESPONSE_MODE", &mode)?;
        }
        if let Some(models) = var("ALLOWED_MODELS") {
            c.allowed_models = list(&models);
        }
        if let Some(v) = var("ALLOWED_BETAS") {
            c.allowed_betas = list(&v);
        }
        if let Some(v) = var("ALLOWED_TOOL_TYPES") {
            c.allowed_tool_types = list(&v);
        }
        if let Some(v) = var("ALLOWED_SERVICE_TIERS") {
            c.allowed_service_tiers = list(&v);
        }
        if let Some(v) = var("ALLOW_MCP_SERVERS") {
            c.allow_mcp_servers = parse_bool("ALLOW_MCP_SERVERS", &v)?;
        }
        if let Some(v) = var("ALLOW_FILES") {
            c.allow_files = parse_bool("ALLOW_FILES", &v)?;
        }
        if let Some(v) = var("ALLOW_CONTAINER") {
            c.allow_container = parse_bool("ALLOW_CONTAINER", &v)?;
        }
        if let Some(v) = var("MAX_TOKENS_CAP") {
            c.max_tokens_cap = parse_positive("MAX_TOKENS_CAP", &v)?;
        }
        if let Some(m) = var("DEFAULT_MODEL") {
            c.default_model = m;
        }
        if let Some(auth) = var("CALLER_AUTH") {
            c.caller_auth = match auth.to_ascii_lowercase().as_str() {
                "token" => CallerAuth::Token,
                "none" => CallerAuth::None,
                other => {
                    return Err(ConfigError::Invalid {
                        name: "CALLER_AUTH",
                        message: format!("`{other}`; expected `token` or `none`"),
                    })
                }
            };
        }
        if let Some(v) = var("SECRET_TTL_SECONDS") {
            c.secret_ttl = Duration::from_secs(parse_positive("SECRET_TTL_SECONDS", &v)?);
        }
        if let Some(v) = var("GATEWAY_DEADLINE_MS") {
            c.gateway_deadline = Duration::from_millis(parse_positive("GATEWAY_DEADLINE_MS", &v)?);
        }
        if let Some(v) = var("DEADLINE_MARGIN_MS") {
            c.deadline_margin = Duration::from_millis(parse_u64("DEADLINE_MARGIN_MS", &v)?);
        }
        if let Some(v) = var("LOCAL_DEADLINE_MS") {
            c.local_deadline = Duration::from_millis(parse_positive("LOCAL_DEADLINE_MS", &v)?);
        }
        if let Some(v) = var("LOCAL_READ_TIMEOUT_MS") {
            c.local_read_timeout =
                Duration::from_millis(parse_positive("LOCAL_READ_TIMEOUT_MS", &v)?);
        }
        if let Some(v) = var("UPSTREAM_MAX_RETRIES") {
            let n = parse_u64("UPSTREAM_MAX_RETRIES", &v)?;
            if n > 10 {
                return Err(ConfigError::Invalid {
                    name: "UPSTREAM_MAX_RETRIES",
                    message: format!("{n} is more than the maximum of 10"),
                });
            }
            c.upstream_max_retries = n as u32;
        }
        if let Some(v) = var("MAX_REQUEST_BYTES") {
            c.max_request_bytes = parse_positive("MAX_REQUEST_BYTES", &v)? as usize;
        }
        Ok(c)
    }

    /// The models callers may use when `ALLOWED_MODELS` is empty: `DEFAULT_MODEL`, and with
    /// Bedrock every name of the model map (the built-in table when none is configured).
    pub fn configured_models(&self) -> Vec<String> {
        let mut models = vec![self.default_model.clone()];
        if self.provider == ProviderKind::Bedrock {
            let names: Vec<String> = match &self.bedrock.model_map {
                Some(map) => map.entries().keys().cloned().collect(),
                None => crate::model_map::DEFAULT_MODEL_MAP
                    .iter()
                    .map(|(name, _)| name.to_string())
                    .collect(),
            };
            for n in names {
                if !models.contains(&n) {
                    models.push(n);
                }
            }
        }
        models
    }

    /// Whether callers may use `model` (`ALLOWED_MODELS`, `*` = any; empty = the configured
    /// models).
    pub fn model_allowed(&self, model: &str) -> bool {
        if self.allowed_models.is_empty() {
            return self.configured_models().iter().any(|m| m == model);
        }
        self.allowed_models.iter().any(|m| m == "*" || m == model)
    }

    /// The allowed models, for error messages.
    pub fn allowed_models_display(&self) -> String {
        if self.allowed_models.is_empty() {
            format!(
                "{} (the configured models; set ALLOWED_MODELS to change)",
                self.configured_models().join(", ")
            )
        } else {
            self.allowed_models.join(", ")
        }
    }
}

/// A comma-separated list, trimmed, empty items dropped.
fn list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(String::from)
        .collect()
}

fn parse_bool(name: &'static str, v: &str) -> Result<bool, ConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        other => Err(ConfigError::Invalid {
            name,
            message: format!("`{other}`; expected `true` or `false`"),
        }),
    }
}

fn parse_u64(name: &'static str, v: &str) -> Result<u64, ConfigError> {
    v.parse::<u64>().map_err(|_| ConfigError::Invalid {
        name,
        message: format!("`{v}` is not a non-negative integer"),
    })
}

fn parse_positive(name: &'static str, v: &str) -> Result<u64, ConfigError> {
    match parse_u64(name, v)? {
        0 => Err(ConfigError::Invalid {
            name,
            message: "must be greater than 0".into(),
        }),
        n => Ok(n),
    }
}

fn response_mode(name: &'static str, value: &str) -> Result<ResponseMode, ConfigError> {
    match value.to_ascii_lowercase().as_str() {
        "stream" | "response_stream" => Ok(ResponseMode::Stream),
        "buffered" => Ok(ResponseMode::Buffered),
        other => Err(ConfigError::Invalid {
            name,
            message: format!("`{other}`; expected `stream` or `buffered`"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn secret_arn_wins_and_defaults_apply() {
        let c = cfg(&[("SECRET_ARN", "arn:x"), ("ANTHROPIC_API_KEY", "k")]).unwrap();
        assert!(matches!(c.secret, SecretConfig::SecretsManager { .. }));
        assert_eq!(c.max_tokens_cap, 4096);
        assert_eq!(c.response_mode, ResponseMode::Stream);
        assert_eq!(c.rest_response_mode, ResponseMode::Stream);
        assert_eq!(c.caller_auth, CallerAuth::Token);
        assert_eq!(c.anthropic_base_url, DEFAULT_BASE_URL);
    }

    #[test]
    fn no_source_is_a_clear_error() {
        let e = cfg(&[]).unwrap_err().to_string();
        assert!(
            e.contains("SECRET_ARN") && e.contains("ANTHROPIC_API_KEY"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (name, value) in [
            ("RESPONSE_MODE", "fast"),
            ("REST_RESPONSE_MODE", "slow"),
            ("CALLER_AUTH", "maybe"),
            ("MAX_TOKENS_CAP", "-1"),
            ("MAX_TOKENS_CAP", "0"),
            ("SECRET_TTL_SECONDS", "soon"),
            ("ANTHROPIC_BASE_URL", "api.anthropic.com"),
            ("UPSTREAM_MAX_RETRIES", "99"),
        ] {
            let e = cfg(&[("ANTHROPIC_API_KEY", "k"), (name, value)])
                .unwrap_err()
                .to_string();
            assert!(e.contains(name), "{name}={value}: {e}");
        }
    }

    #[test]
    fn bedrock_needs_no_anthropic_key() {
        let c = cfg(&[
            ("PROVIDER", "Bedrock"),
            ("CALLER_TOKEN", "t"),
            ("BEDROCK_REGION", "eu-west-1"),
            (
                "BEDROCK_MODEL_MAP",
                "claude-haiku-4-5=eu.anthropic.claude-haiku-4-5-20251001-v1:0",
            ),
        ])
        .unwrap();
        assert_eq!(c.provider, ProviderKind::Bedrock);
        assert_eq!(c.bedrock.region.as_deref(), Some("eu-west-1"));
        assert_eq!(
            c.bedrock
                .model_map
                .unwrap()
                .resolve("claude-haiku-4-5")
                .unwrap(),
            "eu.anthropic.claude-haiku-4-5-20251001-v1:0"
        );
        match &c.secret {
            SecretConfig::Local { caller_tokens, .. } => assert_eq!(caller_tokens, &vec!["t"]),
            _ => panic!("expected local"),
        }
        let default = cfg(&[("ANTHROPIC_API_KEY", "k")]).unwrap();
        assert_eq!(default.provider, ProviderKind::Anthropic);
        assert!(
            cfg(&[("PROVIDER", "anthropic")]).is_err(),
            "Anthropic still needs a key"
        );
        for (name, value) in [
            ("PROVIDER", "openai"),
            ("BEDROCK_MODEL_MAP", "claude-haiku-4-5"),
            ("BEDROCK_ENDPOINT_URL", "localhost:1"),
        ] {
            let e = cfg(&[("PROVIDER", "bedrock"), (name, value)])
                .unwrap_err()
                .to_string();
            assert!(e.contains(name), "{name}={value}: {e}");
        }
    }

    #[test]
    fn models_default_to_the_configured_ones_and_features_to_off() {
        // An empty ALLOWED_MODELS meant any model (issue 12); now it means DEFAULT_MODEL.
        let c = cfg(&[
            ("ANTHROPIC_API_KEY", "k"),
            ("DEFAULT_MODEL", "claude-sonnet-4-5"),
        ])
        .unwrap();
        assert!(c.model_allowed("claude-sonnet-4-5"));
        assert!(!c.model_allowed("claude-opus-4-1"));
        assert!(c.allowed_betas.is_empty() && c.allowed_tool_types.is_empty());
        assert!(!c.allow_mcp_servers && !c.allow_files && !c.allow_container);
        assert!(c.allowed_service_tiers.is_empty());
        let any = cfg(&[("ANTHROPIC_API_KEY", "k"), ("ALLOWED_MODELS", "*")]).unwrap();
        assert!(any.model_allowed("claude-opus-4-1"));
        // With Bedrock, the names of the model map as well.
        let b = cfg(&[
            ("PROVIDER", "bedrock"),
            ("BEDROCK_MODEL_MAP", "claude-haiku-4-5=eu.anthropic.claude-haiku-4-5-20251001-v1:0,claude-x=arn:aws:bedrock:eu-west-1::foundation-model/x"),
        ])
        .unwrap();
        assert_eq!(b.configured_models(), vec!["claude-haiku-4-5", "claude-x"]);
        assert!(!b.model_allowed("claude-opus-4-5"));
        let on = cfg(&[
            ("ANTHROPIC_API_KEY", "k"),
            ("ALLOWED_BETAS", "a-1, b-2"),
            ("ALLOWED_TOOL_TYPES", "web_search"),
            ("ALLOWED_SERVICE_TIERS", "auto"),
            ("ALLOW_MCP_SERVERS", "true"),
            ("ALLOW_FILES", "TRUE"),
            ("ALLOW_CONTAINER", "false"),
            ("LOCAL_READ_TIMEOUT_MS", "250"),
        ])
        .unwrap();
        assert_eq!(on.allowed_betas, vec!["a-1", "b-2"]);
        assert_eq!(on.allowed_tool_types, vec!["web_search"]);
        assert_eq!(on.allowed_service_tiers, vec!["auto"]);
        assert!(on.allow_mcp_servers && on.allow_files && !on.allow_container);
        assert_eq!(on.local_read_timeout, Duration::from_millis(250));
        let e = cfg(&[("ANTHROPIC_API_KEY", "k"), ("ALLOW_FILES", "maybe")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("ALLOW_FILES"), "{e}");
    }

    #[test]
    fn lists_and_local_tokens_parse() {
        let c = cfg(&[
            ("ANTHROPIC_API_KEY", "k"),
            ("CALLER_TOKEN", "t"),
            ("ALLOWED_MODELS", " a, b ,,"),
            ("RESPONSE_MODE", "buffered"),
            ("REST_RESPONSE_MODE", "buffered"),
            ("ANTHROPIC_BASE_URL", "http://127.0.0.1:1/"),
        ])
        .unwrap();
        assert_eq!(c.allowed_models, vec!["a", "b"]);
        assert_eq!(c.response_mode, ResponseMode::Buffered);
        assert_eq!(c.rest_response_mode, ResponseMode::Buffered);
        assert_eq!(c.anthropic_base_url, "http://127.0.0.1:1");
        match &c.secret {
            SecretConfig::Local { caller_tokens, .. } => assert_eq!(caller_tokens, &vec!["t"]),
            _ => panic!("expected local"),
        }
        assert!(!format!("{c:?}").contains("\"k\""));
    }
}
