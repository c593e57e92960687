//! The plan: a pure diff of desired against actual state. `Display` is the printed plan;
//! `Serialize` is `--output json`. Secret values never appear in either.

use crate::actual::Actual;
pub use crate::change::{Change, FieldChange, Kind, Setting, KNOWN_AFTER_APPLY};
use crate::change::{Late, Output, Refs};
use crate::config::{ConcurrencySetting, Package, ProviderKind, UrlAuth};
use crate::desired::Desired;
use crate::names::Names;
pub use crate::step::ResourceChange;
use crate::{
    alarm, alias, concurrency, ecr, function, function_url, http_api, layer, log_group, permission,
    rest_api, role, secret, topic, version,
};
use serde::Serialize;
use std::fmt;

/// The whole plan for a stack.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub stack: String,
    pub account_id: String,
    pub region: String,
    /// In execution order: deletions first, then creations and updates.
    pub changes: Vec<ResourceChange>,
    /// Things the user should know (e.g. the HTTP API's 30 s limit).
    pub notes: Vec<String>,
    /// Reasons the plan cannot be applied (e.g. no Anthropic key for a new secret).
    pub blockers: Vec<String>,
    /// The reserved concurrency the function will have after apply (`None`: none), as
    /// decided against the account's settings (`concurrency::decide`).
    pub reserved_concurrency: Option<u32>,
    /// The state this plan was computed from.
    #[serde(skip)]
    pub actual: Actual,
    /// The references between resources as planned (apply reports the ones no step
    /// produced from here).
    #[serde(skip)]
    pub refs: Refs,
}

impl Plan {
    /// True when applying would change nothing.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    pub fn count(&self, pred: impl Fn(&Change) -> bool) -> usize {
        self.changes.iter().filter(|c| pred(&c.change)).count()
    }
}

/// The references for deploying onto `actual`, as far as the account's state tells them.
fn refs_from_actual(names: &Names, actual: &Actual) -> Refs {
    let (partition, region, account) = (
        actual.partition.as_str(),
        actual.region.as_str(),
        actual.account_id.as_str(),
    );
    Refs {
        partition: partition.to_string(),
        region: region.to_string(),
        account_id: account.to_string(),
        secret_arn: match &actual.secret {
            Some(s) => Late::Known(s.arn.clone()),
            None => Late::after(Output::SecretArn),
        },
        role_arn: Late::Known(role::role_arn(partition, account, &names.role)),
        function_arn: Late::Known(function::function_arn(
            partition,
            region,
            account,
            &names.function,
        )),
        alias_arn: Late::Known(alias::alias_arn(&function::function_arn(
            partition,
            region,
            account,
            &names.function,
        ))),
        api_source_arn: match actual.http_apis.first() {
            Some(a) => Late::Known(permission::api_source_arn(
                partition, region, account, &a.id,
            )),
            None => Late::after(Output::ApiSourceArn),
        },
        rest_api_id: match actual.rest_apis.first() {
            Some(a) => Late::Known(a.id.clone()),
            None => Late::after(Output::RestApiId),
        },
        rest_source_arn: match actual.rest_apis.first() {
            Some(a) => Late::Known(rest_api::source_arn(partition, region, account, &a.id)),
            None => Late::after(Output::RestApiSourceArn),
        },
        layer_arn: Late::after(Output::LayerVersionArn),
        repository_uri: match &actual.repository {
            Some(r) => Late::Known(r.uri.clone()),
            None => Late::After {
                output: Output::RepositoryUri,
                planned: ecr::repository_uri(account, region, &names.ecr_repository),
            },
        },
        image_uri: None,
    }
}

/// Once a step of this plan (re)creates what `late` names, the value is the one that step
/// produces; the plan keeps showing what it expects.
fn produced_by(late: &Late, output: Output) -> Late {
    Late::After {
        output,
        planned: late.planned().to_string(),
    }
}

fn creates(changes: &[ResourceChange], kind: Kind) -> bool {
    changes.iter().any(|c| {
        c.kind == kind && matches!(c.change, Change::Create { .. } | Change::Replace { .. })
    })
}

/// The plan: what to do so that `actual` becomes `desired`. Pure. Each resource module
/// decides its own changes and the steps that carry them out; this is their order (the
/// order of [`Kind`]) and what one resource's spec takes from another's.
pub fn plan(desired: &Desired, actual: &Actual) -> Plan {
    let names = &desired.names;
    let spec = desired.spec.as_ref();
    let mut refs = refs_from_actual(names, actual);
    let region = actual.region.as_str();
    let mut changes: Vec<ResourceChange> = Vec::new();
    let mut blockers = Vec::new();
    let mut moved_url: Option<String> = None;

    let s = spec.map(|s| secret::spec(names, s));
    changes.extend(secret::plan(
        names,
        s,
        actual.secret.as_ref(),
        &mut blockers,
    ));

    let lg = spec.map(|s| log_group::spec(names, s));
    changes.extend(log_group::plan(names, lg, actual.log_group.as_ref()));

    let r = spec.map(|s| role::spec(names, s, &refs, &actual.bedrock_profiles));
    changes.extend(role::plan(names, r, actual.role.as_ref()));
    if creates(&changes, Kind::Role) {
        refs.role_arn = produced_by(&refs.role_arn, Output::RoleArn);
    }

    let l = spec.and_then(|s| layer::spec(names, s));
    if let Some(l) = &l {
        if let layer::Target::Existing(arn) = layer::target(l, &actual.layer_versions) {
            refs.layer_arn = Late::Known(arn);
        }
    }
    changes.extend(layer::plan(
        names,
        l.as_ref(),
        &actual.layer_versions,
        &mut blockers,
    ));

    let image = spec
        .filter(|s| s.config.function.package == Package::Image)
        .and_then(|s| s.image.as_ref());
    let repo = spec.and_then(|s| ecr::spec(names, s));
    let ecr_changes = ecr::plan(
        names,
        repo,
        image,
        actual.repository.as_ref(),
        &refs.repository_uri,
    );
    if spec.is_some_and(|s| s.config.function.package == Package::Image) {
        refs.image_uri = match image {
            Some(i) => {
                let uri = Late::Known(ecr::image_uri(refs.repository_uri.planned(), i.digest()));
                Some(if creates(&ecr_changes, Kind::Image) {
                    produced_by(&uri, Output::ImageUri)
                } else {
                    uri
                })
            }
            // Planning without a build: keep the function's image.
            None => actual
                .function
                .as_ref()
                .and_then(|f| f.image_uri.clone())
                .map(Late::Known),
        };
    }
    changes.extend(ecr_changes);

    let f = spec.map(|s| function::spec(names, s, &refs));
    let function_change = function::plan(names, f, actual.function.as_ref(), &mut blockers);
    // A function that is (re)created starts without URL, concurrency or permissions.
    let fresh_function = function_change
        .as_ref()
        .is_some_and(|c| matches!(c.change, Change::Create { .. } | Change::Replace { .. }));
    let replaced_with_url = function_change
        .as_ref()
        .is_some_and(|c| matches!(c.change, Change::Replace { .. }))
        && actual.function_url.is_some()
        && spec.is_some_and(|s| s.config.function_url.enabled);
    changes.extend(function_change);
    if fresh_function {
        refs.function_arn = produced_by(&refs.function_arn, Output::FunctionArn);
    }

    let (a_conc, a_url, a_old_url, a_perms, a_versions, a_alias) = if fresh_function {
        (None, None, None, &[][..], &[][..], None)
    } else {
        (
            actual.concurrency,
            actual.function_url.as_ref(),
            actual.unqualified_function_url.as_ref(),
            &actual.permissions[..],
            &actual.versions[..],
            actual.alias.as_ref(),
        )
    };
    let auto = spec.is_some_and(|s| s.config.concurrency.reserved == ConcurrencySetting::Auto);
    let reservation = spec
        .map(|s| {
            concurrency::decide(
                &names.function,
                region,
                s.reserved_concurrency,
                auto,
                a_conc,
                actual.account_concurrency.as_ref(),
            )
        })
        .unwrap_or_default();
    blockers.extend(reservation.blocker.clone());
    // What stays reserved when Lambda refuses an `auto` reservation.
    let fallback = a_conc.map(|c| c.max(0) as u32);
    changes.extend(concurrency::plan(
        &names.function,
        &reservation,
        auto,
        fallback,
        a_conc,
    ));

    // Versions and the alias `live`: a version when the function's code or configuration
    // changes (or none carries `$LATEST` yet), and `live` moved onto it.
    let function_changes = changes.iter().any(|c| {
        c.kind == Kind::Function
            && match &c.change {
                Change::Update { fields } => fields.iter().any(|f| f.field != "tags"),
                _ => true,
            }
    });
    let target = version::target(
        actual.function.as_ref().filter(|_| !fresh_function),
        function_changes,
        a_versions,
    );
    let mut in_use = a_alias.map(alias::State::versions).unwrap_or_default();
    in_use.remove("$LATEST");
    changes.extend(version::plan(
        version::PlanInput {
            function: &names.function,
            stack_stays: spec.is_some(),
            target: &target,
            code_sha256: spec.and_then(|s| match s.config.function.package {
                Package::Zip => s.artifact.as_ref().map(|a| a.code_sha256.clone()),
                Package::Layer => Some(layer::function_zip().code_sha256.clone()),
                Package::Image => None,
            }),
            commit: spec.and_then(|s| s.commit.clone()),
            keep: spec.map_or(1, |s| s.config.release.keep_versions),
            in_use,
        },
        a_versions,
    ));
    let alias_spec = spec.map(|s| alias::Spec {
        function: names.function.clone(),
        version: target.late(),
        release: s.config.release.clone(),
        smoke_test: s.smoke_test.clone(),
    });
    let alias_change = alias::plan(&names.function, alias_spec, a_alias);
    let release_note = alias_change.as_ref().and_then(|c| match &c.change {
        Change::Update { fields } if fields.iter().any(|f| f.field == "release") => {
            spec.map(|s| release_note(&s.config.release))
        }
        _ => None,
    });
    changes.extend(alias_change);

    // `[alarms]`: the topic, then the alarms that notify it.
    let topic_arn = topic::topic_arn(
        &refs.partition,
        region,
        &refs.account_id,
        &names.alarm_topic,
    );
    let t = spec.and_then(|s| topic::spec(names, s, &topic_arn));
    changes.extend(topic::plan(names, t, actual.topic.as_ref()));
    let alarms = spec
        .map(|s| alarm::specs(names, s, &topic_arn))
        .unwrap_or_default();
    changes.extend(alarm::plan(&alarms, &actual.alarms));

    let u = spec.and_then(function_url::spec);
    let url_moves = a_old_url.is_some() && u.is_some();
    if let Some(old) = a_old_url {
        changes.push(function_url::plan_unqualified_delete(&names.function));
        if url_moves {
            moved_url = Some(old.url.clone());
        }
    }
    changes.extend(function_url::plan(&names.function, u, a_url));

    let api = spec.and_then(|s| http_api::spec(names, s, &refs));
    changes.extend(http_api::plan(names, api, &actual.http_apis));

    let rest = spec.and_then(|s| rest_api::spec(names, s, &refs));
    let rest_changes = rest_api::plan(names, rest, &actual.rest_apis);
    if creates(&rest_changes, Kind::RestApi) {
        refs.rest_api_id = produced_by(&refs.rest_api_id, Output::RestApiId);
        refs.rest_source_arn = produced_by(&refs.rest_source_arn, Output::RestApiSourceArn);
    }
    changes.extend(rest_changes);
    let usage = spec
        .and_then(|s| rest_api::usage_plan::spec(names, s, &refs))
        .map(|u| rest_api::usage_plan::Spec {
            caller_keys: rest_api::usage_plan::caller_keys(actual.secret.as_ref()),
            caller_plans: rest_api::usage_plan::caller_plans(
                actual.secret.as_ref(),
                &spec.map(|s| s.config.api.clone()).unwrap_or_default(),
            ),
            ..u
        });
    changes.extend(rest_api::usage_plan::plan(names, usage, &actual.usage_plan));

    let wanted = spec
        .map(|s| permission::specs(s, &refs))
        .unwrap_or_default();
    changes.extend(permission::plan(&names.function, &wanted, a_perms));

    // Last: plaintext caller tokens hashed once the function reads hashes.
    changes.extend(secret::migrate::plan(
        names,
        spec.is_some(),
        actual.secret.as_ref(),
    ));

    // Execution order: deletions (teardown order), then the rest (creation order). Old layer
    // versions of a stack that stays go last, once the function has switched off them (a
    // version still attached to the function would otherwise be deleted under it).
    let stays = spec.is_some();
    changes.sort_by_key(|c| match c.change {
        Change::Delete if c.kind == Kind::Layer && stays => (2, 0),
        // Old versions once `live` has moved off them.
        Change::Delete if c.kind == Kind::Version && stays => (2, 1),
        Change::Delete => (0, c.kind.delete_rank()),
        _ => (1, c.kind.create_rank()),
    });

    let mut notes = Vec::new();
    notes.extend(reservation.note.clone());
    if let Some(old) = &moved_url {
        notes.push(format!("the function URL moves to the alias `live` (callers reach published versions only), so it gets a new address: {old} stops answering; take the new one from the deploy output"));
    }
    notes.extend(release_note);
    if replaced_with_url {
        notes.push("the function is replaced, so its function URL is created again with a new address: take it from the deploy output".into());
    }
    if let Some(s) = spec {
        if !changes.is_empty() {
            notes.extend(worst_case_note(&s.config, reservation.reserved));
            notes.extend(alarm_note(&s.config));
        }
        if let Some(email) = s.config.alarms.as_ref().and_then(|a| a.email.as_ref()) {
            let subscribes = changes.iter().any(|c| {
                c.kind == Kind::Topic
                    && match &c.change {
                        Change::Create { .. } => true,
                        Change::Update { fields } => fields.iter().any(|f| f.field == "email"),
                        _ => false,
                    }
            });
            if subscribes {
                notes.push(format!("SNS sends {email} a confirmation e-mail: alarms reach it only once the link in it is followed"));
            }
        }
        notes.extend(s.config.warnings());
        if s.config.http_api.enabled {
            let timeout = s.config.function.timeout_seconds;
            let longer = if timeout > 30 {
                format!(" even though the function's timeout is {timeout} s")
            } else {
                String::new()
            };
            notes.push(format!(
                "the HTTP API gives up after 30 s and cannot stream: requests through it are answered buffered, with a {} ms handler deadline (GATEWAY_DEADLINE_MS){longer}; use the function URL for long or streamed answers",
                s.config.limits.gateway_deadline_ms
            ));
        }
        if s.config.api_kind() == crate::config::ApiKind::Rest {
            notes.push(rest_note(&s.config));
        }
        if s.config.function_url.enabled && s.config.function_url.auth == UrlAuth::AwsIam {
            notes.push("the function URL uses AWS_IAM: callers must sign requests with SigV4 and hold both lambda:InvokeFunctionUrl and lambda:InvokeFunction on the function in their own IAM policy (AWS asks for both since October 2025)".into());
        }
        // Where the function (re)gets its model allowlist from the default, say which it is.
        let models_set_now = changes.iter().any(|c| {
            c.kind == Kind::Function
                && match &c.change {
                    Change::Create { .. } | Change::Replace { .. } => true,
                    Change::Update { fields } => {
                        fields.iter().any(|f| f.field == "env.ALLOWED_MODELS")
                    }
                    Change::Delete => false,
                }
        });
        if models_set_now && s.config.limits.allowed_models.is_empty() {
            notes.push(format!(
                "limits.allowed_models is empty, so callers may use only the models this stack is configured with: {} (ALLOWED_MODELS); list others, or \"*\" for any, in limits.allowed_models",
                s.config.configured_models().join(", ")
            ));
        }
        let p = &s.config.provider;
        if let Some(fallback) = p.fallback {
            notes.push(failover_note(&s.config, fallback));
        }
        if p.uses(ProviderKind::Bedrock) {
            let (profile_notes, profile_blockers) = crate::bedrock::notes_and_blockers(
                p.bedrock_region.as_deref().unwrap_or(region),
                p.bedrock_models.values(),
                &actual.bedrock_profiles,
            );
            notes.extend(profile_notes);
            blockers.extend(profile_blockers);
            notes.push(format!(
                "provider bedrock: the account needs access to the models behind {} (Bedrock console, Model access, in {}); calls to others are denied",
                p.bedrock_models.keys().cloned().collect::<Vec<_>>().join(", "),
                p.bedrock_region.as_deref().unwrap_or(region)
            ));
        }
    }
    Plan {
        stack: desired.stack.clone(),
        account_id: actual.account_id.clone(),
        region: actual.region.clone(),
        changes,
        notes,
        blockers,
        reserved_concurrency: reservation.reserved,
        actual: actual.clone(),
        refs,
    }
}

/// What a release does and how long it takes at least.
fn release_note(r: &crate::config::ReleaseSection) -> String {
    let checks = format!(
        "rolled back automatically when Errors + Throttles of the new version pass {}% (release.max_error_percent)",
        r.max_error_percent
    );
    match r.strategy {
        crate::config::Strategy::AllAtOnce => "release all-at-once: the new version is smoke tested through its own qualified endpoint, then gets 100% of requests".into(),
        _ => format!(
            "release {}: the new version is smoke tested, then takes its share of requests step by step (at least {} s), watched through CloudWatch and {checks}",
            r.describe(),
            r.duration_seconds()
        ),
    }
}

/// What the REST API front means for callers, and what happened to the function URL.
fn rest_note(c: &crate::config::StackConfig) -> String {
    let url = if !c.function_url.enabled {
        "the function URL is off, so nobody can go around the usage plan's throttles and quotas (function_url.auth = \"aws-iam\" keeps an IAM-signed URL)"
    } else {
        "the function URL stays, with AWS_IAM auth only (callers who sign with SigV4 go around the usage plan)"
    };
    format!(
        "the REST API streams answers (responseTransferMode STREAM, up to {} s, the function's timeout, at most 15 minutes) and checks each caller's API key (x-api-key) against the usage plan before the function runs: {}; {url}",
        (c.function.timeout_seconds).min(900),
        c.api.summary()
    )
}

/// Which provider is primary, which the fallback, and what fails over.
fn failover_note(c: &crate::config::StackConfig, fallback: ProviderKind) -> String {
    let p = &c.provider;
    let after = match p.failover_after_ms {
        Some(ms) => format!("{ms} ms (failover_after_ms)"),
        None => "half the request's time".into(),
    };
    let which = match fallback {
        ProviderKind::Bedrock => {
            let configured = c.configured_models();
            let unmapped: std::collections::BTreeSet<&str> = configured
                .iter()
                .chain(&c.limits.allowed_models)
                .filter(|m| *m != "*" && !p.bedrock_models.contains_key(*m))
                .map(String::as_str)
                .collect();
            let mut s = format!(
                "the models in [provider.bedrock_models] ({})",
                p.bedrock_models.keys().cloned().collect::<Vec<_>>().join(", ")
            );
            if !unmapped.is_empty() {
                let unmapped: Vec<&str> = unmapped.into_iter().collect();
                s.push_str(&format!(
                    "; {} (no Bedrock id) never fail over",
                    unmapped.join(", ")
                ));
            }
            s
        }
        ProviderKind::Anthropic => {
            "every model named by its Anthropic name (not a Bedrock id or ARN); the secret keeps the Anthropic key".into()
        }
    };
    format!(
        "provider {} is primary, {fallback} the fallback (FALLBACK): when {} fails a request with 408, 409, 429, 5xx, 529 or no answer within {after}, after its retries, {fallback} answers it, for {which}; after several such failures in a row a function instance sends requests straight to {fallback} for a cool-down, then probes {} again (a circuit breaker); answers name the provider in x-claude-proxy-provider",
        p.kind, p.kind, p.kind
    )
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let where_ = format!(
            "stack `{}` (account {}, region {})",
            self.stack, self.account_id, self.region
        );
        if self.is_empty() {
            writeln!(f, "{where_}: no changes.")?;
        } else {
            writeln!(
                f,
                "{where_}: {} to create, {} to update, {} to replace, {} to delete",
                self.count(|c| matches!(c, Change::Create { .. })),
                self.count(|c| matches!(c, Change::Update { .. })),
                self.count(|c| matches!(c, Change::Replace { .. })),
                self.count(|c| matches!(c, Change::Delete)),
            )?;
            writeln!(f)?;
            for c in &self.changes {
                let id =
                    c.id.as_ref()
                        .map(|i| format!(" (id {i})"))
                        .unwrap_or_default();
                match &c.change {
                    Change::Create { settings } => {
                        writeln!(f, "  + {} {}{id}", c.kind.label(), c.name)?;
                        for s in settings {
                            writeln!(f, "        {} = {}", s.field, show(&s.value))?;
                        }
                    }
                    Change::Update { fields } => {
                        writeln!(f, "  ~ {} {}{id}", c.kind.label(), c.name)?;
                        for x in fields {
                            writeln!(
                                f,
                                "        {}: {} -> {}",
                                x.field,
                                show(&x.from),
                                show(&x.to)
                            )?;
                        }
                    }
                    Change::Replace { reason } => {
                        writeln!(f, "-/+ {} {}{id}", c.kind.label(), c.name)?;
                        writeln!(f, "        because {reason}")?;
                    }
                    Change::Delete => writeln!(f, "  - {} {}{id}", c.kind.label(), c.name)?,
                }
            }
        }
        if !self.notes.is_empty() {
            writeln!(f)?;
            writeln!(f, "Notes:")?;
            for n in &self.notes {
                writeln!(f, "  - {n}")?;
            }
        }
        if !self.blockers.is_empty() {
            writeln!(f)?;
            writeln!(f, "Cannot apply:")?;
            for b in &self.blockers {
                writeln!(f, "  - {b}")?;
            }
        }
        Ok(())
    }
}

fn show(v: &str) -> &str {
    if v.is_empty() {
        "(empty)"
    } else {
        v
    }
}

/// The worst case in dollars per hour, when a reservation bounds it (`infra::prices`).
fn worst_case_note(config: &crate::config::StackConfig, reserved: Option<u32>) -> Option<String> {
    let r = reserved.filter(|r| *r > 0)?;
    let models = if config.limits.allowed_models.is_empty() {
        config.configured_models()
    } else {
        config.limits.allowed_models.clone()
    };
    let per_request = config.concurrency.expected_duration_seconds;
    let (usd, p) = crate::prices::worst_case_output_usd_per_hour(
        r,
        config.limits.max_tokens_cap,
        per_request,
        &models,
        &config.prices,
    )?;
    Some(format!(
        "worst case: about ${usd:.2}/hour of output tokens ({r} reserved × {} max_tokens × 3600/{per_request} s requests per hour at {} output ${}/MTok, {})",
        config.limits.max_tokens_cap,
        p.entry,
        p.price.output,
        if p.source.starts_with("built-in") {
            format!("built-in prices of {}", crate::prices::TABLE_DATE)
        } else {
            p.source.clone()
        }
    ))
}

/// The output-token alarm's threshold in dollars, beside the worst case (`[alarms]`).
fn alarm_note(config: &crate::config::StackConfig) -> Option<String> {
    let a = config.alarms.as_ref()?;
    let models = if config.limits.allowed_models.is_empty() {
        config.configured_models()
    } else {
        config.limits.allowed_models.clone()
    };
    // At the dearest allowed model's output price, as the worst case counts.
    let price = crate::prices::dearest_output(&models, &config.prices);
    let dollars = match &price {
        Some(p) => {
            let usd = a.output_tokens as f64 * p.price.output / 1_000_000.0;
            let per_hour = usd * 3600.0 / f64::from(a.period_seconds);
            format!(
                " (about ${usd:.2} at {} output ${}/MTok, ${per_hour:.2}/hour)",
                p.entry, p.price.output
            )
        }
        None => String::new(),
    };
    Some(format!(
        "spend alarm: fires at {} output tokens in {} s{dollars}; also at {} 5xx answers or {} 429 answers in {} s (stack.toml [alarms]); keep it below the worst case to hear of a runaway caller before the bound",
        a.output_tokens, a.period_seconds, a.errors_5xx, a.throttles, a.period_seconds
    ))
}
