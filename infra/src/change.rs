//! The change vocabulary every resource speaks: what happens to one resource ([`Change`],
//! with the [`Setting`]s of a creation or the [`FieldChange`]s of an update), the resource
//! kinds in their one order ([`Kind`]), and the placeholder for values known only once an
//! earlier step has run. A leaf: it imports nothing from the crate.

use serde::Serialize;

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
    FunctionUrl,
    HttpApi,
    Permission,
}

impl Kind {
    /// Position when creating/updating (dependencies first).
    pub fn create_rank(self) -> u8 {
        self as u8
    }

    /// Position when deleting: permissions, URL, API, concurrency, function, layer versions,
    /// repository, log group, policies, role, secret.
    pub fn delete_rank(self) -> u8 {
        match self {
            Kind::Permission => 0,
            Kind::FunctionUrl => 1,
            Kind::HttpApi => 2,
            Kind::Concurrency => 3,
            Kind::Function => 4,
            Kind::Layer => 5,
            Kind::Image => 6,
            Kind::Repository => 7,
            Kind::LogGroup => 8,
            Kind::RolePolicy | Kind::AttachedPolicy => 9,
            Kind::Role => 10,
            Kind::Secret => 11,
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
            Kind::FunctionUrl => "function URL",
            Kind::HttpApi => "HTTP API",
            Kind::Permission => "permission",
        }
    }
}
