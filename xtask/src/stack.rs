//! What every stack command starts from: stack.toml + flags resolved into a configuration,
//! the stack's names, and one AWS connection.

use crate::flags::{Common, StackArgs};
use anyhow::{Context, Result};
use infra::aws::{Aws, AwsOptions};
use infra::config::{Overrides, StackConfig};
use infra::names::Names;

pub struct StackContext {
    pub stack: String,
    pub names: Names,
    /// stack.toml with the flags merged in, once ([`load_config`]): the one configuration
    /// every later step reads.
    pub config: StackConfig,
    pub aws: Aws,
    endpoint_url: Option<String>,
}

impl StackContext {
    /// For commands that only need the stack's name and AWS (invoke, logs, teardown).
    pub async fn new(common: &Common) -> Result<StackContext> {
        Self::connect(common, load_config(common, None)?).await
    }

    /// For plan and deploy: the stack settings flags are applied too.
    pub async fn with_stack_args(common: &Common, args: &StackArgs) -> Result<StackContext> {
        Self::connect(common, load_config(common, Some(args))?).await
    }

    async fn connect(common: &Common, config: StackConfig) -> Result<StackContext> {
        let endpoint_url = common.endpoint_url.clone().filter(|e| !e.is_empty());
        let opts = AwsOptions {
            profile: common.profile.clone(),
            // `--region`, else stack.region (merged above); the SDK's own chain comes after.
            region: config.stack.region.clone(),
            endpoint_url: endpoint_url.clone(),
            ecr_registry_url: None,
        };
        let aws = Aws::connect(&opts).await?;
        Ok(Self::from_parts(config, aws, endpoint_url))
    }

    pub fn from_parts(config: StackConfig, aws: Aws, endpoint_url: Option<String>) -> StackContext {
        StackContext {
            stack: config.stack.name.clone(),
            names: Names::new(&config.stack.name),
            config,
            aws,
            endpoint_url,
        }
    }

    pub fn sdk_config(&self) -> &aws_config::SdkConfig {
        &self.aws.sdk_config
    }

    pub fn function_name(&self) -> String {
        self.names.function.clone()
    }

    pub fn secret_name(&self) -> String {
        self.names.secret.clone()
    }

    /// "account 123456789012 in us-east-1" (plus the endpoint when one is set), for messages.
    pub fn where_(&self) -> String {
        match &self.endpoint_url {
            Some(e) => format!(
                "account {} in {} at {e}",
                self.aws.account_id, self.aws.region
            ),
            None => format!("account {} in {}", self.aws.account_id, self.aws.region),
        }
    }
}

/// stack.toml (`--config`) with the flags merged in: `--stack` and `--region` always, the
/// stack settings when `args` is given. The one place a flag meets the file.
pub fn load_config(common: &Common, args: Option<&StackArgs>) -> Result<StackConfig> {
    let overrides = match args {
        Some(a) => overrides(common, a),
        None => base_overrides(common),
    };
    merge(common, &overrides)
}

/// stack.toml (`--config`) with these overrides merged in.
pub fn merge(common: &Common, overrides: &Overrides) -> Result<StackConfig> {
    StackConfig::load(&common.config)?
        .with_overrides(overrides)
        .with_context(|| {
            format!(
                "applying the command-line flags to {}",
                common.config.display()
            )
        })
}

/// The overrides every command has: `--stack` and `--region`.
pub fn base_overrides(common: &Common) -> Overrides {
    Overrides {
        stack: common.stack.clone(),
        region: common.region.clone(),
        ..Default::default()
    }
}

pub fn overrides(common: &Common, a: &StackArgs) -> Overrides {
    Overrides {
        memory_mb: a.memory,
        timeout_seconds: a.timeout,
        architecture: a.arch,
        package: a.package,
        concurrency: a.concurrency,
        requests_per_minute: a.requests_per_minute,
        expected_duration_seconds: a.expected_duration,
        invoke_mode: a.invoke_mode,
        url_auth: a.url_auth,
        function_url: a.no_function_url.then_some(false),
        http_api: if a.http_api {
            Some(true)
        } else if a.no_http_api {
            Some(false)
        } else {
            None
        },
        allowed_models: a.allowed_models.as_ref().map(|m| {
            m.split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(str::to_owned)
                .collect()
        }),
        max_tokens_cap: a.max_tokens_cap,
        default_model: a.default_model.clone(),
        anthropic_base_url: a.anthropic_base_url.clone(),
        log_retention_days: a.log_retention_days,
        provider: a.provider,
        fallback: a.fallback.map(|f| f.0),
        strategy: a.strategy,
        keep_versions: a.keep_versions,
        ..base_overrides(common)
    }
}
