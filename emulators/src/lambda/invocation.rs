//! What an invocation comes to, between the instance that runs it, the pool that dispatches
//! it and the fronts that answer for it: a buffered payload, a stream of events, or the
//! function's error as Lambda reports it.

use bytes::{Bytes, BytesMut};
use std::fmt;
use tokio::sync::mpsc;

/// Lambda's limit on a buffered response (and on a synchronous request) payload.
pub(crate) const MAX_PAYLOAD: usize = 6 * 1024 * 1024 + 100;

/// An error the function reported (or Lambda reported for it: timeout, crash, init failure),
/// as the `Invoke` API returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionError {
    /// `errorType`, e.g. `Sandbox.Timedout`, `Runtime.ExitError`, or the function's own.
    pub error_type: String,
    /// `errorMessage`.
    pub error_message: String,
}

impl fmt::Display for FunctionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error_type, self.error_message)
    }
}

impl std::error::Error for FunctionError {}

/// How an invocation ended (or is going on, for a stream).
pub(crate) enum Outcome {
    /// A buffered response payload.
    Buffered(Bytes),
    /// A streamed response: the runtime's `Content-Type` and the body as it arrives.
    Streaming {
        content_type: Option<String>,
        events: mpsc::Receiver<StreamEvent>,
    },
    /// The function (or Lambda on its behalf) reported an error before any response.
    Error(FunctionError),
}

/// A piece of a streamed response.
pub(crate) enum StreamEvent {
    Data(Bytes),
    /// The stream ended cleanly.
    End,
    /// The stream broke: a mid-stream error trailer, a timeout, a crash.
    Error(FunctionError),
}

/// Why the dispatcher could not hand the invocation to an instance.
#[derive(Debug)]
pub(crate) enum InvokeError {
    /// All `max_instances` are busy and `throttle_when_busy` is set.
    Throttled,
    /// The payload exceeds Lambda's synchronous limit.
    TooLarge(usize),
    /// The emulator is stopping or an instance could not be started.
    Unavailable(String),
}

impl fmt::Display for InvokeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvokeError::Throttled => f.write_str("all instances are busy (Rate Exceeded)"),
            InvokeError::TooLarge(n) => write!(
                f,
                "the request payload is {n} bytes; Lambda accepts at most {MAX_PAYLOAD}"
            ),
            InvokeError::Unavailable(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for InvokeError {}

/// Collects a streamed response; a mid-stream error wins over the bytes.
pub(crate) async fn collect_stream(
    mut events: mpsc::Receiver<StreamEvent>,
) -> Result<Bytes, FunctionError> {
    let mut buf = BytesMut::new();
    loop {
        match events.recv().await {
            Some(StreamEvent::Data(b)) => buf.extend_from_slice(&b),
            Some(StreamEvent::End) => return Ok(buf.freeze()),
            Some(StreamEvent::Error(e)) => return Err(e),
            None => return Err(lost_stream()),
        }
    }
}

pub(crate) fn lost_stream() -> FunctionError {
    FunctionError {
        error_type: "Runtime.ExitError".into(),
        error_message: "the response stream ended abruptly".into(),
    }
}

/// A crash, as Lambda reports it.
pub(crate) fn exit_error(request_id: &str, why: &str) -> FunctionError {
    FunctionError {
        error_type: "Runtime.ExitError".into(),
        error_message: format!("RequestId: {request_id} Error: {why}"),
    }
}

/// A timeout, as Lambda reports it.
pub(crate) fn timeout_error(request_id: &str, secs: f64) -> FunctionError {
    FunctionError {
        error_type: "Sandbox.Timedout".into(),
        error_message: format!(
            "RequestId: {request_id} Error: Task timed out after {secs:.2} seconds"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(s: &'static str) -> StreamEvent {
        StreamEvent::Data(Bytes::from_static(s.as_bytes()))
    }

    /// Collects `events` sent into a channel that is then closed.
    async fn collected(events: Vec<StreamEvent>) -> Result<Bytes, FunctionError> {
        let (tx, rx) = mpsc::channel(events.len() + 1);
        for e in events {
            tx.send(e).await.unwrap();
        }
        drop(tx);
        collect_stream(rx).await
    }

    #[tokio::test]
    async fn a_stream_is_collected_until_its_end() {
        let ok = collected(vec![data("ab"), data("c"), StreamEvent::End]).await;
        assert_eq!(ok.unwrap(), "abc");

        let boom = FunctionError {
            error_type: "Boom".into(),
            error_message: "mid-stream".into(),
        };
        let err = collected(vec![data("ab"), StreamEvent::Error(boom.clone())]).await;
        assert_eq!(err.unwrap_err(), boom);

        // Closed without an end: the instance went away.
        let lost = collected(vec![data("ab")]).await.unwrap_err();
        assert_eq!(lost, lost_stream());

        // Still open: the collector waits.
        let (tx, rx) = mpsc::channel(1);
        tx.send(data("ab")).await.unwrap();
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(50), collect_stream(rx)).await;
        assert!(waiting.is_err());
    }

    #[test]
    fn errors_read_as_lambdas() {
        let e = timeout_error("r-1", 3.0);
        assert_eq!(e.error_type, "Sandbox.Timedout");
        assert_eq!(
            e.to_string(),
            "Sandbox.Timedout: RequestId: r-1 Error: Task timed out after 3.00 seconds"
        );
        let e = exit_error("r-2", "signal: 9");
        assert_eq!(
            e.to_string(),
            "Runtime.ExitError: RequestId: r-2 Error: signal: 9"
        );
        assert!(InvokeError::TooLarge(MAX_PAYLOAD + 1)
            .to_string()
            .contains(&MAX_PAYLOAD.to_string()));
        assert!(InvokeError::Throttled.to_string().contains("Rate Exceeded"));
    }
}
