//! The critical path of a deploy under the latency model (`emulators::aws_latency`): from
//! the plan's own dependency graph (`infra::schedule`), each change costing the medians of
//! the calls its step makes plus the holds it waits out (a new function `Pending`, an update
//! `InProgress`), and a function created in the same run starting no earlier than the IAM
//! propagation window after its role. Around the apply, what every command does one call
//! after another: `GetCallerIdentity`, reading the stack (the slowest chain of reads that
//! wait for each other; all others run in parallel), and, when
//! there are changes, the deploy lock (`CreateSecret`), reading the stack again under it, and
//! the lock's release (`DeleteSecret`). The result is the shortest wall time any
//! implementation of that plan could take under the model.

use emulators::aws_latency::Model;
use infra::{Change, Kind, Plan, ResourceChange};
use std::time::Duration;

/// The calls one change's step makes, one after another (signing name, operation). The
/// release's smoke test (an `Invoke`) is left out: the bench deploys with `--skip-smoke-test`,
/// since moto cannot run the handler.
fn calls(c: &ResourceChange) -> Vec<(&'static str, &'static str)> {
    use Change::*;
    let verb = &c.change;
    match (c.kind, verb) {
        (Kind::Secret, Create { .. }) => vec![("secretsmanager", "CreateSecret")],
        (Kind::Secret, Delete) => vec![("secretsmanager", "DeleteSecret")],
        (Kind::Secret, _) => vec![("secretsmanager", "PutSecretValue")],
        (Kind::LogGroup, Create { .. }) => {
            vec![("logs", "CreateLogGroup"), ("logs", "PutRetentionPolicy")]
        }
        (Kind::LogGroup, Delete) => vec![("logs", "DeleteLogGroup")],
        (Kind::LogGroup, _) => vec![("logs", "PutRetentionPolicy")],
        (Kind::Role, Create { .. }) => vec![("iam", "CreateRole")],
        (Kind::Role, Delete) => vec![
            ("iam", "ListRolePolicies"),
            ("iam", "ListAttachedRolePolicies"),
            ("iam", "DeleteRole"),
        ],
        (Kind::Role, _) => vec![("iam", "UpdateAssumeRolePolicy")],
        (Kind::RolePolicy, Delete) => vec![("iam", "DeleteRolePolicy")],
        (Kind::RolePolicy, _) => vec![("iam", "PutRolePolicy")],
        (Kind::AttachedPolicy, Delete) => vec![("iam", "DetachRolePolicy")],
        (Kind::AttachedPolicy, _) => vec![("iam", "AttachRolePolicy")],
        (Kind::Layer, Delete) => vec![("lambda", "DeleteLayerVersion")],
        (Kind::Layer, _) => vec![("lambda", "PublishLayerVersion")],
        (Kind::Repository, Delete) => vec![("ecr", "DeleteRepository")],
        (Kind::Repository, _) => vec![("ecr", "CreateRepository"), ("ecr", "PutLifecyclePolicy")],
        (Kind::Image, Delete) => vec![("ecr", "BatchDeleteImage")],
        (Kind::Image, _) => vec![("ecr", "GetAuthorizationToken"), ("ecr", "PutImage")],
        (Kind::Function, Create { .. } | Replace { .. }) => {
            vec![("lambda", "CreateFunction"), ("lambda", "GetFunction")]
        }
        (Kind::Function, Delete) => vec![("lambda", "DeleteFunction")],
        (Kind::Function, Update { fields }) => {
            let mut v = Vec::new();
            if fields
                .iter()
                .any(|f| f.field != "code_sha256" && f.field != "image_uri")
            {
                v.extend([
                    ("lambda", "UpdateFunctionConfiguration"),
                    ("lambda", "GetFunction"),
                ]);
            }
            if fields
                .iter()
                .any(|f| f.field == "code_sha256" || f.field == "image_uri")
            {
                v.extend([("lambda", "UpdateFunctionCode"), ("lambda", "GetFunction")]);
            }
            v
        }
        (Kind::Concurrency, Delete) => vec![("lambda", "DeleteFunctionConcurrency")],
        (Kind::Concurrency, _) => vec![("lambda", "PutFunctionConcurrency")],
        (Kind::FunctionUrl, Create { .. }) => vec![("lambda", "CreateFunctionUrlConfig")],
        (Kind::FunctionUrl, Delete) => vec![("lambda", "DeleteFunctionUrlConfig")],
        (Kind::FunctionUrl, _) => vec![("lambda", "UpdateFunctionUrlConfig")],
        (Kind::HttpApi, Create { .. }) => vec![
            ("apigateway", "CreateApi"),
            ("apigateway", "CreateIntegration"),
            ("apigateway", "CreateRoute"),
            ("apigateway", "CreateStage"),
        ],
        (Kind::HttpApi, Delete) => vec![("apigateway", "DeleteApi")],
        (Kind::HttpApi, _) => vec![("apigateway", "UpdateIntegration")],
        (Kind::Permission, Delete) => vec![("lambda", "RemovePermission")],
        (Kind::Permission, _) => vec![("lambda", "AddPermission")],
        (Kind::Version, Delete) => vec![("lambda", "DeleteFunction")],
        (Kind::Version, _) => vec![("lambda", "PublishVersion"), ("lambda", "GetFunction")],
        (Kind::Alias, Create { .. }) => vec![("lambda", "CreateAlias")],
        (Kind::Alias, Delete) => vec![("lambda", "DeleteAlias")],
        (Kind::Alias, _) => vec![("lambda", "UpdateAlias")],
        (Kind::RestApi, Create { .. }) => vec![
            ("apigateway", "CreateRestApi"),
            ("apigateway", "GetResources"),
            ("apigateway", "CreateResource"),
            ("apigateway", "PutMethod"),
            ("apigateway", "PutIntegration"),
            ("apigateway", "CreateDeployment"),
            ("apigateway", "CreateStage"),
        ],
        (Kind::RestApi, Delete) => vec![("apigateway", "DeleteRestApi")],
        (Kind::RestApi, _) => vec![
            ("apigateway", "PutIntegration"),
            ("apigateway", "CreateDeployment"),
            ("apigateway", "UpdateStage"),
        ],
        (Kind::UsagePlan, Create { .. }) => vec![
            ("apigateway", "CreateUsagePlan"),
            ("apigateway", "CreateApiKey"),
            ("apigateway", "CreateUsagePlanKey"),
        ],
        (Kind::UsagePlan, Delete) => vec![
            ("apigateway", "DeleteUsagePlan"),
            ("apigateway", "DeleteApiKey"),
        ],
        (Kind::UsagePlan, _) => vec![("apigateway", "UpdateUsagePlan")],
        (Kind::Topic, Create { .. }) => vec![("sns", "CreateTopic"), ("sns", "Subscribe")],
        (Kind::Topic, Delete) => vec![("sns", "DeleteTopic")],
        (Kind::Topic, _) => vec![("sns", "TagResource")],
        (Kind::Alarm, Delete) => vec![("monitoring", "DeleteAlarms")],
        (Kind::Alarm, _) => vec![("monitoring", "PutMetricAlarm")],
        (Kind::Callers, _) => vec![
            ("secretsmanager", "GetSecretValue"),
            ("secretsmanager", "PutSecretValue"),
        ],
    }
}

/// What one change costs under the model: its calls' medians and the holds it waits out.
pub fn cost(model: &Model, c: &ResourceChange) -> Duration {
    let mut d: Duration = calls(c)
        .into_iter()
        .map(|(service, op)| model.median(service, op))
        .sum();
    if c.kind == Kind::Function {
        d += match &c.change {
            Change::Create { .. } | Change::Replace { .. } => model.holds.function_pending(),
            Change::Update { .. } => model.holds.function_update(),
            Change::Delete => Duration::ZERO,
        };
    }
    d
}

/// A function created after its role in the same run starts no earlier than the propagation
/// window after it.
fn lag(model: &Model, earlier: &ResourceChange, later: &ResourceChange) -> Duration {
    let created = |c: &ResourceChange| matches!(c.change, Change::Create { .. });
    if earlier.kind == Kind::Role
        && created(earlier)
        && later.kind == Kind::Function
        && matches!(later.change, Change::Create { .. } | Change::Replace { .. })
    {
        model.holds.iam_propagation()
    } else {
        Duration::ZERO
    }
}

/// Reading the stack: every read starts at once (`infra::actual`), so the slowest chain of
/// reads that wait for each other: a role's inline policy after the list naming it, a log
/// group's tags after it is found, an HTTP API's parts after `GetApis` finds it.
pub fn read_path(model: &Model, exists: bool) -> Duration {
    let m = |s: &str, o: &str| model.median(s, o);
    let after = |first: Duration, then: Duration| if exists { first + then } else { first };
    [
        m("secretsmanager", "DescribeSecret"),
        m("secretsmanager", "GetSecretValue"),
        m("iam", "GetRole"),
        m("iam", "ListRoleTags"),
        after(m("iam", "ListRolePolicies"), m("iam", "GetRolePolicy")),
        m("iam", "ListAttachedRolePolicies"),
        after(
            m("logs", "DescribeLogGroups"),
            m("logs", "ListTagsForResource"),
        ),
        m("lambda", "GetFunction"),
        m("lambda", "GetFunctionConcurrency"),
        m("lambda", "GetFunctionUrlConfig"),
        m("lambda", "GetPolicy"),
        after(
            m("apigateway", "GetApis"),
            [
                m("apigateway", "GetIntegrations"),
                m("apigateway", "GetRoutes"),
                m("apigateway", "GetStages"),
            ]
            .into_iter()
            .max()
            .unwrap_or_default(),
        ),
        m("lambda", "ListLayerVersions"),
        m("ecr", "DescribeRepositories"),
        m("lambda", "GetAccountSettings"),
    ]
    .into_iter()
    .max()
    .unwrap_or_default()
}

/// The slowest single read call of reading the stack (the no-op redeploy's yardstick).
pub fn slowest_read(model: &Model) -> (Duration, &'static str) {
    [
        ("secretsmanager", "DescribeSecret"),
        ("logs", "DescribeLogGroups"),
        ("iam", "GetRole"),
        ("apigateway", "GetApis"),
        ("lambda", "ListLayerVersions"),
        ("lambda", "GetFunction"),
        ("lambda", "GetPolicy"),
        ("lambda", "GetAccountSettings"),
    ]
    .into_iter()
    .map(|(s, o)| (model.median(s, o), o))
    .max()
    .unwrap_or_default()
}

/// The critical path of one `cargo xtask deploy` / `teardown` of `plan` (see the module
/// documentation), and the chain of changes on it.
pub fn command_path(model: &Model, plan: &Plan, function_exists: bool) -> (Duration, String) {
    let apply =
        infra::schedule::critical_path(&plan.changes, |c| cost(model, c), |a, b| lag(model, a, b));
    let mut total = model.median("sts", "GetCallerIdentity") + read_path(model, function_exists);
    let mut chain = vec!["GetCallerIdentity".to_string(), "read".to_string()];
    if !plan.is_empty() {
        total += model.median("secretsmanager", "CreateSecret")
            + read_path(model, function_exists)
            + apply.total
            + model.median("secretsmanager", "DeleteSecret");
        chain.push("lock".into());
        chain.push("read".into());
        chain.extend(apply.chain.iter().map(|&i| plan.changes[i].label()));
        chain.push("unlock".into());
    }
    (total, chain.join(" → "))
}
