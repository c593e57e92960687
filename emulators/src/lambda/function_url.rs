//! The Function URL front: every request becomes a payload-2.0 event; the function's
//! result is answered buffered, or in `RESPONSE_STREAM` mode forwarded as it arrives.

use super::event::{build_event, EventSource};
use super::ids;
use super::invocation::{collect_stream, FunctionError, InvokeError, Outcome};
use super::options::InvokeMode;
use super::pool::Pool;
use super::response::{response_from_payload, stream_response, HTTP_INTEGRATION};
use crate::http::{full, json_response, read_limited, Body, ReadError, Server};
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

/// A Function URL takes requests up to Lambda's 6 MB synchronous payload.
const URL_MAX_REQUEST: usize = 6 * 1024 * 1024;

/// The Function URL front.
pub(super) struct UrlFront {
    pool: Arc<Pool>,
    mode: InvokeMode,
    url_id: String,
    domain: String,
}

impl UrlFront {
    pub fn new(pool: Arc<Pool>, mode: InvokeMode) -> Arc<UrlFront> {
        let url_id = ids::lower_alnum(32);
        let domain = format!("{url_id}.lambda-url.{}.on.aws", pool.config().region);
        Arc::new(UrlFront {
            pool,
            mode,
            url_id,
            domain,
        })
    }

    /// Serves the front on `listen`.
    pub async fn serve(self: Arc<Self>, listen: SocketAddr) -> anyhow::Result<Server> {
        Server::bind(listen, "the Function URL front", move |req, peer| {
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

    async fn respond(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        now: SystemTime,
        request_id: &str,
    ) -> Response<Body> {
        let cfg = self.pool.config();
        let (parts, body) = req.into_parts();
        let body = match read_limited(body, URL_MAX_REQUEST).await {
            Ok(body) => body,
            Err(ReadError::TooLarge) => return refusal(&InvokeError::TooLarge(URL_MAX_REQUEST)),
            Err(ReadError::Broken(why)) => {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    &json!({"Message": format!("the request body broke off: {why}")}),
                )
            }
        };
        let event = build_event(
            &EventSource {
                account_id: &cfg.account_id,
                api_id: &self.url_id,
                domain: &self.domain,
                request_id,
                route_key: "$default".into(),
                path_parameters: None,
            },
            &parts,
            &body,
            peer,
            now,
        );
        let outcome = match self
            .pool
            .invoke(request_id.to_string(), Bytes::from(event.to_string()))
            .await
        {
            Ok(o) => o,
            Err(e) => {
                if let InvokeError::Unavailable(_) = e {
                    cfg.platform(0, format!("{request_id} {e}"));
                }
                return refusal(&e);
            }
        };
        match (outcome, self.mode) {
            (Outcome::Error(e), _) => {
                self.log_error(request_id, &e);
                url_error()
            }
            (Outcome::Buffered(payload), _) => self.buffered(request_id, &payload, false),
            (
                Outcome::Streaming {
                    content_type,
                    events,
                },
                InvokeMode::Buffered,
            ) => match collect_stream(events).await {
                Ok(payload) => self.buffered(
                    request_id,
                    &payload,
                    content_type.as_deref() == Some(HTTP_INTEGRATION),
                ),
                Err(e) => {
                    self.log_error(request_id, &e);
                    url_error()
                }
            },
            (
                Outcome::Streaming {
                    content_type,
                    events,
                },
                InvokeMode::ResponseStream,
            ) => match stream_response(content_type, events).await {
                Ok(resp) => resp,
                Err(e) => {
                    self.log_error(request_id, &e);
                    url_error()
                }
            },
        }
    }

    fn buffered(&self, request_id: &str, payload: &[u8], streamed: bool) -> Response<Body> {
        match response_from_payload(payload) {
            Ok(resp) => resp,
            Err(why) => {
                let hint = if streamed {
                    " (the function streamed its response, but the Function URL's invoke mode is BUFFERED: set InvokeMode RESPONSE_STREAM)"
                } else {
                    ""
                };
                self.pool.config().platform(
                    0,
                    format!("{request_id} the Function URL could not use the function's response: {why}{hint}"),
                );
                url_error()
            }
        }
    }

    fn log_error(&self, request_id: &str, e: &FunctionError) {
        self.pool
            .config()
            .platform(0, format!("{request_id} function error: {e}"));
    }
}

/// What a Function URL answers when the invocation failed (function error, timeout, crash,
/// unusable response).
fn url_error() -> Response<Body> {
    Response::builder()
        .status(StatusCode::BAD_GATEWAY)
        .header("content-type", "application/json")
        .body(full(Bytes::from_static(b"Internal Server Error")))
        .expect("valid response")
}

/// What a Function URL answers when the invocation could not be made.
fn refusal(e: &InvokeError) -> Response<Body> {
    match e {
        InvokeError::Throttled => json_response(
            StatusCode::TOO_MANY_REQUESTS,
            &json!({"Message": "Rate Exceeded."}),
        ),
        InvokeError::TooLarge(_) => json_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            &json!({"Message": format!("Request must be smaller than {URL_MAX_REQUEST} bytes for the InvokeFunction operation")}),
        ),
        InvokeError::Unavailable(_) => url_error(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lambda::config::Config;
    use http_body_util::BodyExt;

    async fn body(resp: Response<Body>) -> String {
        let b = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(b.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn refusals_read_as_a_function_urls() {
        let r = refusal(&InvokeError::Throttled);
        assert_eq!(r.status(), 429);
        assert_eq!(body(r).await, r#"{"Message":"Rate Exceeded."}"#);
        let r = refusal(&InvokeError::TooLarge(URL_MAX_REQUEST + 1));
        assert_eq!(r.status(), 413);
        assert!(body(r).await.contains("for the InvokeFunction operation"));
        let r = refusal(&InvokeError::Unavailable("stopping".into()));
        assert_eq!(r.status(), 502);
        assert_eq!(body(r).await, "Internal Server Error");
    }

    #[tokio::test]
    async fn an_unusable_result_is_a_502_with_a_hint_when_it_was_streamed() {
        let (cfg, mut logs) = Config::for_tests("/nonexistent/bootstrap");
        let front = UrlFront::new(Pool::new(Arc::new(cfg)), InvokeMode::Buffered);
        assert!(front.domain.ends_with(".lambda-url.us-east-1.on.aws"));
        assert_eq!(
            front
                .buffered("r", br#"{"statusCode":200}"#, false)
                .status(),
            200
        );
        assert_eq!(front.buffered("r", b"not json", true).status(), 502);
        let line = logs.try_recv().unwrap().line;
        assert!(
            line.starts_with("r the Function URL could not use"),
            "{line}"
        );
        assert!(line.contains("set InvokeMode RESPONSE_STREAM"), "{line}");
    }

    #[tokio::test]
    async fn a_request_is_answered_even_when_no_instance_can_start() {
        let (cfg, _logs) = Config::for_tests("/nonexistent/bootstrap");
        let front = UrlFront::new(Pool::new(Arc::new(cfg)), InvokeMode::ResponseStream);
        let server = front
            .serve(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let resp = reqwest::get(format!("http://{}/x", server.addr()))
            .await
            .unwrap();
        assert_eq!(resp.status(), 502);
        assert!(resp.headers().contains_key("x-amzn-requestid"));
    }
}
