//! Accounts, refresh-token families and signing keys on SQLite.

use super::*;

const USER_COLUMNS: &str = "id, first_name, last_name, email, password_hash, profile_url, \
                            last_seen_at, created_at, updated_at";

fn user_from_row(r: &Row) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        id: r.get(0)?,
        first_name: r.get(1)?,
        last_name: r.get(2)?,
        email: r.get(3)?,
        password_hash: r.get(4)?,
        profile_url: r.get(5)?,
        last_seen_at: r.get::<_, Option<i64>>(6)?.map(time),
        created_at: time(r.get(7)?),
        updated_at: time(r.get(8)?),
    })
}

fn user_by_id(conn: &Connection, id: &str) -> Result<Option<UserRecord>, Error> {
    conn.query_row(
        &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
        [id],
        user_from_row,
    )
    .optional()
    .db()
}

#[async_trait::async_trait]
impl UserStore for SqliteUserStore {
    async fn insert(&self, user: NewUser) -> Result<UserRecord, Error> {
        self.run(move |conn| {
            let (id, now) = (new_id(), millis(Utc::now()));
            match conn.execute(
                "INSERT INTO users (id, first_name, last_name, email, password_hash, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                params![id, user.first_name, user.last_name, user.email.as_str(), user.password_hash, now],
            ) {
                Ok(_) => user_by_id(conn, &id)?.ok_or_else(|| Error::internal("user vanished")),
                Err(e) if is_unique_violation(&e) => {
                    Err(AuthError::EmailTaken.into())
                }
                Err(e) => Err(db_error(e)),
            }
        })
        .await
    }

    async fn by_email(&self, email: &Email) -> Result<Option<UserRecord>, Error> {
        let email = email.as_str().to_string();
        self.run(move |conn| {
            conn.query_row(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE email = ?1"),
                [email],
                user_from_row,
            )
            .optional()
            .db()
        })
        .await
    }

    async fn by_id(&self, id: &str) -> Result<Option<UserRecord>, Error> {
        let id = id.to_string();
        self.run(move |conn| user_by_id(conn, &id)).await
    }

    async fn update_profile(
        &self,
        id: &str,
        first_name: Option<String>,
        last_name: Option<String>,
        profile_url: Option<Option<String>>,
    ) -> Result<Option<UserRecord>, Error> {
        let id = id.to_string();
        self.run(move |conn| {
            let tx = conn.transaction().db()?;
            let now = millis(Utc::now());
            if let Some(v) = first_name {
                tx.execute(
                    "UPDATE users SET first_name = ?2 WHERE id = ?1",
                    params![id, v],
                )
                .db()?;
            }
            if let Some(v) = last_name {
                tx.execute(
                    "UPDATE users SET last_name = ?2 WHERE id = ?1",
                    params![id, v],
                )
                .db()?;
            }
            if let Some(v) = profile_url {
                tx.execute(
                    "UPDATE users SET profile_url = ?2 WHERE id = ?1",
                    params![id, v],
                )
                .db()?;
            }
            tx.execute(
                "UPDATE users SET updated_at = ?2 WHERE id = ?1",
                params![id, now],
            )
            .db()?;
            let user = user_by_id(&tx, &id)?;
            tx.commit().db()?;
            Ok(user)
        })
        .await
    }

    async fn set_last_seen(&self, id: &str, at: DateTime<Utc>) -> Result<(), Error> {
        let id = id.to_string();
        self.run(move |conn| {
            conn.execute(
                "UPDATE users SET last_seen_at = ?2
                 WHERE id = ?1 AND (last_seen_at IS NULL OR last_seen_at < ?2)",
                params![id, millis(at)],
            )
            .db()?;
            Ok(())
        })
        .await
    }

    async fn existing(&self, ids: &[String]) -> Result<Vec<String>, Error> {
        let found = self.last_seen(ids).await?;
        Ok(found.into_iter().map(|(id, _)| id).collect())
    }

    async fn last_seen(
        &self,
        ids: &[String],
    ) -> Result<Vec<(String, Option<DateTime<Utc>>)>, Error> {
        let ids = ids.to_vec();
        self.run(move |conn| {
            let mut statement = conn
                .prepare_cached("SELECT id, last_seen_at FROM users WHERE id = ?1")
                .db()?;
            let mut found = Vec::new();
            for id in ids {
                if let Some(seen) = statement
                    .query_row([id], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?))
                    })
                    .optional()
                    .db()?
                {
                    found.push((seen.0, seen.1.map(time)));
                }
            }
            Ok(found)
        })
        .await
    }

    async fn list(
        &self,
        search: Option<&str>,
        page: PageRequest,
    ) -> Result<(Vec<UserRecord>, u64), Error> {
        let words: Vec<String> = search_words(search).map(str::to_lowercase).collect();
        self.run(move |conn| {
            let clause = if words.is_empty() {
                "1".to_string()
            } else {
                (1..=words.len())
                    .map(|i| {
                        format!(
                            "(instr(ulower(first_name), ?{i}) OR instr(ulower(last_name), ?{i}) \
                             OR instr(ulower(email), ?{i}))"
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" AND ")
            };
            let args = rusqlite::params_from_iter(words.iter());
            let total: u64 = conn
                .query_row(
                    &format!("SELECT count(*) FROM users WHERE {clause}"),
                    args,
                    |r| r.get(0),
                )
                .db()?;
            let mut statement = conn
                .prepare_cached(&format!(
                "SELECT {USER_COLUMNS} FROM users WHERE {clause} ORDER BY id LIMIT {} OFFSET {}",
                page.limit,
                page.skip()
            ))
                .db()?;
            let users = statement
                .query_map(rusqlite::params_from_iter(words.iter()), user_from_row)
                .db()?
                .collect::<Result<Vec<_>, _>>()
                .db()?;
            Ok((users, total))
        })
        .await
    }
}

// ---------------------------------------------------------------------------- refresh tokens

fn refresh_from_row(r: &Row) -> rusqlite::Result<(RefreshTokenRecord, bool)> {
    Ok((
        RefreshTokenRecord {
            token_hash: r.get(0)?,
            family_id: r.get(1)?,
            user_id: r.get(2)?,
            created_at: time(r.get(3)?),
            expires_at: time(r.get(4)?),
        },
        r.get::<_, Option<i64>>(5)?.is_some() || r.get::<_, bool>(6)?,
    ))
}

#[async_trait::async_trait]
impl RefreshTokenStore for SqliteRefreshTokenStore {
    async fn insert(&self, t: RefreshTokenRecord) -> Result<(), Error> {
        self.run(move |conn| {
            // Expired tokens go, as MongoDB's TTL index removes them.
            conn.execute(
                "DELETE FROM refresh_tokens WHERE expires_at < ?1",
                [millis(Utc::now())],
            ).db()?;
            conn.execute(
                "INSERT INTO refresh_tokens (token_hash, family_id, user_id, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![t.token_hash, t.family_id, t.user_id, millis(t.created_at), millis(t.expires_at)],
            ).db()?;
            Ok(())
        })
        .await
    }

    async fn spend(&self, token_hash: &str) -> Result<RefreshUse, Error> {
        let hash = token_hash.to_string();
        self.run(move |conn| {
            let tx = conn.transaction().db()?;
            let found = tx
                .query_row(
                    "SELECT token_hash, family_id, user_id, created_at, expires_at, used_at, revoked
                     FROM refresh_tokens WHERE token_hash = ?1",
                    [&hash],
                    refresh_from_row,
                )
                .optional().db()?;
            let answer = match found {
                None => RefreshUse::Unknown,
                Some((record, true)) => RefreshUse::Reused(record),
                Some((record, false)) => {
                    tx.execute(
                        "UPDATE refresh_tokens SET used_at = ?2 WHERE token_hash = ?1",
                        params![hash, millis(Utc::now())],
                    )
                    .db()?;
                    RefreshUse::Fresh(record)
                }
            };
            tx.commit().db()?;
            Ok(answer)
        })
        .await
    }

    async fn revoke_family(&self, family_id: &str) -> Result<u64, Error> {
        let family = family_id.to_string();
        self.run(move |conn| {
            Ok(conn
                .execute(
                    "UPDATE refresh_tokens SET revoked = 1 WHERE family_id = ?1 AND revoked = 0",
                    [family],
                )
                .db()? as u64)
        })
        .await
    }
}

#[async_trait::async_trait]
impl SigningKeyStore for SqliteSigningKeyStore {
    async fn development_key(&self, candidate: &[u8]) -> Result<Vec<u8>, Error> {
        let candidate = candidate.to_vec();
        self.run(move |conn| {
            conn.execute(
                "INSERT OR IGNORE INTO signing_keys (id, pkcs8) VALUES ('development', ?1)",
                [candidate],
            )
            .db()?;
            conn.query_row(
                "SELECT pkcs8 FROM signing_keys WHERE id = 'development'",
                [],
                |r| r.get(0),
            )
            .db()
        })
        .await
    }
}
