use super::*;

#[test]
fn body_is_in_bedrock_form() {
    let body = json!({"model": "claude-haiku-4-5", "stream": true, "max_tokens": 5,
            "messages": [{"role": "user", "content": "hi"}]});
    let beta = HeaderValue::from_static("a-2025, b-2025");
    let (id, out) = bedrock_body(
        body.to_string().as_bytes(),
        Some(&beta),
        &ModelMap::default(),
        Operation::Messages,
    )
    .unwrap();
    assert_eq!(id, "global.anthropic.claude-haiku-4-5-20251001-v1:0");
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert!(v.get("model").is_none() && v.get("stream").is_none(), "{v}");
    assert_eq!(v["anthropic_version"], "bedrock-2023-05-31");
    assert_eq!(v["anthropic_beta"], json!(["a-2025", "b-2025"]));
    assert_eq!(v["max_tokens"], 5);
    assert_eq!(v["messages"], body["messages"]);

    let (id, out) = bedrock_body(
        br#"{"model":"claude-sonnet-4-5","messages":[]}"#,
        None,
        &ModelMap::default(),
        Operation::CountTokens,
    )
    .unwrap();
    assert_eq!(
        foundation_model_id(&id),
        "anthropic.claude-sonnet-4-5-20250929-v1:0"
    );
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert!(v.get("anthropic_beta").is_none());
    assert_eq!(v["max_tokens"], 1);
}

#[test]
fn exceptions_map_to_anthropic_errors() {
    let cases = [
        ("ThrottlingException", 429, "rate_limit_error", true),
        ("ValidationException", 400, "invalid_request_error", false),
        ("AccessDeniedException", 403, "permission_error", false),
        ("ResourceNotFoundException", 404, "not_found_error", false),
        ("ModelNotReadyException", 529, "overloaded_error", true),
        ("ServiceUnavailableException", 529, "overloaded_error", true),
        ("ModelTimeoutException", 504, "timeout_error", true),
        ("InternalServerException", 500, "api_error", true),
        ("modelStreamErrorException", 500, "api_error", true),
    ];
    for (code, status, kind, retry) in cases {
        let f = classify(Some(code), Some("why"), None);
        assert_eq!(
            (f.status.as_u16(), f.error_type, f.retryable()),
            (status, kind, retry),
            "{code}"
        );
        assert!(f.message.contains(code) && f.message.contains("why"));
    }
    assert_eq!(
        classify(None, None, Some(403)).error_type,
        "permission_error"
    );
}

#[test]
fn chunks_become_the_apis_sse_blocks() {
    let ev =
        br#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}"#;
    assert_eq!(
        sse_block(ev).unwrap(),
        Bytes::from(format!(
            "event: content_block_delta\ndata: {}\n\n",
            std::str::from_utf8(ev).unwrap()
        ))
    );
    assert!(sse_block(b"{\"no\":1}").is_err());
    assert!(sse_block(b"not json").is_err());
}
