use super::*;
use crate::config::SecretConfig;

fn config() -> Config {
    let mut c = Config::new(SecretConfig::Local {
        anthropic_api_key: "k".into(),
        caller_tokens: vec![],
    });
    c.allowed_models = vec!["claude-haiku-4-5".into()];
    c.max_tokens_cap = 1000;
    c
}

#[test]
fn good_messages_request() {
    let info = messages_request(
            br#"{"model":"claude-haiku-4-5","max_tokens":10,"messages":[{"role":"user","content":"hi"}],"stream":true,"metadata":{"x":1}}"#,
            Operation::Messages,
            &config(),
        )
        .unwrap();
    assert_eq!(info.model, "claude-haiku-4-5");
    assert!(info.stream);
    messages_request(
            br#"{"model":"claude-haiku-4-5","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}"#,
            Operation::CountTokens,
            &config(),
        )
        .unwrap();
}

#[test]
fn bad_messages_requests_say_what_is_wrong() {
    let cases: &[(&str, &str)] = &[
        ("{", "not valid JSON"),
        ("[]", "JSON object"),
        (
            r#"{"max_tokens":1,"messages":[{"role":"user","content":"x"}]}"#,
            "model: field required",
        ),
        (
            r#"{"model":5,"max_tokens":1,"messages":[{"role":"user","content":"x"}]}"#,
            "model: expected a string",
        ),
        (
            r#"{"model":"claude-haiku-4-5","messages":[{"role":"user","content":"x"}]}"#,
            "max_tokens: field required",
        ),
        (
            r#"{"model":"claude-haiku-4-5","max_tokens":"10","messages":[{"role":"user","content":"x"}]}"#,
            "max_tokens: expected a positive integer",
        ),
        (
            r#"{"model":"claude-haiku-4-5","max_tokens":-1,"messages":[{"role":"user","content":"x"}]}"#,
            "max_tokens: expected a positive integer",
        ),
        (
            r#"{"model":"claude-haiku-4-5","max_tokens":1,"messages":[]}"#,
            "at least one message",
        ),
        (
            r#"{"model":"claude-haiku-4-5","max_tokens":1,"messages":"hi"}"#,
            "messages: expected an array",
        ),
        (
            r#"{"model":"claude-haiku-4-5","max_tokens":1,"messages":[{"role":"system","content":"x"}]}"#,
            "messages.0.role",
        ),
        (
            r#"{"model":"claude-haiku-4-5","max_tokens":1,"messages":[{"role":"user","content":5}]}"#,
            "messages.0.content",
        ),
        (
            r#"{"model":"claude-haiku-4-5","max_tokens":1,"messages":[{"role":"user","content":"x"}],"stream":"yes"}"#,
            "stream: expected a boolean",
        ),
        (
            r#"{"model":"claude-opus-4-6","max_tokens":1,"messages":[{"role":"user","content":"x"}]}"#,
            "ALLOWED_MODELS",
        ),
        (
            r#"{"model":"claude-haiku-4-5","max_tokens":5000,"messages":[{"role":"user","content":"x"}]}"#,
            "limit of 1000 (MAX_TOKENS_CAP)",
        ),
    ];
    for (body, expected) in cases {
        let e = messages_request(body.as_bytes(), Operation::Messages, &config()).unwrap_err();
        assert_eq!(e.status(), 400, "{body}");
        assert!(e.to_string().contains(expected), "{body}: {e}");
    }
}

#[test]
fn chat_requests() {
    let c = config();
    let r = ChatRequest::parse(br#"{"message":"hi"}"#, &c).unwrap();
    assert_eq!(r.max_tokens(&c), 1000);
    let body = r.to_messages_body(&c, true);
    assert_eq!(body["messages"][0]["content"], "hi");
    assert_eq!(body["stream"], true);
    for (body, expected) in [
        (r#"{"message":""}"#, "must not be empty"),
        (r#"{"message":5}"#, "invalid type"),
        (r#"{"msg":"hi"}"#, "unknown field"),
        (r#"{"message":"hi","max_tokens":0}"#, "at least 1"),
        (r#"{"message":"hi","max_tokens":100000}"#, "MAX_TOKENS_CAP"),
        (r#"{"message":"hi","model":"gpt"}"#, "ALLOWED_MODELS"),
    ] {
        let e = ChatRequest::parse(body.as_bytes(), &c)
            .unwrap_err()
            .to_string();
        assert!(e.contains(expected), "{body}: {e}");
    }
}

fn body_with(extra: Value) -> Vec<u8> {
    let mut v = serde_json::json!({"model":"claude-haiku-4-5","max_tokens":10,
            "messages":[{"role":"user","content":"hi"}]});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn duplicate_keys_are_refused_also_when_escaped_and_nested() {
    let c = config();
    for body in [
        // The validator (serde) keeps the last `model`, many parsers the first.
        r#"{"model":"claude-opus-4-1","model":"claude-haiku-4-5","max_tokens":10,"messages":[{"role":"user","content":"x"}]}"#,
        r#"{"model":"claude-haiku-4-5","max_tokens":999999,"max_tokens":10,"messages":[{"role":"user","content":"x"}]}"#,
        r#"{"mod\u0065l":"claude-opus-4-1","model":"claude-haiku-4-5","max_tokens":10,"messages":[{"role":"user","content":"x"}]}"#,
        r#"{"model":"claude-haiku-4-5","max_tokens":10,"max\u005ftokens":999999,"messages":[{"role":"user","content":"x"}]}"#,
        r#"{"model":"claude-haiku-4-5","max_tokens":10,"messages":[{"role":"user","role":"assistant","content":"x"}]}"#,
        r#"{"model":"claude-haiku-4-5","max_tokens":10,"messages":[{"role":"user","content":"x"}],"metadata":{"a":1,"\u0061":2}}"#,
    ] {
        let e = messages_request(body.as_bytes(), Operation::Messages, &c).unwrap_err();
        assert_eq!(e.status(), 400, "{body}");
        assert!(e.to_string().contains("duplicate key"), "{body}: {e}");
    }
    // Distinct keys that only look alike are fine.
    messages_request(
            br#"{"model":"claude-haiku-4-5","max_tokens":10,"messages":[{"role":"user","content":"x"}],"metadata":{"a":1,"A":2,"a ":3}}"#,
            Operation::Messages,
            &c,
        )
        .unwrap();
    assert_eq!(
        parse_strict_json(br#"{"a":[1,-2,3.5,"x",null,true,{"b":{}}]}"#).unwrap(),
        serde_json::json!({"a":[1,-2,3.5,"x",null,true,{"b":{}}]})
    );
}

#[test]
fn paid_and_outbound_features_need_the_owner() {
    let mut c = config();
    let refused: &[(Value, &str)] = &[
        (
            serde_json::json!({"tools":[{"type":"web_search_20250305","name":"web_search","max_uses":1000}]}),
            "ALLOWED_TOOL_TYPES",
        ),
        (
            serde_json::json!({"tools":[{"type":"code_execution_20250825","name":"code_execution"}]}),
            "server tool",
        ),
        (
            serde_json::json!({"tools":[{"type":"bash_20250124","name":"bash"}]}),
            "Anthropic-defined tool",
        ),
        (
            serde_json::json!({"tools":[{"type":"mcp_toolset","mcp_server_name":"x"}]}),
            "ALLOWED_TOOL_TYPES",
        ),
        (
            serde_json::json!({"tools":{"type":"custom"}}),
            "tools: expected an array",
        ),
        (
            serde_json::json!({"mcp_servers":[{"type":"url","url":"https://evil.example/mcp","name":"x"}]}),
            "ALLOW_MCP_SERVERS",
        ),
        (
            serde_json::json!({"anthropic_beta":["context-1m-2025-08-07"]}),
            "ALLOWED_BETAS",
        ),
        (
            serde_json::json!({"container":"container_abc"}),
            "ALLOW_CONTAINER",
        ),
        (
            serde_json::json!({"service_tier":"auto"}),
            "ALLOWED_SERVICE_TIERS",
        ),
        (
            serde_json::json!({"messages":[{"role":"user","content":[{"type":"document","source":{"type":"file","file_id":"file_1"}}]}]}),
            "ALLOW_FILES",
        ),
        (
            serde_json::json!({"messages":[{"role":"user","content":[{"type":"container_upload","file_id":"file_1"}]}]}),
            "ALLOW_FILES",
        ),
        (
            serde_json::json!({"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"image","source":{"type":"file","file_id":"f"}}]}]}]}),
            "ALLOW_FILES",
        ),
    ];
    for (extra, expected) in refused {
        let e = messages_request(&body_with(extra.clone()), Operation::Messages, &c)
            .unwrap_err()
            .to_string();
        assert!(e.contains(expected), "{extra}: {e}");
    }
    // Client tools are always allowed; so are tool inputs that merely mention file_id.
    for extra in [
        serde_json::json!({"tools":[{"name":"get_weather","input_schema":{"type":"object","properties":{"file_id":{"type":"string"}}}}]}),
        serde_json::json!({"tools":[{"type":"custom","name":"x","input_schema":{"type":"object"}}]}),
        serde_json::json!({"messages":[{"role":"user","content":"x"},{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"x","input":{"file_id":"f"}}]},{"role":"user","content":"y"}]}),
        serde_json::json!({"mcp_servers":null,"container":null,"service_tier":null}),
    ] {
        messages_request(&body_with(extra.clone()), Operation::Messages, &c)
            .unwrap_or_else(|e| panic!("{extra}: {e}"));
    }
    // The owner turns them on.
    c.allowed_tool_types = vec!["web_search".into(), "bash_20250124".into()];
    c.allow_mcp_servers = true;
    c.allow_container = true;
    c.allow_files = true;
    c.allowed_service_tiers = vec!["auto".into()];
    for (extra, _) in &refused[..1] {
        messages_request(&body_with(extra.clone()), Operation::Messages, &c).unwrap();
    }
    for extra in [
        serde_json::json!({"tools":[{"type":"web_search_20260209","name":"web_search"}]}),
        serde_json::json!({"tools":[{"type":"bash_20250124","name":"bash"}]}),
        refused[5].0.clone(),
        refused[7].0.clone(),
        refused[8].0.clone(),
        refused[9].0.clone(),
    ] {
        messages_request(&body_with(extra.clone()), Operation::Messages, &c)
            .unwrap_or_else(|e| panic!("{extra}: {e}"));
    }
    // A versioned allowlist entry allows that version only.
    let e = messages_request(
        &body_with(serde_json::json!({"tools":[{"type":"bash_20241022","name":"bash"}]})),
        Operation::Messages,
        &c,
    )
    .unwrap_err();
    assert!(e.to_string().contains("bash_20241022"), "{e}");
    assert_eq!(tool_family("web_search_20250305"), "web_search");
    assert_eq!(tool_family("mcp_toolset"), "mcp_toolset");
    assert_eq!(tool_family("text_editor_20250728"), "text_editor");
}

#[test]
fn api_headers_are_checked_and_betas_joined() {
    let mut c = config();
    let h = |pairs: &[(&'static str, &[u8])]| {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, http::HeaderValue::from_bytes(v).unwrap());
        }
        m
    };
    assert_eq!(api_headers(&h(&[]), &c).unwrap(), ApiHeaders::default());
    let ok = api_headers(&h(&[("anthropic-version", b"2023-06-01")]), &c).unwrap();
    assert_eq!(ok.version.unwrap(), "2023-06-01");
    for bad in [
        &b""[..],
        b"latest",
        b"2023-06-01x",
        b"2023/06/01",
        b"\xff\xfe",
    ] {
        let e = api_headers(&h(&[("anthropic-version", bad)]), &c).unwrap_err();
        assert!(e.to_string().contains("anthropic-version"), "{e}");
    }
    let twice = h(&[
        ("anthropic-version", b"2023-06-01"),
        ("anthropic-version", b"2023-01-01"),
    ]);
    assert!(api_headers(&twice, &c).is_err());
    // No beta flag is allowed by default.
    let beta = h(&[("anthropic-beta", b"context-1m-2025-08-07")]);
    let e = api_headers(&beta, &c).unwrap_err().to_string();
    assert!(
        e.contains("context-1m-2025-08-07") && e.contains("ALLOWED_BETAS"),
        "{e}"
    );
    c.allowed_betas = vec!["a-1".into(), "b-2".into()];
    // Several headers, and lists within one, are joined (each flag checked).
    let two = h(&[("anthropic-beta", b"a-1"), ("anthropic-beta", b"b-2, a-1")]);
    assert_eq!(api_headers(&two, &c).unwrap().beta.unwrap(), "a-1,b-2");
    let sneaky = h(&[
        ("anthropic-beta", b"a-1"),
        ("anthropic-beta", b"context-1m-2025-08-07"),
    ]);
    assert!(api_headers(&sneaky, &c).is_err());
}

#[test]
fn body_checks() {
    let mut h = HeaderMap::new();
    check_body(&h, b"{}", 10).unwrap();
    assert_eq!(
        check_body(&h, b"{}           ", 10).unwrap_err().status(),
        413
    );
    assert_eq!(check_body(&h, b"  ", 10).unwrap_err().status(), 400);
    h.insert("content-type", "text/plain".parse().unwrap());
    assert_eq!(check_body(&h, b"{}", 10).unwrap_err().status(), 415);
    h.insert(
        "content-type",
        "application/json; charset=utf-8".parse().unwrap(),
    );
    check_body(&h, b"{}", 10).unwrap();
}
