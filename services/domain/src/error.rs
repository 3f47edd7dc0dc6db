//! The one error type of scalable-chat.
//!
//! Every failure a client can see is an [`Error`]: a category ([`ErrorCode`], which fixes the
//! HTTP status), a specific stable `reason` (`email_taken`, `not_group_admin`, …) and a
//! human-readable message. It crosses the RPC bus unchanged and is turned into an HTTP response
//! in exactly one place (`chat_http::ApiError`), with the shape
//! `{ "error": { "code": "forbidden", "reason": "not_group_admin", "message": "..." } }`.
//!
//! Each service declares why it refuses a request as a typed enum with [`error_reasons!`]
//! (`contracts::auth::AuthError`, `contracts::groups::GroupError`, …): the variant fixes the
//! category and the reason once, and [`all_reasons`] lists them for the OpenAPI document and the
//! README. Failures are logged where they leave the process (the HTTP response, the RPC reply,
//! the socket acknowledgement), not where they are made: [`Error::internal`] and
//! [`Error::dependency`] keep their detail for that log and never send it.

use std::borrow::Cow;

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
    /// Every code.
    pub const ALL: [ErrorCode; 14] = [
        ErrorCode::BadRequest,
        ErrorCode::Validation,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Conflict,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::RangeNotSatisfiable,
        ErrorCode::RateLimited,
        ErrorCode::Unavailable,
        ErrorCode::Timeout,
        ErrorCode::Internal,
    ];

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

/// A failure a client can see. Constructed from a service's reason enum, or through the helpers
/// below for the generic categories; internal details are kept for the log, never returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{code}: {message}")]
#[serde(rename_all = "camelCase")]
pub struct Error {
    /// Machine-readable category.
    pub code: ErrorCode,
    /// Machine-readable specific reason; the code's own name for the generic categories. Empty
    /// from a peer older than reasons (read it through [`Error::reason`]).
    #[serde(default)]
    reason: Cow<'static, str>,
    /// Human-readable message, safe to show to the caller.
    pub message: String,
    /// For [`ErrorCode::RateLimited`]: seconds until a retry may succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
    /// What went wrong inside, for the log at the boundary. Never serialised.
    #[serde(skip)]
    detail: Option<String>,
}

/// Shorthand for results carrying [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with a code and a message that is safe to show to the caller.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::with_reason(code, code.as_str(), message)
    }
    /// An error with a specific reason (what [`error_reasons!`] enums convert into).
    pub fn with_reason(code: ErrorCode, reason: &'static str, message: impl Into<String>) -> Self {
        Error {
            code,
            reason: Cow::Borrowed(reason),
            message: message.into(),
            retry_after_secs: None,
            detail: None,
        }
    }
    /// The specific reason: what clients switch on.
    pub fn reason(&self) -> &str {
        if self.reason.is_empty() {
            self.code.as_str()
        } else {
            &self.reason
        }
    }
    /// Whether retrying the same request later may succeed: the service or a dependency failed,
    /// rather than the request being refused.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.code,
            ErrorCode::Unavailable | ErrorCode::Timeout | ErrorCode::Internal
        )
    }
    /// What went wrong inside, for the log; `None` for a refusal the caller caused.
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }
    /// Logs an error where it leaves the process (an HTTP response, an RPC reply, a socket
    /// acknowledgement). A failure made here has its detail and is logged at error (internal) or
    /// warning level; anything else (a refusal, or a failure another role made and logged
    /// already, since the detail never crosses the wire) at debug level.
    pub fn log_at_boundary(&self, boundary: &str) {
        match &self.detail {
            Some(detail) if self.code == ErrorCode::Internal => tracing::error!(
                boundary, code = %self.code, detail = detail.as_str(), "request failed"
            ),
            Some(detail) => tracing::warn!(
                boundary, code = %self.code, reason = self.reason(), detail = detail.as_str(), "request failed"
            ),
            None => tracing::debug!(
                boundary, code = %self.code, reason = self.reason(), message = self.message.as_str(), "request refused"
            ),
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
    /// The same error, telling the caller to retry after `secs` (`Retry-After`, `retryAfter`).
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs.max(1));
        self
    }
    /// Too many attempts; the caller may retry after `retry_after_secs`.
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Error {
            retry_after_secs: Some(retry_after_secs.max(1)),
            ..Self::new(ErrorCode::RateLimited, "too many attempts, try again later")
        }
    }
    /// An unexpected failure: `detail` is logged at the boundary (at error level), the caller
    /// sees a generic message. Never pass a secret as `detail`.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Error {
            detail: Some(detail.to_string()),
            ..Self::new(ErrorCode::Internal, "internal error")
        }
    }
    /// A dependency failed: `detail` is logged at the boundary, the caller is told which
    /// dependency is unavailable.
    pub fn dependency(what: &str, detail: impl std::fmt::Display) -> Self {
        Error {
            detail: Some(format!("{what}: {detail}")),
            ..Self::new(ErrorCode::Unavailable, format!("{what} is unavailable"))
        }
    }
}

/// One specific reason, as documented: the README's table and the OpenAPI `reason` enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReasonDoc {
    /// The wire name, for example `not_group_admin`.
    pub reason: &'static str,
    /// Its category, which fixes the HTTP status.
    pub code: ErrorCode,
    /// When it is returned, as written in the source (doc-comment lines joined).
    pub doc: &'static str,
}

impl ReasonDoc {
    /// When it is returned, on one line.
    pub fn when(&self) -> String {
        self.doc.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

/// Declares a service's refusals: a `thiserror` enum whose variants each carry their category
/// and stable reason, convertible into [`Error`], with the documentation table `REASONS`.
///
/// ```ignore
/// error_reasons! {
///     /// Why the group role refuses a request.
///     pub enum GroupError {
///         /// The caller is not an admin of the group.
///         #[error("only group admins can do this")]
///         NotGroupAdmin => (Forbidden, "not_group_admin"),
///     }
/// }
/// ```
#[macro_export]
macro_rules! error_reasons {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $(
                $(#[doc = $doc:literal])*
                #[error($($message:tt)+)]
                $variant:ident $({ $($field:ident : $type:ty),* $(,)? })? => ($code:ident, $reason:literal),
            )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
        pub enum $name {
            $(
                $(#[doc = $doc])*
                #[error($($message)+)]
                $variant $({ $($field: $type),* })?,
            )+
        }

        impl $name {
            /// Every reason of this enum, documented.
            pub const REASONS: &'static [$crate::error::ReasonDoc] = &[$(
                $crate::error::ReasonDoc {
                    reason: $reason,
                    code: $crate::error::ErrorCode::$code,
                    doc: concat!($($doc),*),
                },
            )+];

            /// The stable wire name of this reason.
            pub fn reason(&self) -> &'static str {
                match self {
                    $(Self::$variant { .. } => $reason,)+
                }
            }

            /// The category, which fixes the HTTP status.
            pub fn code(&self) -> $crate::error::ErrorCode {
                match self {
                    $(Self::$variant { .. } => $crate::error::ErrorCode::$code,)+
                }
            }
        }

        impl From<$name> for $crate::error::Error {
            fn from(e: $name) -> Self {
                $crate::error::Error::with_reason(e.code(), e.reason(), e.to_string())
            }
        }
    };
}

/// The README's table of reasons (between its `reasons` markers), as Markdown.
pub fn reasons_table() -> String {
    let mut table = String::from("| `reason` | `code` (HTTP status) | When |\n|---|---|---|\n");
    for r in all_reasons() {
        table.push_str(&format!(
            "| `{}` | `{}` ({}) | {} |\n",
            r.reason,
            r.code,
            r.code.status().as_u16(),
            r.when()
        ));
    }
    table
}

/// Every value `reason` can take: the specific reasons, then each code's own name that is not
/// one of them (what the documents enumerate).
pub fn reason_names() -> Vec<&'static str> {
    let mut names: Vec<&str> = all_reasons().iter().map(|r| r.reason).collect();
    for code in ErrorCode::ALL {
        if !names.contains(&code.as_str()) {
            names.push(code.as_str());
        }
    }
    names
}

/// Every specific reason any role returns, for the OpenAPI document and the README.
pub fn all_reasons() -> Vec<ReasonDoc> {
    use crate::contracts::messages::MessageError;
    use crate::contracts::{assets::AssetError, auth::AuthError, groups::GroupError};
    let mut all = Vec::new();
    all.extend_from_slice(RequestError::REASONS);
    all.extend_from_slice(AuthError::REASONS);
    all.extend_from_slice(GroupError::REASONS);
    all.extend_from_slice(MessageError::REASONS);
    all.extend_from_slice(AssetError::REASONS);
    all
}

error_reasons! {
    /// Refusals of any request, before a service looks at it.
    pub enum RequestError {
        /// No `Authorization: Bearer` header.
        #[error("missing Authorization: Bearer token")]
        MissingToken => (Unauthorized, "missing_token"),
        /// The `Authorization` header is not `Bearer <token>`.
        #[error("Authorization must be: Bearer <access token>")]
        MalformedAuthorization => (Unauthorized, "malformed_authorization"),
        /// The access token is malformed, signed by an unknown key, expired, or for another
        /// issuer or audience.
        #[error("invalid or expired access token")]
        InvalidToken => (Unauthorized, "invalid_token"),
        /// The path names no route.
        #[error("no such route")]
        NoSuchRoute => (NotFound, "no_such_route"),
        /// The request body stopped arriving for longer than `HTTP_BODY_IDLE_TIMEOUT_SECONDS`.
        #[error("the request body stopped arriving")]
        BodyStalled => (BadRequest, "body_stalled"),
        /// The process already serves as many requests (`HTTP_MAX_IN_FLIGHT`) or waits for as
        /// many socket commands (`CHAT_MAX_PENDING_COMMANDS`) as it may, or (embedded mode) the
        /// message role is too far behind on its in-process log: retry after `Retry-After`
        /// (`retryAfter` in a socket ack) seconds; a send with the same `clientMessageId`.
        #[error("the server is overloaded; retry in a moment")]
        Overloaded => (Unavailable, "overloaded"),
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
    /// Machine-readable category, for example `forbidden`; it fixes the HTTP status.
    pub code: ErrorCode,
    /// Machine-readable specific reason, for example `not_group_admin` (the table in the
    /// README lists them all); the category's own name when there is nothing more specific.
    #[schema(example = "not_group_admin")]
    pub reason: String,
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
    fn reasons_are_unique_and_snake_case() {
        let all = all_reasons();
        let mut names: Vec<&str> = all.iter().map(|r| r.reason).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all.len(), "a reason is declared twice");
        for r in &all {
            assert!(
                r.reason.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{} is not snake_case",
                r.reason
            );
            assert!(!r.when().is_empty(), "{} is not documented", r.reason);
        }
    }

    #[test]
    fn a_reason_fixes_code_status_and_message() {
        let e = Error::from(RequestError::InvalidToken);
        assert_eq!(e.code, ErrorCode::Unauthorized);
        assert_eq!(e.reason(), "invalid_token");
        assert_eq!(e.message, "invalid or expired access token");
        assert_eq!(Error::not_found("x").reason(), "not_found");
    }

    #[test]
    fn a_reply_from_an_older_peer_has_its_code_as_reason() {
        let e: Error = serde_json::from_str(r#"{"code":"conflict","message":"taken"}"#).unwrap();
        assert_eq!(e.reason(), "conflict");
    }

    #[test]
    fn detail_is_kept_for_the_log_and_never_serialised() {
        let e = Error::dependency("mongodb", "auth failed for user:hunter2");
        assert!(e.detail().unwrap().contains("hunter2"));
        assert!(!serde_json::to_string(&e).unwrap().contains("hunter2"));
    }

    #[test]
    fn error_survives_a_round_trip_over_the_wire() {
        let e = Error::rate_limited(30);
        let back: Error = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(back, e);
    }
}
