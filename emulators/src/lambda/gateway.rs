//! The API Gateway HTTP API front (`AWS_PROXY` integration, payload format 2.0, `$default`
//! stage): route keys with path parameters, always buffered, and API Gateway's 30-second
//! integration timeout.

use super::event::{build_event, percent_decode, EventSource};
use super::ids;
use super::invocation::{collect_stream, InvokeError, Outcome};
use super::options::GatewayOptions;
use super::pool::Pool;
use super::response::{response_from_payload, HTTP_INTEGRATION};
use crate::http::{json_response, read_limited, Body, ReadError, Server};
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Map, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// An HTTP API takes payloads up to 10 MB.
const GATEWAY_MAX_REQUEST: usize = 10 * 1024 * 1024;

/// The API Gateway HTTP API front.
pub(super) struct GatewayFront {
    pool: Arc<Pool>,
    api_id: String,
    domain: String,
    routes: Vec<Route>,
    timeout: Duration,
}

impl GatewayFront {
    pub fn new(pool: Arc<Pool>, opts: &GatewayOptions) -> anyhow::Result<Arc<GatewayFront>> {
        let api_id = ids::lower_alnum(10);
        let domain = format!(
            "{api_id}.execute-api.{}.amazonaws.com",
            pool.config().region
        );
        let routes = opts
            .routes
            .iter()
            .map(|r| Route::parse(r))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Arc::new(GatewayFront {
            pool,
            api_id,
            domain,
            routes,
            timeout: opts.timeout,
        }))
    }

    /// Serves the front on `listen`.
    pub async fn serve(self: Arc<Self>, listen: SocketAddr) -> anyhow::Result<Server> {
        Server::bind(listen, "the API Gateway front", move |req, peer| {
            self.clone().handle(req, peer)
        })
        .await
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let now = SystemTime::now();
        let mut id_bytes = [0u8; 11];
        fastrand::fill(&mut id_bytes);
        let apigw_id = base64::engine::general_purpose::STANDARD.encode(id_bytes);
        let mut resp = self.respond(req, peer, now, &apigw_id).await;
        if let Ok(v) = HeaderValue::from_str(&apigw_id) {
            resp.headers_mut().insert("apigw-requestid", v);
        }
        resp
    }

    async fn respond(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        now: SystemTime,
        apigw_id: &str,
    ) -> Response<Body> {
        let cfg = self.pool.config();
        let (parts, body) = req.into_parts();
        let Some((route, path_parameters)) =
            select_route(&self.routes, parts.method.as_str(), parts.uri.path())
        else {
            return json_response(StatusCode::NOT_FOUND, &json!({"message": "Not Found"}));
        };
        let body = match read_limited(body, GATEWAY_MAX_REQUEST).await {
            Ok(body) => body,
            Err(ReadError::TooLarge) => {
                return json_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &json!({"message": "Request Entity Too Large"}),
                )
            }
            Err(ReadError::Broken(_)) => {
                return json_response(StatusCode::BAD_REQUEST, &json!({"message": "Bad Request"}))
            }
        };
        let event = build_event(
            &EventSource {
                account_id: &cfg.account_id,
                api_id: &self.api_id,
                domain: &self.domain,
                request_id: apigw_id,
                route_key: route,
                path_parameters,
            },
            &parts,
            &body,
            peer,
            now,
        );
        let lambda_request_id = ids::uuid_v4();
        let invocation = async {
            let outcome = self
                .pool
                .invoke(lambda_request_id.clone(), Bytes::from(event.to_string()))
                .await?;
            Ok::<_, InvokeError>(match outcome {
                Outcome::Buffered(b) => (Ok(b), false),
                Outcome::Error(e) => (Err(e), false),
                Outcome::Streaming {
                    content_type,
                    events,
                } => (
                    collect_stream(events).await,
                    content_type.as_deref() == Some(HTTP_INTEGRATION),
                ),
            })
        };
        let internal_error = || {
            json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &json!({"message": "Internal Server Error"}),
            )
        };
        match tokio::time::timeout(self.timeout, invocation).await {
            Err(_) => {
                cfg.platform(
                    0,
                    format!(
                        "{lambda_request_id} API Gateway gave up after {:?} (integration timeout)",
                        self.timeout
                    ),
                );
                json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({"message": "Service Unavailable"}),
                )
            }
            Ok(Err(InvokeError::Throttled)) => json_response(
                StatusCode::TOO_MANY_REQUESTS,
                &json!({"message": "Too Many Requests"}),
            ),
            Ok(Err(e)) => {
                cfg.platform(0, format!("{lambda_request_id} {e}"));
                internal_error()
            }
            Ok(Ok((Err(e), _))) => {
                cfg.platform(0, format!("{lambda_request_id} function error: {e}"));
                internal_error()
            }
            Ok(Ok((Ok(payload), streamed))) => match response_from_payload(&payload) {
                Ok(resp) => resp,
                Err(why) => {
                    let hint = if streamed {
                        " (the function streamed its response; HTTP APIs cannot stream, answer API Gateway requests buffered)"
                    } else {
                        ""
                    };
                    cfg.platform(
                        0,
                        format!("{lambda_request_id} API Gateway could not use the function's response: {why}{hint}"),
                    );
                    internal_error()
                }
            },
        }
    }
}

/// The matching route key and its path parameters: the most specific route wins, then
/// `$default`.
fn select_route(
    routes: &[Route],
    method: &str,
    path: &str,
) -> Option<(String, Option<Map<String, Value>>)> {
    let mut best: Option<(&Route, Map<String, Value>)> = None;
    for r in routes {
        if let Some(params) = r.matches(method, path) {
            if best
                .as_ref()
                .is_none_or(|(b, _)| r.specificity() > b.specificity())
            {
                best = Some((r, params));
            }
        }
    }
    match best {
        Some((r, params)) => Some((r.key.clone(), (!params.is_empty()).then_some(params))),
        None => routes
            .iter()
            .any(|r| r.key == "$default")
            .then(|| ("$default".to_string(), None)),
    }
}

/// A route key: `METHOD /path/{param}/{greedy+}` (or `$default`, which matches nothing here).
struct Route {
    key: String,
    method: Option<String>,
    segments: Vec<Segment>,
}

enum Segment {
    Static(String),
    Param(String),
    Greedy(String),
}

impl Route {
    fn parse(key: &str) -> anyhow::Result<Route> {
        if key == "$default" {
            return Ok(Route {
                key: key.into(),
                method: None,
                segments: Vec::new(),
            });
        }
        let (method, path) = key.split_once(' ').ok_or_else(|| {
            anyhow::anyhow!("route key {key:?} is not `$default` or `METHOD /path`")
        })?;
        if !path.starts_with('/') {
            anyhow::bail!("route key {key:?}: the path must start with '/'");
        }
        let segments = path
            .split('/')
            .skip(1)
            .filter(|s| !s.is_empty())
            .map(
                |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(p) => match p.strip_suffix('+') {
                        Some(g) => Segment::Greedy(g.to_string()),
                        None => Segment::Param(p.to_string()),
                    },
                    None => Segment::Static(s.to_string()),
                },
            )
            .collect();
        Ok(Route {
            key: key.into(),
            method: (method != "ANY").then(|| method.to_ascii_uppercase()),
            segments,
        })
    }

    fn matches(&self, method: &str, path: &str) -> Option<Map<String, Value>> {
        if self.key == "$default" {
            return None;
        }
        if let Some(m) = &self.method {
            if m != method {
                return None;
            }
        }
        let parts: Vec<&str> = path.split('/').skip(1).filter(|s| !s.is_empty()).collect();
        let mut params = Map::new();
        for (i, seg) in self.segments.iter().enumerate() {
            match seg {
                Segment::Static(s) => {
                    if parts.get(i) != Some(&s.as_str()) {
                        return None;
                    }
                }
                Segment::Param(p) => {
                    let v = parts.get(i)?;
                    params.insert(p.clone(), Value::String(percent_decode(v)));
                }
                Segment::Greedy(p) => {
                    if i >= parts.len() {
                        return None;
                    }
                    params.insert(
                        p.clone(),
                        Value::String(percent_decode(&parts[i..].join("/"))),
                    );
                    return Some(params);
                }
            }
        }
        (parts.len() == self.segments.len()).then_some(params)
    }

    fn specificity(&self) -> (bool, usize, bool) {
        let greedy = self
            .segments
            .iter()
            .any(|s| matches!(s, Segment::Greedy(_)));
        let statics = self
            .segments
            .iter()
            .filter(|s| matches!(s, Segment::Static(_)))
            .count();
        (!greedy, statics, self.method.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(keys: &[&str]) -> Vec<Route> {
        keys.iter().map(|k| Route::parse(k).unwrap()).collect()
    }

    #[test]
    fn routes_prefer_the_most_specific() {
        let r = Route::parse("POST /chat").unwrap();
        assert!(r.matches("POST", "/chat").is_some());
        assert!(r.matches("GET", "/chat").is_none());
        assert!(r.matches("POST", "/chat/x").is_none());
        let g = Route::parse("ANY /{proxy+}").unwrap();
        assert_eq!(g.matches("GET", "/a/b").unwrap()["proxy"], "a/b");
        assert!(r.specificity() > g.specificity());
        assert!(Route::parse("chat").is_err());
        assert!(Route::parse("GET chat").is_err());
    }

    #[test]
    fn a_request_takes_the_best_route_then_default() {
        let all = routes(&["ANY /{proxy+}", "POST /chat", "GET /items/{id}", "$default"]);
        assert_eq!(
            select_route(&all, "POST", "/chat"),
            Some(("POST /chat".to_string(), None))
        );
        let (key, params) = select_route(&all, "GET", "/items/a%20b").unwrap();
        assert_eq!(key, "GET /items/{id}");
        assert_eq!(params.unwrap()["id"], "a b");
        assert_eq!(
            select_route(&all, "GET", "/chat").unwrap().0,
            "ANY /{proxy+}"
        );
        assert_eq!(
            select_route(&all, "GET", "/"),
            Some(("$default".to_string(), None))
        );
        assert_eq!(select_route(&routes(&["POST /chat"]), "GET", "/"), None);
    }

    #[test]
    fn a_bad_route_key_is_refused_when_the_front_is_made() {
        let (cfg, _logs) = crate::lambda::config::Config::for_tests("/nonexistent/bootstrap");
        let pool = Pool::new(Arc::new(cfg));
        let opts = GatewayOptions {
            routes: vec!["POST chat".into()],
            ..GatewayOptions::default()
        };
        let e = GatewayFront::new(pool.clone(), &opts).err().unwrap();
        assert!(e.to_string().contains("must start with '/'"), "{e}");
        let front = GatewayFront::new(pool, &GatewayOptions::default()).unwrap();
        assert!(front
            .domain
            .ends_with(".execute-api.us-east-1.amazonaws.com"));
        assert_eq!(front.api_id.len(), 10);
    }
}
