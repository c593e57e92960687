//! The AWS SDK's HTTPS client for the CLI and the tests: rustls with ring, the crypto provider
//! reqwest and the handler already use, trusting the platform's root certificates. The SDK's
//! own default client (`default-https-client`) would build aws-lc beside ring into every
//! binary, so no SDK crate takes it and every `SdkConfig` starts from [`sdk_defaults`].

use aws_config::{BehaviorVersion, ConfigLoader};
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use aws_smithy_runtime_api::client::http::SharedHttpClient;

/// An HTTPS client for the SDK: rustls with ring, the platform's roots.
pub fn sdk_http_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// `aws_config::defaults` (the latest behaviour version) with [`sdk_http_client`], which its
/// credential providers (SSO, web identity, instance metadata) use too.
pub fn sdk_defaults() -> ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest()).http_client(sdk_http_client())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_loader_carries_the_ring_client() {
        let config = sdk_defaults()
            .region(aws_config::Region::new("us-east-1"))
            .load()
            .await;
        assert!(
            config.http_client().is_some(),
            "without it the SDK has no HTTPS client at all"
        );
    }
}
