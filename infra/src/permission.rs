//! Statements in the function's resource policy (`AddPermission` / `RemovePermission`).
//!
//! - A public (`NONE`) Function URL needs both statements AWS requires since October 2025:
//!   `lambda:InvokeFunctionUrl` with `lambda:FunctionUrlAuthType = NONE`, and
//!   `lambda:InvokeFunction` with `lambda:InvokedViaFunctionUrl = true`.
//! - The HTTP API needs `lambda:InvokeFunction` for `apigateway.amazonaws.com` with
//!   `SourceArn` scoped to that API; the REST API the same, scoped to its stage.
//!
//! Statements cannot be edited: a statement that differs is removed and added again.
//! Only statements whose Sid starts with `claude-proxy-` are the toolkit's.

use crate::aws::{ctx, Aws, OrNotFound};
use crate::change::{Change, Kind, Late, Produced, Refs, Setting};
use crate::config::UrlAuth;
use crate::desired::StackSpec;
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
}

impl Statement {
    fn describe(&self) -> Vec<Setting> {
        let mut s = vec![
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

/// The toolkit's statements currently in the function's policy.
pub async fn read(aws: &Aws, function: &str) -> Result<Vec<Statement>> {
    let Some(out) = aws
        .lambda
        .get_policy()
        .function_name(function)
        .send()
        .await
        .or_not_found()
        .map_err(ctx(format!("lambda:GetPolicy {function}")))?
    else {
        return Ok(Vec::new());
    };
    let doc: Value = serde_json::from_str(out.policy().unwrap_or("{}"))
        .map_err(|e| anyhow::anyhow!("lambda:GetPolicy {function}: policy is not JSON: {e}"))?;
    Ok(parse_policy(&doc)
        .into_iter()
        .filter(|s| s.sid.starts_with(SID_PREFIX))
        .collect())
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
        },
        Statement {
            sid: crate::names::SID_URL_INVOKE_FUNCTION.into(),
            action: "lambda:InvokeFunction".into(),
            principal: "*".into(),
            source_arn: None,
            function_url_auth_type: None,
            invoked_via_function_url: true,
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
    }
}

/// The REST API's statement, scoped to its stage (any method, any path).
pub fn rest_statement(source_arn: &str) -> Statement {
    Statement {
        sid: crate::names::SID_REST_INVOKE.into(),
        action: "lambda:InvokeFunction".into(),
        principal: "apigateway.amazonaws.com".into(),
        source_arn: Some(source_arn.into()),
        function_url_auth_type: None,
        invoked_via_function_url: false,
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
    // InvokeWithResponseStream, which the REST API's streaming integration calls, is
    // authorized by `lambda:InvokeFunction`.
    if s.config.api_kind() == crate::config::ApiKind::Rest {
        out.push(Wanted {
            statement: rest_statement(refs.rest_source_arn.planned()),
            source_arn: Some(refs.rest_source_arn.clone()),
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
            let action = match (&change, wanted.iter().find(|w| w.statement.sid == sid)) {
                (Change::Delete, _) | (_, None) => Action::Remove {
                    function,
                    sid: sid.clone(),
                },
                (change, Some(w)) => Action::Add {
                    function,
                    wanted: w.clone(),
                    replace: matches!(change, Change::Replace { .. }),
                },
            };
            ResourceChange::new(Kind::Permission, &sid, change, action)
        })
        .collect()
}

/// What apply does to one statement.
#[derive(Debug)]
pub enum Action {
    /// Adds the statement (removing the old one first when it is replaced).
    Add {
        function: String,
        wanted: Wanted,
        replace: bool,
    },
    Remove {
        function: String,
        sid: String,
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
                    if *replace {
                        remove(cx.aws, function, &statement.sid).await?;
                    }
                    add(cx.aws, function, &statement).await?;
                }
                Action::Remove { function, sid } => remove(cx.aws, function, sid).await?,
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
        .set_source_arn(s.source_arn.clone());
    if let Some(t) = &s.function_url_auth_type {
        req = req.function_url_auth_type(FunctionUrlAuthType::from(t.as_str()));
    }
    if s.invoked_via_function_url {
        req = req.invoked_via_function_url(true);
    }
    req.send()
        .await
        .map_err(ctx(format!("lambda:AddPermission {function} {}", s.sid)))?;
    Ok(())
}

pub async fn remove(aws: &Aws, function: &str, sid: &str) -> Result<()> {
    aws.lambda
        .remove_permission()
        .function_name(function)
        .statement_id(sid)
        .send()
        .await
        .or_not_found()
        .map_err(ctx(format!("lambda:RemovePermission {function} {sid}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_real_aws_policy() {
        let doc = json!({"Version":"2012-10-17","Id":"default","Statement":[
            {"Sid":"claude-proxy-url-invoke-function-url","Effect":"Allow","Principal":"*","Action":"lambda:InvokeFunctionUrl","Resource":"arn:aws:lambda:us-east-1:1:function:f","Condition":{"StringEquals":{"lambda:FunctionUrlAuthType":"NONE"}}},
            {"Sid":"claude-proxy-url-invoke-function","Effect":"Allow","Principal":"*","Action":"lambda:InvokeFunction","Resource":"arn:aws:lambda:us-east-1:1:function:f","Condition":{"Bool":{"lambda:InvokedViaFunctionUrl":"true"}}},
            {"Sid":"claude-proxy-apigateway-invoke","Effect":"Allow","Principal":{"Service":"apigateway.amazonaws.com"},"Action":"lambda:InvokeFunction","Resource":"arn:aws:lambda:us-east-1:1:function:f","Condition":{"ArnLike":{"AWS:SourceArn":"arn:aws:execute-api:us-east-1:1:abc/*/*"}}}
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
            {"Sid":"claude-proxy-url-invoke-function-url","Effect":"Allow","Principal":"*","Action":"lambda:InvokeFunctionUrl","FunctionUrlAuthType":"NONE","Resource":"x"},
            {"Sid":"claude-proxy-url-invoke-function","Effect":"Allow","Principal":"*","Action":"lambda:InvokeFunction","InvokedViaFunctionUrl":true,"Resource":"x"}
        ]});
        assert_eq!(parse_policy(&doc), public_url_statements().to_vec());
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
