//! The auth role's RPC patterns (seed §Auth Service) and the bodies of the `/auth` and `/users`
//! endpoints. Request types holding a password deliberately do not implement `Debug`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::Page;
use crate::rpc_pattern as pattern;
use crate::tokens::PublicKeyJwk;

/// `POST /auth/register` body.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegisterBody {
    #[schema(example = "John")]
    pub first_name: String,
    #[schema(example = "Doe")]
    pub last_name: String,
    #[schema(example = "john@example.com")]
    pub email: String,
    /// 8 to 128 characters.
    #[schema(example = "securePassword123")]
    pub password: String,
}

/// `POST /auth/login` body.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginBody {
    #[schema(example = "john@example.com")]
    pub email: String,
    #[schema(example = "securePassword123")]
    pub password: String,
}

/// The `user.login` request: the body plus the client address the gateway saw (for rate limits).
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
    pub client_address: Option<String>,
}

/// `POST /auth/refresh` and `POST /auth/logout` body.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefreshBody {
    /// The opaque refresh token from login, register or the last refresh.
    pub refresh_token: String,
}

/// `PATCH /users/me` body: only the fields present change.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateMeBody {
    #[serde(
        default,
        deserialize_with = "super::present::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = String)]
    pub first_name: Option<String>,
    #[serde(
        default,
        deserialize_with = "super::present::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = String)]
    pub last_name: Option<String>,
    /// An image the caller uploaded (`/assets/<id>`; every signed-in user can then see it) or an
    /// http(s) URL; `null` removes the picture.
    #[serde(
        default,
        with = "super::double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub profile_url: Option<Option<String>>,
}

/// The `user.update` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateUser {
    pub user_id: String,
    pub body: UpdateMeBody,
}

/// A user as clients see it. There is no password field at all: hashes never leave auth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    #[schema(example = "665f1f77bcf86cd799439011")]
    pub id: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_url: Option<String>,
    /// When the user's last socket disconnected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Access and refresh tokens.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenPair {
    /// JWT for `Authorization: Bearer ...` and the socket handshake.
    pub access_token: String,
    /// Opaque; exchange it at `/auth/refresh`. Each refresh token works once.
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Access-token lifetime in seconds.
    pub expires_in: u64,
    /// Refresh-token lifetime in seconds.
    pub refresh_expires_in: u64,
}

/// The answer to register, login and refresh.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthSession {
    pub user: UserView,
    #[serde(flatten)]
    pub tokens: TokenPair,
}

/// Names one user.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserRef {
    pub user_id: String,
}

/// `GET /users` query.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListUsersQuery {
    /// Page number, from 1. Default 1.
    pub page: Option<u32>,
    /// Page size. Default 10, capped at 100.
    pub limit: Option<u32>,
    /// Case-insensitive match on first name, last name and email; every word must match.
    pub search: Option<String>,
}

/// `user.verify` request (the seed's token check, for roles that prefer asking auth).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyRequest {
    pub token: String,
}

/// Who a verified token belongs to.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifiedUser {
    pub user_id: String,
    pub email: String,
}

pattern!(/// Create an account and log it in.
    UserRegister, "user.register", RegisterBody => AuthSession);
pattern!(/// Check credentials and issue tokens.
    UserLogin, "user.login", LoginRequest => AuthSession);
pattern!(/// Exchange a refresh token for a new pair (rotation; reuse revokes the family).
    TokenRefresh, "token.refresh", RefreshBody => AuthSession);
pattern!(/// Verify an access token.
    UserVerify, "user.verify", VerifyRequest => VerifiedUser);
pattern!(/// Revoke the refresh-token family of a session.
    UserLogout, "user.logout", RefreshBody => ());
pattern!(/// Change the caller's name or profile picture.
    UserUpdate, "user.update", UpdateUser => UserView);
pattern!(/// The calling user's profile.
    UserMe, "user.me", UserRef => UserView);
pattern!(/// One user by id.
    UserGet, "user.get", UserRef => UserView);
pattern!(/// Users, paginated and searchable.
    UserList, "user.list", ListUsersQuery => Page<UserView>);
/// `user.presence` request: the user went offline at `at`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastSeen {
    pub user_id: String,
    pub at: DateTime<Utc>,
}

pattern!(/// Record when a user was last online.
    UserLastSeen, "user.last_seen", LastSeen => ());

/// Most users one `user.last_seen_of` request names.
pub const MAX_LAST_SEEN_IDS: usize = 5000;

/// `user.last_seen_of` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsersRef {
    pub user_ids: Vec<String>,
}

/// When a user was last online (`None`: not since they registered).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastSeenView {
    pub user_id: String,
    pub last_seen_at: Option<DateTime<Utc>>,
}

pattern!(/// When each of the named users was last online (internal: the chat role's presence
    /// snapshot); unknown ids are left out.
    UsersLastSeen, "user.last_seen_of", UsersRef => Vec<LastSeenView>);
pattern!(/// The public keys that verify access tokens.
    AuthKeys, "auth.keys", () => Vec<PublicKeyJwk>);

crate::error_reasons! {
    /// Why the auth role, or a value it validates, refuses a request.
    pub enum AuthError {
        /// Registration with an email that already has an account.
        #[error("an account with this email already exists")]
        EmailTaken => (Conflict, "email_taken"),
        /// Not a plausible email address.
        #[error("email must be a valid address like name@example.com")]
        InvalidEmail => (Validation, "invalid_email"),
        /// A first or last name that is empty, longer than 100 characters or holds control
        /// characters.
        #[error("{field} must be 1 to 100 characters")]
        InvalidName { field: String } => (Validation, "invalid_name"),
        /// A new password outside the policy.
        #[error("password must be {min} to {max} characters")]
        InvalidPassword { min: usize, max: usize } => (Validation, "invalid_password"),
        /// Login with an unknown email or a wrong password (the same answer for both).
        #[error("invalid email or password")]
        InvalidCredentials => (Unauthorized, "invalid_credentials"),
        /// A refresh token that is unknown, expired or already used (reuse revokes its session).
        #[error("invalid or expired refresh token")]
        InvalidRefreshToken => (Unauthorized, "invalid_refresh_token"),
        /// The account named by a valid token no longer exists.
        #[error("user not found")]
        UserNotFound => (NotFound, "user_not_found"),
        /// A profile update that changes nothing.
        #[error("nothing to change: give firstName, lastName and/or profileUrl")]
        NothingToChange => (Validation, "nothing_to_change"),
        /// A user search longer than 100 characters.
        #[error("search must be at most 100 characters")]
        SearchTooLong => (Validation, "search_too_long"),
    }
}
