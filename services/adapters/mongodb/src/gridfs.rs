//! The MongoDB adapter of [`AssetStore`]: upload sessions and their chunks in two collections,
//! finished files in the GridFS bucket `assets` (`assets.files` and `assets.chunks`, the layout
//! of the GridFS specification, so `mongofiles` and every driver's GridFS API read them).
//!
//! - `upload_sessions`: one per (owner, file name), unique; counts what it received and expires
//!   `session_ttl` after its last chunk.
//! - `upload_chunks`: one per (session, index), unique; the bytes and their SHA-256, so a retried
//!   chunk is recognised and a different one refused.
//! - Completing copies the chunks, in order, into 255 KiB GridFS chunks, writes the files
//!   document last (as the specification asks), then deletes the upload's chunks and remembers
//!   the asset id in the session, so completing again answers with the same file.

use crate::documents;
use chat_domain::contracts::assets::AssetError;
use chrono::{DateTime, Utc};
use futures_util::{StreamExt, TryStreamExt};
use mongodb::bson::{doc, oid::ObjectId, spec::BinarySubtype, Binary, Bson, Document};
use mongodb::options::{IndexOptions, ReturnDocument};
use mongodb::{Collection, Database, IndexModel};

use chat_domain::assets::{
    sha256_hex, Assembler, AssetLimits, AssetRecord, AssetUsage, ByteRange, ChunkProgress,
    ChunkUpload, UploadStatus, FILE_PIECE_BYTES,
};
use chat_domain::Error;
use chat_ports::assets::{AssetStore, ByteStream};

use crate::{from_bson_time, is_duplicate_key, to_bson_time, Db};

const SESSIONS: &str = "upload_sessions";
const CHUNKS: &str = "upload_chunks";
const FILES: &str = "assets.files";
const FILE_CHUNKS: &str = "assets.chunks";

/// The indexes of the asset collections (applied by `chat-server migrate` with the others).
pub fn indexes() -> Vec<(&'static str, IndexModel)> {
    let unique = |name: &str| {
        Some(
            IndexOptions::builder()
                .name(name.to_string())
                .unique(true)
                .build(),
        )
    };
    let model = |keys: Document, options| IndexModel::builder().keys(keys).options(options).build();
    vec![
        (
            SESSIONS,
            model(
                doc! {"ownerId": 1, "filename": 1},
                unique("owner_filename_unique"),
            ),
        ),
        (
            SESSIONS,
            model(
                doc! {"expiresAt": 1},
                Some(IndexOptions::builder().name("expiry".to_string()).build()),
            ),
        ),
        (
            CHUNKS,
            model(
                doc! {"sessionId": 1, "index": 1},
                unique("session_index_unique"),
            ),
        ),
        (
            FILE_CHUNKS,
            model(doc! {"files_id": 1, "n": 1}, unique("files_id_1_n_1")),
        ),
        (
            FILES,
            model(
                doc! {"metadata.ownerId": 1},
                Some(IndexOptions::builder().name("owner".to_string()).build()),
            ),
        ),
        (
            FILES,
            model(
                doc! {"filename": 1, "uploadDate": 1},
                Some(
                    IndexOptions::builder()
                        .name("filename_1_uploadDate_1".to_string())
                        .build(),
                ),
            ),
        ),
    ]
}

pub struct MongoAssetStore {
    sessions: Collection<Document>,
    chunks: Collection<Document>,
    files: Collection<Document>,
    file_chunks: Collection<Document>,
    limits: AssetLimits,
}

impl MongoAssetStore {
    pub fn new(db: &Database, limits: AssetLimits) -> Self {
        MongoAssetStore {
            sessions: db.collection(SESSIONS),
            chunks: db.collection(CHUNKS),
            files: db.collection(FILES),
            file_chunks: db.collection(FILE_CHUNKS),
            limits,
        }
    }

    fn expiry(&self) -> DateTime<Utc> {
        Utc::now() + self.limits.session_ttl
    }

    async fn session(&self, owner_id: &str, filename: &str) -> Result<Option<Document>, Error> {
        self.sessions
            .find_one(doc! {"ownerId": owner_id, "filename": filename})
            .await
            .db()
    }

    /// The open session of this upload, created on its first chunk. A finished or expired one
    /// is replaced: the same name may be uploaded again.
    async fn open_session(&self, chunk: &ChunkUpload) -> Result<Document, Error> {
        for _ in 0..3 {
            if let Some(existing) = self.session(&chunk.owner_id, &chunk.filename).await? {
                let finished = existing.get_str("assetId").is_ok();
                let expired = existing
                    .get_datetime("expiresAt")
                    .is_ok_and(|t| from_bson_time(*t) < Utc::now());
                if !finished && !expired {
                    return Ok(existing);
                }
                self.drop_session(&existing).await?;
                continue;
            }
            let session = doc! {
                "_id": ObjectId::new(),
                "ownerId": &chunk.owner_id,
                "filename": &chunk.filename,
                "totalChunks": chunk.total_chunks as i64,
                "receivedChunks": 0i64,
                "receivedBytes": 0i64,
                "createdAt": to_bson_time(Utc::now()),
                "expiresAt": to_bson_time(self.expiry()),
            };
            match self.sessions.insert_one(&session).await {
                Ok(_) => return Ok(session),
                Err(e) if is_duplicate_key(&e) => continue,
                Err(e) => return Err(e).db(),
            }
        }
        Err(AssetError::ConcurrentChange.into())
    }

    async fn drop_session(&self, session: &Document) -> Result<(), Error> {
        let id = session.get_object_id("_id").map_err(|_| corrupt())?;
        self.chunks.delete_many(doc! {"sessionId": id}).await.db()?;
        self.sessions.delete_one(doc! {"_id": id}).await.db()?;
        Ok(())
    }

    async fn status_of(&self, session: &Document) -> Result<UploadStatus, Error> {
        let id = session.get_object_id("_id").map_err(|_| corrupt())?;
        let mut received: Vec<u32> = self
            .chunks
            .find(doc! {"sessionId": id})
            .projection(doc! {"index": 1, "_id": 0})
            .await
            .db()?
            .map_ok(|d| d.get_i64("index").unwrap_or_default() as u32)
            .try_collect()
            .await
            .db()?;
        received.sort_unstable();
        Ok(UploadStatus {
            filename: session.get_str("filename").unwrap_or_default().into(),
            total_chunks: session.get_i64("totalChunks").unwrap_or_default() as u32,
            received,
            received_bytes: session.get_i64("receivedBytes").unwrap_or_default() as u64,
            expires_at: session
                .get_datetime("expiresAt")
                .map(|t| from_bson_time(*t))
                .unwrap_or_default(),
        })
    }

    async fn record(&self, file: Document) -> Result<AssetRecord, Error> {
        let meta = file.get_document("metadata").map_err(|_| corrupt())?;
        Ok(AssetRecord {
            id: file.get_object_id("_id").map_err(|_| corrupt())?.to_hex(),
            owner_id: meta.get_str("ownerId").map_err(|_| corrupt())?.into(),
            filename: file.get_str("filename").map_err(|_| corrupt())?.into(),
            content_type: meta.get_str("contentType").map_err(|_| corrupt())?.into(),
            size: file.get_i64("length").map_err(|_| corrupt())?.max(0) as u64,
            sha256: meta.get_str("sha256").unwrap_or_default().into(),
            created_at: file
                .get_datetime("uploadDate")
                .map(|t| from_bson_time(*t))
                .unwrap_or_default(),
            public: meta.get_bool("public").unwrap_or(false),
            groups: meta
                .get_array("groups")
                .map(|a| {
                    a.iter()
                        .filter_map(|g| g.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    /// Copies the session's chunks, in order, into GridFS; returns (length, sha256).
    async fn assemble(
        &self,
        session_id: ObjectId,
        file_id: ObjectId,
    ) -> Result<(u64, String), Error> {
        let mut source = self
            .chunks
            .find(doc! {"sessionId": session_id})
            .sort(doc! {"index": 1})
            .batch_size(2)
            .await
            .db()?;
        let mut assembler = Assembler::default();
        while let Some(chunk) = source.try_next().await.db()? {
            let data = match chunk.get("data") {
                Some(Bson::Binary(b)) => &b.bytes,
                _ => return Err(corrupt()),
            };
            for (n, piece) in assembler.push(data) {
                self.write_file_chunk(file_id, n, piece).await?;
            }
        }
        let (last, length, sha) = assembler.finish();
        if let Some((n, piece)) = last {
            self.write_file_chunk(file_id, n, piece).await?;
        }
        Ok((length, sha))
    }

    async fn write_file_chunk(
        &self,
        file_id: ObjectId,
        n: i64,
        bytes: Vec<u8>,
    ) -> Result<(), Error> {
        let chunk = doc! {"files_id": file_id, "n": n as i32, "data": binary(bytes)};
        self.file_chunks.insert_one(chunk).await.db()?;
        Ok(())
    }
}

fn binary(bytes: Vec<u8>) -> Binary {
    Binary {
        subtype: BinarySubtype::Generic,
        bytes,
    }
}

/// What a session document counts (no need to read its chunks).
fn progress(session: &Document) -> ChunkProgress {
    ChunkProgress {
        total_chunks: session.get_i64("totalChunks").unwrap_or_default() as u32,
        received_chunks: session.get_i64("receivedChunks").unwrap_or_default() as u32,
    }
}

fn corrupt() -> Error {
    Error::internal("an asset document has an unexpected shape")
}

#[async_trait::async_trait]
impl AssetStore for MongoAssetStore {
    async fn put_chunk(&self, chunk: ChunkUpload) -> Result<ChunkProgress, Error> {
        let session = self.open_session(&chunk).await?;
        let total = session.get_i64("totalChunks").unwrap_or_default() as u32;
        if total != chunk.total_chunks {
            return Err(AssetError::UploadInProgress {
                filename: chunk.filename,
                total,
            }
            .into());
        }
        let session_id = session.get_object_id("_id").map_err(|_| corrupt())?;
        let sha = sha256_hex(&chunk.bytes);
        let size = chunk.bytes.len() as i64;
        let stored = doc! {
            "sessionId": session_id,
            "index": chunk.index as i64,
            "size": size,
            "sha256": &sha,
            "data": binary(chunk.bytes.to_vec()),
        };
        match self.chunks.insert_one(stored).await {
            Ok(_) => {}
            Err(e) if is_duplicate_key(&e) => {
                let existing = self
                    .chunks
                    .find_one(doc! {"sessionId": session_id, "index": chunk.index as i64})
                    .projection(doc! {"sha256": 1})
                    .await
                    .db()?;
                if existing.as_ref().and_then(|d| d.get_str("sha256").ok()) == Some(sha.as_str()) {
                    self.sessions
                        .update_one(
                            doc! {"_id": session_id},
                            doc! {"$set": {"expiresAt": to_bson_time(self.expiry())}},
                        )
                        .await
                        .db()?;
                    return Ok(progress(&session));
                }
                return Err(AssetError::ChunkConflict { index: chunk.index }.into());
            }
            Err(e) => return Err(e).db(),
        }
        let updated = self
            .sessions
            .find_one_and_update(
                doc! {"_id": session_id},
                doc! {
                    "$inc": {"receivedChunks": 1i64, "receivedBytes": size},
                    "$set": {"expiresAt": to_bson_time(self.expiry())},
                },
            )
            .return_document(ReturnDocument::After)
            .await
            .db()?
            .ok_or(AssetError::ConcurrentChange)?;
        let received_bytes = updated.get_i64("receivedBytes").unwrap_or_default() as u64;
        if received_bytes > self.limits.max_file_bytes {
            // Nothing of an upload that can never complete is kept.
            self.drop_session(&updated).await?;
            return Err(self.limits.file_too_large());
        }
        Ok(progress(&updated))
    }

    async fn status(&self, owner_id: &str, filename: &str) -> Result<Option<UploadStatus>, Error> {
        match self.session(owner_id, filename).await? {
            Some(s) if s.get_str("assetId").is_err() => Ok(Some(self.status_of(&s).await?)),
            _ => Ok(None),
        }
    }

    async fn abandon(&self, owner_id: &str, filename: &str) -> Result<bool, Error> {
        match self.session(owner_id, filename).await? {
            Some(s) => {
                self.drop_session(&s).await?;
                Ok(s.get_str("assetId").is_err())
            }
            None => Ok(false),
        }
    }

    async fn complete(
        &self,
        owner_id: &str,
        filename: &str,
        total_chunks: u32,
    ) -> Result<AssetRecord, Error> {
        let session = self
            .session(owner_id, filename)
            .await?
            .ok_or(AssetError::NoUploadInProgress)?;
        if let Ok(asset_id) = session.get_str("assetId") {
            return self
                .get(asset_id)
                .await?
                .ok_or_else(|| AssetError::NoUploadInProgress.into());
        }
        self.status_of(&session)
            .await?
            .ready_to_complete(total_chunks)?;
        let session_id = session.get_object_id("_id").map_err(|_| corrupt())?;
        let first = self
            .chunks
            .find_one(doc! {"sessionId": session_id, "index": 0i64})
            .await
            .db()?
            .ok_or_else(corrupt)?;
        let head = match first.get("data") {
            Some(Bson::Binary(b)) => &b.bytes,
            _ => return Err(corrupt()),
        };
        let content_type = match self.limits.check_type(head) {
            Ok(t) => t,
            Err(e) => {
                self.drop_session(&session).await?;
                return Err(e);
            }
        };
        let file_id = ObjectId::new();
        let (length, sha) = match self.assemble(session_id, file_id).await {
            Ok(done) => done,
            Err(e) => {
                self.file_chunks
                    .delete_many(doc! {"files_id": file_id})
                    .await
                    .db()?;
                return Err(e);
            }
        };
        let now = Utc::now();
        let file = doc! {
            "_id": file_id,
            "length": length as i64,
            "chunkSize": FILE_PIECE_BYTES as i32,
            "uploadDate": to_bson_time(now),
            "filename": filename,
            "metadata": {
                "ownerId": owner_id,
                "contentType": content_type,
                "sha256": &sha,
                "public": false,
                "groups": [],
            },
        };
        self.files.insert_one(&file).await.db()?;
        self.sessions
            .update_one(
                doc! {"_id": session_id},
                doc! {"$set": {"assetId": file_id.to_hex(), "expiresAt": to_bson_time(self.expiry())}},
            )
            .await.db()?;
        self.chunks
            .delete_many(doc! {"sessionId": session_id})
            .await
            .db()?;
        self.record(file).await
    }

    async fn get(&self, asset_id: &str) -> Result<Option<AssetRecord>, Error> {
        let Ok(id) = ObjectId::parse_str(asset_id) else {
            return Ok(None);
        };
        match self.files.find_one(doc! {"_id": id}).await.db()? {
            Some(file) => Ok(Some(self.record(file).await?)),
            None => Ok(None),
        }
    }

    async fn read(&self, asset: &AssetRecord, range: ByteRange) -> Result<ByteStream, Error> {
        let id = ObjectId::parse_str(&asset.id).map_err(|_| corrupt())?;
        let (first, last) = range.pieces();
        let cursor = self
            .file_chunks
            .find(doc! {"files_id": id, "n": {"$gte": first, "$lte": last}})
            .sort(doc! {"n": 1})
            .batch_size(8)
            .await
            .db()?;
        let stream = cursor.map(move |item| {
            let doc = item.db()?;
            let n = doc.get_i32("n").map_err(|_| corrupt())?;
            let Some(Bson::Binary(data)) = doc.get("data") else {
                return Err(corrupt());
            };
            let part = range.slice_of(n.into(), &data.bytes).ok_or_else(corrupt)?;
            Ok(bytes::Bytes::copy_from_slice(part))
        });
        Ok(stream.boxed())
    }

    async fn grant_group(&self, asset_id: &str, group_id: &str) -> Result<(), Error> {
        let id = ObjectId::parse_str(asset_id).map_err(|_| AssetError::FileNotFound)?;
        self.files
            .update_one(
                doc! {"_id": id},
                doc! {"$addToSet": {"metadata.groups": group_id}},
            )
            .await
            .db()?;
        Ok(())
    }

    async fn make_public(&self, asset_id: &str) -> Result<(), Error> {
        let id = ObjectId::parse_str(asset_id).map_err(|_| AssetError::FileNotFound)?;
        self.files
            .update_one(doc! {"_id": id}, doc! {"$set": {"metadata.public": true}})
            .await
            .db()?;
        Ok(())
    }

    async fn usage(&self, owner_id: &str) -> Result<AssetUsage, Error> {
        // Summed here rather than by an aggregation, which not every MongoDB-compatible server
        // runs: a user's files and uploads are few.
        let sum = |docs: Vec<Document>, field: &str| {
            docs.iter()
                .map(|d| d.get_i64(field).unwrap_or_default().max(0) as u64)
                .sum::<u64>()
        };
        let files: Vec<Document> = documents(
            self.files
                .find(doc! {"metadata.ownerId": owner_id})
                .projection(doc! {"length": 1}),
        )
        .await?;
        let uploads: Vec<Document> = documents(
            self.sessions
                .find(doc! {"ownerId": owner_id, "assetId": {"$exists": false}})
                .projection(doc! {"receivedBytes": 1}),
        )
        .await?;
        Ok(AssetUsage {
            uploads: uploads.len() as u32,
            pending_bytes: sum(uploads, "receivedBytes"),
            stored_bytes: sum(files, "length"),
        })
    }

    async fn expire(&self, now: DateTime<Utc>) -> Result<u64, Error> {
        let expired: Vec<Document> = documents(
            self.sessions
                .find(doc! {"expiresAt": {"$lt": to_bson_time(now)}}),
        )
        .await?;
        for session in &expired {
            self.drop_session(session).await?;
        }
        Ok(expired.len() as u64)
    }
}
