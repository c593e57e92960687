//! The change vocabulary every resource speaks: what happens to one resource ([`Change`],
//! with the [`Setting`]s of a creation or the [`FieldChange`]s of an update), the resource
//! kinds in their one order ([`Kind`]), and the values known only once an earlier step has
//! run: a spec holds such a value as a [`Late`] naming the [`Output`] that produces it, and
//! apply resolves it from what the earlier steps [`Produced`]. A leaf: it imports nothing
//! from the crate.

use anyhow::Result;
use serde::Serialize;
use std::collections::BTreeMap;

/// Stands for values only known once an earlier step has run (e.g. the secret's ARN).
pub const KNOWN_AFTER_APPLY: &str = "(known after apply)";

/// A setting of a resource being created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Setting {
    pub field: String,
    pub value: String,
}

impl Setting {
    pub fn new(field: impl Into<String>, value: impl ToString) -> Setting {
        Setting {
            field: field.into(),
            value: value.to_string(),
        }
    }
}

/// One changed field of a resource being updated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    pub field: String,
    pub from: String,
    pub to: String,
}

impl FieldChange {
    pub fn new(
        field: impl Into<String>,
        from: impl Into<String>,
        to: impl Into<String>,
    ) -> FieldChange {
        FieldChange {
            field: field.into(),
            from: from.into(),
            to: to.into(),
        }
    }
}

/// What happens to one resource. Resources with nothing to do are not in the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Change {
    Create { settings: Vec<Setting> },
    Update { fields: Vec<FieldChange> },
    Replace { reason: String },
    Delete,
}

/// Resource kinds, in the order they are created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Secret,
    LogGroup,
    Role,
    RolePolicy,
    AttachedPolicy,
    /// A version of the stack's layer (`package = "layer"`).
    Layer,
    /// The stack's ECR repository (`package = "image"`).
    Repository,
    /// The image pushed to that repository.
    Image,
    Function,
    Concurrency,
    /// A published version of the function (versions take no tags: found by the function).
    Version,
    /// The alias `live` callers reach the function through.
    Alias,
    /// The SNS topic the alarms notify (`[alarms]`). Ordering: before `Alarm` (named as its
    /// action); deleted after every alarm. Needs nothing else.
    Topic,
    /// A CloudWatch alarm on the function's metrics (`[alarms]`). Ordering: after `Topic` and
    /// `Function`; deleted before both.
    Alarm,
    FunctionUrl,
    HttpApi,
    /// The REST API (`[api] kind = "rest"`): resources, methods, streaming integration,
    /// deployment and stage.
    RestApi,
    /// The REST API's usage plan with the `default` caller's API key.
    UsagePlan,
    Permission,
    /// The secret's plaintext caller tokens hashed into named callers (`secret::migrate`).
    /// Ordering: after `Function` (and everything that serves requests): the function must
    /// run a handler that reads hashes before the secret holds only hashes. Never deleted.
    Callers,
}

impl Kind {
    /// Position when creating/updating (dependencies first).
    pub fn create_rank(self) -> u8 {
        self as u8
    }

    /// Position when deleting: permissions, URL, APIs (the usage plan before the REST API
    /// it names), alarms, topic, alias, versions, concurrency, function, layer versions,
    /// repository, log group, policies, role, secret.
    pub fn delete_rank(self) -> u8 {
        match self {
            Kind::Permission => 0,
            Kind::FunctionUrl => 1,
            Kind::HttpApi => 2,
            Kind::UsagePlan => 3,
            Kind::RestApi => 4,
            Kind::Alarm => 5,
            Kind::Topic => 6,
            Kind::Alias => 7,
            Kind::Version => 8,
            Kind::Concurrency => 9,
            Kind::Function => 10,
            Kind::Layer => 11,
            Kind::Image => 12,
            Kind::Repository => 13,
            Kind::LogGroup => 14,
            Kind::RolePolicy | Kind::AttachedPolicy => 15,
            Kind::Role => 16,
            Kind::Secret => 17,
            // Only in deploys (teardown deletes the secret itself).
            Kind::Callers => 18,
        }
    }

    /// The kinds whose changes earlier in the plan a change of this kind waits for
    /// (`deleting`: the change deletes). Apply runs every change as soon as those are done
    /// (`crate::schedule`); besides these, changes of one kind run one after another, and a
    /// creation or update waits for the plan's deletions. What AWS needs first: the function
    /// names the secret, the role (with its policies: the function's first request needs them),
    /// the log group, the layer version and the image; the role's inline policy names the
    /// secret; the URL, concurrency, API and permissions are the function's; the API's
    /// permission names the API. Deleting: the function's URL, concurrency and permissions
    /// first, the role's policies before the role (IAM refuses `DeleteRole` otherwise), the
    /// function before the code and logs it uses. A new kind adds one line here.
    pub fn waits_for(self, deleting: bool) -> &'static [Kind] {
        use Kind::*;
        if deleting {
            return match self {
                Permission | FunctionUrl | Concurrency | HttpApi | UsagePlan | Alarm => &[],
                Topic => &[Alarm],
                RestApi => &[UsagePlan],
                // The URL and the statements name the alias; the APIs' integrations too.
                Alias => &[Permission, FunctionUrl, HttpApi, RestApi],
                // Lambda refuses to delete a version an alias points or routes to.
                Version => &[Alias],
                Function => &[Permission, FunctionUrl, Concurrency, Alias, Version, Alarm],
                // Never deleted (teardown deletes the secret).
                Callers => &[],
                LogGroup => &[Function],
                // Old code goes once `live` has moved off it.
                Layer | Image => &[Function, Alias],
                Repository => &[Image, Function],
                RolePolicy | AttachedPolicy => &[],
                Role => &[RolePolicy, AttachedPolicy],
                Secret => &[],
            };
        }
        match self {
            Secret | LogGroup | Role | Layer | Repository => &[],
            RolePolicy => &[Role, Secret],
            AttachedPolicy => &[Role],
            Image => &[Repository],
            Function => &[
                Secret,
                LogGroup,
                Role,
                RolePolicy,
                AttachedPolicy,
                Layer,
                Image,
            ],
            Concurrency => &[Function],
            // Published once the function's update is done.
            Version => &[Function],
            // The release: smoke test of the new version, then the shift.
            Alias => &[Function, Version],
            // The URL, the integrations and the statements name the alias.
            FunctionUrl | HttpApi | RestApi => &[Function, Alias],
            UsagePlan => &[RestApi],
            Topic => &[],
            // An alarm names the topic as its action and the function's metrics.
            Alarm => &[Topic, Function],
            Permission => &[Function, Alias, FunctionUrl, HttpApi, RestApi],
            // The secret holds only hashes once the function serves a handler that reads
            // them: after the alias is on the new version.
            Callers => &[Function, Version, Alias],
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Kind::Secret => "secret",
            Kind::LogGroup => "log group",
            Kind::Role => "IAM role",
            Kind::RolePolicy => "inline policy",
            Kind::AttachedPolicy => "attached policy",
            Kind::Layer => "layer version",
            Kind::Repository => "ECR repository",
            Kind::Image => "image",
            Kind::Function => "function",
            Kind::Concurrency => "reserved concurrency",
            Kind::Version => "function version",
            Kind::Alias => "alias",
            Kind::Topic => "SNS topic",
            Kind::Alarm => "CloudWatch alarm",
            Kind::FunctionUrl => "function URL",
            Kind::HttpApi => "HTTP API",
            Kind::RestApi => "REST API",
            Kind::UsagePlan => "usage plan",
            Kind::Permission => "permission",
            Kind::Callers => "secret callers",
        }
    }
}

/// A value one apply step produces and a later step of the same apply uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Output {
    /// The secret's ARN (it carries a random suffix).
    SecretArn,
    /// The role's ARN.
    RoleArn,
    /// The layer version the function runs (`package = "layer"`).
    LayerVersionArn,
    /// The ECR repository's URI (`package = "image"`).
    RepositoryUri,
    /// `<repository URI>@<digest>` of the pushed image.
    ImageUri,
    /// The function's ARN.
    FunctionArn,
    /// The function URL's address (`None` once deleted).
    FunctionUrl,
    /// The HTTP API's id (`None` once deleted).
    ApiId,
    /// The HTTP API's endpoint (`None` once deleted).
    ApiEndpoint,
    /// The `SourceArn` a permission for the HTTP API names.
    ApiSourceArn,
    /// The REST API's id (`None` once deleted).
    RestApiId,
    /// The REST API stage's invoke URL (`None` once deleted).
    RestApiUrl,
    /// The `SourceArn` a permission for the REST API names.
    RestApiSourceArn,
    /// The reserved concurrency the function has after its step (`None`: none).
    ReservedConcurrency,
    /// The function version this apply published.
    FunctionVersion,
    /// Where the alias `live` points after its step (`None` once deleted).
    AliasVersion,
}

impl Output {
    pub fn label(self) -> &'static str {
        match self {
            Output::SecretArn => "the secret's ARN",
            Output::RoleArn => "the role's ARN",
            Output::LayerVersionArn => "the layer version",
            Output::RepositoryUri => "the repository's URI",
            Output::ImageUri => "the image's URI",
            Output::FunctionArn => "the function's ARN",
            Output::FunctionUrl => "the function URL",
            Output::ApiId => "the HTTP API's id",
            Output::ApiEndpoint => "the HTTP API's endpoint",
            Output::ApiSourceArn => "the HTTP API's source ARN",
            Output::RestApiId => "the REST API's id",
            Output::RestApiUrl => "the REST API's URL",
            Output::RestApiSourceArn => "the REST API's source ARN",
            Output::ReservedConcurrency => "the reserved concurrency",
            Output::FunctionVersion => "the published version",
            Output::AliasVersion => "the version the alias points to",
        }
    }
}

/// A value in a spec: known when the plan is made, or produced by an earlier step of the
/// apply. The plan shows `planned` (for a secret that does not exist yet,
/// [`KNOWN_AFTER_APPLY`]); apply uses what the step produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Late {
    Known(String),
    After { output: Output, planned: String },
}

impl Late {
    /// Known only after apply, shown as [`KNOWN_AFTER_APPLY`].
    pub fn after(output: Output) -> Late {
        Late::After {
            output,
            planned: KNOWN_AFTER_APPLY.to_string(),
        }
    }

    /// The value as planned (shown in the plan, compared by the diff).
    pub fn planned(&self) -> &str {
        match self {
            Late::Known(v) => v,
            Late::After { planned, .. } => planned,
        }
    }

    /// The value to write: as planned, or what the earlier step produced.
    pub fn resolve(&self, produced: &Produced) -> Result<String> {
        match self {
            Late::Known(v) => Ok(v.clone()),
            Late::After { output, .. } => produced.need(*output),
        }
    }
}

/// What the steps of one apply produced so far.
#[derive(Debug, Clone, Default)]
pub struct Produced(BTreeMap<Output, Option<String>>);

impl Produced {
    pub fn set(&mut self, output: Output, value: Option<String>) {
        self.0.insert(output, value);
    }

    /// `None` when no step produced it; `Some(None)` when a step removed it.
    pub fn get(&self, output: Output) -> Option<Option<&str>> {
        self.0.get(&output).map(Option::as_deref)
    }

    /// The value, or an error when no earlier step produced it (a plan out of order).
    pub fn need(&self, output: Output) -> Result<String> {
        match self.0.get(&output) {
            Some(Some(v)) => Ok(v.clone()),
            _ => anyhow::bail!(
                "internal: {} is not known when this step runs",
                output.label()
            ),
        }
    }
}

/// Where the stack lives and what one resource's spec names of another, as known when the
/// plan is made (from the account's state); apply resolves the [`Late`] ones.
#[derive(Debug, Clone)]
pub struct Refs {
    pub partition: String,
    pub region: String,
    pub account_id: String,
    pub secret_arn: Late,
    pub role_arn: Late,
    pub function_arn: Late,
    /// The alias `live`'s ARN (`<function ARN>:live`): what the Function URL, the HTTP API
    /// and the permissions name.
    pub alias_arn: Late,
    /// The `SourceArn` of the HTTP API's permission.
    pub api_source_arn: Late,
    /// The REST API's id (its usage plan names it).
    pub rest_api_id: Late,
    /// The `SourceArn` of the REST API's permission.
    pub rest_source_arn: Late,
    /// The layer version the function uses (`package = "layer"`).
    pub layer_arn: Late,
    /// The ECR repository's URI (`package = "image"`).
    pub repository_uri: Late,
    /// `<repository URI>@<digest>` (`package = "image"`), when known.
    pub image_uri: Option<Late>,
}
