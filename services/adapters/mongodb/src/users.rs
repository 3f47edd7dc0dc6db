//! Accounts, refresh-token families and signing keys on MongoDB.

use super::*;

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
            Err(e) if is_duplicate_key(&e) => Err(AuthError::EmailTaken.into()),
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
        let found = self.last_seen(ids).await?;
        Ok(found.into_iter().map(|(id, _)| id).collect())
    }

    async fn last_seen(
        &self,
        ids: &[String],
    ) -> Result<Vec<(String, Option<DateTime<Utc>>)>, Error> {
        let oids: Vec<ObjectId> = ids
            .iter()
            .filter_map(|id| ObjectId::parse_str(id).ok())
            .collect();
        let docs: Vec<Document> = documents(
            self.0
                .find(doc! {"_id": {"$in": oids}})
                .projection(doc! {"_id": 1, "lastSeenAt": 1}),
        )
        .await?;
        Ok(docs
            .iter()
            .filter_map(|d| {
                let id = d.get_object_id("_id").ok()?.to_hex();
                let seen = d
                    .get_datetime("lastSeenAt")
                    .ok()
                    .map(|t| from_bson_time(*t));
                Some((id, seen))
            })
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
        let docs: Vec<Document> = documents(
            self.0
                .find(filter)
                .sort(doc! {"_id": 1})
                .skip(page.skip())
                .limit(i64::from(page.limit)),
        )
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
