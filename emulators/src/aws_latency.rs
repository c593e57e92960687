//! The latency model of real AWS (`aws_latency.toml`, beside this file): per call a
//! distribution (median and 99th percentile of a log-normal), and the holds no call shows
//! (a new function `Pending`, an update `InProgress`, a new role not yet assumable). The test
//! proxy delays calls by it; the bench computes critical paths from its medians.

use anyhow::{Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// The model's file, compiled in.
pub const MODEL_TOML: &str = include_str!("aws_latency.toml");

/// One call's latency: median and 99th percentile, and where the figures come from.
#[derive(Debug, Clone, Deserialize)]
pub struct Figure {
    pub p50: f64,
    pub p99: f64,
    pub source: String,
}

impl Figure {
    pub fn median(&self) -> Duration {
        Duration::from_secs_f64(self.p50 / 1000.0)
    }

    /// A draw from the log-normal distribution with this median and 99th percentile.
    pub fn sample(&self, rng: &mut fastrand::Rng) -> Duration {
        // ln X ~ N(ln p50, sigma), sigma from the 99th percentile (z = 2.326).
        let sigma = (self.p99 / self.p50).ln().max(0.0) / 2.326;
        // Box-Muller.
        let (u1, u2) = (rng.f64().max(f64::MIN_POSITIVE), rng.f64());
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        Duration::from_secs_f64(self.p50 * (sigma * z).exp() / 1000.0)
    }
}

/// What takes time without a call showing it.
#[derive(Debug, Clone, Deserialize)]
pub struct Holds {
    pub function_pending_ms: u64,
    pub function_pending_source: String,
    pub function_update_ms: u64,
    pub function_update_source: String,
    pub iam_propagation_ms: u64,
    pub iam_propagation_source: String,
}

impl Holds {
    pub fn function_pending(&self) -> Duration {
        Duration::from_millis(self.function_pending_ms)
    }
    pub fn function_update(&self) -> Duration {
        Duration::from_millis(self.function_update_ms)
    }
    pub fn iam_propagation(&self) -> Duration {
        Duration::from_millis(self.iam_propagation_ms)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Model {
    pub holds: Holds,
    /// Per service (signing name), for calls not in `call`.
    pub default: BTreeMap<String, Figure>,
    /// Per call, `<signing name> <Operation>`.
    pub call: BTreeMap<String, Figure>,
}

impl Model {
    /// The model in `aws_latency.toml`.
    pub fn standard() -> Model {
        Model::parse(MODEL_TOML).expect("aws_latency.toml is a valid latency model")
    }

    pub fn parse(text: &str) -> Result<Model> {
        toml::from_str(text).context("parsing the AWS latency model")
    }

    /// The figure for `operation` of `service` (its service's default when not listed;
    /// 50 ms for a service the model does not know).
    pub fn figure(&self, service: &str, operation: &str) -> Figure {
        self.call
            .get(&format!("{service} {operation}"))
            .or_else(|| self.default.get(service))
            .cloned()
            .unwrap_or(Figure {
                p50: 50.0,
                p99: 150.0,
                source: "assumption (service not in the model)".into(),
            })
    }

    pub fn median(&self, service: &str, operation: &str) -> Duration {
        self.figure(service, operation).median()
    }
}

/// The operation name of a REST call (Lambda, API Gateway v2) from its method and path, as
/// the SDK names it; `None` for calls of other protocols (their operation is in the request).
pub fn rest_operation(service: &str, method: &str, path: &str) -> Option<&'static str> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let m = method;
    Some(match (service, segs.as_slice()) {
        ("lambda", [_, "functions"]) if m == "POST" => "CreateFunction",
        ("lambda", [_, "functions"]) => "ListFunctions",
        ("lambda", [_, "functions", _]) => match m {
            "GET" => "GetFunction",
            "DELETE" => "DeleteFunction",
            _ => return None,
        },
        ("lambda", [_, "functions", _, "configuration"]) => match m {
            "GET" => "GetFunctionConfiguration",
            _ => "UpdateFunctionConfiguration",
        },
        ("lambda", [_, "functions", _, "code"]) => "UpdateFunctionCode",
        ("lambda", [_, "functions", _, "url"]) => match m {
            "POST" => "CreateFunctionUrlConfig",
            "PUT" => "UpdateFunctionUrlConfig",
            "DELETE" => "DeleteFunctionUrlConfig",
            _ => "GetFunctionUrlConfig",
        },
        ("lambda", [_, "functions", _, "concurrency"]) => match m {
            "PUT" => "PutFunctionConcurrency",
            "DELETE" => "DeleteFunctionConcurrency",
            _ => "GetFunctionConcurrency",
        },
        ("lambda", [_, "functions", _, "policy"]) => match m {
            "POST" => "AddPermission",
            _ => "GetPolicy",
        },
        ("lambda", [_, "functions", _, "policy", _]) => "RemovePermission",
        ("lambda", [_, "functions", _, "versions"]) => match m {
            "POST" => "PublishVersion",
            _ => "ListVersionsByFunction",
        },
        ("lambda", [_, "functions", _, "aliases"]) => match m {
            "POST" => "CreateAlias",
            _ => "ListAliases",
        },
        ("lambda", [_, "functions", _, "aliases", _]) => match m {
            "PUT" => "UpdateAlias",
            "DELETE" => "DeleteAlias",
            _ => "GetAlias",
        },
        ("lambda", [_, "functions", _, "invocations"]) => "Invoke",
        ("lambda", [_, "functions", _, "response-streaming-invocations"]) => {
            "InvokeWithResponseStream"
        }
        ("apigateway", ["restapis", ..])
        | ("apigateway", ["usageplans", ..])
        | ("apigateway", ["apikeys", ..])
        | ("apigateway", ["tags", ..]) => return rest_api_operation(m, &segs),
        ("lambda", [_, "layers", _, "versions"]) => match m {
            "POST" => "PublishLayerVersion",
            _ => "ListLayerVersions",
        },
        ("lambda", [_, "layers", _, "versions", _]) => match m {
            "DELETE" => "DeleteLayerVersion",
            _ => "GetLayerVersion",
        },
        ("lambda", [_, "account-settings"]) => "GetAccountSettings",
        ("lambda", [_, "tags", ..]) => match m {
            "POST" => "TagResource",
            "DELETE" => "UntagResource",
            _ => "ListTags",
        },
        ("apigateway", ["v2", "apis"]) => match m {
            "POST" => "CreateApi",
            _ => "GetApis",
        },
        ("apigateway", ["v2", "apis", _]) => match m {
            "DELETE" => "DeleteApi",
            "PATCH" => "UpdateApi",
            _ => "GetApi",
        },
        ("apigateway", ["v2", "apis", _, kind, ..]) => {
            let verb = match m {
                "POST" => "Create",
                "PATCH" => "Update",
                "DELETE" => "Delete",
                _ => "Get",
            };
            return match (verb, *kind) {
                ("Create", "integrations") => Some("CreateIntegration"),
                ("Update", "integrations") => Some("UpdateIntegration"),
                ("Get", "integrations") => Some("GetIntegrations"),
                ("Create", "routes") => Some("CreateRoute"),
                ("Get", "routes") => Some("GetRoutes"),
                ("Create", "stages") => Some("CreateStage"),
                ("Get", "stages") => Some("GetStages"),
                _ => None,
            };
        }
        _ => return None,
    })
}

/// The operation name of an API Gateway REST API (v1) call: by the last resource segment of
/// its path (`restapis/{id}/resources/{id}/methods/{verb}/integration` is `PutIntegration`).
fn rest_api_operation(m: &str, segs: &[&str]) -> Option<&'static str> {
    // The collection a path names: the last segment that is a collection name, and whether
    // an id follows it.
    const NAMES: [&str; 10] = [
        "restapis",
        "resources",
        "methods",
        "integration",
        "deployments",
        "stages",
        "usageplans",
        "keys",
        "apikeys",
        "tags",
    ];
    let at = segs.iter().rposition(|s| NAMES.contains(s))?;
    let item = at + 1 < segs.len();
    Some(match (segs[at], item, m) {
        ("restapis", false, "POST") => "CreateRestApi",
        ("restapis", false, _) => "GetRestApis",
        ("restapis", true, "DELETE") => "DeleteRestApi",
        ("restapis", true, "PATCH") => "UpdateRestApi",
        ("restapis", true, _) => "GetRestApi",
        ("resources", false, _) => "GetResources",
        ("resources", true, "POST") => "CreateResource",
        ("resources", true, "DELETE") => "DeleteResource",
        ("resources", true, "PATCH") => "UpdateResource",
        ("resources", true, _) => "GetResource",
        ("methods", _, "PUT") => "PutMethod",
        ("methods", _, "DELETE") => "DeleteMethod",
        ("methods", _, "PATCH") => "UpdateMethod",
        ("methods", _, _) => "GetMethod",
        ("integration", _, "PUT") => "PutIntegration",
        ("integration", _, "DELETE") => "DeleteIntegration",
        ("integration", _, "PATCH") => "UpdateIntegration",
        ("integration", _, _) => "GetIntegration",
        ("deployments", false, "POST") => "CreateDeployment",
        ("deployments", false, _) => "GetDeployments",
        ("deployments", true, "DELETE") => "DeleteDeployment",
        ("deployments", true, _) => "GetDeployment",
        ("stages", false, "POST") => "CreateStage",
        ("stages", false, _) => "GetStages",
        ("stages", true, "PATCH") => "UpdateStage",
        ("stages", true, "DELETE") => "DeleteStage",
        ("stages", true, _) => "GetStage",
        ("usageplans", false, "POST") => "CreateUsagePlan",
        ("usageplans", false, _) => "GetUsagePlans",
        ("usageplans", true, "PATCH") => "UpdateUsagePlan",
        ("usageplans", true, "DELETE") => "DeleteUsagePlan",
        ("usageplans", true, _) => "GetUsagePlan",
        ("keys", false, "POST") => "CreateUsagePlanKey",
        ("keys", false, _) => "GetUsagePlanKeys",
        ("keys", true, "DELETE") => "DeleteUsagePlanKey",
        ("keys", true, _) => "GetUsagePlanKey",
        ("apikeys", false, "POST") => "CreateApiKey",
        ("apikeys", false, _) => "GetApiKeys",
        ("apikeys", true, "PATCH") => "UpdateApiKey",
        ("apikeys", true, "DELETE") => "DeleteApiKey",
        ("apikeys", true, _) => "GetApiKey",
        ("tags", _, "PUT") => "TagResource",
        ("tags", _, "DELETE") => "UntagResource",
        ("tags", _, _) => "GetTags",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_parses_and_every_figure_names_its_source() {
        let m = Model::standard();
        for (name, f) in m.call.iter().chain(&m.default) {
            assert!(f.p50 > 0.0 && f.p99 >= f.p50, "{name}: {f:?}");
            assert!(!f.source.trim().is_empty(), "{name} has no source");
        }
        assert!(m.holds.iam_propagation() >= Duration::from_secs(1));
        assert!(!m.holds.iam_propagation_source.is_empty());
        assert_eq!(
            m.median("lambda", "CreateFunction"),
            Duration::from_millis(450)
        );
        assert_eq!(m.median("lambda", "GetPolicy"), Duration::from_millis(90));
    }

    #[test]
    fn operations_are_named_by_their_paths_not_the_names_in_them() {
        fn op(service: &str, method: &str, path: &str) -> Option<&'static str> {
            rest_operation(service, method, path)
        }
        let f = "/2015-03-31/functions/claude-proxy-a";
        assert_eq!(
            op("lambda", "POST", &format!("{f}/versions")),
            Some("PublishVersion")
        );
        assert_eq!(
            op("lambda", "PUT", &format!("{f}/aliases/live")),
            Some("UpdateAlias")
        );
        assert_eq!(
            op("lambda", "POST", &format!("{f}/invocations")),
            Some("Invoke")
        );
        let r = "/restapis/a1b2/resources/r9/methods/ANY";
        assert_eq!(op("apigateway", "PUT", r), Some("PutMethod"));
        assert_eq!(
            op("apigateway", "PUT", &format!("{r}/integration")),
            Some("PutIntegration")
        );
        assert_eq!(op("apigateway", "POST", "/restapis"), Some("CreateRestApi"));
        assert_eq!(
            op("apigateway", "PATCH", "/restapis/a1/stages/live"),
            Some("UpdateStage")
        );
        assert_eq!(
            op("apigateway", "POST", "/usageplans/u1/keys"),
            Some("CreateUsagePlanKey")
        );
        assert_eq!(
            op("apigateway", "DELETE", "/apikeys/k1"),
            Some("DeleteApiKey")
        );
        assert_eq!(op("apigateway", "POST", "/v2/apis"), Some("CreateApi"));
    }

    #[test]
    fn draws_follow_the_two_quantiles() {
        let f = Figure {
            p50: 100.0,
            p99: 400.0,
            source: "test".into(),
        };
        let mut rng = fastrand::Rng::with_seed(7);
        let mut draws: Vec<Duration> = (0..20_000).map(|_| f.sample(&mut rng)).collect();
        draws.sort();
        let q = |p: f64| draws[(p * draws.len() as f64) as usize].as_secs_f64() * 1000.0;
        assert!((q(0.5) - 100.0).abs() < 5.0, "p50 {}", q(0.5));
        assert!((q(0.99) - 400.0).abs() < 40.0, "p99 {}", q(0.99));
    }

    #[test]
    fn rest_paths_name_their_operations() {
        let op = |s, m, p| rest_operation(s, m, p);
        assert_eq!(
            op("lambda", "POST", "/2015-03-31/functions"),
            Some("CreateFunction")
        );
        assert_eq!(
            op("lambda", "PUT", "/2015-03-31/functions/f/code"),
            Some("UpdateFunctionCode")
        );
        assert_eq!(
            op("lambda", "DELETE", "/2015-03-31/functions/f/policy/sid"),
            Some("RemovePermission")
        );
        assert_eq!(op("apigateway", "POST", "/v2/apis"), Some("CreateApi"));
        assert_eq!(
            op("apigateway", "POST", "/v2/apis/abc/integrations"),
            Some("CreateIntegration")
        );
        assert_eq!(op("iam", "POST", "/"), None);
    }
}
