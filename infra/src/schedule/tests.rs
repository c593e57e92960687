use super::*;
use crate::change::{Change, Kind};
use crate::step::{Done, Step, StepContext, StepFuture};

#[derive(Debug)]
struct Nothing;

impl Step for Nothing {
    fn run<'a>(&'a self, _: StepContext<'a>) -> StepFuture<'a> {
        Box::pin(async { Done::nothing() })
    }
}

fn create(kind: Kind) -> ResourceChange {
    ResourceChange::new(
        kind,
        kind.label(),
        Change::Create { settings: vec![] },
        Nothing,
    )
}

fn delete(kind: Kind) -> ResourceChange {
    ResourceChange::new(kind, kind.label(), Change::Delete, Nothing)
}

/// A first deploy's changes, in the plan's order.
fn first_deploy() -> Vec<ResourceChange> {
    [
        Kind::Secret,
        Kind::LogGroup,
        Kind::Role,
        Kind::RolePolicy,
        Kind::Function,
        Kind::FunctionUrl,
        Kind::Permission,
        Kind::Permission,
    ]
    .into_iter()
    .map(create)
    .collect()
}

#[test]
fn secret_log_group_and_role_wait_for_nothing_and_the_function_for_them_all() {
    let deps = dependencies(&first_deploy());
    assert_eq!(deps[0], Vec::<usize>::new());
    assert_eq!(deps[1], Vec::<usize>::new());
    assert_eq!(deps[2], Vec::<usize>::new());
    assert_eq!(
        deps[3],
        vec![0, 2],
        "the policy names the secret, on the role"
    );
    assert_eq!(deps[4], vec![0, 1, 2, 3]);
    assert_eq!(deps[5], vec![4]);
    assert_eq!(deps[6], vec![4, 5]);
    assert_eq!(deps[7], vec![4, 5, 6], "one permission after the other");
}

#[test]
fn every_dependency_points_back_and_creations_wait_for_deletions() {
    let mut changes = vec![delete(Kind::Permission), delete(Kind::HttpApi)];
    changes.extend(first_deploy());
    let deps = dependencies(&changes);
    for (i, d) in deps.iter().enumerate() {
        assert!(d.iter().all(|&j| j < i), "{i}: {d:?}");
    }
    assert_eq!(
        deps[1],
        Vec::<usize>::new(),
        "deletions of unrelated kinds overlap"
    );
    assert_eq!(deps[2], vec![0, 1], "the secret waits for the deletions");
}

#[test]
fn teardown_deletes_the_function_after_its_parts_and_the_role_after_its_policies() {
    let kinds = [
        Kind::Permission,
        Kind::FunctionUrl,
        Kind::Function,
        Kind::LogGroup,
        Kind::RolePolicy,
        Kind::Role,
        Kind::Secret,
    ];
    let changes: Vec<_> = kinds.into_iter().map(delete).collect();
    let deps = dependencies(&changes);
    assert_eq!(deps[2], vec![0, 1]);
    assert_eq!(deps[3], vec![2]);
    assert_eq!(deps[4], Vec::<usize>::new());
    assert_eq!(deps[5], vec![4]);
    assert_eq!(deps[6], Vec::<usize>::new());
}

#[test]
fn the_critical_path_is_the_longest_chain() {
    let changes = first_deploy();
    let cost = |c: &ResourceChange| {
        Duration::from_millis(match c.kind {
            Kind::Secret => 300,
            Kind::LogGroup => 100,
            Kind::Role => 500,
            Kind::RolePolicy => 200,
            Kind::Function => 4000,
            Kind::FunctionUrl => 150,
            Kind::Permission => 100,
            _ => unreachable!(),
        })
    };
    let none = |_: &ResourceChange, _: &ResourceChange| Duration::ZERO;
    let path = critical_path(&changes, cost, none);
    // role 500 → policy (after the secret's 300, so 500..700) → function → URL → 2 permissions.
    assert_eq!(
        path.total,
        Duration::from_millis(500 + 200 + 4000 + 150 + 100 + 100)
    );
    assert_eq!(path.chain, vec![2, 3, 4, 5, 6, 7]);
    // The function may start only 1 s after the role was made: role → function directly.
    let propagation = |a: &ResourceChange, b: &ResourceChange| {
        if a.kind == Kind::Role && b.kind == Kind::Function {
            Duration::from_secs(1)
        } else {
            Duration::ZERO
        }
    };
    let path = critical_path(&changes, cost, propagation);
    assert_eq!(
        path.total,
        Duration::from_millis(500 + 1000 + 4000 + 150 + 100 + 100)
    );
    assert_eq!(path.chain, vec![2, 4, 5, 6, 7]);
    assert_eq!(
        critical_path(&[], cost, none),
        CriticalPath {
            total: Duration::ZERO,
            chain: vec![]
        }
    );
}
