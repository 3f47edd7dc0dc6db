//! The asset endpoints (seed §Asset Endpoints, made resumable and safe). The gateway reads and
//! writes file bytes in the asset store itself rather than tunnelling megabytes through the RPC
//! bus; who may read a file is decided from the file's grants and, for group grants, the
//! caller's groups (one `group.list` call).
//!
//! - `POST /assets/upload` (multipart: `chunk`, `filename`, `chunkIndex`, `totalChunks`)
//! - `GET /assets/upload?filename=` where an upload stands; `DELETE` the same to abandon it
//! - `POST /assets/complete-upload` `{filename, totalChunks}` → the stored file
//! - `GET /assets/{id}` the bytes, with `Range`, `ETag` and `If-None-Match`

use axum::body::Body;
use axum::extract::multipart::MultipartError;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chat_domain::assets::{
    check_filename, parse_range, AssetRecord, ByteRange, ChunkUpload, RangeRequest,
};
use chat_domain::contracts::assets::*;
use chat_domain::error::{ErrorBody, RequestError};
use chat_domain::rpc::CallContext;
use chat_domain::Error;
use chat_http::{ApiError, ApiResult, Ctx, Json, Query};
use chat_ports::clients::is_member;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::{bearer_token, AuthUser, Gateway};

/// The multipart form of `POST /assets/upload` (for the OpenAPI document).
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct UploadChunkForm {
    /// The chunk's bytes.
    #[schema(format = Binary, value_type = String)]
    chunk: Vec<u8>,
    /// The file's name: a label, never a path. Defaults to the file name of the `chunk` part.
    filename: Option<String>,
    /// From 0 to `totalChunks - 1`.
    chunk_index: u32,
    total_chunks: u32,
}

fn multipart_error(e: MultipartError, max_chunk_bytes: usize) -> Error {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        AssetError::ChunkTooLarge {
            max: max_chunk_bytes,
        }
        .into()
    } else if chat_http::stalled(&e) {
        RequestError::BodyStalled.into()
    } else {
        AssetError::MalformedMultipart.into()
    }
}

fn whole_number(field: &str, text: &str) -> Result<u32, Error> {
    text.trim().parse::<u32>().map_err(|_| {
        AssetError::NotWholeNumber {
            field: field.to_string(),
        }
        .into()
    })
}

/// `POST /assets/upload`
#[utoipa::path(post, path = "/assets/upload", tag = "assets", security(("bearer" = [])),
    request_body(content = UploadChunkForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "Chunk stored (or the same chunk again)", body = ChunkReceipt),
        (status = 400, description = "Missing or invalid field, or a file name that is a path", body = ErrorBody),
        (status = 409, description = "That index was received with other bytes, or another totalChunks is in progress", body = ErrorBody),
        (status = 413, description = "Chunk, file or chunk count over the limit", body = ErrorBody),
        (status = 415, description = "Not multipart, or a file type that is not accepted (sniffed from the bytes)", body = ErrorBody),
    ))]
pub async fn upload_chunk(
    State(gw): State<Gateway>,
    caller: Result<AuthUser, ApiError>,
    request: Request,
) -> ApiResult<axum::Json<ChunkReceipt>> {
    // Refusals come after the body is read: a server that answers mid-upload and closes the
    // connection leaves the client with a broken pipe instead of the error.
    let not_multipart = || Error::from(AssetError::NotMultipart);
    let is_multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    if !is_multipart {
        let limit = gw.asset_limits.max_upload_request_bytes();
        let _ = axum::body::to_bytes(request.into_body(), limit).await;
        return Err(not_multipart().into());
    }
    let multipart = Multipart::from_request(request, &())
        .await
        .map_err(|_| not_multipart())?;
    let max_chunk = gw.asset_limits.max_chunk_bytes;
    let (fields, claims) = (read_fields(multipart, max_chunk).await, caller?.0);
    let fields = fields?;
    let chunk = ChunkUpload {
        owner_id: claims.sub,
        filename: fields.filename,
        index: fields.index,
        total_chunks: fields.total,
        bytes: fields.bytes,
    };
    gw.asset_limits.check_chunk(&chunk)?;
    // Room for it: counted before it is stored (two chunks racing may both fit; the next is
    // refused).
    let owner = chunk.owner_id.as_str();
    let (usage, upload) = tokio::try_join!(
        gw.assets.usage(owner),
        gw.assets.status(owner, &chunk.filename)
    )?;
    // A chunk sent again (a retry) is already counted.
    let again = upload
        .as_ref()
        .is_some_and(|u| u.received.contains(&chunk.index));
    if !again {
        gw.asset_limits
            .check_room(usage, chunk.bytes.len(), upload.is_none())?;
    }
    let (filename, chunk_index) = (chunk.filename.clone(), chunk.index);
    let progress = gw.assets.put_chunk(chunk).await?;
    Ok(axum::Json(ChunkReceipt {
        filename,
        chunk_index,
        total_chunks: progress.total_chunks,
        received_chunks: progress.received_chunks,
        ready: progress.received_chunks == progress.total_chunks,
    }))
}

struct ChunkFields {
    filename: String,
    index: u32,
    total: u32,
    bytes: axum::body::Bytes,
}

/// Reads every field of the upload form, then checks that the required ones are there.
async fn read_fields(mut multipart: Multipart, max_chunk: usize) -> Result<ChunkFields, Error> {
    let multipart_error = |e| multipart_error(e, max_chunk);
    let (mut bytes, mut filename, mut index, mut total, mut part_name) =
        (None, None, None, None, None);
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        match field.name().unwrap_or_default() {
            "chunk" => {
                part_name = field.file_name().map(String::from);
                bytes = Some(field.bytes().await.map_err(multipart_error)?);
            }
            "filename" => filename = Some(field.text().await.map_err(multipart_error)?),
            "chunkIndex" => index = Some(field.text().await.map_err(multipart_error)?),
            "totalChunks" => total = Some(field.text().await.map_err(multipart_error)?),
            _ => {}
        }
    }
    let missing = |name: &str| {
        Error::from(AssetError::FieldRequired {
            field: name.to_string(),
        })
    };
    Ok(ChunkFields {
        filename: filename.or(part_name).ok_or_else(|| missing("filename"))?,
        index: whole_number("chunkIndex", &index.ok_or_else(|| missing("chunkIndex"))?)?,
        total: whole_number("totalChunks", &total.ok_or_else(|| missing("totalChunks"))?)?,
        bytes: bytes.ok_or_else(|| missing("chunk"))?,
    })
}

/// `GET /assets/upload?filename=`
#[utoipa::path(get, path = "/assets/upload", tag = "assets", security(("bearer" = [])), params(UploadQuery),
    responses(
        (status = 200, description = "The caller's upload of that file: what arrived, what is missing", body = UploadView),
        (status = 404, description = "No upload of that file is in progress", body = ErrorBody),
    ))]
pub async fn upload_status(
    State(gw): State<Gateway>,
    AuthUser(claims): AuthUser,
    Query(query): Query<UploadQuery>,
) -> ApiResult<axum::Json<UploadView>> {
    check_filename(&query.filename)?;
    gw.assets
        .status(&claims.sub, &query.filename)
        .await?
        .map(|s| axum::Json(s.into()))
        .ok_or_else(|| AssetError::NoUploadInProgress.into())
        .map_err(ApiError)
}

/// `DELETE /assets/upload?filename=`
#[utoipa::path(delete, path = "/assets/upload", tag = "assets", security(("bearer" = [])), params(UploadQuery),
    responses(
        (status = 204, description = "The upload and its chunks are gone"),
        (status = 404, description = "No upload of that file is in progress", body = ErrorBody),
    ))]
pub async fn abandon_upload(
    State(gw): State<Gateway>,
    AuthUser(claims): AuthUser,
    Query(query): Query<UploadQuery>,
) -> ApiResult<StatusCode> {
    check_filename(&query.filename)?;
    if gw.assets.abandon(&claims.sub, &query.filename).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Error::from(AssetError::NoUploadInProgress).into())
    }
}

/// `POST /assets/complete-upload`
#[utoipa::path(post, path = "/assets/complete-upload", tag = "assets", security(("bearer" = [])), request_body = CompleteUploadBody,
    responses(
        (status = 201, description = "The stored file (completing again returns the same one)", body = AssetView),
        (status = 400, description = "Chunks are missing (the message lists them)", body = ErrorBody),
        (status = 404, description = "No upload of that file is in progress", body = ErrorBody),
        (status = 409, description = "totalChunks differs from the upload's", body = ErrorBody),
    ))]
pub async fn complete_upload(
    State(gw): State<Gateway>,
    AuthUser(claims): AuthUser,
    Json(body): Json<CompleteUploadBody>,
) -> ApiResult<impl IntoResponse> {
    check_filename(&body.filename)?;
    gw.asset_limits.check_total(body.total_chunks)?;
    let asset = gw
        .assets
        .complete(&claims.sub, &body.filename, body.total_chunks)
        .await?;
    tracing::info!(asset = %asset.id, size = asset.size, content_type = %asset.content_type, "asset stored");
    Ok((StatusCode::CREATED, axum::Json(AssetView::from(asset))))
}

/// `GET /assets/{id}` query: the access token, for `<img src>` and `<video src>`, which cannot
/// send headers.
#[derive(Debug, Deserialize, IntoParams)]
pub struct DownloadQuery {
    /// An access token, when no `Authorization` header can be sent.
    pub access_token: Option<String>,
}

/// `GET /assets/{id}`
#[utoipa::path(get, path = "/assets/{id}", tag = "assets", security(("bearer" = [])),
    params(("id" = String, Path, description = "Asset id"), DownloadQuery),
    responses(
        (status = 200, description = "The whole file"),
        (status = 206, description = "The requested byte range (`Range: bytes=a-b`)"),
        (status = 304, description = "Unchanged (`If-None-Match`)"),
        (status = 404, description = "No such file, or the caller may not read it", body = ErrorBody),
        (status = 416, description = "The range lies outside the file", body = ErrorBody),
    ))]
pub async fn download(
    State(gw): State<Gateway>,
    headers: HeaderMap,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    Query(query): Query<DownloadQuery>,
) -> ApiResult<Response> {
    let token = match bearer_token(&headers) {
        Ok(token) => token.to_string(),
        Err(e) => query.access_token.filter(|t| !t.is_empty()).ok_or(e)?,
    };
    let caller = gw.verifier.verify(&token).await?.sub;
    let not_found = || Error::from(AssetError::FileNotFound);
    let asset = gw.assets.get(&id).await?.ok_or_else(not_found)?;
    if !may_read(&gw, &caller, &asset, &ctx).await? {
        return Err(not_found().into());
    }
    let etag = format!("\"{}\"", asset.sha256);
    let mut response = Response::builder()
        .header(header::ETAG, &etag)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CACHE_CONTROL, "private, max-age=86400")
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; sandbox",
        );
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        return Ok(response
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .unwrap_or_default());
    }
    let range_header = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    // A range applies only while the file is the one the client has (`If-Range`).
    let range_header = match headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) {
        Some(tag) if tag.trim() != etag => None,
        _ => range_header,
    };
    let (status, range) = match parse_range(range_header, asset.size) {
        RangeRequest::Whole => (StatusCode::OK, ByteRange::whole(asset.size)),
        RangeRequest::Partial(r) => {
            response = response.header(
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{}", r.start, r.end, asset.size),
            );
            (StatusCode::PARTIAL_CONTENT, Some(r))
        }
        RangeRequest::Unsatisfiable => {
            let content_range = format!("bytes */{}", asset.size);
            let error = AssetError::RangeNotSatisfiable { size: asset.size }.into();
            return Ok(([(header::CONTENT_RANGE, content_range)], ApiError(error)).into_response());
        }
    };
    let Some(range) = range else {
        return Err(Error::internal("an empty asset was stored").into());
    };
    let body = Body::from_stream(gw.assets.read(&asset, range).await?);
    response
        .status(status)
        .header(header::CONTENT_TYPE, content_type(&asset))
        .header(header::CONTENT_LENGTH, range.len())
        .header(header::CONTENT_DISPOSITION, disposition(&asset))
        .body(body)
        .map_err(Error::internal)
        .map_err(ApiError)
}

/// The owner, everyone for a public file (a profile picture), and members of a granted group.
async fn may_read(
    gw: &Gateway,
    caller: &str,
    asset: &AssetRecord,
    ctx: &CallContext,
) -> Result<bool, Error> {
    if asset.owner_id == caller || asset.public {
        return Ok(true);
    }
    // Usually one group: ask about each rather than list every group of the caller.
    for group in &asset.groups {
        if is_member(&gw.rpc, caller, group, ctx).await? {
            return Ok(true);
        }
    }
    Ok(false)
}

fn content_type(asset: &AssetRecord) -> HeaderValue {
    let value = if asset.content_type == "text/plain" {
        "text/plain; charset=utf-8".to_string()
    } else {
        asset.content_type.clone()
    };
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("application/octet-stream"))
}

/// Media opens in the browser; everything else downloads. The name is sent both as a plain
/// ASCII fallback and RFC 8187-encoded.
fn disposition(asset: &AssetRecord) -> HeaderValue {
    let media = ["image/", "video/", "audio/"]
        .iter()
        .any(|p| asset.content_type.starts_with(p));
    let kind = if media { "inline" } else { "attachment" };
    let ascii: String = asset
        .filename
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = asset
        .filename
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    HeaderValue::from_str(&format!(
        "{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"
    ))
    .unwrap_or(HeaderValue::from_static("attachment"))
}

/// The gateway owns the stored files: the other roles check and grant them through it
/// (`asset.check`, `asset.grant`) instead of holding the asset store themselves.
pub struct AssetOwner(pub std::sync::Arc<dyn chat_ports::assets::AssetStore>);

impl AssetOwner {
    pub async fn check(&self, request: AssetCheck) -> Result<Option<AssetRecord>, Error> {
        let store = self.0.as_ref();
        match request.used_as {
            AssetUse::Picture { field } => {
                chat_ports::assets::owned_image(store, &field, &request.owner_id, &request.url)
                    .await
            }
            AssetUse::Attachment => {
                chat_ports::assets::owned_asset(store, &request.owner_id, &request.url).await
            }
        }
    }

    pub async fn grant(&self, request: AssetGrant) -> Result<(), Error> {
        match request {
            AssetGrant::Everyone { asset_id } => self.0.make_public(&asset_id).await,
            AssetGrant::Group { asset_id, group_id } => {
                self.0.grant_group(&asset_id, &group_id).await
            }
        }
    }
}

/// Registers the asset owner's RPC patterns on `server`.
pub fn rpc_handlers(
    owner: std::sync::Arc<AssetOwner>,
    server: chat_ports::rpc::RpcServer,
) -> chat_ports::rpc::RpcServer {
    let server = chat_ports::rpc_bind!(server, owner, AssetCheckUse, check);
    chat_ports::rpc_bind!(server, owner, AssetGrantRead, grant)
}
