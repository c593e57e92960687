//! Provider failover: a primary provider and, with `FALLBACK`, the other one, both built
//! once at cold start. The routes call [`send`] where they would call the provider; it
//! decides who answers:
//!
//! 1. A request the fallback cannot serve (Bedrock: a model outside the model map; the
//!    Anthropic API: a Bedrock id, or no key in the secret) goes to the primary alone, with
//!    the request's whole time, exactly as without a fallback.
//! 2. Otherwise the circuit breaker ([`crate::breaker`]) admits it: open, it goes straight to
//!    the fallback; after the cool-down one request probes the primary (one attempt).
//! 3. The primary gets its attempts and retries within its share of the time
//!    (`FAILOVER_AFTER_MS`, else half of what is left), so the fallback has the rest.
//! 4. Its [`outcome`] decides: an answer, or an error its retry policy would not retry (400,
//!    401, 403, 404, 413, a redirect, `x-should-retry: false`) is passed on, never failed
//!    over; a retryable failure (408, 409, 429, 5xx, 529, no connection, no answer in its
//!    time) with its retries spent goes to the fallback, the same request (the Bedrock
//!    provider translates it to its Messages form, the Anthropic one sends it as the caller
//!    did). A stream that has started towards the caller is never failed over: the
//!    primary's 200 is its answer, and a later break is an in-band `event: error`.
//!
//! The provider that answered is named in the request log (`provider`, and `failover` with
//! the reason and the primary's failure) and in the [`PROVIDER_HEADER`] response header.
//! Both providers' errors have the Anthropic shape already.

use crate::breaker::{Admission, Breaker, Transition};
use crate::config::{Config, ProviderKind};
use crate::error::{ConfigError, ProxyError};
use crate::secrets::Secret;
use crate::upstream::{Budget, Provider, RetryPolicy, UpstreamRequest, UpstreamResponse};
use crate::RequestLog;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The response header naming the provider that answered: `anthropic` or `bedrock`.
pub const PROVIDER_HEADER: &str = "x-claude-proxy-provider";

/// The provider of `kind`, built once (cold start). Bedrock needs the function's SDK
/// configuration (`sdk`).
pub fn build_provider(
    kind: ProviderKind,
    config: &Config,
    sdk: Option<&aws_types::sdk_config::SdkConfig>,
) -> Result<Arc<dyn Provider>, ConfigError> {
    let retry = RetryPolicy {
        max_retries: config.upstream_max_retries,
        ..RetryPolicy::default()
    };
    Ok(match (kind, sdk) {
        (ProviderKind::Anthropic, _) => Arc::new(
            crate::upstream::AnthropicProvider::new(&config.anthropic_base_url, retry)
                .map_err(|e| ConfigError::HttpClient(e.to_string()))?,
        ),
        (ProviderKind::Bedrock, Some(sdk)) => Arc::new(crate::bedrock::BedrockProvider::new(
            sdk,
            &config.bedrock,
            retry,
        )),
        (ProviderKind::Bedrock, None) => {
            return Err(ConfigError::HttpClient(
                "the Bedrock provider needs the function's AWS configuration".into(),
            ))
        }
    })
}

/// The fallback provider and the breaker in front of the primary.
pub struct Failover {
    fallback: Arc<dyn Provider>,
    breaker: Breaker,
    after: Option<Duration>,
}

impl Failover {
    /// The fallback with `config`'s breaker settings and `FAILOVER_AFTER_MS`.
    pub fn new(fallback: Arc<dyn Provider>, config: &Config) -> Self {
        Failover {
            fallback,
            breaker: Breaker::new(config.breaker),
            after: config.failover_after,
        }
    }

    pub fn fallback(&self) -> &dyn Provider {
        self.fallback.as_ref()
    }

    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// The primary's share of a request with `deadline`: `FAILOVER_AFTER_MS` (at most what
    /// is left), else half of what is left; a probe is one attempt.
    pub fn primary_budget(&self, now: Instant, deadline: Instant, probe: bool) -> Budget {
        let left = deadline.saturating_duration_since(now);
        let share = self.after.map_or(left / 2, |a| a.min(left));
        Budget {
            answer_by: now + share,
            deadline,
            max_retries: probe.then_some(0),
        }
    }

    fn record(&self, admission: Admission, healthy: bool, primary: &str) {
        let Some(t) = self.breaker.record(admission, healthy, Instant::now()) else {
            return;
        };
        let fallback = self.fallback.name();
        let cool_down_ms = self.breaker.settings().cool_down.as_millis() as u64;
        match t {
            Transition::Opened { failures } => tracing::warn!(
                primary,
                fallback,
                failures,
                cool_down_ms,
                "circuit breaker opened: the primary failed {failures} requests in a row; \
                 requests go to the fallback until one probes the primary after the cool-down"
            ),
            Transition::Reopened => tracing::warn!(
                primary,
                fallback,
                cool_down_ms,
                "the probe of the primary failed; circuit breaker open for another cool-down"
            ),
            Transition::Closed => tracing::info!(
                primary,
                fallback,
                "the primary answered again; circuit breaker closed"
            ),
        }
    }
}

/// What the primary made of a request, for the failover decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A success: passed on.
    Answered,
    /// An answer retrying would not change (a caller's 400, the key refused, a redirect,
    /// `x-should-retry: false`): passed on, never failed over. The primary is up.
    Final,
    /// What the retry policy retries (408, 409, 429, 5xx, 529, no connection, no answer in
    /// its time), its retries or their time spent: the fallback gets the request.
    Retryable,
    /// Failed before anything was sent (the request or the secret cannot be used): passed
    /// on; says nothing about the primary.
    NotSent,
}

/// The decision function: what `result` of the primary means.
pub fn outcome(result: &Result<UpstreamResponse, ProxyError>) -> Outcome {
    match result {
        Ok(r) if r.status.is_success() => Outcome::Answered,
        Ok(r) if r.retryable => Outcome::Retryable,
        Ok(_) => Outcome::Final,
        Err(ProxyError::Timeout(_) | ProxyError::Upstream(_)) => Outcome::Retryable,
        Err(_) => Outcome::NotSent,
    }
}

/// Why the fallback answered (the request log's `failover`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The primary failed this request, retries spent.
    PrimaryFailed,
    /// The breaker is open: the primary was not asked.
    BreakerOpen,
    /// This request probed the primary, which failed.
    ProbeFailed,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::PrimaryFailed => "primary_failed",
            Reason::BreakerOpen => "breaker_open",
            Reason::ProbeFailed => "probe_failed",
        }
    }
}

/// A probe must end in a verdict; dropped without one (the caller went away), the next
/// request probes.
struct ProbeGuard<'a>(Option<&'a Breaker>);

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if let Some(b) = self.0 {
            b.abandon_probe(Instant::now());
        }
    }
}

fn describe(result: &Result<UpstreamResponse, ProxyError>) -> String {
    match result {
        Ok(r) => format!("HTTP {} after {} attempt(s)", r.status.as_u16(), r.attempts),
        Err(e) => e.to_string(),
    }
}

/// Sends `req` to the primary, or the fallback as described in the module docs, and
/// records in `log` which provider answered.
pub async fn send(
    primary: &dyn Provider,
    failover: Option<&Failover>,
    req: UpstreamRequest,
    secret: &Secret,
    deadline: Instant,
    log: &RequestLog,
) -> Result<UpstreamResponse, ProxyError> {
    let Some(f) = failover else {
        log.provider(primary.name());
        return primary.send(req, secret, deadline).await;
    };
    let fallback = f.fallback();
    if !fallback.can_serve(&req, secret) {
        log.provider(primary.name());
        let result = primary.send(req, secret, deadline).await;
        match outcome(&result) {
            Outcome::Answered | Outcome::Final => {
                f.record(Admission::Primary, true, primary.name())
            }
            Outcome::Retryable => f.record(Admission::Primary, false, primary.name()),
            Outcome::NotSent => {}
        }
        return result;
    }
    let admission = f.breaker.admit(Instant::now());
    if admission == Admission::Fallback {
        log.failover(Reason::BreakerOpen.as_str(), None);
        log.provider(fallback.name());
        return fallback.send(req, secret, deadline).await;
    }
    let probe = admission == Admission::Probe;
    let mut guard = ProbeGuard(probe.then_some(&f.breaker));
    let budget = f.primary_budget(Instant::now(), deadline, probe);
    let result = primary.send_within(req.clone(), secret, budget).await;
    let decided = outcome(&result);
    match decided {
        Outcome::Answered | Outcome::Final => f.record(admission, true, primary.name()),
        Outcome::Retryable => f.record(admission, false, primary.name()),
        Outcome::NotSent => {}
    }
    if decided != Outcome::NotSent {
        guard.0 = None;
    }
    drop(guard);
    if decided != Outcome::Retryable || Instant::now() >= deadline {
        log.provider(primary.name());
        return result;
    }
    let reason = if probe {
        Reason::ProbeFailed
    } else {
        Reason::PrimaryFailed
    };
    log.failover(reason.as_str(), Some(&describe(&result)));
    drop(result);
    log.provider(fallback.name());
    fallback.send(req, secret, deadline).await
}

#[cfg(test)]
mod tests;
