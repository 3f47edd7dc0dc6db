//! Messages on MongoDB: gap-free per-group sequences, idempotent sends, cursors.

use super::*;
use chat_domain::key::Key;

/// [`MessageStore`] on the `messages` collection. The unique `(groupId, seq)` index makes the
/// sequence gap-free and unambiguous even if two processes ever append to one group at once (the
/// loser retries with the next number); the unique `(senderId, clientMessageId)` index makes
/// retried sends idempotent. Read positions are on `read_positions`, delivered positions on
/// `delivered_positions`, one document per user and group (`_id` = `userId:groupId`).
///
/// A send is one insert in the common case: the last sequence number of each group this process
/// appended to is kept ([`LastSeq`]), and a retried send is found by the insert's duplicate-key
/// refusal rather than looked up before every insert. Sends that arrive while [`IN_FLIGHT`]
/// inserts are under way wait and go together in the next one (`insert_many`, unordered: group
/// commit, as the embedded store does), at most one per group and [`MAX_BATCH`] in all.
pub struct MongoMessageStore {
    messages: Collection<Document>,
    positions: Collection<Document>,
    delivered: Collection<Document>,
    last_seq: Arc<LastSeq>,
    /// The writer task's queue, started by the first send (a runtime is there by then).
    appends: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<PendingAppend>>,
}

/// A send waiting for the writer, and where its outcome goes.
struct PendingAppend {
    message: NewMessage,
    answer: tokio::sync::oneshot::Sender<Result<(MessageView, bool), Error>>,
}

/// The most sends one `insert_many` carries (a backlog goes in several).
const MAX_BATCH: usize = 256;
/// Writes under way at once: sends at a low rate are not queued behind each other's round
/// trips, and a backlog still goes in few, large writes.
const IN_FLIGHT: usize = 4;

/// The last sequence number this process gave each group, so that an append need not read it
/// back first. It may be behind (another process appended since: the insert is refused by the
/// `(groupId, seq)` index and the number is read again), never ahead, since it only records
/// inserts the server acknowledged. Bounded: emptied when it holds [`LastSeq::MAX_GROUPS`].
#[derive(Default)]
struct LastSeq(std::sync::Mutex<HashMap<Key, i64>>);

impl LastSeq {
    const MAX_GROUPS: usize = 10_000;

    fn get(&self, group_id: &str) -> Option<i64> {
        self.lock().get(group_id).copied()
    }

    fn set(&self, group_id: &str, seq: i64) {
        let mut groups = self.lock();
        if groups.len() >= Self::MAX_GROUPS && !groups.contains_key(group_id) {
            groups.clear();
        }
        let last = groups.entry(Key::from(group_id)).or_insert(seq);
        *last = (*last).max(seq);
    }

    fn forget(&self, group_id: &str) {
        self.lock().remove(group_id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, i64>> {
        // A panic while held leaves a map of plain numbers: still usable.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl MongoMessageStore {
    pub fn new(db: &Database) -> Self {
        MongoMessageStore {
            messages: db.collection(MESSAGES),
            positions: db.collection(READ_POSITIONS),
            delivered: db.collection(DELIVERED_POSITIONS),
            last_seq: Arc::default(),
            appends: std::sync::OnceLock::new(),
        }
    }

    /// The writer's queue, its task spawned on first use. The task ends when the store is
    /// dropped (its queue closes).
    fn appends(&self) -> &tokio::sync::mpsc::UnboundedSender<PendingAppend> {
        self.appends.get_or_init(|| {
            let (queue, sends) = tokio::sync::mpsc::unbounded_channel();
            tokio::spawn(store_sends(
                self.messages.clone(),
                self.last_seq.clone(),
                sends,
            ));
            queue
        })
    }

    async fn many(
        &self,
        filter: Document,
        sort: Document,
        limit: u32,
    ) -> Result<Vec<MessageView>, Error> {
        let docs: Vec<Document> = documents(
            self.messages
                .find(filter)
                .sort(sort)
                .limit(i64::from(limit)),
        )
        .await?;
        docs.iter().map(message_from_doc).collect()
    }

    /// The last message of `group` and how many messages after `seen_seq` others sent and did
    /// not delete, in one aggregate over the `(groupId, seq)` index from `seen_seq` on: the
    /// message at `seen_seq` is included so that a group read to its end still has its last
    /// message, and is not counted.
    async fn summary(
        &self,
        group: &str,
        user_id: &str,
        seen_seq: i64,
    ) -> Result<GroupActivity, Error> {
        let unread = doc! {"$cond": [{"$and": [
            {"$gt": ["$seq", seen_seq]},
            {"$ne": ["$senderId", user_id]},
            {"$eq": ["$deleted", false]},
        ]}, 1, 0]};
        let pipeline = [
            doc! {"$match": {"groupId": group, "seq": {"$gte": seen_seq}}},
            doc! {"$sort": {"seq": -1}},
            doc! {"$group": {"_id": null, "last": {"$first": "$$ROOT"}, "unread": {"$sum": unread}}},
        ];
        let found: Vec<Document> = documents(self.messages.aggregate(pipeline)).await?;
        let (last_message, unread) = match found.first() {
            Some(summary) => {
                let last = summary
                    .get_document("last")
                    .map_err(|_| Error::internal("a group summary without its last message"))?;
                let unread = match summary.get("unread") {
                    Some(Bson::Int32(n)) => u64::try_from(*n).unwrap_or(0),
                    Some(Bson::Int64(n)) => u64::try_from(*n).unwrap_or(0),
                    _ => return Err(Error::internal("a group summary without its count")),
                };
                (Some(message_from_doc(last)?), unread)
            }
            // Nothing at or after the read position: an empty group, or a position past the
            // last message (nothing unread then either).
            None if seen_seq > 0 => (self.before(group, None, 1).await?.into_iter().next(), 0),
            None => (None, 0),
        };
        Ok(GroupActivity {
            group_id: group.to_string(),
            last_message,
            unread,
            last_seen_seq: seen_seq,
        })
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
        edited_at: d.get_datetime("editedAt").ok().map(|t| from_bson_time(*t)),
    })
}

/// The message `sender_id` sent as `client_message_id`, if stored.
async fn sent_in(
    messages: &Collection<Document>,
    sender_id: &str,
    client_message_id: &str,
) -> Result<Option<MessageView>, Error> {
    messages
        .find_one(doc! {"senderId": sender_id, "clientMessageId": client_message_id})
        .await
        .db()?
        .as_ref()
        .map(message_from_doc)
        .transpose()
}

/// The document of `message` as `seq` of its group.
fn message_doc(message: &NewMessage, seq: i64) -> Document {
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
    document
}

/// The writer: takes the sends in the order they came, up to [`IN_FLIGHT`] writes at once, each
/// with everything waiting when it starts, until the store is dropped. At a low rate each send
/// is its own write, as many under way as arrive; once every write is busy, the sends that
/// wait go together in the next.
async fn store_sends(
    messages: Collection<Document>,
    last_seq: Arc<LastSeq>,
    mut sends: tokio::sync::mpsc::UnboundedReceiver<PendingAppend>,
) {
    let writes = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    while let Some(first) = sends.recv().await {
        let Ok(write) = writes.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match sends.try_recv() {
                Ok(pending) => batch.push(pending),
                Err(_) => break,
            }
        }
        let (messages, last_seq) = (messages.clone(), last_seq.clone());
        tokio::spawn(async move {
            append_batch(&messages, &last_seq, batch).await;
            drop(write);
        });
    }
}

/// Stores `batch`: the first send of each group whose last number this process knows goes into
/// one unordered `insert_many`; the others (a group's second send in the batch, a group not
/// known yet, a send the insert refused as a duplicate: a retry, or a number another writer
/// took) take the one-by-one path, which reads what it needs. Each send is answered once its
/// own outcome is known.
async fn append_batch(
    messages: &Collection<Document>,
    last_seq: &LastSeq,
    batch: Vec<PendingAppend>,
) {
    let mut together: Vec<(PendingAppend, Document)> = Vec::new();
    let mut later: Vec<PendingAppend> = Vec::new();
    let mut groups = std::collections::HashSet::new();
    for pending in batch {
        let group = pending.message.group_id.clone();
        match last_seq.get(&group) {
            Some(last) if groups.insert(group) => {
                let document = message_doc(&pending.message, last + 1);
                together.push((pending, document));
            }
            _ => later.push(pending),
        }
    }
    // Refused as duplicates: each goes alone, before the later sends of its group.
    let mut alone = Vec::new();
    if !together.is_empty() {
        let documents: Vec<&Document> = together.iter().map(|(_, d)| d).collect();
        let refused: HashMap<usize, bool> =
            match messages.insert_many(documents).ordered(false).await {
                Ok(_) => HashMap::new(),
                // Only the listed ones failed (a duplicate key is worked out alone).
                Err(e) => match &*e.kind {
                    ErrorKind::InsertMany(failure) if failure.write_concern_error.is_none() => {
                        failure
                            .write_errors
                            .iter()
                            .flatten()
                            .map(|w| (w.index, w.code == 11000))
                            .collect()
                    }
                    // Anything else: none is known to be stored. Answered as failed, the sends
                    // are retried, and a retry of a stored one is found as a duplicate.
                    _ => {
                        let e = Error::dependency("database", e);
                        for (pending, _) in together.drain(..) {
                            let _ = pending.answer.send(Err(e.clone()));
                        }
                        HashMap::new()
                    }
                },
            };
        for (i, (pending, document)) in together.into_iter().enumerate() {
            match refused.get(&i) {
                None => {
                    let seq = document.get_i64("seq").unwrap_or_default();
                    last_seq.set(&pending.message.group_id, seq);
                    let stored = message_from_doc(&document).map(|view| (view, true));
                    let _ = pending.answer.send(stored);
                }
                Some(true) => alone.push(pending),
                Some(false) => {
                    let e = Error::dependency("database", "a message insert was refused");
                    let _ = pending.answer.send(Err(e));
                }
            }
        }
    }
    // One by one, in the order they came.
    for pending in alone.into_iter().chain(later) {
        let outcome = append_one(messages, last_seq, pending.message).await;
        let _ = pending.answer.send(outcome);
    }
}

/// Stores one send: the group's next number after the last one known (read when not known),
/// or the message stored before under its client id (a retry). A number another writer took
/// since is read again.
async fn append_one(
    messages: &Collection<Document>,
    last_seq: &LastSeq,
    message: NewMessage,
) -> Result<(MessageView, bool), Error> {
    for _ in 0..10 {
        let seq = match last_seq.get(&message.group_id) {
            Some(last) => last + 1,
            None => {
                messages
                    .find_one(doc! {"groupId": &message.group_id})
                    .sort(doc! {"seq": -1})
                    .await
                    .db()?
                    .and_then(|d| d.get_i64("seq").ok())
                    .unwrap_or(0)
                    + 1
            }
        };
        let document = message_doc(&message, seq);
        match messages.insert_one(&document).await {
            Ok(_) => {
                last_seq.set(&message.group_id, seq);
                return Ok((message_from_doc(&document)?, true));
            }
            Err(e) if is_duplicate_key(&e) => {
                // Either this send was stored before (a retry), or another writer took this
                // sequence number: read it again.
                if let Some(existing) =
                    sent_in(messages, &message.sender_id, &message.client_message_id).await?
                {
                    return Ok((existing, false));
                }
                last_seq.forget(&message.group_id);
            }
            Err(e) => return Err(e).db(),
        }
    }
    Err(Error::unavailable(
        "could not assign a sequence number; try again",
    ))
}

#[async_trait::async_trait]
impl MessageStore for MongoMessageStore {
    async fn sent(
        &self,
        sender_id: &str,
        client_message_id: &str,
    ) -> Result<Option<MessageView>, Error> {
        sent_in(&self.messages, sender_id, client_message_id).await
    }

    async fn append(&self, message: NewMessage) -> Result<(MessageView, bool), Error> {
        let (answer, stored) = tokio::sync::oneshot::channel();
        self.appends()
            .send(PendingAppend { message, answer })
            .map_err(|_| Error::internal("the message store's writer stopped"))?;
        stored
            .await
            .map_err(|_| Error::internal("a send was dropped unanswered"))?
    }

    async fn get(&self, message_id: &str) -> Result<Option<MessageView>, Error> {
        let Ok(oid) = ObjectId::parse_str(message_id) else {
            return Ok(None);
        };
        self.messages
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
            .messages
            .find_one_and_update(
                doc! {"_id": oid},
                doc! {"$set": {"deleted": true, "deletedAt": BsonDateTime::now()}, "$unset": {"content": "", "attachment": ""}},
            )
            .return_document(ReturnDocument::After)
            .await.db()?;
        updated.as_ref().map(message_from_doc).transpose()
    }

    async fn edit(
        &self,
        message_id: &str,
        content: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<MessageView>, Error> {
        let Ok(oid) = ObjectId::parse_str(message_id) else {
            return Ok(None);
        };
        let set = doc! {"$set": {"content": content, "editedAt": to_bson_time(at)}};
        if let Some(edited) = self
            .messages
            .find_one_and_update(doc! {"_id": oid, "deleted": false}, set)
            .return_document(ReturnDocument::After)
            .await
            .db()?
        {
            return message_from_doc(&edited).map(Some);
        }
        self.get(message_id).await
    }

    async fn unread(&self, group_id: &str, user_id: &str, seq: i64) -> Result<u64, Error> {
        Ok(self
            .messages
            .count_documents(doc! {"groupId": group_id, "seq": {"$gt": seq}, "senderId": {"$ne": user_id}, "deleted": false})
            .await.db()?)
    }

    async fn activity(
        &self,
        user_id: &str,
        group_ids: &[String],
    ) -> Result<Vec<GroupActivity>, Error> {
        let positions: Vec<Document> = documents(
            self.positions
                .find(doc! {"userId": user_id, "groupId": {"$in": group_ids}}),
        )
        .await?;
        let seen: HashMap<&str, i64> = positions
            .iter()
            .filter_map(|p| {
                let group = p.get_str("groupId").ok()?;
                Some((group, p.get_i64("seq").ok()?))
            })
            .collect();
        // One aggregate per group, run together: the messages from the read position on,
        // newest first, give the last message and the unread count in one round trip (they were
        // two, and a round trip is what the list's time is made of).
        futures_util::future::try_join_all(group_ids.iter().map(|group| {
            let seen_seq = seen.get(group.as_str()).copied().unwrap_or(0);
            self.summary(group, user_id, seen_seq)
        }))
        .await
    }

    async fn mark(
        &self,
        receipt: Receipt,
        group_id: &str,
        user_id: &str,
        seq: i64,
        at: DateTime<Utc>,
    ) -> Result<i64, Error> {
        let (positions, at_field) = match receipt {
            Receipt::Seen => (&self.positions, "seenAt"),
            Receipt::Delivered => (&self.delivered, "deliveredAt"),
        };
        // Moves forward only: when the stored position is not behind, the filter misses and the
        // upsert collides with the existing `_id`; then the stored one is read.
        let id = read_position_id(user_id, group_id);
        match positions
            .update_one(
                doc! {"_id": &id, "seq": {"$lt": seq}},
                doc! {
                    "$set": {"seq": seq, at_field: to_bson_time(at)},
                    "$setOnInsert": {"userId": user_id, "groupId": group_id},
                },
            )
            .upsert(true)
            .await
        {
            Ok(_) => Ok(seq),
            Err(e) if is_duplicate_key(&e) => {
                let stored = positions.find_one(doc! {"_id": &id}).await.db()?;
                Ok(stored.and_then(|d| d.get_i64("seq").ok()).unwrap_or(seq))
            }
            Err(e) => Err(e).db(),
        }
    }

    async fn receipts(&self, group_id: &str) -> Result<Vec<ReceiptPositions>, Error> {
        let (delivered, seen) = futures_util::future::try_join(
            positions_in(&self.delivered, group_id),
            positions_in(&self.positions, group_id),
        )
        .await?;
        let mut by_user: std::collections::BTreeMap<String, ReceiptPositions> = Default::default();
        for (user_id, seq, seen) in delivered
            .into_iter()
            .map(|(u, s)| (u, s, false))
            .chain(seen.into_iter().map(|(u, s)| (u, s, true)))
        {
            let entry = by_user
                .entry(user_id.clone())
                .or_insert_with(|| ReceiptPositions {
                    user_id,
                    delivered_seq: 0,
                    seen_seq: 0,
                });
            if seen {
                entry.seen_seq = seq;
            } else {
                entry.delivered_seq = seq;
            }
        }
        Ok(by_user.into_values().collect())
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

/// `(userId, seq)` of every position document of the group in `positions`.
async fn positions_in(
    positions: &Collection<Document>,
    group_id: &str,
) -> Result<Vec<(String, i64)>, Error> {
    let docs: Vec<Document> = documents(positions.find(doc! {"groupId": group_id})).await?;
    Ok(docs
        .iter()
        .filter_map(|d| {
            Some((
                d.get_str("userId").ok()?.to_string(),
                d.get_i64("seq").ok()?,
            ))
        })
        .collect())
}
