//! The gateway role: the public REST API (seed §API Endpoints). Handlers validate the request's
//! shape, authenticate the caller with the access token (public key only), and call the owning
//! role over RPC; the reply's error code becomes the HTTP status in one place
//! ([`chat_domain::Error`]'s `IntoResponse`).

mod assets;
pub use assets::{rpc_handlers as asset_rpc_handlers, AssetOwner};
mod contract;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use chat_domain::assets::AssetLimits;
use chat_domain::contracts::assets::*;
use chat_domain::contracts::auth::*;
use chat_domain::contracts::groups::*;
use chat_domain::contracts::messages::*;
use chat_domain::contracts::Page;
use chat_domain::error::{ErrorBody, RequestError};
use chat_domain::tokens::{AccessClaims, PublicKeyJwk, TokenVerifier};
use chat_domain::Error;
use chat_http::{ApiError, ApiResult, Ctx, Json, Query};
use chat_ports::assets::AssetStore;
use chat_ports::rpc::RpcClient;
use chat_ports::store::RateLimiter;
use tokio_util::sync::CancellationToken;
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// What the gateway's handlers share.
#[derive(Clone)]
pub struct Gateway {
    pub rpc: RpcClient,
    pub verifier: Arc<TokenVerifier>,
    /// Take the client address from `X-Forwarded-For` (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
    /// Uploads and stored files.
    pub assets: Arc<dyn AssetStore>,
    pub asset_limits: AssetLimits,
    /// Request counters per user and per client address, shared by the replicas.
    pub limiter: Arc<dyn RateLimiter>,
    /// Sessions ended before their access tokens expire.
    pub revocations: Arc<dyn chat_ports::store::Revocations>,
    /// `API_MAX_REQUESTS_PER_USER`, `API_MAX_REQUESTS_PER_ADDRESS`, `API_RATE_WINDOW_SECONDS`.
    pub request_limits: RequestLimits,
}

/// How many REST requests a user and a client address may make per window (0: unlimited).
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    pub per_user: u32,
    pub per_address: u32,
    pub window: std::time::Duration,
}

impl Gateway {
    /// Counts one request under `key`; `429 rate_limited` with `Retry-After` beyond `limit`.
    /// When the counters cannot be reached the request goes through: a Redis outage must not
    /// take the API down with it.
    async fn count(&self, key: String, limit: u32) -> Result<(), Error> {
        if limit == 0 {
            return Ok(());
        }
        match self
            .limiter
            .hit(&key, limit, self.request_limits.window)
            .await
        {
            Ok(None) => Ok(()),
            Ok(Some(retry_after)) => Err(Error::rate_limited(retry_after)),
            Err(e) => {
                tracing::warn!(error = %e, "request counters unavailable; not limiting");
                Ok(())
            }
        }
    }
}

/// Every REST request counts against its client address.
async fn limit_per_address(
    State(gw): State<Gateway>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let address = client_address(&gw, request.headers(), peer);
    match gw
        .count(
            format!("api:address:{address}"),
            gw.request_limits.per_address,
        )
        .await
    {
        Ok(()) => next.run(request).await,
        Err(e) => ApiError(e).into_response(),
    }
}

/// The authenticated caller, from `Authorization: Bearer <access token>`.
pub struct AuthUser(pub AccessClaims);

impl FromRequestParts<Gateway> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Gateway,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer_token(&parts.headers)?;
        let claims = state.verifier.verify(token).await?;
        chat_ports::clients::check_session(state.revocations.as_ref(), &claims).await?;
        let limit = state.request_limits.per_user;
        state
            .count(format!("api:user:{}", claims.sub), limit)
            .await?;
        Ok(AuthUser(claims))
    }
}

/// The token of `Authorization: Bearer <access token>`.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Result<&str, Error> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(RequestError::MissingToken)?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| RequestError::MalformedAuthorization.into())
}

fn client_address(state: &Gateway, headers: &HeaderMap, peer: SocketAddr) -> String {
    if state.trust_forwarded_for {
        if let Some(first) = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| v.parse::<std::net::IpAddr>().is_ok())
        {
            return first.to_string();
        }
    }
    peer.ip().to_string()
}

/// `POST /auth/register`
#[utoipa::path(post, path = "/auth/register", tag = "auth", request_body = RegisterBody,
    responses(
        (status = 201, description = "Account created and logged in", body = AuthSession),
        (status = 400, description = "Malformed body or invalid value", body = ErrorBody),
        (status = 409, description = "Email already registered", body = ErrorBody),
    ))]
async fn register(
    State(gw): State<Gateway>,
    Ctx(ctx): Ctx,
    Json(body): Json<RegisterBody>,
) -> ApiResult<impl IntoResponse> {
    let session = gw.rpc.call::<UserRegister>(&body, &ctx).await?;
    Ok((StatusCode::CREATED, axum::Json(session)))
}

/// `POST /auth/login`
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginBody,
    responses(
        (status = 200, description = "Logged in", body = AuthSession),
        (status = 401, description = "Invalid email or password (the same answer for an unknown email)", body = ErrorBody),
        (status = 429, description = "Too many attempts; see Retry-After", body = ErrorBody),
    ))]
async fn login(
    State(gw): State<Gateway>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Ctx(ctx): Ctx,
    Json(body): Json<LoginBody>,
) -> ApiResult<axum::Json<AuthSession>> {
    let request = LoginRequest {
        email: body.email,
        password: body.password,
        client_address: Some(client_address(&gw, &headers, peer)),
    };
    gw.rpc
        .call::<UserLogin>(&request, &ctx)
        .await
        .map(axum::Json)
        .map_err(ApiError)
}

/// `POST /auth/refresh`
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = RefreshBody,
    responses(
        (status = 200, description = "A new token pair; the presented refresh token is spent", body = AuthSession),
        (status = 401, description = "Unknown, expired or already-used refresh token (reuse revokes the whole session)", body = ErrorBody),
    ))]
async fn refresh(
    State(gw): State<Gateway>,
    Ctx(ctx): Ctx,
    Json(body): Json<RefreshBody>,
) -> ApiResult<axum::Json<AuthSession>> {
    gw.rpc
        .call::<TokenRefresh>(&body, &ctx)
        .await
        .map(axum::Json)
        .map_err(ApiError)
}

/// `POST /auth/logout`
#[utoipa::path(post, path = "/auth/logout", tag = "auth", request_body = RefreshBody,
    responses((status = 204, description = "The session's refresh tokens are revoked")))]
async fn logout(
    State(gw): State<Gateway>,
    Ctx(ctx): Ctx,
    Json(body): Json<RefreshBody>,
) -> ApiResult<StatusCode> {
    gw.rpc.call::<UserLogout>(&body, &ctx).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /auth/me`
#[utoipa::path(get, path = "/auth/me", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 200, description = "The calling user", body = UserView),
        (status = 401, description = "Missing, invalid or expired access token", body = ErrorBody),
    ))]
async fn me(
    State(gw): State<Gateway>,
    AuthUser(claims): AuthUser,
    Ctx(ctx): Ctx,
) -> ApiResult<axum::Json<UserView>> {
    gw.rpc
        .call::<UserMe>(
            &UserRef {
                user_id: claims.sub,
            },
            &ctx,
        )
        .await
        .map(axum::Json)
        .map_err(ApiError)
}

/// `GET /users/me`: the same as `GET /auth/me`.
#[utoipa::path(get, path = "/users/me", tag = "users", security(("bearer" = [])),
    responses((status = 200, description = "The calling user", body = UserView)))]
async fn users_me(
    state: State<Gateway>,
    caller: AuthUser,
    ctx: Ctx,
) -> ApiResult<axum::Json<UserView>> {
    me(state, caller, ctx).await
}

/// `PATCH /users/me`
#[utoipa::path(patch, path = "/users/me", tag = "users", security(("bearer" = [])), request_body = UpdateMeBody,
    responses(
        (status = 200, description = "The updated profile", body = UserView),
        (status = 400, description = "Invalid name, or a profileUrl that is not an image the caller uploaded", body = ErrorBody),
    ))]
async fn update_me(
    State(gw): State<Gateway>,
    AuthUser(claims): AuthUser,
    Ctx(ctx): Ctx,
    Json(body): Json<UpdateMeBody>,
) -> ApiResult<axum::Json<UserView>> {
    let request = UpdateUser {
        user_id: claims.sub,
        body,
    };
    gw.rpc
        .call::<UserUpdate>(&request, &ctx)
        .await
        .map(axum::Json)
        .map_err(ApiError)
}

/// `GET /users`
#[utoipa::path(get, path = "/users", tag = "users", security(("bearer" = [])), params(ListUsersQuery),
    responses(
        (status = 200, description = "A page of users", body = Page<UserView>),
        (status = 400, description = "Invalid page, limit or search", body = ErrorBody),
        (status = 401, description = "Missing, invalid or expired access token", body = ErrorBody),
    ))]
async fn list_users(
    State(gw): State<Gateway>,
    _caller: AuthUser,
    Ctx(ctx): Ctx,
    Query(query): Query<ListUsersQuery>,
) -> ApiResult<axum::Json<Page<UserView>>> {
    gw.rpc
        .call::<UserList>(&query, &ctx)
        .await
        .map(axum::Json)
        .map_err(ApiError)
}

/// `GET /users/{id}`
#[utoipa::path(get, path = "/users/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = String, Path, description = "User id")),
    responses(
        (status = 200, description = "The user", body = UserView),
        (status = 404, description = "No such user", body = ErrorBody),
    ))]
async fn get_user(
    State(gw): State<Gateway>,
    _caller: AuthUser,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<UserView>> {
    gw.rpc
        .call::<UserGet>(&UserRef { user_id: id }, &ctx)
        .await
        .map(axum::Json)
        .map_err(ApiError)
}

/// `POST /groups`
#[utoipa::path(post, path = "/groups", tag = "groups", security(("bearer" = [])), request_body = CreateGroupBody,
    responses(
        (status = 201, description = "Group created; the caller is its admin", body = GroupView),
        (status = 200, description = "The direct conversation with that user already existed", body = GroupView),
        (status = 400, description = "Invalid name or unknown member ids", body = ErrorBody),
    ))]
async fn create_group(
    State(gw): State<Gateway>,
    AuthUser(claims): AuthUser,
    Ctx(ctx): Ctx,
    Json(body): Json<CreateGroupBody>,
) -> ApiResult<impl IntoResponse> {
    let created = gw
        .rpc
        .call::<GroupCreate>(
            &CreateGroup {
                caller: claims.sub,
                body,
            },
            &ctx,
        )
        .await?;
    let status = if created.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(created.group)))
}

/// `GET /groups`
#[utoipa::path(get, path = "/groups", tag = "groups", security(("bearer" = [])),
    responses((status = 200, description = "The caller's groups, most recently active first", body = Vec<GroupView>)))]
async fn list_groups(
    State(gw): State<Gateway>,
    AuthUser(claims): AuthUser,
    Ctx(ctx): Ctx,
) -> ApiResult<axum::Json<Vec<GroupView>>> {
    let mut groups = gw
        .rpc
        .call::<GroupList>(
            &CallerRef {
                caller: claims.sub.clone(),
            },
            &ctx,
        )
        .await?;
    let request = SummariesRequest {
        caller: claims.sub,
        group_ids: groups.iter().map(|g| g.id.clone()).collect(),
    };
    // The list still answers without the message role; only the summaries are missing then.
    match gw.rpc.call::<MessageSummaries>(&request, &ctx).await {
        Ok(summaries) => {
            for group in &mut groups {
                if let Some(s) = summaries.iter().find(|s| s.group_id == group.id) {
                    group.last_message = s.last_message.clone().map(Box::new);
                    group.unread_count = Some(s.unread_count);
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "group summaries unavailable"),
    }
    Ok(axum::Json(groups))
}

/// `GET /groups/{id}/messages`
#[utoipa::path(get, path = "/groups/{id}/messages", tag = "messages", security(("bearer" = [])),
    params(("id" = String, Path, description = "Group id"), HistoryQuery),
    responses(
        (status = 200, description = "`before`: newest first; `after`: oldest first (catch-up)", body = HistoryPage),
        (status = 404, description = "No such group, or the caller is not a member", body = ErrorBody),
    ))]
async fn history(
    State(gw): State<Gateway>,
    AuthUser(claims): AuthUser,
    Ctx(ctx): Ctx,
    Path(group_id): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> ApiResult<axum::Json<HistoryPage>> {
    let request = HistoryRequest {
        caller: claims.sub,
        group_id,
        query,
    };
    gw.rpc
        .call::<MessageHistory>(&request, &ctx)
        .await
        .map(axum::Json)
        .map_err(ApiError)
}

/// `GET /groups/{id}/receipts`
#[utoipa::path(get, path = "/groups/{id}/receipts", tag = "messages", security(("bearer" = [])),
    params(("id" = String, Path, description = "Group id")),
    responses(
        (status = 200, description = "Each member's delivered and seen positions (members who sent no receipt yet are left out)", body = Vec<ReceiptPositions>),
        (status = 404, description = "No such group, or the caller is not a member", body = ErrorBody),
    ))]
async fn receipts(
    State(gw): State<Gateway>,
    AuthUser(claims): AuthUser,
    Ctx(ctx): Ctx,
    Path(group_id): Path<String>,
) -> ApiResult<axum::Json<Vec<ReceiptPositions>>> {
    let request = GroupRef {
        caller: claims.sub,
        group_id,
    };
    gw.rpc
        .call::<MessageReceipts>(&request, &ctx)
        .await
        .map(axum::Json)
        .map_err(ApiError)
}

/// `GET /messages/search`
#[utoipa::path(get, path = "/messages/search", tag = "messages", security(("bearer" = [])), params(SearchQuery),
    responses((status = 200, description = "Matching messages in the caller's groups, newest first", body = Vec<MessageView>)))]
async fn search_messages(
    State(gw): State<Gateway>,
    AuthUser(claims): AuthUser,
    Ctx(ctx): Ctx,
    Query(query): Query<SearchQuery>,
) -> ApiResult<axum::Json<Vec<MessageView>>> {
    gw.rpc
        .call::<MessageSearch>(
            &SearchRequest {
                caller: claims.sub,
                query,
            },
            &ctx,
        )
        .await
        .map(axum::Json)
        .map_err(ApiError)
}

/// `GET /groups/{id}`
#[utoipa::path(get, path = "/groups/{id}", tag = "groups", security(("bearer" = [])),
    params(("id" = String, Path, description = "Group id")),
    responses(
        (status = 200, description = "The group", body = GroupView),
        (status = 404, description = "No such group, or the caller is not a member", body = ErrorBody),
    ))]
async fn get_group(
    State(gw): State<Gateway>,
    AuthUser(claims): AuthUser,
    Ctx(ctx): Ctx,
    Path(group_id): Path<String>,
) -> ApiResult<axum::Json<GroupView>> {
    gw.rpc
        .call::<GroupGet>(
            &GroupRef {
                caller: claims.sub,
                group_id,
            },
            &ctx,
        )
        .await
        .map(axum::Json)
        .map_err(ApiError)
}

/// `PATCH /groups/{id}`
#[utoipa::path(patch, path = "/groups/{id}", tag = "groups", security(("bearer" = [])), request_body = UpdateGroupBody,
    params(("id" = String, Path, description = "Group id")),
    responses(
        (status = 200, description = "The updated group", body = GroupView),
        (status = 403, description = "The caller is not an admin", body = ErrorBody),
    ))]
async fn update_group(
    State(gw): State<Gateway>,
    AuthUser(claims): AuthUser,
    Ctx(ctx): Ctx,
    Path(group_id): Path<String>,
    Json(body): Json<UpdateGroupBody>,
) -> ApiResult<axum::Json<GroupView>> {
    gw.rpc
        .call::<GroupUpdate>(
            &UpdateGroup {
                caller: claims.sub,
                group_id,
                body,
            },
            &ctx,
        )
        .await
        .map(axum::Json)
        .map_err(ApiError)
}

/// `POST /groups/{id}/members`
#[utoipa::path(post, path = "/groups/{id}/members", tag = "groups", security(("bearer" = [])), request_body = AddMembersBody,
    params(("id" = String, Path, description = "Group id")),
    responses(
        (status = 200, description = "The group with its new members", body = GroupView),
        (status = 403, description = "The caller is not an admin", body = ErrorBody),
    ))]
async fn add_members(
    State(gw): State<Gateway>,
    AuthUser(claims): AuthUser,
    Ctx(ctx): Ctx,
    Path(group_id): Path<String>,
    Json(body): Json<AddMembersBody>,
) -> ApiResult<axum::Json<GroupView>> {
    let request = AddMembers {
        caller: claims.sub,
        group_id,
        member_ids: body.member_ids,
    };
    gw.rpc
        .call::<GroupAddMembers>(&request, &ctx)
        .await
        .map(axum::Json)
        .map_err(ApiError)
}

/// `DELETE /groups/{id}/members/{userId}`
#[utoipa::path(delete, path = "/groups/{id}/members/{userId}", tag = "groups", security(("bearer" = [])),
    params(("id" = String, Path, description = "Group id"), ("userId" = String, Path, description = "The member to remove")),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "Only admins remove others; anyone may remove themself", body = ErrorBody),
    ))]
async fn remove_member(
    State(gw): State<Gateway>,
    AuthUser(claims): AuthUser,
    Ctx(ctx): Ctx,
    Path((group_id, user_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    gw.rpc
        .call::<GroupRemoveMember>(
            &RemoveMember {
                caller: claims.sub,
                group_id,
                user_id,
            },
            &ctx,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PATCH /groups/{id}/members/{userId}`
#[utoipa::path(patch, path = "/groups/{id}/members/{userId}", tag = "groups", security(("bearer" = [])), request_body = ChangeRoleBody,
    params(("id" = String, Path, description = "Group id"), ("userId" = String, Path, description = "The member whose role changes")),
    responses(
        (status = 200, description = "The group with the member's new role", body = GroupView),
        (status = 403, description = "The caller is not an admin", body = ErrorBody),
        (status = 404, description = "No such group to the caller, or the user is not a member", body = ErrorBody),
        (status = 409, description = "`last_admin`: the group would have no admin left", body = ErrorBody),
    ))]
async fn change_role(
    State(gw): State<Gateway>,
    AuthUser(claims): AuthUser,
    Ctx(ctx): Ctx,
    Path((group_id, user_id)): Path<(String, String)>,
    Json(body): Json<ChangeRoleBody>,
) -> ApiResult<axum::Json<GroupView>> {
    let request = ChangeRole {
        caller: claims.sub,
        group_id,
        user_id,
        role: body.role,
    };
    gw.rpc
        .call::<GroupChangeRole>(&request, &ctx)
        .await
        .map(axum::Json)
        .map_err(ApiError)
}

/// `GET /.well-known/jwks.json`: the public keys that verify access tokens, for other systems.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth",
    responses((status = 200, description = "JSON Web Key Set")))]
async fn jwks(State(gw): State<Gateway>, Ctx(ctx): Ctx) -> ApiResult<impl IntoResponse> {
    let keys: Vec<PublicKeyJwk> = gw.rpc.call::<AuthKeys>(&(), &ctx).await?;
    Ok(axum::Json(serde_json::json!({ "keys": keys })))
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        document_reasons(components);
    }
}

/// Lists every error reason, with when it is returned, on `ErrorDetail.reason`.
fn document_reasons(components: &mut utoipa::openapi::Components) {
    use utoipa::openapi::schema::{Object, Schema, SchemaType, Type};
    use utoipa::openapi::RefOr;
    let Some(RefOr::T(Schema::Object(detail))) = components.schemas.get_mut("ErrorDetail") else {
        return;
    };
    let reasons = chat_domain::error::all_reasons();
    let mut description = String::from(
        "Why exactly; the code's own name when nothing more specific applies. Reasons:",
    );
    for r in &reasons {
        description.push_str(&format!("\n- `{}` ({}): {}", r.reason, r.code, r.when()));
    }
    let names = chat_domain::error::reason_names();
    let mut reason = Object::with_type(SchemaType::Type(Type::String));
    reason.description = Some(description);
    reason.enum_values = Some(names.into_iter().map(Into::into).collect());
    detail.properties.insert("reason".into(), reason.into());
}

/// The OpenAPI document of the REST API, generated from the handlers.
#[derive(OpenApi)]
#[openapi(
    info(title = "scalable-chat", description = "REST API of the scalable-chat gateway. Errors always have the shape {\"error\":{\"code\",\"reason\",\"message\"}}."),
    paths(register, login, refresh, logout, me, users_me, update_me, list_users, get_user, create_group, list_groups, get_group, update_group, add_members, remove_member, change_role, history, receipts, search_messages, jwks,
        assets::upload_chunk, assets::upload_status, assets::abandon_upload, assets::complete_upload, assets::download),
    components(schemas(ErrorBody, chat_domain::ErrorCode, ChunkReceipt, UploadView, CompleteUploadBody, AssetView, assets::UploadChunkForm)),
    modifiers(&BearerAuth),
    tags((name = "auth", description = "Accounts and tokens"), (name = "users", description = "People directory"), (name = "groups", description = "Groups and direct conversations"), (name = "messages", description = "History and search"), (name = "assets", description = "Chunked, resumable uploads and file downloads")),
)]
pub struct ApiDoc;

/// CORS from `CORS_ALLOWED_ORIGINS`: none (same-origin), a list, or `*`.
pub fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

/// The gateway's routes. CORS is not applied here: it must wrap the whole stack (see [`cors`]),
/// or preflight requests would meet the method-not-allowed fallback first.
pub fn router(state: Gateway) -> Router {
    let openapi = contract::document(ApiDoc::openapi(), &state.asset_limits);
    let chunk_body_limit = state.asset_limits.max_upload_request_bytes();
    Router::new()
        .route("/auth/register", post(register))
        .route("/auth/login", post(login))
        .route("/auth/refresh", post(refresh))
        .route("/auth/logout", post(logout))
        .route("/auth/me", get(me))
        .route("/users", get(list_users))
        .route("/users/me", get(users_me).patch(update_me))
        .route("/users/{id}", get(get_user))
        .route("/groups", post(create_group).get(list_groups))
        .route("/groups/{id}", get(get_group).patch(update_group))
        .route("/groups/{id}/members", post(add_members))
        .route(
            "/groups/{id}/members/{user_id}",
            axum::routing::delete(remove_member).patch(change_role),
        )
        .route("/groups/{id}/messages", get(history))
        .route("/groups/{id}/receipts", get(receipts))
        .route("/messages/search", get(search_messages))
        .route("/.well-known/jwks.json", get(jwks))
        .route(
            "/assets/upload",
            post(assets::upload_chunk)
                .get(assets::upload_status)
                .delete(assets::abandon_upload)
                // A chunk plus the multipart framing and the other fields.
                .layer(DefaultBodyLimit::max(chunk_body_limit)),
        )
        .route("/assets/complete-upload", post(assets::complete_upload))
        .route("/assets/{id}", get(assets::download))
        .route(
            "/openapi.json",
            get(move || async move { axum::Json(openapi) }),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limit_per_address,
        ))
        .with_state(state)
}

/// The gateway's background work: deletes uploads that stopped receiving chunks, with their
/// chunks, every `every` until `shutdown`.
pub async fn sweep_expired_uploads(
    assets: Arc<dyn AssetStore>,
    every: std::time::Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match assets.expire(chat_domain::assets::now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(uploads = n, "expired uploads deleted"),
            Err(e) => tracing::warn!(error = %e, "cannot sweep expired uploads"),
        }
    }
}
