//! Redaction of anything shaped like an Anthropic API key (`sk-ant-...`), and of the
//! function's own key whatever its shape, from text that leaves the function: error bodies
//! and events passed on to callers, and the request log.

use std::borrow::Cow;

/// The prefix of Anthropic API keys.
pub const KEY_PREFIX: &str = "sk-ant-";
/// What a redacted key becomes.
pub const REDACTED: &str = "sk-ant-[REDACTED]";

/// `text` with `key` (when at least 8 characters) and every `sk-ant-` followed by key
/// characters (`A-Z a-z 0-9 _ -`) replaced by [`REDACTED`]. Borrowed when nothing matched.
pub fn redact<'a>(text: &'a str, key: &str) -> Cow<'a, str> {
    let own = key.len() >= 8 && text.contains(key);
    if !own && !text.contains(KEY_PREFIX) {
        return Cow::Borrowed(text);
    }
    let text = if own {
        text.replace(key, REDACTED)
    } else {
        text.to_string()
    };
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(i) = rest.find(KEY_PREFIX) {
        out.push_str(&rest[..i]);
        let after = &rest[i + KEY_PREFIX.len()..];
        let n = after
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
            .count();
        if n == 0 && after.starts_with("[REDACTED]") {
            out.push_str(KEY_PREFIX);
        } else {
            out.push_str(REDACTED);
        }
        rest = &after[n..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// [`redact`] for bytes: non-UTF-8 input is redacted on its lossy decoding.
pub fn redact_bytes(bytes: &[u8], key: &str) -> Option<Vec<u8>> {
    let text = String::from_utf8_lossy(bytes);
    match redact(&text, key) {
        Cow::Borrowed(_) => None,
        Cow::Owned(s) => Some(s.into_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_shaped_strings_and_the_own_key_are_redacted() {
        let key = "sk-ant-api03-AbC_d-9";
        assert_eq!(
            redact("invalid x-api-key: sk-ant-api03-AbC_d-9.", key),
            "invalid x-api-key: sk-ant-[REDACTED]."
        );
        assert_eq!(
            redact("other sk-ant-xyz and sk-ant-", key),
            "other sk-ant-[REDACTED] and sk-ant-[REDACTED]"
        );
        // A key of another shape is still found.
        assert_eq!(
            redact("key=plainsecret123 ok", "plainsecret123"),
            "key=sk-ant-[REDACTED] ok"
        );
        assert!(matches!(redact("nothing here", key), Cow::Borrowed(_)));
        // Redacting twice changes nothing more.
        let once = redact("a sk-ant-abc b", key).into_owned();
        assert_eq!(redact(&once, key), once);
        assert_eq!(
            redact_bytes(b"\xff sk-ant-abc", key).unwrap(),
            "\u{fffd} sk-ant-[REDACTED]".as_bytes()
        );
    }
}
