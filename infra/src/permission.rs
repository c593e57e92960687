//! Statements in the function's resource policy (`AddPermission` / `RemovePermission`).
//!
//! - A public (`NONE`) Function URL needs both statements AWS requires since October 2025:
//!   `lambda:InvokeFunctionUrl` with `lambda:FunctionUrlAuthType = NONE`, and
//!   `lambda:InvokeFunction` with `lambda:InvokedViaFunctionUrl = true`.
//! - The HTTP API needs `lambda:InvokeFunction` for `apigateway.amazonaws.com` with
//!   `SourceArn` scoped to that API.
//!
//! Every statement is on the alias `live` (`Qualifier=live`): callers reach only the alias.
//! Statements of the unqualified function (stacks deployed before releases) are removed.
//! Which policy a statement is in shows in its `Resource` (`...:function:<name>:live`).
//!
//! Statements cannot be edited: a statement that differs is removed and added again.
//! Only statements whose Sid starts with `claude-proxy-` are the toolkit's.

use crate::aws::{ctx, Aws, OrNotFound};
use crate::change::{Change, Kind, Late, Produced, Refs, Setting};
use crate::config::UrlAuth;
use crate::desired::StackSpec;
use crate::names::ALIAS;
use crate::step::{Done, ResourceChange, Step, StepContext, StepFuture};
use anyhow::Result;
use aws_sdk_lambda::types::FunctionUrlAuthType;
use serde_json::Value;

pub const SID_PREFIX: &str = "claude-proxy-";

/// A statement in the form the toolkit compares (parsed from AWS's or moto's JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub sid: String,
    pub action: String,
    pub principal: String,
    pub source_arn: Option<String>,
    pub function_url_auth_type: Option<String>,
    pub invoked_via_function_url: bool,
    /// The alias whose policy holds it (`None`: the unqualified function's).
    pub qualifier: Option<String>,
}

impl Statement {
    fn describe(&self) -> Vec<Setting> {
        let mut s = vec![
            Setting::new(
                "on",
                self.qualifier
                    .as_deref()
                    .unwrap_or("(unqualified function)"),
            ),
            Setting::new("action", &self.action),
            Setting::new("principal", &self.principal),
        ];
        if let Some(a) = &self.source_arn {
            s.push(Setting::new("source_arn", a));
        }
        if let Some(a) = &self.function_url_auth_type {
            s.push(Setting::new("lambda:FunctionUrlAuthType", a));
        }
        if self.invoked_via_function_url {
            s.push(Setting::new("lambda:InvokedViaFunctionUrl", "true"));
        }
        s
    }
}

/// The toolkit's statements currently in the function's policy and, when the alias
/// exists, in the alias's.
pub async fn read(aws: &Aws, function: &str, alias_exists: bool) -> Result<Vec<Statement>> {
    let mut out = read_one(aws, function, None).await?;
    if alias_exists {
        for s in read_one(aws, function, Some(ALIAS)).await? {
            // moto keeps one policy for the function and its aliases.
            if !out.contains(&s) {
                out.push(s);
            }
        }
    }
    Ok(out)
}

async fn read_one(aws: &Aws, function: &str, qualifier: Option<&str>) -> Result<Vec<Statement>> {
    let name = match qualifier {
        Some(q) => format!("{function}:{q}"),
        None => function.to_string(),
    };
    let Some(out) = aws
        .lambda
        .get_policy()
        .function_name(function)
        .set_qualifier(qualifier.map(str::to_string))
        .send()
        .await
        .or_not_found()
        .map_err(ctx(format!("lambda:GetPolicy {name}")))?
    else {
        return Ok(Vec::new());
    };
    let doc: Value = serde_json::from_str(out.policy().unwrap_or("{}"))
        .map_err(|e| anyhow::anyhow!("lambda:GetPolicy {name}: policy is not JSON: {e}"))?;
    Ok(parse_policy(&doc)
        .into_iter()
        .filter(|s| s.sid.starts_with(SID_PREFIX))
        .collect())
}

/// The qualifier in a statement's `Resource` (`...:function:<name>:<qualifier>`).
fn qualifier_of(resource: &str) -> Option<String> {
    let rest = resource.split(":function:").nth(1)?;
    let (_, q) = rest.split_once(':')?;
    (!q.is_empty() && q != "$LATEST").then(|| q.to_string())
}

/// Parses a resource policy. Real Lambda puts conditions under `Condition`; moto 5.2 keeps
/// `FunctionUrlAuthType` / `InvokedViaFunctionUrl` as top-level keys of the statement and
/// leaves a `*` principal as a bare string. Both forms are read.
pub fn parse_policy(doc: &Value) -> Vec<Statement> {
    let statements = match doc.get("Statement") {
        Some(Value::Array(a)) => a.clone(),
        Some(s) => vec![s.clone()],
        None => Vec::new(),
    };
    statements.iter().map(parse_statement).collect()
}

fn parse_statement(s: &Value) -> Statement {
    let str_of = |v: Option<&Value>| -> Option<String> {
        match v? {
            Value::String(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Array(a) if a.len() == 1 => a[0].as_str().map(str::to_string),
            other => Some(other.to_string()),
        }
    };
    let principal = match s.get("Principal") {
        Some(Value::String(p)) => p.clone(),
        Some(Value::Object(m)) => m
            .get("Service")
            .or_else(|| m.get("AWS"))
            .and_then(|v| str_of(Some(v)))
            .unwrap_or_default(),
        _ => String::new(),
    };
    // Look a condition key up under any operator, case-insensitively.
    let condition = |key: &str| -> Option<String> {
        let ops = s.get("Condition")?.as_object()?;
        ops.values()
            .filter_map(Value::as_object)
            .flat_map(|m| m.iter())
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .and_then(|(_, v)| str_of(Some(v)))
    };
    Statement {
        sid: str_of(s.get("Sid")).unwrap_or_default(),
        action: str_of(s.get("Action")).unwrap_or_default(),
        principal,
        source_arn: condition("AWS:SourceArn").or_else(|| str_of(s.get("SourceArn"))),
        function_url_auth_type: condition("lambda:FunctionUrlAuthType")
            .or_else(|| str_of(s.get("FunctionUrlAuthType"))),
        invoked_via_function_url: condition("lambda:InvokedViaFunctionUrl")
            .or_else(|| str_of(s.get("InvokedViaFunctionUrl")))
            .is_some_and(|v| v.eq_ignore_ascii_case("true")),
        qualifier: str_of(s.get("Resource")).and_then(|r| qualifier_of(&r)),
    }
}

/// The two statements a public Function URL needs.
pub fn public_url_statements() -> [Statement; 2] {
    [
        Statement {
            sid: crate::names::SID_URL_INVOKE_URL.into(),
            action: "lambda:InvokeFunctionUrl".into(),
            principal: "*".into(),
            source_arn: None,
            function_url_auth_type: Some("NONE".into()),
            invoked_via_function_url: false,
            qualifier: Some(ALIAS.into()),
        },
        Statement {
            sid: crate::names::SID_URL_INVOKE_FUNCTION.into(),
            action: "lambda:InvokeFunction".into(),
            principal: "*".into(),
            source_arn: None,
            function_url_auth_type: None,
            invoked_via_function_url: true,
            qualifier: Some(ALIAS.into()),
        },
    ]
}

/// The HTTP API's statement, scoped to that API (any stage, any route).
pub fn api_statement(api_source_arn: &str) -> Statement {
    Statement {
        sid: crate::names::SID_API_INVOKE.into(),
        action: "lambda:InvokeFunction".into(),
        principal: "apigateway.amazonaws.com".into(),
        source_arn: Some(api_source_arn.into()),
        function_url_auth_type: None,
        invoked_via_function_url: false,
        qualifier: Some(ALIAS.into()),
    }
}

pub fn api_source_arn(partition: &str, region: &str, account_id: &str, api_id: &str) -> String {
    format!("arn:{partition}:execute-api:{region}:{account_id}:{api_id}/*/*")
}

/// A statement the stack wants. The HTTP API's names the API, known once it exists
/// (`source_arn`); the statement holds it as planned.
#[derive(Debug, Clone)]
pub struct Wanted {
    pub statement: Statement,
    pub source_arn: Option<Late>,
}

impl Wanted {
    fn resolve(&self, produced: &Produced) -> Result<Statement> {
        let mut s = self.statement.clone();
        if let Some(l) = &self.source_arn {
            s.source_arn = Some(l.resolve(produced)?);
        }
        Ok(s)
    }
}

/// The statements a desired stack needs: a public URL's two, and the HTTP API's.
pub fn specs(s: &StackSpec, refs: &Refs) -> Vec<Wanted> {
    let mut out = Vec::new();
    let u = &s.config.function_url;
    if u.enabled && u.auth == UrlAuth::None {
        out.extend(public_url_statements().map(|statement| Wanted {
            statement,
            source_arn: None,
        }));
    }
    if s.config.http_api.enabled {
        out.push(Wanted {
            statement: api_statement(refs.api_source_arn.planned()),
            source_arn: Some(refs.api_source_arn.clone()),
        });
    }
    out
}

/// The planned changes to the function's resource policy, with what apply does for each.
pub fn plan(function: &str, wanted: &[Wanted], actual: &[Statement]) -> Vec<ResourceChange> {
    let desired: Vec<Statement> = wanted.iter().map(|w| w.statement.clone()).collect();
    diff(&desired, actual)
        .into_iter()
        .map(|(sid, change)| {
            let function = function.to_string();
            let old = actual.iter().find(|a| a.sid == sid);
            let action = match (&change, wanted.iter().find(|w| w.statement.sid == sid)) {
                (Change::Delete, _) | (_, None) => Action::Remove {
                    function,
                    sid: sid.clone(),
                    qualifier: old.and_then(|a| a.qualifier.clone()),
                },
                (change, Some(w)) => Action::Add {
                    function,
                    wanted: w.clone(),
                    replace: matches!(change, Change::Replace { .. })
                        .then(|| old.and_then(|a| a.qualifier.clone())),
                },
            };
            ResourceChange::new(Kind::Permission, &sid, change, action)
        })
        .collect()
}

/// What apply does to one statement.
#[derive(Debug)]
pub enum Action {
    /// Adds the statement (removing the old one, from the policy of the qualifier given,
    /// first when it is replaced).
    Add {
        function: String,
        wanted: Wanted,
        replace: Option<Option<String>>,
    },
    Remove {
        function: String,
        sid: String,
        qualifier: Option<String>,
    },
}

impl Step for Action {
    fn run<'a>(&'a self, cx: StepContext<'a>) -> StepFuture<'a> {
        Box::pin(async move {
            match self {
                Action::Add {
                    function,
                    wanted,
                    replace,
                } => {
                    let statement = wanted.resolve(cx.produced)?;
                    if let Some(old) = replace {
                        remove(cx.aws, function, &statement.sid, old.as_deref()).await?;
                    }
                    add(cx.aws, function, &statement).await?;
                }
                Action::Remove {
                    function,
                    sid,
                    qualifier,
                } => remove(cx.aws, function, sid, qualifier.as_deref()).await?,
            }
            Done::nothing()
        })
    }
}

/// One change per statement id, desired order.
pub fn diff(desired: &[Statement], actual: &[Statement]) -> Vec<(String, Change)> {
    let mut out = Vec::new();
    for a in actual {
        if !desired.iter().any(|d| d.sid == a.sid) {
            out.push((a.sid.clone(), Change::Delete));
        }
    }
    for d in desired {
        match actual.iter().find(|a| a.sid == d.sid) {
            None => out.push((
                d.sid.clone(),
                Change::Create {
                    settings: d.describe(),
                },
            )),
            Some(a) if a != d => out.push((
                d.sid.clone(),
                Change::Replace {
                    reason: format!(
                        "statement differs (now {}; wanted {})",
                        summary(a),
                        summary(d)
                    ),
                },
            )),
            Some(_) => {}
        }
    }
    out
}

fn summary(s: &Statement) -> String {
    s.describe()
        .iter()
        .map(|x| format!("{}={}", x.field, x.value))
        .collect::<Vec<_>>()
        .join(" ")
}

pub async fn add(aws: &Aws, function: &str, s: &Statement) -> Result<()> {
    let mut req = aws
        .lambda
        .add_permission()
        .function_name(function)
        .statement_id(&s.sid)
        .action(&s.action)
        .principal(&s.principal)
        .set_qualifier(s.qualifier.clone())
        .set_source_arn(s.source_arn.clone());
    if let Some(t) = &s.function_url_auth_type {
        req = req.function_url_auth_type(FunctionUrlAuthType::from(t.as_str()));
    }
    if s.invoked_via_function_url {
        req = req.invoked_via_function_url(true);
    }
    req.send().await.map_err(ctx(format!(
        "lambda:AddPermission {function}{} {}",
        s.qualifier
            .as_deref()
            .map(|q| format!(":{q}"))
            .unwrap_or_default(),
        s.sid
    )))?;
    Ok(())
}

pub async fn remove(aws: &Aws, function: &str, sid: &str, qualifier: Option<&str>) -> Result<()> {
    let on = match qualifier {
        Some(q) => format!("{function}:{q}"),
        None => function.to_string(),
    };
    aws.lambda
        .remove_permission()
        .function_name(function)
        .statement_id(sid)
        .set_qualifier(qualifier.map(str::to_string))
        .send()
        .await
        .or_not_found()
        .map_err(ctx(format!("lambda:RemovePermission {on} {sid}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_real_aws_policy() {
        let doc = json!({"Version":"2012-10-17","Id":"default","Statement":[
            {"Sid":"claude-proxy-url-invoke-function-url","Effect":"Allow","Principal":"*","Action":"lambda:InvokeFunctionUrl","Resource":"arn:aws:lambda:us-east-1:1:function:f:live","Condition":{"StringEquals":{"lambda:FunctionUrlAuthType":"NONE"}}},
            {"Sid":"claude-proxy-url-invoke-function","Effect":"Allow","Principal":"*","Action":"lambda:InvokeFunction","Resource":"arn:aws:lambda:us-east-1:1:function:f:live","Condition":{"Bool":{"lambda:InvokedViaFunctionUrl":"true"}}},
            {"Sid":"claude-proxy-apigateway-invoke","Effect":"Allow","Principal":{"Service":"apigateway.amazonaws.com"},"Action":"lambda:InvokeFunction","Resource":"arn:aws:lambda:us-east-1:1:function:f:live","Condition":{"ArnLike":{"AWS:SourceArn":"arn:aws:execute-api:us-east-1:1:abc/*/*"}}}
        ]});
        let parsed = parse_policy(&doc);
        let mut want = public_url_statements().to_vec();
        want.push(api_statement("arn:aws:execute-api:us-east-1:1:abc/*/*"));
        assert_eq!(parsed, want);
        assert!(diff(&want, &parsed).is_empty());
    }

    #[test]
    fn parses_moto_policy() {
        let doc = json!({"Statement":[
            {"Sid":"claude-proxy-url-invoke-function-url","Effect":"Allow","Principal":"*","Action":"lambda:InvokeFunctionUrl","FunctionUrlAuthType":"NONE","Resource":"arn:aws:lambda:us-east-1:1:function:f:live"},
            {"Sid":"claude-proxy-url-invoke-function","Effect":"Allow","Principal":"*","Action":"lambda:InvokeFunction","InvokedViaFunctionUrl":true,"Resource":"arn:aws:lambda:us-east-1:1:function:f:live"}
        ]});
        assert_eq!(parse_policy(&doc), public_url_statements().to_vec());
    }

    #[test]
    fn statements_of_the_unqualified_function_move_to_the_alias() {
        let doc = json!({"Statement":[
            {"Sid":"claude-proxy-url-invoke-function-url","Effect":"Allow","Principal":"*","Action":"lambda:InvokeFunctionUrl","FunctionUrlAuthType":"NONE","Resource":"arn:aws:lambda:us-east-1:1:function:f"}
        ]});
        let have = parse_policy(&doc);
        assert_eq!(have[0].qualifier, None);
        let want = public_url_statements().to_vec();
        let d = diff(&want, &have);
        assert!(matches!(d[0].1, Change::Replace { .. }), "{d:?}");
        let changes = plan("f", &specs_of(&want), &have);
        // Removed from the unqualified function's policy, added to the alias's.
        let step = format!("{:?}", changes[0].step);
        assert!(step.contains("replace: Some(None)"), "{step}");
        assert!(step.contains("qualifier: Some(\"live\")"), "{step}");
    }

    fn specs_of(statements: &[Statement]) -> Vec<Wanted> {
        statements
            .iter()
            .map(|s| Wanted {
                statement: s.clone(),
                source_arn: None,
            })
            .collect()
    }

    #[test]
    fn differing_statement_is_replaced_extra_is_deleted() {
        let want = vec![api_statement("arn:new/*/*")];
        let have = vec![
            api_statement("arn:old/*/*"),
            public_url_statements()[0].clone(),
        ];
        let d = diff(&want, &have);
        assert_eq!(d.len(), 2);
        assert!(matches!(d[0].1, Change::Delete));
        assert!(matches!(d[1].1, Change::Replace { .. }));
    }
}
