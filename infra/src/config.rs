//! `stack.toml` (the documented example lives at the repository root) plus the CLI's flags.
//!
//! Every key has a default, so a missing file is a valid configuration. Unknown keys are
//! errors: a typo must not silently fall back to a default.

pub use crate::bedrock_facts::DEFAULT_BEDROCK_MODELS;
use anyhow::{bail, Context, Result};
pub use artifacts::Arch;
pub use validate::LOG_RETENTION_DAYS;

mod alarms;
mod api;
mod release;
mod validate;
pub use alarms::AlarmsSection;
pub use api::{ApiKind, ApiSection, QuotaPeriod};
pub use release::{ReleaseSection, Strategy};
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
    pub api: ApiSection,
    pub limits: LimitsSection,
    pub provider: ProviderSection,
    pub release: ReleaseSection,
    /// `[prices]`: USD per million tokens by model (name or prefix), over the built-in table
    /// (`infra::prices`), for `cargo xtask usage` and the plan's worst case.
    pub prices: std::collections::BTreeMap<String, crate::prices::ModelPrice>,
    /// `[alarms]`: CloudWatch alarms and their SNS topic; none without the section.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alarms: Option<AlarmsSection>,
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
    /// The other provider, answering when `kind` fails after its retries (`FALLBACK`).
    pub fallback: Option<ProviderKind>,
    /// With a fallback: how long `kind` has to answer first; unset = half the request's time.
    pub failover_after_ms: Option<u32>,
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
            fallback: None,
            failover_after_ms: None,
        }
    }
}

impl ProviderSection {
    /// Whether `kind` serves this stack, as its provider or as its fallback.
    pub fn uses(&self, kind: ProviderKind) -> bool {
        self.kind == kind || self.fallback == Some(kind)
    }

    /// `BEDROCK_MODEL_MAP`: `name=id,name=id` (the handler also reads JSON).
    pub fn model_map_env(&self) -> String {
        self.bedrock_models
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
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
    /// `--http-api` / `--no-http-api`: the older spelling of `--api http` / (from http)
    /// `--api none`.
    pub http_api: Option<bool>,
    /// `--api rest|http|none`.
    pub api: Option<ApiKind>,
    pub allowed_models: Option<Vec<String>>,
    pub max_tokens_cap: Option<u32>,
    pub default_model: Option<String>,
    pub anthropic_base_url: Option<String>,
    pub log_retention_days: Option<u32>,
    pub provider: Option<ProviderKind>,
    /// `--fallback`: `Some(None)` turns a fallback of stack.toml off.
    pub fallback: Option<Option<ProviderKind>>,
    pub strategy: Option<Strategy>,
    pub keep_versions: Option<u32>,
}

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
        config.check_api_spelling()?;
        let config = config.normalized();
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
        c.set_api_kind(o.api, o.http_api);
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
        if let Some(v) = o.fallback {
            c.provider.fallback = v;
        }
        if let Some(v) = o.strategy {
            c.release.strategy = v;
        }
        if let Some(v) = o.keep_versions {
            c.release.keep_versions = v;
        }
        let c = c.normalized();
        c.validate()?;
        Ok(c)
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
        if self.provider.failover_after_ms.is_some() && self.provider.fallback.is_none() {
            w.push("provider.failover_after_ms has no effect without provider.fallback".into());
        }
        w
    }
}

#[cfg(test)]
mod tests;
