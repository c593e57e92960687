//! Bedrock's errors in Anthropic terms: exception names and HTTP statuses to the Anthropic
//! status and error type, SDK errors (no answer, unreadable answer) and event-stream
//! exceptions.

use crate::upstream::RetryPolicy;
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::types::error::ResponseStreamError;
use http::{HeaderMap, StatusCode};

/// A Bedrock error, in Anthropic terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BedrockFailure {
    pub status: StatusCode,
    pub error_type: &'static str,
    pub message: String,
    /// No answer from Bedrock at all (connection, DNS, TLS): retried like a connection error.
    pub unreachable: bool,
}

impl BedrockFailure {
    pub(super) fn retryable(&self) -> bool {
        self.unreachable || RetryPolicy::should_retry(self.status, &HeaderMap::new())
    }
}

/// Bedrock's exception names → the Anthropic status and error type.
///
/// `ModelNotReadyException` and `ServiceUnavailableException` become 529 `overloaded_error`
/// (the Anthropic signal for "try again shortly"); `ServiceQuotaExceededException` is a 429.
pub fn classify(
    code: Option<&str>,
    message: Option<&str>,
    http_status: Option<u16>,
) -> BedrockFailure {
    let (status, error_type) = match code.unwrap_or("") {
        "ThrottlingException" | "throttlingException" | "ServiceQuotaExceededException" => {
            (429, "rate_limit_error")
        }
        "ValidationException" | "validationException" => (400, "invalid_request_error"),
        "AccessDeniedException" => (403, "permission_error"),
        "ResourceNotFoundException" => (404, "not_found_error"),
        "ModelNotReadyException"
        | "ServiceUnavailableException"
        | "serviceUnavailableException" => (529, "overloaded_error"),
        "ModelTimeoutException" | "modelTimeoutException" => (504, "timeout_error"),
        "InternalServerException"
        | "internalServerException"
        | "ModelErrorException"
        | "ModelStreamErrorException"
        | "modelStreamErrorException" => (500, "api_error"),
        _ => match http_status {
            Some(400) => (400, "invalid_request_error"),
            Some(401) | Some(403) => (403, "permission_error"),
            Some(404) => (404, "not_found_error"),
            Some(429) => (429, "rate_limit_error"),
            Some(503) => (529, "overloaded_error"),
            _ => (500, "api_error"),
        },
    };
    let name = code.unwrap_or("error");
    let message = match message {
        Some(m) if !m.is_empty() => format!("Amazon Bedrock {name}: {m}"),
        _ => format!("Amazon Bedrock {name}"),
    };
    BedrockFailure {
        status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        error_type,
        message,
        unreachable: false,
    }
}

pub(super) fn sdk_failure<E, R>(e: &SdkError<E, R>, status: impl Fn(&R) -> u16) -> BedrockFailure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match e {
        SdkError::ServiceError(se) => {
            classify(se.err().code(), se.err().message(), Some(status(se.raw())))
        }
        SdkError::ResponseError(re) => {
            let mut f = classify(None, None, Some(status(re.raw())));
            f.status = StatusCode::BAD_GATEWAY;
            f.error_type = "api_error";
            f.message = format!(
                "Amazon Bedrock answered something the SDK could not read: {}",
                aws_sdk_bedrockruntime::error::DisplayErrorContext(e)
            );
            f
        }
        _ => BedrockFailure {
            status: StatusCode::BAD_GATEWAY,
            error_type: "api_error",
            message: format!(
                "could not reach Amazon Bedrock: {}",
                aws_sdk_bedrockruntime::error::DisplayErrorContext(e)
            ),
            unreachable: true,
        },
    }
}

pub(super) fn http_status(r: &aws_sdk_bedrockruntime::config::http::HttpResponse) -> u16 {
    r.status().as_u16()
}

pub(super) fn stream_failure<R: std::fmt::Debug>(
    e: &SdkError<ResponseStreamError, R>,
) -> BedrockFailure {
    match e {
        SdkError::ServiceError(se) => {
            let err = se.err();
            let code = match err {
                ResponseStreamError::ThrottlingException(_) => Some("ThrottlingException"),
                ResponseStreamError::ValidationException(_) => Some("ValidationException"),
                ResponseStreamError::ModelTimeoutException(_) => Some("ModelTimeoutException"),
                ResponseStreamError::ModelStreamErrorException(_) => {
                    Some("ModelStreamErrorException")
                }
                ResponseStreamError::ServiceUnavailableException(_) => {
                    Some("ServiceUnavailableException")
                }
                ResponseStreamError::InternalServerException(_) => Some("InternalServerException"),
                other => other.code(),
            };
            classify(code, err.message(), None)
        }
        other => BedrockFailure {
            status: StatusCode::BAD_GATEWAY,
            error_type: "api_error",
            message: format!(
                "the Amazon Bedrock event stream broke: {}",
                aws_sdk_bedrockruntime::error::DisplayErrorContext(other)
            ),
            unreachable: false,
        },
    }
}
