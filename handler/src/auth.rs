//! Caller authentication: `x-api-key: <token>` or `Authorization: Bearer <token>`, checked
//! against the secret's callers (token hashes) in constant time: [`crate::callers`].

use crate::callers::{self, Identity};
use crate::config::CallerAuth;
use crate::error::ProxyError;
use crate::secrets::Secret;
use http::HeaderMap;

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

/// Checks the caller against the secret's callers (hashed) and plaintext tokens; the caller
/// it is.
pub fn authenticate(
    mode: CallerAuth,
    headers: &HeaderMap,
    secret: &Secret,
) -> Result<Identity, ProxyError> {
    if mode == CallerAuth::None {
        return Ok(Identity::anonymous());
    }
    let Some(presented) = presented_token(headers) else {
        return Err(ProxyError::Authentication(
            "missing caller token: send it as `x-api-key: <token>` or `Authorization: Bearer <token>`"
                .into(),
        ));
    };
    if secret.callers.is_empty() && secret.caller_tokens.is_empty() {
        return Err(ProxyError::Authentication(
            "this endpoint has no caller tokens configured (add a caller: cargo xtask callers add NAME)"
                .into(),
        ));
    }
    callers::identify(presented, &secret.callers, &secret.caller_tokens)
        .ok_or_else(|| ProxyError::Authentication("invalid caller token".into()))
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

    fn plain(tokens: &[String]) -> Secret {
        Secret {
            caller_tokens: tokens.to_vec(),
            ..Secret::default()
        }
    }

    #[test]
    fn both_header_forms_are_accepted() {
        let tokens = vec!["tok-1".to_string(), "tok-2".to_string()];
        for h in [
            headers(&[("x-api-key", "tok-2")]),
            headers(&[("authorization", "Bearer tok-1")]),
            headers(&[("authorization", "bearer   tok-1 ")]),
        ] {
            authenticate(CallerAuth::Token, &h, &plain(&tokens)).unwrap();
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
            let e = authenticate(CallerAuth::Token, &h, &plain(&tokens)).unwrap_err();
            assert_eq!(e.status(), 401);
        }
        let none = Secret::default();
        let e =
            authenticate(CallerAuth::Token, &headers(&[("x-api-key", "x")]), &none).unwrap_err();
        assert!(e.to_string().contains("no caller tokens"));
        authenticate(CallerAuth::None, &headers(&[]), &none).unwrap();
    }
}
