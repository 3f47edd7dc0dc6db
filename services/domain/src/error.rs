//! The one error type of scalable-chat.
//!
//! Every failure a client can see is an [`Error`]: a stable machine-readable [`ErrorCode`] and a
//! human-readable message. It crosses the RPC bus unchanged and is turned into an HTTP response in
//! exactly one place (`chat_http::ApiError`), with the shape
//! `{ "error": { "code": "...", "message": "..." } }`.

use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Stable, machine-readable error codes. Clients may switch on these; they never change meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed (bad JSON, wrong types, missing fields).
    BadRequest,
    /// The request is well-formed but a value is not acceptable.
    Validation,
    /// Missing, invalid or expired credentials.
    Unauthorized,
    /// Authenticated, but not allowed to do this.
    Forbidden,
    /// The resource does not exist (or the caller may not know it exists).
    NotFound,
    /// The HTTP method is not supported on this path.
    MethodNotAllowed,
    /// The resource already exists (for example a registered email).
    Conflict,
    /// The request body is larger than allowed.
    PayloadTooLarge,
    /// The request body has a content type the endpoint does not accept.
    UnsupportedMediaType,
    /// The requested byte range lies outside the file.
    RangeNotSatisfiable,
    /// Too many attempts; retry after the number of seconds in `Retry-After`.
    RateLimited,
    /// A dependency or service is unavailable; retrying later may succeed.
    Unavailable,
    /// A service did not answer in time.
    Timeout,
    /// A bug or an unexpected failure. Details are in the server log, never in the response.
    Internal,
}

impl ErrorCode {
    /// The HTTP status this code maps to.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::BadRequest | ErrorCode::Validation => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::RangeNotSatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Validation => "validation",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::RangeNotSatisfiable => "range_not_satisfiable",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure a client can see. Constructed through the helpers below so that internal details are
/// logged rather than returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{code}: {message}")]
#[serde(rename_all = "camelCase")]
pub struct Error {
    /// Machine-readable code.
    pub code: ErrorCode,
    /// Human-readable message, safe to show to the caller.
    pub message: String,
    /// For [`ErrorCode::RateLimited`]: seconds until a retry may succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
}

/// Shorthand for results carrying [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with a code and a message that is safe to show to the caller.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
            retry_after_secs: None,
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Validation, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Timeout, message)
    }
    /// Too many attempts; the caller may retry after `retry_after_secs`.
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Error {
            code: ErrorCode::RateLimited,
            message: "too many attempts, try again later".into(),
            retry_after_secs: Some(retry_after_secs.max(1)),
        }
    }
    /// An unexpected failure: `detail` goes to the log (at error level), the caller sees a generic
    /// message. Never pass a secret as `detail`.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(ErrorCode::Internal, "internal error")
    }
    /// A dependency failed: logged with `detail`, reported to the caller as unavailable.
    pub fn dependency(what: &str, detail: impl std::fmt::Display) -> Self {
        tracing::warn!(dependency = what, error = %detail, "dependency failure");
        Self::new(ErrorCode::Unavailable, format!("{what} is unavailable"))
    }
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// The `error` member of [`ErrorBody`].
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable code, for example `unauthorized`.
    pub code: ErrorCode,
    /// Human-readable message.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_as_their_wire_names() {
        for code in [
            ErrorCode::BadRequest,
            ErrorCode::RateLimited,
            ErrorCode::PayloadTooLarge,
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
    }

    #[test]
    fn internal_errors_never_expose_their_detail() {
        let e = Error::internal("connection string mongodb://user:hunter2@db");
        assert_eq!(e.message, "internal error");
        assert_eq!(e.code.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn error_survives_a_round_trip_over_the_wire() {
        let e = Error::rate_limited(30);
        let back: Error = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(back, e);
    }
}
