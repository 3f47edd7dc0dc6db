//! Messages on SQLite: gap-free per-group sequences, idempotent sends, cursors.

use super::*;

const MESSAGE_COLUMNS: &str =
    "id, group_id, seq, sender_id, client_message_id, content, attachment, \
     deleted, created_at, edited_at";

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
        edited_at: r.get::<_, Option<i64>>(9)?.map(time),
    })
}

fn messages_where(
    conn: &Connection,
    clause: &str,
    args: &[&dyn rusqlite::ToSql],
) -> Result<Vec<MessageView>, Error> {
    let mut statement = conn
        .prepare_cached(&format!("SELECT {MESSAGE_COLUMNS} FROM messages {clause}"))
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

/// A sender's message by its client id (the retry key).
const BY_CLIENT_ID: &str = "WHERE sender_id = ?1 AND client_message_id = ?2";

/// Messages of `group` after `seq` not sent by `user` and not deleted.
fn unread_in(conn: &Connection, group: &str, user: &str, seq: i64) -> Result<u64, Error> {
    conn.prepare_cached(
        "SELECT count(*) FROM messages
         WHERE group_id = ?1 AND seq > ?2 AND sender_id != ?3 AND deleted = 0",
    )
    .db()?
    .query_row(params![group, seq, user], |r| r.get(0))
    .db()
}

/// A send waiting to be stored, and where its outcome goes.
pub(super) struct PendingAppend {
    message: NewMessage,
    answer: tokio::sync::oneshot::Sender<Result<(MessageView, bool), Error>>,
}

/// The most sends one transaction stores (a backlog is stored in several).
const MAX_BATCH: usize = 512;

/// The writer's thread: takes the sends in the order they came, everything waiting at once
/// (group commit), until the database is dropped. One thread kept for this, woken by the first
/// send of a batch, costs far less than a job on the blocking pool per send, each waking a
/// thread to contend for the connection and most finding the queue already taken.
pub(super) fn store_sends(
    conn: Arc<Mutex<Connection>>,
    sends: std::sync::mpsc::Receiver<PendingAppend>,
) {
    while let Ok(first) = sends.recv() {
        // A panic elsewhere while the connection was held leaves it usable (its transaction
        // was rolled back as it unwound).
        let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
        // Everything waiting by the time the connection is ours.
        let mut batch = vec![first];
        batch.extend(sends.try_iter().take(MAX_BATCH - 1));
        // A bug that panics here fails this batch's sends (their answers are dropped), not
        // every later one: the thread goes on.
        let stored = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            append_batch(&mut conn, batch)
        }));
        if stored.is_err() {
            tracing::error!("embedded database: storing a batch of messages panicked");
        }
    }
}

/// Stores `batch` in one transaction and answers each send once the whole is committed: one
/// write of the log for all of them instead of one each, which was most of a send's cost in the
/// database. A send writes with one statement, which SQLite undoes alone when it fails, so one
/// failing send leaves the others to be stored (no savepoint per send: parsing and running two
/// more statements each cost more than the insert). An error that made SQLite roll back the
/// whole transaction (a full disk, an I/O error) fails the sends after it unrun: run outside the
/// transaction they would each commit on their own and be answered as failed.
fn append_batch(conn: &mut Connection, batch: Vec<PendingAppend>) {
    let tx = match conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .db()
    {
        Ok(tx) => tx,
        Err(e) => {
            for pending in batch {
                let _ = pending.answer.send(Err(e.clone()));
            }
            return;
        }
    };
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut rolled_back: Option<Error> = None;
    for pending in batch {
        let outcome = if let Some(e) = &rolled_back {
            Err(e.clone())
        } else {
            let outcome = append_in(&tx, pending.message);
            if let Err(e) = &outcome {
                if tx.is_autocommit() {
                    rolled_back = Some(e.clone());
                }
            }
            outcome
        };
        outcomes.push((pending.answer, outcome));
    }
    let committed = match rolled_back {
        Some(e) => Err(e),
        None => tx.commit().db(),
    };
    for (answer, outcome) in outcomes {
        // Nothing is stored when the commit failed, whatever each send's own outcome was.
        let _ = answer.send(committed.clone().and(outcome));
    }
}

/// One send in the current transaction: the existing message when this sender's client id was
/// stored before, otherwise the group's next number.
fn append_in(conn: &Connection, message: NewMessage) -> Result<(MessageView, bool), Error> {
    if let Some(existing) = first_message(
        conn,
        BY_CLIENT_ID,
        &[&message.sender_id, &message.client_message_id],
    )? {
        return Ok((existing, false));
    }
    let seq: i64 = conn
        .prepare_cached("SELECT coalesce(max(seq), 0) + 1 FROM messages WHERE group_id = ?1")
        .db()?
        .query_row([&message.group_id], |r| r.get(0))
        .db()?;
    let id = new_id();
    let attachment = message
        .attachment
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(Error::internal)?;
    let created_at = millis(Utc::now());
    conn.prepare_cached(
        "INSERT INTO messages (id, group_id, seq, sender_id, client_message_id, content, attachment, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .db()?
    .execute(params![id, message.group_id, seq, message.sender_id, message.client_message_id,
        message.content, attachment, created_at])
    .db()?;
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
        edited_at: None,
    };
    Ok((stored, true))
}

#[async_trait::async_trait]
impl MessageStore for SqliteMessageStore {
    async fn append(&self, message: NewMessage) -> Result<(MessageView, bool), Error> {
        let (answer, stored) = tokio::sync::oneshot::channel();
        self.appends
            .send(PendingAppend { message, answer })
            .map_err(|_| Error::internal("embedded database: its writer stopped"))?;
        stored
            .await
            .map_err(|_| Error::internal("embedded database: a send was dropped unanswered"))?
    }

    async fn sent(
        &self,
        sender_id: &str,
        client_message_id: &str,
    ) -> Result<Option<MessageView>, Error> {
        let (sender, client) = (sender_id.to_string(), client_message_id.to_string());
        self.run(move |conn| first_message(conn, BY_CLIENT_ID, &[&sender, &client]))
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

    async fn edit(
        &self,
        message_id: &str,
        content: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<MessageView>, Error> {
        let (id, content) = (message_id.to_string(), content.to_string());
        self.run(move |conn| {
            conn.execute(
                "UPDATE messages SET content = ?2, edited_at = ?3 WHERE id = ?1 AND deleted = 0",
                params![id, content, millis(at)],
            )
            .db()?;
            first_message(conn, "WHERE id = ?1", &[&id])
        })
        .await
    }

    async fn unread(&self, group_id: &str, user_id: &str, seq: i64) -> Result<u64, Error> {
        let (group, user) = (group_id.to_string(), user_id.to_string());
        self.run(move |conn| unread_in(conn, &group, &user, seq))
            .await
    }

    async fn activity(
        &self,
        user_id: &str,
        group_ids: &[String],
    ) -> Result<Vec<GroupActivity>, Error> {
        let (user, groups) = (user_id.to_string(), group_ids.to_vec());
        // One trip to the database thread for the whole list, in one read transaction: one
        // snapshot for every group, and SQLite's file locks taken once rather than per query
        // (they were an eighth of the group list's time).
        self.run(move |conn| {
            let conn = conn.transaction().db()?;
            groups
                .into_iter()
                .map(|group| {
                    let seen: i64 = conn
                        .prepare_cached(
                            "SELECT seq FROM read_positions WHERE user_id = ?1 AND group_id = ?2",
                        )
                        .db()?
                        .query_row(params![user, group], |r| r.get(0))
                        .optional()
                        .db()?
                        .unwrap_or(0);
                    Ok(GroupActivity {
                        last_message: first_message(
                            &conn,
                            "WHERE group_id = ?1 ORDER BY seq DESC LIMIT 1",
                            &[&group],
                        )?,
                        unread: unread_in(&conn, &group, &user, seen)?,
                        last_seen_seq: seen,
                        group_id: group,
                    })
                })
                .collect()
        })
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
        let (group, user) = (group_id.to_string(), user_id.to_string());
        let (table, at_column) = receipt_table(receipt);
        self.run(move |conn| {
            conn.prepare_cached(&format!(
                "INSERT INTO {table} (user_id, group_id, seq, {at_column}) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (user_id, group_id) DO UPDATE
                 SET seq = excluded.seq, {at_column} = excluded.{at_column}
                 WHERE seq < excluded.seq"
            ))
            .db()?
            .execute(params![user, group, seq, millis(at)])
            .db()?;
            conn.prepare_cached(&format!(
                "SELECT seq FROM {table} WHERE user_id = ?1 AND group_id = ?2"
            ))
            .db()?
            .query_row(params![user, group], |r| r.get(0))
            .db()
        })
        .await
    }

    async fn receipts(&self, group_id: &str) -> Result<Vec<ReceiptPositions>, Error> {
        let group = group_id.to_string();
        self.run(move |conn| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT user_id, MAX(delivered), MAX(seen) FROM (
                       SELECT user_id, seq AS delivered, 0 AS seen FROM delivered_positions
                       WHERE group_id = ?1
                       UNION ALL
                       SELECT user_id, 0, seq FROM read_positions WHERE group_id = ?1)
                     GROUP BY user_id ORDER BY user_id",
                )
                .db()?;
            let rows = statement
                .query_map([&group], |r| {
                    Ok(ReceiptPositions {
                        user_id: r.get(0)?,
                        delivered_seq: r.get(1)?,
                        seen_seq: r.get(2)?,
                    })
                })
                .db()?;
            rows.collect::<Result<Vec<_>, _>>().db()
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

/// The table of one kind of receipt, and its time column.
fn receipt_table(receipt: Receipt) -> (&'static str, &'static str) {
    match receipt {
        Receipt::Seen => ("read_positions", "seen_at"),
        Receipt::Delivered => ("delivered_positions", "delivered_at"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(group: &str, sender: &str, client_id: &str) -> NewMessage {
        NewMessage {
            group_id: group.into(),
            sender_id: sender.into(),
            client_message_id: client_id.into(),
            content: Some("hi".into()),
            attachment: None,
        }
    }

    /// Sends arriving together are stored in shared transactions: every group still numbers
    /// from 1 without a gap, and a send retried while its first attempt waits in the same batch
    /// is absorbed, not stored twice.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sends_stored_together_keep_numbers_and_absorb_retries() {
        let store = SqliteMessageStore(SqliteDb::in_memory(AssetLimits::default()).unwrap());
        let sends = (0..60).map(|i| {
            let store = store.clone();
            // Every third send repeats the one before it (a retry racing its first attempt).
            let id = if i % 3 == 2 { i - 1 } else { i };
            async move {
                store
                    .append(send(&format!("g{}", id % 5), "ada", &format!("c{id}")))
                    .await
                    .unwrap()
            }
        });
        let stored = futures_util::future::join_all(sends).await;
        let created: Vec<&MessageView> =
            stored.iter().filter(|(_, c)| *c).map(|(m, _)| m).collect();
        assert_eq!(created.len(), 40, "20 retries absorbed");
        for (m, new) in &stored {
            if !new {
                let first = created_with(&created, &m.client_message_id);
                assert_eq!(m.id, first.id, "a retry gets the message stored first");
            }
        }
        for g in 0..5 {
            let mut seqs: Vec<i64> = created
                .iter()
                .filter(|m| m.group_id == format!("g{g}"))
                .map(|m| m.seq)
                .collect();
            seqs.sort_unstable();
            assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
        }
        let kept = store.before("g0", None, 100).await.unwrap();
        assert_eq!(kept.len(), 8, "what was answered is what was stored");
    }

    /// A database that cannot grow (here: capped by `max_page_count`, as a full disk would)
    /// fails sends, and what each sender is told is the truth: a send answered stored is
    /// stored, one answered failed is not, even when the failure rolled back a batch shared
    /// with others. Once there is room again, sends are stored.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_full_database_fails_sends_and_answers_each_truthfully() {
        let store = SqliteMessageStore(SqliteDb::in_memory(AssetLimits::default()).unwrap());
        store.append(send("g", "ada", "first")).await.unwrap();
        let pages: i64 = {
            let conn = store.0.conn.lock().unwrap();
            let pages = conn
                .query_row("PRAGMA page_count", [], |r| r.get(0))
                .unwrap();
            conn.pragma_update(None, "max_page_count", pages).unwrap();
            pages
        };
        let big = "x".repeat(3000);
        let sends = (0..40).map(|i| {
            let (store, big) = (store.clone(), big.clone());
            async move {
                let mut message = send(&format!("g{}", i % 4), "ada", &format!("c{i}"));
                message.content = Some(big);
                (format!("c{i}"), store.append(message).await)
            }
        });
        let answers = futures_util::future::join_all(sends).await;
        let mut failed = 0;
        for (client_id, answer) in &answers {
            let stored = store.sent("ada", client_id).await.unwrap();
            match answer {
                Ok((m, _)) => assert_eq!(stored.map(|s| s.id), Some(m.id.clone())),
                Err(_) => {
                    failed += 1;
                    assert!(stored.is_none(), "{client_id} answered failed but stored")
                }
            }
        }
        assert!(failed > 0, "{pages} pages held every send");
        store
            .0
            .conn
            .lock()
            .unwrap()
            .pragma_update(None, "max_page_count", 1_000_000)
            .unwrap();
        let (after, created) = store.append(send("g", "ada", "after")).await.unwrap();
        assert!(created);
        assert_eq!(after.seq, 2, "numbers go on from what was stored");
    }

    fn created_with<'a>(created: &[&'a MessageView], client_id: &str) -> &'a MessageView {
        created
            .iter()
            .find(|m| m.client_message_id == client_id)
            .unwrap()
    }
}
