//! The small HTTP/1.1 server every stand-in of this crate runs on: the fake Messages API, the
//! fake Bedrock runtime, the Lambda emulator's Function URL and API Gateway fronts and each
//! instance's Runtime API. One accept loop, one task per connection, and a stop that ends
//! the loop and every open connection (when the [`Server`] is dropped, or by
//! [`Server::stop`]).

use anyhow::{Context, Result};
use bytes::{Bytes, BytesMut};
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

/// The error a response body may end with (it breaks the connection, as a broken upstream
/// or a failed stream does).
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Every response body of the stand-ins: whole or streamed.
pub(crate) type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A whole body.
pub(crate) fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A body that streams what is sent into `rx`, frame by frame; an `Err` breaks the
/// connection, as a broken stream does.
pub(crate) fn channel_body(rx: mpsc::Receiver<Result<Frame<Bytes>, BoxError>>) -> Body {
    let frames =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|f| (f, rx)) });
    StreamBody::new(frames).boxed_unsync()
}

/// A response with a JSON body (`content-type: application/json`).
pub(crate) fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(full(body.to_string()))
        .expect("valid response")
}

/// A running server. Dropping it stops the accept loop and closes every open connection.
pub(crate) struct Server {
    addr: SocketAddr,
    accept: AbortHandle,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Server {
    /// Binds `addr` and serves `handler` there; `what` names the server in the error.
    pub async fn bind<F, Fut>(addr: SocketAddr, what: &str, handler: F) -> Result<Server>
    where
        F: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {what} to {addr}"))?;
        Server::start(listener, handler).with_context(|| format!("starting {what}"))
    }

    /// Serves `handler` on a bound listener, one task per connection. Must be called within
    /// a tokio runtime.
    pub fn start<F, Fut>(listener: TcpListener, handler: F) -> std::io::Result<Server>
    where
        F: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        let addr = listener.local_addr()?;
        let connections = Arc::new(Mutex::new(Vec::new()));
        let accept = tokio::spawn(accept_loop(listener, handler, connections.clone()));
        Ok(Server {
            addr,
            accept: accept.abort_handle(),
            connections,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and closes every open connection (a response in flight is cut).
    pub fn stop(&self) {
        self.accept.abort();
        for c in lock(&self.connections).drain(..) {
            c.abort();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn accept_loop<F, Fut>(
    listener: TcpListener,
    handler: F,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
) where
    F: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // Streamed events go out as they are written, not when Nagle's algorithm decides.
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let conn = tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let handler = handler.clone();
                async move { Ok::<_, Infallible>(handler(req, peer).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        let mut conns = lock(&connections);
        conns.retain(|h| !h.is_finished());
        conns.push(conn.abort_handle());
    }
}

/// Why a request body could not be read whole.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// It is longer than the limit.
    TooLarge,
    /// The connection broke while it was arriving.
    Broken(String),
}

/// Reads a request body of at most `limit` bytes.
pub(crate) async fn read_limited<B>(mut body: B, limit: usize) -> Result<Bytes, ReadError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ReadError::Broken(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(ReadError::TooLarge);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// Locks a mutex; a panic elsewhere while holding it does not make the state unusable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_each_request_with_its_peer_and_stops_when_dropped() {
        let server = Server::bind(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            "a test server",
            |req: Request<Incoming>, peer: SocketAddr| async move {
                let body = format!("{} from {}", req.uri().path(), peer.ip());
                Response::new(full(body))
            },
        )
        .await
        .unwrap();
        let addr = server.addr();
        let answer = get(addr, "/hello").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("/hello from 127.0.0.1"), "{answer}");

        // An open idle connection is closed by the stop, and nothing is accepted after it.
        let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(server);
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf))
            .await
            .expect("the connection is closed by the stop");
        assert!(matches!(n, Ok(0) | Err(_)));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn a_taken_port_is_an_error_naming_the_server() {
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let e = Server::bind(
            taken.local_addr().unwrap(),
            "the fake thing",
            |_, _| async { Response::new(full("")) },
        )
        .await
        .err()
        .unwrap();
        assert!(
            format!("{e:#}").contains("binding the fake thing to"),
            "{e:#}"
        );
    }

    #[tokio::test]
    async fn bodies_are_read_up_to_the_limit() {
        let body = |s: &'static str| Full::new(Bytes::from_static(s.as_bytes()));
        assert_eq!(read_limited(body("12345"), 5).await.unwrap(), "12345");
        assert_eq!(
            read_limited(body("123456"), 5).await,
            Err(ReadError::TooLarge)
        );
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<hyper::body::Frame<Bytes>, String>>(2);
        tx.send(Ok(hyper::body::Frame::data(Bytes::from_static(b"ab"))))
            .await
            .unwrap();
        tx.send(Err("reset".into())).await.unwrap();
        drop(tx);
        let stream = http_body_util::StreamBody::new(Box::pin(futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|f| (f, rx)) },
        )));
        assert_eq!(
            read_limited(stream, 100).await,
            Err(ReadError::Broken("reset".into()))
        );
    }
}
