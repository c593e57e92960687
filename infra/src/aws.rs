//! One `SdkConfig` (profile / region / endpoint flags, `AWS_ENDPOINT_URL` and the rest of the
//! SDK's environment), every client built once from it, and the one not-found test
//! ([`OrNotFound`]).

use anyhow::{Context, Result};
use aws_config::retry::RetryConfig;
use aws_config::{Region, SdkConfig};
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

const NO_REGION: &str =
    "no AWS region: pass --region, set AWS_REGION, or set stack.region in stack.toml";

/// Environment variable that overrides the ECR registry endpoint images are pushed to.
pub const ECR_REGISTRY_URL_ENV: &str = "CLAUDE_LAMBDA_ECR_REGISTRY_URL";

/// Backoff for calls refused while AWS is eventually consistent: `CreateFunction` and
/// `UpdateFunctionConfiguration` while a just-created role propagates through IAM,
/// `CreateSecret` while a just force-deleted name is not free yet ([`retry_while`]).
#[derive(Debug, Clone, Copy)]
pub struct IamRetry {
    /// First delay; doubled each attempt (with full jitter) up to `max_delay`.
    pub base: Duration,
    pub max_delay: Duration,
    /// Give up after this much total time.
    pub max_total: Duration,
}

/// Short and flat: what is being waited out (a new role becoming assumable, usually 5-10 s;
/// a deleted name becoming free) ends at a moment nothing announces, and a deploy waits for
/// the retry after it. Doubling up to 20 s overshot that moment by several seconds; at most
/// one retry a second overshoots it by under a second, and one cheap call a second is far
/// below what the control planes throttle. The limit stays at 5 minutes.
impl Default for IamRetry {
    fn default() -> Self {
        IamRetry {
            base: Duration::from_millis(250),
            max_delay: Duration::from_secs(1),
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
    /// CloudWatch metrics and alarms.
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub sns: aws_sdk_sns::Client,
    /// API Gateway REST APIs (`apigw` is the HTTP API's v2 client).
    pub apigw_rest: aws_sdk_apigateway::Client,
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
        let mut loader = crate::tls::sdk_defaults().retry_config(retry_config());
        if let Some(p) = &opts.profile {
            loader = loader.profile_name(p);
        }
        // The Region first: without one there is nothing to do, and the SDK would otherwise
        // look for it again (its credentials chain asks instance metadata).
        let region = match &opts.region {
            Some(r) => Region::new(r.clone()),
            None => region_chain(opts.profile.as_deref(), looks_like_ec2())
                .region()
                .await
                .context(NO_REGION)?,
        };
        loader = loader.region(region);
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
        let region = config.region().map(|r| r.to_string()).context(NO_REGION)?;
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
            cloudwatch: aws_sdk_cloudwatch::Client::from_conf(
                aws_sdk_cloudwatch::config::Builder::from(&config)
                    .interceptor(RetryLog)
                    .build(),
            ),
            sns: aws_sdk_sns::Client::from_conf(
                aws_sdk_sns::config::Builder::from(&config)
                    .interceptor(RetryLog)
                    .build(),
            ),
            apigw_rest: aws_sdk_apigateway::Client::from_conf(
                aws_sdk_apigateway::config::Builder::from(&config)
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

/// Runs `call` until it succeeds, fails with an error `retryable(code, message)` does not
/// accept, or `retry.max_total` passes. Delays double from `retry.base` up to
/// `retry.max_delay`, each drawn uniformly from [delay/2, delay] (jitter), so parallel
/// deploys do not retry in lockstep. `on_retry` hears `waiting_for` with the attempt, AWS's
/// message and the delay.
pub async fn retry_while<T, E, R, F, Fut>(
    retry: &IamRetry,
    waiting_for: &str,
    retryable: impl Fn(&str, &str) -> bool,
    on_retry: &dyn Fn(&str),
    mut call: F,
) -> Result<T, SdkError<E, R>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, SdkError<E, R>>>,
    E: ProvideErrorMetadata,
{
    use rand::RngExt;
    let start = std::time::Instant::now();
    let mut delay = retry.base;
    let mut attempt = 1u32;
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                let (code, message) = match e.as_service_error() {
                    Some(s) => (
                        s.code().unwrap_or_default().to_string(),
                        s.message().unwrap_or_default().to_string(),
                    ),
                    None => (String::new(), String::new()),
                };
                if !retryable(&code, &message) || start.elapsed() + delay > retry.max_total {
                    return Err(e);
                }
                let half = delay / 2;
                let jittered = half + rand::rng().random_range(Duration::ZERO..=half);
                on_retry(&format!(
                    "{waiting_for} (attempt {attempt}: {code}: {message}); retrying in {:.1}s",
                    jittered.as_secs_f64()
                ));
                tokio::time::sleep(jittered).await;
                delay = (delay * 2).min(retry.max_delay);
                attempt += 1;
            }
        }
    }
}

/// Where the Region comes from when no `--region` is given: `AWS_REGION` /
/// `AWS_DEFAULT_REGION`, then the profile (`~/.aws/config`), then, only on an EC2 instance,
/// its instance metadata. The SDK's own chain asks instance metadata everywhere, which off
/// EC2 costs a timeout and prints the SDK's warning before the toolkit can say "no AWS
/// region". Credentials keep the SDK's full chain (instance metadata is its last resort).
pub fn region_chain(
    profile: Option<&str>,
    on_ec2: bool,
) -> aws_config::meta::region::RegionProviderChain {
    use aws_config::meta::region::RegionProviderChain;
    let mut from_profile = aws_config::profile::ProfileFileRegionProvider::builder();
    if let Some(p) = profile {
        from_profile = from_profile.profile_name(p);
    }
    let chain = RegionProviderChain::first_try(
        aws_config::environment::EnvironmentVariableRegionProvider::new(),
    )
    .or_else(from_profile.build());
    if on_ec2 {
        let http = aws_config::provider_config::ProviderConfig::default()
            .with_http_client(crate::tls::sdk_http_client());
        chain.or_else(
            aws_config::imds::region::ImdsRegionProvider::builder()
                .configure(&http)
                .build(),
        )
    } else {
        chain
    }
}

/// True when this machine looks like an EC2 instance (the hypervisor or firmware says so,
/// Linux). `AWS_EC2_METADATA_DISABLED=true` always says no. Elsewhere, give the Region with
/// `--region`, `AWS_REGION` or the profile.
pub fn looks_like_ec2() -> bool {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    if env("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return false;
    }
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    read("/sys/devices/virtual/dmi/id/sys_vendor").contains("Amazon EC2")
        || read("/sys/devices/virtual/dmi/id/bios_vendor").contains("Amazon EC2")
        || read("/sys/devices/virtual/dmi/id/board_asset_tag").starts_with("i-")
        || read("/sys/hypervisor/uuid").starts_with("ec2")
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

/// "The resource does not exist" as `Ok(None)`, on any SDK call's result; every other error
/// stays an error. `call.send().await.or_not_found().map_err(ctx(...))?` is the one shape of
/// a read (or an idempotent delete) that tolerates absence.
pub trait OrNotFound<T, E, R> {
    fn or_not_found(self) -> Result<Option<T>, SdkError<E, R>>;
}

impl<T, E: ProvideErrorMetadata, R> OrNotFound<T, E, R> for Result<T, SdkError<E, R>> {
    fn or_not_found(self) -> Result<Option<T>, SdkError<E, R>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
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
                    // CloudWatch (DeleteAlarms) and SNS (GetTopicAttributes).
                    | "ResourceNotFound"
                    | "NotFound"
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
