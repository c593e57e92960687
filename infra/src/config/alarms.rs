//! `[alarms]`: CloudWatch alarms on the stack's output tokens, 5xx answers and throttles,
//! notifying an SNS topic (with an optional e-mail subscription). No `[alarms]`, no alarms.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlarmsSection {
    /// The window each alarm sums over: 60 to 86400 seconds, a multiple of 60.
    pub period_seconds: u32,
    /// Alarm when the stack's output tokens (ClaudeProxy OutputTokens, dimension function)
    /// in one period reach this many.
    pub output_tokens: u64,
    /// Alarm when this many 5xx answers (ClaudeProxy Errors5xx) come in one period.
    pub errors_5xx: u64,
    /// Alarm when this many 429 answers (ClaudeProxy Throttles) come in one period.
    pub throttles: u64,
    /// Subscribe this address to the alarms' topic (AWS sends it a confirmation first).
    pub email: Option<String>,
}

impl Default for AlarmsSection {
    fn default() -> Self {
        AlarmsSection {
            period_seconds: 3600,
            output_tokens: 1_000_000,
            errors_5xx: 10,
            throttles: 10,
            email: None,
        }
    }
}

impl AlarmsSection {
    pub fn validate(&self) -> Result<()> {
        let p = self.period_seconds;
        if !(60..=86400).contains(&p) || !p.is_multiple_of(60) {
            bail!("alarms.period_seconds = {p}: use a multiple of 60 from 60 to 86400 (CloudWatch's periods for these metrics)");
        }
        for (key, v) in [
            ("output_tokens", self.output_tokens),
            ("errors_5xx", self.errors_5xx),
            ("throttles", self.throttles),
        ] {
            if v == 0 {
                bail!("alarms.{key} = 0: the alarm would always fire; use at least 1 (or remove [alarms])");
            }
        }
        if let Some(e) = &self.email {
            let ok = e.len() <= 254
                && !e.chars().any(|c| c.is_whitespace() || c.is_control())
                && e.split_once('@').is_some_and(|(local, domain)| {
                    !local.is_empty() && domain.contains('.') && !domain.contains('@')
                });
            if !ok {
                bail!("alarms.email `{e}` is not an e-mail address (name@example.com)");
            }
        }
        Ok(())
    }
}
