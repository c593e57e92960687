//! `[api]`: which API Gateway front the stack has (`kind = "none" | "http" | "rest"`, flag
//! `--api`), and for the REST API the usage plan every caller key belongs to (rate, burst,
//! quota per day, week or month). `[http_api] enabled = true` is the older spelling of
//! `kind = "http"` and still read.

use super::UrlAuth;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The API Gateway front.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiKind {
    /// No API Gateway: the Function URL alone.
    #[default]
    None,
    /// An HTTP API: buffered, 30 s, no per-caller limits.
    Http,
    /// A REST API: streams (up to 15 minutes), API keys and a usage plan per caller.
    Rest,
}

impl ApiKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiKind::None => "none",
            ApiKind::Http => "http",
            ApiKind::Rest => "rest",
        }
    }
}

impl fmt::Display for ApiKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ApiKind {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" | "off" => Ok(ApiKind::None),
            "http" => Ok(ApiKind::Http),
            "rest" => Ok(ApiKind::Rest),
            other => bail!("unknown API kind `{other}`: use `rest`, `http` or `none`"),
        }
    }
}

/// The period of a usage plan's quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QuotaPeriod {
    #[default]
    Day,
    Week,
    Month,
}

impl QuotaPeriod {
    /// API Gateway's `QuotaPeriodType`.
    pub fn as_aws(self) -> &'static str {
        match self {
            QuotaPeriod::Day => "DAY",
            QuotaPeriod::Week => "WEEK",
            QuotaPeriod::Month => "MONTH",
        }
    }
}

impl FromStr for QuotaPeriod {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "day" => Ok(QuotaPeriod::Day),
            "week" => Ok(QuotaPeriod::Week),
            "month" => Ok(QuotaPeriod::Month),
            other => bail!("unknown quota period `{other}`: use `day`, `week` or `month`"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    /// `none`, `http` or `rest`; unset = `http` when `[http_api] enabled = true`, else `none`.
    /// Read it through `StackConfig::api_kind`.
    pub kind: Option<ApiKind>,
    /// REST usage plan: steady requests per second per caller key (API Gateway's
    /// `rateLimit`; above it callers get `429 Too Many Requests`).
    pub rate_limit: f64,
    /// REST usage plan: the burst per caller key (`burstLimit`).
    pub burst_limit: u32,
    /// REST usage plan: requests per `quota_period` per caller key, then `429 Limit
    /// Exceeded` until the period ends; 0 = no quota.
    pub quota_limit: u32,
    /// `day`, `week` or `month`.
    pub quota_period: QuotaPeriod,
}

impl Default for ApiSection {
    fn default() -> Self {
        ApiSection {
            kind: None,
            rate_limit: 5.0,
            burst_limit: 10,
            quota_limit: 5000,
            quota_period: QuotaPeriod::Day,
        }
    }
}

impl ApiSection {
    /// Checks the usage plan's numbers (API Gateway's own bounds).
    pub fn validate(&self) -> Result<()> {
        if !(self.rate_limit > 0.0 && self.rate_limit.is_finite()) {
            bail!(
                "api.rate_limit = {}: give the steady requests per second per caller, more than 0 (e.g. 5.0)",
                self.rate_limit
            );
        }
        if self.burst_limit == 0 {
            bail!("api.burst_limit must be at least 1 (requests a caller may send at once)");
        }
        if (self.burst_limit as f64) < self.rate_limit.ceil() {
            bail!(
                "api.burst_limit = {} is below api.rate_limit = {}: API Gateway needs the burst to be at least the rate",
                self.burst_limit,
                self.rate_limit
            );
        }
        Ok(())
    }

    /// The usage plan as one line (plans and notes).
    pub fn summary(&self) -> String {
        let quota = if self.quota_limit == 0 {
            "no quota".to_string()
        } else {
            format!(
                "quota {} per {}",
                self.quota_limit,
                self.quota_period.as_aws().to_ascii_lowercase()
            )
        };
        format!(
            "rate {} req/s, burst {}, {quota} (per caller key)",
            self.rate_limit, self.burst_limit
        )
    }
}

impl super::StackConfig {
    /// The API Gateway front (`[api] kind`, or `http` from the older `[http_api]`).
    pub fn api_kind(&self) -> ApiKind {
        self.api.kind.unwrap_or(if self.http_api.enabled {
            ApiKind::Http
        } else {
            ApiKind::None
        })
    }

    /// One spelling of the front: `api.kind` set for `http` and `rest` (unset for none, as
    /// by default), `http_api.enabled` true exactly for `http`. With the REST API as the
    /// front a public (`NONE`) Function URL is turned off, so that nobody goes around the
    /// usage plan's throttles and quotas (an `AWS_IAM` URL stays); the plan says so.
    pub(super) fn normalized(mut self) -> super::StackConfig {
        let kind = self.api_kind();
        self.api.kind = (kind != ApiKind::None).then_some(kind);
        self.http_api.enabled = kind == ApiKind::Http;
        if kind == ApiKind::Rest && self.function_url.auth == UrlAuth::None {
            self.function_url.enabled = false;
        }
        self
    }

    /// `--api` and its older spelling `--http-api` / `--no-http-api` (which takes only the
    /// HTTP API away).
    pub(super) fn set_api_kind(&mut self, api: Option<ApiKind>, http_api: Option<bool>) {
        match (api, http_api) {
            (Some(kind), _) => self.api.kind = Some(kind),
            (None, Some(true)) => self.api.kind = Some(ApiKind::Http),
            (None, Some(false)) if self.api_kind() == ApiKind::Http => {
                self.api.kind = Some(ApiKind::None)
            }
            _ => {}
        }
    }

    /// `[http_api] enabled = true` is the older spelling of `kind = "http"`: not together
    /// with another kind.
    pub(super) fn check_api_spelling(&self) -> Result<()> {
        if let (Some(kind), true) = (self.api.kind, self.http_api.enabled) {
            if kind != ApiKind::Http {
                bail!(
                    "[http_api] enabled = true conflicts with [api] kind = \"{kind}\": [http_api] is the older spelling of kind = \"http\"; remove it"
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_and_bad_numbers_are_refused() {
        assert_eq!("REST".parse::<ApiKind>().unwrap(), ApiKind::Rest);
        assert_eq!("http".parse::<ApiKind>().unwrap(), ApiKind::Http);
        assert_eq!("none".parse::<ApiKind>().unwrap(), ApiKind::None);
        assert!("graphql"
            .parse::<ApiKind>()
            .unwrap_err()
            .to_string()
            .contains("rest"));
        ApiSection::default().validate().unwrap();
        for bad in [
            ApiSection {
                rate_limit: 0.0,
                ..Default::default()
            },
            ApiSection {
                rate_limit: f64::NAN,
                ..Default::default()
            },
            ApiSection {
                burst_limit: 0,
                ..Default::default()
            },
            ApiSection {
                rate_limit: 50.0,
                burst_limit: 10,
                ..Default::default()
            },
        ] {
            assert!(bad.validate().unwrap_err().to_string().contains("api."));
        }
        assert_eq!(
            ApiSection::default().summary(),
            "rate 5 req/s, burst 10, quota 5000 per day (per caller key)"
        );
    }
}
