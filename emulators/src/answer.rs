//! The deterministic content both fake upstreams answer with (the fake Messages API and the
//! fake Bedrock runtime), so the two providers' fakes produce the same events for the same
//! request: `Echo: <last user text>`, one word per text delta, cut at `max_tokens` words.

use serde_json::{json, Value};

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn last_user_text(req: &Value) -> String {
    req.get("messages")
        .and_then(Value::as_array)
        .and_then(|m| {
            m.iter()
                .rev()
                .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        })
        .and_then(|m| m.get("content"))
        .map(text_of)
        .unwrap_or_default()
}

/// Input "tokens" of a Messages body as the fakes count them (words of system + messages).
pub fn input_tokens(req: &Value) -> usize {
    let mut n = req
        .get("system")
        .map(text_of)
        .unwrap_or_default()
        .split_whitespace()
        .count();
    if let Some(msgs) = req.get("messages").and_then(Value::as_array) {
        for m in msgs {
            n += m
                .get("content")
                .map(text_of)
                .unwrap_or_default()
                .split_whitespace()
                .count();
        }
    }
    n.max(1)
}

/// The fakes' answer to a Messages request: `Echo: <last user text>`, cut at `max_tokens`
/// words, as the whole message and as the real SSE event sequence.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The non-streamed Messages API response body.
    pub message: Value,
    /// `(event name, data)` in the order the Messages API streams them.
    pub events: Vec<(&'static str, Value)>,
}

impl Answer {
    /// The answer to `req` (a Messages body; `max_tokens` > 0) from `model`, for the `n`-th
    /// request (message id `msg_fake_<n>`).
    pub fn new(req: &Value, model: &str, n: usize) -> Answer {
        let max_tokens = req.get("max_tokens").and_then(Value::as_u64).unwrap_or(0);
        let input_tokens = input_tokens(req);
        let mut words: Vec<String> = format!("Echo: {}", last_user_text(req))
            .split_whitespace()
            .map(String::from)
            .collect();
        let mut stop_reason = "end_turn";
        if words.len() as u64 > max_tokens {
            words.truncate(max_tokens as usize);
            stop_reason = "max_tokens";
        }
        let msg_id = format!("msg_fake_{n:06}");
        let message = json!({
            "id": msg_id, "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": words.join(" ")}],
            "stop_reason": stop_reason, "stop_sequence": null,
            "usage": {"input_tokens": input_tokens, "output_tokens": words.len()},
        });
        let mut events: Vec<(&'static str, Value)> = vec![
            (
                "message_start",
                json!({"type": "message_start", "message": {
                "id": msg_id, "type": "message", "role": "assistant", "model": model, "content": [],
                "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": input_tokens, "output_tokens": 1}}}),
            ),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}),
            ),
            ("ping", json!({"type": "ping"})),
        ];
        let count = words.len();
        for (i, w) in words.into_iter().enumerate() {
            let text = if i + 1 < count { format!("{w} ") } else { w };
            events.push((
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": text}}),
            ));
        }
        events.push((
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ));
        events.push((
            "message_delta",
            json!({"type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": null},
            "usage": {"output_tokens": count}}),
        ));
        events.push(("message_stop", json!({"type": "message_stop"})));
        Answer { message, events }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_the_last_user_text_word_by_word() {
        let req = json!({"max_tokens": 10, "system": "be brief",
            "messages": [{"role": "user", "content": "first"},
                         {"role": "assistant", "content": "ok"},
                         {"role": "user", "content": [{"type": "text", "text": "hello there"}]}]});
        let a = Answer::new(&req, "claude-haiku-4-5", 7);
        assert_eq!(a.message["id"], "msg_fake_000007");
        assert_eq!(a.message["content"][0]["text"], "Echo: hello there");
        assert_eq!(a.message["stop_reason"], "end_turn");
        // system (2) + messages (1 + 1 + 2) words.
        assert_eq!(input_tokens(&req), 6);
        assert_eq!(a.message["usage"]["input_tokens"], 6);
        let names: Vec<&str> = a.events.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        let text: String = a
            .events
            .iter()
            .filter_map(|(_, d)| d["delta"]["text"].as_str())
            .collect();
        assert_eq!(text, "Echo: hello there");
    }

    #[test]
    fn stops_at_max_tokens() {
        let req = json!({"max_tokens": 2, "messages": [{"role": "user", "content": "a b c"}]});
        let a = Answer::new(&req, "m", 1);
        assert_eq!(a.message["content"][0]["text"], "Echo: a");
        assert_eq!(a.message["stop_reason"], "max_tokens");
        assert_eq!(a.events[a.events.len() - 2].1["usage"]["output_tokens"], 2);
        assert_eq!(input_tokens(&json!({})), 1);
    }
}
