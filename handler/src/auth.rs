//! Caller authentication: `x-api-key: <token>` or `Authorization: Bearer <token>`, checked
//! against the caller tokens in the secret in constant time.

use crate::config::CallerAuth;
use crate::error::ProxyError;
use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The token the caller presented, if any (`x-api-key` first, then a Bearer token).
pub fn presented_token(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        if !v.is_empty() {
            return Some(v);
        }
    }
    let auth = headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let (scheme, token) = auth.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        let token = token.trim();
        (!token.is_empty()).then_some(token)
    } else {
        None
    }
}

/// Compares in constant time: both sides are hashed first so that neither the content nor
/// the length of a configured token leaks through timing; every token is compared.
pub fn token_matches(presented: &str, tokens: &[String]) -> bool {
    let p = Sha256::digest(presented.as_bytes());
    let mut found = subtle::Choice::from(0u8);
    for t in tokens {
        let t = Sha256::digest(t.as_bytes());
        found |= p.as_slice().ct_eq(t.as_slice());
    }
    found.into()
}

/// Checks the caller. `tokens` are the caller tokens from the secret.
pub fn authenticate(
    mode: CallerAuth,
    headers: &HeaderMap,
    tokens: &[String],
) -> Result<(), ProxyError> {
    if mode == CallerAuth::None {
        return Ok(());
    }
    let Some(presented) = presented_token(headers) else {
        return Err(ProxyError::Authentication(
            "missing caller token: send it as `x-api-key: <token>` or `Authorization: Bearer <token>`"
                .into(),
        ));
    };
    if tokens.is_empty() {
        return Err(ProxyError::Authentication(
            "this endpoint has no caller tokens configured (add one to the secret's caller_tokens)"
                .into(),
        ));
    }
    if token_matches(presented, tokens) {
        Ok(())
    } else {
        Err(ProxyError::Authentication("invalid caller token".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn both_header_forms_are_accepted() {
        let tokens = vec!["tok-1".to_string(), "tok-2".to_string()];
        for h in [
            headers(&[("x-api-key", "tok-2")]),
            headers(&[("authorization", "Bearer tok-1")]),
            headers(&[("authorization", "bearer   tok-1 ")]),
        ] {
            authenticate(CallerAuth::Token, &h, &tokens).unwrap();
        }
    }

    #[test]
    fn missing_wrong_and_malformed_tokens_are_rejected() {
        let tokens = vec!["tok-1".to_string()];
        for h in [
            headers(&[]),
            headers(&[("x-api-key", "tok-")]),
            headers(&[("x-api-key", "tok-11")]),
            headers(&[("authorization", "Basic tok-1")]),
            headers(&[("authorization", "Bearer")]),
        ] {
            let e = authenticate(CallerAuth::Token, &h, &tokens).unwrap_err();
            assert_eq!(e.status(), 401);
        }
        let e = authenticate(CallerAuth::Token, &headers(&[("x-api-key", "x")]), &[]).unwrap_err();
        assert!(e.to_string().contains("no caller tokens"));
        authenticate(CallerAuth::None, &headers(&[]), &[]).unwrap();
    }
}
