//! Deterministic names and tags (ARCHITECTURE.md, "Names and tags"). There is no state file:
//! every resource is found again by these names or by the `stack` + `managed-by` tags.

use anyhow::{bail, Result};
use serde::Serialize;
use std::collections::BTreeMap;

/// Value of the `managed-by` tag on everything the toolkit creates.
pub const MANAGED_BY: &str = "claude-lambda-toolkit";
pub const TAG_STACK: &str = "stack";
pub const TAG_MANAGED_BY: &str = "managed-by";
pub const TAG_CREATED_AT: &str = "created-at";
/// On an API key or usage plan of one named caller (`rest_api::caller_keys`): its name.
pub const TAG_CALLER: &str = "claude-proxy:caller";

/// Statement ids of the function's resource policy.
pub const SID_URL_INVOKE_URL: &str = "claude-proxy-url-invoke-function-url";
pub const SID_URL_INVOKE_FUNCTION: &str = "claude-proxy-url-invoke-function";
/// The alias callers reach the function through.
pub const ALIAS: &str = "live";
pub const SID_API_INVOKE: &str = "claude-proxy-apigateway-invoke";
pub const SID_REST_INVOKE: &str = "claude-proxy-rest-api-invoke";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Names {
    pub stack: String,
    pub function: String,
    pub role: String,
    pub role_policy: String,
    pub secret: String,
    pub log_group: String,
    pub http_api: String,
    /// The REST API (`[api] kind = "rest"`), named like the HTTP API.
    pub rest_api: String,
    /// The REST API's usage plan.
    pub usage_plan: String,
    /// The API key of the stack's `default` caller.
    pub default_api_key: String,
    pub layer: String,
    pub ecr_repository: String,
    /// The SNS topic the stack's alarms notify (`[alarms]`).
    pub alarm_topic: String,
}

impl Names {
    pub fn new(stack: &str) -> Names {
        let function = format!("claude-proxy-{stack}");
        Names {
            stack: stack.to_string(),
            role: format!("{function}-role"),
            role_policy: format!("{function}-policy"),
            secret: format!("claude-proxy/{stack}"),
            log_group: format!("/aws/lambda/{function}"),
            http_api: function.clone(),
            rest_api: function.clone(),
            usage_plan: function.clone(),
            default_api_key: format!("{function}-default"),
            layer: format!("{function}-bootstrap"),
            ecr_repository: format!("claude-proxy-{}", stack.to_ascii_lowercase()),
            alarm_topic: format!("{function}-alarms"),
            function,
        }
    }

    /// The log group's ARN in the form IAM policies use for its streams.
    pub fn log_group_arn(&self, partition: &str, region: &str, account: &str) -> String {
        format!(
            "arn:{partition}:logs:{region}:{account}:log-group:{}:*",
            self.log_group
        )
    }
}

/// The tags the toolkit owns (`stack`, `managed-by`), compared by the plan.
pub fn owned_tags(stack: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (TAG_STACK.to_string(), stack.to_string()),
        (TAG_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
    ])
}

/// All tags to put on a resource being created now.
pub fn tags_at_creation(stack: &str, created_at: &str) -> BTreeMap<String, String> {
    let mut t = owned_tags(stack);
    t.insert(TAG_CREATED_AT.to_string(), created_at.to_string());
    t
}

/// The tags to put back on a resource of the stack whose owned tags went missing: the
/// creation tags, less `created-at` when the resource still has one (its first value stays).
pub fn tags_to_restore(
    stack: &str,
    created_at: &str,
    actual: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut t = tags_at_creation(stack, created_at);
    if actual.contains_key(TAG_CREATED_AT) {
        t.remove(TAG_CREATED_AT);
    }
    t
}

/// True when the tags say the resource belongs to this stack.
pub fn is_ours(tags: &BTreeMap<String, String>, stack: &str) -> bool {
    tags.get(TAG_STACK).map(String::as_str) == Some(stack)
        && tags.get(TAG_MANAGED_BY).map(String::as_str) == Some(MANAGED_BY)
}

/// Owned tags that are missing or different on `actual`, as `key=value` (for the plan).
pub fn missing_tags(stack: &str, actual: &BTreeMap<String, String>) -> Vec<String> {
    owned_tags(stack)
        .into_iter()
        .filter(|(k, v)| actual.get(k) != Some(v))
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
}

/// Stack names: `^[a-z][a-z0-9-]{0,30}[a-z0-9]$` without `--`. Every resource name is
/// built from the stack name, and the strictest of them rules: the ECR repository name
/// (`claude-proxy-S`, lowercased) must match `[a-z0-9]+(?:[._-][a-z0-9]+)*`, so no
/// separator may follow another. The longest names (`claude-proxy-S-role` 50, the function
/// 45) stay within IAM's and Lambda's 64.
pub fn validate_stack_name(name: &str) -> Result<()> {
    let b = name.as_bytes();
    let ok = (2..=32).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
        && !name.contains("--");
    if !ok {
        bail!(
            "invalid stack name `{name}`: use 2 to 32 characters, lowercase letters, digits and \
             single `-` between them, starting with a letter and not ending with `-` (e.g. `dev`, \
             `team-a`; every resource name, the ECR repository's included, must accept it)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_architecture_contract() {
        let n = Names::new("team-a");
        assert_eq!(n.function, "claude-proxy-team-a");
        assert_eq!(n.role, "claude-proxy-team-a-role");
        assert_eq!(n.role_policy, "claude-proxy-team-a-policy");
        assert_eq!(n.secret, "claude-proxy/team-a");
        assert_eq!(n.log_group, "/aws/lambda/claude-proxy-team-a");
        assert_eq!(n.http_api, "claude-proxy-team-a");
        assert_eq!(n.rest_api, "claude-proxy-team-a");
        assert_eq!(n.usage_plan, "claude-proxy-team-a");
        assert_eq!(n.default_api_key, "claude-proxy-team-a-default");
        assert_eq!(n.layer, "claude-proxy-team-a-bootstrap");
        assert_eq!(n.ecr_repository, "claude-proxy-team-a");
        assert_eq!(n.alarm_topic, "claude-proxy-team-a-alarms");
        assert_eq!(
            n.log_group_arn("aws", "us-east-1", "123456789012"),
            "arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/claude-proxy-team-a:*"
        );
        assert_eq!(
            n.log_group_arn("aws-cn", "cn-north-1", "123456789012"),
            "arn:aws-cn:logs:cn-north-1:123456789012:log-group:/aws/lambda/claude-proxy-team-a:*"
        );
    }

    #[test]
    fn tags() {
        let t = tags_at_creation("dev", "2026-01-01T00:00:00Z");
        assert!(is_ours(&t, "dev"));
        assert!(!is_ours(&t, "prod"));
        assert!(missing_tags("dev", &t).is_empty());
        assert_eq!(
            missing_tags("dev", &BTreeMap::new()),
            vec!["managed-by=claude-lambda-toolkit", "stack=dev"]
        );
    }

    #[test]
    fn stack_names() {
        for ok in ["ab", "dev", "team-a", "a1", &format!("a{}", "b".repeat(31))] {
            validate_stack_name(ok).unwrap();
        }
        for bad in [
            "a",
            "Dev",
            "1dev",
            "dev-",
            "de_v",
            "a--b",
            "team--a",
            "",
            &format!("a{}", "b".repeat(32)),
        ] {
            assert!(validate_stack_name(bad).is_err(), "{bad}");
        }
    }
}
