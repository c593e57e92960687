//! The API Gateway REST API front (`AWS_PROXY` integration, payload format 1.0): one stage,
//! the root and `{proxy+}` resources with `ANY` methods, `x-api-key` checked against the
//! configured keys before the function runs (with a per-key request quota, as a usage plan
//! has), and the integration's `responseTransferMode`: `STREAM` forwards the function's
//! streamed answer as it arrives (the Function URL's streaming format), `BUFFERED` answers the
//! REST proxy response document.

use super::ids;
use super::invocation::{collect_stream, InvokeError, Outcome};
use super::options::{RestApiKey, RestApiOptions};
use super::pool::Pool;
use super::response::{response_from_payload, stream_response, HTTP_INTEGRATION};
use super::rest_event::{build_rest_event, RestSource};
use crate::http::{json_response, read_limited, Body, ReadError, Server};
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// A REST API takes payloads up to 10 MB.
const REST_MAX_REQUEST: usize = 10 * 1024 * 1024;

/// The REST API front.
pub(super) struct RestFront {
    pool: Arc<Pool>,
    api_id: String,
    domain: String,
    opts: RestApiOptions,
    /// Requests counted against each key's quota (by key id).
    used: Mutex<HashMap<String, u64>>,
}

/// What API Gateway answers itself (`{"message": ...}`).
fn gateway_message(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, &json!({ "message": message }))
}

impl RestFront {
    pub fn new(pool: Arc<Pool>, opts: &RestApiOptions) -> Arc<RestFront> {
        let api_id = ids::lower_alnum(10);
        let domain = format!(
            "{api_id}.execute-api.{}.amazonaws.com",
            pool.config().region
        );
        Arc::new(RestFront {
            pool,
            api_id,
            domain,
            opts: opts.clone(),
            used: Mutex::new(HashMap::new()),
        })
    }

    /// Serves the front on `listen`.
    pub async fn serve(self: Arc<Self>, listen: SocketAddr) -> anyhow::Result<Server> {
        Server::bind(listen, "the REST API front", move |req, peer| {
            self.clone().handle(req, peer)
        })
        .await
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let now = SystemTime::now();
        let request_id = ids::uuid_v4();
        let mut resp = self.respond(req, peer, now, &request_id).await;
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            resp.headers_mut().insert("x-amzn-requestid", v);
        }
        resp
    }

    /// The key the request presents, if it is one of the configured keys.
    fn key_for(&self, presented: Option<&str>) -> Option<&RestApiKey> {
        let presented = presented?;
        self.opts.api_keys.iter().find(|k| k.value == presented)
    }

    /// Counts one request against the key's quota; false when the quota is spent.
    fn take_quota(&self, key: &RestApiKey) -> bool {
        let Some(limit) = key.quota else {
            return true;
        };
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        let n = used.entry(key.id.clone()).or_insert(0);
        if *n >= limit {
            return false;
        }
        *n += 1;
        true
    }

    async fn respond(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        now: SystemTime,
        request_id: &str,
    ) -> Response<Body> {
        let cfg = self.pool.config();
        let (parts, body) = req.into_parts();
        // `/<stage>` or `/<stage>/...`; anything else names no resource of this API.
        let prefix = format!("/{}", self.opts.stage);
        let path = match parts.uri.path().strip_prefix(&prefix) {
            Some("") => "/".to_string(),
            Some(rest) if rest.starts_with('/') => rest.to_string(),
            _ => return gateway_message(StatusCode::FORBIDDEN, "Missing Authentication Token"),
        };
        let presented = parts.headers.get("x-api-key").and_then(|v| v.to_str().ok());
        let key = self.key_for(presented);
        if self.opts.api_key_required {
            let Some(key) = key else {
                return gateway_message(StatusCode::FORBIDDEN, "Forbidden");
            };
            if !self.take_quota(key) {
                return gateway_message(StatusCode::TOO_MANY_REQUESTS, "Limit Exceeded");
            }
        }
        let body = match read_limited(body, REST_MAX_REQUEST).await {
            Ok(body) => body,
            Err(ReadError::TooLarge) => {
                return gateway_message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large")
            }
            Err(ReadError::Broken(_)) => {
                return gateway_message(StatusCode::BAD_REQUEST, "Bad Request")
            }
        };
        let event = build_rest_event(
            &RestSource {
                account_id: &cfg.account_id,
                api_id: &self.api_id,
                domain: &self.domain,
                stage: &self.opts.stage,
                request_id,
                path: &path,
                api_key: key
                    .filter(|_| self.opts.api_key_required)
                    .map(|k| (k.value.as_str(), k.id.as_str())),
            },
            &parts,
            &body,
            peer,
            now,
        );
        let lambda_request_id = ids::uuid_v4();
        let internal_error = || gateway_message(StatusCode::BAD_GATEWAY, "Internal server error");
        let invocation = async {
            let outcome = self
                .pool
                .invoke(lambda_request_id.clone(), Bytes::from(event.to_string()))
                .await?;
            Ok::<_, InvokeError>(match (outcome, self.opts.stream) {
                (Outcome::Error(e), _) => Err(format!("function error: {e}")),
                (Outcome::Buffered(payload), false) => response_from_payload(&payload)
                    .map_err(|why| format!("API Gateway could not use the function's response: {why}")),
                (Outcome::Buffered(_), true) => Err(
                    "the integration streams (responseTransferMode STREAM) but the function answered buffered; answer REST API requests streamed (REST_RESPONSE_MODE=stream)"
                        .to_string(),
                ),
                (Outcome::Streaming { content_type, events }, false) => {
                    let streamed = content_type.as_deref() == Some(HTTP_INTEGRATION);
                    match collect_stream(events).await {
                        Ok(payload) => response_from_payload(&payload).map_err(|why| {
                            let hint = if streamed {
                                " (the function streamed its response, but the integration is BUFFERED: set responseTransferMode STREAM or REST_RESPONSE_MODE=buffered)"
                            } else {
                                ""
                            };
                            format!("API Gateway could not use the function's response: {why}{hint}")
                        }),
                        Err(e) => Err(format!("function error: {e}")),
                    }
                }
                (Outcome::Streaming { content_type, events }, true) => {
                    stream_response(content_type, events)
                        .await
                        .map_err(|e| format!("function error: {e}"))
                }
            })
        };
        match tokio::time::timeout(self.opts.timeout, invocation).await {
            Err(_) => {
                cfg.platform(
                    0,
                    format!(
                        "{lambda_request_id} API Gateway gave up after {:?} (integration timeout)",
                        self.opts.timeout
                    ),
                );
                gateway_message(StatusCode::GATEWAY_TIMEOUT, "Endpoint request timed out")
            }
            Ok(Err(InvokeError::Throttled)) => {
                gateway_message(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests")
            }
            Ok(Err(e)) => {
                cfg.platform(0, format!("{lambda_request_id} {e}"));
                internal_error()
            }
            Ok(Ok(Err(why))) => {
                cfg.platform(0, format!("{lambda_request_id} {why}"));
                internal_error()
            }
            Ok(Ok(Ok(resp))) => resp,
        }
    }
}
