use super::*;

#[test]
fn routing() {
    assert_eq!(route(&Method::POST, "/").unwrap(), Route::Chat);
    assert_eq!(route(&Method::POST, "/chat/").unwrap(), Route::Chat);
    assert_eq!(
        route(&Method::POST, "/v1/messages").unwrap(),
        Route::Messages
    );
    assert_eq!(
        route(&Method::POST, "/v1/messages/count_tokens").unwrap(),
        Route::CountTokens
    );
    assert_eq!(route(&Method::GET, "/health").unwrap(), Route::Health);
    assert_eq!(route(&Method::GET, "/chat").unwrap_err().status(), 405);
    assert_eq!(
        route(&Method::DELETE, "/v1/messages").unwrap_err().status(),
        405
    );
    assert_eq!(
        route(&Method::POST, "/v2/messages").unwrap_err().status(),
        404
    );
}
