//! Chunked uploads and stored files on SQLite.

use super::*;

type SessionRow = (i64, u32, u64, i64, Option<String>);

fn session_row(
    conn: &Connection,
    owner: &str,
    filename: &str,
) -> Result<Option<SessionRow>, Error> {
    conn.query_row(
        "SELECT id, total_chunks, received_bytes, expires_at, asset_id FROM upload_sessions
             WHERE owner_id = ?1 AND filename = ?2",
        [owner, filename],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
    )
    .optional()
    .db()
}

fn status_of(
    conn: &Connection,
    filename: &str,
    session: &SessionRow,
) -> Result<UploadStatus, Error> {
    let mut statement = conn
        .prepare_cached("SELECT idx FROM upload_chunks WHERE session_id = ?1 ORDER BY idx")
        .db()?;
    let received = statement
        .query_map([session.0], |r| r.get::<_, u32>(0))
        .db()?
        .collect::<Result<Vec<_>, _>>()
        .db()?;
    Ok(UploadStatus {
        filename: filename.to_string(),
        total_chunks: session.1,
        received,
        received_bytes: session.2,
        expires_at: time(session.3),
    })
}

fn drop_session(conn: &Connection, id: i64) -> Result<(), Error> {
    conn.execute("DELETE FROM upload_chunks WHERE session_id = ?1", [id])
        .db()?;
    conn.execute("DELETE FROM upload_sessions WHERE id = ?1", [id])
        .db()?;
    Ok(())
}

fn asset_from_row(r: &Row) -> rusqlite::Result<AssetRecord> {
    let groups: String = r.get(8)?;
    Ok(AssetRecord {
        id: r.get(0)?,
        owner_id: r.get(1)?,
        filename: r.get(2)?,
        content_type: r.get(3)?,
        size: r.get(4)?,
        sha256: r.get(5)?,
        created_at: time(r.get(6)?),
        public: r.get(7)?,
        groups: serde_json::from_str(&groups).unwrap_or_default(),
    })
}

fn asset_by_id(conn: &Connection, id: &str) -> Result<Option<AssetRecord>, Error> {
    conn.query_row(
        "SELECT id, owner_id, filename, content_type, size, sha256, created_at, public, groups
             FROM assets WHERE id = ?1",
        [id],
        asset_from_row,
    )
    .optional()
    .db()
}

#[async_trait::async_trait]
impl AssetStore for SqliteAssetStore {
    async fn put_chunk(&self, chunk: ChunkUpload) -> Result<ChunkProgress, Error> {
        let limits = self.limits.clone();
        self.run(move |conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .db()?;
            let now = Utc::now();
            let expires = millis(now + limits.session_ttl);
            let mut session = session_row(&tx, &chunk.owner_id, &chunk.filename)?;
            if let Some(s) = &session {
                if s.4.is_some() || s.3 < millis(now) {
                    drop_session(&tx, s.0)?;
                    session = None;
                }
            }
            let session = match session {
                Some(s) => s,
                None => {
                    tx.execute(
                        "INSERT INTO upload_sessions (owner_id, filename, total_chunks, expires_at)
                         VALUES (?1, ?2, ?3, ?4)",
                        params![chunk.owner_id, chunk.filename, chunk.total_chunks, expires],
                    )
                    .db()?;
                    session_row(&tx, &chunk.owner_id, &chunk.filename)?
                        .ok_or_else(|| Error::internal("upload vanished"))?
                }
            };
            if session.1 != chunk.total_chunks {
                return Err(AssetError::UploadInProgress {
                    filename: chunk.filename,
                    total: session.1,
                }
                .into());
            }
            let sha = sha256_hex(&chunk.bytes);
            let existing: Option<String> = tx
                .query_row(
                    "SELECT sha256 FROM upload_chunks WHERE session_id = ?1 AND idx = ?2",
                    params![session.0, chunk.index],
                    |r| r.get(0),
                )
                .optional()
                .db()?;
            match existing {
                Some(stored) if stored != sha => {
                    return Err(AssetError::ChunkConflict { index: chunk.index }.into())
                }
                Some(_) => {}
                None => {
                    let received = session.2 + chunk.bytes.len() as u64;
                    if received > limits.max_file_bytes {
                        drop_session(&tx, session.0)?;
                        tx.commit().db()?;
                        return Err(limits.file_too_large());
                    }
                    tx.execute(
                        "INSERT INTO upload_chunks (session_id, idx, size, sha256, data)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![
                            session.0,
                            chunk.index,
                            chunk.bytes.len(),
                            sha,
                            &chunk.bytes[..]
                        ],
                    )
                    .db()?;
                    tx.execute(
                        "UPDATE upload_sessions SET received_bytes = ?2 WHERE id = ?1",
                        params![session.0, received],
                    )
                    .db()?;
                }
            }
            tx.execute(
                "UPDATE upload_sessions SET expires_at = ?2 WHERE id = ?1",
                params![session.0, expires],
            )
            .db()?;
            let received_chunks: u32 = tx
                .query_row(
                    "SELECT count(*) FROM upload_chunks WHERE session_id = ?1",
                    [session.0],
                    |r| r.get(0),
                )
                .db()?;
            tx.commit().db()?;
            Ok(ChunkProgress {
                total_chunks: session.1,
                received_chunks,
            })
        })
        .await
    }

    async fn status(&self, owner_id: &str, filename: &str) -> Result<Option<UploadStatus>, Error> {
        let (owner, name) = (owner_id.to_string(), filename.to_string());
        self.run(move |conn| match session_row(conn, &owner, &name)? {
            Some(s) if s.4.is_none() => Ok(Some(status_of(conn, &name, &s)?)),
            _ => Ok(None),
        })
        .await
    }

    async fn abandon(&self, owner_id: &str, filename: &str) -> Result<bool, Error> {
        let (owner, name) = (owner_id.to_string(), filename.to_string());
        self.run(move |conn| match session_row(conn, &owner, &name)? {
            Some(s) => {
                drop_session(conn, s.0)?;
                Ok(s.4.is_none())
            }
            None => Ok(false),
        })
        .await
    }

    async fn complete(
        &self,
        owner_id: &str,
        filename: &str,
        total_chunks: u32,
    ) -> Result<AssetRecord, Error> {
        let (owner, name, limits) = (
            owner_id.to_string(),
            filename.to_string(),
            self.limits.clone(),
        );
        self.run(move |conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .db()?;
            let none = || Error::from(AssetError::NoUploadInProgress);
            let session = session_row(&tx, &owner, &name)?.ok_or_else(none)?;
            if let Some(asset_id) = &session.4 {
                return asset_by_id(&tx, asset_id)?.ok_or_else(none);
            }
            status_of(&tx, &name, &session)?.ready_to_complete(total_chunks)?;
            let head: Vec<u8> = tx
                .query_row(
                    "SELECT data FROM upload_chunks WHERE session_id = ?1 AND idx = 0",
                    [session.0],
                    |r| r.get(0),
                )
                .db()?;
            let content_type = match limits.check_type(&head) {
                Ok(t) => t,
                Err(e) => {
                    drop_session(&tx, session.0)?;
                    tx.commit().db()?;
                    return Err(e);
                }
            };
            let id = new_id();
            let (length, sha) = {
                let mut statement = tx
                    .prepare_cached(
                        "SELECT data FROM upload_chunks WHERE session_id = ?1 ORDER BY idx",
                    )
                    .db()?;
                let mut rows = statement.query([session.0]).db()?;
                let mut insert = tx
                    .prepare_cached(
                        "INSERT INTO asset_chunks (asset_id, n, data) VALUES (?1, ?2, ?3)",
                    )
                    .db()?;
                let mut assembler = Assembler::default();
                while let Some(row) = rows.next().db()? {
                    let data: Vec<u8> = row.get(0).db()?;
                    for (n, piece) in assembler.push(&data) {
                        insert.execute(params![id, n, piece]).db()?;
                    }
                }
                let (last, length, sha) = assembler.finish();
                if let Some((n, piece)) = last {
                    insert.execute(params![id, n, piece]).db()?;
                }
                (length, sha)
            };
            tx.execute(
                "INSERT INTO assets (id, owner_id, filename, content_type, size, sha256, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![id, owner, name, content_type, length, sha, millis(Utc::now())],
            ).db()?;
            tx.execute(
                "DELETE FROM upload_chunks WHERE session_id = ?1",
                [session.0],
            )
            .db()?;
            tx.execute(
                "UPDATE upload_sessions SET asset_id = ?2, expires_at = ?3 WHERE id = ?1",
                params![session.0, id, millis(Utc::now() + limits.session_ttl)],
            )
            .db()?;
            let asset = asset_by_id(&tx, &id)?.ok_or_else(|| Error::internal("asset vanished"))?;
            tx.commit().db()?;
            Ok(asset)
        })
        .await
    }

    async fn get(&self, asset_id: &str) -> Result<Option<AssetRecord>, Error> {
        let id = asset_id.to_string();
        self.run(move |conn| asset_by_id(conn, &id)).await
    }

    async fn read(&self, asset: &AssetRecord, range: ByteRange) -> Result<ByteStream, Error> {
        let (first, last) = range.pieces();
        let store = self.clone();
        let id = asset.id.clone();
        // One chunk per step, so a large download never sits in memory whole.
        let stream = futures_util::stream::iter(first..=last).then(move |n| {
            let (store, id) = (store.clone(), id.clone());
            async move {
                let data: Vec<u8> = store
                    .run(move |conn| {
                        conn.query_row(
                            "SELECT data FROM asset_chunks WHERE asset_id = ?1 AND n = ?2",
                            params![id, n],
                            |r| r.get(0),
                        )
                        .db()
                    })
                    .await?;
                let part = range
                    .slice_of(n, &data)
                    .ok_or_else(|| Error::internal("a stored file is shorter than recorded"))?;
                Ok(bytes::Bytes::copy_from_slice(part))
            }
        });
        Ok(stream.boxed())
    }

    async fn grant_group(&self, asset_id: &str, group_id: &str) -> Result<(), Error> {
        let (id, group) = (asset_id.to_string(), group_id.to_string());
        self.run(move |conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .db()?;
            if let Some(asset) = asset_by_id(&tx, &id)? {
                if !asset.groups.contains(&group) {
                    let mut groups = asset.groups;
                    groups.push(group);
                    tx.execute(
                        "UPDATE assets SET groups = ?2 WHERE id = ?1",
                        params![id, serde_json::to_string(&groups).map_err(Error::internal)?],
                    )
                    .db()?;
                }
            }
            tx.commit().db()?;
            Ok(())
        })
        .await
    }

    async fn make_public(&self, asset_id: &str) -> Result<(), Error> {
        let id = asset_id.to_string();
        self.run(move |conn| {
            conn.execute("UPDATE assets SET public = 1 WHERE id = ?1", [id])
                .db()?;
            Ok(())
        })
        .await
    }

    async fn usage(&self, owner_id: &str) -> Result<AssetUsage, Error> {
        let owner = owner_id.to_string();
        self.run(move |conn| {
            let stored: i64 = conn
                .prepare_cached("SELECT coalesce(sum(size), 0) FROM assets WHERE owner_id = ?1")
                .db()?
                .query_row([&owner], |r| r.get(0))
                .db()?;
            let (uploads, pending): (i64, i64) = conn
                .prepare_cached(
                    "SELECT count(*), coalesce(sum(received_bytes), 0) FROM upload_sessions
                     WHERE owner_id = ?1 AND asset_id IS NULL",
                )
                .db()?
                .query_row([&owner], |r| Ok((r.get(0)?, r.get(1)?)))
                .db()?;
            Ok(AssetUsage {
                stored_bytes: stored.max(0) as u64,
                uploads: uploads.max(0) as u32,
                pending_bytes: pending.max(0) as u64,
            })
        })
        .await
    }

    async fn expire(&self, now: DateTime<Utc>) -> Result<u64, Error> {
        self.run(move |conn| {
            let tx = conn.transaction().db()?;
            let ids: Vec<i64> = {
                let mut statement = tx
                    .prepare_cached("SELECT id FROM upload_sessions WHERE expires_at < ?1")
                    .db()?;
                let ids = statement
                    .query_map([millis(now)], |r| r.get(0))
                    .db()?
                    .collect::<Result<Vec<_>, _>>()
                    .db()?;
                ids
            };
            for id in &ids {
                drop_session(&tx, *id)?;
            }
            tx.commit().db()?;
            Ok(ids.len() as u64)
        })
        .await
    }
}
