//! The embedded store of `chat-server all` without MongoDB: every store port on one SQLite file
//! under the data directory, with the MongoDB adapter's semantics (the conformance tests run
//! the same assertions against both): unique emails, single-use refresh tokens, one direct
//! conversation per pair, gap-free per-group sequences, idempotent sends, cursors, Unicode
//! case-insensitive search, and chunked uploads assembled into stored files.
//!
//! One connection in WAL mode serves the process; calls run on the blocking pool. A committed
//! write survives the process being killed: an acknowledged message is on disk.

use std::path::Path;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use rusqlite::functions::FunctionFlags;
use rusqlite::{params, Connection, OptionalExtension, Row};

use chat_domain::assets::{
    sha256_hex, Assembler, AssetLimits, AssetRecord, ByteRange, ChunkProgress, ChunkUpload,
    UploadStatus,
};
use chat_domain::values::{search_words, Email, PageRequest};
use chat_domain::Error;
use chat_ports::assets::{AssetStore, ByteStream};
use chat_ports::health::Probe;
use chat_ports::store::{
    Attachment, GroupRecord, GroupStore, MemberRecord, MemberRole, MessageStore, MessageView,
    NewGroup, NewMessage, NewUser, RefreshTokenRecord, RefreshTokenStore, RefreshUse,
    SigningKeyStore, Stores, UserRecord, UserStore,
};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS users (
  id TEXT PRIMARY KEY, first_name TEXT NOT NULL, last_name TEXT NOT NULL,
  email TEXT NOT NULL UNIQUE, password_hash TEXT NOT NULL, profile_url TEXT,
  last_seen_at INTEGER, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS refresh_tokens (
  token_hash TEXT PRIMARY KEY, family_id TEXT NOT NULL, user_id TEXT NOT NULL,
  created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL, used_at INTEGER,
  revoked INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS refresh_family ON refresh_tokens(family_id);
CREATE TABLE IF NOT EXISTS signing_keys (id TEXT PRIMARY KEY, pkcs8 BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS chat_groups (
  id TEXT PRIMARY KEY, name TEXT, image_url TEXT, direct_key TEXT UNIQUE,
  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS members (
  group_id TEXT NOT NULL, user_id TEXT NOT NULL, role TEXT NOT NULL, joined_at INTEGER NOT NULL,
  last_seen_at INTEGER, last_seen_seq INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (group_id, user_id));
CREATE INDEX IF NOT EXISTS members_by_user ON members(user_id);
CREATE TABLE IF NOT EXISTS messages (
  id TEXT PRIMARY KEY, group_id TEXT NOT NULL, seq INTEGER NOT NULL, sender_id TEXT NOT NULL,
  client_message_id TEXT NOT NULL, content TEXT, attachment TEXT,
  deleted INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL,
  UNIQUE (group_id, seq), UNIQUE (sender_id, client_message_id));
CREATE TABLE IF NOT EXISTS upload_sessions (
  id INTEGER PRIMARY KEY AUTOINCREMENT, owner_id TEXT NOT NULL, filename TEXT NOT NULL,
  total_chunks INTEGER NOT NULL, received_bytes INTEGER NOT NULL DEFAULT 0,
  expires_at INTEGER NOT NULL, asset_id TEXT, UNIQUE (owner_id, filename));
CREATE TABLE IF NOT EXISTS upload_chunks (
  session_id INTEGER NOT NULL, idx INTEGER NOT NULL, size INTEGER NOT NULL, sha256 TEXT NOT NULL,
  data BLOB NOT NULL, PRIMARY KEY (session_id, idx));
CREATE TABLE IF NOT EXISTS assets (
  id TEXT PRIMARY KEY, owner_id TEXT NOT NULL, filename TEXT NOT NULL,
  content_type TEXT NOT NULL, size INTEGER NOT NULL, sha256 TEXT NOT NULL,
  created_at INTEGER NOT NULL, public INTEGER NOT NULL DEFAULT 0, groups TEXT NOT NULL DEFAULT '[]');
CREATE TABLE IF NOT EXISTS asset_chunks (
  asset_id TEXT NOT NULL, n INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (asset_id, n));
"#;

/// The embedded database. Cheap to clone; every store port is implemented on it.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    limits: AssetLimits,
}

fn db_error(e: rusqlite::Error) -> Error {
    Error::internal(format!("embedded database: {e}"))
}

/// `.db()?` on a SQLite result: its error as the port's (logged, reported as internal).
trait Db<T> {
    fn db(self) -> Result<T, Error>;
}

impl<T> Db<T> for rusqlite::Result<T> {
    fn db(self) -> Result<T, Error> {
        self.map_err(db_error)
    }
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// A new id laid out as MongoDB's ObjectId (24 hex digits: seconds, a per-process random
/// part, a counter), so ids look the same in both modes and sort in creation order within a
/// process, which lists use to break ties between equal timestamps.
fn new_id() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::OnceLock;
    static PROCESS: OnceLock<(String, AtomicU32)> = OnceLock::new();
    let (process, counter) = PROCESS.get_or_init(|| {
        let random = uuid::Uuid::new_v4();
        let bytes = random.as_bytes();
        let start = u32::from_be_bytes([0, bytes[5], bytes[6], bytes[7]]);
        (
            random.simple().to_string()[..10].to_string(),
            AtomicU32::new(start),
        )
    });
    let secs = Utc::now().timestamp().max(0) as u32;
    let count = counter.fetch_add(1, Ordering::Relaxed) & 0x00ff_ffff;
    format!("{secs:08x}{process}{count:06x}")
}

impl SqliteStore {
    /// Opens (creating if needed) `file` and its schema.
    pub fn open(file: &Path, limits: AssetLimits) -> Result<Self, String> {
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create the data directory {}: {e}", dir.display()))?;
        }
        let conn = Connection::open(file)
            .map_err(|e| format!("cannot open the database {}: {e}", file.display()))?;
        Self::prepare(conn, limits).map_err(|e| format!("cannot prepare {}: {e}", file.display()))
    }

    /// A throw-away database in memory (tests).
    pub fn in_memory(limits: AssetLimits) -> Result<Self, String> {
        let conn = Connection::open_in_memory().map_err(|e| e.to_string())?;
        Self::prepare(conn, limits).map_err(|e| e.to_string())
    }

    fn prepare(conn: Connection, limits: AssetLimits) -> Result<Self, rusqlite::Error> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // SQLite's lower() and LIKE fold ASCII only; search must fold every script.
        conn.create_scalar_function(
            "ulower",
            1,
            FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
            |ctx| Ok(ctx.get::<Option<String>>(0)?.map(|s| s.to_lowercase())),
        )?;
        conn.execute_batch(SCHEMA)?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            limits,
        })
    }

    /// Runs `work` with the connection on the blocking pool.
    async fn run<T, F>(&self, work: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, Error> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn
                .lock()
                .map_err(|_| Error::internal("database poisoned"))?;
            work(&mut conn)
        })
        .await
        .map_err(Error::internal)?
    }
}

impl SqliteStore {
    /// Every store port on this database.
    pub fn stores(self) -> Stores {
        let db = Arc::new(self);
        Stores {
            users: db.clone(),
            refresh_tokens: db.clone(),
            signing_keys: db.clone(),
            groups: db.clone(),
            messages: db.clone(),
            assets: db,
        }
    }
}

/// Readiness: the embedded database answers a query.
pub struct SqliteProbe(pub SqliteStore);

#[async_trait::async_trait]
impl Probe for SqliteProbe {
    fn name(&self) -> &'static str {
        "database"
    }
    async fn check(&self) -> Result<(), String> {
        self.0
            .run(|conn| conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0)).db())
            .await
            .map(|_| ())
            .map_err(|e| e.message)
    }
}

// ------------------------------------------------------------------------------------- users

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
impl UserStore for SqliteStore {
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
                    Err(Error::conflict("an account with this email already exists"))
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
        let ids = ids.to_vec();
        self.run(move |conn| {
            let mut statement = conn.prepare("SELECT id FROM users WHERE id = ?1").db()?;
            let mut found = Vec::new();
            for id in ids {
                if let Some(id) = statement
                    .query_row([id], |r| r.get::<_, String>(0))
                    .optional()
                    .db()?
                {
                    found.push(id);
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
                .prepare(&format!(
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
impl RefreshTokenStore for SqliteStore {
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
impl SigningKeyStore for SqliteStore {
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

// ------------------------------------------------------------------------------------ groups

const GROUP_COLUMNS: &str = "id, name, image_url, direct_key, created_at, updated_at";
const MEMBER_COLUMNS: &str = "group_id, user_id, role, joined_at, last_seen_at, last_seen_seq";

fn group_from_row(r: &Row) -> rusqlite::Result<GroupRecord> {
    Ok(GroupRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        image_url: r.get(2)?,
        direct_key: r.get(3)?,
        created_at: time(r.get(4)?),
        updated_at: time(r.get(5)?),
    })
}

fn member_from_row(r: &Row) -> rusqlite::Result<MemberRecord> {
    Ok(MemberRecord {
        group_id: r.get(0)?,
        user_id: r.get(1)?,
        role: if r.get::<_, String>(2)? == "admin" {
            MemberRole::Admin
        } else {
            MemberRole::Member
        },
        joined_at: time(r.get(3)?),
        last_seen_at: r.get::<_, Option<i64>>(4)?.map(time),
        last_seen_seq: r.get(5)?,
    })
}

fn role_str(role: MemberRole) -> &'static str {
    match role {
        MemberRole::Admin => "admin",
        MemberRole::Member => "member",
    }
}

fn group_by(conn: &Connection, column: &str, value: &str) -> Result<Option<GroupRecord>, Error> {
    conn.query_row(
        &format!("SELECT {GROUP_COLUMNS} FROM chat_groups WHERE {column} = ?1"),
        [value],
        group_from_row,
    )
    .optional()
    .db()
}

fn touch(conn: &Connection, group_id: &str) -> Result<(), Error> {
    conn.execute(
        "UPDATE chat_groups SET updated_at = max(updated_at + 1, ?2) WHERE id = ?1",
        params![group_id, millis(Utc::now())],
    )
    .db()?;
    Ok(())
}

#[async_trait::async_trait]
impl GroupStore for SqliteStore {
    async fn create(&self, group: NewGroup) -> Result<(GroupRecord, bool), Error> {
        self.run(move |conn| {
            let tx = conn.transaction().db()?;
            if let Some(key) = &group.direct_key {
                if let Some(existing) = group_by(&tx, "direct_key", key)? {
                    return Ok((existing, false));
                }
            }
            let (id, now) = (new_id(), millis(Utc::now()));
            tx.execute(
                "INSERT INTO chat_groups (id, name, direct_key, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?4)",
                params![id, group.name, group.direct_key, now],
            )
            .db()?;
            for (user, role) in &group.members {
                tx.execute(
                    "INSERT OR IGNORE INTO members (group_id, user_id, role, joined_at)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![id, user, role_str(*role), now],
                )
                .db()?;
            }
            let created =
                group_by(&tx, "id", &id)?.ok_or_else(|| Error::internal("group vanished"))?;
            tx.commit().db()?;
            Ok((created, true))
        })
        .await
    }

    async fn get(&self, group_id: &str) -> Result<Option<GroupRecord>, Error> {
        let id = group_id.to_string();
        self.run(move |conn| group_by(conn, "id", &id)).await
    }

    async fn groups_of(&self, user_id: &str) -> Result<Vec<GroupRecord>, Error> {
        let user = user_id.to_string();
        self.run(move |conn| {
            let mut statement = conn
                .prepare(&format!(
                    "SELECT {GROUP_COLUMNS} FROM chat_groups
                 WHERE id IN (SELECT group_id FROM members WHERE user_id = ?1)
                 ORDER BY updated_at DESC, id DESC"
                ))
                .db()?;
            let groups = statement
                .query_map([user], group_from_row)
                .db()?
                .collect::<Result<Vec<_>, _>>()
                .db()?;
            Ok(groups)
        })
        .await
    }

    async fn members(&self, group_id: &str) -> Result<Vec<MemberRecord>, Error> {
        let id = group_id.to_string();
        self.run(move |conn| {
            let mut statement = conn
                .prepare(&format!(
                "SELECT {MEMBER_COLUMNS} FROM members WHERE group_id = ?1 ORDER BY joined_at, rowid"
            ))
                .db()?;
            let members = statement
                .query_map([id], member_from_row)
                .db()?
                .collect::<Result<Vec<_>, _>>()
                .db()?;
            Ok(members)
        })
        .await
    }

    async fn membership(
        &self,
        group_id: &str,
        user_id: &str,
    ) -> Result<Option<MemberRecord>, Error> {
        let (group, user) = (group_id.to_string(), user_id.to_string());
        self.run(move |conn| {
            conn.query_row(
                &format!(
                    "SELECT {MEMBER_COLUMNS} FROM members WHERE group_id = ?1 AND user_id = ?2"
                ),
                [group, user],
                member_from_row,
            )
            .optional()
            .db()
        })
        .await
    }

    async fn update(
        &self,
        group_id: &str,
        name: Option<String>,
        image_url: Option<Option<String>>,
    ) -> Result<GroupRecord, Error> {
        let id = group_id.to_string();
        self.run(move |conn| {
            let tx = conn.transaction().db()?;
            if let Some(name) = name {
                tx.execute(
                    "UPDATE chat_groups SET name = ?2 WHERE id = ?1",
                    params![id, name],
                )
                .db()?;
            }
            if let Some(url) = image_url {
                tx.execute(
                    "UPDATE chat_groups SET image_url = ?2 WHERE id = ?1",
                    params![id, url],
                )
                .db()?;
            }
            touch(&tx, &id)?;
            let group =
                group_by(&tx, "id", &id)?.ok_or_else(|| Error::not_found("group not found"))?;
            tx.commit().db()?;
            Ok(group)
        })
        .await
    }

    async fn add_members(&self, group_id: &str, user_ids: &[String]) -> Result<Vec<String>, Error> {
        let (id, users) = (group_id.to_string(), user_ids.to_vec());
        self.run(move |conn| {
            let tx = conn.transaction().db()?;
            let now = millis(Utc::now());
            let mut added = Vec::new();
            for user in users {
                let inserted = tx
                    .execute(
                        "INSERT OR IGNORE INTO members (group_id, user_id, role, joined_at)
                     VALUES (?1, ?2, 'member', ?3)",
                        params![id, user, now],
                    )
                    .db()?;
                if inserted > 0 {
                    added.push(user);
                }
            }
            if !added.is_empty() {
                touch(&tx, &id)?;
            }
            tx.commit().db()?;
            Ok(added)
        })
        .await
    }

    async fn remove_member(&self, group_id: &str, user_id: &str) -> Result<bool, Error> {
        let (id, user) = (group_id.to_string(), user_id.to_string());
        self.run(move |conn| {
            let removed = conn
                .execute(
                    "DELETE FROM members WHERE group_id = ?1 AND user_id = ?2",
                    [&id, &user],
                )
                .db()?
                > 0;
            if removed {
                touch(conn, &id)?;
            }
            Ok(removed)
        })
        .await
    }

    async fn set_role(&self, group_id: &str, user_id: &str, role: MemberRole) -> Result<(), Error> {
        let (id, user) = (group_id.to_string(), user_id.to_string());
        self.run(move |conn| {
            conn.execute(
                "UPDATE members SET role = ?3 WHERE group_id = ?1 AND user_id = ?2",
                params![id, user, role_str(role)],
            )
            .db()?;
            Ok(())
        })
        .await
    }

    async fn mark_seen(
        &self,
        group_id: &str,
        user_id: &str,
        seq: i64,
        at: DateTime<Utc>,
    ) -> Result<bool, Error> {
        let (id, user) = (group_id.to_string(), user_id.to_string());
        self.run(move |conn| {
            Ok(conn
                .execute(
                    "UPDATE members SET last_seen_seq = ?3, last_seen_at = ?4
                 WHERE group_id = ?1 AND user_id = ?2 AND last_seen_seq < ?3",
                    params![id, user, seq, millis(at)],
                )
                .db()?
                > 0)
        })
        .await
    }

    async fn delete(&self, group_id: &str) -> Result<(), Error> {
        let id = group_id.to_string();
        self.run(move |conn| {
            conn.execute("DELETE FROM members WHERE group_id = ?1", [&id])
                .db()?;
            conn.execute("DELETE FROM chat_groups WHERE id = ?1", [&id])
                .db()?;
            Ok(())
        })
        .await
    }
}

// ---------------------------------------------------------------------------------- messages

const MESSAGE_COLUMNS: &str =
    "id, group_id, seq, sender_id, client_message_id, content, attachment, deleted, created_at";

fn message_from_row(r: &Row) -> rusqlite::Result<MessageView> {
    let attachment: Option<String> = r.get(6)?;
    Ok(MessageView {
        id: r.get(0)?,
        group_id: r.get(1)?,
        seq: r.get(2)?,
        sender_id: r.get(3)?,
        client_message_id: r.get(4)?,
        content: r.get(5)?,
        attachment: attachment.and_then(|a| serde_json::from_str::<Attachment>(&a).ok()),
        deleted: r.get(7)?,
        created_at: time(r.get(8)?),
    })
}

fn messages_where(
    conn: &Connection,
    clause: &str,
    args: &[&dyn rusqlite::ToSql],
) -> Result<Vec<MessageView>, Error> {
    let mut statement = conn
        .prepare(&format!("SELECT {MESSAGE_COLUMNS} FROM messages {clause}"))
        .db()?;
    let messages = statement
        .query_map(args, message_from_row)
        .db()?
        .collect::<Result<Vec<_>, _>>()
        .db()?;
    Ok(messages)
}

fn first_message(
    conn: &Connection,
    clause: &str,
    args: &[&dyn rusqlite::ToSql],
) -> Result<Option<MessageView>, Error> {
    Ok(messages_where(conn, clause, args)?.into_iter().next())
}

#[async_trait::async_trait]
impl MessageStore for SqliteStore {
    async fn append(&self, message: NewMessage) -> Result<(MessageView, bool), Error> {
        self.run(move |conn| {
            // One transaction: the next number and the insert cannot be split by another writer.
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).db()?;
            let by_client = "WHERE sender_id = ?1 AND client_message_id = ?2";
            if let Some(existing) =
                first_message(&tx, by_client, &[&message.sender_id, &message.client_message_id])?
            {
                return Ok((existing, false));
            }
            let seq: i64 = tx.query_row(
                "SELECT coalesce(max(seq), 0) + 1 FROM messages WHERE group_id = ?1",
                [&message.group_id],
                |r| r.get(0),
            ).db()?;
            let id = new_id();
            let attachment = message
                .attachment
                .as_ref()
                .map(serde_json::to_string)
                .transpose()
                .map_err(Error::internal)?;
            let created_at = millis(Utc::now());
            tx.execute(
                "INSERT INTO messages (id, group_id, seq, sender_id, client_message_id, content, attachment, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![id, message.group_id, seq, message.sender_id, message.client_message_id,
                    message.content, attachment, created_at],
            ).db()?;
            tx.commit().db()?;
            // What was just written, as a read would return it (times in milliseconds).
            let stored = MessageView {
                id,
                group_id: message.group_id,
                seq,
                sender_id: message.sender_id,
                client_message_id: message.client_message_id,
                content: message.content,
                attachment: message.attachment,
                deleted: false,
                created_at: time(created_at),
            };
            Ok((stored, true))
        })
        .await
    }

    async fn get(&self, message_id: &str) -> Result<Option<MessageView>, Error> {
        let id = message_id.to_string();
        self.run(move |conn| first_message(conn, "WHERE id = ?1", &[&id]))
            .await
    }

    async fn before(
        &self,
        group_id: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<MessageView>, Error> {
        let group = group_id.to_string();
        let before = before.unwrap_or(i64::MAX);
        self.run(move |conn| {
            messages_where(
                conn,
                &format!("WHERE group_id = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT {limit}"),
                &[&group, &before],
            )
        })
        .await
    }

    async fn after(
        &self,
        group_id: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<MessageView>, Error> {
        let group = group_id.to_string();
        self.run(move |conn| {
            messages_where(
                conn,
                &format!("WHERE group_id = ?1 AND seq > ?2 ORDER BY seq LIMIT {limit}"),
                &[&group, &after],
            )
        })
        .await
    }

    async fn tombstone(&self, message_id: &str) -> Result<Option<MessageView>, Error> {
        let id = message_id.to_string();
        self.run(move |conn| {
            conn.execute(
                "UPDATE messages SET deleted = 1, content = NULL, attachment = NULL WHERE id = ?1",
                [&id],
            )
            .db()?;
            first_message(conn, "WHERE id = ?1", &[&id])
        })
        .await
    }

    async fn unread(&self, group_id: &str, user_id: &str, seq: i64) -> Result<u64, Error> {
        let (group, user) = (group_id.to_string(), user_id.to_string());
        self.run(move |conn| {
            conn.query_row(
                "SELECT count(*) FROM messages
                 WHERE group_id = ?1 AND seq > ?2 AND sender_id != ?3 AND deleted = 0",
                params![group, seq, user],
                |r| r.get(0),
            )
            .db()
        })
        .await
    }

    async fn search(
        &self,
        group_ids: &[String],
        text: &str,
        limit: u32,
    ) -> Result<Vec<MessageView>, Error> {
        let (groups, text) = (group_ids.to_vec(), text.to_lowercase());
        self.run(move |conn| {
            let mut found = Vec::new();
            for group in groups {
                found.extend(messages_where(
                    conn,
                    &format!(
                        "WHERE group_id = ?1 AND deleted = 0 AND instr(ulower(content), ?2)
                         ORDER BY created_at DESC, id DESC LIMIT {limit}"
                    ),
                    &[&group, &text],
                )?);
            }
            found.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
            found.truncate(limit as usize);
            Ok(found)
        })
        .await
    }
}

// ------------------------------------------------------------------------------------ assets

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
        .prepare("SELECT idx FROM upload_chunks WHERE session_id = ?1 ORDER BY idx")
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
impl AssetStore for SqliteStore {
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
                return Err(Error::conflict(format!(
                    "an upload of {} with {} chunks is in progress; finish or abandon it first",
                    chunk.filename, session.1
                )));
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
                    return Err(Error::conflict(format!(
                        "chunk {} was already received with different bytes",
                        chunk.index
                    )))
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
            let none = || Error::not_found("no upload of that file is in progress");
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
                    .prepare("SELECT data FROM upload_chunks WHERE session_id = ?1 ORDER BY idx")
                    .db()?;
                let mut rows = statement.query([session.0]).db()?;
                let mut insert = tx
                    .prepare("INSERT INTO asset_chunks (asset_id, n, data) VALUES (?1, ?2, ?3)")
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

    async fn expire(&self, now: DateTime<Utc>) -> Result<u64, Error> {
        self.run(move |conn| {
            let tx = conn.transaction().db()?;
            let ids: Vec<i64> = {
                let mut statement = tx
                    .prepare("SELECT id FROM upload_sessions WHERE expires_at < ?1")
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

#[cfg(test)]
mod tests {
    use super::*;
    use chat_ports::assets::owned_image;

    #[tokio::test]
    async fn pictures_elsewhere_pass_and_unknown_assets_here_do_not() {
        let store = SqliteStore::in_memory(AssetLimits::default()).unwrap();
        let image = |url: &'static str| owned_image(&store, "imageUrl", "ada", url);
        // A CDN path that happens to contain /assets/ is not ours.
        assert_eq!(
            image("https://cdn.example.com/assets/logo.png")
                .await
                .unwrap(),
            None
        );
        let unknown = image("/assets/logo.png").await.unwrap_err();
        assert_eq!(unknown.message, "that asset does not exist");
        let nobody = image("/assets/665f1f77bcf86cd799439011").await.unwrap_err();
        assert_eq!(nobody.message, "use an image you uploaded");
        assert!(image("javascript:alert(1)").await.is_err());
    }
}
