//! Checks of the stack file's values, before any call: each error names the key and what
//! to do.

use super::{
    ConcurrencySetting, CorsSection, LimitsSection, ProviderKind, ProviderSection, StackConfig,
};
use crate::names::validate_stack_name;
use anyhow::{bail, Result};

/// Retention values CloudWatch Logs accepts.
pub const LOG_RETENTION_DAYS: &[u32] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

impl StackConfig {
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
        if !self.function_url.enabled && self.api_kind() == super::ApiKind::None {
            bail!("no endpoint: enable function_url.enabled or set [api] kind = \"rest\" or \"http\" (--api rest|http)");
        }
        self.api.validate()?;
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
        self.release.validate()?;
        if let Some(a) = &self.alarms {
            a.validate()?;
        }
        if let Some(ms) = self.provider.failover_after_ms {
            if u64::from(ms) >= u64::from(f.timeout_seconds) * 1000 {
                bail!(
                    "provider.failover_after_ms = {ms} is not less than function.timeout_seconds ({} s): the fallback would get no time; lower it",
                    f.timeout_seconds
                );
            }
        }
        if l.gateway_deadline_ms == 0 || l.gateway_deadline_ms >= 29_000 {
            bail!(
                "limits.gateway_deadline_ms = {}: must be between 1 and 28999 so API Gateway (30 s) never times out first",
                l.gateway_deadline_ms
            );
        }
        Ok(())
    }
}

impl ProviderSection {
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
        if self.fallback == Some(self.kind) {
            bail!(
                "provider.fallback = \"{0}\" is the provider itself (kind = \"{0}\"): the fallback must be the other one, {1}",
                self.kind,
                match self.kind {
                    ProviderKind::Anthropic => "\"bedrock\"",
                    ProviderKind::Bedrock => "\"anthropic\"",
                }
            );
        }
        if self.fallback == Some(ProviderKind::Bedrock) && self.bedrock_models.is_empty() {
            bail!("provider.fallback = \"bedrock\" needs at least one entry in [provider.bedrock_models]: the models that fail over");
        }
        if let Some(ms) = self
            .failover_after_ms
            .filter(|ms| *ms == 0 || *ms > 900_000)
        {
            bail!("provider.failover_after_ms = {ms}: give 1 to 900000 (ms), less than function.timeout_seconds");
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

impl CorsSection {
    /// Lambda's limits on a Function URL's CORS: at most 6 methods of at most 6 characters
    /// each, origins of at most 253 characters (at most 100 of them), headers of at most
    /// 1024 characters (at most 100), `MaxAge` 0 to 86400 seconds.
    pub fn validate(&self) -> Result<()> {
        cors_list("allow_methods", &self.allow_methods, 6, |m| {
            (m.is_empty() || m.len() > 6).then(|| {
                format!(
                    "`{m}` is not a method of 1 to 6 characters (e.g. \"GET\", \"POST\", \"*\")"
                )
            })
        })?;
        cors_list("allow_origins", &self.allow_origins, 100, |o| {
            (o.is_empty() || o.len() > 253).then(|| {
                format!(
                    "an origin must be 1 to 253 characters (this one has {}: `{o}`)",
                    o.len()
                )
            })
        })?;
        cors_list("allow_headers", &self.allow_headers, 100, |h| {
            (h.len() > 1024).then(|| format!("`{h}` is longer than Lambda's 1024 characters"))
        })?;
        if let Some(m) = self.max_age_seconds.filter(|m| *m > 86400) {
            bail!("function_url.cors.max_age_seconds = {m}: Lambda accepts 0 to 86400 (seconds)");
        }
        Ok(())
    }
}

/// One CORS list against Lambda's limits: at most `max_entries`, and no entry `bad` says
/// something about.
fn cors_list(
    key: &str,
    list: &[String],
    max_entries: usize,
    bad: impl Fn(&str) -> Option<String>,
) -> Result<()> {
    if list.len() > max_entries {
        bail!(
            "function_url.cors.{key} has {} entries: Lambda accepts at most {max_entries}",
            list.len()
        );
    }
    if let Some(why) = list.iter().find_map(|v| bad(v)) {
        bail!("function_url.cors.{key}: {why}");
    }
    Ok(())
}
