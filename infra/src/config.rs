//! `stack.toml` (the documented example lives at the repository root) plus the CLI's flags.
//!
//! Every key has a default, so a missing file is a valid configuration. Unknown keys are
//! errors: a typo must not silently fall back to a default.

pub use crate::bedrock_facts::DEFAULT_BEDROCK_MODELS;
use crate::names::validate_stack_name;
use anyhow::{bail, Context, Result};
pub use artifacts::Arch;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// The whole `stack.toml`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StackConfig {
    pub stack: StackSection,
    pub function: FunctionSection,
    pub concurrency: ConcurrencySection,
    pub function_url: FunctionUrlSection,
    pub http_api: HttpApiSection,
    pub limits: LimitsSection,
    pub provider: ProviderSection,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StackSection {
    /// Stack name: every resource name is derived from it.
    pub name: String,
    /// Region used when neither `--region` nor the AWS profile/environment gives one.
    pub region: Option<String>,
}

impl Default for StackSection {
    fn default() -> Self {
        StackSection {
            name: "dev".into(),
            region: None,
        }
    }
}

/// How the handler reaches Lambda (`function.package`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Package {
    /// A zip holding `bootstrap` (the smallest, the default).
    #[default]
    Zip,
    /// `bootstrap` published as a layer version (`/opt/bootstrap`); the function's own zip
    /// holds no `bootstrap`, so Lambda runs the layer's.
    Layer,
    /// A single-manifest OCI image (static `bootstrap` on an empty base) in the stack's ECR
    /// repository, referenced by digest.
    Image,
}

impl Package {
    pub fn as_str(self) -> &'static str {
        match self {
            Package::Zip => "zip",
            Package::Layer => "layer",
            Package::Image => "image",
        }
    }

    /// Lambda's `PackageType` for this kind (`Zip` for zip and layer).
    pub fn package_type(self) -> &'static str {
        match self {
            Package::Zip | Package::Layer => "Zip",
            Package::Image => "Image",
        }
    }
}

impl fmt::Display for Package {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Package {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "zip" => Ok(Package::Zip),
            "layer" => Ok(Package::Layer),
            "image" | "container" => Ok(Package::Image),
            other => bail!("unknown package kind `{other}`: use `zip`, `layer` or `image`"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FunctionSection {
    /// `x86_64` or `arm64` (the one architecture type of the workspace, `artifacts::Arch`).
    pub architecture: Arch,
    /// `zip`, `layer` or `image`.
    pub package: Package,
    pub memory_mb: u32,
    pub timeout_seconds: u32,
    pub log_retention_days: u32,
}

impl Default for FunctionSection {
    fn default() -> Self {
        FunctionSection {
            architecture: Arch::X86_64,
            package: Package::Zip,
            memory_mb: 256,
            timeout_seconds: 120,
            log_retention_days: 14,
        }
    }
}

/// Reserved concurrency: a number, `"auto"` (derived from the rate limit) or `"none"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConcurrencySetting {
    /// Exactly this many (0 stops the function).
    Reserved(u32),
    /// ceil(requests_per_minute / 60 × expected_duration_seconds).
    Auto,
    /// No reservation: the account's unreserved pool applies.
    None,
}

impl FromStr for ConcurrencySetting {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "auto" => Ok(ConcurrencySetting::Auto),
            "none" => Ok(ConcurrencySetting::None),
            n => n
                .parse::<u32>()
                .map(ConcurrencySetting::Reserved)
                .map_err(|_| {
                    anyhow::anyhow!(
                        "invalid concurrency `{n}`: use a whole number >= 0, `auto` or `none`"
                    )
                }),
        }
    }
}

impl fmt::Display for ConcurrencySetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConcurrencySetting::Reserved(n) => write!(f, "{n}"),
            ConcurrencySetting::Auto => f.write_str("auto"),
            ConcurrencySetting::None => f.write_str("none"),
        }
    }
}

impl Serialize for ConcurrencySetting {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            ConcurrencySetting::Reserved(n) => s.serialize_u32(*n),
            other => s.serialize_str(&other.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for ConcurrencySetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(i64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) if n >= 0 && n <= u32::MAX as i64 => {
                Ok(ConcurrencySetting::Reserved(n as u32))
            }
            Raw::N(n) => Err(serde::de::Error::custom(format!(
                "concurrency.reserved = {n}: use a whole number >= 0, \"auto\" or \"none\""
            ))),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConcurrencySection {
    pub reserved: ConcurrencySetting,
    /// Your Anthropic requests-per-minute limit (used by `reserved = "auto"`).
    pub requests_per_minute: u32,
    /// Average request duration in seconds (used by `reserved = "auto"`).
    pub expected_duration_seconds: f64,
}

impl Default for ConcurrencySection {
    fn default() -> Self {
        ConcurrencySection {
            reserved: ConcurrencySetting::Auto,
            requests_per_minute: 50,
            expected_duration_seconds: 20.0,
        }
    }
}

impl ConcurrencySection {
    /// The number to reserve, if any: `auto` is the seed's "tier limit / average duration"
    /// rule, requests per second × seconds per request, rounded up.
    pub fn resolve(&self) -> Option<u32> {
        match self.reserved {
            ConcurrencySetting::Reserved(n) => Some(n),
            ConcurrencySetting::None => None,
            ConcurrencySetting::Auto => Some(auto_concurrency(
                self.requests_per_minute,
                self.expected_duration_seconds,
            )),
        }
    }
}

/// ceil(requests_per_minute / 60 × expected_duration_seconds), at least 1.
pub fn auto_concurrency(requests_per_minute: u32, expected_duration_seconds: f64) -> u32 {
    // Multiply first and allow for float noise so exact products do not round up.
    let v = (requests_per_minute as f64 * expected_duration_seconds / 60.0 - 1e-9).ceil();
    (v as u32).max(1)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum InvokeMode {
    #[serde(rename = "RESPONSE_STREAM")]
    ResponseStream,
    #[serde(rename = "BUFFERED")]
    Buffered,
}

impl InvokeMode {
    pub fn as_str(self) -> &'static str {
        match self {
            InvokeMode::ResponseStream => "RESPONSE_STREAM",
            InvokeMode::Buffered => "BUFFERED",
        }
    }
}

impl FromStr for InvokeMode {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_uppercase().replace('-', "_").as_str() {
            "RESPONSE_STREAM" | "STREAM" => Ok(InvokeMode::ResponseStream),
            "BUFFERED" => Ok(InvokeMode::Buffered),
            _ => bail!("unknown invoke mode `{s}`: use `RESPONSE_STREAM` or `BUFFERED`"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum UrlAuth {
    #[serde(rename = "NONE")]
    None,
    #[serde(rename = "AWS_IAM")]
    AwsIam,
}

impl UrlAuth {
    pub fn as_str(self) -> &'static str {
        match self {
            UrlAuth::None => "NONE",
            UrlAuth::AwsIam => "AWS_IAM",
        }
    }
}

impl FromStr for UrlAuth {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_uppercase().replace('-', "_").as_str() {
            "NONE" => Ok(UrlAuth::None),
            "AWS_IAM" | "IAM" => Ok(UrlAuth::AwsIam),
            _ => bail!("unknown URL auth `{s}`: use `NONE` or `AWS_IAM`"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsSection {
    /// Empty = no CORS configuration on the URL.
    pub allow_origins: Vec<String>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub max_age_seconds: Option<u32>,
}

impl CorsSection {
    /// Lambda's limits on a Function URL's CORS: at most 6 methods of at most 6 characters
    /// each, origins of at most 253 characters (at most 100 of them), headers of at most
    /// 1024 characters (at most 100), `MaxAge` 0 to 86400 seconds.
    pub fn validate(&self) -> Result<()> {
        if self.allow_methods.len() > 6 {
            bail!(
                "function_url.cors.allow_methods has {} entries: Lambda accepts at most 6",
                self.allow_methods.len()
            );
        }
        if let Some(m) = self
            .allow_methods
            .iter()
            .find(|m| m.is_empty() || m.len() > 6)
        {
            bail!("function_url.cors.allow_methods: `{m}` is not a method of 1 to 6 characters (e.g. \"GET\", \"POST\", \"*\")");
        }
        if self.allow_origins.len() > 100 {
            bail!(
                "function_url.cors.allow_origins has {} entries: Lambda accepts at most 100",
                self.allow_origins.len()
            );
        }
        if let Some(o) = self
            .allow_origins
            .iter()
            .find(|o| o.is_empty() || o.len() > 253)
        {
            bail!(
                "function_url.cors.allow_origins: an origin must be 1 to 253 characters (this one has {}: `{o}`)",
                o.len()
            );
        }
        if self.allow_headers.len() > 100 {
            bail!(
                "function_url.cors.allow_headers has {} entries: Lambda accepts at most 100",
                self.allow_headers.len()
            );
        }
        if let Some(h) = self.allow_headers.iter().find(|h| h.len() > 1024) {
            bail!("function_url.cors.allow_headers: `{h}` is longer than Lambda's 1024 characters");
        }
        if let Some(m) = self.max_age_seconds.filter(|m| *m > 86400) {
            bail!("function_url.cors.max_age_seconds = {m}: Lambda accepts 0 to 86400 (seconds)");
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FunctionUrlSection {
    pub enabled: bool,
    pub invoke_mode: InvokeMode,
    pub auth: UrlAuth,
    pub cors: CorsSection,
}

impl Default for FunctionUrlSection {
    fn default() -> Self {
        FunctionUrlSection {
            enabled: true,
            invoke_mode: InvokeMode::ResponseStream,
            auth: UrlAuth::None,
            cors: CorsSection::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpApiSection {
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Model allowlist; empty = the models the stack is configured with
    /// ([`StackConfig::configured_models`]); `"*"` = any model.
    pub allowed_models: Vec<String>,
    /// `anthropic-beta` flags callers may send; empty = none.
    pub allowed_betas: Vec<String>,
    /// Anthropic-defined tool types callers may declare (`web_search_20250305`, or a family
    /// such as `web_search`); empty = none. Client tools are always allowed.
    pub allowed_tool_types: Vec<String>,
    /// Whether callers may have Anthropic connect to MCP servers (`mcp_servers`).
    pub allow_mcp_servers: bool,
    /// Whether callers may reference Files API uploads.
    pub allow_files: bool,
    /// Whether callers may name a code-execution `container`.
    pub allow_container: bool,
    /// `service_tier` values callers may send; empty = the field is refused.
    pub allowed_service_tiers: Vec<String>,
    pub max_tokens_cap: u32,
    pub default_model: String,
    /// Upstream Messages API base URL; unset = https://api.anthropic.com.
    pub anthropic_base_url: Option<String>,
    /// Handler deadline for requests that arrive through API Gateway (it gives up at 30 s).
    pub gateway_deadline_ms: u32,
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            allowed_models: Vec::new(),
            allowed_betas: Vec::new(),
            allowed_tool_types: Vec::new(),
            allow_mcp_servers: false,
            allow_files: false,
            allow_container: false,
            allowed_service_tiers: Vec::new(),
            max_tokens_cap: 4096,
            default_model: "claude-haiku-4-5".into(),
            anthropic_base_url: None,
            gateway_deadline_ms: 28_000,
        }
    }
}

/// Which service answers (`provider.kind`; the function's `PROVIDER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// The Anthropic Messages API with the key stored in the stack's secret.
    #[default]
    Anthropic,
    /// Claude on Amazon Bedrock with the function role's permissions: no Anthropic key.
    Bedrock,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Bedrock => "bedrock",
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProviderKind {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "anthropic" => Ok(ProviderKind::Anthropic),
            "bedrock" => Ok(ProviderKind::Bedrock),
            other => bail!("unknown provider `{other}`: use `anthropic` or `bedrock`"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProviderSection {
    /// `anthropic` or `bedrock`.
    pub kind: ProviderKind,
    /// Region of the Bedrock calls; unset = the stack's region.
    pub bedrock_region: Option<String>,
    /// Anthropic model name → Bedrock model id, inference-profile id or ARN. The function's
    /// role may invoke exactly these (and callers may also name the ids directly).
    pub bedrock_models: std::collections::BTreeMap<String, String>,
}

impl Default for ProviderSection {
    fn default() -> Self {
        ProviderSection {
            kind: ProviderKind::Anthropic,
            bedrock_region: None,
            bedrock_models: DEFAULT_BEDROCK_MODELS
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }
}

impl ProviderSection {
    /// `BEDROCK_MODEL_MAP`: `name=id,name=id` (the handler also reads JSON).
    pub fn model_map_env(&self) -> String {
        self.bedrock_models
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn validate(&self, limits: &LimitsSection) -> Result<()> {
        if let Some(r) = &self.bedrock_region {
            let ok = r.len() >= 9
                && r.split('-').count() >= 3
                && r.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !ok {
                bail!("provider.bedrock_region = \"{r}\" is not a Region name like \"us-east-1\"");
            }
        }
        for (name, id) in &self.bedrock_models {
            if name.trim().is_empty() || name.contains([',', '=']) {
                bail!("provider.bedrock_models: the name `{name}` must be non-empty without `,` or `=`");
            }
            if let Some((prefix, _)) = id.split_once(".anthropic.") {
                let known = crate::bedrock_facts::PROFILE_REGIONS
                    .iter()
                    .any(|(p, _)| *p == prefix);
                if !id.starts_with("arn:") && !known {
                    bail!(
                        "provider.bedrock_models.\"{name}\" = \"{id}\": unknown inference-profile prefix `{prefix}` \
                         (known: {})",
                        crate::bedrock_facts::PROFILE_REGIONS.iter().map(|(p, _)| *p).collect::<Vec<_>>().join(", ")
                    );
                }
            }
            let looks_like_id = id.starts_with("arn:") || id.contains("anthropic.");
            if !looks_like_id || id.contains([',', '=', ' ', '*']) {
                bail!(
                    "provider.bedrock_models.\"{name}\" = \"{id}\": give a Bedrock model id \
                     (anthropic.claude-...), an inference-profile id (global./us./eu./apac.anthropic.claude-...) \
                     or an ARN"
                );
            }
        }
        if self.kind == ProviderKind::Bedrock {
            if self.bedrock_models.is_empty() {
                bail!("provider.kind = \"bedrock\" needs at least one entry in [provider.bedrock_models]");
            }
            let known = |m: &String| {
                m.starts_with("arn:")
                    || m.contains("anthropic.")
                    || self.bedrock_models.contains_key(m)
            };
            for m in std::iter::once(&limits.default_model).chain(&limits.allowed_models) {
                if m != "*" && !known(m) {
                    bail!(
                        "model `{m}` (limits) has no Bedrock id: add it to [provider.bedrock_models] \
                         (configured: {})",
                        self.bedrock_models.keys().cloned().collect::<Vec<_>>().join(", ")
                    );
                }
            }
        }
        Ok(())
    }
}

/// Values given on the command line; each one replaces the `stack.toml` value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    pub stack: Option<String>,
    pub region: Option<String>,
    pub memory_mb: Option<u32>,
    pub timeout_seconds: Option<u32>,
    pub architecture: Option<Arch>,
    pub package: Option<Package>,
    pub concurrency: Option<ConcurrencySetting>,
    pub requests_per_minute: Option<u32>,
    pub expected_duration_seconds: Option<f64>,
    pub invoke_mode: Option<InvokeMode>,
    pub url_auth: Option<UrlAuth>,
    pub function_url: Option<bool>,
    pub http_api: Option<bool>,
    pub allowed_models: Option<Vec<String>>,
    pub max_tokens_cap: Option<u32>,
    pub default_model: Option<String>,
    pub anthropic_base_url: Option<String>,
    pub log_retention_days: Option<u32>,
    pub provider: Option<ProviderKind>,
}

/// Retention values CloudWatch Logs accepts.
pub const LOG_RETENTION_DAYS: &[u32] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

impl StackConfig {
    /// Reads `stack.toml`; a missing file means all defaults.
    pub fn load(path: &Path) -> Result<StackConfig> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(StackConfig::default()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Self::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Parses and validates `stack.toml` text.
    pub fn parse(text: &str) -> Result<StackConfig> {
        let config: StackConfig = toml::from_str(text).map_err(|e| {
            anyhow::anyhow!(
                "{}\n(see the commented stack.toml at the repository root for every key)",
                e.to_string().trim_end()
            )
        })?;
        config.validate()?;
        Ok(config)
    }

    /// This configuration with the flags applied, validated.
    pub fn with_overrides(&self, o: &Overrides) -> Result<StackConfig> {
        let mut c = self.clone();
        if let Some(v) = &o.stack {
            c.stack.name = v.clone();
        }
        if let Some(v) = &o.region {
            c.stack.region = Some(v.clone());
        }
        if let Some(v) = o.memory_mb {
            c.function.memory_mb = v;
        }
        if let Some(v) = o.timeout_seconds {
            c.function.timeout_seconds = v;
        }
        if let Some(v) = o.architecture {
            c.function.architecture = v;
        }
        if let Some(v) = o.package {
            c.function.package = v;
        }
        if let Some(v) = o.log_retention_days {
            c.function.log_retention_days = v;
        }
        if let Some(v) = o.concurrency {
            c.concurrency.reserved = v;
        }
        if let Some(v) = o.requests_per_minute {
            c.concurrency.requests_per_minute = v;
        }
        if let Some(v) = o.expected_duration_seconds {
            c.concurrency.expected_duration_seconds = v;
        }
        if let Some(v) = o.invoke_mode {
            c.function_url.invoke_mode = v;
        }
        if let Some(v) = o.url_auth {
            c.function_url.auth = v;
        }
        if let Some(v) = o.function_url {
            c.function_url.enabled = v;
        }
        if let Some(v) = o.http_api {
            c.http_api.enabled = v;
        }
        if let Some(v) = &o.allowed_models {
            c.limits.allowed_models = v.clone();
        }
        if let Some(v) = o.max_tokens_cap {
            c.limits.max_tokens_cap = v;
        }
        if let Some(v) = &o.default_model {
            c.limits.default_model = v.clone();
        }
        if let Some(v) = &o.anthropic_base_url {
            c.limits.anthropic_base_url = Some(v.clone());
        }
        if let Some(v) = o.provider {
            c.provider.kind = v;
        }
        c.validate()?;
        Ok(c)
    }

    /// Checks every value; the error names the key and what to do.
    pub fn validate(&self) -> Result<()> {
        validate_stack_name(&self.stack.name)?;
        let f = &self.function;
        if !(128..=10240).contains(&f.memory_mb) {
            bail!(
                "function.memory_mb = {}: Lambda accepts 128 to 10240 (MB)",
                f.memory_mb
            );
        }
        if !(1..=900).contains(&f.timeout_seconds) {
            bail!(
                "function.timeout_seconds = {}: Lambda accepts 1 to 900 (seconds)",
                f.timeout_seconds
            );
        }
        if !LOG_RETENTION_DAYS.contains(&f.log_retention_days) {
            bail!(
                "function.log_retention_days = {}: CloudWatch Logs accepts one of {:?}",
                f.log_retention_days,
                LOG_RETENTION_DAYS
            );
        }
        let c = &self.concurrency;
        if c.reserved == ConcurrencySetting::Auto {
            if c.requests_per_minute == 0 {
                bail!("concurrency.requests_per_minute must be > 0 when concurrency.reserved = \"auto\"");
            }
            if !(c.expected_duration_seconds > 0.0 && c.expected_duration_seconds.is_finite()) {
                bail!("concurrency.expected_duration_seconds must be a positive number of seconds when concurrency.reserved = \"auto\"");
            }
        }
        if !self.function_url.enabled && !self.http_api.enabled {
            bail!("no endpoint: enable function_url.enabled or http_api.enabled (or both)");
        }
        self.function_url.cors.validate()?;
        let l = &self.limits;
        if l.max_tokens_cap == 0 {
            bail!("limits.max_tokens_cap must be at least 1");
        }
        if l.default_model.trim().is_empty() {
            bail!("limits.default_model must name a model, e.g. \"claude-haiku-4-5\"");
        }
        if let Some(bad) = l
            .allowed_models
            .iter()
            .find(|m| m.trim().is_empty() || m.contains(','))
        {
            bail!("limits.allowed_models contains `{bad}`: give model ids without commas, e.g. [\"claude-haiku-4-5\"]");
        }
        for (key, list) in [
            ("allowed_betas", &l.allowed_betas),
            ("allowed_tool_types", &l.allowed_tool_types),
            ("allowed_service_tiers", &l.allowed_service_tiers),
        ] {
            if let Some(bad) = list
                .iter()
                .find(|m| m.trim().is_empty() || m.contains(',') || !m.is_ascii())
            {
                bail!("limits.{key} contains `{bad}`: give names without commas, e.g. [\"web_search\"]");
            }
        }
        if !l.allowed_models.is_empty()
            && !l.allowed_models.iter().any(|m| m == "*")
            && !l.allowed_models.contains(&l.default_model)
        {
            bail!(
                "limits.default_model `{}` is not in limits.allowed_models: add it or pick one of {:?}",
                l.default_model,
                l.allowed_models
            );
        }
        if let Some(url) = &l.anthropic_base_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                bail!("limits.anthropic_base_url `{url}` must start with https:// (or http:// for a local stand-in)");
            }
        }
        self.provider.validate(l)?;
        if l.gateway_deadline_ms == 0 || l.gateway_deadline_ms >= 29_000 {
            bail!(
                "limits.gateway_deadline_ms = {}: must be between 1 and 28999 so API Gateway (30 s) never times out first",
                l.gateway_deadline_ms
            );
        }
        Ok(())
    }

    /// Warnings worth printing before a deploy (valid but probably unintended settings).
    /// The models callers may use when `limits.allowed_models` is empty: the default model,
    /// and with Bedrock every name in `[provider.bedrock_models]`.
    pub fn configured_models(&self) -> Vec<String> {
        let mut models = vec![self.limits.default_model.clone()];
        if self.provider.kind == ProviderKind::Bedrock {
            for name in self.provider.bedrock_models.keys() {
                if !models.contains(name) {
                    models.push(name.clone());
                }
            }
        }
        models
    }

    /// `ALLOWED_MODELS` as written into the function's environment.
    pub fn allowed_models_env(&self) -> String {
        if self.limits.allowed_models.is_empty() {
            self.configured_models().join(",")
        } else {
            self.limits.allowed_models.join(",")
        }
    }

    /// What the `[limits]` allowlists let callers switch on beyond tokens (each billed or
    /// reaching out on its own), for the spend bound; empty with the defaults.
    pub fn allowed_extras(&self) -> Vec<String> {
        let l = &self.limits;
        let mut out = Vec::new();
        if l.allowed_models.iter().any(|m| m == "*") {
            out.push("any model (allowed_models = [\"*\"])".to_string());
        }
        for b in &l.allowed_betas {
            out.push(format!("beta `{b}`"));
        }
        for t in &l.allowed_tool_types {
            out.push(format!("tool `{t}`"));
        }
        if l.allow_mcp_servers {
            out.push("MCP servers".into());
        }
        if l.allow_files {
            out.push("Files API uploads".into());
        }
        if l.allow_container {
            out.push("code-execution containers".into());
        }
        for t in &l.allowed_service_tiers {
            out.push(format!("service_tier `{t}`"));
        }
        out
    }

    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.concurrency.resolve() == Some(0) {
            w.push(
                "concurrency.reserved = 0 stops the function: every request will be throttled"
                    .into(),
            );
        }
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        StackConfig::default().validate().unwrap();
    }

    #[test]
    fn root_stack_toml_matches_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../stack.toml");
        let c = StackConfig::load(&path).unwrap();
        assert_eq!(
            c,
            StackConfig::default(),
            "stack.toml documents the defaults"
        );
    }

    #[test]
    fn missing_file_is_defaults() {
        let c = StackConfig::load(Path::new("/nonexistent/stack.toml")).unwrap();
        assert_eq!(c, StackConfig::default());
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let e = StackConfig::parse("[function]\nmemory = 512\n").unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("memory"), "{msg}");
        assert!(msg.contains("unknown field"), "{msg}");
    }

    #[test]
    fn ranges_are_checked() {
        let e = StackConfig::parse("[function]\nmemory_mb = 64\n").unwrap_err();
        assert!(e.to_string().contains("function.memory_mb"), "{e}");
        let e = StackConfig::parse("[function]\ntimeout_seconds = 901\n").unwrap_err();
        assert!(e.to_string().contains("function.timeout_seconds"), "{e}");
        let e = StackConfig::parse("[concurrency]\nreserved = -1\n").unwrap_err();
        assert!(format!("{e:#}").contains("concurrency"), "{e:#}");
        let e = StackConfig::parse("[function]\nlog_retention_days = 2\n").unwrap_err();
        assert!(e.to_string().contains("log_retention_days"), "{e}");
    }

    #[test]
    fn cors_limits_are_checked_before_any_call() {
        let ok = "[function_url.cors]\nallow_origins = [\"https://example.com\"]\nallow_methods = [\"GET\", \"POST\"]\nmax_age_seconds = 86400\n";
        StackConfig::parse(ok).unwrap();
        for (bad, what) in [
            ("allow_methods = [\"GET\", \"POST\", \"PUT\", \"PATCH\", \"DELETE\", \"HEAD\", \"OPTIONS\"]", "at most 6"),
            ("allow_methods = [\"OPTIONS\"]", "1 to 6 characters"),
            ("max_age_seconds = 86401", "0 to 86400"),
            ("max_age_seconds = 4294967295", "0 to 86400"),
        ] {
            let text = format!("[function_url.cors]\nallow_origins = [\"https://example.com\"]\n{bad}\n");
            let e = StackConfig::parse(&text).unwrap_err();
            assert!(format!("{e:#}").contains(what), "{bad}: {e:#}");
        }
        let long = format!("https://{}.com", "a".repeat(250));
        let text = format!("[function_url.cors]\nallow_origins = [\"{long}\"]\n");
        let e = StackConfig::parse(&text).unwrap_err();
        assert!(format!("{e:#}").contains("1 to 253 characters"), "{e:#}");
    }

    #[test]
    fn package_kinds() {
        assert_eq!(StackConfig::default().function.package, Package::Zip);
        for (text, want) in [
            ("zip", Package::Zip),
            ("layer", Package::Layer),
            ("image", Package::Image),
        ] {
            let c = StackConfig::parse(&format!("[function]\npackage = \"{text}\"\n")).unwrap();
            assert_eq!(c.function.package, want);
            assert_eq!(want.to_string(), text);
            assert_eq!(text.parse::<Package>().unwrap(), want);
        }
        assert_eq!(Package::Layer.package_type(), "Zip");
        assert_eq!(Package::Image.package_type(), "Image");
        let e = StackConfig::parse("[function]\npackage = \"docker\"\n").unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("package") && msg.contains("zip"), "{msg}");
        let c = StackConfig::default()
            .with_overrides(&Overrides {
                package: Some(Package::Image),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(c.function.package, Package::Image);
    }

    #[test]
    fn provider_section() {
        let c = StackConfig::default();
        assert_eq!(c.provider.kind, ProviderKind::Anthropic);
        let c = StackConfig::parse(
            "[provider]\nkind = \"bedrock\"\nbedrock_region = \"eu-west-1\"\n\
             [provider.bedrock_models]\nclaude-haiku-4-5 = \"eu.anthropic.claude-haiku-4-5-20251001-v1:0\"\n",
        )
        .unwrap();
        assert_eq!(c.provider.kind, ProviderKind::Bedrock);
        assert_eq!(
            c.provider.model_map_env(),
            "claude-haiku-4-5=eu.anthropic.claude-haiku-4-5-20251001-v1:0"
        );
        // The default model must have an id.
        let e = StackConfig::parse(
            "[provider]\nkind = \"bedrock\"\n[provider.bedrock_models]\nclaude-sonnet-4-5 = \"global.anthropic.claude-sonnet-4-5-20250929-v1:0\"\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("claude-haiku-4-5"), "{e}");
        let e = StackConfig::parse("[provider.bedrock_models]\nx = \"gpt-4\"\n").unwrap_err();
        assert!(e.to_string().contains("provider.bedrock_models"), "{e}");
        let e = StackConfig::parse("[provider]\nkind = \"openai\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("kind"), "{e:#}");
        let c = StackConfig::default()
            .with_overrides(&Overrides {
                provider: Some(ProviderKind::Bedrock),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(c.provider.kind, ProviderKind::Bedrock);
        assert_eq!(
            "Bedrock".parse::<ProviderKind>().unwrap(),
            ProviderKind::Bedrock
        );
    }

    #[test]
    fn concurrency_forms() {
        let c = StackConfig::parse("[concurrency]\nreserved = 7\n").unwrap();
        assert_eq!(c.concurrency.resolve(), Some(7));
        let c = StackConfig::parse("[concurrency]\nreserved = \"none\"\n").unwrap();
        assert_eq!(c.concurrency.resolve(), None);
        let c = StackConfig::parse(
            "[concurrency]\nreserved = \"auto\"\nrequests_per_minute = 50\nexpected_duration_seconds = 20\n",
        )
        .unwrap();
        // 50 / 60 × 20 = 16.67 → 17
        assert_eq!(c.concurrency.resolve(), Some(17));
        assert_eq!(auto_concurrency(4000, 30.0), 2000);
        assert_eq!(auto_concurrency(1, 0.5), 1);
        assert!("lots".parse::<ConcurrencySetting>().is_err());
    }

    #[test]
    fn zero_concurrency_warns() {
        let c = StackConfig::default()
            .with_overrides(&Overrides {
                concurrency: Some(ConcurrencySetting::Reserved(0)),
                ..Default::default()
            })
            .unwrap();
        assert!(c
            .warnings()
            .iter()
            .any(|w| w.contains("stops the function")));
    }

    #[test]
    fn overrides_replace_values_and_are_validated() {
        let o = Overrides {
            stack: Some("prod".into()),
            memory_mb: Some(1024),
            http_api: Some(true),
            ..Default::default()
        };
        let c = StackConfig::default().with_overrides(&o).unwrap();
        assert_eq!(c.stack.name, "prod");
        assert_eq!(c.function.memory_mb, 1024);
        assert!(c.http_api.enabled);
        let bad = Overrides {
            memory_mb: Some(20_000),
            ..Default::default()
        };
        assert!(StackConfig::default().with_overrides(&bad).is_err());
        let none = Overrides {
            function_url: Some(false),
            ..Default::default()
        };
        assert!(StackConfig::default().with_overrides(&none).is_err());
    }
}
