//! Server-sent events: an incremental splitter that cuts a byte stream at event boundaries
//! (so a pass-through forwards whole events, and an error can always be appended cleanly),
//! a parser for one event block, and the formatter.

use bytes::{Bytes, BytesMut};

/// One parsed event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field (`None` means the default type, "message").
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Accumulates bytes and hands out complete event blocks (including their blank line).
#[derive(Default)]
pub struct SseSplitter {
    buf: BytesMut,
}

impl SseSplitter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// True when bytes of an incomplete event are pending.
    pub fn has_partial(&self) -> bool {
        self.buf.iter().any(|b| !matches!(b, b'\r' | b'\n'))
    }

    /// The next complete event block (raw bytes up to and including the blank line).
    pub fn next_block(&mut self) -> Option<Bytes> {
        let b = &self.buf;
        let mut i = 0;
        let mut line_start = 0;
        while i < b.len() {
            let c = b[i];
            if c == b'\n' || c == b'\r' {
                let eol = if c == b'\r' {
                    match b.get(i + 1) {
                        Some(b'\n') => 2,
                        Some(_) => 1,
                        // A trailing \r may be the first half of \r\n: wait for more bytes.
                        None => return None,
                    }
                } else {
                    1
                };
                if i == line_start {
                    let end = i + eol;
                    return Some(self.buf.split_to(end).freeze());
                }
                i += eol;
                line_start = i;
            } else {
                i += 1;
            }
        }
        None
    }

    /// Every complete block currently buffered, concatenated (what a pass-through forwards).
    pub fn take_complete(&mut self) -> (Bytes, Vec<SseEvent>) {
        let mut out = BytesMut::new();
        let mut events = Vec::new();
        while let Some(block) = self.next_block() {
            if let Some(ev) = parse_block(&block) {
                events.push(ev);
            }
            out.extend_from_slice(&block);
        }
        (out.freeze(), events)
    }
}

/// Parses one event block; `None` when it has no data (comments, blank).
pub fn parse_block(block: &[u8]) -> Option<SseEvent> {
    let text = String::from_utf8_lossy(block);
    let mut event = None;
    let mut data: Option<String> = None;
    for line in text.split(['\n', '\r']) {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => event = Some(value.to_string()),
            "data" => match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_string()),
            },
            _ => {}
        }
    }
    data.map(|data| SseEvent { event, data })
}

/// Formats one event.
pub fn format_event(event: &str, data: &str) -> Bytes {
    let mut s = String::with_capacity(event.len() + data.len() + 16);
    s.push_str("event: ");
    s.push_str(event);
    s.push('\n');
    for line in data.split('\n') {
        s.push_str("data: ");
        s.push_str(line);
        s.push('\n');
    }
    s.push('\n');
    Bytes::from(s)
}

/// An in-band error event in the Anthropic shape.
pub fn error_event(error_type: &str, message: &str) -> Bytes {
    format_event(
        "error",
        &crate::error::error_json(error_type, message).to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_across_chunk_boundaries_and_line_endings() {
        let stream = b"event: message_start\ndata: {\"a\":1}\n\nevent: ping\r\ndata: {}\r\n\r\n: comment\n\ndata: x\ndata: y\n\n";
        // Feed it one byte at a time: the events come out whole and in order.
        let mut s = SseSplitter::new();
        let mut events = Vec::new();
        let mut forwarded = Vec::new();
        for b in stream.iter() {
            s.push(&[*b]);
            let (bytes, evs) = s.take_complete();
            forwarded.extend_from_slice(&bytes);
            events.extend(evs);
        }
        assert_eq!(forwarded, stream.to_vec());
        assert!(!s.has_partial());
        assert_eq!(
            events,
            vec![
                SseEvent {
                    event: Some("message_start".into()),
                    data: "{\"a\":1}".into()
                },
                SseEvent {
                    event: Some("ping".into()),
                    data: "{}".into()
                },
                SseEvent {
                    event: None,
                    data: "x\ny".into()
                },
            ]
        );
    }

    #[test]
    fn partial_event_is_held_back() {
        let mut s = SseSplitter::new();
        s.push(b"event: content_block_delta\ndata: {\"par");
        let (bytes, events) = s.take_complete();
        assert!(bytes.is_empty() && events.is_empty());
        assert!(s.has_partial());
        s.push(b"tial\":true}\n\n");
        let (_, events) = s.take_complete();
        assert_eq!(events[0].data, "{\"partial\":true}");
    }

    #[test]
    fn format_round_trips() {
        let bytes = format_event("text", "line1\nline2");
        assert_eq!(&bytes[..], b"event: text\ndata: line1\ndata: line2\n\n");
        let ev = parse_block(&bytes).unwrap();
        assert_eq!(ev.event.as_deref(), Some("text"));
        assert_eq!(ev.data, "line1\nline2");
        let err = parse_block(&error_event("api_error", "boom")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&err.data).unwrap();
        assert_eq!(v["error"]["type"], "api_error");
    }
}
