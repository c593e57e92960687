//! The AWS SDK's HTTPS client with compiled-in root certificates.
//!
//! The SDK's default client loads the platform's CA bundle. A container image built
//! `FROM scratch` has none, so every Secrets Manager call would fail certificate
//! verification there. The Mozilla roots compiled into the binary (`webpki-root-certs`, the
//! same set reqwest uses for the Anthropic API) work on every package kind and read no file at
//! cold start.

use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
use aws_smithy_http_client::Builder;
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use base64::Engine;

/// An HTTPS client for the AWS SDK that trusts only the compiled-in roots.
pub fn sdk_http_client() -> SharedHttpClient {
    let tls_context = TlsContext::builder()
        .with_trust_store(compiled_in_trust_store())
        .build()
        .expect("a TLS context from valid compiled-in roots");
    Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .tls_context(tls_context)
        .build_https()
}

/// The compiled-in Mozilla roots as a trust store (native roots off).
pub fn compiled_in_trust_store() -> TrustStore {
    let mut store = TrustStore::empty().with_native_roots(false);
    for cert in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
        store.add_pem_certificate(pem(cert.as_ref()));
    }
    store
}

fn pem(der: &[u8]) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = Vec::with_capacity(b64.len() + b64.len() / 64 + 64);
    out.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.extend_from_slice(b"-----END CERTIFICATE-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_compiled_in_root_round_trips_through_pem() {
        let roots = webpki_root_certs::TLS_SERVER_ROOT_CERTS;
        assert!(roots.len() > 100, "the Mozilla root set");
        for cert in roots {
            let pem = pem(cert.as_ref());
            let text = std::str::from_utf8(&pem).unwrap();
            let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
            let der = base64::engine::general_purpose::STANDARD
                .decode(body)
                .unwrap();
            assert_eq!(der, cert.as_ref());
        }
    }

    #[test]
    fn the_sdk_client_builds_without_a_system_ca_bundle() {
        // Builds the rustls config from the compiled-in roots only (the smithy builder
        // panics on unparsable certificates, so this also checks every root parses).
        let _client = sdk_http_client();
    }
}
