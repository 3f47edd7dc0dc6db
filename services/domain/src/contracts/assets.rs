//! Assets: the bodies of the upload and download endpoints (seed §Asset Endpoints).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::assets::{AssetRecord, UploadStatus};

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
