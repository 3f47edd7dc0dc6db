//! MongoDB adapter: connection, readiness probe, indexes (idempotent, also run by
//! `chat-server migrate`) and the store implementations.
//!
//! Search never relies on `$text` indexes (the test stand-in lacks them, and substring search is
//! what users expect from a people picker): it uses anchored-nowhere, escaped, case-insensitive
//! regular expressions.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use mongodb::bson::{
    doc, oid::ObjectId, spec::BinarySubtype, Binary, Bson, DateTime as BsonDateTime, Document,
};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{ClientOptions, IndexOptions, ReturnDocument};
use mongodb::{Client, Collection, Database, IndexModel};

use crate::config::Secret;
use crate::domain::{Email, PageRequest};
use crate::error::Error;
use crate::health::Probe;
use crate::store::{
    NewUser, RefreshTokenRecord, RefreshTokenStore, RefreshUse, SigningKeyStore, UserRecord,
    UserStore,
};

/// Connects and pings, retrying until `timeout`.
pub async fn connect(
    uri: &Secret,
    database: &str,
    app_name: &str,
    timeout: Duration,
) -> Result<Database, String> {
    let mut options = ClientOptions::parse(uri.expose()).await.map_err(|e| {
        format!(
            "MONGODB_URI is not a valid MongoDB URI ({})",
            e.kind
                .as_ref()
                .to_string()
                .split(':')
                .next()
                .unwrap_or("parse error")
        )
    })?;
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
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match db.run_command(doc! {"ping": 1}).await {
            Ok(_) => return Ok(db),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(uri = %uri.redacted_uri(), error = %e, "waiting for mongodb");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => {
                return Err(format!(
                    "mongodb at {} did not answer: {e}",
                    uri.redacted_uri()
                ))
            }
        }
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
    ]
}

/// Creates every index; returns how many definitions were applied.
pub async fn ensure_indexes(db: &Database) -> Result<usize, Error> {
    let all = indexes();
    for (collection, model) in &all {
        db.collection::<Document>(collection)
            .create_index(model.clone())
            .await?;
    }
    Ok(all.len())
}

fn to_bson_time(t: DateTime<Utc>) -> BsonDateTime {
    BsonDateTime::from_millis(t.timestamp_millis())
}

fn from_bson_time(t: BsonDateTime) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or_default()
}

fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
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
            Err(e) => Err(e.into()),
        }
    }

    async fn by_email(&self, email: &Email) -> Result<Option<UserRecord>, Error> {
        self.0
            .find_one(doc! {"email": email.as_str()})
            .await?
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
            .await?
            .as_ref()
            .map(user_from_doc)
            .transpose()
    }

    async fn list(
        &self,
        search: Option<&str>,
        page: PageRequest,
    ) -> Result<(Vec<UserRecord>, u64), Error> {
        let words: Vec<Bson> = search
            .unwrap_or("")
            .split_whitespace()
            .take(8)
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
        let total = self.0.count_documents(filter.clone()).await?;
        let docs: Vec<Document> = self
            .0
            .find(filter)
            .sort(doc! {"_id": 1})
            .skip(page.skip())
            .limit(i64::from(page.limit))
            .await?
            .try_collect()
            .await?;
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
            .await?;
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
            .await?;
        if let Some(d) = spent {
            return Ok(RefreshUse::Fresh(refresh_from_doc(&d)?));
        }
        match self.0.find_one(doc! {"_id": token_hash}).await? {
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
            .await?;
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
            Err(e) => return Err(e.into()),
        }
        let stored = self
            .0
            .find_one(doc! {"_id": "development"})
            .await?
            .ok_or_else(|| Error::internal("development key vanished"))?;
        stored
            .get_binary_generic("pkcs8")
            .cloned()
            .map_err(|_| Error::internal("stored development key is not binary"))
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
