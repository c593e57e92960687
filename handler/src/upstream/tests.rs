use super::*;

fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (k, v) in pairs {
        m.insert(*k, v.parse().unwrap());
    }
    m
}

#[test]
fn retryable_statuses_match_the_sdks() {
    let none = HeaderMap::new();
    for s in [408, 409, 429, 500, 502, 503, 504, 529] {
        assert!(
            RetryPolicy::should_retry(StatusCode::from_u16(s).unwrap(), &none),
            "{s}"
        );
    }
    for s in [400, 401, 403, 404, 413, 422] {
        assert!(
            !RetryPolicy::should_retry(StatusCode::from_u16(s).unwrap(), &none),
            "{s}"
        );
    }
    assert!(!RetryPolicy::should_retry(
        StatusCode::TOO_MANY_REQUESTS,
        &h(&[("x-should-retry", "false")])
    ));
    // `x-should-retry: true` does not make a 400 retryable (issue 12: one call became up
    // to nine upstream requests with the SDK's own retries).
    assert!(!RetryPolicy::should_retry(
        StatusCode::BAD_REQUEST,
        &h(&[("x-should-retry", "true")])
    ));
    assert!(RetryPolicy::should_retry(
        StatusCode::SERVICE_UNAVAILABLE,
        &h(&[("x-should-retry", "true")])
    ));
}

#[test]
fn retry_after_as_an_http_date_is_honoured() {
    let p = RetryPolicy::default();
    let in_10s = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(10));
    let d = p.delay(Some(&h(&[("retry-after", &in_10s)])), 0, 0.0);
    // Whole seconds in the date: between 9 and 10 s from now.
    assert!(
        d > Duration::from_secs(8) && d <= Duration::from_secs(10),
        "{d:?}"
    );
    let past = httpdate::fmt_http_date(std::time::SystemTime::now() - Duration::from_secs(5));
    let d = p.delay(Some(&h(&[("retry-after", &past)])), 0, 0.0);
    assert_eq!(
        d, p.initial_delay,
        "a date in the past falls back to backoff"
    );
    let far = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(600));
    let d = p.delay(Some(&h(&[("retry-after", &far)])), 0, 0.0);
    assert_eq!(d, p.initial_delay, "beyond 60 s falls back to backoff");
}

#[test]
fn retry_after_headers_are_honoured_within_60_seconds() {
    let p = RetryPolicy::default();
    assert_eq!(
        p.delay(Some(&h(&[("retry-after", "3")])), 0, 0.0),
        Duration::from_secs(3)
    );
    assert_eq!(
        p.delay(
            Some(&h(&[("retry-after-ms", "250"), ("retry-after", "3")])),
            0,
            0.0
        ),
        Duration::from_millis(250)
    );
    assert_eq!(
        p.delay(Some(&h(&[("retry-after", "0")])), 1, 0.0),
        Duration::ZERO
    );
    // Out of range or unparsable: exponential backoff instead.
    assert_eq!(
        p.delay(Some(&h(&[("retry-after", "120")])), 0, 0.0),
        Duration::from_millis(500)
    );
    assert_eq!(
        p.delay(
            Some(&h(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")])),
            1,
            0.0
        ),
        Duration::from_secs(1)
    );
}

#[test]
fn backoff_doubles_is_capped_and_jittered() {
    let p = RetryPolicy::default();
    let d: Vec<_> = (0..6).map(|n| p.delay(None, n, 0.0)).collect();
    assert_eq!(
        d,
        [500, 1000, 2000, 4000, 8000, 8000].map(Duration::from_millis)
    );
    assert_eq!(p.delay(None, 0, 1.0), Duration::from_millis(375));
    assert_eq!(p.delay(None, 10, 1.0), Duration::from_secs(6));
    assert_eq!(p.delay(None, 1000, 0.5), Duration::from_millis(7000));
}

#[test]
fn pass_through_headers() {
    for n in [
        "request-id",
        "anthropic-ratelimit-tokens-remaining",
        "retry-after",
        "retry-after-ms",
        "x-should-retry",
        "content-type",
    ] {
        assert!(is_pass_through(n), "{n}");
    }
    for n in ["set-cookie", "x-api-key", "content-length", "cf-ray"] {
        assert!(!is_pass_through(n), "{n}");
    }
}
