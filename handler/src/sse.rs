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

/// The largest single event the splitter holds while waiting for its blank line (the
/// Messages API's events are far smaller; a stream without blank lines must not grow
/// without bound). [`SseSplitter::overflowed`] tells when an event passed it.
pub const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

/// Accumulates bytes and hands out complete event blocks (including their blank line).
/// Each byte is scanned once: a scan resumes where the previous one stopped.
pub struct SseSplitter {
    buf: BytesMut,
    /// Scanned up to here (every byte before it is not the end of a block).
    scan: usize,
    /// Where the line being scanned starts.
    line_start: usize,
    max_event: usize,
}

impl Default for SseSplitter {
    fn default() -> Self {
        Self::with_max_event(MAX_EVENT_BYTES)
    }
}

impl SseSplitter {
    pub fn new() -> Self {
        Self::default()
    }

    /// A splitter whose [`overflowed`](Self::overflowed) limit is `max_event` bytes.
    pub fn with_max_event(max_event: usize) -> Self {
        SseSplitter {
            buf: BytesMut::new(),
            scan: 0,
            line_start: 0,
            max_event,
        }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// True when bytes of an incomplete event are pending.
    pub fn has_partial(&self) -> bool {
        self.buf.iter().any(|b| !matches!(b, b'\r' | b'\n'))
    }

    /// True when the incomplete event pending is larger than the limit (after
    /// [`take_complete`](Self::take_complete) has taken what was complete): the stream
    /// should be ended with an error.
    pub fn overflowed(&self) -> bool {
        self.buf.len() > self.max_event
    }

    /// Bytes held for an incomplete event.
    pub fn pending_len(&self) -> usize {
        self.buf.len()
    }

    /// The next complete event block (raw bytes up to and including the blank line).
    pub fn next_block(&mut self) -> Option<Bytes> {
        let b = &self.buf;
        let mut i = self.scan;
        let mut line_start = self.line_start;
        while i < b.len() {
            // Jump to the next line ending; everything before it is line content.
            match memchr2(b'\n', b'\r', &b[i..]) {
                None => {
                    i = b.len();
                    break;
                }
                Some(off) => i += off,
            }
            let c = b[i];
            let eol = if c == b'\r' {
                match b.get(i + 1) {
                    Some(b'\n') => 2,
                    Some(_) => 1,
                    // A trailing \r may be the first half of \r\n: wait for more bytes.
                    None => break,
                }
            } else {
                1
            };
            if i == line_start {
                let end = i + eol;
                self.scan = 0;
                self.line_start = 0;
                return Some(self.buf.split_to(end).freeze());
            }
            i += eol;
            line_start = i;
        }
        self.scan = i;
        self.line_start = line_start;
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

fn memchr2(a: u8, b: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&c| c == a || c == b)
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
    fn each_byte_is_scanned_once_and_one_event_is_bounded() {
        // One event without its blank line, fed in small chunks: the scan resumes where it
        // stopped, so this is linear (it rescanned the whole buffer per chunk before: 2 MB in
        // 1 KB chunks, about 2 GB of scanning, took seconds in a debug build; the bound below
        // leaves wide room for a busy machine).
        let mut s = SseSplitter::with_max_event(8 * 1024 * 1024);
        let started = std::time::Instant::now();
        let line = [b'x'; 1024];
        s.push(b"event: content_block_delta\ndata: ");
        for _ in 0..2048 {
            s.push(&line);
            let (out, events) = s.take_complete();
            assert!(out.is_empty() && events.is_empty());
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "splitting took {:?}",
            started.elapsed()
        );
        assert!(!s.overflowed());
        s.push(b"\n\n");
        let (out, events) = s.take_complete();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data.len(), 2048 * 1024);
        assert!(out.ends_with(b"\n\n") && !s.has_partial());

        // Past the limit the splitter says so.
        let mut s = SseSplitter::with_max_event(100);
        s.push(b"event: ping\ndata: {}\n\n");
        s.push(&[b'y'; 101]);
        let (out, _) = s.take_complete();
        assert_eq!(&out[..], b"event: ping\ndata: {}\n\n");
        assert!(s.overflowed());
    }

    #[test]
    fn resumed_scans_keep_line_state_across_pushes() {
        // A blank line split over pushes, with \r\n cut between its two bytes.
        let mut s = SseSplitter::new();
        for piece in [&b"data: a\r"[..], b"\n", b"\r", b"\ndata: b\n", b"\n"] {
            s.push(piece);
        }
        let (out, events) = s.take_complete();
        assert_eq!(&out[..], b"data: a\r\n\r\ndata: b\n\n");
        assert_eq!(events.len(), 2);
        let mut s = SseSplitter::new();
        let mut got = Vec::new();
        for piece in [&b"data: a\r"[..], b"\n", b"\r", b"\ndata: b\n", b"\n"] {
            s.push(piece);
            got.extend(s.take_complete().1);
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].data, "b");
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
