//! Function URLs per qualifier, as Lambda keeps them. moto 5.2 ignores `Qualifier` on
//! `CreateFunctionUrlConfig` / `GetFunctionUrlConfig` / `UpdateFunctionUrlConfig` /
//! `DeleteFunctionUrlConfig`: one URL per function, whatever the qualifier. Lambda keeps one
//! per qualifier (the unqualified function, each alias): asking for the URL of the alias
//! `live` when only the unqualified function has one is `404 ResourceNotFoundException`.
//!
//! The proxy remembers which qualifier each function's URL was created with (through it;
//! a URL created straight in moto counts as the unqualified function's, like one made
//! before releases) and answers a get, update or delete naming another qualifier as Lambda
//! does, without reaching moto.

use std::collections::HashMap;

/// One Function URL call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlCall {
    pub function: String,
    pub qualifier: Option<String>,
    pub method: http::Method,
}

/// `/2021-10-31/functions/{name}/url[?Qualifier=q]`.
pub fn parse(method: &http::Method, path: &str, query: Option<&str>) -> Option<UrlCall> {
    let rest = path.strip_prefix("/2021-10-31/functions/")?;
    let function = rest.strip_suffix("/url")?;
    let function = super::partition::url_decode(function, false);
    // A function ARN or `name:qualifier` also names a qualifier.
    let (function, in_name) = match function.rsplit_once(":function:") {
        Some((_, rest)) => match rest.split_once(':') {
            Some((f, q)) => (f.to_string(), Some(q.to_string())),
            None => (rest.to_string(), None),
        },
        None => match function.split_once(':') {
            Some((f, q)) => (f.to_string(), Some(q.to_string())),
            None => (function.clone(), None),
        },
    };
    let qualifier = query
        .unwrap_or_default()
        .split('&')
        .find_map(|kv| kv.strip_prefix("Qualifier="))
        .map(|q| super::partition::url_decode(q, true))
        .or(in_name);
    Some(UrlCall {
        function,
        qualifier,
        method: method.clone(),
    })
}

/// Which qualifier each function's URL has.
#[derive(Debug, Clone, Default)]
pub struct UrlQualifiers(HashMap<String, Option<String>>);

impl UrlQualifiers {
    /// Lambda's answer when the call names a qualifier the URL does not have:
    /// (status, error code, message).
    pub fn refuse(&self, c: &UrlCall) -> Option<(u16, String, String)> {
        if c.method == http::Method::POST {
            return None;
        }
        let has = self.0.get(&c.function).cloned().unwrap_or(None);
        (has != c.qualifier).then(|| {
            (
                404,
                "ResourceNotFoundException".to_string(),
                "The resource you requested does not exist.".to_string(),
            )
        })
    }

    /// Remembers what a call moto answered `status` did.
    pub fn observe(&mut self, c: &UrlCall, status: u16) {
        if !(200..300).contains(&status) {
            return;
        }
        match c.method {
            http::Method::POST => {
                self.0.insert(c.function.clone(), c.qualifier.clone());
            }
            http::Method::DELETE => {
                self.0.remove(&c.function);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_belongs_to_the_qualifier_it_was_created_with() {
        let mut q = UrlQualifiers::default();
        let call = |m: http::Method, query: Option<&str>| {
            parse(&m, "/2021-10-31/functions/claude-proxy-x/url", query).unwrap()
        };
        // Made before releases (or straight in moto): the unqualified function's.
        assert!(q
            .refuse(&call(http::Method::GET, Some("Qualifier=live")))
            .is_some());
        assert!(q.refuse(&call(http::Method::GET, None)).is_none());
        q.observe(&call(http::Method::POST, Some("Qualifier=live")), 201);
        assert!(q
            .refuse(&call(http::Method::GET, Some("Qualifier=live")))
            .is_none());
        assert!(q.refuse(&call(http::Method::GET, None)).is_some());
        assert!(q.refuse(&call(http::Method::DELETE, None)).is_some());
        q.observe(&call(http::Method::DELETE, Some("Qualifier=live")), 204);
        assert!(q.refuse(&call(http::Method::GET, None)).is_none());
        let named = parse(
            &http::Method::GET,
            "/2021-10-31/functions/claude-proxy-x%3Alive/url",
            None,
        )
        .unwrap();
        assert_eq!(named.qualifier.as_deref(), Some("live"));
        assert_eq!(named.function, "claude-proxy-x");
    }
}
