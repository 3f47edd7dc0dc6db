//! Assets: the bodies of the upload and download endpoints (seed §Asset Endpoints).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::assets::{AssetRecord, UploadStatus};
use crate::rpc_pattern as pattern;

/// The answer to one uploaded chunk.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChunkReceipt {
    pub filename: String,
    pub chunk_index: u32,
    pub total_chunks: u32,
    /// How many distinct chunks the upload holds now.
    pub received_chunks: u32,
    /// True when every chunk is there: `complete-upload` will succeed.
    pub ready: bool,
}

/// Where an upload stands, for resuming it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UploadView {
    pub filename: String,
    pub total_chunks: u32,
    /// Indices already received, ascending.
    pub received_chunks: Vec<u32>,
    /// Indices still missing, ascending.
    pub missing_chunks: Vec<u32>,
    pub received_bytes: u64,
    /// When the upload expires if nothing more arrives.
    pub expires_at: DateTime<Utc>,
}

impl From<UploadStatus> for UploadView {
    fn from(s: UploadStatus) -> Self {
        UploadView {
            missing_chunks: s.missing(),
            filename: s.filename,
            total_chunks: s.total_chunks,
            received_chunks: s.received,
            received_bytes: s.received_bytes,
            expires_at: s.expires_at,
        }
    }
}

/// `GET|DELETE /assets/upload?filename=`
#[derive(Debug, Clone, Serialize, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct UploadQuery {
    pub filename: String,
}

/// `POST /assets/complete-upload`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompleteUploadBody {
    #[schema(example = "document.pdf")]
    pub filename: String,
    #[serde(deserialize_with = "super::whole::deserialize")]
    pub total_chunks: u32,
}

/// A stored file. `url` is what messages (`attachment.url`), `profileUrl` and `imageUrl` use.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AssetView {
    #[schema(example = "665f1f77bcf86cd799439011")]
    pub id: String,
    #[schema(example = "/assets/665f1f77bcf86cd799439011")]
    pub url: String,
    pub filename: String,
    /// Sniffed from the file's bytes.
    #[serde(rename = "type")]
    pub content_type: String,
    pub size: u64,
    /// Hex SHA-256 of the whole file (also the download's `ETag`).
    pub sha256: String,
    pub created_at: DateTime<Utc>,
}

impl From<AssetRecord> for AssetView {
    fn from(a: AssetRecord) -> Self {
        AssetView {
            url: a.url(),
            id: a.id,
            filename: a.filename,
            content_type: a.content_type,
            size: a.size,
            sha256: a.sha256,
            created_at: a.created_at,
        }
    }
}

crate::error_reasons! {
    /// Why an upload, a download or an attachment is refused.
    pub enum AssetError {
        /// The upload request is not `multipart/form-data`.
        #[error("expected multipart/form-data with the fields chunk, filename, chunkIndex and totalChunks")]
        NotMultipart => (UnsupportedMediaType, "not_multipart"),
        /// The multipart body cannot be read.
        #[error("the multipart body is malformed")]
        MalformedMultipart => (BadRequest, "malformed_multipart"),
        /// A required multipart field is missing.
        #[error("the field {field} is required")]
        FieldRequired { field: String } => (BadRequest, "field_required"),
        /// `chunkIndex` or `totalChunks` is not a whole number.
        #[error("{field} must be a whole number, 0 or more")]
        NotWholeNumber { field: String } => (Validation, "not_a_whole_number"),
        /// A file name that is a path, empty, too long or has control characters.
        #[error("filename must be 1-{max} characters without '/', '\\', '..', surrounding spaces or control characters")]
        InvalidFilename { max: usize } => (Validation, "invalid_filename"),
        /// `chunkIndex` is not below `totalChunks`.
        #[error("chunkIndex must be less than totalChunks ({total})")]
        ChunkIndexOutOfRange { total: u32 } => (Validation, "chunk_index_out_of_range"),
        /// `totalChunks` is 0 or over the limit.
        #[error("totalChunks must be from 1 to {max}")]
        TotalChunksOutOfRange { max: u32 } => (Validation, "total_chunks_out_of_range"),
        /// A chunk without bytes.
        #[error("chunk is empty")]
        EmptyChunk => (Validation, "empty_chunk"),
        /// A chunk over the per-chunk limit.
        #[error("a chunk may hold at most {max} bytes")]
        ChunkTooLarge { max: usize } => (PayloadTooLarge, "chunk_too_large"),
        /// The file would exceed the per-file limit.
        #[error("a file may hold at most {max} bytes")]
        FileTooLarge { max: u64 } => (PayloadTooLarge, "file_too_large"),
        /// The user's files and uploads would exceed `ASSET_MAX_BYTES_PER_USER`.
        #[error("your files may take at most {max} bytes; delete some or finish fewer uploads")]
        QuotaExceeded { max: u64 } => (PayloadTooLarge, "quota_exceeded"),
        /// A new upload while `ASSET_MAX_UPLOADS_PER_USER` are in progress.
        #[error("at most {max} uploads in progress at once; complete or abandon one first")]
        TooManyUploads { max: u32 } => (Conflict, "too_many_uploads"),
        /// The file's type, sniffed from its first bytes, is not accepted.
        #[error("files of type {sniffed} are not accepted")]
        TypeNotAccepted { sniffed: String } => (UnsupportedMediaType, "type_not_accepted"),
        /// Another upload of the same file name with another `totalChunks` is in progress.
        #[error("an upload of {filename} with {total} chunks is in progress; finish or abandon it first")]
        UploadInProgress { filename: String, total: u32 } => (Conflict, "upload_in_progress"),
        /// This chunk index was already received with other bytes.
        #[error("chunk {index} was already received with different bytes")]
        ChunkConflict { index: u32 } => (Conflict, "chunk_conflict"),
        /// Completing with a `totalChunks` other than the upload's.
        #[error("this upload has {expected} chunks, not {given}")]
        ChunkCountMismatch { expected: u32, given: u32 } => (Conflict, "chunk_count_mismatch"),
        /// The upload changed or was abandoned concurrently; retry the chunk.
        #[error("this upload changed concurrently; retry the chunk")]
        ConcurrentChange => (Conflict, "upload_changed"),
        /// Completing an upload that still lacks chunks (the message lists them).
        #[error("{detail}")]
        ChunksMissing { detail: String } => (Validation, "chunks_missing"),
        /// No upload of that file name is in progress for the caller.
        #[error("no upload of that file is in progress")]
        NoUploadInProgress => (NotFound, "upload_not_found"),
        /// The file does not exist, or the caller may not read it.
        #[error("no such file")]
        FileNotFound => (NotFound, "file_not_found"),
        /// The byte range lies outside the file.
        #[error("the file has {size} bytes")]
        RangeNotSatisfiable { size: u64 } => (RangeNotSatisfiable, "range_not_satisfiable"),
        /// A picture or attachment URL that is neither http(s) nor an absolute path.
        #[error("{field} must be an http(s) URL or an absolute path of at most 2048 characters")]
        InvalidUrl { field: String } => (Validation, "invalid_url"),
        /// A `/assets/…` URL naming no stored file.
        #[error("that asset does not exist")]
        AssetNotFound => (Validation, "asset_not_found"),
        /// A stored file of the caller's that is not an image, used as a picture.
        #[error("that file is {content_type}, not an image")]
        NotAnImage { content_type: String } => (Validation, "not_an_image"),
        /// A stored file someone else uploaded, used as the caller's picture.
        #[error("use an image you uploaded")]
        NotYourUpload => (Validation, "not_your_upload"),
    }
}

/// How another role means to use a stored file (`asset.check`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "as", rename_all = "camelCase")]
pub enum AssetUse {
    /// A picture in `field` (`profileUrl`, `imageUrl`): an image the owner uploaded, or a URL
    /// elsewhere, which passes unchanged (no record).
    #[serde(rename_all = "camelCase")]
    Picture { field: String },
    /// A message attachment: a file the owner uploaded (no record when it is not theirs).
    Attachment,
}

/// `asset.check` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssetCheck {
    pub owner_id: String,
    pub url: String,
    pub used_as: AssetUse,
}

/// `asset.grant` request: who may now read a stored file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "to", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum AssetGrant {
    /// Every signed-in user (a profile picture).
    Everyone { asset_id: String },
    /// The members of a group (its image, or an attachment sent there).
    Group { asset_id: String, group_id: String },
}

pattern!(/// Whether a URL names a stored file its owner may use as asked; the file's record when it
    /// is stored here. Served by the gateway, which owns the files (internal).
    AssetCheckUse, "asset.check", AssetCheck => Option<AssetRecord>);
pattern!(/// Lets more people read a stored file (internal, served by the gateway).
    AssetGrantRead, "asset.grant", AssetGrant => ());
