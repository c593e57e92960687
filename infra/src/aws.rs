//! One `SdkConfig` (profile / region / endpoint flags, `AWS_ENDPOINT_URL` and the rest of the
//! SDK's environment), every client built once from it, and the one `is_not_found` helper.

use anyhow::{Context, Result};
use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use std::time::Duration;

/// Where and as whom to talk to AWS. Unset fields fall back to the SDK's usual chain
/// (`AWS_PROFILE`, `AWS_REGION`, `AWS_ENDPOINT_URL`, `~/.aws/config`, ...).
#[derive(Debug, Clone, Default)]
pub struct AwsOptions {
    pub profile: Option<String>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    /// Push images here instead of the registry ECR's authorization token names (its
    /// `proxyEndpoint`). For emulators only (moto has no registry data plane); also read from
    /// `CLAUDE_LAMBDA_ECR_REGISTRY_URL`.
    pub ecr_registry_url: Option<String>,
}

/// Environment variable that overrides the ECR registry endpoint images are pushed to.
pub const ECR_REGISTRY_URL_ENV: &str = "CLAUDE_LAMBDA_ECR_REGISTRY_URL";

/// Backoff for `CreateFunction` while a just-created role propagates through IAM.
#[derive(Debug, Clone, Copy)]
pub struct IamRetry {
    /// First delay; doubled each attempt (with full jitter) up to `max_delay`.
    pub base: Duration,
    pub max_delay: Duration,
    /// Give up after this much total time.
    pub max_total: Duration,
}

impl Default for IamRetry {
    fn default() -> Self {
        IamRetry {
            base: Duration::from_secs(1),
            max_delay: Duration::from_secs(20),
            max_total: Duration::from_secs(300),
        }
    }
}

/// The AWS clients, the account and the region, resolved once.
#[derive(Clone, Debug)]
pub struct Aws {
    pub sdk_config: SdkConfig,
    pub lambda: aws_sdk_lambda::Client,
    pub iam: aws_sdk_iam::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
    pub apigw: aws_sdk_apigatewayv2::Client,
    pub sts: aws_sdk_sts::Client,
    pub ecr: aws_sdk_ecr::Client,
    /// See [`AwsOptions::ecr_registry_url`].
    pub ecr_registry_url: Option<String>,
    pub account_id: String,
    pub region: String,
    /// The ARN partition (`aws`, `aws-cn`, `aws-us-gov`, ...), from the caller's ARN that
    /// `GetCallerIdentity` returns (the Region's partition when that ARN has none). Every ARN
    /// the toolkit writes carries it.
    pub partition: String,
    pub iam_retry: IamRetry,
}

/// The partition of a Region, by its prefix (`cn-` → `aws-cn`, `us-gov-` → `aws-us-gov`, ...);
/// `aws` for every other Region.
pub fn partition_of_region(region: &str) -> &'static str {
    const PREFIXES: &[(&str, &str)] = &[
        ("cn-", "aws-cn"),
        ("us-gov-", "aws-us-gov"),
        ("us-isob-", "aws-iso-b"),
        ("us-iso-", "aws-iso"),
        ("eu-isoe-", "aws-iso-e"),
        ("us-isof-", "aws-iso-f"),
        ("eusc-", "aws-eusc"),
    ];
    PREFIXES
        .iter()
        .find(|(prefix, _)| region.starts_with(prefix))
        .map(|(_, p)| *p)
        .unwrap_or("aws")
}

/// The partition named by an ARN (`arn:<partition>:...`).
pub fn partition_of_arn(arn: &str) -> Option<&str> {
    let mut parts = arn.splitn(3, ':');
    (parts.next() == Some("arn"))
        .then(|| parts.next())
        .flatten()
        .filter(|p| !p.is_empty())
}

impl Aws {
    /// Builds the SDK configuration and asks STS who we are (which also proves the
    /// credentials work before anything is planned).
    pub async fn connect(opts: &AwsOptions) -> Result<Aws> {
        let mut loader =
            aws_config::defaults(BehaviorVersion::latest()).retry_config(retry_config());
        if let Some(p) = &opts.profile {
            loader = loader.profile_name(p);
        }
        if let Some(r) = &opts.region {
            loader = loader.region(Region::new(r.clone()));
        }
        if let Some(e) = &opts.endpoint_url {
            loader = loader.endpoint_url(e);
        }
        let config = loader.load().await;
        let aws = Self::from_sdk_config(config).await?;
        Ok(match &opts.ecr_registry_url {
            Some(url) => aws.with_ecr_registry_url(url),
            None => aws,
        })
    }

    /// From an already-built `SdkConfig` (tests use this with static credentials).
    pub async fn from_sdk_config(config: SdkConfig) -> Result<Aws> {
        let region = config.region().map(|r| r.to_string()).context(
            "no AWS region: pass --region, set AWS_REGION, or set stack.region in stack.toml",
        )?;
        let sts = aws_sdk_sts::Client::from_conf(
            aws_sdk_sts::config::Builder::from(&config)
                .interceptor(RetryLog)
                .build(),
        );
        let who = sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(describe(&e)))
            .context("sts:GetCallerIdentity (are AWS credentials configured? try `aws sts get-caller-identity`)")?;
        let account_id = who
            .account()
            .context("sts:GetCallerIdentity returned no account id")?
            .to_string();
        let partition = who
            .arn()
            .and_then(partition_of_arn)
            .unwrap_or_else(|| partition_of_region(&region))
            .to_string();
        Ok(Aws {
            lambda: aws_sdk_lambda::Client::from_conf(
                aws_sdk_lambda::config::Builder::from(&config)
                    .interceptor(RetryLog)
                    .build(),
            ),
            iam: aws_sdk_iam::Client::from_conf(
                aws_sdk_iam::config::Builder::from(&config)
                    .interceptor(RetryLog)
                    .build(),
            ),
            secrets: aws_sdk_secretsmanager::Client::from_conf(
                aws_sdk_secretsmanager::config::Builder::from(&config)
                    .interceptor(RetryLog)
                    .build(),
            ),
            logs: aws_sdk_cloudwatchlogs::Client::from_conf(
                aws_sdk_cloudwatchlogs::config::Builder::from(&config)
                    .interceptor(RetryLog)
                    .build(),
            ),
            apigw: aws_sdk_apigatewayv2::Client::from_conf(
                aws_sdk_apigatewayv2::config::Builder::from(&config)
                    .interceptor(RetryLog)
                    .build(),
            ),
            ecr: aws_sdk_ecr::Client::from_conf(
                aws_sdk_ecr::config::Builder::from(&config)
                    .interceptor(RetryLog)
                    .build(),
            ),
            ecr_registry_url: std::env::var(ECR_REGISTRY_URL_ENV)
                .ok()
                .filter(|u| !u.trim().is_empty()),
            sts,
            account_id,
            region,
            partition,
            iam_retry: IamRetry::default(),
            sdk_config: config,
        })
    }

    /// Pushes images to this registry instead of ECR's `proxyEndpoint` (emulators).
    pub fn with_ecr_registry_url(mut self, url: &str) -> Aws {
        self.ecr_registry_url = Some(url.to_string());
        self
    }

    /// Replaces the IAM-propagation backoff (tests make it fast).
    pub fn with_iam_retry(mut self, retry: IamRetry) -> Aws {
        self.iam_retry = retry;
        self
    }
}

/// The SDK's standard retry mode (throttling, 5xx, transient network errors) with more
/// attempts than the default 3: a deploy makes dozens of control-plane calls.
pub fn retry_config() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(8)
        .with_initial_backoff(Duration::from_millis(200))
        .with_max_backoff(Duration::from_secs(20))
}

/// Logs every retry the SDK makes, at debug level (target `infra::aws`, shown by `-v`):
/// "retrying <service> <operation> (attempt n) after <what failed>".
#[derive(Debug, Clone, Copy)]
pub struct RetryLog;

#[derive(Debug, Clone)]
struct LastFailure(String);

impl aws_smithy_types::config_bag::Storable for LastFailure {
    type Storer = aws_smithy_types::config_bag::StoreReplace<Self>;
}

impl aws_smithy_runtime_api::client::interceptors::Intercept for RetryLog {
    fn name(&self) -> &'static str {
        "RetryLog"
    }

    fn read_after_attempt(
        &self,
        context: &aws_smithy_runtime_api::client::interceptors::context::FinalizerInterceptorContextRef<'_>,
        _rc: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let Some(Err(err)) = context.output_or_error() else {
            return Ok(());
        };
        let what = match context.response() {
            Some(r) => {
                let code = r
                    .headers()
                    .get("x-amzn-errortype")
                    .map(|c| c.split(':').next().unwrap_or(c).to_string())
                    .unwrap_or_default();
                format!("HTTP {} {code}", r.status().as_u16())
                    .trim_end()
                    .to_string()
            }
            None => format!(
                "{}",
                aws_smithy_types::error::display::DisplayErrorContext(err)
            ),
        };
        cfg.interceptor_state().store_put(LastFailure(what));
        Ok(())
    }

    fn read_before_attempt(
        &self,
        _context: &aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef<'_>,
        _rc: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let Some(LastFailure(what)) = cfg.load::<LastFailure>().cloned() else {
            return Ok(());
        };
        let attempt = cfg
            .load::<aws_smithy_runtime_api::client::retries::RequestAttempts>()
            .map(|a| a.attempts())
            .unwrap_or(0);
        let (service, operation) = cfg
            .load::<aws_smithy_runtime_api::client::orchestrator::Metadata>()
            .map(|m| (m.service().to_string(), m.name().to_string()))
            .unwrap_or_default();
        tracing::debug!(
            target: "infra::aws",
            "retrying {service} {operation} (attempt {attempt}) after {what}"
        );
        cfg.interceptor_state().unset::<LastFailure>();
        Ok(())
    }
}

/// True when the service said the resource does not exist.
pub fn is_not_found<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    match err {
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or_default();
            matches!(
                code,
                "ResourceNotFoundException"
                    | "NoSuchEntity"
                    | "NotFoundException"
                    | "NoSuchEntityException"
            )
        }
        _ => false,
    }
}

/// The error code and message of a service error (the SDK's own Display only says
/// "service error").
pub fn describe<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    err: &SdkError<E, R>,
) -> String {
    match err {
        SdkError::ServiceError(se) => {
            let e = se.err();
            match (e.code(), e.message()) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c.to_string(),
                _ => format!(
                    "{}",
                    aws_smithy_types::error::display::DisplayErrorContext(err)
                ),
            }
        }
        other => format!(
            "{}",
            aws_smithy_types::error::display::DisplayErrorContext(other)
        ),
    }
}

/// Turns an SDK error into an `anyhow` error that names the call and the resource.
pub fn ctx<E, R>(what: impl std::fmt::Display) -> impl FnOnce(SdkError<E, R>) -> anyhow::Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    move |e| anyhow::anyhow!("{what}: {}", describe(&e))
}
