//! The IAM action each recorded call needs, to check `docs/deployer-policy.json` covers
//! every call the toolkit makes (`tests/tests/stack.rs`, `tests/tests/packaging.rs`).

use crate::aws_proxy::Call;
use crate::ecr_stand_in::RegistryCall;

/// The IAM action behind one AWS API call recorded by the proxy (`None`: needs none).
pub fn iam_action(c: &Call) -> Option<String> {
    match c.service.as_str() {
        "sts" => None, // GetCallerIdentity needs no permission
        "apigateway" => Some(format!("apigateway:{}", c.method)),
        "bedrock" if c.method == "GET" && c.path.starts_with("/inference-profiles/") => {
            Some("bedrock:GetInferenceProfile".into())
        }
        "lambda" => {
            let p: Vec<&str> = c.path.trim_start_matches('/').split('/').collect();
            let m = c.method.as_str();
            let op = match (m, &p[1..]) {
                ("POST", ["functions"]) => "CreateFunction",
                ("GET", ["functions"] | ["functions", ""]) => "ListFunctions",
                ("GET", ["functions", _]) => "GetFunction",
                ("DELETE", ["functions", _]) => "DeleteFunction",
                ("GET", ["functions", _, "configuration"]) => "GetFunctionConfiguration",
                ("PUT", ["functions", _, "configuration"]) => "UpdateFunctionConfiguration",
                ("PUT", ["functions", _, "code"]) => "UpdateFunctionCode",
                ("GET", ["functions", _, "concurrency"]) => "GetFunctionConcurrency",
                ("PUT", ["functions", _, "concurrency"]) => "PutFunctionConcurrency",
                ("DELETE", ["functions", _, "concurrency"]) => "DeleteFunctionConcurrency",
                ("POST", ["functions", _, "url"]) => "CreateFunctionUrlConfig",
                ("GET", ["functions", _, "url"]) => "GetFunctionUrlConfig",
                ("PUT", ["functions", _, "url"]) => "UpdateFunctionUrlConfig",
                ("DELETE", ["functions", _, "url"]) => "DeleteFunctionUrlConfig",
                ("POST", ["functions", _, "policy"]) => "AddPermission",
                ("GET", ["functions", _, "policy"]) => "GetPolicy",
                ("DELETE", ["functions", _, "policy", _]) => "RemovePermission",
                ("POST", ["functions", _, "versions"]) => "PublishVersion",
                ("GET", ["functions", _, "versions"]) => "ListVersionsByFunction",
                ("POST", ["functions", _, "aliases"]) => "CreateAlias",
                ("GET", ["functions", _, "aliases", _]) => "GetAlias",
                ("PUT", ["functions", _, "aliases", _]) => "UpdateAlias",
                ("DELETE", ["functions", _, "aliases", _]) => "DeleteAlias",
                ("POST", ["functions", _, "invocations"]) => "InvokeFunction",
                ("POST", ["tags", ..]) => "TagResource",
                ("GET", ["tags", ..]) => "ListTags",
                ("GET", ["account-settings"] | ["account-settings", ""]) => "GetAccountSettings",
                ("GET", ["layers", _, "versions"]) => "ListLayerVersions",
                ("POST", ["layers", _, "versions"]) => "PublishLayerVersion",
                ("GET", ["layers", _, "versions", _]) => "GetLayerVersion",
                ("DELETE", ["layers", _, "versions", _]) => "DeleteLayerVersion",
                _ => panic!("unmapped Lambda call {} {}", c.method, c.path),
            };
            Some(format!("lambda:{op}"))
        }
        // The release checks (Smithy RPC v2 CBOR: the operation is the path's last segment).
        "monitoring" => Some(format!(
            "cloudwatch:{}",
            c.path.rsplit('/').next().unwrap_or_default()
        )),
        s => Some(format!("{s}:{}", c.operation)),
    }
}

/// The ECR action behind one registry (data plane) request of a push.
pub fn registry_iam_action(c: &RegistryCall) -> Option<String> {
    let p = c.path.as_str();
    let op = match c.method.as_str() {
        "GET" if p == "/v2/" => return None,
        "HEAD" | "GET" if p.contains("/blobs/") => "BatchCheckLayerAvailability",
        "HEAD" | "GET" if p.contains("/manifests/") => "BatchGetImage",
        "POST" if p.contains("/blobs/uploads") => "InitiateLayerUpload",
        "PATCH" => "UploadLayerPart",
        "PUT" if p.contains("/blobs/uploads") => "CompleteLayerUpload",
        "PUT" if p.contains("/manifests/") => "PutImage",
        _ => panic!("unmapped registry request {} {}", c.method, c.path),
    };
    Some(format!("ecr:{op}"))
}
