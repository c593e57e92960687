//! The plan: a pure diff of desired against actual state. `Display` is the printed plan;
//! `Serialize` is `--output json`. Secret values never appear in either.

use crate::actual::Actual;
pub use crate::change::{Change, FieldChange, Kind, Setting, KNOWN_AFTER_APPLY};
use crate::config::Package;
use crate::desired::{Desired, StackSpec};
use crate::names::Names;
use crate::{
    concurrency, ecr, function, function_url, http_api, layer, log_group, permission, role, secret,
};
use serde::Serialize;
use std::fmt;

/// A change to one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceChange {
    pub kind: Kind,
    /// The resource's name (policy or statement id for policies and permissions).
    pub name: String,
    /// The service id when the name is not unique (HTTP APIs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(flatten)]
    pub change: Change,
}

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
    /// The state this plan was computed from (apply needs its ids).
    #[serde(skip)]
    pub actual: Actual,
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

/// Values other resources refer to, known from the actual state or placeholders.
#[derive(Debug, Clone)]
pub(crate) struct Refs {
    pub secret_arn: String,
    pub role_arn: String,
    pub function_arn: String,
    pub api_id: Option<String>,
    /// The layer version the function uses (`package = "layer"`).
    pub layer_arn: String,
    /// The ECR repository's URI (`package = "image"`).
    pub repository_uri: String,
    /// `<repository URI>@<digest>` (`package = "image"`), when known.
    pub image_uri: Option<String>,
}

impl Refs {
    /// The references for deploying `spec` onto `actual`.
    pub fn resolve(names: &Names, spec: Option<&StackSpec>, actual: &Actual) -> Refs {
        let mut refs = Refs::from_actual(names, actual);
        let Some(s) = spec else { return refs };
        if let Some(l) = layer_spec(names, s) {
            if let layer::Target::Existing(arn) = layer::target(&l, &actual.layer_versions) {
                refs.layer_arn = arn;
            }
        }
        if s.config.function.package == Package::Image {
            refs.image_uri = match &s.image {
                Some(image) => Some(ecr::image_uri(&refs.repository_uri, image.digest())),
                // Planning without a build: keep the function's image.
                None => actual.function.as_ref().and_then(|f| f.image_uri.clone()),
            };
        }
        refs
    }

    pub fn from_actual(names: &Names, actual: &Actual) -> Refs {
        Refs {
            layer_arn: KNOWN_AFTER_APPLY.into(),
            repository_uri: actual
                .repository
                .as_ref()
                .map(|r| r.uri.clone())
                .unwrap_or_else(|| {
                    ecr::repository_uri(&actual.account_id, &actual.region, &names.ecr_repository)
                }),
            image_uri: None,
            secret_arn: actual
                .secret
                .as_ref()
                .map(|s| s.arn.clone())
                .unwrap_or_else(|| KNOWN_AFTER_APPLY.into()),
            role_arn: role::role_arn(&actual.partition, &actual.account_id, &names.role),
            function_arn: function::function_arn(
                &actual.partition,
                &actual.region,
                &actual.account_id,
                &names.function,
            ),
            api_id: actual.http_apis.first().map(|a| a.id.clone()),
        }
    }
}

// The specs of each resource for a desired stack, given the references. Shared by `plan`
// and `apply` so what is applied is what was planned.
pub(crate) fn secret_spec<'a>(names: &'a Names, s: &'a StackSpec) -> secret::Spec<'a> {
    secret::Spec {
        name: &names.secret,
        stack: &names.stack,
        input: &s.secret,
        key_required: s.config.provider.kind == crate::config::ProviderKind::Anthropic,
    }
}

pub(crate) fn log_group_spec<'a>(names: &'a Names, s: &StackSpec) -> log_group::Spec<'a> {
    log_group::Spec {
        name: &names.log_group,
        stack: &names.stack,
        retention_days: s.config.function.log_retention_days,
    }
}

pub(crate) fn role_spec<'a>(
    names: &'a Names,
    s: &StackSpec,
    refs: &Refs,
    actual: &Actual,
) -> role::Spec<'a> {
    let (partition, account, region) = (
        actual.partition.as_str(),
        actual.account_id.as_str(),
        actual.region.as_str(),
    );
    let mut policy = role::policy_document(
        &refs.secret_arn,
        &names.log_group_arn(partition, region, account),
    );
    let p = &s.config.provider;
    if p.kind == crate::config::ProviderKind::Bedrock {
        let bedrock_region = p.bedrock_region.as_deref().unwrap_or(region);
        role::add_bedrock_statements(
            &mut policy,
            partition,
            bedrock_region,
            account,
            p.bedrock_models.values(),
            &actual.bedrock_profiles,
        );
    }
    role::Spec {
        name: &names.role,
        stack: &names.stack,
        policy_name: &names.role_policy,
        policy,
    }
}

pub(crate) fn layer_spec<'a>(names: &'a Names, s: &'a StackSpec) -> Option<layer::Spec<'a>> {
    (s.config.function.package == Package::Layer).then(|| layer::Spec {
        name: &names.layer,
        architecture: s.config.function.architecture.as_str(),
        runtime: function::RUNTIME,
        content: s.artifact.as_ref(),
    })
}

pub(crate) fn repository_spec<'a>(names: &'a Names, s: &StackSpec) -> Option<ecr::Spec<'a>> {
    (s.config.function.package == Package::Image).then(|| ecr::Spec {
        name: &names.ecr_repository,
        stack: &names.stack,
    })
}

pub(crate) fn function_spec<'a>(
    names: &'a Names,
    s: &'a StackSpec,
    refs: &Refs,
) -> function::Spec<'a> {
    let f = &s.config.function;
    let package = f.package;
    function::Spec {
        package,
        layers: match package {
            Package::Layer => vec![refs.layer_arn.clone()],
            _ => Vec::new(),
        },
        image_uri: match package {
            Package::Image => refs.image_uri.clone(),
            _ => None,
        },
        name: &names.function,
        stack: &names.stack,
        architecture: f.architecture.as_str(),
        memory_mb: f.memory_mb,
        timeout_seconds: f.timeout_seconds,
        role_arn: refs.role_arn.clone(),
        env: s.env(&refs.secret_arn),
        code: match package {
            Package::Zip => s.artifact.as_ref(),
            Package::Layer => Some(layer::function_zip()),
            Package::Image => None,
        },
    }
}

pub(crate) fn url_spec(s: &StackSpec) -> Option<function_url::Spec> {
    let u = &s.config.function_url;
    u.enabled.then(|| function_url::Spec {
        invoke_mode: u.invoke_mode.as_str(),
        auth: u.auth.as_str(),
        cors: (!u.cors.allow_origins.is_empty()).then(|| u.cors.clone()),
    })
}

pub(crate) fn api_spec<'a>(
    names: &'a Names,
    s: &StackSpec,
    refs: &Refs,
) -> Option<http_api::Spec<'a>> {
    s.config.http_api.enabled.then(|| http_api::Spec {
        name: &names.http_api,
        stack: &names.stack,
        function_arn: refs.function_arn.clone(),
    })
}

pub(crate) fn permission_specs(
    s: &StackSpec,
    refs: &Refs,
    actual: &Actual,
) -> Vec<permission::Statement> {
    let mut out = Vec::new();
    let u = &s.config.function_url;
    if u.enabled && u.auth == crate::config::UrlAuth::None {
        out.extend(permission::public_url_statements());
    }
    if s.config.http_api.enabled {
        let arn = match &refs.api_id {
            Some(id) => permission::api_source_arn(
                &actual.partition,
                &actual.region,
                &actual.account_id,
                id,
            ),
            None => KNOWN_AFTER_APPLY.to_string(),
        };
        out.push(permission::api_statement(&arn));
    }
    out
}

/// The plan: what to do so that `actual` becomes `desired`. Pure.
pub fn plan(desired: &Desired, actual: &Actual) -> Plan {
    let names = &desired.names;
    let spec = desired.spec.as_ref();
    let refs = Refs::resolve(names, spec, actual);
    let region = actual.region.as_str();
    let mut changes = Vec::new();
    let mut blockers = Vec::new();
    let mut push = |kind: Kind, name: &str, id: Option<String>, change: Option<Change>| {
        if let Some(change) = change {
            changes.push(ResourceChange {
                kind,
                name: name.to_string(),
                id,
                change,
            });
        }
    };

    let s = spec.map(|s| secret_spec(names, s));
    push(
        Kind::Secret,
        &names.secret,
        None,
        secret::diff(s.as_ref(), actual.secret.as_ref(), &mut blockers),
    );

    let lg = spec.map(|s| log_group_spec(names, s));
    push(
        Kind::LogGroup,
        &names.log_group,
        None,
        log_group::diff(lg.as_ref(), actual.log_group.as_ref()),
    );

    let r = spec.map(|s| role_spec(names, s, &refs, actual));
    push(
        Kind::Role,
        &names.role,
        None,
        role::diff_role(r.as_ref(), actual.role.as_ref()),
    );
    for (which, name, change) in role::diff_policies(r.as_ref(), actual.role.as_ref()) {
        let kind = match which {
            role::PolicyRef::Inline => Kind::RolePolicy,
            role::PolicyRef::Attached => Kind::AttachedPolicy,
        };
        push(kind, &name, None, Some(change));
    }

    let l = spec.and_then(|s| layer_spec(names, s));
    for (name, change) in layer::diff(
        l.as_ref(),
        &names.layer,
        &actual.layer_versions,
        &mut blockers,
    ) {
        push(Kind::Layer, &name, None, Some(change));
    }
    let repo = spec.and_then(|s| repository_spec(names, s));
    push(
        Kind::Repository,
        &names.ecr_repository,
        None,
        ecr::diff_repository(repo.as_ref(), actual.repository.as_ref()),
    );
    let image = spec
        .filter(|s| s.config.function.package == Package::Image)
        .and_then(|s| s.image.as_ref());
    if let Some(i) = image {
        push(
            Kind::Image,
            &format!("{}@{}", names.ecr_repository, i.digest()),
            None,
            ecr::diff_image(Some(i), actual.repository.as_ref()),
        );
    }

    let f = spec.map(|s| function_spec(names, s, &refs));
    let function_change = function::diff(f.as_ref(), actual.function.as_ref(), &mut blockers);
    // A function that is (re)created starts without URL, concurrency or permissions.
    let fresh_function = matches!(
        function_change,
        Some(Change::Create { .. }) | Some(Change::Replace { .. })
    );
    let replaced_with_url = matches!(function_change, Some(Change::Replace { .. }))
        && actual.function_url.is_some()
        && spec.is_some_and(|s| s.config.function_url.enabled);
    push(Kind::Function, &names.function, None, function_change);

    let (a_conc, a_url, a_perms) = if fresh_function {
        (None, None, &[][..])
    } else {
        (
            actual.concurrency,
            actual.function_url.as_ref(),
            &actual.permissions[..],
        )
    };
    let reservation = spec
        .map(|s| {
            concurrency::decide(
                &names.function,
                region,
                s.reserved_concurrency,
                s.config.concurrency.reserved == crate::config::ConcurrencySetting::Auto,
                a_conc,
                actual.account_concurrency.as_ref(),
            )
        })
        .unwrap_or_default();
    blockers.extend(reservation.blocker.clone());
    push(
        Kind::Concurrency,
        &names.function,
        None,
        concurrency::diff(reservation.reserved, a_conc),
    );
    let u = spec.and_then(url_spec);
    push(
        Kind::FunctionUrl,
        &names.function,
        None,
        function_url::diff(u.as_ref(), a_url),
    );

    let api = spec.and_then(|s| api_spec(names, s, &refs));
    for (id, change) in http_api::diff(api.as_ref(), &actual.http_apis) {
        push(Kind::HttpApi, &names.http_api, id, Some(change));
    }

    let perms = spec
        .map(|s| permission_specs(s, &refs, actual))
        .unwrap_or_default();
    for (sid, change) in permission::diff(&perms, a_perms) {
        push(Kind::Permission, &sid, None, Some(change));
    }

    // Execution order: deletions (teardown order), then the rest (creation order). Old layer
    // versions of a stack that stays go last, once the function has switched off them (a
    // version still attached to the function would otherwise be deleted under it).
    let stays = spec.is_some();
    changes.sort_by_key(|c| match c.change {
        Change::Delete if c.kind == Kind::Layer && stays => (2, 0),
        Change::Delete => (0, c.kind.delete_rank()),
        _ => (1, c.kind.create_rank()),
    });

    let mut notes = Vec::new();
    notes.extend(reservation.note.clone());
    if replaced_with_url {
        notes.push("the function is replaced, so its function URL is created again with a new address: take it from the deploy output".into());
    }
    if let Some(s) = spec {
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
        if s.config.function_url.enabled
            && s.config.function_url.auth == crate::config::UrlAuth::AwsIam
        {
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
        if p.kind == crate::config::ProviderKind::Bedrock {
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
    }
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
