//! What every stack command starts from: stack.toml + flags resolved into a configuration,
//! the stack's names, and one AWS connection.

use crate::flags::{Arch, Common, InvokeMode, StackArgs, UrlAuth};
use anyhow::{Context, Result};
use infra::aws::{Aws, AwsOptions};
use infra::config::{Architecture, Overrides, StackConfig};
use infra::names::Names;

pub struct StackContext {
    pub stack: String,
    pub names: Names,
    /// stack.toml as written.
    pub file: StackConfig,
    /// stack.toml with the flags applied.
    pub config: StackConfig,
    pub overrides: Overrides,
    pub aws: Aws,
    endpoint_url: Option<String>,
}

impl StackContext {
    /// For commands that only need the stack's name and AWS (invoke, logs, teardown).
    pub async fn new(common: &Common) -> Result<StackContext> {
        Self::with_overrides(common, base_overrides(common)).await
    }

    /// For plan and deploy: the stack settings flags are applied too.
    pub async fn with_stack_args(common: &Common, args: &StackArgs) -> Result<StackContext> {
        Self::with_overrides(common, overrides(common, args)).await
    }

    pub async fn with_overrides(common: &Common, overrides: Overrides) -> Result<StackContext> {
        let (file, config) = load_config(common, &overrides)?;
        let endpoint_url = common.endpoint_url.clone().filter(|e| !e.is_empty());
        let opts = AwsOptions {
            profile: common.profile.clone(),
            region: file.region(&overrides),
            endpoint_url: endpoint_url.clone(),
            ecr_registry_url: None,
        };
        let aws = Aws::connect(&opts).await?;
        Ok(Self::from_parts(file, config, overrides, aws, endpoint_url))
    }

    pub fn from_parts(
        file: StackConfig,
        config: StackConfig,
        overrides: Overrides,
        aws: Aws,
        endpoint_url: Option<String>,
    ) -> StackContext {
        StackContext {
            stack: config.stack.name.clone(),
            names: Names::new(&config.stack.name),
            file,
            config,
            overrides,
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

/// stack.toml (`--config`) with the overrides applied.
pub fn load_config(common: &Common, overrides: &Overrides) -> Result<(StackConfig, StackConfig)> {
    let file = StackConfig::load(&common.config)?;
    let config = file.with_overrides(overrides).with_context(|| {
        format!(
            "applying the command-line flags to {}",
            common.config.display()
        )
    })?;
    Ok((file, config))
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
        architecture: a.arch.map(architecture),
        package: a.package,
        concurrency: a.concurrency,
        requests_per_minute: a.requests_per_minute,
        expected_duration_seconds: a.expected_duration,
        invoke_mode: a.invoke_mode.map(|m| match m {
            InvokeMode::Stream => infra::config::InvokeMode::ResponseStream,
            InvokeMode::Buffered => infra::config::InvokeMode::Buffered,
        }),
        url_auth: a.url_auth.map(|u| match u {
            UrlAuth::None => infra::config::UrlAuth::None,
            UrlAuth::AwsIam => infra::config::UrlAuth::AwsIam,
        }),
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
        ..base_overrides(common)
    }
}

pub fn architecture(a: Arch) -> Architecture {
    match a {
        Arch::X86_64 => Architecture::X86_64,
        Arch::Arm64 => Architecture::Arm64,
    }
}

pub fn arch(a: Architecture) -> Arch {
    match a {
        Architecture::X86_64 => Arch::X86_64,
        Architecture::Arm64 => Arch::Arm64,
    }
}
