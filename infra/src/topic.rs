//! The SNS topic `claude-proxy-<stack>-alarms` the stack's alarms notify (`[alarms]`), with
//! the stack's tags and an optional e-mail subscription. Its ARN follows from its name, so the
//! alarms name it before it exists; it is found again by that name (and its tags checked).
//!
//! Ordering (for `Kind::waits_for`): created before the alarms (they name it as their action),
//! deleted after them; it needs nothing else of the stack.

use crate::aws::{ctx, Aws, OrNotFound};
use crate::change::{Change, FieldChange, Kind, Setting};
use crate::desired::StackSpec;
use crate::names::{self, Names};
use crate::step::{Done, ResourceChange, Step, StepContext, StepFuture};
use anyhow::Result;
use aws_sdk_sns::types::Tag;
use std::collections::BTreeMap;

/// What SNS shows for an e-mail subscription the address has not confirmed yet (it cannot
/// be unsubscribed; SNS drops it after three days).
pub const PENDING: &str = "PendingConfirmation";

#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    pub protocol: String,
    pub endpoint: String,
    /// The subscription's ARN, or [`PENDING`].
    pub arn: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct State {
    pub arn: String,
    pub tags: BTreeMap<String, String>,
    pub subscriptions: Vec<Subscription>,
}

impl State {
    fn emails(&self) -> Vec<&Subscription> {
        self.subscriptions
            .iter()
            .filter(|s| s.protocol == "email")
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub name: String,
    pub arn: String,
    pub stack: String,
    pub email: Option<String>,
}

/// `arn:<partition>:sns:<region>:<account>:<name>`.
pub fn topic_arn(partition: &str, region: &str, account: &str, name: &str) -> String {
    format!("arn:{partition}:sns:{region}:{account}:{name}")
}

/// The topic a desired stack needs (only with `[alarms]`).
pub fn spec(names: &Names, s: &StackSpec, arn: &str) -> Option<Spec> {
    let a = s.config.alarms.as_ref()?;
    Some(Spec {
        name: names.alarm_topic.clone(),
        arn: arn.to_string(),
        stack: names.stack.clone(),
        email: a.email.clone(),
    })
}

pub fn plan(names: &Names, spec: Option<Spec>, actual: Option<&State>) -> Option<ResourceChange> {
    let change = diff(spec.as_ref(), actual)?;
    let action = match (spec, actual) {
        (Some(spec), None) => Action::Create(spec),
        (Some(spec), Some(a)) => Action::Update(spec, a.clone()),
        (None, Some(a)) => Action::Delete(a.arn.clone()),
        (None, None) => return None,
    };
    Some(ResourceChange::new(
        Kind::Topic,
        &names.alarm_topic,
        change,
        action,
    ))
}

pub fn diff(desired: Option<&Spec>, actual: Option<&State>) -> Option<Change> {
    match (desired, actual) {
        (None, None) => None,
        (None, Some(_)) => Some(Change::Delete),
        (Some(d), None) => Some(Change::Create {
            settings: vec![Setting::new(
                "email",
                d.email.as_deref().unwrap_or("(none)"),
            )],
        }),
        (Some(d), Some(a)) => {
            let mut fields = Vec::new();
            // An unconfirmed address no longer wanted cannot be unsubscribed: not a change.
            let emails: Vec<&str> = a
                .emails()
                .iter()
                .filter(|s| s.arn != PENDING || d.email.as_ref() == Some(&s.endpoint))
                .map(|s| s.endpoint.as_str())
                .collect();
            let wanted: Vec<&str> = d.email.iter().map(String::as_str).collect();
            if emails != wanted {
                fields.push(FieldChange::new(
                    "email",
                    if emails.is_empty() {
                        "(none)".to_string()
                    } else {
                        emails.join(",")
                    },
                    d.email.as_deref().unwrap_or("(none)"),
                ));
            }
            let missing = names::missing_tags(&d.stack, &a.tags);
            if !missing.is_empty() {
                fields.push(FieldChange::new("tags", "", missing.join(",")));
            }
            (!fields.is_empty()).then_some(Change::Update { fields })
        }
    }
}

#[derive(Debug)]
pub enum Action {
    Create(Spec),
    Update(Spec, State),
    Delete(String),
}

impl Step for Action {
    fn run<'a>(&'a self, cx: StepContext<'a>) -> StepFuture<'a> {
        Box::pin(async move {
            match self {
                Action::Create(spec) => create(cx.aws, spec, cx.created_at).await?,
                Action::Update(spec, a) => update(cx.aws, spec, a, cx.created_at).await?,
                Action::Delete(arn) => delete(cx.aws, arn).await?,
            }
            Done::nothing()
        })
    }
}

fn sns_tags(tags: BTreeMap<String, String>) -> Vec<Tag> {
    tags.into_iter()
        .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
        .collect()
}

/// Reads the topic by its ARN (from its name): attributes, tags, subscriptions.
pub async fn read(aws: &Aws, names: &Names) -> Result<Option<State>> {
    let arn = topic_arn(
        &aws.partition,
        &aws.region,
        &aws.account_id,
        &names.alarm_topic,
    );
    let what = |op: &str| format!("sns:{op} {}", names.alarm_topic);
    let Some(_) = aws
        .sns
        .get_topic_attributes()
        .topic_arn(&arn)
        .send()
        .await
        .or_not_found()
        .map_err(ctx(what("GetTopicAttributes")))?
    else {
        return Ok(None);
    };
    let Some(t) = aws
        .sns
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .or_not_found()
        .map_err(ctx(what("ListTagsForResource")))?
    else {
        return Ok(None);
    };
    let tags = t
        .tags()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    let mut subscriptions = Vec::new();
    let mut pages = aws
        .sns
        .list_subscriptions_by_topic()
        .topic_arn(&arn)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let Some(page) = page
            .or_not_found()
            .map_err(ctx(what("ListSubscriptionsByTopic")))?
        else {
            return Ok(None);
        };
        for s in page.subscriptions() {
            subscriptions.push(Subscription {
                protocol: s.protocol().unwrap_or_default().to_string(),
                endpoint: s.endpoint().unwrap_or_default().to_string(),
                arn: s.subscription_arn().unwrap_or_default().to_string(),
            });
        }
    }
    Ok(Some(State {
        arn,
        tags,
        subscriptions,
    }))
}

/// `CreateTopic` (idempotent by name), then the e-mail subscription.
pub async fn create(aws: &Aws, spec: &Spec, created_at: &str) -> Result<()> {
    aws.sns
        .create_topic()
        .name(&spec.name)
        .set_tags(Some(sns_tags(names::tags_at_creation(
            &spec.stack,
            created_at,
        ))))
        .send()
        .await
        .map_err(ctx(format!("sns:CreateTopic {}", spec.name)))?;
    if let Some(email) = &spec.email {
        subscribe(aws, spec, email).await?;
    }
    Ok(())
}

async fn subscribe(aws: &Aws, spec: &Spec, email: &str) -> Result<()> {
    aws.sns
        .subscribe()
        .topic_arn(&spec.arn)
        .protocol("email")
        .endpoint(email)
        .send()
        .await
        .map_err(ctx(format!("sns:Subscribe {} (email)", spec.name)))?;
    Ok(())
}

pub async fn update(aws: &Aws, spec: &Spec, actual: &State, created_at: &str) -> Result<()> {
    let emails = actual.emails();
    for s in &emails {
        if Some(&s.endpoint) != spec.email.as_ref() && s.arn != PENDING {
            aws.sns
                .unsubscribe()
                .subscription_arn(&s.arn)
                .send()
                .await
                .or_not_found()
                .map_err(ctx(format!("sns:Unsubscribe {} ({})", spec.name, s.arn)))?;
        }
    }
    if let Some(email) = &spec.email {
        if !emails.iter().any(|s| &s.endpoint == email) {
            subscribe(aws, spec, email).await?;
        }
    }
    if !names::missing_tags(&spec.stack, &actual.tags).is_empty() {
        let tags = names::tags_to_restore(&spec.stack, created_at, &actual.tags);
        aws.sns
            .tag_resource()
            .resource_arn(&actual.arn)
            .set_tags(Some(sns_tags(tags)))
            .send()
            .await
            .map_err(ctx(format!("sns:TagResource {}", spec.name)))?;
    }
    Ok(())
}

/// `DeleteTopic` (its subscriptions go with it; deleting a missing topic succeeds).
pub async fn delete(aws: &Aws, arn: &str) -> Result<()> {
    aws.sns
        .delete_topic()
        .topic_arn(arn)
        .send()
        .await
        .or_not_found()
        .map_err(ctx(format!("sns:DeleteTopic {arn}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(subs: &[(&str, &str)]) -> State {
        State {
            arn: "arn:aws:sns:us-east-1:1:claude-proxy-dev-alarms".into(),
            tags: names::owned_tags("dev"),
            subscriptions: subs
                .iter()
                .map(|(endpoint, arn)| Subscription {
                    protocol: "email".into(),
                    endpoint: endpoint.to_string(),
                    arn: arn.to_string(),
                })
                .collect(),
        }
    }

    fn spec(email: Option<&str>) -> Spec {
        Spec {
            name: "claude-proxy-dev-alarms".into(),
            arn: "arn:aws:sns:us-east-1:1:claude-proxy-dev-alarms".into(),
            stack: "dev".into(),
            email: email.map(str::to_string),
        }
    }

    #[test]
    fn the_email_is_diffed_and_an_unconfirmed_unwanted_one_is_not_a_change() {
        let confirmed = state(&[("a@example.com", "arn:sub:1")]);
        assert_eq!(
            diff(Some(&spec(Some("a@example.com"))), Some(&confirmed)),
            None
        );
        assert_eq!(
            diff(Some(&spec(Some("b@example.com"))), Some(&confirmed)),
            Some(Change::Update {
                fields: vec![FieldChange::new("email", "a@example.com", "b@example.com")]
            })
        );
        assert_eq!(
            diff(Some(&spec(None)), Some(&confirmed)),
            Some(Change::Update {
                fields: vec![FieldChange::new("email", "a@example.com", "(none)")]
            })
        );
        // Pending: cannot be unsubscribed, so dropping it from stack.toml changes nothing.
        let pending = state(&[("a@example.com", PENDING)]);
        assert_eq!(diff(Some(&spec(None)), Some(&pending)), None);
        assert_eq!(
            diff(Some(&spec(Some("a@example.com"))), Some(&pending)),
            None
        );
        let mut untagged = confirmed.clone();
        untagged.tags.clear();
        assert!(matches!(
            diff(Some(&spec(Some("a@example.com"))), Some(&untagged)),
            Some(Change::Update { fields }) if fields[0].field == "tags"
        ));
        assert_eq!(diff(None, Some(&confirmed)), Some(Change::Delete));
        assert_eq!(diff(None, None), None);
    }
}
