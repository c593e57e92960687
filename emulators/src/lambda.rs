//! A local Lambda: runs a real `bootstrap` against an emulated Lambda Runtime API and serves it
//! behind an emulated Function URL (and, optionally, an API Gateway HTTP API).
//!
//! * Runtime API: every instance gets its own `AWS_LAMBDA_RUNTIME_API=127.0.0.1:<port>` and the
//!   standard Lambda environment; `/invocation/next` long-polls, `/response` takes buffered and
//!   streamed (`Lambda-Runtime-Function-Response-Mode: streaming`) answers, `/error` and
//!   `/init/error` report failures.
//! * Function URL front: any method and path becomes a payload-2.0 Function URL event. In
//!   [`InvokeMode::ResponseStream`] the `application/vnd.awslambda.http-integration-response`
//!   prelude is parsed and body chunks are forwarded as they arrive.
//! * API Gateway front: payload-2.0 HTTP API events with route keys, always buffered, gives up
//!   after [`GatewayOptions::timeout`] (30 s, as API Gateway does) with `503`.
//! * REST API front: payload-1.0 REST API events under one stage, `x-api-key` checked against
//!   the configured keys (and their quotas) before the function runs, the answer streamed when
//!   the integration streams ([`RestApiOptions::stream`]) or buffered.
//! * Instances are spawned on demand up to [`LocalLambdaOptions::max_instances`]; a timed-out
//!   or crashed instance is killed and replaced by a fresh one (a new cold start) when needed.

mod config;
mod event;
mod function_url;
mod gateway;
mod ids;
mod instance;
mod invocation;
mod options;
mod pool;
mod response;
mod rest_api;
mod rest_event;
mod runtime_api;
mod slot;

use crate::http::Server;
use anyhow::Result;
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use instance::ColdStart;
pub use invocation::FunctionError;
pub use options::{
    GatewayOptions, InvokeMode, LocalLambdaOptions, LogLine, LogSink, LogSource, RestApiKey,
    RestApiOptions,
};

/// A running local Lambda. Stops its servers and kills its instances when dropped.
pub struct LocalLambda {
    pool: Arc<pool::Pool>,
    url: Server,
    gateway: Option<Server>,
    /// The REST API front and its stage.
    rest_api: Option<(Server, String)>,
}

impl LocalLambda {
    /// Binds the fronts and returns; instances are spawned on the first request (a cold start),
    /// as on Lambda. Fails when the bootstrap is not an executable file or an address is not
    /// loopback.
    pub async fn start(opts: LocalLambdaOptions) -> Result<LocalLambda> {
        opts.validate()?;
        let config = Arc::new(config::Config::new(&opts)?);
        let pool = pool::Pool::new(config);
        let url = function_url::UrlFront::new(pool.clone(), opts.invoke_mode)
            .serve(opts.listen)
            .await?;
        let gateway = match &opts.gateway {
            Some(gw) => Some(
                gateway::GatewayFront::new(pool.clone(), gw)?
                    .serve(gw.listen)
                    .await?,
            ),
            None => None,
        };
        let rest_api = match &opts.rest_api {
            Some(rest) => Some((
                rest_api::RestFront::new(pool.clone(), rest)
                    .serve(rest.listen)
                    .await?,
                rest.stage.clone(),
            )),
            None => None,
        };
        Ok(LocalLambda {
            pool,
            url,
            gateway,
            rest_api,
        })
    }

    /// The Function URL, `http://127.0.0.1:<port>/` (with the trailing slash, as AWS returns
    /// Function URLs).
    pub fn url(&self) -> String {
        format!("http://{}/", self.url.addr())
    }

    /// The Function URL front's address.
    pub fn url_addr(&self) -> SocketAddr {
        self.url.addr()
    }

    /// The API Gateway endpoint, `http://127.0.0.1:<port>` (no trailing slash, as
    /// `ApiEndpoint` is), when the gateway front is enabled.
    pub fn gateway_url(&self) -> Option<String> {
        self.gateway
            .as_ref()
            .map(|g| format!("http://{}", g.addr()))
    }

    /// The REST API stage's invoke URL, `http://127.0.0.1:<port>/<stage>` (as API Gateway's
    /// `https://<api>.execute-api.<region>.amazonaws.com/<stage>`), when the REST front is on.
    pub fn rest_url(&self) -> Option<String> {
        self.rest_api
            .as_ref()
            .map(|(s, stage)| format!("http://{}/{stage}", s.addr()))
    }

    /// The function's ARN as the instances see it (`Lambda-Runtime-Invoked-Function-Arn`).
    pub fn function_arn(&self) -> &str {
        &self.pool.config().function_arn
    }

    /// Every cold start so far, in order: instance spawn → its first `/invocation/next` poll.
    pub fn cold_starts(&self) -> Vec<ColdStart> {
        self.pool.cold_starts()
    }

    /// How many instances are alive now.
    pub fn live_instances(&self) -> usize {
        self.pool.live_instances()
    }

    /// Invokes the function directly with a raw event (as `Invoke` with `RequestResponse`
    /// does), waiting for an instance if all are busy. A streamed response is collected.
    /// The outer error is an emulator problem; the inner one is the function's.
    pub async fn invoke(&self, event: Bytes) -> Result<std::result::Result<Bytes, FunctionError>> {
        self.pool.invoke_collected(ids::uuid_v4(), event).await
    }

    /// Stops the fronts, kills every instance and waits until they have exited.
    pub async fn stop(self) {
        self.url.stop();
        if let Some(g) = &self.gateway {
            g.stop();
        }
        if let Some((r, _)) = &self.rest_api {
            r.stop();
        }
        self.pool.shutdown();
        self.pool.wait_all_exited(Duration::from_secs(10)).await;
    }
}

impl Drop for LocalLambda {
    fn drop(&mut self) {
        // The fronts' servers stop when they are dropped.
        self.pool.shutdown();
    }
}
