//! The embedded store of `chat-server all` without MongoDB: every store port on one SQLite file
//! under the data directory, with the MongoDB adapter's semantics (the conformance tests run
//! the same assertions against both): unique emails, single-use refresh tokens, one direct
//! conversation per pair, gap-free per-group sequences, idempotent sends, cursors, Unicode
//! case-insensitive search, and chunked uploads assembled into stored files.
//!
//! One connection in WAL mode serves the process: new messages are stored by a thread of their
//! own, several to a transaction, and other calls run on the blocking pool. A committed write
//! survives the process being killed: an acknowledged message is on disk.
//!
//! As with MongoDB, each port has its own type ([`SqliteUserStore`], [`SqliteGroupStore`], …),
//! here all on the one [`SqliteDb`]; the modules mirror the MongoDB adapter's.

mod assets;
mod groups;
mod messages;
mod users;

use chat_ports::startup::StartupError;
use std::path::Path;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use rusqlite::functions::FunctionFlags;
use rusqlite::{params, Connection, OptionalExtension, Row};

use chat_domain::assets::{
    sha256_hex, Assembler, AssetLimits, AssetRecord, AssetUsage, ByteRange, ChunkProgress,
    ChunkUpload, UploadStatus,
};
use chat_domain::contracts::{assets::AssetError, auth::AuthError, groups::GroupError};
use chat_domain::values::{search_words, Email, PageRequest};
use chat_domain::Error;
use chat_ports::assets::{AssetStore, ByteStream};
use chat_ports::health::Probe;
use chat_ports::store::{
    Attachment, GroupActivity, GroupRecord, GroupStore, MemberRecord, MemberRole, MessageStore,
    MessageView, NewGroup, NewMessage, NewUser, Receipt, ReceiptPositions, RefreshTokenRecord,
    RefreshTokenStore, RefreshUse, SigningKeyStore, Stores, UserRecord, UserStore,
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
CREATE TABLE IF NOT EXISTS read_positions (
  user_id TEXT NOT NULL, group_id TEXT NOT NULL, seq INTEGER NOT NULL, seen_at INTEGER NOT NULL,
  PRIMARY KEY (user_id, group_id));
CREATE INDEX IF NOT EXISTS read_positions_by_group ON read_positions(group_id);
CREATE TABLE IF NOT EXISTS delivered_positions (
  user_id TEXT NOT NULL, group_id TEXT NOT NULL, seq INTEGER NOT NULL,
  delivered_at INTEGER NOT NULL, PRIMARY KEY (user_id, group_id));
CREATE INDEX IF NOT EXISTS delivered_positions_by_group ON delivered_positions(group_id);
-- Read positions used to live on the memberships (members.last_seen_*, no longer written):
-- carried over once, never over a newer position.
INSERT OR IGNORE INTO read_positions
  SELECT user_id, group_id, last_seen_seq, COALESCE(last_seen_at, joined_at) FROM members
  WHERE last_seen_seq > 0;
CREATE TABLE IF NOT EXISTS messages (
  id TEXT PRIMARY KEY, group_id TEXT NOT NULL, seq INTEGER NOT NULL, sender_id TEXT NOT NULL,
  client_message_id TEXT NOT NULL, content TEXT, attachment TEXT,
  deleted INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL, edited_at INTEGER,
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

/// Adds `column` to `table` unless it is there already (a database created by an older version).
fn add_column(conn: &Connection, table: &str, column: &str, kind: &str) -> rusqlite::Result<()> {
    let present: bool = conn.query_row(
        &format!("SELECT COUNT(*) > 0 FROM pragma_table_info('{table}') WHERE name = ?1"),
        [column],
        |r| r.get(0),
    )?;
    if !present {
        conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {kind}"))?;
    }
    Ok(())
}

/// The embedded database: one connection shared by the stores. Cheap to clone.
#[derive(Clone)]
pub struct SqliteDb {
    conn: Arc<Mutex<Connection>>,
    limits: AssetLimits,
    /// Sends for the writer's thread, which stores those waiting together (group commit).
    appends: std::sync::mpsc::Sender<messages::PendingAppend>,
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

/// `conn` set up: write-ahead log, prepared-statement cache, the schema.
fn prepare(conn: Connection) -> rusqlite::Result<Connection> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // Statements are prepared once and reused (the hot ones run for every message).
    conn.set_prepared_statement_cache_capacity(64);
    // SQLite's lower() and LIKE fold ASCII only; search must fold every script.
    conn.create_scalar_function(
        "ulower",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| Ok(ctx.get::<Option<String>>(0)?.map(|s| s.to_lowercase())),
    )?;
    conn.execute_batch(SCHEMA)?;
    // Columns added since a database was created: added to it once.
    add_column(&conn, "messages", "edited_at", "INTEGER")?;
    Ok(conn)
}

impl SqliteDb {
    /// Opens (creating if needed) `file` and its schema.
    pub fn open(file: &Path, limits: AssetLimits) -> Result<Self, StartupError> {
        let failed = |path: &Path, e: &dyn std::fmt::Display| StartupError::File {
            path: path.to_path_buf(),
            why: e.to_string(),
        };
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).map_err(|e| failed(dir, &e))?;
        }
        let conn = Connection::open(file)
            .and_then(prepare)
            .map_err(|e| failed(file, &e))?;
        // Checkpoints copy the write-ahead log into the database file, with an fsync. Run by
        // the committing writer (SQLite's default), one stalls every write queued behind it;
        // a second connection does them in the background instead.
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(|e| failed(file, &e))?;
        // The log file keeps the size it grew to; after a burst it is cut back to this when it
        // starts over.
        conn.pragma_update(None, "journal_size_limit", WAL_FILE_LIMIT)
            .map_err(|e| failed(file, &e))?;
        let checkpoints = Connection::open(file).map_err(|e| failed(file, &e))?;
        let db = Self::start(conn, limits).map_err(|e| failed(file, &e))?;
        let writer = Arc::downgrade(&db.conn);
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpoint_while_open(checkpoints, writer))
            .map_err(|e| failed(file, &e))?;
        Ok(db)
    }

    /// A throw-away database in memory (tests).
    pub fn in_memory(
        limits: AssetLimits,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let conn = prepare(Connection::open_in_memory()?)?;
        Ok(Self::start(conn, limits)?)
    }

    /// The database on `conn`, with the thread that stores messages.
    fn start(conn: Connection, limits: AssetLimits) -> std::io::Result<Self> {
        let conn = Arc::new(Mutex::new(conn));
        let (appends, sends) = std::sync::mpsc::channel();
        let writer = conn.clone();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || messages::store_sends(writer, sends))?;
        Ok(SqliteDb {
            conn,
            limits,
            appends,
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

/// How often the background connection copies the write-ahead log into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);
/// A log of this many pages (8 MiB) is copied to its end with the writers held, so that it
/// starts over from its beginning.
const RESTART_AT_PAGES: i64 = 2048;
/// Bytes the log file is cut back to when it starts over (it keeps the size it grew to).
const WAL_FILE_LIMIT: i64 = 32 << 20;

/// Checkpoints every [`CHECKPOINT_EVERY`] until the database is dropped; once writes stop for
/// a while ([`Quiet`]), both connections give back their page caches.
fn checkpoint_while_open(conn: Connection, writer: std::sync::Weak<Mutex<Connection>>) {
    let mut quiet = Quiet::default();
    loop {
        std::thread::sleep(CHECKPOINT_EVERY);
        let Some(writer) = writer.upgrade() else {
            return;
        };
        if let Err(e) = checkpoint(&conn, &writer) {
            tracing::warn!(error = %e, "embedded database checkpoint failed");
        }
        // Changes whenever another connection commits.
        let version = conn.query_row("PRAGMA data_version", [], |r| r.get(0));
        if quiet.saw(version.unwrap_or_default()) {
            if let Err(e) = release_caches(&conn, &writer) {
                tracing::warn!(error = %e, "embedded database: cannot release page caches");
            }
        }
    }
}

/// Counts checkpoint rounds without a commit.
#[derive(Default)]
struct Quiet {
    version: i64,
    rounds: u32,
}

impl Quiet {
    /// Rounds without a commit (1 s) after which the page caches are released.
    const ROUNDS: u32 = 4;

    /// Takes the database's data version after a round; true once per quiet spell, when it
    /// has not changed for [`Quiet::ROUNDS`] rounds.
    fn saw(&mut self, version: i64) -> bool {
        if version != self.version {
            (self.version, self.rounds) = (version, 0);
            return false;
        }
        self.rounds = self.rounds.saturating_add(1);
        self.rounds == Self::ROUNDS
    }
}

/// Gives back the pages both connections keep cached (up to 2 MiB each, SQLite's default):
/// after a burst of writes they are memory the process holds while idle. They are read again
/// from the file (the system's cache) when needed.
fn release_caches(conn: &Connection, writer: &Mutex<Connection>) -> rusqlite::Result<()> {
    conn.execute_batch("PRAGMA shrink_memory")?;
    let writer = writer.lock().unwrap_or_else(|e| e.into_inner());
    writer.execute_batch("PRAGMA shrink_memory")
}

/// Copies the write-ahead log into the database file without holding writers back
/// (`PASSIVE`); returns the log's length in pages. The log starts over from its beginning only
/// when a write finds all of it copied, which never happens under sustained writes: each
/// checkpoint copies what was there when it began, and more is written meanwhile. The file then
/// grew by every page written (half a gigabyte in 15 s at 2,000 sends/s), each new page zeroed
/// by the kernel. So past [`RESTART_AT_PAGES`] the rest (what came during the first pass) is
/// copied with `writer`, the connection every write goes through, held.
fn checkpoint(conn: &Connection, writer: &Mutex<Connection>) -> rusqlite::Result<i64> {
    let passive = || conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1));
    let pages = passive()?;
    if pages >= RESTART_AT_PAGES {
        let _writes_wait = writer.lock().unwrap_or_else(|e| e.into_inner());
        passive()?;
    }
    Ok(pages)
}

/// The store types: one per port, each a handle on the shared database.
macro_rules! stores_on_db {
    ($($(#[doc = $doc:literal])* $name:ident;)*) => {$(
        $(#[doc = $doc])*
        #[derive(Clone)]
        pub struct $name(SqliteDb);

        impl std::ops::Deref for $name {
            type Target = SqliteDb;
            fn deref(&self) -> &SqliteDb {
                &self.0
            }
        }
    )*};
}

stores_on_db! {
    /// Accounts.
    SqliteUserStore;
    /// Refresh-token families.
    SqliteRefreshTokenStore;
    /// The auth role's signing keys.
    SqliteSigningKeyStore;
    /// Groups and memberships.
    SqliteGroupStore;
    /// Messages.
    SqliteMessageStore;
    /// Uploads and stored files.
    SqliteAssetStore;
}

impl SqliteDb {
    /// Every store port on this database.
    pub fn stores(self) -> Stores {
        Stores {
            users: Arc::new(SqliteUserStore(self.clone())),
            refresh_tokens: Arc::new(SqliteRefreshTokenStore(self.clone())),
            signing_keys: Arc::new(SqliteSigningKeyStore(self.clone())),
            groups: Arc::new(SqliteGroupStore(self.clone())),
            messages: Arc::new(SqliteMessageStore(self.clone())),
            assets: Arc::new(SqliteAssetStore(self)),
        }
    }
}

/// Readiness: the embedded database answers a query.
pub struct SqliteProbe(pub SqliteDb);

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

#[cfg(test)]
mod tests {
    use super::*;
    use chat_ports::assets::owned_image;

    #[tokio::test]
    async fn pictures_elsewhere_pass_and_unknown_assets_here_do_not() {
        let store = SqliteAssetStore(SqliteDb::in_memory(AssetLimits::default()).unwrap());
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

    #[tokio::test]
    async fn read_positions_kept_on_memberships_are_carried_over() {
        let file = std::env::temp_dir().join(format!("chat-carry-{}.db", uuid::Uuid::new_v4()));
        // A database written before read positions moved: members carry last_seen_seq.
        let old = Connection::open(&file).unwrap();
        old.execute_batch(
            "CREATE TABLE members (group_id TEXT NOT NULL, user_id TEXT NOT NULL,
               role TEXT NOT NULL, joined_at INTEGER NOT NULL, last_seen_at INTEGER,
               last_seen_seq INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (group_id, user_id));
             INSERT INTO members VALUES ('g', 'ada', 'admin', 1, 2, 7), ('g', 'bob', 'member', 1, NULL, 0);",
        )
        .unwrap();
        drop(old);
        let db = SqliteDb::open(&file, AssetLimits::default()).unwrap();
        let messages = SqliteMessageStore(db.clone());
        let seen = |user: &'static str| {
            let messages = &messages;
            async move { messages.activity(user, &["g".to_string()]).await.unwrap()[0].last_seen_seq }
        };
        assert_eq!(seen("ada").await, 7);
        assert_eq!(seen("bob").await, 0);
        // A newer position is not overwritten when the database opens again.
        assert_eq!(
            messages
                .mark(Receipt::Seen, "g", "ada", 9, Utc::now())
                .await
                .unwrap(),
            9
        );
        drop((messages, db));
        let messages = SqliteMessageStore(SqliteDb::open(&file, AssetLimits::default()).unwrap());
        assert_eq!(
            messages.activity("ada", &["g".to_string()]).await.unwrap()[0].last_seen_seq,
            9
        );
        let _ = std::fs::remove_file(&file);
    }

    /// Ada's `i`th message, in one of 40 groups.
    fn numbered(i: usize, text: &str) -> NewMessage {
        NewMessage {
            group_id: format!("g{}", i % 40),
            sender_id: "ada".into(),
            client_message_id: format!("m{i}"),
            content: Some(text.into()),
            attachment: None,
        }
    }

    /// Bytes of pages `conn` keeps cached.
    fn cache_used(conn: &Connection) -> i32 {
        let (mut used, mut highest) = (0, 0);
        // SAFETY: the handle is live for the borrow; sqlite3_db_status only reads counters.
        let rc = unsafe {
            rusqlite::ffi::sqlite3_db_status(
                conn.handle(),
                rusqlite::ffi::SQLITE_DBSTATUS_CACHE_USED,
                &mut used,
                &mut highest,
                0,
            )
        };
        assert_eq!(rc, rusqlite::ffi::SQLITE_OK);
        used
    }

    #[tokio::test]
    async fn page_caches_are_given_back_once_writes_stop() {
        let file = std::env::temp_dir().join(format!("chat-cache-{}.db", uuid::Uuid::new_v4()));
        let db = SqliteDb::open(&file, AssetLimits::default()).unwrap();
        let messages = SqliteMessageStore(db.clone());
        for i in 0..2_000 {
            let text = "a message long enough to fill a few pages".repeat(4);
            messages.append(numbered(i, &text)).await.unwrap();
        }
        let checkpoints = Connection::open(&file).unwrap();
        let busy = cache_used(&db.conn.lock().unwrap());
        assert!(busy > 500_000, "the writer caches {busy} bytes");
        release_caches(&checkpoints, &db.conn).unwrap();
        let idle = cache_used(&db.conn.lock().unwrap());
        assert!(idle < busy / 10, "{busy} bytes cached before, {idle} after");
        // What was released is read again when asked for.
        assert_eq!(messages.before("g7", None, 20).await.unwrap().len(), 20);
        drop((messages, db));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
        }
    }

    #[test]
    fn caches_are_released_once_per_quiet_spell() {
        let mut quiet = Quiet::default();
        // Commits every round: never quiet.
        assert!(!(1..20).any(|v| quiet.saw(v)));
        // Quiet from version 19 on: released on the fourth unchanged round, once.
        let rounds: Vec<bool> = (0..8).map(|_| quiet.saw(19)).collect();
        assert_eq!(
            rounds,
            [false, false, false, true, false, false, false, false]
        );
        // A commit starts a new spell.
        assert!(!quiet.saw(20));
        assert_eq!((0..4).filter(|_| quiet.saw(20)).count(), 1);
    }

    /// Writes that never pause leave no moment when a checkpoint has copied the whole log;
    /// it must start over all the same, not grow by every page written.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_log_starts_over_under_writes_that_never_pause() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let file = std::env::temp_dir().join(format!("chat-wal-{}.db", uuid::Uuid::new_v4()));
        let db = SqliteDb::open(&file, AssetLimits::default()).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let checkpoints = {
            let (stop, writer, file) = (stop.clone(), db.conn.clone(), file.clone());
            std::thread::spawn(move || {
                let conn = Connection::open(&file).unwrap();
                let wal = file.with_extension("db-wal");
                let (mut largest, mut rounds) = (0, 0);
                while !stop.load(Ordering::Relaxed) {
                    checkpoint(&conn, &writer).unwrap();
                    largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
                    rounds += 1;
                }
                (largest, rounds)
            })
        };
        // About 50 MiB of log pages, one commit per message.
        let messages = SqliteMessageStore(db.clone());
        for i in 0..4_000 {
            assert!(messages.append(numbered(i, "hello")).await.unwrap().1);
        }
        stop.store(true, Ordering::Relaxed);
        let (largest, rounds) = checkpoints.join().unwrap();
        assert!(rounds > 1);
        assert!(
            largest < WAL_FILE_LIMIT as u64,
            "the log file grew to {largest} bytes"
        );
        drop((messages, db));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
        }
    }
}
