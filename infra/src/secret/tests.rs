use super::*;

#[test]
fn key_and_token_are_redacted() {
    let k = ApiKey::new("sk-ant-secret-value");
    assert!(!format!("{k:?} {k}").contains("sk-ant"));
    let t = CallerToken::generate();
    assert!(!format!("{t:?} {t}").contains(t.expose()));
    let input = SecretInput {
        anthropic_api_key: Some(k),
        rotate_token: false,
    };
    assert!(!format!("{input:?}").contains("sk-ant"));
}

#[test]
fn tokens_are_random_and_url_safe() {
    let a = CallerToken::generate();
    let b = CallerToken::generate();
    assert_ne!(a, b);
    assert!(a.expose().len() >= 40);
    assert!(a
        .expose()
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
}

#[test]
fn value_json_shape() {
    let v = SecretValue {
        anthropic_api_key: Some(ApiKey::new("k")),
        caller_tokens: vec![serde_json::from_str::<CallerToken>("\"t\"").unwrap()],
        callers: Vec::new(),
    };
    assert_eq!(
        serde_json::to_string(&v).unwrap(),
        r#"{"anthropic_api_key":"k","caller_tokens":["t"]}"#
    );
    // Bedrock: caller tokens only, and it reads back.
    let v = SecretValue {
        anthropic_api_key: None,
        caller_tokens: vec![serde_json::from_str::<CallerToken>("\"t\"").unwrap()],
        callers: Vec::new(),
    };
    let text = serde_json::to_string(&v).unwrap();
    assert_eq!(text, r#"{"caller_tokens":["t"]}"#);
    assert_eq!(serde_json::from_str::<SecretValue>(&text).unwrap(), v);
}

#[test]
fn named_callers_are_stored_by_hash() {
    let (entry, token) = callers::new_caller("default", Default::default(), "2026-01-01T00:00:00Z");
    let v = SecretValue {
        anthropic_api_key: None,
        caller_tokens: Vec::new(),
        callers: vec![entry],
    };
    let text = serde_json::to_string(&v).unwrap();
    assert!(!text.contains(token.expose()), "{text}");
    assert!(text.contains(&callers::token_sha256(&token)));
    let back: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(back["callers"][0]["name"], "default");
    assert_eq!(back["callers"][0]["rotated_at"], serde_json::Value::Null);
    assert_eq!(serde_json::from_str::<SecretValue>(&text).unwrap(), v);
}

#[test]
fn a_new_default_token_takes_the_form_the_secret_is_in() {
    // Old form: plaintext, replacing the plaintext tokens.
    let mut old = SecretValue {
        anthropic_api_key: None,
        caller_tokens: vec![CallerToken::generate(), CallerToken::generate()],
        callers: Vec::new(),
    };
    let t = new_default_token(&mut old);
    assert_eq!(old.caller_tokens, vec![t]);
    // Named callers: default rotated, the others kept.
    let (alice, _) = callers::new_caller("alice", Default::default(), "t");
    let (default, _) = callers::new_caller("default", Default::default(), "t");
    let mut new = SecretValue {
        anthropic_api_key: None,
        caller_tokens: Vec::new(),
        callers: vec![alice.clone(), default],
    };
    let t = new_default_token(&mut new);
    assert_eq!(new.callers[0], alice);
    assert_eq!(new.callers[1].token_sha256, callers::token_sha256(&t));
    assert!(new.caller_tokens.is_empty());
}
