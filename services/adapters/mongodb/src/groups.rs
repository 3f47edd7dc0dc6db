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

    /// The memberships matching `filter`, in joining order.
    async fn find_members(&self, filter: Document) -> Result<Vec<MemberRecord>, Error> {
        let docs: Vec<Document> = documents(
            self.members
                .find(filter)
                .sort(doc! {"joinedAt": 1, "_id": 1}),
        )
        .await?;
        docs.iter().map(member_from_doc).collect()
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
    })
}

fn member_doc(group_id: &str, user_id: &str, role: MemberRole, at: BsonDateTime) -> Document {
    doc! {"groupId": group_id, "userId": user_id, "role": role_str(role), "joinedAt": at}
}

#[async_trait::async_trait]
impl GroupStore for MongoGroupStore {
    async fn create(&self, group: NewGroup) -> Result<(GroupRecord, bool), Error> {
        let now = BsonDateTime::now();
        let mut document = doc! {"_id": ObjectId::new(), "createdAt": now, "updatedAt": now};
        if let Some(name) = &group.name {
            document.insert("name", name);
        }
        let members: Vec<Document> = group
            .members
            .iter()
            .map(|(user, role)| doc! {"userId": user, "role": role_str(*role)})
            .collect();
        let Some(key) = &group.direct_key else {
            return Ok((self.complete(&document, &members).await?, true));
        };
        document.insert("directKey", key);
        // The pair document claims the conversation and holds everything needed to write it,
        // so whoever finds the claim can finish a creation another process started (or died
        // in) instead of waiting for it: both write the same group, idempotently.
        let claim = doc! {"_id": key, "group": &document, "members": &members};
        loop {
            match self.pairs.insert_one(claim.clone()).await {
                Ok(_) => return Ok((self.complete(&document, &members).await?, true)),
                Err(e) if !is_duplicate_key(&e) => return Err(e).db(),
                Err(_) => {
                    let found = self.pairs.find_one(doc! {"_id": key}).await.db()?;
                    if let Some(existing) = match found {
                        Some(found) => self.claimed(&found).await?,
                        None => None,
                    } {
                        return Ok((existing, false));
                    }
                }
            }
        }
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
        let memberships: Vec<Document> =
            documents(self.members.find(doc! {"userId": user_id})).await?;
        let ids: Vec<ObjectId> = memberships
            .iter()
            .filter_map(|m| m.get_str("groupId").ok())
            .filter_map(|id| ObjectId::parse_str(id).ok())
            .collect();
        let docs: Vec<Document> = documents(
            self.groups
                .find(doc! {"_id": {"$in": ids}})
                .sort(doc! {"updatedAt": -1, "_id": -1}),
        )
        .await?;
        docs.iter().map(group_from_doc).collect()
    }

    async fn members(&self, group_id: &str) -> Result<Vec<MemberRecord>, Error> {
        self.members_of(&[group_id.to_string()]).await
    }

    async fn members_of(&self, group_ids: &[String]) -> Result<Vec<MemberRecord>, Error> {
        self.find_members(doc! {"groupId": {"$in": group_ids}})
            .await
    }

    async fn group_count(&self, user_id: &str) -> Result<u64, Error> {
        self.members
            .count_documents(doc! {"userId": user_id})
            .await
            .db()
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

    async fn delete(&self, group_id: &str) -> Result<(), Error> {
        if let Ok(oid) = ObjectId::parse_str(group_id) {
            self.groups.delete_one(doc! {"_id": oid}).await.db()?;
            self.pairs
                .delete_many(doc! {"$or": [{"groupId": oid}, {"group._id": oid}]})
                .await
                .db()?;
        }
        self.members
            .delete_many(doc! {"groupId": group_id})
            .await
            .db()?;
        Ok(())
    }
}

impl MongoGroupStore {
    /// Writes a group and its members, members first (a group that can be read has its
    /// members). Every write is an upsert that leaves what exists alone, so two writers of the
    /// same group end with one group and one membership each.
    async fn complete(&self, group: &Document, members: &[Document]) -> Result<GroupRecord, Error> {
        let bad = || Error::internal("a group document without an _id");
        let id = group.get_object_id("_id").map_err(|_| bad())?;
        let gid = id.to_hex();
        let at = group.get_datetime("createdAt").map_err(|_| bad())?;
        for member in members {
            let user = member.get_str("userId").map_err(|_| bad())?;
            let role = member.get_str("role").unwrap_or("member");
            let joined = doc! {"$setOnInsert": {"role": role, "joinedAt": at}};
            match self
                .members
                .update_one(doc! {"groupId": &gid, "userId": user}, joined)
                .upsert(true)
                .await
            {
                // Two upserts of one new membership race on the unique index: it exists.
                Err(e) if !is_duplicate_key(&e) => return Err(e).db(),
                _ => {}
            }
        }
        match self
            .groups
            .update_one(doc! {"_id": id}, doc! {"$setOnInsert": group.clone()})
            .upsert(true)
            .await
        {
            Err(e) if !is_duplicate_key(&e) => return Err(e).db(),
            _ => {}
        }
        self.get(&gid)
            .await?
            .ok_or_else(|| Error::internal("a group written then not read"))
    }

    /// The conversation a direct pair was claimed for: read when written, finished when its
    /// creator has not finished it (yet, or ever).
    async fn claimed(&self, claim: &Document) -> Result<Option<GroupRecord>, Error> {
        let bad = || Error::internal("a direct pair document without its group");
        // A pair claimed by an older version holds only the group's id: when that group was
        // never written (its creator died), the claim is released and the caller claims again.
        if let Ok(id) = claim.get_object_id("groupId") {
            let group = self.get(&id.to_hex()).await?;
            if group.is_none() {
                tracing::warn!(group = %id, "releasing a direct pair whose conversation was never written");
                self.pairs
                    .delete_one(doc! {"_id": claim.get("_id"), "groupId": id})
                    .await
                    .db()?;
            }
            return Ok(group);
        }
        let group = claim.get_document("group").map_err(|_| bad())?;
        let id = group.get_object_id("_id").map_err(|_| bad())?;
        if let Some(existing) = self.get(&id.to_hex()).await? {
            return Ok(Some(existing));
        }
        let members: Vec<Document> = claim
            .get_array("members")
            .map_err(|_| bad())?
            .iter()
            .filter_map(|m| m.as_document().cloned())
            .collect();
        self.complete(group, &members).await.map(Some)
    }

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
