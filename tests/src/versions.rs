//! [`VersionServer`]: runs `Invoke` of a published version (routed to it by the proxy,
//! [`crate::aws_proxy::AwsProxy::route_invocations`]) under the local Lambda emulator, with
//! that version's code and environment, as `deploy --local` serves the deployed zip.
//!
//! moto keeps the version's configuration (`GetFunctionConfiguration` with `Qualifier`) but
//! cannot hand back its code, so a test registers the `bootstrap` behind each `CodeSha256`
//! it deploys ([`VersionServer::register`]). The handler reaches moto (its secret) through
//! `AWS_ENDPOINT_URL`. Every invocation is counted per version ([`VersionServer::counts`]),
//! so a test can write the datapoints CloudWatch would have.

use crate::aws_proxy::invocations::{InvokeFuture, InvokeRouter, Invoked};
use anyhow::{Context, Result};
use aws_config::SdkConfig;
use bytes::Bytes;
use emulators::lambda::{LocalLambda, LocalLambdaOptions, LogSink};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What one version's invocations did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub invocations: u64,
    /// Invocations that ended in a function error.
    pub errors: u64,
}

pub struct VersionServer {
    lambda: aws_sdk_lambda::Client,
    /// moto's endpoint, for the handler's own AWS calls.
    moto_endpoint: String,
    code: Mutex<HashMap<String, PathBuf>>,
    running: tokio::sync::Mutex<HashMap<(String, String), Arc<LocalLambda>>>,
    counts: Mutex<HashMap<String, Counts>>,
    next_id: Mutex<u64>,
}

impl VersionServer {
    /// Reads versions from moto with `direct` (plain SDK configuration to moto).
    pub fn new(direct: &SdkConfig, moto_endpoint: &str) -> Arc<VersionServer> {
        Arc::new(VersionServer {
            lambda: aws_sdk_lambda::Client::new(direct),
            moto_endpoint: moto_endpoint.to_string(),
            code: Mutex::new(HashMap::new()),
            running: tokio::sync::Mutex::new(HashMap::new()),
            counts: Mutex::new(HashMap::new()),
            next_id: Mutex::new(0),
        })
    }

    /// The executable behind the function zip whose `CodeSha256` is `code_sha256`.
    pub fn register(&self, code_sha256: &str, bootstrap: impl Into<PathBuf>) {
        self.code
            .lock()
            .unwrap()
            .insert(code_sha256.to_string(), bootstrap.into());
    }

    /// What `version`'s invocations did so far.
    pub fn counts(&self, version: &str) -> Counts {
        self.counts
            .lock()
            .unwrap()
            .get(version)
            .copied()
            .unwrap_or_default()
    }

    async fn instance(&self, function: &str, version: &str) -> Result<Arc<LocalLambda>> {
        let key = (function.to_string(), version.to_string());
        let mut running = self.running.lock().await;
        if let Some(l) = running.get(&key) {
            return Ok(l.clone());
        }
        let c = self
            .lambda
            .get_function_configuration()
            .function_name(function)
            .qualifier(version)
            .send()
            .await
            .with_context(|| format!("reading {function}:{version} from moto"))?;
        let sha = c.code_sha256().unwrap_or_default().to_string();
        let bootstrap = self
            .code
            .lock()
            .unwrap()
            .get(&sha)
            .cloned()
            .with_context(|| {
                format!("no bootstrap registered for code {sha} of {function}:{version}")
            })?;
        let mut env: Vec<(String, String)> = c
            .environment()
            .and_then(|e| e.variables())
            .map(|v| v.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        env.extend([
            ("AWS_ENDPOINT_URL".to_string(), self.moto_endpoint.clone()),
            ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
            ("AWS_LAMBDA_FUNCTION_VERSION".into(), version.to_string()),
        ]);
        let mut opts = LocalLambdaOptions::new(bootstrap);
        opts.env = env;
        opts.function_name = function.to_string();
        opts.memory_mb = c.memory_size().unwrap_or(128) as u32;
        opts.timeout = Duration::from_secs(c.timeout().unwrap_or(3) as u64);
        opts.logs = LogSink::Discard;
        let l = Arc::new(
            LocalLambda::start(opts)
                .await
                .with_context(|| format!("starting {function}:{version} under the emulator"))?,
        );
        running.insert(key, l.clone());
        Ok(l)
    }

    fn count(&self, version: &str, failed: bool) {
        let mut c = self.counts.lock().unwrap();
        let e = c.entry(version.to_string()).or_default();
        e.invocations += 1;
        e.errors += u64::from(failed);
    }
}

impl InvokeRouter for VersionServer {
    fn invoke<'a>(
        &'a self,
        function: &'a str,
        version: &'a str,
        payload: Bytes,
    ) -> InvokeFuture<'a> {
        Box::pin(async move {
            let request_id = {
                let mut n = self.next_id.lock().unwrap();
                *n += 1;
                format!("version-server-{version}-{n}")
            };
            let l = self.instance(function, version).await?;
            // An instance that cannot start (a binary that does not run) is the function's
            // error on Lambda, not the service's.
            let out = l.invoke(payload).await.unwrap_or_else(|e| {
                Err(emulators::lambda::FunctionError {
                    error_type: "Runtime.InvalidEntrypoint".into(),
                    error_message: format!("{e:#}"),
                })
            });
            self.count(version, out.is_err());
            Ok(match out {
                Ok(payload) => Invoked {
                    payload,
                    function_error: None,
                    request_id,
                },
                Err(e) => Invoked {
                    payload: Bytes::from(
                        serde_json::json!({"errorType": e.error_type, "errorMessage": e.error_message})
                            .to_string(),
                    ),
                    function_error: Some("Unhandled".into()),
                    request_id,
                },
            })
        })
    }
}
