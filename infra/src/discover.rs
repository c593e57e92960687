//! Finding every stack in the account and region by its tags, for `teardown --older-than`.
//!
//! Lists functions, roles, secrets (the stack secrets and their deploy locks), log groups,
//! the alarms' SNS topics and HTTP APIs whose names carry the toolkit's prefix, and keeps those tagged
//! `managed-by=claude-lambda-toolkit`, grouped by their `stack` tag. Roles are listed through
//! IAM (the Resource Groups Tagging API does not cover them), so a stack whose function is
//! gone but whose role remains is still found. A stack's age is the oldest `created-at` tag
//! among its resources.

use crate::aws::{ctx, Aws, OrNotFound};
use crate::names::{MANAGED_BY, TAG_CREATED_AT, TAG_MANAGED_BY, TAG_STACK};
use anyhow::Result;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::SystemTime;

/// One stack found in the account.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FoundStack {
    pub stack: String,
    /// The oldest `created-at` tag among its resources (RFC 3339), if any has one.
    pub created_at: Option<String>,
    /// What was found, e.g. "function claude-proxy-pr-7".
    pub resources: Vec<String>,
}

impl FoundStack {
    pub fn created(&self) -> Option<SystemTime> {
        self.created_at
            .as_deref()
            .and_then(|c| humantime::parse_rfc3339_weak(c).ok())
    }
}

#[derive(Default)]
struct Acc {
    stacks: BTreeMap<String, FoundStack>,
}

impl Acc {
    fn add(&mut self, what: String, tags: &BTreeMap<String, String>) {
        if tags.get(TAG_MANAGED_BY).map(String::as_str) != Some(MANAGED_BY) {
            return;
        }
        let Some(stack) = tags.get(TAG_STACK) else {
            return;
        };
        if crate::names::validate_stack_name(stack).is_err() {
            return;
        }
        let entry = self
            .stacks
            .entry(stack.clone())
            .or_insert_with(|| FoundStack {
                stack: stack.clone(),
                created_at: None,
                resources: Vec::new(),
            });
        entry.resources.push(what);
        if let Some(c) = tags.get(TAG_CREATED_AT) {
            let Ok(t) = humantime::parse_rfc3339_weak(c) else {
                return;
            };
            if entry.created().is_none_or(|old| t < old) {
                entry.created_at = Some(c.clone());
            }
        }
    }
}

/// Every stack of the toolkit in the account and region, by name.
pub async fn find_stacks(aws: &Aws) -> Result<Vec<FoundStack>> {
    let mut acc = Acc::default();

    // Functions (ListFunctions has no tags: ListTags for ours by name).
    let mut pages = aws.lambda.list_functions().into_paginator().send();
    while let Some(page) = pages.next().await {
        let out = page.map_err(ctx("lambda:ListFunctions"))?;
        for f in out.functions() {
            let (Some(name), Some(arn)) = (f.function_name(), f.function_arn()) else {
                continue;
            };
            if !name.starts_with("claude-proxy-") {
                continue;
            }
            let Some(tags) = aws
                .lambda
                .list_tags()
                .resource(arn)
                .send()
                .await
                .or_not_found()
                .map_err(ctx(format!("lambda:ListTags {name}")))?
            else {
                continue;
            };
            let tags = tags.tags().cloned().unwrap_or_default();
            acc.add(format!("function {name}"), &tags.into_iter().collect());
        }
    }

    // Roles (not covered by the tagging API).
    let mut pages = aws.iam.list_roles().into_paginator().send();
    while let Some(page) = pages.next().await {
        let out = page.map_err(ctx("iam:ListRoles"))?;
        for r in out.roles() {
            let name = r.role_name();
            if !(name.starts_with("claude-proxy-") && name.ends_with("-role")) {
                continue;
            }
            let Some(tags) = aws
                .iam
                .list_role_tags()
                .role_name(name)
                .send()
                .await
                .or_not_found()
                .map_err(ctx(format!("iam:ListRoleTags {name}")))?
            else {
                continue;
            };
            let tags = tags
                .tags()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect();
            acc.add(format!("IAM role {name}"), &tags);
        }
    }

    // Secrets and deploy locks (tags come with the list).
    let mut pages = aws
        .secrets
        .list_secrets()
        .filters(
            aws_sdk_secretsmanager::types::Filter::builder()
                .key(aws_sdk_secretsmanager::types::FilterNameStringType::Name)
                .values("claude-proxy/")
                .build(),
        )
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let out = page.map_err(ctx("secretsmanager:ListSecrets"))?;
        for s in out.secret_list() {
            let Some(name) = s.name() else { continue };
            if !name.starts_with("claude-proxy/") {
                continue;
            }
            let tags = s
                .tags()
                .iter()
                .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                .collect();
            let what = if name.ends_with("/lock") {
                format!("deploy lock {name}")
            } else {
                format!("secret {name}")
            };
            acc.add(what, &tags);
        }
    }

    // Log groups.
    let mut pages = aws
        .logs
        .describe_log_groups()
        .log_group_name_prefix("/aws/lambda/claude-proxy-")
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let out = page.map_err(ctx("logs:DescribeLogGroups"))?;
        for g in out.log_groups() {
            let (Some(name), Some(arn)) = (g.log_group_name(), g.arn()) else {
                continue;
            };
            let Some(tags) = aws
                .logs
                .list_tags_for_resource()
                .resource_arn(arn.trim_end_matches(":*"))
                .send()
                .await
                .or_not_found()
                .map_err(ctx(format!("logs:ListTagsForResource {name}")))?
            else {
                continue;
            };
            let tags = tags.tags().cloned().unwrap_or_default();
            acc.add(format!("log group {name}"), &tags.into_iter().collect());
        }
    }

    // The alarms' SNS topics (an alarm of the toolkit never outlives its topic).
    let mut pages = aws.sns.list_topics().into_paginator().send();
    while let Some(page) = pages.next().await {
        let out = page.map_err(ctx("sns:ListTopics"))?;
        for t in out.topics() {
            let Some(arn) = t.topic_arn() else { continue };
            let name = arn.rsplit(':').next().unwrap_or_default();
            if !(name.starts_with("claude-proxy-") && name.ends_with("-alarms")) {
                continue;
            }
            let Some(tags) = aws
                .sns
                .list_tags_for_resource()
                .resource_arn(arn)
                .send()
                .await
                .or_not_found()
                .map_err(ctx(format!("sns:ListTagsForResource {name}")))?
            else {
                continue;
            };
            let tags = tags
                .tags()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect();
            acc.add(format!("SNS topic {name}"), &tags);
        }
    }

    // HTTP APIs (tags come with the list).
    for a in crate::http_api::list_apis(aws).await? {
        let tags = a.tags().cloned().unwrap_or_default();
        acc.add(
            format!(
                "HTTP API {} ({})",
                a.name().unwrap_or_default(),
                a.api_id().unwrap_or_default()
            ),
            &tags.into_iter().collect(),
        );
    }

    // REST APIs (tags come with the list), their usage plans and API keys.
    for a in crate::rest_api::list_apis(aws).await? {
        let tags = a.tags().cloned().unwrap_or_default();
        acc.add(
            format!(
                "REST API {} ({})",
                a.name().unwrap_or_default(),
                a.id().unwrap_or_default()
            ),
            &tags.into_iter().collect(),
        );
    }
    let mut pages = aws.apigw_rest.get_usage_plans().into_paginator().send();
    while let Some(page) = pages.next().await {
        for p in page.map_err(ctx("apigateway:GetUsagePlans"))?.items() {
            let tags = p.tags().cloned().unwrap_or_default();
            acc.add(
                format!("usage plan {}", p.name().unwrap_or_default()),
                &tags.into_iter().collect(),
            );
        }
    }
    let mut pages = aws
        .apigw_rest
        .get_api_keys()
        .name_query("claude-proxy-")
        .include_values(false)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for k in page
            .map_err(ctx("apigateway:GetApiKeys claude-proxy-*"))?
            .items()
        {
            let tags = k.tags().cloned().unwrap_or_default();
            acc.add(
                format!("API key {}", k.name().unwrap_or_default()),
                &tags.into_iter().collect(),
            );
        }
    }

    Ok(acc.stacks.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::tags_at_creation;

    #[test]
    fn groups_by_stack_and_keeps_the_oldest_created_at() {
        let mut acc = Acc::default();
        acc.add(
            "function claude-proxy-aa".into(),
            &tags_at_creation("aa", "2026-01-02T00:00:00Z"),
        );
        acc.add(
            "IAM role claude-proxy-a-role".into(),
            &tags_at_creation("aa", "2026-01-01T00:00:00Z"),
        );
        acc.add(
            "secret claude-proxy/b".into(),
            &tags_at_creation("bb", "2026-01-03T00:00:00Z"),
        );
        // Not ours: another tool's tags, or no tags.
        let mut other = tags_at_creation("cc", "2020-01-01T00:00:00Z");
        other.insert(TAG_MANAGED_BY.into(), "someone-else".into());
        acc.add("function claude-proxy-c".into(), &other);
        acc.add("function claude-proxy-d".into(), &BTreeMap::new());
        let found: Vec<FoundStack> = acc.stacks.into_values().collect();
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].stack, "aa");
        assert_eq!(found[0].created_at.as_deref(), Some("2026-01-01T00:00:00Z"));
        assert_eq!(found[0].resources.len(), 2);
        assert_eq!(found[1].stack, "bb");
    }
}
