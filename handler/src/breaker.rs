//! The circuit breaker in front of the primary provider, one per function instance (no
//! shared state: each instance learns on its own that the primary is failing).
//!
//! - **Closed** (the start): requests go to the primary. Each request the primary fails in
//!   a way the retry policy retries (after its retries) extends a streak; a request it
//!   answers ends the streak. A streak of [`BreakerSettings::failures`] consecutive
//!   failures, none more than [`BreakerSettings::window`] after the one before, opens the
//!   breaker.
//! - **Open**: requests go straight to the fallback for [`BreakerSettings::cool_down`].
//! - **Probing**: the first request after the cool-down is the probe. It goes to the primary
//!   alone (one attempt, no retries); meanwhile other requests still go to the fallback. The
//!   primary answering closes the breaker; failing opens it for another cool-down. A probe
//!   that ends without a verdict (the caller went away) leaves the breaker open with the
//!   cool-down over, so the next request probes.
//!
//! Pure state: every decision takes the time as an argument, so the tests drive the clock.

use crate::error::ConfigError;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// When the breaker opens and for how long (`FAILOVER_BREAKER_FAILURES`,
/// `FAILOVER_BREAKER_WINDOW_MS`, `FAILOVER_COOL_DOWN_MS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive failures that open it (at least 1).
    pub failures: u32,
    /// The longest gap between two failures of one streak.
    pub window: Duration,
    /// How long requests go straight to the fallback before a probe.
    pub cool_down: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            failures: 3,
            window: Duration::from_secs(60),
            cool_down: Duration::from_secs(30),
        }
    }
}

impl BreakerSettings {
    /// The settings from the function's environment (`var` gives trimmed, non-empty values).
    pub fn from_lookup(var: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut s = BreakerSettings::default();
        let positive = |name: &'static str, v: String| match v.parse::<u64>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(ConfigError::Invalid {
                name,
                message: format!("`{v}` is not a whole number greater than 0"),
            }),
        };
        if let Some(v) = var("FAILOVER_BREAKER_FAILURES") {
            let n = positive("FAILOVER_BREAKER_FAILURES", v)?;
            s.failures = u32::try_from(n).unwrap_or(u32::MAX);
        }
        if let Some(v) = var("FAILOVER_BREAKER_WINDOW_MS") {
            s.window = Duration::from_millis(positive("FAILOVER_BREAKER_WINDOW_MS", v)?);
        }
        if let Some(v) = var("FAILOVER_COOL_DOWN_MS") {
            s.cool_down = Duration::from_millis(positive("FAILOVER_COOL_DOWN_MS", v)?);
        }
        Ok(s)
    }
}

/// Where one request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// To the primary, with its retries (the breaker is closed).
    Primary,
    /// To the primary as the one probe: a single attempt.
    Probe,
    /// Straight to the fallback (open, or another request is probing).
    Fallback,
}

/// What changed, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// A streak of this many failures opened the breaker.
    Opened { failures: u32 },
    /// The probe failed: open for another cool-down.
    Reopened,
    /// The primary answered: closed again.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        streak: u32,
        last_failure: Option<Instant>,
    },
    Open {
        until: Instant,
    },
    Probing,
}

/// The breaker of one function instance.
#[derive(Debug)]
pub struct Breaker {
    settings: BreakerSettings,
    state: Mutex<State>,
}

impl Breaker {
    pub fn new(settings: BreakerSettings) -> Self {
        Breaker {
            settings,
            state: Mutex::new(State::Closed {
                streak: 0,
                last_failure: None,
            }),
        }
    }

    pub fn settings(&self) -> BreakerSettings {
        self.settings
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Whether requests skip the primary now (open, or probing), for the log and tests.
    pub fn is_open(&self) -> bool {
        self.with(|s| !matches!(s, State::Closed { .. }))
    }

    /// Where a request arriving at `now` goes. A [`Admission::Probe`] must be followed by
    /// [`Breaker::record`] or [`Breaker::abandon_probe`].
    pub fn admit(&self, now: Instant) -> Admission {
        self.with(|s| match *s {
            State::Closed { .. } => Admission::Primary,
            State::Open { until } if now < until => Admission::Fallback,
            State::Open { .. } => {
                *s = State::Probing;
                Admission::Probe
            }
            State::Probing => Admission::Fallback,
        })
    }

    /// The primary's verdict on a request admitted as `admission` (or sent to the primary
    /// without asking, because the fallback could not have served it): `healthy` = it
    /// answered (an answer of any status its retry policy would not retry).
    pub fn record(&self, admission: Admission, healthy: bool, now: Instant) -> Option<Transition> {
        let settings = self.settings;
        self.with(|s| match (*s, admission, healthy) {
            (State::Closed { .. }, _, true) => {
                *s = State::Closed {
                    streak: 0,
                    last_failure: None,
                };
                None
            }
            (
                State::Closed {
                    streak,
                    last_failure,
                },
                _,
                false,
            ) => {
                let continues = last_failure
                    .is_some_and(|t| now.saturating_duration_since(t) <= settings.window);
                let streak = if continues { streak + 1 } else { 1 };
                if streak >= settings.failures {
                    *s = State::Open {
                        until: now + settings.cool_down,
                    };
                    Some(Transition::Opened { failures: streak })
                } else {
                    *s = State::Closed {
                        streak,
                        last_failure: Some(now),
                    };
                    None
                }
            }
            // The primary answered while it was skipped (a request only it could serve, or
            // the probe): it is back.
            (State::Open { .. } | State::Probing, _, true) => {
                *s = State::Closed {
                    streak: 0,
                    last_failure: None,
                };
                Some(Transition::Closed)
            }
            (State::Probing, Admission::Probe, false) => {
                *s = State::Open {
                    until: now + settings.cool_down,
                };
                Some(Transition::Reopened)
            }
            // A failure of a request sent to the primary while it was skipped changes
            // nothing: the cool-down runs its course and the probe decides.
            (State::Open { .. } | State::Probing, _, false) => None,
        })
    }

    /// A probe ended without a verdict (its request was dropped): the next request probes.
    pub fn abandon_probe(&self, now: Instant) {
        self.with(|s| {
            if *s == State::Probing {
                *s = State::Open { until: now };
            }
        })
    }
}

#[cfg(test)]
mod tests;
