//! The stack model: desired state (`stack.toml` + flags) → actual state read from AWS →
//! a pure diff (the plan, printable) → apply through a writer. Teardown is the plan against
//! an empty desired state. No local state file: resources carry deterministic names and
//! the `stack` / `managed-by` tags (see `names`).
//!
//! One module per resource kind owns that resource's whole lifecycle (read, diff, create,
//! update, delete): `secret`, `log_group`, `role`, `function`, `concurrency`,
//! `function_url`, `permission`, `http_api`, `layer` and `ecr` (`package = "layer"` /
//! `"image"`).

pub mod actual;
pub mod apply;
pub mod artifact;
pub mod aws;
pub mod bedrock;
pub mod concurrency;
pub mod config;
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
pub mod progress;
pub mod role;
pub mod secret;
pub mod teardown;
pub mod tls;

pub use actual::{read_actual, read_for, Actual, FixedState, StateReader};
pub use apply::{apply, apply_with, ApplyOptions, Outputs, SpendBound};
pub use desired::{Desired, StackSpec};
pub use lock::{LockHeld, LockOptions, StackLock};
pub use plan::{plan, Change, FieldChange, Kind, Plan, ResourceChange, Setting};
pub use progress::{Lines, Progress, Recorder, Silent};
pub use secret::{ApiKey, CallerToken, SecretInput};
pub use teardown::{teardown, teardown_plan, TeardownReport};
