//! The one place an [`Error`] becomes an HTTP response: its code's status, the JSON error shape
//! `{ "error": { "code": "...", "reason": "...", "message": "..." } }`, and `Retry-After` when
//! rate limited. Failures are logged here, once, with their detail.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use chat_domain::error::{ErrorBody, ErrorDetail};
use chat_domain::Error;

/// An [`Error`] on its way to an HTTP client. Handlers return [`ApiResult`] and use `?` on
/// anything returning `Result<_, Error>`.
#[derive(Debug)]
pub struct ApiError(pub Error);

/// The result of an HTTP handler.
pub type ApiResult<T> = Result<T, ApiError>;

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let error = self.0;
        error.log_at_boundary("http");
        let body = ErrorBody {
            error: ErrorDetail {
                code: error.code,
                reason: error.reason().to_string(),
                message: error.message,
            },
        };
        let mut response = (error.code.status(), axum::Json(body)).into_response();
        if let Some(secs) = error.retry_after_secs {
            if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}
