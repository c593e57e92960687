//! Which changes of a plan wait for which: the plan's dependency graph, from each kind's
//! [`Kind::waits_for`](crate::change::Kind::waits_for). Apply starts every change whose
//! dependencies are done (independent resources in parallel); the bench and `plan` compute the
//! critical path from the same graph: the longest chain of changes that must run one after
//! another, the shortest wall time any apply of the plan can take.

use crate::change::Change;
use crate::step::ResourceChange;
use std::time::Duration;

/// True when the change deletes its resource.
pub fn deletes(c: &ResourceChange) -> bool {
    matches!(c.change, Change::Delete)
}

/// For each change (by index in the plan's order), the earlier changes it waits for: those of
/// a kind its own kind waits for, those of its own kind (one resource kind changes one
/// thing at a time), and, for a creation or update, every deletion (deletions first).
pub fn dependencies(changes: &[ResourceChange]) -> Vec<Vec<usize>> {
    changes
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let deleting = deletes(c);
            let waits = c.kind.waits_for(deleting);
            changes[..i]
                .iter()
                .enumerate()
                .filter(|(_, e)| {
                    e.kind == c.kind || waits.contains(&e.kind) || (!deleting && deletes(e))
                })
                .map(|(j, _)| j)
                .collect()
        })
        .collect()
}

/// The longest chain of changes that must run one after another, and how long it takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriticalPath {
    pub total: Duration,
    /// Indices into the plan's changes, first to last.
    pub chain: Vec<usize>,
}

/// The critical path of `changes` when each takes `cost(change)` and may start `lag(earlier,
/// later)` after an earlier change it waits for finished (IAM propagation between creating a
/// role and creating the function that names it): with every change started as soon as it
/// may, the time the last one finishes.
pub fn critical_path(
    changes: &[ResourceChange],
    cost: impl Fn(&ResourceChange) -> Duration,
    lag: impl Fn(&ResourceChange, &ResourceChange) -> Duration,
) -> CriticalPath {
    let deps = dependencies(changes);
    // Dependencies always point backwards, so one pass in plan order is a topological order.
    let mut finish = vec![Duration::ZERO; changes.len()];
    let mut via: Vec<Option<usize>> = vec![None; changes.len()];
    for (i, c) in changes.iter().enumerate() {
        let ready = |j: usize| finish[j] + lag(&changes[j], c);
        let start = deps[i]
            .iter()
            .copied()
            .max_by_key(|&j| ready(j))
            .map(|j| {
                via[i] = Some(j);
                ready(j)
            })
            .unwrap_or_default();
        finish[i] = start + cost(c);
    }
    let Some(last) = (0..changes.len()).max_by_key(|&i| finish[i]) else {
        return CriticalPath {
            total: Duration::ZERO,
            chain: Vec::new(),
        };
    };
    let mut chain = vec![last];
    while let Some(j) = via[*chain.last().unwrap()] {
        chain.push(j);
    }
    chain.reverse();
    CriticalPath {
        total: finish[last],
        chain,
    }
}

#[cfg(test)]
mod tests;
