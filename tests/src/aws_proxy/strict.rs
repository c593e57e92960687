//! Profiles that make the proxy answer the way real AWS does where moto is lenient: with
//! AWS's own error codes, status codes and messages, and AWS's delays.
//!
//! - [`Profile::NewAccount`]: `GetAccountSettings` says 10 concurrent executions, all
//!   unreserved, and `PutFunctionConcurrency` is refused when it would leave fewer than the
//!   floor unreserved ("... below its minimum value of [10].", 400
//!   `InvalidParameterValueException`), as Lambda answers a new account.
//! - [`Profile::IamPropagationLag`]: `CreateFunction` and `UpdateFunctionConfiguration`
//!   naming a role created less than the lag ago are refused with Lambda's "The role defined
//!   for the function cannot be assumed by Lambda." (400 `InvalidParameterValueException`).
//! - [`Profile::ReadsLagDeletes`]: for the lag after a delete, `GetFunction`, `GetRole` and
//!   `DescribeSecret` still answer what they answered before it (a force-deleted secret
//!   with its `DeletedDate`), and `CreateSecret` of that name is refused with Secrets
//!   Manager's "You can't create this secret because a secret with this name is already
//!   scheduled for deletion." (400 `InvalidRequestException`).
//!
//! - [`Profile::RestIntegrationTimeouts`]: API Gateway's bounds on a REST API integration's
//!   `timeoutInMillis`, which moto does not check: 50 ms to 29 s, up to 15 minutes only in
//!   `responseTransferMode: STREAM` (400 `BadRequestException` "Timeout should be between
//!   50 ms and 29000 ms").
//!
//! [`all`] lists every profile; a test that should run under all of them takes that list,
//! so a new profile is switched on for it by one line there.

use axum::body::Body;
use axum::response::Response;
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

/// One way real AWS is stricter than moto.
#[derive(Debug, Clone, PartialEq)]
pub enum Profile {
    /// A new account: `total` concurrent executions, all unreserved, and Lambda keeping at
    /// least `floor` unreserved.
    NewAccount { total: i32, floor: i32 },
    /// A role is not usable by Lambda for this long after `CreateRole`.
    IamPropagationLag(Duration),
    /// Reads show a deleted function, role or secret for this long after the delete.
    ReadsLagDeletes(Duration),
    /// REST API integration timeouts are bounded as API Gateway bounds them.
    RestIntegrationTimeouts,
}

impl Profile {
    /// A new AWS account as Lambda has them: 10 concurrent executions, floor 10.
    pub fn new_account() -> Profile {
        Profile::NewAccount {
            total: 10,
            floor: 10,
        }
    }
}

/// Every profile, with lags short enough for tests. One line per profile.
pub fn all() -> Vec<Profile> {
    vec![
        Profile::new_account(),
        Profile::IamPropagationLag(Duration::from_secs(2)),
        Profile::ReadsLagDeletes(Duration::from_secs(3)),
        Profile::RestIntegrationTimeouts,
    ]
}

/// A request as the profiles see it.
pub(super) struct Req<'a> {
    pub service: &'a str,
    pub operation: &'a str,
    pub method: &'a http::Method,
    pub path: &'a str,
    pub body: &'a [u8],
}

/// A read answer kept for replay after a delete.
#[derive(Debug, Clone)]
struct Kept {
    content_type: String,
    body: Vec<u8>,
}

#[derive(Debug, Default)]
pub(super) struct Strict {
    profiles: Vec<Profile>,
    /// Reserved concurrency per function, as granted.
    reserved: BTreeMap<String, i32>,
    /// When each role was created.
    roles_created: BTreeMap<String, Instant>,
    /// The last successful read of each function / role / secret (by name).
    last_function: BTreeMap<String, Kept>,
    last_role: BTreeMap<String, Kept>,
    last_secret: BTreeMap<String, Kept>,
    /// Deletions still lagging: when, and (secrets) the deletion time for `DeletedDate`.
    deleted_function: BTreeMap<String, Instant>,
    deleted_role: BTreeMap<String, Instant>,
    deleted_secret: BTreeMap<String, (Instant, SystemTime)>,
}

impl Strict {
    pub fn enable(&mut self, p: Profile) {
        self.profiles
            .retain(|q| std::mem::discriminant(q) != std::mem::discriminant(&p));
        self.profiles.push(p);
    }

    fn new_account(&self) -> Option<(i32, i32)> {
        self.profiles.iter().find_map(|p| match p {
            Profile::NewAccount { total, floor } => Some((*total, *floor)),
            _ => None,
        })
    }

    fn iam_lag(&self) -> Option<Duration> {
        self.profiles.iter().find_map(|p| match p {
            Profile::IamPropagationLag(d) => Some(*d),
            _ => None,
        })
    }

    fn read_lag(&self) -> Option<Duration> {
        self.profiles.iter().find_map(|p| match p {
            Profile::ReadsLagDeletes(d) => Some(*d),
            _ => None,
        })
    }

    /// The answer AWS would give instead of moto's, if any (the request is then not
    /// forwarded).
    pub fn answer(&mut self, r: &Req) -> Option<Response> {
        if self.profiles.contains(&Profile::RestIntegrationTimeouts) {
            if let Some(refused) = rest_integration_timeout(r) {
                return Some(refused);
            }
        }
        let segs = lambda_path(r.path);
        if let Some((total, floor)) = self.new_account() {
            if r.service == "lambda"
                && r.method == http::Method::GET
                && segs.first() == Some(&"account-settings")
            {
                let reserved: i32 = self.reserved.values().sum();
                return Some(json_ok(
                    "application/json",
                    serde_json::json!({
                        "AccountLimit": {
                            "TotalCodeSize": 80530636800u64,
                            "CodeSizeUnzipped": 262144000,
                            "CodeSizeZipped": 52428800,
                            "ConcurrentExecutions": total,
                            "UnreservedConcurrentExecutions": total - reserved
                        },
                        "AccountUsage": {"TotalCodeSize": 0, "FunctionCount": 0}
                    }),
                ));
            }
            if let (true, true, ["functions", f, "concurrency"]) = (
                r.service == "lambda",
                r.method == http::Method::PUT,
                segs.as_slice(),
            ) {
                let wanted = json(r.body)["ReservedConcurrentExecutions"]
                    .as_i64()
                    .unwrap_or(0) as i32;
                let others: i32 = self
                    .reserved
                    .iter()
                    .filter(|(k, _)| k.as_str() != *f)
                    .map(|(_, v)| *v)
                    .sum();
                if total - others - wanted < floor {
                    return Some(aws_error(
                        "lambda",
                        400,
                        "InvalidParameterValueException",
                        &format!("Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [{floor}]."),
                    ));
                }
            }
        }
        if let Some(lag) = self.iam_lag() {
            let names_role = r.service == "lambda"
                && matches!(
                    (r.method.as_str(), segs.as_slice()),
                    ("POST", ["functions"]) | ("PUT", ["functions", _, "configuration"])
                );
            if names_role {
                let role = json(r.body)["Role"]
                    .as_str()
                    .and_then(|arn| arn.rsplit('/').next())
                    .unwrap_or_default()
                    .to_string();
                if self
                    .roles_created
                    .get(&role)
                    .is_some_and(|t| t.elapsed() < lag)
                {
                    return Some(aws_error(
                        "lambda",
                        400,
                        "InvalidParameterValueException",
                        "The role defined for the function cannot be assumed by Lambda.",
                    ));
                }
            }
        }
        if let Some(lag) = self.read_lag() {
            let lagging = |t: &Instant| t.elapsed() < lag;
            match (r.service, r.method.as_str(), segs.as_slice()) {
                ("lambda", "GET", ["functions", f])
                    if self.deleted_function.get(*f).is_some_and(lagging) =>
                {
                    if let Some(k) = self.last_function.get(*f) {
                        return Some(replay(k));
                    }
                }
                ("iam", _, _) if r.operation == "GetRole" => {
                    let name = form(r.body, "RoleName").unwrap_or_default();
                    if self.deleted_role.get(&name).is_some_and(lagging) {
                        if let Some(k) = self.last_role.get(&name) {
                            return Some(replay(k));
                        }
                    }
                }
                ("secretsmanager", _, _) if r.operation == "DescribeSecret" => {
                    let id = json(r.body)["SecretId"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    let name = secret_name(&id);
                    if let Some((at, when)) = self.deleted_secret.get(&name) {
                        if lagging(at) {
                            if let Some(k) = self.last_secret.get(&name) {
                                // A force-deleted secret: still described, with its DeletedDate.
                                let mut v = json(&k.body);
                                let secs = when
                                    .duration_since(SystemTime::UNIX_EPOCH)
                                    .unwrap_or_default()
                                    .as_secs_f64();
                                v["DeletedDate"] = serde_json::json!(secs);
                                return Some(json_ok(&k.content_type, v));
                            }
                        }
                    }
                }
                ("secretsmanager", _, _) if r.operation == "CreateSecret" => {
                    let name = json(r.body)["Name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    if self
                        .deleted_secret
                        .get(&name)
                        .is_some_and(|(at, _)| lagging(at))
                    {
                        return Some(aws_error(
                            "secretsmanager",
                            400,
                            "InvalidRequestException",
                            "You can't create this secret because a secret with this name is already scheduled for deletion.",
                        ));
                    }
                }
                _ => {}
            }
        }
        None
    }

    /// Keeps what the profiles need from a request moto answered with `status`.
    pub fn observe(&mut self, r: &Req, status: u16, content_type: &str, response: &[u8]) {
        if !(200..300).contains(&status) {
            return;
        }
        let segs = lambda_path(r.path);
        let kept = || Kept {
            content_type: content_type.to_string(),
            body: response.to_vec(),
        };
        match (r.service, r.method.as_str(), segs.as_slice()) {
            ("lambda", "PUT", ["functions", f, "concurrency"]) => {
                let n = json(r.body)["ReservedConcurrentExecutions"]
                    .as_i64()
                    .unwrap_or(0) as i32;
                self.reserved.insert(f.to_string(), n);
            }
            ("lambda", "DELETE", ["functions", f, "concurrency"]) => {
                self.reserved.remove(*f);
            }
            ("lambda", "GET", ["functions", f]) => {
                self.last_function.insert(f.to_string(), kept());
            }
            ("lambda", "DELETE", ["functions", f]) => {
                self.reserved.remove(*f);
                self.deleted_function.insert(f.to_string(), Instant::now());
            }
            ("lambda", "POST", ["functions"]) => {
                if let Some(f) = json(r.body)["FunctionName"].as_str() {
                    self.deleted_function.remove(f);
                }
            }
            ("iam", _, _) => {
                let name = form(r.body, "RoleName").unwrap_or_default();
                match r.operation {
                    "CreateRole" => {
                        self.roles_created.insert(name.clone(), Instant::now());
                        self.deleted_role.remove(&name);
                    }
                    "GetRole" => {
                        self.last_role.insert(name, kept());
                    }
                    "DeleteRole" => {
                        self.roles_created.remove(&name);
                        self.deleted_role.insert(name, Instant::now());
                    }
                    _ => {}
                }
            }
            ("secretsmanager", _, _) => {
                let v = json(r.body);
                match r.operation {
                    "DescribeSecret" => {
                        let name = json(response)["Name"].as_str().map(str::to_string);
                        if let Some(n) = name {
                            self.last_secret.insert(n, kept());
                        }
                    }
                    "CreateSecret" => {
                        if let Some(n) = v["Name"].as_str() {
                            self.deleted_secret.remove(n);
                        }
                    }
                    "DeleteSecret" => {
                        let name = json(response)["Name"]
                            .as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| {
                                secret_name(v["SecretId"].as_str().unwrap_or_default())
                            });
                        if v["ForceDeleteWithoutRecovery"].as_bool() == Some(true) {
                            self.deleted_secret
                                .insert(name, (Instant::now(), SystemTime::now()));
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

/// The path after Lambda's API version (`/2015-03-31/functions/f` -> `["functions", "f"]`),
/// without an empty trailing segment.
fn lambda_path(path: &str) -> Vec<&str> {
    let mut segs: Vec<&str> = path.trim_matches('/').split('/').skip(1).collect();
    if segs.last() == Some(&"") {
        segs.pop();
    }
    segs
}

/// A secret's name from a name or an ARN (`...:secret:<name>-AbCdEf`).
fn secret_name(id: &str) -> String {
    match id.split_once(":secret:") {
        Some((_, rest)) => rest
            .rsplit_once('-')
            .map(|(n, _)| n.to_string())
            .unwrap_or_else(|| rest.to_string()),
        None => id.to_string(),
    }
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap_or(serde_json::Value::Null)
}

/// A field of a form-encoded (query protocol) body.
fn form(body: &[u8], key: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| super::partition::url_decode(v, true))
    })
}

fn json_ok(content_type: &str, v: serde_json::Value) -> Response {
    Response::builder()
        .status(200)
        .header("content-type", content_type)
        .header("x-amzn-requestid", "strict-profile")
        .body(Body::from(v.to_string()))
        .unwrap()
}

fn replay(k: &Kept) -> Response {
    Response::builder()
        .status(200)
        .header("content-type", k.content_type.as_str())
        .header("x-amzn-requestid", "strict-profile")
        .body(Body::from(k.body.clone()))
        .unwrap()
}

/// PutIntegration of a REST API (`PUT /restapis/{id}/resources/{id}/methods/{m}/integration`)
/// with a timeout API Gateway refuses.
fn rest_integration_timeout(r: &Req) -> Option<Response> {
    if r.service != "apigateway"
        || r.method != http::Method::PUT
        || !r.path.starts_with("/restapis/")
        || !r.path.ends_with("/integration")
    {
        return None;
    }
    let body = json(r.body);
    let timeout = body["timeoutInMillis"].as_i64()?;
    let streams = body["responseTransferMode"] == "STREAM";
    let most = if streams { 900_000 } else { 29_000 };
    (!(50..=most).contains(&timeout)).then(|| {
        aws_error(
            "apigateway",
            400,
            "BadRequestException",
            &format!("Timeout should be between 50 ms and {most} ms"),
        )
    })
}

fn aws_error(service: &str, status: u16, code: &str, message: &str) -> Response {
    super::error_response(
        service,
        &super::Fault {
            matcher: super::Matcher::NthMutating(0),
            times: 0,
            status,
            code: code.into(),
            message: message.into(),
            after_forwarding: false,
            kind: super::FaultKind::Error,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_names() {
        assert_eq!(
            lambda_path("/2016-08-19/account-settings/"),
            ["account-settings"]
        );
        assert_eq!(
            lambda_path("/2017-10-31/functions/claude-proxy-x/concurrency"),
            ["functions", "claude-proxy-x", "concurrency"]
        );
        assert_eq!(
            secret_name("arn:aws:secretsmanager:us-east-1:1:secret:claude-proxy/x-AbCdEf"),
            "claude-proxy/x"
        );
        assert_eq!(secret_name("claude-proxy/x"), "claude-proxy/x");
        assert_eq!(
            form(
                b"Action=GetRole&RoleName=claude-proxy-x-role&Version=2010-05-08",
                "RoleName"
            )
            .as_deref(),
            Some("claude-proxy-x-role")
        );
        assert_eq!(form(b"Doc=a%2Fb+c%2B", "Doc").as_deref(), Some("a/b c+"));
    }

    #[test]
    fn rest_integration_timeouts_are_bounded_by_the_transfer_mode() {
        let put = |body: &str| {
            rest_integration_timeout(&Req {
                service: "apigateway",
                operation: "PUT /restapis/a/resources/r/methods/ANY/integration",
                method: &http::Method::PUT,
                path: "/restapis/a/resources/r/methods/ANY/integration",
                body: body.as_bytes(),
            })
            .map(|r| r.status().as_u16())
        };
        assert_eq!(put(r#"{"timeoutInMillis": 120000}"#), Some(400));
        assert_eq!(
            put(r#"{"timeoutInMillis": 120000, "responseTransferMode": "BUFFERED"}"#),
            Some(400)
        );
        assert_eq!(
            put(r#"{"timeoutInMillis": 120000, "responseTransferMode": "STREAM"}"#),
            None
        );
        assert_eq!(
            put(r#"{"timeoutInMillis": 900001, "responseTransferMode": "STREAM"}"#),
            Some(400)
        );
        assert_eq!(put(r#"{"timeoutInMillis": 29000}"#), None);
    }
}
