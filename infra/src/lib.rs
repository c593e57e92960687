//! The stack model: desired state (`stack.toml` + flags) → actual state read from AWS →
//! a pure diff (the plan, printable) → apply through a writer. Teardown is the plan against
//! an empty desired state. No local state file: resources carry deterministic names and
//! the `stack` / `managed-by` tags (see `names`).
//!
//! Floors (ARCHITECTURE.md, "Inside `infra`"), each importing only those below: the leaves
//! (`aws`, `names`, `change`, `bedrock_facts`, `credentials`, `artifact`, `progress`) → the
//! stack file (`config`) and the `step` trait → `desired` → one module per resource kind,
//! each owning that resource's whole lifecycle (spec, read, diff, plan, and the step that
//! creates, updates or deletes it): `secret`, `log_group`, `role`, `layer`, `ecr`,
//! `function`, `concurrency`, `version`, `alias` (with `alias::release`), `topic`, `alarm`,
//! `function_url`, `http_api`, `rest_api` (+ `rest_api::usage_plan`), `permission` → `actual`
//! (and `releases`: versions, `live`, rollback) → `plan`
//! → `apply` → `teardown`.

pub mod actual;
pub mod alarm;
pub mod alias;
pub mod apply;
pub mod artifact;
pub mod aws;
pub mod bedrock;
pub mod bedrock_facts;
pub mod callers;
pub mod change;
pub mod concurrency;
pub mod config;
pub mod credentials;
pub mod desired;
pub mod discover;
pub mod ecr;
pub mod function;
pub mod function_url;
pub mod http_api;
pub mod layer;
pub mod lock;
pub mod log_group;
pub mod names;
pub mod permission;
pub mod plan;
pub mod prices;
pub mod progress;
pub mod releases;
pub mod rest_api;
pub mod role;
mod role_bedrock;
pub mod schedule;
pub mod secret;
pub mod step;
pub mod teardown;
pub mod tls;
pub mod topic;
pub mod version;

pub use actual::{read_actual, read_for, Actual};
pub use apply::{apply, apply_with, ApplyOptions, Outputs, SpendBound};
pub use change::{Change, FieldChange, Kind, Setting};
pub use desired::{Desired, StackSpec};
pub use lock::{LockHeld, LockOptions, StackLock};
pub use plan::{plan, Plan, ResourceChange};
pub use progress::{Progress, Recorder, Silent};
pub use secret::{ApiKey, CallerToken, SecretInput};
pub use teardown::{teardown, teardown_plan, TeardownReport};
