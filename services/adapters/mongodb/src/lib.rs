//! MongoDB adapter: connection, readiness probe, indexes (idempotent, also run by
//! `chat-server migrate`) and the store implementations.
//!
//! Search never relies on `$text` indexes (the test stand-in lacks them, and substring search is
//! what users expect from a people picker): it uses anchored-nowhere, escaped, case-insensitive
//! regular expressions.
//!
//! [`gridfs`] stores attachments: upload sessions and finished files in a GridFS bucket.

pub mod gridfs;
mod groups;
mod messages;
mod users;

pub use groups::MongoGroupStore;
pub use messages::MongoMessageStore;
pub use users::{MongoRefreshTokenStore, MongoSigningKeyStore, MongoUserStore};

use chat_ports::startup::StartupError;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use mongodb::bson::{
    doc, oid::ObjectId, spec::BinarySubtype, Binary, Bson, DateTime as BsonDateTime, Document,
};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{Acknowledgment, ClientOptions, IndexOptions, ReturnDocument, WriteConcern};
pub use mongodb::Database;
use mongodb::{Client, Collection, IndexModel};

use chat_domain::assets::AssetLimits;
use chat_domain::config::Secret;
use chat_domain::contracts::{auth::AuthError, groups::GroupError};
use chat_domain::values::{search_words, Email, PageRequest};
use chat_domain::Error;
use chat_ports::health::Probe;
use chat_ports::store::{
    Attachment, GroupActivity, GroupRecord, GroupStore, MemberRecord, MemberRole, MessageStore,
    MessageView, NewGroup, NewMessage, NewUser, Receipt, ReceiptPositions, RefreshTokenRecord,
    RefreshTokenStore, RefreshUse, SigningKeyStore, Stores, UserRecord, UserStore,
};

/// Connects and pings, retrying until `timeout`.
pub async fn connect(
    uri: &Secret,
    database: &str,
    app_name: &str,
    timeout: Duration,
) -> Result<Database, StartupError> {
    // The driver's parse errors may quote the URI, and with it a password: say only which
    // variable is wrong.
    let invalid = |why: &str| StartupError::InvalidSetting {
        variable: "MONGODB_URI",
        why: why.to_string(),
    };
    let mut options = ClientOptions::parse(uri.expose())
        .await
        .map_err(|_| invalid("not a MongoDB connection string"))?;
    options.app_name = Some(app_name.to_string());
    // An acknowledged write is one the server has journaled (on a majority of a replica set):
    // with the driver's default (w:1, no journal) a server killed right after acknowledging
    // loses the last writes, and with them messages whose senders were told they were stored.
    // A `w` or `journal` in the URI takes precedence.
    options.write_concern.get_or_insert(
        WriteConcern::builder()
            .w(Acknowledgment::Majority)
            .journal(true)
            .build(),
    );
    options
        .server_selection_timeout
        .get_or_insert(Duration::from_secs(3));
    options
        .connect_timeout
        .get_or_insert(Duration::from_secs(3));
    let client =
        Client::with_options(options).map_err(|_| invalid("the driver refuses its options"))?;
    let db = client.database(database);
    chat_ports::startup::wait_for("mongodb", &uri.redacted_uri(), timeout, || {
        db.run_command(doc! {"ping": 1})
    })
    .await?;
    Ok(db)
}

/// `.db()?` on a driver result: its error as the port's (logged, reported as unavailable).
pub(crate) trait Db<T> {
    fn db(self) -> Result<T, Error>;
}

impl<T> Db<T> for mongodb::error::Result<T> {
    fn db(self) -> Result<T, Error> {
        self.map_err(|e| Error::dependency("database", e))
    }
}

/// Readiness: `ping`.
pub struct MongoProbe(pub Database);

#[async_trait::async_trait]
impl Probe for MongoProbe {
    fn name(&self) -> &'static str {
        "mongodb"
    }
    async fn check(&self) -> Result<(), String> {
        self.0
            .run_command(doc! {"ping": 1})
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

const USERS: &str = "users";
const REFRESH_TOKENS: &str = "refresh_tokens";
const SIGNING_KEYS: &str = "signing_keys";
const GROUPS: &str = "groups";
const MEMBERS: &str = "group_members";
/// One document per direct conversation, `_id` = the sorted pair: uniqueness on `_id` holds on
/// every MongoDB-compatible server, unlike partial unique indexes. The document carries the
/// group and its members, so any creator can finish a creation (no transaction, no waiting).
const DIRECT_PAIRS: &str = "direct_conversations";
const MESSAGES: &str = "messages";
/// Each user's read position in each group: the message role's, not the memberships'.
const READ_POSITIONS: &str = "read_positions";
/// How far each user's devices have received each group, one document per user and group.
const DELIVERED_POSITIONS: &str = "delivered_positions";
/// One document per one-time data migration done (`_id` = its name).
const MIGRATIONS: &str = "migrations";

pub(crate) fn read_position_id(user_id: &str, group_id: &str) -> String {
    format!("{user_id}:{group_id}")
}

/// Every document a query finds (`collection.find(filter)`, with its options).
pub(crate) async fn documents(
    find: impl std::future::IntoFuture<Output = mongodb::error::Result<mongodb::Cursor<Document>>>,
) -> Result<Vec<Document>, Error> {
    find.await.db()?.try_collect().await.db()
}

fn index(keys: Document, options: Option<IndexOptions>) -> IndexModel {
    IndexModel::builder().keys(keys).options(options).build()
}

fn named(name: &str) -> IndexOptions {
    IndexOptions::builder().name(name.to_string()).build()
}

/// Every index the services rely on. Creating an index that exists with the same definition is a
/// no-op, so this is safe to run on every start and from `chat-server migrate`.
pub fn indexes() -> Vec<(&'static str, IndexModel)> {
    vec![
        (
            USERS,
            index(
                doc! {"email": 1},
                Some(
                    IndexOptions::builder()
                        .name("email_unique".to_string())
                        .unique(true)
                        .build(),
                ),
            ),
        ),
        (
            REFRESH_TOKENS,
            index(doc! {"familyId": 1}, Some(named("family"))),
        ),
        (
            REFRESH_TOKENS,
            index(doc! {"userId": 1}, Some(named("user"))),
        ),
        (
            REFRESH_TOKENS,
            index(
                doc! {"expiresAt": 1},
                Some(
                    IndexOptions::builder()
                        .name("expiry_ttl".to_string())
                        .expire_after(Duration::ZERO)
                        .build(),
                ),
            ),
        ),
        (
            MEMBERS,
            index(
                doc! {"groupId": 1, "userId": 1},
                Some(
                    IndexOptions::builder()
                        .name("membership_unique".to_string())
                        .unique(true)
                        .build(),
                ),
            ),
        ),
        (MEMBERS, index(doc! {"userId": 1}, Some(named("by_user")))),
        (
            READ_POSITIONS,
            index(doc! {"userId": 1, "groupId": 1}, Some(named("by_user"))),
        ),
        (
            READ_POSITIONS,
            index(doc! {"groupId": 1}, Some(named("by_group"))),
        ),
        (
            DELIVERED_POSITIONS,
            index(doc! {"groupId": 1}, Some(named("by_group"))),
        ),
        (
            MESSAGES,
            index(
                doc! {"groupId": 1, "seq": 1},
                Some(
                    IndexOptions::builder()
                        .name("group_seq_unique".to_string())
                        .unique(true)
                        .build(),
                ),
            ),
        ),
        (
            MESSAGES,
            index(
                doc! {"senderId": 1, "clientMessageId": 1},
                Some(
                    IndexOptions::builder()
                        .name("sender_client_id_unique".to_string())
                        .unique(true)
                        .build(),
                ),
            ),
        ),
    ]
}

/// Creates every index; returns how many definitions were applied.
pub async fn ensure_indexes(db: &Database) -> Result<usize, Error> {
    let mut all = indexes();
    all.extend(crate::gridfs::indexes());
    for (collection, model) in &all {
        db.collection::<Document>(collection)
            .create_index(model.clone())
            .await
            .db()?;
    }
    carry_read_positions_over(db).await?;
    Ok(all.len())
}

/// Read positions used to live on the memberships (`group_members.lastSeenSeq`, no longer
/// written): copies them to `read_positions` once per database, never over a newer position.
async fn carry_read_positions_over(db: &Database) -> Result<(), Error> {
    const NAME: &str = "read_positions_from_members";
    let migrations = db.collection::<Document>(MIGRATIONS);
    if migrations
        .find_one(doc! {"_id": NAME})
        .await
        .db()?
        .is_some()
    {
        return Ok(());
    }
    let positions = db.collection::<Document>(READ_POSITIONS);
    let mut old = db
        .collection::<Document>(MEMBERS)
        .find(doc! {"lastSeenSeq": {"$gt": 0}})
        .await
        .db()?;
    let mut carried = 0;
    while let Some(member) = old.try_next().await.db()? {
        let (Ok(user), Ok(group), Ok(seq)) = (
            member.get_str("userId"),
            member.get_str("groupId"),
            member.get_i64("lastSeenSeq"),
        ) else {
            continue;
        };
        let at = member
            .get_datetime("lastSeenAt")
            .copied()
            .unwrap_or_else(|_| BsonDateTime::now());
        let position = doc! {
            "_id": read_position_id(user, group), "userId": user, "groupId": group,
            "seq": seq, "seenAt": at,
        };
        match positions.insert_one(position).await {
            Err(e) if !is_duplicate_key(&e) => return Err(e).db(),
            _ => carried += 1,
        }
    }
    tracing::info!(carried, "read positions carried over from the memberships");
    match migrations
        .insert_one(doc! {"_id": NAME, "at": BsonDateTime::now()})
        .await
    {
        Err(e) if !is_duplicate_key(&e) => Err(e).db(),
        _ => Ok(()),
    }
}

pub(crate) fn to_bson_time(t: DateTime<Utc>) -> BsonDateTime {
    BsonDateTime::from_millis(t.timestamp_millis())
}

pub(crate) fn from_bson_time(t: BsonDateTime) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or_default()
}

pub(crate) fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    matches!(&*e.kind, ErrorKind::Write(WriteFailure::WriteError(we)) if we.code == 11000)
        || matches!(&*e.kind, ErrorKind::Command(ce) if ce.code == 11000)
}

/// Escapes regex metacharacters so user input matches literally.
pub fn escape_regex(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for c in input.chars() {
        if "\\^$.|?*+()[]{}-/".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Every store port on MongoDB, files in its GridFS bucket.
pub fn stores(db: &Database, asset_limits: AssetLimits) -> Stores {
    Stores {
        users: Arc::new(MongoUserStore::new(db)),
        refresh_tokens: Arc::new(MongoRefreshTokenStore::new(db)),
        signing_keys: Arc::new(MongoSigningKeyStore::new(db)),
        groups: Arc::new(MongoGroupStore::new(db)),
        messages: Arc::new(MongoMessageStore::new(db)),
        assets: Arc::new(gridfs::MongoAssetStore::new(db, asset_limits)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_metacharacters_match_literally() {
        assert_eq!(escape_regex("a.b*(c)"), "a\\.b\\*\\(c\\)");
        assert_eq!(escape_regex("plain"), "plain");
    }
}
