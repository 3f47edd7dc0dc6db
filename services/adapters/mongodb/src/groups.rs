//! Groups and memberships on MongoDB: one direct conversation per pair, admins kept.

use super::*;

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
    /// The memberships matching `filter`, in joining order.
    async fn find_members(&self, filter: Document) -> Result<Vec<MemberRecord>, Error> {
        let docs: Vec<Document> = self
            .members
            .find(filter)
            .sort(doc! {"joinedAt": 1, "_id": 1})
            .await
            .db()?
            .try_collect()
            .await
            .db()?;
        docs.iter().map(member_from_doc).collect()
    }

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
        self.members_of(&[group_id.to_string()]).await
    }

    async fn members_of(&self, group_ids: &[String]) -> Result<Vec<MemberRecord>, Error> {
        self.find_members(doc! {"groupId": {"$in": group_ids}})
            .await
    }

    async fn memberships(
        &self,
        user_id: &str,
        group_ids: &[String],
    ) -> Result<Vec<MemberRecord>, Error> {
        self.find_members(doc! {"userId": user_id, "groupId": {"$in": group_ids}})
            .await
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
        let oid = ObjectId::parse_str(group_id).map_err(|_| GroupError::GroupNotFound)?;
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
            .ok_or(GroupError::GroupNotFound)?;
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
