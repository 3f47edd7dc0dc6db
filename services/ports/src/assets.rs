//! The attachment store port: chunked uploads and stored files (rules in
//! [`chat_domain::assets`]).

use bytes::Bytes;
use chat_domain::contracts::assets::AssetError;
use chrono::{DateTime, Utc};
use futures_util::stream::BoxStream;

use chat_domain::assets::{
    asset_id_from_url, check_image_url, AssetRecord, AssetUsage, ByteRange, ChunkProgress,
    ChunkUpload, UploadStatus,
};
use chat_domain::Error;

/// File bytes as they are read from the store.
pub type ByteStream = BoxStream<'static, Result<Bytes, Error>>;

/// Uploads and stored files.
#[async_trait::async_trait]
pub trait AssetStore: Send + Sync {
    /// Stores one chunk (after [`AssetLimits::check_chunk`]). The same bytes again are accepted;
    /// other bytes for a received index are a conflict, as is another `total_chunks`.
    async fn put_chunk(&self, chunk: ChunkUpload) -> Result<ChunkProgress, Error>;
    /// The caller's upload of `filename`, if one is in progress.
    async fn status(&self, owner_id: &str, filename: &str) -> Result<Option<UploadStatus>, Error>;
    /// Drops an upload in progress and its chunks; false when there was none.
    async fn abandon(&self, owner_id: &str, filename: &str) -> Result<bool, Error>;
    /// Assembles a complete upload into a stored file. Completing again returns the same file.
    async fn complete(
        &self,
        owner_id: &str,
        filename: &str,
        total_chunks: u32,
    ) -> Result<AssetRecord, Error>;
    async fn get(&self, asset_id: &str) -> Result<Option<AssetRecord>, Error>;
    /// The bytes of `range` of a stored file.
    async fn read(&self, asset: &AssetRecord, range: ByteRange) -> Result<ByteStream, Error>;
    /// Lets the members of `group_id` read the file.
    async fn grant_group(&self, asset_id: &str, group_id: &str) -> Result<(), Error>;
    /// Lets every signed-in user read the file.
    async fn make_public(&self, asset_id: &str) -> Result<(), Error>;
    /// What `owner_id` holds: stored bytes, uploads in progress and their bytes.
    async fn usage(&self, owner_id: &str) -> Result<AssetUsage, Error>;
    /// Deletes uploads idle since before `now - ttl`, with their chunks; returns how many.
    async fn expire(&self, now: DateTime<Utc>) -> Result<u64, Error>;
}

/// The stored file at `url` (as `complete-upload` returned it) if `owner_id` uploaded it; `None`
/// for a URL that names no asset of this server, or someone else's.
pub async fn owned_asset(
    store: &dyn AssetStore,
    owner_id: &str,
    url: &str,
) -> Result<Option<AssetRecord>, Error> {
    let Some(id) = asset_id_from_url(url) else {
        return Ok(None);
    };
    Ok(store.get(id).await?.filter(|a| a.owner_id == owner_id))
}

/// A picture URL for `field` (`profileUrl`, `imageUrl`), checked with [`check_image_url`]: an
/// uploaded image the caller owns, or a URL elsewhere, which passes through unchanged (`None`).
pub async fn owned_image(
    store: &dyn AssetStore,
    field: &str,
    owner_id: &str,
    url: &str,
) -> Result<Option<AssetRecord>, Error> {
    check_image_url(field, url)?;
    if asset_id_from_url(url).is_none() {
        if url.starts_with("/assets/") {
            return Err(AssetError::AssetNotFound.into());
        }
        return Ok(None);
    }
    match owned_asset(store, owner_id, url).await? {
        Some(asset) if asset.is_image() => Ok(Some(asset)),
        Some(asset) => Err(AssetError::NotAnImage {
            content_type: asset.content_type,
        }
        .into()),
        None => Err(AssetError::NotYourUpload.into()),
    }
}
