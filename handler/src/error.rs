//! Every error a client sees, as a typed value that knows its HTTP status and its
//! Anthropic error type, rendered as `{"type":"error","error":{"type","message"}}`.

use bytes::Bytes;
use http::StatusCode;

/// An error answered by the proxy itself (errors the upstream answers are passed through
/// with the upstream's status and Anthropic-shaped body, keys redacted; see
/// `routes::pass_through` for the ones that become a 502).
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Malformed or invalid request, or a policy violation.
    #[error("{0}")]
    InvalidRequest(String),
    /// Missing or wrong caller token.
    #[error("{0}")]
    Authentication(String),
    /// No such route.
    #[error("{0}")]
    NotFound(String),
    /// The route exists, but not for this method.
    #[error("method {method} is not allowed on {path}; allowed: {allowed}")]
    MethodNotAllowed {
        method: String,
        path: String,
        allowed: &'static str,
    },
    /// The body is not JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The body is larger than the configured limit.
    #[error(
        "request body is {size} bytes, larger than the limit of {limit} bytes (MAX_REQUEST_BYTES)"
    )]
    RequestTooLarge { size: usize, limit: usize },
    /// The request deadline passed before the upstream answered.
    #[error("{0}")]
    Timeout(String),
    /// The caller was too slow sending its request (local server).
    #[error("{0}")]
    RequestTimeout(String),
    /// The upstream could not be reached, or answered something that is not the Messages API.
    #[error("{0}")]
    Upstream(String),
    /// Something on our side failed (e.g. the secret cannot be read).
    #[error("{0}")]
    Internal(String),
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::Authentication(_) => StatusCode::UNAUTHORIZED,
            ProxyError::NotFound(_) => StatusCode::NOT_FOUND,
            ProxyError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ProxyError::RequestTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ProxyError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ProxyError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The Anthropic error type (`error.type` in the body).
    pub fn error_type(&self) -> &'static str {
        match self {
            ProxyError::InvalidRequest(_)
            | ProxyError::MethodNotAllowed { .. }
            | ProxyError::UnsupportedMediaType(_) => "invalid_request_error",
            ProxyError::Authentication(_) => "authentication_error",
            ProxyError::NotFound(_) => "not_found_error",
            ProxyError::RequestTooLarge { .. } => "request_too_large",
            ProxyError::Timeout(_) | ProxyError::RequestTimeout(_) => "timeout_error",
            ProxyError::Upstream(_) | ProxyError::Internal(_) => "api_error",
        }
    }

    /// The JSON body: `{"type":"error","error":{"type":..,"message":..}}`.
    pub fn to_json(&self) -> serde_json::Value {
        error_json(self.error_type(), &self.to_string())
    }

    pub fn body(&self) -> Bytes {
        Bytes::from(self.to_json().to_string())
    }
}

/// The Anthropic error shape.
pub fn error_json(error_type: &str, message: &str) -> serde_json::Value {
    serde_json::json!({
        "type": "error",
        "error": { "type": error_type, "message": message },
    })
}

/// Errors building the application from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid value for {name}: {message}")]
    Invalid { name: &'static str, message: String },
    #[error("no Anthropic API key source: set SECRET_ARN (on Lambda) or ANTHROPIC_API_KEY (local runs only)")]
    NoSecretSource,
    #[error("building the upstream HTTP client: {0}")]
    HttpClient(String),
    #[error(transparent)]
    AwsEnvironment(#[from] crate::aws::AwsEnvError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_have_the_anthropic_shape() {
        let e = ProxyError::Timeout("deadline".into());
        assert_eq!(e.status(), StatusCode::GATEWAY_TIMEOUT);
        let v = e.to_json();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "timeout_error");
        assert_eq!(v["error"]["message"], "deadline");
    }
}
