//! `[release]`: how a new function version reaches callers through the alias `live`.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How traffic moves from the version `live` points to onto a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// 100% at once, after the smoke test.
    #[default]
    AllAtOnce,
    /// `canary_percent` for `canary_interval_seconds`, then 100%.
    Canary,
    /// `+linear_percent` every `linear_interval_seconds` until 100%.
    Linear,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::AllAtOnce => "all-at-once",
            Strategy::Canary => "canary",
            Strategy::Linear => "linear",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Strategy {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "all-at-once" => Ok(Strategy::AllAtOnce),
            "canary" => Ok(Strategy::Canary),
            "linear" => Ok(Strategy::Linear),
            other => bail!("unknown release strategy `{other}`: use all-at-once, canary or linear"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReleaseSection {
    pub strategy: Strategy,
    /// Canary: the share of requests the new version gets first (1 to 99).
    pub canary_percent: u32,
    /// Canary: how long that share is watched before 100%.
    pub canary_interval_seconds: u32,
    /// Linear: the share added at each step (1 to 99).
    pub linear_percent: u32,
    /// Linear: how long each step is watched.
    pub linear_interval_seconds: u32,
    /// Published versions kept (the newest; never one an alias uses), at least 1.
    pub keep_versions: u32,
    /// While shifting: the new version's share of failed invocations (Errors + Throttles
    /// over Invocations, and the proxy's 5xx answers) above which it is rolled back.
    pub max_error_percent: f64,
}

impl Default for ReleaseSection {
    fn default() -> Self {
        ReleaseSection {
            strategy: Strategy::AllAtOnce,
            canary_percent: 10,
            canary_interval_seconds: 300,
            linear_percent: 25,
            linear_interval_seconds: 120,
            keep_versions: 5,
            max_error_percent: 1.0,
        }
    }
}

impl ReleaseSection {
    pub fn validate(&self) -> Result<()> {
        for (key, v) in [
            ("canary_percent", self.canary_percent),
            ("linear_percent", self.linear_percent),
        ] {
            if !(1..=99).contains(&v) {
                bail!("release.{key} = {v}: use 1 to 99 (percent of requests)");
            }
        }
        for (key, v) in [
            ("canary_interval_seconds", self.canary_interval_seconds),
            ("linear_interval_seconds", self.linear_interval_seconds),
        ] {
            if !(1..=86400).contains(&v) {
                bail!("release.{key} = {v}: use 1 to 86400 (seconds)");
            }
        }
        if self.keep_versions == 0 {
            bail!("release.keep_versions = 0: keep at least 1 version (the one `live` points to)");
        }
        if !(self.max_error_percent >= 0.0 && self.max_error_percent <= 100.0) {
            bail!(
                "release.max_error_percent = {}: use 0 to 100",
                self.max_error_percent
            );
        }
        Ok(())
    }

    /// The shares (percent of requests on the new version) a release goes through, each
    /// held for the returned seconds and watched, before the last, 100.
    pub fn steps(&self) -> Vec<(u32, u32)> {
        match self.strategy {
            Strategy::AllAtOnce => vec![(100, 0)],
            Strategy::Canary => vec![
                (self.canary_percent, self.canary_interval_seconds),
                (100, 0),
            ],
            Strategy::Linear => {
                let mut out = Vec::new();
                let mut p = self.linear_percent;
                while p < 100 {
                    out.push((p, self.linear_interval_seconds));
                    p += self.linear_percent;
                }
                out.push((100, 0));
                out
            }
        }
    }

    /// How long a release takes at least (the watched intervals), in seconds.
    pub fn duration_seconds(&self) -> u32 {
        self.steps().iter().map(|(_, s)| s).sum()
    }

    /// What the plan says about the strategy.
    pub fn describe(&self) -> String {
        match self.strategy {
            Strategy::AllAtOnce => "all-at-once".into(),
            Strategy::Canary => format!(
                "canary: {}% for {} s, then 100%",
                self.canary_percent, self.canary_interval_seconds
            ),
            Strategy::Linear => format!(
                "linear: +{}% every {} s",
                self.linear_percent, self.linear_interval_seconds
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_of_each_strategy() {
        let mut r = ReleaseSection::default();
        assert_eq!(r.steps(), vec![(100, 0)]);
        r.strategy = Strategy::Canary;
        assert_eq!(r.steps(), vec![(10, 300), (100, 0)]);
        assert_eq!(r.duration_seconds(), 300);
        r.strategy = Strategy::Linear;
        assert_eq!(r.steps(), vec![(25, 120), (50, 120), (75, 120), (100, 0)]);
        r.linear_percent = 40;
        assert_eq!(r.steps(), vec![(40, 120), (80, 120), (100, 0)]);
    }

    #[test]
    fn bad_values_say_what_to_use() {
        let r = ReleaseSection {
            canary_percent: 0,
            ..Default::default()
        };
        assert!(r.validate().unwrap_err().to_string().contains("1 to 99"));
        let r = ReleaseSection {
            keep_versions: 0,
            ..Default::default()
        };
        assert!(r.validate().is_err());
        assert!("blue-green".parse::<Strategy>().is_err());
    }
}
