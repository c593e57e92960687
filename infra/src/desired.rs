//! Desired state: `stack.toml` + flags + the artifact + the secret input, as data. It sits
//! right above the stack file: each resource module builds its own spec from a
//! [`StackSpec`], and the plan collects them.

use crate::artifact::Artifact;
use crate::config::{StackConfig, UrlAuth};
use crate::credentials::SecretInput;
use crate::names::Names;
use crate::step::SmokeTest;
use anyhow::Result;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What the stack should look like. `spec == None` means "nothing" (teardown).
#[derive(Debug, Clone)]
pub struct Desired {
    pub stack: String,
    pub names: Names,
    pub spec: Option<StackSpec>,
}

#[derive(Debug, Clone)]
pub struct StackSpec {
    /// The configuration with flags applied, validated.
    pub config: StackConfig,
    /// Resolved reserved concurrency (`auto` computed), `None` = no reservation.
    pub reserved_concurrency: Option<u32>,
    /// The zip holding `bootstrap`: the function's code (`package = "zip"`) or the layer's
    /// content (`package = "layer"`).
    pub artifact: Option<Artifact>,
    /// The container image (`package = "image"`), from the static `bootstrap`.
    pub image: Option<artifacts::Image>,
    pub secret: SecretInput,
    /// RFC 3339 time for the `created-at` tag of resources created now.
    pub created_at: String,
    /// The commit the code was built from, when known: written into the description of
    /// the version a deploy publishes (`cargo xtask releases` shows it).
    pub commit: Option<String>,
    /// The check a new version passes before it gets any traffic (`None`: skipped,
    /// `--skip-smoke-test`).
    pub smoke_test: Option<Arc<dyn SmokeTest>>,
}

impl Desired {
    /// The stack `config` describes (stack.toml with the flags already merged in, once:
    /// `StackConfig::with_overrides`), deploying `artifact` with `secret`.
    pub fn new(
        config: StackConfig,
        artifact: Option<&Artifact>,
        secret: SecretInput,
    ) -> Result<Desired> {
        config.validate()?;
        let stack = config.stack.name.clone();
        Ok(Desired {
            names: Names::new(&stack),
            spec: Some(StackSpec {
                reserved_concurrency: config.concurrency.resolve(),
                artifact: artifact.cloned(),
                image: None,
                secret,
                created_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                    .to_string(),
                commit: None,
                smoke_test: None,
                config,
            }),
            stack,
        })
    }

    /// Nothing at all: the plan against this deletes the whole stack.
    pub fn empty(stack: &str) -> Result<Desired> {
        crate::names::validate_stack_name(stack)?;
        Ok(Desired {
            stack: stack.to_string(),
            names: Names::new(stack),
            spec: None,
        })
    }

    /// Sets the container image deployed when `package = "image"`.
    pub fn with_image(mut self, image: artifacts::Image) -> Desired {
        if let Some(s) = &mut self.spec {
            s.image = Some(image);
        }
        self
    }

    /// The commit the code was built from (into the published version's description).
    pub fn with_commit(mut self, commit: Option<String>) -> Desired {
        if let Some(s) = &mut self.spec {
            s.commit = commit;
        }
        self
    }

    /// The smoke test a new version must pass before the alias moves to it.
    pub fn with_smoke_test(mut self, check: Arc<dyn SmokeTest>) -> Desired {
        if let Some(s) = &mut self.spec {
            s.smoke_test = Some(check);
        }
        self
    }

    /// Replaces the `created-at` timestamp (deterministic tests and snapshots).
    pub fn with_created_at(mut self, at: &str) -> Desired {
        if let Some(s) = &mut self.spec {
            s.created_at = at.to_string();
        }
        self
    }
}

impl StackSpec {
    /// `CALLER_AUTH`: tokens are checked whenever any endpoint is public
    /// (a NONE URL, or the HTTP API which has no authorizer).
    pub fn caller_auth(&self) -> &'static str {
        let url = &self.config.function_url;
        let public_url = url.enabled && url.auth == UrlAuth::None;
        if public_url || self.config.http_api.enabled {
            "token"
        } else {
            "none"
        }
    }

    /// The function's environment (non-secret values only; the handler's contract in
    /// ARCHITECTURE.md). `secret_arn` may be a placeholder while planning.
    pub fn env(&self, secret_arn: &str) -> BTreeMap<String, String> {
        let c = &self.config;
        let mut env = BTreeMap::new();
        env.insert("SECRET_ARN".into(), secret_arn.to_string());
        let mode = if c.function_url.enabled
            && c.function_url.invoke_mode == crate::config::InvokeMode::ResponseStream
        {
            "stream"
        } else {
            "buffered"
        };
        env.insert("RESPONSE_MODE".into(), mode.into());
        env.insert("ALLOWED_MODELS".into(), c.allowed_models_env());
        // The other allowlists only when the owner opened them: unset is the handler's
        // closed default (ARCHITECTURE.md), and the environment is limited to 4 KB.
        let l = &c.limits;
        for (name, list) in [
            ("ALLOWED_BETAS", &l.allowed_betas),
            ("ALLOWED_TOOL_TYPES", &l.allowed_tool_types),
            ("ALLOWED_SERVICE_TIERS", &l.allowed_service_tiers),
        ] {
            if !list.is_empty() {
                env.insert(name.into(), list.join(","));
            }
        }
        for (name, on) in [
            ("ALLOW_MCP_SERVERS", l.allow_mcp_servers),
            ("ALLOW_FILES", l.allow_files),
            ("ALLOW_CONTAINER", l.allow_container),
        ] {
            if on {
                env.insert(name.into(), "true".into());
            }
        }
        env.insert("MAX_TOKENS_CAP".into(), c.limits.max_tokens_cap.to_string());
        env.insert("DEFAULT_MODEL".into(), c.limits.default_model.clone());
        env.insert("CALLER_AUTH".into(), self.caller_auth().into());
        env.insert(
            "GATEWAY_DEADLINE_MS".into(),
            c.limits.gateway_deadline_ms.to_string(),
        );
        if let Some(url) = &c.limits.anthropic_base_url {
            env.insert("ANTHROPIC_BASE_URL".into(), url.clone());
        }
        if c.provider.kind == crate::config::ProviderKind::Bedrock {
            env.insert("PROVIDER".into(), "bedrock".into());
        }
        if let Some(fallback) = c.provider.fallback {
            env.insert("FALLBACK".into(), fallback.as_str().into());
            if let Some(ms) = c.provider.failover_after_ms {
                env.insert("FAILOVER_AFTER_MS".into(), ms.to_string());
            }
        }
        if c.provider.uses(crate::config::ProviderKind::Bedrock) {
            env.insert("BEDROCK_MODEL_MAP".into(), c.provider.model_map_env());
            if let Some(region) = &c.provider.bedrock_region {
                env.insert("BEDROCK_REGION".into(), region.clone());
            }
        }
        env
    }
}
