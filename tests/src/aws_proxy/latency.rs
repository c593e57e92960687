//! The latency profile: the proxy answers as slowly as real AWS (the model in
//! `emulators/src/aws_latency.toml`, `emulators::aws_latency`). Each call waits a draw from
//! its operation's distribution before it is forwarded; a new function reads `Pending` (and
//! `CreateFunction` answers `Pending`) for the model's hold, an updated one
//! `LastUpdateStatus: InProgress`; and, through [`super::strict::Profile::IamPropagationLag`],
//! a new role cannot be assumed by Lambda for the propagation window. `scale` shrinks every
//! figure alike (tests run the model at a tenth of its speed or less); `seed` makes the draws
//! repeatable, and `randomise` replaces the model's distribution by a uniform draw in 0..2x
//! the median (the randomised-order test: any call may be the slow one).

use emulators::aws_latency::Model;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How the proxy delays calls.
#[derive(Debug, Clone)]
pub struct Latency {
    pub model: Model,
    /// Every delay and hold is multiplied by this (1.0: as the model says).
    pub scale: f64,
    pub seed: u64,
    /// Uniform in 0..2x each call's median (one in five: 0..16x) instead of the model's
    /// distribution.
    pub randomise: bool,
}

impl Latency {
    /// The standard model at `scale`, drawn with `seed`.
    pub fn model(scale: f64, seed: u64) -> Latency {
        Latency {
            model: Model::standard(),
            scale,
            seed,
            randomise: false,
        }
    }

    fn scaled(&self, d: Duration) -> Duration {
        d.mul_f64(self.scale)
    }

    /// The window after `CreateRole` in which Lambda refuses the role.
    pub fn iam_propagation(&self) -> Duration {
        self.scaled(self.model.holds.iam_propagation())
    }
}

#[derive(Debug, Default)]
pub(super) struct State {
    profile: Option<Latency>,
    rng: Option<fastrand::Rng>,
    /// When each function was created / last updated (by name).
    created: BTreeMap<String, Instant>,
    updated: BTreeMap<String, Instant>,
}

/// The operation's name: REST calls named from their path, others as recorded.
pub(super) fn operation_name<'a>(
    service: &str,
    method: &str,
    path: &str,
    recorded: &'a str,
) -> std::borrow::Cow<'a, str> {
    match emulators::aws_latency::rest_operation(service, method, path) {
        Some(op) => op.into(),
        None => recorded.into(),
    }
}

/// The function a Lambda REST path names (`/2015-03-31/functions/<name>/...`).
fn function_of(path: &str) -> Option<&str> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        [_, "functions", name, ..] => Some(name),
        _ => None,
    }
}

impl State {
    pub fn set(&mut self, profile: Option<Latency>) {
        self.rng = profile.as_ref().map(|p| fastrand::Rng::with_seed(p.seed));
        self.profile = profile;
    }

    /// How long this call takes before it is forwarded.
    pub fn delay(&mut self, service: &str, operation: &str) -> Duration {
        let (Some(p), Some(rng)) = (&self.profile, self.rng.as_mut()) else {
            return Duration::ZERO;
        };
        let f = p.model.figure(service, operation);
        let d = if p.randomise {
            // One call in five is eight times slower: any call may be the last to finish.
            let spike = if rng.u8(..5) == 0 { 8.0 } else { 1.0 };
            f.median().mul_f64(rng.f64() * 2.0 * spike)
        } else {
            f.sample(rng)
        };
        p.scaled(d)
    }

    /// Remembers creations and updates of functions (successful answers only).
    pub fn observe(
        &mut self,
        service: &str,
        operation: &str,
        path: &str,
        request: &[u8],
        status: u16,
    ) {
        if self.profile.is_none() || service != "lambda" || !(200..300).contains(&status) {
            return;
        }
        let now = Instant::now();
        match operation {
            "CreateFunction" => {
                let body: Value = serde_json::from_slice(request).unwrap_or(Value::Null);
                if let Some(name) = body["FunctionName"].as_str() {
                    self.created.insert(name.to_string(), now);
                    self.updated.remove(name);
                }
            }
            "UpdateFunctionCode" | "UpdateFunctionConfiguration" => {
                if let Some(name) = function_of(path) {
                    self.updated.insert(name.to_string(), now);
                }
            }
            "DeleteFunction" => {
                if let Some(name) = function_of(path) {
                    self.created.remove(name);
                    self.updated.remove(name);
                }
            }
            _ => {}
        }
    }

    /// The answer as Lambda gives it while a hold lasts: `State: Pending` after a create,
    /// `LastUpdateStatus: InProgress` after an update; `None` to pass moto's answer on.
    pub fn rewrite(
        &self,
        operation: &str,
        path: &str,
        request: &[u8],
        response: &[u8],
    ) -> Option<Vec<u8>> {
        let p = self.profile.as_ref()?;
        let name = match operation {
            "CreateFunction" => serde_json::from_slice::<Value>(request).ok()?["FunctionName"]
                .as_str()?
                .to_string(),
            "GetFunction"
            | "GetFunctionConfiguration"
            | "UpdateFunctionCode"
            | "UpdateFunctionConfiguration" => function_of(path)?.to_string(),
            _ => return None,
        };
        let within =
            |at: Option<&Instant>, hold: Duration| at.is_some_and(|t| t.elapsed() < p.scaled(hold));
        let pending = within(self.created.get(&name), p.model.holds.function_pending());
        let in_progress = within(self.updated.get(&name), p.model.holds.function_update());
        if !pending && !in_progress {
            return None;
        }
        let mut v: Value = serde_json::from_slice(response).ok()?;
        let config = if v.get("Configuration").is_some() {
            &mut v["Configuration"]
        } else {
            &mut v
        };
        let config = config.as_object_mut()?;
        if pending {
            config.insert("State".into(), "Pending".into());
            config.insert(
                "StateReason".into(),
                "The function is being created.".into(),
            );
            config.insert("StateReasonCode".into(), "Creating".into());
        } else {
            config.insert("LastUpdateStatus".into(), "InProgress".into());
            config.insert(
                "LastUpdateStatusReason".into(),
                "The function is being updated.".into(),
            );
            config.insert("LastUpdateStatusReasonCode".into(), "Updating".into());
        }
        serde_json::to_vec(&v).ok()
    }
}
