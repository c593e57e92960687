//! The AWS SDK configuration of the function, built from its environment without `aws-config`.
//!
//! On Lambda everything the SDK needs is in the environment: `AWS_REGION`, and the execution
//! role's credentials in `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`,
//! valid for the life of the execution environment. `aws-config`'s full provider chain
//! (profiles, SSO, web identity, IMDS, ECS) would add several SDK clients and a second crypto
//! library to the binary for sources a Lambda function never uses, so the handler reads the
//! environment itself. `AWS_ENDPOINT_URL` is honoured (tests point the SDK at moto with it).

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use aws_smithy_async::rt::sleep::default_async_sleep;
use aws_smithy_async::time::SystemTimeSource;
use aws_smithy_types::retry::RetryConfig;
use aws_types::region::Region;
use aws_types::sdk_config::SdkConfig;

/// What [`sdk_config_from`] could not find.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AwsEnvError {
    #[error("AWS_REGION is not set (Lambda always sets it; set it for local runs)")]
    NoRegion,
    #[error(
        "no AWS credentials in the environment: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
         (Lambda sets them from the function's role)"
    )]
    NoCredentials,
}

/// The SDK configuration from the process environment.
pub fn sdk_config_from_env() -> Result<SdkConfig, AwsEnvError> {
    sdk_config_from(|k| std::env::var(k).ok())
}

/// The SDK configuration from any variable lookup (testable without touching the process).
pub fn sdk_config_from(get: impl Fn(&str) -> Option<String>) -> Result<SdkConfig, AwsEnvError> {
    let var = |k: &str| get(k).filter(|v| !v.is_empty());
    let region = var("AWS_REGION")
        .or_else(|| var("AWS_DEFAULT_REGION"))
        .ok_or(AwsEnvError::NoRegion)?;
    let (Some(key_id), Some(secret)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY"))
    else {
        return Err(AwsEnvError::NoCredentials);
    };
    let credentials = Credentials::new(key_id, secret, var("AWS_SESSION_TOKEN"), None, "env");
    let mut builder = SdkConfig::builder()
        .behavior_version(
            aws_smithy_runtime_api::client::behavior_version::BehaviorVersion::latest(),
        )
        .region(Region::new(region))
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .http_client(crate::tls::sdk_http_client())
        .retry_config(RetryConfig::standard())
        .time_source(SystemTimeSource::new());
    if let Some(sleep) = default_async_sleep() {
        builder = builder.sleep_impl(sleep);
    }
    if let Some(url) = var("AWS_ENDPOINT_URL") {
        builder = builder.endpoint_url(url);
    }
    Ok(builder.build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::provider::ProvideCredentials;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[tokio::test]
    async fn lambda_environment_gives_region_credentials_and_endpoint() {
        let c = sdk_config_from(lookup(&[
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_SESSION_TOKEN", "session"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
        ]))
        .unwrap();
        assert_eq!(c.region().unwrap().as_ref(), "eu-west-1");
        assert_eq!(c.endpoint_url(), Some("http://127.0.0.1:5000"));
        let creds = c
            .credentials_provider()
            .unwrap()
            .provide_credentials()
            .await
            .unwrap();
        assert_eq!(creds.access_key_id(), "AKIDEXAMPLE");
        assert_eq!(creds.session_token(), Some("session"));
        assert!(
            c.sleep_impl().is_some(),
            "retries need a sleep implementation"
        );
    }

    #[test]
    fn missing_pieces_are_named() {
        assert_eq!(
            sdk_config_from(lookup(&[("AWS_ACCESS_KEY_ID", "a")])).unwrap_err(),
            AwsEnvError::NoRegion
        );
        assert_eq!(
            sdk_config_from(lookup(&[
                ("AWS_REGION", "us-east-1"),
                ("AWS_ACCESS_KEY_ID", "a")
            ]))
            .unwrap_err(),
            AwsEnvError::NoCredentials
        );
        let c = sdk_config_from(lookup(&[
            ("AWS_DEFAULT_REGION", "us-west-2"),
            ("AWS_ACCESS_KEY_ID", "a"),
            ("AWS_SECRET_ACCESS_KEY", "b"),
        ]))
        .unwrap();
        assert_eq!(c.region().unwrap().as_ref(), "us-west-2");
        assert_eq!(c.endpoint_url(), None);
    }
}
