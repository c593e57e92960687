//! The REST API's usage plan `claude-proxy-<stack>` (rate, burst and quota per caller key,
//! from `[api]`, on the API's stage) and the API key of the stack's `default` caller,
//! `claude-proxy-<stack>-default`, a member of that plan. API Gateway enforces both before
//! the function runs: `403` without a valid key, `429` over the rate or the quota.
//!
//! The key's value is generated here, sent once to CreateApiKey and returned to the deploy
//! output (shown once, like a new caller token); it is never read back (GetApiKeys without
//! `includeValues`) and appears nowhere else. A key whose create was interrupted before it
//! joined the plan was never shown, so it is replaced by a new one.

use super::STAGE;
use crate::aws::{ctx, Aws, OrNotFound};
use crate::change::{Change, FieldChange, Kind, Late, Produced, Refs, Setting};
use crate::config::QuotaPeriod;
use crate::desired::StackSpec;
use crate::names;
use crate::step::{Done, ResourceChange, Step, StepContext, StepFuture};
use anyhow::{Context, Result};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub struct PlanState {
    pub id: String,
    pub name: String,
    pub tags: BTreeMap<String, String>,
    /// `apiId:stage`.
    pub api_stages: Vec<String>,
    pub rate_limit: Option<f64>,
    pub burst_limit: Option<i32>,
    /// (limit, `DAY`/`WEEK`/`MONTH`).
    pub quota: Option<(i32, String)>,
    /// The API keys in the plan.
    pub key_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KeyState {
    pub id: String,
    pub name: String,
    pub enabled: bool,
    pub tags: BTreeMap<String, String>,
}

/// The stack's usage plans and API keys (normally one of each).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct State {
    pub plans: Vec<PlanState>,
    pub keys: Vec<KeyState>,
}

impl State {
    pub fn is_empty(&self) -> bool {
        self.plans.is_empty() && self.keys.is_empty()
    }
    /// The shared plan `claude-proxy-<stack>` (the first plan no caller owns).
    pub fn shared(&self) -> Option<&PlanState> {
        self.plans.iter().find(|p| p.caller().is_none())
    }
    /// `caller`'s own plan (`claude-proxy-<stack>-<caller>`, tagged with its name).
    pub fn caller_plan(&self, caller: &str) -> Option<&PlanState> {
        self.plans.iter().find(|p| p.caller() == Some(caller))
    }
}

impl PlanState {
    /// The caller whose own plan this is (its `claude-proxy:caller` tag).
    pub fn caller(&self) -> Option<&str> {
        self.tags.get(crate::names::TAG_CALLER).map(String::as_str)
    }
}

/// A usage plan's numbers as API Gateway takes them.
pub(crate) fn aws_numbers(t: &crate::callers::Throttle) -> (f64, i32, Option<(i32, QuotaPeriod)>) {
    (
        t.rate_limit,
        t.burst_limit.min(i32::MAX as u32) as i32,
        (t.quota_limit > 0).then(|| (t.quota_limit.min(i32::MAX as u32) as i32, t.quota_period)),
    )
}

#[derive(Debug, Clone)]
pub struct Spec {
    pub name: String,
    pub key_name: String,
    pub stack: String,
    /// The REST API whose stage the plan covers.
    pub api_id: Late,
    pub rate_limit: f64,
    pub burst_limit: i32,
    pub quota: Option<(i32, QuotaPeriod)>,
    /// `--rotate-token`: the default caller's key is replaced by a new one (shown once).
    pub rotate_key: bool,
    /// The ids of the named callers' own keys, from the secret's `callers` (`api_key_id`):
    /// kept and members of the plan. Any other key of the stack (but the default's) is one a
    /// `callers` command made and was killed before it recorded it: never shown, so deleted.
    /// `None` when the secret's value could not be read: then no key is deleted.
    pub caller_keys: Option<std::collections::BTreeSet<String>>,
    /// The callers with their own plan (`claude-proxy-<stack>-<caller>`) and its numbers,
    /// from the secret: those plans are kept (and their numbers kept in step), any other
    /// caller plan of the stack deleted. `None` when the secret's value could not be read:
    /// then every caller plan is kept as it is.
    pub caller_plans: Option<BTreeMap<String, crate::callers::Throttle>>,
}

impl Spec {
    fn resolve(&self, produced: &Produced) -> Result<Spec> {
        Ok(Spec {
            api_id: Late::Known(self.api_id.resolve(produced)?),
            ..self.clone()
        })
    }
    fn api_stage(&self) -> String {
        format!("{}:{STAGE}", self.api_id.planned())
    }
    fn quota_text(&self) -> String {
        match self.quota {
            Some((n, p)) => format!("{n} per {}", p.as_aws()),
            None => "none".into(),
        }
    }
}

/// The usage plan a desired stack needs (with the REST API), else `None`.
pub fn spec(names: &names::Names, s: &StackSpec, refs: &Refs) -> Option<Spec> {
    let a = &s.config.api;
    (s.config.api_kind() == crate::config::ApiKind::Rest).then(|| Spec {
        name: names.usage_plan.clone(),
        key_name: names.default_api_key.clone(),
        stack: names.stack.clone(),
        api_id: refs.rest_api_id.clone(),
        rate_limit: a.rate_limit,
        burst_limit: a.burst_limit.min(i32::MAX as u32) as i32,
        quota: (a.quota_limit > 0)
            .then(|| (a.quota_limit.min(i32::MAX as u32) as i32, a.quota_period)),
        rotate_key: s.secret.rotate_token,
        caller_keys: None,
        caller_plans: None,
    })
}

/// The callers with their own plan in the secret read with the stack, and its numbers over
/// `api` (`None`: the secret's value unreadable).
pub fn caller_plans(
    secret: Option<&crate::secret::State>,
    api: &crate::config::ApiSection,
) -> Option<BTreeMap<String, crate::callers::Throttle>> {
    match secret {
        None => Some(Default::default()),
        Some(s) => s.value.as_ref().map(|v| {
            v.callers
                .iter()
                .filter(|c| c.limits.has_own_plan())
                .map(|c| (c.name.clone(), c.limits.throttle(api)))
                .collect()
        }),
    }
}

/// The callers' key ids the secret read with the stack holds (`None`: its value unreadable).
pub fn caller_keys(
    secret: Option<&crate::secret::State>,
) -> Option<std::collections::BTreeSet<String>> {
    match secret {
        None => Some(Default::default()),
        Some(s) => s.value.as_ref().map(|v| {
            v.callers
                .iter()
                .filter_map(|c| c.api_key_id.clone())
                .collect()
        }),
    }
}

impl Spec {
    /// A caller's own plan the stack keeps.
    pub(crate) fn keeps_caller_plan(&self, p: &PlanState) -> bool {
        match (p.caller(), &self.caller_plans) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(c), Some(m)) => m.contains_key(c),
        }
    }
    /// This spec with the numbers of `caller`'s own plan (`None` when not known: the
    /// secret unreadable).
    pub(crate) fn for_caller(&self, caller: &str) -> Option<Spec> {
        let t = self.caller_plans.as_ref()?.get(caller)?;
        let (rate_limit, burst_limit, quota) = aws_numbers(t);
        Some(Spec {
            rate_limit,
            burst_limit,
            quota,
            ..self.clone()
        })
    }
    /// Whether the key `id` sits in the shared plan or in a caller plan the stack keeps.
    pub(crate) fn key_placed(&self, state: &State, id: &str) -> bool {
        state.plans.iter().any(|p| {
            (Some(p.id.as_str()) == state.shared().map(|s| s.id.as_str())
                || self.keeps_caller_plan(p))
                && p.key_ids.iter().any(|k| k == id)
        })
    }
    /// A caller's own key (kept; not the default's, which this step manages).
    pub(crate) fn is_caller_key(&self, k: &KeyState) -> bool {
        k.name != self.key_name
            && match &self.caller_keys {
                Some(ids) => ids.contains(&k.id),
                None => true,
            }
    }
}

fn key_member<'a>(spec: &Spec, state: &'a State) -> (Option<&'a PlanState>, Option<&'a KeyState>) {
    let plan = state.shared();
    let key = state
        .keys
        .iter()
        .find(|k| k.name == spec.key_name && names::is_ours(&k.tags, &spec.stack));
    (plan, key)
}

/// Field-level differences.
fn fields(spec: &Spec, a: &State) -> Vec<FieldChange> {
    let mut f = Vec::new();
    let (plan, key) = key_member(spec, a);
    match plan {
        None => f.push(FieldChange::new(
            "usage_plan",
            "(none)",
            format!(
                "{} on {}: rate {}, burst {}, quota {}",
                spec.name,
                spec.api_stage(),
                spec.rate_limit,
                spec.burst_limit,
                spec.quota_text()
            ),
        )),
        Some(p) => {
            if p.api_stages != [spec.api_stage()] {
                f.push(FieldChange::new(
                    "api_stages",
                    p.api_stages.join(", "),
                    spec.api_stage(),
                ));
            }
            if p.rate_limit != Some(spec.rate_limit) || p.burst_limit != Some(spec.burst_limit) {
                f.push(FieldChange::new(
                    "throttle",
                    format!(
                        "rate {}, burst {}",
                        p.rate_limit.map(|r| r.to_string()).unwrap_or("-".into()),
                        p.burst_limit.map(|b| b.to_string()).unwrap_or("-".into())
                    ),
                    format!("rate {}, burst {}", spec.rate_limit, spec.burst_limit),
                ));
            }
            let want_quota = spec.quota.map(|(n, p)| (n, p.as_aws().to_string()));
            if p.quota != want_quota {
                let have = match &p.quota {
                    Some((n, per)) => format!("{n} per {per}"),
                    None => "none".into(),
                };
                f.push(FieldChange::new("quota", have, spec.quota_text()));
            }
            let missing = names::missing_tags(&spec.stack, &p.tags);
            if !missing.is_empty() {
                f.push(FieldChange::new("tags", "", missing.join(",")));
            }
        }
    }
    let in_plan = |k: &KeyState| plan.is_some_and(|p| p.key_ids.contains(&k.id));
    match key {
        Some(k) if spec.rotate_key => f.push(FieldChange::new(
            "api_key",
            k.id.clone(),
            format!("{} (rotated: a new value, shown once)", spec.key_name),
        )),
        Some(k) if in_plan(k) && k.enabled => {}
        Some(k) if in_plan(k) => f.push(FieldChange::new("api_key.enabled", "false", "true")),
        // Never shown (its create was interrupted before it joined the plan): a new one.
        Some(k) => f.push(FieldChange::new(
            "api_key",
            format!("{} (not in the plan)", k.id),
            format!("{} (new; its value is shown once)", spec.key_name),
        )),
        None => f.push(FieldChange::new(
            "api_key",
            "(none)",
            format!("{} (new; its value is shown once)", spec.key_name),
        )),
    }
    let outside: Vec<&str> = a
        .keys
        .iter()
        .filter(|k| spec.is_caller_key(k) && !spec.key_placed(a, &k.id))
        .map(|k| k.name.as_str())
        .collect();
    if !outside.is_empty() {
        f.push(FieldChange::new(
            "caller_api_keys",
            format!("{} not in the plan", outside.join(", ")),
            "members of the plan",
        ));
    }
    for p in a.plans.iter().filter(|p| spec.keeps_caller_plan(p)) {
        let c = p.caller().unwrap_or_default();
        let Some(want) = spec.for_caller(c) else {
            continue;
        };
        let have = (p.rate_limit, p.burst_limit, p.quota.clone());
        let wanted = (
            Some(want.rate_limit),
            Some(want.burst_limit),
            want.quota.map(|(n, per)| (n, per.as_aws().to_string())),
        );
        if have != wanted || p.api_stages != [spec.api_stage()] {
            f.push(FieldChange::new(
                format!("caller_plan.{c}"),
                format!("{} on {}", plan_text(&have), p.api_stages.join(", ")),
                format!("{} on {}", plan_text(&wanted), spec.api_stage()),
            ));
        }
    }
    let shared_id = a.shared().map(|p| p.id.as_str());
    let extra_plans = a
        .plans
        .iter()
        .filter(|p| Some(p.id.as_str()) != shared_id && !spec.keeps_caller_plan(p))
        .count();
    let extra_keys = a
        .keys
        .iter()
        .filter(|k| Some(&k.id) != key.map(|k| &k.id) && !spec.is_caller_key(k))
        .count();
    if extra_plans + extra_keys > 0 {
        f.push(FieldChange::new(
            "extra",
            format!("{extra_plans} usage plan(s), {extra_keys} API key(s)"),
            "deleted",
        ));
    }
    f
}

type Numbers = (Option<f64>, Option<i32>, Option<(i32, String)>);

fn plan_text((rate, burst, quota): &Numbers) -> String {
    let quota = match quota {
        Some((n, per)) => format!("quota {n} per {per}"),
        None => "no quota".into(),
    };
    format!(
        "rate {}, burst {}, {quota}",
        rate.map(|r| r.to_string()).unwrap_or("-".into()),
        burst.map(|b| b.to_string()).unwrap_or("-".into())
    )
}

/// The change to the stack's usage plan and key.
pub fn diff(desired: Option<&Spec>, actual: &State) -> Option<Change> {
    match desired {
        None if actual.is_empty() => None,
        None => Some(Change::Delete),
        Some(d) if actual.is_empty() => Some(Change::Create {
            settings: vec![
                Setting::new(
                    "stage",
                    format!("{STAGE} of the REST API {}", d.api_id.planned()),
                ),
                Setting::new(
                    "throttle",
                    format!(
                        "rate {} req/s, burst {} (per caller key)",
                        d.rate_limit, d.burst_limit
                    ),
                ),
                Setting::new("quota", d.quota_text()),
                Setting::new(
                    "api_key",
                    format!(
                        "{} (the default caller's; its value is shown once)",
                        d.key_name
                    ),
                ),
            ],
        }),
        Some(d) => {
            let f = fields(d, actual);
            (!f.is_empty()).then_some(Change::Update { fields: f })
        }
    }
}

pub fn plan(names: &names::Names, spec: Option<Spec>, actual: &State) -> Vec<ResourceChange> {
    let Some(change) = diff(spec.as_ref(), actual) else {
        return Vec::new();
    };
    let action = match (&change, spec) {
        (Change::Delete, _) | (_, None) => Action::Delete(actual.clone()),
        (_, Some(spec)) => Action::Converge(spec, actual.clone()),
    };
    vec![ResourceChange::new(
        Kind::UsagePlan,
        &names.usage_plan,
        change,
        action,
    )]
}

#[derive(Debug)]
pub enum Action {
    /// Creates or fixes the plan and the key (from the state read at plan time).
    Converge(Spec, State),
    Delete(State),
}

impl Step for Action {
    fn run<'a>(&'a self, cx: StepContext<'a>) -> StepFuture<'a> {
        Box::pin(async move {
            match self {
                Action::Converge(spec, state) => {
                    let spec = spec.resolve(cx.produced)?;
                    let api_key = converge(cx.aws, &spec, state, cx.created_at).await?;
                    Ok(Done {
                        api_key,
                        ..Done::default()
                    })
                }
                Action::Delete(state) => {
                    delete_all(cx.aws, state).await?;
                    Done::nothing()
                }
            }
        })
    }
}

fn tag_map(tags: Option<&std::collections::HashMap<String, String>>) -> BTreeMap<String, String> {
    tags.map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// Ours: the name (unless tagged for another stack) or the stack's tags.
fn ours(name: Option<&str>, wanted: &str, tags: &BTreeMap<String, String>, stack: &str) -> bool {
    let other = tags.get(names::TAG_STACK).is_some_and(|s| s != stack);
    names::is_ours(tags, stack) || (name == Some(wanted) && !other)
}

/// The stack's usage plans (with their keys) and API keys.
pub async fn read(aws: &Aws, names: &names::Names) -> Result<State> {
    let mut plans = Vec::new();
    let mut pages = aws.apigw_rest.get_usage_plans().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(ctx("apigateway:GetUsagePlans"))?;
        for p in page.items() {
            let tags = tag_map(p.tags());
            if !ours(p.name(), &names.usage_plan, &tags, &names.stack) {
                continue;
            }
            let id = p.id().context("GetUsagePlans returned a plan without id")?;
            let mut key_ids = Vec::new();
            let mut keys = aws
                .apigw_rest
                .get_usage_plan_keys()
                .usage_plan_id(id)
                .into_paginator()
                .send();
            while let Some(k) = keys.next().await {
                let k = k
                    .or_not_found()
                    .map_err(ctx(format!("apigateway:GetUsagePlanKeys {id}")))?;
                if let Some(k) = k {
                    key_ids.extend(k.items().iter().filter_map(|k| k.id().map(str::to_string)));
                }
            }
            plans.push(PlanState {
                id: id.to_string(),
                name: p.name().unwrap_or_default().to_string(),
                tags,
                api_stages: p
                    .api_stages()
                    .iter()
                    .map(|s| {
                        format!(
                            "{}:{}",
                            s.api_id().unwrap_or_default(),
                            s.stage().unwrap_or_default()
                        )
                    })
                    .collect(),
                rate_limit: p.throttle().map(|t| t.rate_limit()),
                burst_limit: p.throttle().map(|t| t.burst_limit()),
                quota: p.quota().map(|q| {
                    (
                        q.limit(),
                        q.period()
                            .map(|p| p.as_str().to_string())
                            .unwrap_or_default(),
                    )
                }),
                key_ids,
            });
        }
    }
    plans.sort_by_key(|p| {
        (
            p.caller().is_some(),
            !names::is_ours(&p.tags, &names.stack),
            p.id.clone(),
        )
    });
    let mut keys = Vec::new();
    // Every key whose name starts like the stack's (the service filters by prefix); kept
    // when the name is the default key's or the tags are the stack's.
    let prefix = format!("{}-", names.function);
    let mut pages = aws
        .apigw_rest
        .get_api_keys()
        .name_query(&prefix)
        .include_values(false)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(ctx(format!("apigateway:GetApiKeys {prefix}*")))?;
        for k in page.items() {
            let tags = tag_map(k.tags());
            if !ours(k.name(), &names.default_api_key, &tags, &names.stack) {
                continue;
            }
            keys.push(KeyState {
                id: k
                    .id()
                    .context("GetApiKeys returned a key without id")?
                    .to_string(),
                name: k.name().unwrap_or_default().to_string(),
                enabled: k.enabled(),
                tags,
            });
        }
    }
    keys.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(State { plans, keys })
}

pub(crate) mod write;
use write::{converge, delete_all};

#[cfg(test)]
mod tests;
