//! [`VersionServer`]: runs `Invoke` of a published version (routed to it by the proxy,
//! [`crate::aws_proxy::AwsProxy::route_invocations`]) under the local Lambda emulator, with
//! that version's code and environment, as `deploy --local` serves the deployed zip.
//!
//! moto keeps the version's configuration (`GetFunctionConfiguration` with `Qualifier`) but
//! cannot hand back its code, so a test registers the `bootstrap` behind each `CodeSha256`
//! it deploys ([`VersionServer::register`]). The handler reaches moto (its secret) through
//! `AWS_ENDPOINT_URL`. Every invocation is counted per version ([`VersionServer::counts`]),
//! so a test can write the datapoints CloudWatch would have; what the instances print goes
//! to the function's log group in moto, in streams named as Lambda names them
//! (`YYYY/MM/DD/[<version>]<instance>`), as Lambda would send it.

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
    logs: aws_sdk_cloudwatchlogs::Client,
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
            logs: aws_sdk_cloudwatchlogs::Client::new(direct),
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
        opts.logs = self.log_sink(function, version);
        let l = Arc::new(
            LocalLambda::start(opts)
                .await
                .with_context(|| format!("starting {function}:{version} under the emulator"))?,
        );
        running.insert(key, l.clone());
        Ok(l)
    }

    /// Sends each line an instance prints to `/aws/lambda/<function>` in moto, one stream
    /// per instance, in order.
    fn log_sink(&self, function: &str, version: &str) -> LogSink {
        let (sink, mut lines) = LogSink::channel();
        let logs = self.logs.clone();
        let group = format!("/aws/lambda/{function}");
        let day = humantime_day();
        let version = version.to_string();
        tokio::spawn(async move {
            let mut streams = std::collections::HashSet::new();
            while let Some(line) = lines.recv().await {
                let stream = format!("{day}/[{version}]instance{}", line.instance);
                if streams.insert(stream.clone()) {
                    let _ = logs
                        .create_log_stream()
                        .log_group_name(&group)
                        .log_stream_name(&stream)
                        .send()
                        .await;
                }
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis() as i64;
                let Ok(event) = aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                    .timestamp(now)
                    .message(line.line)
                    .build()
                else {
                    continue;
                };
                let _ = logs
                    .put_log_events()
                    .log_group_name(&group)
                    .log_stream_name(&stream)
                    .log_events(event)
                    .send()
                    .await;
            }
        });
        sink
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

/// Today (UTC) as Lambda's log stream names start: `YYYY/MM/DD`.
fn humantime_day() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = secs.div_euclid(86400) + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}/{m:02}/{d:02}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_day_is_what_lambda_names_streams_by() {
        let d = super::humantime_day();
        assert_eq!(d.len(), 10, "{d}");
        assert_eq!(&d[4..5], "/");
        assert!(d.starts_with("20"), "{d}");
    }
}
