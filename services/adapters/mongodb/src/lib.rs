//! MongoDB adapter: connection, readiness probe, indexes (idempotent, also run by
//! `chat-server migrate`) and the store implementations.
//!
//! Search never relies on `$text` indexes (the test stand-in lacks them, and substring search is
//! what users expect from a people picker): it uses anchored-nowhere, escaped, case-insensitive
//! regular expressions.
//!
//! [`gridfs`] stores attachments: upload sessions and finished files in a GridFS bucket.

pub mod gridfs;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use mongodb::bson::{
    doc, oid::ObjectId, spec::BinarySubtype, Binary, Bson, DateTime as BsonDateTime, Document,
};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{ClientOptions, IndexOptions, ReturnDocument};
pub use mongodb::Database;
use mongodb::{Client, Collection, IndexModel};

use chat_domain::assets::AssetLimits;
use chat_domain::config::Secret;
use chat_domain::values::{search_words, Email, PageRequest};
use chat_domain::Error;
use chat_ports::health::Probe;
use chat_ports::store::{
    Attachment, GroupRecord, GroupStore, MemberRecord, MemberRole, MessageStore, MessageView,
    NewGroup, NewMessage, NewUser, RefreshTokenRecord, RefreshTokenStore, RefreshUse,
    SigningKeyStore, Stores, UserRecord, UserStore,
};

/// Connects and pings, retrying until `timeout`.
pub async fn connect(
    uri: &Secret,
    database: &str,
    app_name: &str,
    timeout: Duration,
) -> Result<Database, String> {
    // The driver's parse errors may quote the URI, and with it a password: say only which
    // variable is wrong.
    let mut options = ClientOptions::parse(uri.expose())
        .await
        .map_err(|_| "MONGODB_URI is not a valid MongoDB connection string".to_string())?;
    options.app_name = Some(app_name.to_string());
    options
        .server_selection_timeout
        .get_or_insert(Duration::from_secs(3));
    options
        .connect_timeout
        .get_or_insert(Duration::from_secs(3));
    let client =
        Client::with_options(options).map_err(|e| format!("cannot create MongoDB client: {e}"))?;
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
/// every MongoDB-compatible server, unlike partial unique indexes.
const DIRECT_PAIRS: &str = "direct_conversations";
const MESSAGES: &str = "messages";

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
    Ok(all.len())
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

// ------------------------------------------------------------------------------------ users

/// [`UserStore`] on the `users` collection.
pub struct MongoUserStore(Collection<Document>);

impl MongoUserStore {
    pub fn new(db: &Database) -> Self {
        MongoUserStore(db.collection(USERS))
    }
}

fn user_from_doc(d: &Document) -> Result<UserRecord, Error> {
    let bad = |field: &str| Error::internal(format!("user document without a valid {field}"));
    let text = |field: &str| d.get_str(field).map(String::from).map_err(|_| bad(field));
    Ok(UserRecord {
        id: d.get_object_id("_id").map_err(|_| bad("_id"))?.to_hex(),
        first_name: text("firstName")?,
        last_name: text("lastName")?,
        email: text("email")?,
        password_hash: text("passwordHash")?,
        profile_url: d.get_str("profileUrl").ok().map(String::from),
        last_seen_at: d
            .get_datetime("lastSeenAt")
            .ok()
            .map(|t| from_bson_time(*t)),
        created_at: from_bson_time(*d.get_datetime("createdAt").map_err(|_| bad("createdAt"))?),
        updated_at: from_bson_time(*d.get_datetime("updatedAt").map_err(|_| bad("updatedAt"))?),
    })
}

#[async_trait::async_trait]
impl UserStore for MongoUserStore {
    async fn insert(&self, user: NewUser) -> Result<UserRecord, Error> {
        let now = Utc::now();
        let id = ObjectId::new();
        let document = doc! {
            "_id": id,
            "firstName": &user.first_name,
            "lastName": &user.last_name,
            "email": user.email.as_str(),
            "passwordHash": &user.password_hash,
            "createdAt": to_bson_time(now),
            "updatedAt": to_bson_time(now),
        };
        match self.0.insert_one(document.clone()).await {
            Ok(_) => user_from_doc(&document),
            Err(e) if is_duplicate_key(&e) => {
                Err(Error::conflict("an account with this email already exists"))
            }
            Err(e) => Err(e).db(),
        }
    }

    async fn by_email(&self, email: &Email) -> Result<Option<UserRecord>, Error> {
        self.0
            .find_one(doc! {"email": email.as_str()})
            .await
            .db()?
            .as_ref()
            .map(user_from_doc)
            .transpose()
    }

    async fn by_id(&self, id: &str) -> Result<Option<UserRecord>, Error> {
        let Ok(oid) = ObjectId::parse_str(id) else {
            return Ok(None);
        };
        self.0
            .find_one(doc! {"_id": oid})
            .await
            .db()?
            .as_ref()
            .map(user_from_doc)
            .transpose()
    }

    async fn update_profile(
        &self,
        id: &str,
        first_name: Option<String>,
        last_name: Option<String>,
        profile_url: Option<Option<String>>,
    ) -> Result<Option<UserRecord>, Error> {
        let Ok(oid) = ObjectId::parse_str(id) else {
            return Ok(None);
        };
        let mut set = doc! {"updatedAt": to_bson_time(Utc::now())};
        let mut unset = Document::new();
        if let Some(v) = first_name {
            set.insert("firstName", v);
        }
        if let Some(v) = last_name {
            set.insert("lastName", v);
        }
        match profile_url {
            Some(Some(url)) => {
                set.insert("profileUrl", url);
            }
            Some(None) => {
                unset.insert("profileUrl", "");
            }
            None => {}
        }
        let mut update = doc! {"$set": set};
        if !unset.is_empty() {
            update.insert("$unset", unset);
        }
        let updated = self
            .0
            .find_one_and_update(doc! {"_id": oid}, update)
            .return_document(ReturnDocument::After)
            .await
            .db()?;
        updated.as_ref().map(user_from_doc).transpose()
    }

    async fn set_last_seen(&self, id: &str, at: DateTime<Utc>) -> Result<(), Error> {
        let Ok(oid) = ObjectId::parse_str(id) else {
            return Ok(());
        };
        let at = to_bson_time(at);
        let filter = doc! {"_id": oid, "$or": [{"lastSeenAt": {"$lt": at}}, {"lastSeenAt": {"$exists": false}}]};
        self.0
            .update_one(filter, doc! {"$set": {"lastSeenAt": at}})
            .await
            .db()?;
        Ok(())
    }

    async fn existing(&self, ids: &[String]) -> Result<Vec<String>, Error> {
        let oids: Vec<ObjectId> = ids
            .iter()
            .filter_map(|id| ObjectId::parse_str(id).ok())
            .collect();
        let docs: Vec<Document> = self
            .0
            .find(doc! {"_id": {"$in": oids}})
            .projection(doc! {"_id": 1})
            .await
            .db()?
            .try_collect()
            .await
            .db()?;
        Ok(docs
            .iter()
            .filter_map(|d| d.get_object_id("_id").ok())
            .map(|o| o.to_hex())
            .collect())
    }

    async fn list(
        &self,
        search: Option<&str>,
        page: PageRequest,
    ) -> Result<(Vec<UserRecord>, u64), Error> {
        let words: Vec<Bson> = search_words(search)
            .map(|word| {
                let pattern = doc! {"$regex": escape_regex(word), "$options": "i"};
                Bson::Document(doc! {"$or": [
                    {"firstName": pattern.clone()},
                    {"lastName": pattern.clone()},
                    {"email": pattern},
                ]})
            })
            .collect();
        let filter = if words.is_empty() {
            doc! {}
        } else {
            doc! {"$and": words}
        };
        let total = self.0.count_documents(filter.clone()).await.db()?;
        let docs: Vec<Document> = self
            .0
            .find(filter)
            .sort(doc! {"_id": 1})
            .skip(page.skip())
            .limit(i64::from(page.limit))
            .await
            .db()?
            .try_collect()
            .await
            .db()?;
        let users = docs.iter().map(user_from_doc).collect::<Result<_, _>>()?;
        Ok((users, total))
    }
}

// ---------------------------------------------------------------------------- refresh tokens

/// [`RefreshTokenStore`] on the `refresh_tokens` collection (expired tokens removed by a TTL
/// index).
pub struct MongoRefreshTokenStore(Collection<Document>);

impl MongoRefreshTokenStore {
    pub fn new(db: &Database) -> Self {
        MongoRefreshTokenStore(db.collection(REFRESH_TOKENS))
    }
}

fn refresh_from_doc(d: &Document) -> Result<RefreshTokenRecord, Error> {
    let bad =
        |field: &str| Error::internal(format!("refresh token document without a valid {field}"));
    Ok(RefreshTokenRecord {
        token_hash: d.get_str("_id").map_err(|_| bad("_id"))?.to_string(),
        family_id: d
            .get_str("familyId")
            .map_err(|_| bad("familyId"))?
            .to_string(),
        user_id: d.get_str("userId").map_err(|_| bad("userId"))?.to_string(),
        created_at: from_bson_time(*d.get_datetime("createdAt").map_err(|_| bad("createdAt"))?),
        expires_at: from_bson_time(*d.get_datetime("expiresAt").map_err(|_| bad("expiresAt"))?),
    })
}

#[async_trait::async_trait]
impl RefreshTokenStore for MongoRefreshTokenStore {
    async fn insert(&self, t: RefreshTokenRecord) -> Result<(), Error> {
        self.0
            .insert_one(doc! {
                "_id": &t.token_hash,
                "familyId": &t.family_id,
                "userId": &t.user_id,
                "createdAt": to_bson_time(t.created_at),
                "expiresAt": to_bson_time(t.expires_at),
                "usedAt": Bson::Null,
                "revoked": false,
            })
            .await
            .db()?;
        Ok(())
    }

    async fn spend(&self, token_hash: &str) -> Result<RefreshUse, Error> {
        let spent = self
            .0
            .find_one_and_update(
                doc! {"_id": token_hash, "usedAt": Bson::Null, "revoked": false},
                doc! {"$set": {"usedAt": to_bson_time(Utc::now())}},
            )
            .return_document(ReturnDocument::After)
            .await
            .db()?;
        if let Some(d) = spent {
            return Ok(RefreshUse::Fresh(refresh_from_doc(&d)?));
        }
        match self.0.find_one(doc! {"_id": token_hash}).await.db()? {
            Some(d) => Ok(RefreshUse::Reused(refresh_from_doc(&d)?)),
            None => Ok(RefreshUse::Unknown),
        }
    }

    async fn revoke_family(&self, family_id: &str) -> Result<u64, Error> {
        let result = self
            .0
            .update_many(
                doc! {"familyId": family_id, "revoked": false},
                doc! {"$set": {"revoked": true}},
            )
            .await
            .db()?;
        Ok(result.modified_count)
    }
}

// ----------------------------------------------------------------------------- signing keys

/// [`SigningKeyStore`] on the `signing_keys` collection.
pub struct MongoSigningKeyStore(Collection<Document>);

impl MongoSigningKeyStore {
    pub fn new(db: &Database) -> Self {
        MongoSigningKeyStore(db.collection(SIGNING_KEYS))
    }
}

#[async_trait::async_trait]
impl SigningKeyStore for MongoSigningKeyStore {
    async fn development_key(&self, candidate: &[u8]) -> Result<Vec<u8>, Error> {
        let bytes = Binary {
            subtype: BinarySubtype::Generic,
            bytes: candidate.to_vec(),
        };
        match self
            .0
            .insert_one(
                doc! {"_id": "development", "pkcs8": bytes, "createdAt": BsonDateTime::now()},
            )
            .await
        {
            Ok(_) => {}
            // Another replica (or an earlier start) stored one first: use that one.
            Err(e) if is_duplicate_key(&e) => {}
            Err(e) => return Err(e).db(),
        }
        let stored = self
            .0
            .find_one(doc! {"_id": "development"})
            .await
            .db()?
            .ok_or_else(|| Error::internal("development key vanished"))?;
        stored
            .get_binary_generic("pkcs8")
            .cloned()
            .map_err(|_| Error::internal("stored development key is not binary"))
    }
}

// ------------------------------------------------------------------------------------ groups

/// [`GroupStore`] on the `groups` and `group_members` collections.
pub struct MongoGroupStore {
    groups: Collection<Document>,
    members: Collection<Document>,
    pairs: Collection<Document>,
}

impl MongoGroupStore {
    pub fn new(db: &Database) -> Self {
        MongoGroupStore {
            groups: db.collection(GROUPS),
            members: db.collection(MEMBERS),
            pairs: db.collection(DIRECT_PAIRS),
        }
    }

    /// The conversation the direct pair `key` was claimed for. Its creator may still be writing
    /// it: wait up to 2 s. If it never appears (the creator died in between), the claim is
    /// released and `None` lets the caller claim the pair again.
    async fn claimed_conversation(&self, key: &str) -> Result<Option<GroupRecord>, Error> {
        let Some(pair) = self.pairs.find_one(doc! {"_id": key}).await.db()? else {
            return Ok(None);
        };
        let owner = pair
            .get_object_id("groupId")
            .map_err(|_| Error::internal("a direct pair without its group id"))?;
        for _ in 0..40 {
            if let Some(group) = self.get(&owner.to_hex()).await? {
                return Ok(Some(group));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::warn!(group = %owner, "releasing a direct pair whose conversation was never written");
        self.pairs
            .delete_one(doc! {"_id": key, "groupId": owner})
            .await
            .db()?;
        Ok(None)
    }
}

fn role_str(role: MemberRole) -> &'static str {
    match role {
        MemberRole::Admin => "admin",
        MemberRole::Member => "member",
    }
}

fn group_from_doc(d: &Document) -> Result<GroupRecord, Error> {
    let bad = |field: &str| Error::internal(format!("group document without a valid {field}"));
    Ok(GroupRecord {
        id: d.get_object_id("_id").map_err(|_| bad("_id"))?.to_hex(),
        name: d.get_str("name").ok().map(String::from),
        image_url: d.get_str("imageUrl").ok().map(String::from),
        direct_key: d.get_str("directKey").ok().map(String::from),
        created_at: from_bson_time(*d.get_datetime("createdAt").map_err(|_| bad("createdAt"))?),
        updated_at: from_bson_time(*d.get_datetime("updatedAt").map_err(|_| bad("updatedAt"))?),
    })
}

fn member_from_doc(d: &Document) -> Result<MemberRecord, Error> {
    let bad = |field: &str| Error::internal(format!("membership document without a valid {field}"));
    Ok(MemberRecord {
        group_id: d
            .get_str("groupId")
            .map_err(|_| bad("groupId"))?
            .to_string(),
        user_id: d.get_str("userId").map_err(|_| bad("userId"))?.to_string(),
        role: if d.get_str("role") == Ok("admin") {
            MemberRole::Admin
        } else {
            MemberRole::Member
        },
        joined_at: from_bson_time(*d.get_datetime("joinedAt").map_err(|_| bad("joinedAt"))?),
        last_seen_at: d
            .get_datetime("lastSeenAt")
            .ok()
            .map(|t| from_bson_time(*t)),
        last_seen_seq: d.get_i64("lastSeenSeq").unwrap_or(0),
    })
}

fn member_doc(group_id: &str, user_id: &str, role: MemberRole, at: BsonDateTime) -> Document {
    doc! {"groupId": group_id, "userId": user_id, "role": role_str(role), "joinedAt": at}
}

#[async_trait::async_trait]
impl GroupStore for MongoGroupStore {
    async fn create(&self, group: NewGroup) -> Result<(GroupRecord, bool), Error> {
        let now = BsonDateTime::now();
        let id = ObjectId::new();
        let mut document = doc! {"_id": id, "createdAt": now, "updatedAt": now};
        if let Some(name) = &group.name {
            document.insert("name", name);
        }
        if let Some(key) = &group.direct_key {
            document.insert("directKey", key);
        }
        if let Some(key) = &group.direct_key {
            // The pair document claims the conversation; whoever inserts it first creates it.
            while let Err(e) = self
                .pairs
                .insert_one(doc! {"_id": key, "groupId": id})
                .await
            {
                if !is_duplicate_key(&e) {
                    return Err(e).db();
                }
                if let Some(existing) = self.claimed_conversation(key).await? {
                    return Ok((existing, false));
                }
            }
        }
        // Members first, the group document last: a group that can be read has its members.
        let gid = id.to_hex();
        let members: Vec<Document> = group
            .members
            .iter()
            .map(|(user, role)| member_doc(&gid, user, *role, now))
            .collect();
        self.members.insert_many(members).await.db()?;
        self.groups.insert_one(document.clone()).await.db()?;
        Ok((group_from_doc(&document)?, true))
    }

    async fn get(&self, group_id: &str) -> Result<Option<GroupRecord>, Error> {
        let Ok(oid) = ObjectId::parse_str(group_id) else {
            return Ok(None);
        };
        self.groups
            .find_one(doc! {"_id": oid})
            .await
            .db()?
            .as_ref()
            .map(group_from_doc)
            .transpose()
    }

    async fn groups_of(&self, user_id: &str) -> Result<Vec<GroupRecord>, Error> {
        let memberships: Vec<Document> = self
            .members
            .find(doc! {"userId": user_id})
            .await
            .db()?
            .try_collect()
            .await
            .db()?;
        let ids: Vec<ObjectId> = memberships
            .iter()
            .filter_map(|m| m.get_str("groupId").ok())
            .filter_map(|id| ObjectId::parse_str(id).ok())
            .collect();
        let docs: Vec<Document> = self
            .groups
            .find(doc! {"_id": {"$in": ids}})
            .sort(doc! {"updatedAt": -1, "_id": -1})
            .await
            .db()?
            .try_collect()
            .await
            .db()?;
        docs.iter().map(group_from_doc).collect()
    }

    async fn members(&self, group_id: &str) -> Result<Vec<MemberRecord>, Error> {
        let docs: Vec<Document> = self
            .members
            .find(doc! {"groupId": group_id})
            .sort(doc! {"joinedAt": 1, "_id": 1})
            .await
            .db()?
            .try_collect()
            .await
            .db()?;
        docs.iter().map(member_from_doc).collect()
    }

    async fn membership(
        &self,
        group_id: &str,
        user_id: &str,
    ) -> Result<Option<MemberRecord>, Error> {
        self.members
            .find_one(doc! {"groupId": group_id, "userId": user_id})
            .await
            .db()?
            .as_ref()
            .map(member_from_doc)
            .transpose()
    }

    async fn update(
        &self,
        group_id: &str,
        name: Option<String>,
        image_url: Option<Option<String>>,
    ) -> Result<GroupRecord, Error> {
        let oid = ObjectId::parse_str(group_id).map_err(|_| Error::not_found("group not found"))?;
        let mut set = doc! {"updatedAt": BsonDateTime::now()};
        let mut unset = Document::new();
        if let Some(name) = name {
            set.insert("name", name);
        }
        match image_url {
            Some(Some(url)) => {
                set.insert("imageUrl", url);
            }
            Some(None) => {
                unset.insert("imageUrl", "");
            }
            None => {}
        }
        let mut update = doc! {"$set": set};
        if !unset.is_empty() {
            update.insert("$unset", unset);
        }
        let updated = self
            .groups
            .find_one_and_update(doc! {"_id": oid}, update)
            .return_document(ReturnDocument::After)
            .await
            .db()?
            .ok_or_else(|| Error::not_found("group not found"))?;
        group_from_doc(&updated)
    }

    async fn add_members(&self, group_id: &str, user_ids: &[String]) -> Result<Vec<String>, Error> {
        let now = BsonDateTime::now();
        let mut added = Vec::new();
        for user in user_ids {
            match self
                .members
                .insert_one(member_doc(group_id, user, MemberRole::Member, now))
                .await
            {
                Ok(_) => added.push(user.clone()),
                Err(e) if is_duplicate_key(&e) => {}
                Err(e) => return Err(e).db(),
            }
        }
        if !added.is_empty() {
            self.touch(group_id).await?;
        }
        Ok(added)
    }

    async fn remove_member(&self, group_id: &str, user_id: &str) -> Result<bool, Error> {
        let removed = self
            .members
            .delete_one(doc! {"groupId": group_id, "userId": user_id})
            .await
            .db()?
            .deleted_count
            > 0;
        if removed {
            self.touch(group_id).await?;
        }
        Ok(removed)
    }

    async fn set_role(&self, group_id: &str, user_id: &str, role: MemberRole) -> Result<(), Error> {
        self.members
            .update_one(
                doc! {"groupId": group_id, "userId": user_id},
                doc! {"$set": {"role": role_str(role)}},
            )
            .await
            .db()?;
        Ok(())
    }

    async fn mark_seen(
        &self,
        group_id: &str,
        user_id: &str,
        seq: i64,
        at: DateTime<Utc>,
    ) -> Result<bool, Error> {
        let filter = doc! {
            "groupId": group_id,
            "userId": user_id,
            "$or": [{"lastSeenSeq": {"$lt": seq}}, {"lastSeenSeq": {"$exists": false}}],
        };
        let update = doc! {"$set": {"lastSeenSeq": seq, "lastSeenAt": to_bson_time(at)}};
        Ok(self
            .members
            .update_one(filter, update)
            .await
            .db()?
            .modified_count
            > 0)
    }

    async fn delete(&self, group_id: &str) -> Result<(), Error> {
        if let Ok(oid) = ObjectId::parse_str(group_id) {
            self.groups.delete_one(doc! {"_id": oid}).await.db()?;
            self.pairs.delete_many(doc! {"groupId": oid}).await.db()?;
        }
        self.members
            .delete_many(doc! {"groupId": group_id})
            .await
            .db()?;
        Ok(())
    }
}

impl MongoGroupStore {
    async fn touch(&self, group_id: &str) -> Result<(), Error> {
        if let Ok(oid) = ObjectId::parse_str(group_id) {
            self.groups
                .update_one(
                    doc! {"_id": oid},
                    doc! {"$set": {"updatedAt": BsonDateTime::now()}},
                )
                .await
                .db()?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------- messages

/// [`MessageStore`] on the `messages` collection. The unique `(groupId, seq)` index makes the
/// sequence gap-free and unambiguous even if two processes ever append to one group at once (the
/// loser retries with the next number); the unique `(senderId, clientMessageId)` index makes
/// retried sends idempotent.
pub struct MongoMessageStore(Collection<Document>);

impl MongoMessageStore {
    pub fn new(db: &Database) -> Self {
        MongoMessageStore(db.collection(MESSAGES))
    }

    async fn by_client_id(
        &self,
        sender: &str,
        client_id: &str,
    ) -> Result<Option<MessageView>, Error> {
        self.0
            .find_one(doc! {"senderId": sender, "clientMessageId": client_id})
            .await
            .db()?
            .as_ref()
            .map(message_from_doc)
            .transpose()
    }

    async fn many(
        &self,
        filter: Document,
        sort: Document,
        limit: u32,
    ) -> Result<Vec<MessageView>, Error> {
        let docs: Vec<Document> = self
            .0
            .find(filter)
            .sort(sort)
            .limit(i64::from(limit))
            .await
            .db()?
            .try_collect()
            .await
            .db()?;
        docs.iter().map(message_from_doc).collect()
    }
}

fn message_from_doc(d: &Document) -> Result<MessageView, Error> {
    let bad = |field: &str| Error::internal(format!("message document without a valid {field}"));
    let attachment = match d.get_document("attachment") {
        Ok(a) => Some(Attachment {
            filename: a
                .get_str("filename")
                .map_err(|_| bad("attachment"))?
                .to_string(),
            url: a.get_str("url").map_err(|_| bad("attachment"))?.to_string(),
            content_type: a
                .get_str("type")
                .map_err(|_| bad("attachment"))?
                .to_string(),
            size: a.get_i64("size").map_err(|_| bad("attachment"))?.max(0) as u64,
        }),
        Err(_) => None,
    };
    Ok(MessageView {
        id: d.get_object_id("_id").map_err(|_| bad("_id"))?.to_hex(),
        group_id: d
            .get_str("groupId")
            .map_err(|_| bad("groupId"))?
            .to_string(),
        seq: d.get_i64("seq").map_err(|_| bad("seq"))?,
        sender_id: d
            .get_str("senderId")
            .map_err(|_| bad("senderId"))?
            .to_string(),
        client_message_id: d
            .get_str("clientMessageId")
            .map_err(|_| bad("clientMessageId"))?
            .to_string(),
        content: d.get_str("content").ok().map(String::from),
        attachment,
        deleted: d.get_bool("deleted").unwrap_or(false),
        created_at: from_bson_time(*d.get_datetime("createdAt").map_err(|_| bad("createdAt"))?),
    })
}

#[async_trait::async_trait]
impl MessageStore for MongoMessageStore {
    async fn append(&self, message: NewMessage) -> Result<(MessageView, bool), Error> {
        if let Some(existing) = self
            .by_client_id(&message.sender_id, &message.client_message_id)
            .await?
        {
            return Ok((existing, false));
        }
        for _ in 0..10 {
            let last = self
                .0
                .find_one(doc! {"groupId": &message.group_id})
                .sort(doc! {"seq": -1})
                .await
                .db()?;
            let seq = last.and_then(|d| d.get_i64("seq").ok()).unwrap_or(0) + 1;
            let mut document = doc! {
                "_id": ObjectId::new(),
                "groupId": &message.group_id,
                "seq": seq,
                "senderId": &message.sender_id,
                "clientMessageId": &message.client_message_id,
                "deleted": false,
                "createdAt": BsonDateTime::now(),
            };
            if let Some(content) = &message.content {
                document.insert("content", content);
            }
            if let Some(a) = &message.attachment {
                document.insert(
                    "attachment",
                    doc! {"filename": &a.filename, "url": &a.url, "type": &a.content_type, "size": a.size as i64},
                );
            }
            match self.0.insert_one(document.clone()).await {
                Ok(_) => return Ok((message_from_doc(&document)?, true)),
                Err(e) if is_duplicate_key(&e) => {
                    // Either a concurrent retry of the same send won, or another writer took
                    // this sequence number.
                    if let Some(existing) = self
                        .by_client_id(&message.sender_id, &message.client_message_id)
                        .await?
                    {
                        return Ok((existing, false));
                    }
                }
                Err(e) => return Err(e).db(),
            }
        }
        Err(Error::unavailable(
            "could not assign a sequence number; try again",
        ))
    }

    async fn get(&self, message_id: &str) -> Result<Option<MessageView>, Error> {
        let Ok(oid) = ObjectId::parse_str(message_id) else {
            return Ok(None);
        };
        self.0
            .find_one(doc! {"_id": oid})
            .await
            .db()?
            .as_ref()
            .map(message_from_doc)
            .transpose()
    }

    async fn before(
        &self,
        group_id: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<MessageView>, Error> {
        let mut filter = doc! {"groupId": group_id};
        if let Some(seq) = before {
            filter.insert("seq", doc! {"$lt": seq});
        }
        self.many(filter, doc! {"seq": -1}, limit).await
    }

    async fn after(
        &self,
        group_id: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<MessageView>, Error> {
        self.many(
            doc! {"groupId": group_id, "seq": {"$gt": after}},
            doc! {"seq": 1},
            limit,
        )
        .await
    }

    async fn tombstone(&self, message_id: &str) -> Result<Option<MessageView>, Error> {
        let Ok(oid) = ObjectId::parse_str(message_id) else {
            return Ok(None);
        };
        let updated = self
            .0
            .find_one_and_update(
                doc! {"_id": oid},
                doc! {"$set": {"deleted": true, "deletedAt": BsonDateTime::now()}, "$unset": {"content": "", "attachment": ""}},
            )
            .return_document(ReturnDocument::After)
            .await.db()?;
        updated.as_ref().map(message_from_doc).transpose()
    }

    async fn unread(&self, group_id: &str, user_id: &str, seq: i64) -> Result<u64, Error> {
        Ok(self
            .0
            .count_documents(doc! {"groupId": group_id, "seq": {"$gt": seq}, "senderId": {"$ne": user_id}, "deleted": false})
            .await.db()?)
    }

    async fn search(
        &self,
        group_ids: &[String],
        text: &str,
        limit: u32,
    ) -> Result<Vec<MessageView>, Error> {
        let filter = doc! {
            "groupId": {"$in": group_ids},
            "deleted": false,
            "content": {"$regex": escape_regex(text), "$options": "i"},
        };
        self.many(filter, doc! {"createdAt": -1, "_id": -1}, limit)
            .await
    }
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
