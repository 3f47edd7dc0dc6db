//! One conformance suite per port, run against both adapters so they cannot drift apart:
//! MongoDB and Redis (the real servers started by `scripts/infra.sh`, SecantusDB for MongoDB)
//! and the embedded ones of `chat-server all` (SQLite and memory). Every test gets fresh
//! state: its own database, key namespace or in-memory file.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chat_domain::assets::{AssetLimits, ByteRange, ChunkUpload};
use chat_domain::config::Secret;
use chat_domain::values::{Email, PageRequest};
use chat_domain::ErrorCode;
use chat_embedded::{MemoryPresence, MemoryRateLimiter, SqliteDb};
use chat_mongodb::{self as mongo, Database};
use chat_ports::assets::AssetStore;
use chat_ports::store::*;
use chrono::Utc;
use futures_util::TryStreamExt;

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Every port, from one adapter family: the stores as `chat-server` builds them, plus rate
/// limits and presence.
struct Ports {
    stores: Stores,
    limiter: Arc<dyn RateLimiter>,
    presence: Arc<dyn Presence>,
    revocations: Arc<dyn Revocations>,
}

impl std::ops::Deref for Ports {
    type Target = Stores;
    fn deref(&self) -> &Stores {
        &self.stores
    }
}

fn limits() -> AssetLimits {
    AssetLimits {
        max_file_bytes: 1_000_000,
        max_chunk_bytes: 400_000,
        max_chunks: 10,
        session_ttl: Duration::from_secs(60),
        ..AssetLimits::default()
    }
}

/// A fresh database, without indexes.
async fn empty_database() -> Database {
    let uri = std::env::var("MONGODB_URI").unwrap_or_else(|_| "mongodb://127.0.0.1:27017".into());
    mongo::connect(
        &Secret::new(uri),
        &unique("test_stores"),
        "stores-test",
        Duration::from_secs(10),
    )
    .await
    .expect("MongoDB is running (scripts/infra.sh up)")
}

async fn database() -> Database {
    let db = empty_database().await;
    mongo::ensure_indexes(&db).await.unwrap();
    db
}

async fn mongodb_and_redis() -> Ports {
    let db = database().await;
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let conn = chat_redis::connect(&Secret::new(url), Duration::from_secs(5))
        .await
        .expect("Redis is running (scripts/infra.sh up)");
    let namespace = unique("t");
    Ports {
        stores: mongo::stores(&db, limits()),
        limiter: Arc::new(chat_redis::RedisRateLimiter::new(conn.clone(), &namespace)),
        revocations: Arc::new(chat_redis::RedisRevocations::new(conn.clone(), &namespace)),
        presence: Arc::new(chat_redis::RedisPresence::new(conn, &namespace)),
    }
}

async fn embedded() -> Ports {
    Ports {
        stores: SqliteDb::in_memory(limits()).unwrap().stores(),
        limiter: Arc::new(MemoryRateLimiter::default()),
        revocations: Arc::new(chat_embedded::MemoryRevocations::default()),
        presence: Arc::new(MemoryPresence::default()),
    }
}

/// Runs each named contract once per adapter family.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod on_mongodb_and_redis {
            $(#[tokio::test] async fn $name() { super::$name(super::mongodb_and_redis().await).await })*
        }
        mod embedded {
            $(#[tokio::test] async fn $name() { super::$name(super::embedded().await).await })*
        }
    };
}

conformance!(
    a_registered_email_cannot_be_registered_again,
    listing_pages_and_searches_case_insensitively,
    profiles_change_only_the_fields_given,
    of_two_concurrent_spends_exactly_one_is_fresh,
    revoking_a_family_spends_all_its_tokens,
    every_replica_gets_the_same_development_key,
    the_rate_limiter_allows_the_limit_then_says_when_to_retry,
    presence_counts_sockets_and_expires,
    a_direct_conversation_exists_once_per_pair,
    an_ended_session_stays_ended_until_its_time_is_up,
    memberships_roles_and_seen_state,
    sequences_are_gap_free_and_sends_idempotent,
    many_groups_sending_at_once_each_keep_their_order,
    history_cursors_tombstones_unread_and_search,
    an_edit_replaces_the_text_of_a_message_not_deleted,
    uploads_resume_refuse_other_bytes_and_assemble,
    stored_files_read_by_range_and_carry_grants,
    idle_uploads_expire_and_limits_hold,
);

#[tokio::test]
async fn index_creation_is_idempotent() {
    let db = database().await;
    let first = mongo::ensure_indexes(&db).await.unwrap();
    assert_eq!(mongo::ensure_indexes(&db).await.unwrap(), first);
}

/// Two message roles appending to one group (a rebalance hands it over while the old owner still
/// works): each remembers the last number it gave, which the other makes stale; neither repeats a
/// number or leaves a gap, and a send stored by one is absorbed by the other.
#[tokio::test]
async fn two_writers_on_one_group_neither_repeat_nor_skip_a_number() {
    let db = database().await;
    let (a, b) = (
        mongo::MongoMessageStore::new(&db),
        mongo::MongoMessageStore::new(&db),
    );
    let group = unique("g");
    let mut seqs = Vec::new();
    for i in 0..12 {
        let store = if i % 3 == 0 { &b } else { &a };
        let (m, created) = store
            .append(message(&group, "s", &format!("c{i}"), "hi"))
            .await
            .unwrap();
        assert!(created);
        seqs.push(m.seq);
    }
    assert_eq!(seqs, (1..=12).collect::<Vec<_>>());
    let (again, created) = b.append(message(&group, "s", "c1", "hi")).await.unwrap();
    assert_eq!(
        (again.seq, created),
        (2, false),
        "stored by the other writer"
    );
    let (next, _) = a.append(message(&group, "s", "c12", "hi")).await.unwrap();
    assert_eq!(next.seq, 13);
}

fn new_user(first: &str, last: &str, email: &str) -> NewUser {
    NewUser {
        first_name: first.into(),
        last_name: last.into(),
        email: Email::parse(email).unwrap(),
        password_hash: "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g".into(),
    }
}

async fn a_registered_email_cannot_be_registered_again(p: Ports) {
    let users = &p.users;
    let created = users
        .insert(new_user("Ada", "Lovelace", "ada@example.com"))
        .await
        .unwrap();
    let err = users
        .insert(new_user("Other", "Person", "ADA@example.com"))
        .await
        .err()
        .unwrap();
    assert_eq!(err.code, ErrorCode::Conflict);
    let found = users
        .by_email(&Email::parse("Ada@Example.com").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, created.id);
    assert_eq!(
        users.by_id(&created.id).await.unwrap().unwrap().email,
        "ada@example.com"
    );
    assert!(users.by_id("not-an-object-id").await.unwrap().is_none());
    assert!(users
        .by_id("000000000000000000000000")
        .await
        .unwrap()
        .is_none());
}

async fn listing_pages_and_searches_case_insensitively(p: Ports) {
    let users = &p.users;
    for i in 0..25 {
        users
            .insert(new_user(
                &format!("User{i:02}"),
                "Smith",
                &format!("user{i:02}@example.com"),
            ))
            .await
            .unwrap();
    }
    users
        .insert(new_user("Grace", "Hopper", "grace@navy.mil"))
        .await
        .unwrap();

    let (page, total) = users
        .list(None, PageRequest::parse(Some(3), Some(10)).unwrap())
        .await
        .unwrap();
    assert_eq!(total, 26);
    assert_eq!(page.len(), 6);
    assert_eq!(page[0].first_name, "User20");

    let (found, total) = users
        .list(Some("HOPPER"), PageRequest::parse(None, None).unwrap())
        .await
        .unwrap();
    assert_eq!((found.len(), total), (1, 1));
    let (found, _) = users
        .list(Some("grace hop"), PageRequest::parse(None, None).unwrap())
        .await
        .unwrap();
    assert_eq!(found[0].email, "grace@navy.mil");
    let (found, _) = users
        .list(Some("NAVY.MIL"), PageRequest::parse(None, None).unwrap())
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    // Regex metacharacters are literal: ".*" matches nobody.
    let (found, total) = users
        .list(Some(".*"), PageRequest::parse(None, None).unwrap())
        .await
        .unwrap();
    assert_eq!((found.len(), total), (0, 0));
}

fn refresh_record(hash: &str, family: &str) -> RefreshTokenRecord {
    RefreshTokenRecord {
        token_hash: hash.into(),
        family_id: family.into(),
        user_id: "u1".into(),
        created_at: Utc::now(),
        expires_at: Utc::now() + chrono::Duration::hours(1),
    }
}

async fn of_two_concurrent_spends_exactly_one_is_fresh(p: Ports) {
    let tokens = &p.refresh_tokens;
    tokens.insert(refresh_record("h1", "f1")).await.unwrap();
    let spends = (0..6).map(|_| {
        let tokens = tokens.clone();
        async move { tokens.spend("h1").await.unwrap() }
    });
    let results = futures_util::future::join_all(spends).await;
    let fresh = results
        .iter()
        .filter(|r| matches!(r, RefreshUse::Fresh(_)))
        .count();
    let reused = results
        .iter()
        .filter(|r| matches!(r, RefreshUse::Reused(_)))
        .count();
    assert_eq!((fresh, reused), (1, 5));
    assert!(matches!(
        tokens.spend("never-issued").await.unwrap(),
        RefreshUse::Unknown
    ));
}

async fn revoking_a_family_spends_all_its_tokens(p: Ports) {
    let tokens = &p.refresh_tokens;
    tokens.insert(refresh_record("a", "fam")).await.unwrap();
    tokens.insert(refresh_record("b", "fam")).await.unwrap();
    tokens.insert(refresh_record("c", "other")).await.unwrap();
    assert_eq!(tokens.revoke_family("fam").await.unwrap(), 2);
    assert!(matches!(
        tokens.spend("b").await.unwrap(),
        RefreshUse::Reused(_)
    ));
    assert!(matches!(
        tokens.spend("c").await.unwrap(),
        RefreshUse::Fresh(_)
    ));
}

async fn every_replica_gets_the_same_development_key(p: Ports) {
    let keys = &p.signing_keys;
    let first = keys.development_key(b"candidate-one").await.unwrap();
    let second = keys.development_key(b"candidate-two").await.unwrap();
    assert_eq!(first, b"candidate-one");
    assert_eq!(second, first);
}

async fn the_rate_limiter_allows_the_limit_then_says_when_to_retry(p: Ports) {
    let limiter = &p.limiter;
    let window = Duration::from_secs(60);
    for _ in 0..3 {
        assert_eq!(
            limiter.hit("login:email:a@b.c", 3, window).await.unwrap(),
            None
        );
    }
    let retry = limiter
        .hit("login:email:a@b.c", 3, window)
        .await
        .unwrap()
        .expect("limited");
    assert!((1..=60).contains(&retry), "retry after {retry}");
    // Another key has its own budget.
    assert_eq!(
        limiter
            .hit("login:email:other@b.c", 3, window)
            .await
            .unwrap(),
        None
    );
}

async fn profiles_change_only_the_fields_given(p: Ports) {
    let user = p
        .users
        .insert(new_user("Ada", "Lovelace", "ada@example.com"))
        .await
        .unwrap();
    let changed = p
        .users
        .update_profile(
            &user.id,
            Some("Augusta".into()),
            None,
            Some(Some("/assets/x".into())),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (changed.first_name.as_str(), changed.last_name.as_str()),
        ("Augusta", "Lovelace")
    );
    assert_eq!(changed.profile_url.as_deref(), Some("/assets/x"));
    let cleared = p
        .users
        .update_profile(&user.id, None, None, Some(None))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cleared.profile_url, None);
    assert!(p
        .users
        .update_profile("000000000000000000000000", None, None, None)
        .await
        .unwrap()
        .is_none());
    let at = Utc::now();
    p.users.set_last_seen(&user.id, at).await.unwrap();
    p.users
        .set_last_seen(&user.id, at - chrono::Duration::hours(1))
        .await
        .unwrap();
    let seen = p.users.by_id(&user.id).await.unwrap().unwrap().last_seen_at;
    assert_eq!(
        seen.map(|t| t.timestamp_millis()),
        Some(at.timestamp_millis()),
        "never moves back"
    );
    let ids = vec![user.id.clone(), "000000000000000000000000".to_string()];
    let last_seen = p.users.last_seen(&ids).await.unwrap();
    assert_eq!(
        last_seen
            .iter()
            .map(|(id, t)| (id.as_str(), t.map(|t| t.timestamp_millis())))
            .collect::<Vec<_>>(),
        vec![(user.id.as_str(), Some(at.timestamp_millis()))],
        "unknown ids left out"
    );
    assert_eq!(p.users.existing(&ids).await.unwrap(), vec![user.id]);
}

async fn presence_counts_sockets_and_expires(p: Ports) {
    let (ttl, user) = (Duration::from_secs(60), unique("u"));
    assert_eq!(p.presence.connected(&user, ttl).await.unwrap(), 1);
    assert_eq!(p.presence.connected(&user, ttl).await.unwrap(), 2);
    assert!(p.presence.refresh(&user, ttl).await.unwrap());
    let nobody = unique("u");
    assert_eq!(
        p.presence
            .online(&[nobody.clone(), user.clone()])
            .await
            .unwrap(),
        vec![false, true],
        "in the order asked"
    );
    assert!(p.presence.online(&[]).await.unwrap().is_empty());
    assert_eq!(p.presence.disconnected(&user).await.unwrap(), 1);
    assert_eq!(p.presence.disconnected(&user).await.unwrap(), 0);
    assert_eq!(
        p.presence
            .online(std::slice::from_ref(&user))
            .await
            .unwrap(),
        vec![false]
    );
    assert!(
        !p.presence.refresh(&user, ttl).await.unwrap(),
        "gone at zero"
    );
    // A count nobody refreshes expires (a crashed replica's sockets).
    let short = unique("u");
    p.presence
        .connected(&short, Duration::from_secs(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(!p.presence.refresh(&short, ttl).await.unwrap());
    assert_eq!(p.presence.connected(&short, ttl).await.unwrap(), 1);
}

fn pair(a: &str, b: &str) -> NewGroup {
    NewGroup {
        name: None,
        direct_key: Some(format!("{a}:{b}")),
        members: vec![
            (a.into(), MemberRole::Admin),
            (b.into(), MemberRole::Member),
        ],
    }
}

async fn a_direct_conversation_exists_once_per_pair(p: Ports) {
    let (first, created) = p.groups.create(pair("u1", "u2")).await.unwrap();
    assert!(created);
    let (again, created) = p.groups.create(pair("u1", "u2")).await.unwrap();
    assert!(!created);
    assert_eq!(again.id, first.id);
    let concurrent = (0..4).map(|_| p.groups.create(pair("u3", "u4")));
    let results = futures_util::future::join_all(concurrent).await;
    let ids: std::collections::BTreeSet<String> =
        results.into_iter().map(|r| r.unwrap().0.id).collect();
    assert_eq!(ids.len(), 1, "one conversation for the pair");
    assert!(p.groups.get("not-an-id").await.unwrap().is_none());
}

async fn memberships_roles_and_seen_state(p: Ports) {
    let group = NewGroup {
        name: Some("Team".into()),
        direct_key: None,
        members: vec![
            ("a".into(), MemberRole::Admin),
            ("b".into(), MemberRole::Member),
        ],
    };
    let (group, _) = p.groups.create(group).await.unwrap();
    let older = p.groups.create(pair("a", "z")).await.unwrap().0;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let added = p
        .groups
        .add_members(&group.id, &["b".into(), "c".into()])
        .await
        .unwrap();
    assert_eq!(added, vec!["c".to_string()], "already-members are skipped");
    let members: Vec<String> = p
        .groups
        .members(&group.id)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.user_id)
        .collect();
    assert_eq!(members, vec!["a", "b", "c"], "in joining order");
    let both: Vec<(String, String)> = p
        .groups
        .members_of(&[group.id.clone(), older.id.clone(), "nonexistent".into()])
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.group_id, m.user_id))
        .collect();
    let of = |g: &str| -> Vec<&str> {
        both.iter()
            .filter(|(id, _)| id == g)
            .map(|(_, u)| u.as_str())
            .collect()
    };
    assert_eq!(
        of(&group.id),
        vec!["a", "b", "c"],
        "one query, joining order"
    );
    assert_eq!(of(&older.id), vec!["a", "z"]);
    assert_eq!(both.len(), 5);
    let of_z: Vec<String> = p
        .groups
        .memberships("z", &[group.id.clone(), older.id.clone()])
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.group_id)
        .collect();
    assert_eq!(of_z, vec![older.id.clone()], "only the groups z is in");
    // The group just changed: it comes first.
    let of_a: Vec<String> = p
        .groups
        .groups_of("a")
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.id)
        .collect();
    assert_eq!(of_a, vec![group.id.clone(), older.id]);
    p.groups
        .set_role(&group.id, "c", MemberRole::Admin)
        .await
        .unwrap();
    let c = p.groups.membership(&group.id, "c").await.unwrap().unwrap();
    assert_eq!(c.role, MemberRole::Admin);
    assert_eq!(p.groups.group_count("b").await.unwrap(), 1);
    assert_eq!(p.groups.group_count("nobody").await.unwrap(), 0);
    assert!(p.groups.remove_member(&group.id, "b").await.unwrap());
    assert!(!p.groups.remove_member(&group.id, "b").await.unwrap());
    assert_eq!(p.groups.group_count("b").await.unwrap(), 0);
    let renamed = p
        .groups
        .update(
            &group.id,
            Some("Crew".into()),
            Some(Some("/assets/i".into())),
        )
        .await
        .unwrap();
    assert_eq!(renamed.name.as_deref(), Some("Crew"));
    assert_eq!(renamed.image_url.as_deref(), Some("/assets/i"));
    let cleared = p.groups.update(&group.id, None, Some(None)).await.unwrap();
    assert_eq!(
        (cleared.name.as_deref(), cleared.image_url),
        (Some("Crew"), None)
    );
    p.groups.delete(&group.id).await.unwrap();
    assert!(p.groups.get(&group.id).await.unwrap().is_none());
    assert!(p.groups.membership(&group.id, "a").await.unwrap().is_none());
}

fn message(group: &str, sender: &str, client_id: &str, text: &str) -> NewMessage {
    NewMessage {
        group_id: group.into(),
        sender_id: sender.into(),
        client_message_id: client_id.into(),
        content: Some(text.into()),
        attachment: None,
    }
}

async fn sequences_are_gap_free_and_sends_idempotent(p: Ports) {
    let group = unique("g");
    let sends = (0..20).map(|i| {
        let messages = p.messages.clone();
        let group = group.clone();
        async move {
            // Concurrent writers to one group may be asked to retry (`unavailable`), as the
            // message role's consumer does; they never get a gap or a repeat.
            loop {
                let attempt = messages
                    .append(message(
                        &group,
                        &format!("s{}", i % 3),
                        &format!("c{i}"),
                        "hi",
                    ))
                    .await;
                match attempt {
                    Err(e) if e.code == ErrorCode::Unavailable => continue,
                    other => break other.unwrap(),
                }
            }
        }
    });
    let stored = futures_util::future::join_all(sends).await;
    let mut seqs: Vec<i64> = stored.iter().map(|(m, _)| m.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=20).collect::<Vec<_>>(), "gap-free, no repeats");
    let (again, created) = p
        .messages
        .append(message(&group, "s0", "c0", "different text"))
        .await
        .unwrap();
    assert!(!created, "a retried send is absorbed");
    assert_eq!(again.id, stored[0].0.id);
    assert_eq!(again.content.as_deref(), Some("hi"));
    // Another group numbers from 1.
    let (other, _) = p
        .messages
        .append(message(&unique("g"), "s0", "c-other", "x"))
        .await
        .unwrap();
    assert_eq!(other.seq, 1);
    let attached = NewMessage {
        attachment: Some(Attachment {
            filename: "a.png".into(),
            url: "/assets/665f1f77bcf86cd799439011".into(),
            content_type: "image/png".into(),
            size: 9,
        }),
        content: None,
        ..message(&group, "s1", "c-att", "")
    };
    let (with_file, _) = p.messages.append(attached).await.unwrap();
    let read = p.messages.get(&with_file.id).await.unwrap().unwrap();
    assert_eq!(read.attachment.unwrap().size, 9);
    assert_eq!(read.content, None);
}

/// The message role's lanes: many groups send at once, each group's sends one after another
/// (the stores take what waits together in one write). Each group is numbered 1, 2, 3… in the
/// order it sent, and a send retried while its first attempt is still under way (in the same
/// write, perhaps) is stored once and answered with that message both times.
async fn many_groups_sending_at_once_each_keep_their_order(p: Ports) {
    let lanes = (0..30).map(|g| {
        let messages = p.messages.clone();
        async move {
            let group = unique("g");
            let mut stored = Vec::new();
            for i in 0..5 {
                let send = || messages.append(message(&group, "s", &format!("{g}-{i}"), "hi"));
                if i == 2 {
                    let (first, retry) = futures_util::join!(send(), send());
                    let (first, retry) = (first.unwrap(), retry.unwrap());
                    assert_eq!(first.0.id, retry.0.id, "one message for both attempts");
                    assert_eq!(
                        [first.1, retry.1]
                            .iter()
                            .filter(|created| **created)
                            .count(),
                        1,
                        "created once"
                    );
                    stored.push(first.0);
                } else {
                    stored.push(send().await.unwrap().0);
                }
            }
            let seqs: Vec<i64> = stored.iter().map(|m| m.seq).collect();
            assert_eq!(seqs, [1, 2, 3, 4, 5], "group {g} in the order it sent");
            let ids: Vec<&str> = stored
                .iter()
                .map(|m| m.client_message_id.as_str())
                .collect();
            assert_eq!(ids, (0..5).map(|i| format!("{g}-{i}")).collect::<Vec<_>>());
        }
    });
    futures_util::future::join_all(lanes).await;
}

async fn history_cursors_tombstones_unread_and_search(p: Ports) {
    let (group, other) = (unique("g"), unique("g"));
    for (i, text) in ["Hello", "Grüße aus KÖLN", "50% off", "hello again", "bye"]
        .iter()
        .enumerate()
    {
        let sender = if i % 2 == 0 { "a" } else { "b" };
        p.messages
            .append(message(&group, sender, &format!("c{i}"), text))
            .await
            .unwrap();
    }
    p.messages
        .append(message(&other, "a", "o1", "hello elsewhere"))
        .await
        .unwrap();
    let seqs = |v: Vec<MessageView>| v.into_iter().map(|m| m.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(p.messages.before(&group, None, 2).await.unwrap()),
        vec![5, 4]
    );
    assert_eq!(
        seqs(p.messages.before(&group, Some(4), 10).await.unwrap()),
        vec![3, 2, 1]
    );
    assert_eq!(
        seqs(p.messages.after(&group, 2, 2).await.unwrap()),
        vec![3, 4]
    );
    assert_eq!(
        p.messages.unread(&group, "a", 1).await.unwrap(),
        2,
        "b's 2 and 4"
    );
    let second = p.messages.after(&group, 1, 1).await.unwrap().remove(0);
    let gone = p.messages.tombstone(&second.id).await.unwrap().unwrap();
    assert!(gone.deleted && gone.content.is_none());
    assert_eq!(gone.seq, 2, "keeps its place");
    assert_eq!(p.messages.unread(&group, "a", 1).await.unwrap(), 1);
    // Read positions move forward only.
    let at = Utc::now();
    let mark = |receipt, user: &'static str, seq| {
        let (messages, group) = (p.messages.clone(), group.clone());
        async move { messages.mark(receipt, &group, user, seq, at).await.unwrap() }
    };
    assert_eq!(mark(Receipt::Seen, "a", 3).await, 3);
    assert_eq!(
        mark(Receipt::Seen, "a", 1).await,
        3,
        "never backwards: the stored position"
    );
    assert_eq!(mark(Receipt::Seen, "a", 3).await, 3);
    assert_eq!(mark(Receipt::Seen, "b", 1).await, 1);
    // Delivered positions are kept apart from the seen ones, and move forward only too.
    assert_eq!(mark(Receipt::Delivered, "b", 4).await, 4);
    assert_eq!(mark(Receipt::Delivered, "b", 2).await, 4);
    assert_eq!(mark(Receipt::Delivered, "c", 5).await, 5);
    let positions = |user: &str, delivered_seq, seen_seq| ReceiptPositions {
        user_id: user.to_string(),
        delivered_seq,
        seen_seq,
    };
    assert_eq!(
        p.messages.receipts(&group).await.unwrap(),
        vec![
            positions("a", 0, 3),
            positions("b", 4, 1),
            positions("c", 5, 0)
        ],
        "one entry per user, by user id"
    );
    assert_eq!(p.messages.receipts(&other).await.unwrap(), vec![]);
    // The same in one call for a list of groups, in the order asked, from each read position.
    let silent = unique("g");
    let activity = p
        .messages
        .activity("a", &[other.clone(), group.clone(), silent.clone()])
        .await
        .unwrap();
    let summary: Vec<(&str, Option<i64>, u64, i64)> = activity
        .iter()
        .map(|a| {
            (
                a.group_id.as_str(),
                a.last_message.as_ref().map(|m| m.seq),
                a.unread,
                a.last_seen_seq,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (other.as_str(), Some(1), 0, 0),
            (group.as_str(), Some(5), 1, 3),
            (silent.as_str(), None, 0, 0)
        ]
    );
    // Other readers of the same group: never marked (the deleted message is not counted),
    // behind, read to the end, and a position past the end (nothing unread, the last message
    // still shown).
    assert_eq!(mark(Receipt::Seen, "d", 5).await, 5);
    assert_eq!(mark(Receipt::Seen, "e", 9).await, 9);
    for (user, unread, seen) in [("c", 4, 0), ("b", 2, 1), ("d", 0, 5), ("e", 0, 9)] {
        let one = p
            .messages
            .activity(user, std::slice::from_ref(&group))
            .await
            .unwrap()
            .remove(0);
        assert_eq!(
            (
                one.last_message.map(|m| m.seq),
                one.unread,
                one.last_seen_seq
            ),
            (Some(5), unread, seen),
            "{user}"
        );
    }
    assert!(p
        .messages
        .tombstone("000000000000000000000000")
        .await
        .unwrap()
        .is_none());

    let search = |groups: Vec<String>, text: &'static str| {
        let messages = p.messages.clone();
        async move {
            messages
                .search(&groups, text, 10)
                .await
                .unwrap()
                .into_iter()
                .map(|m| m.content.unwrap_or_default())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        search(vec![group.clone()], "HELLO").await,
        vec!["hello again", "Hello"],
        "case-insensitive, newest first"
    );
    assert_eq!(
        search(vec![group.clone(), other.clone()], "hello")
            .await
            .len(),
        3
    );
    assert!(
        search(vec![group.clone()], "köln").await.is_empty(),
        "deleted messages are not found"
    );
    assert_eq!(search(vec![group.clone()], "50%").await, vec!["50% off"]);
    assert!(
        search(vec![group.clone()], ".*").await.is_empty(),
        "no pattern syntax"
    );
    assert!(search(vec![], "hello").await.is_empty());
}

async fn an_edit_replaces_the_text_of_a_message_not_deleted(p: Ports) {
    let group = unique("g");
    let (sent, _) = p
        .messages
        .append(message(&group, "a", "e1", "teh plan"))
        .await
        .unwrap();
    assert_eq!(sent.edited_at, None);
    let at = Utc::now();
    let edited = p
        .messages
        .edit(&sent.id, "the plan", at)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(edited.content.as_deref(), Some("the plan"));
    assert_eq!(
        edited.edited_at.map(|t| t.timestamp_millis()),
        Some(at.timestamp_millis())
    );
    assert_eq!((edited.seq, edited.created_at), (sent.seq, sent.created_at));
    // As every read returns it, and found by its new text only.
    let read = p.messages.get(&sent.id).await.unwrap().unwrap();
    assert_eq!(read, edited);
    let in_history = p.messages.after(&group, 0, 10).await.unwrap();
    assert_eq!(in_history, vec![edited.clone()]);
    let found = p
        .messages
        .search(std::slice::from_ref(&group), "plan", 10)
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert!(p
        .messages
        .search(std::slice::from_ref(&group), "teh", 10)
        .await
        .unwrap()
        .is_empty());
    // A deleted message stays a tombstone; an unknown one is None.
    p.messages.tombstone(&sent.id).await.unwrap();
    let still = p
        .messages
        .edit(&sent.id, "revived", Utc::now())
        .await
        .unwrap()
        .unwrap();
    assert!(still.deleted && still.content.is_none(), "{still:?}");
    assert!(p
        .messages
        .edit("000000000000000000000000", "x", Utc::now())
        .await
        .unwrap()
        .is_none());
}

fn png(len: usize, seed: u8) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    bytes[..8].copy_from_slice(b"\x89PNG\r\n\x1a\n");
    bytes
}

fn chunk(owner: &str, name: &str, index: u32, total: u32, bytes: &[u8]) -> ChunkUpload {
    ChunkUpload {
        owner_id: owner.into(),
        filename: name.into(),
        index,
        total_chunks: total,
        bytes: Bytes::copy_from_slice(bytes),
    }
}

async fn read_all(
    assets: &dyn AssetStore,
    asset: &chat_domain::assets::AssetRecord,
    range: ByteRange,
) -> Vec<u8> {
    let parts: Vec<Bytes> = assets
        .read(asset, range)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    parts.concat()
}

async fn uploads_resume_refuse_other_bytes_and_assemble(p: Ports) {
    let file = png(700_000, 1);
    let parts: Vec<&[u8]> = file.chunks(300_000).collect();
    let progress = p
        .assets
        .put_chunk(chunk("ada", "f.png", 2, 3, parts[2]))
        .await
        .unwrap();
    assert_eq!((progress.total_chunks, progress.received_chunks), (3, 1));
    let status = p.assets.status("ada", "f.png").await.unwrap().unwrap();
    assert_eq!(
        (status.received.clone(), status.missing()),
        (vec![2], vec![0, 1])
    );
    p.assets
        .put_chunk(chunk("ada", "f.png", 0, 3, parts[0]))
        .await
        .unwrap();
    // The same bytes again are fine (and not counted twice); other bytes are a conflict; so is
    // another total.
    let again = p
        .assets
        .put_chunk(chunk("ada", "f.png", 0, 3, parts[0]))
        .await
        .unwrap();
    assert_eq!(again.received_chunks, 2);
    let err = p
        .assets
        .put_chunk(chunk("ada", "f.png", 0, 3, &png(300_000, 9)))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict);
    let err = p
        .assets
        .put_chunk(chunk("ada", "f.png", 1, 4, parts[1]))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict);
    // Another user's upload of the same name is separate.
    p.assets
        .put_chunk(chunk("bob", "f.png", 0, 1, &png(10, 2)))
        .await
        .unwrap();
    let err = p.assets.complete("ada", "f.png", 3).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Validation);
    assert!(err.message.contains('1'), "{}", err.message);
    let status = p.assets.status("ada", "f.png").await.unwrap().unwrap();
    assert_eq!(status.received, vec![0, 2]);
    // What Ada holds: one upload in progress, its bytes pending, nothing stored yet.
    let usage = p.assets.usage("ada").await.unwrap();
    assert_eq!(
        (usage.uploads, usage.pending_bytes, usage.stored_bytes),
        (1, status.received_bytes, 0)
    );
    p.assets
        .put_chunk(chunk("ada", "f.png", 1, 3, parts[1]))
        .await
        .unwrap();
    let asset = p.assets.complete("ada", "f.png", 3).await.unwrap();
    let usage = p.assets.usage("ada").await.unwrap();
    assert_eq!(
        (usage.uploads, usage.pending_bytes, usage.stored_bytes),
        (0, 0, 700_000),
        "completed: stored, no longer pending"
    );
    assert_eq!(
        (asset.size, asset.content_type.as_str()),
        (700_000, "image/png")
    );
    assert_eq!(asset.sha256, chat_domain::assets::sha256_hex(&file));
    assert_eq!(
        p.assets.complete("ada", "f.png", 3).await.unwrap().id,
        asset.id,
        "completing again"
    );
    assert!(p.assets.status("ada", "f.png").await.unwrap().is_none());
    assert_eq!(
        read_all(
            p.assets.as_ref(),
            &asset,
            ByteRange::whole(700_000).unwrap()
        )
        .await,
        file
    );
    // The same name can be uploaded again, as a new file.
    p.assets
        .put_chunk(chunk("ada", "f.png", 0, 1, &png(20, 3)))
        .await
        .unwrap();
    let second = p.assets.complete("ada", "f.png", 1).await.unwrap();
    assert_ne!(second.id, asset.id);
    assert!(p.assets.abandon("bob", "f.png").await.unwrap());
    assert!(!p.assets.abandon("bob", "f.png").await.unwrap());
    assert_eq!(
        p.assets.complete("bob", "f.png", 1).await.unwrap_err().code,
        ErrorCode::NotFound
    );
}

async fn stored_files_read_by_range_and_carry_grants(p: Ports) {
    let file = png(600_000, 4);
    let parts: Vec<&[u8]> = file.chunks(300_000).collect();
    for (i, part) in parts.iter().enumerate() {
        p.assets
            .put_chunk(chunk("ada", "r.png", i as u32, 2, part))
            .await
            .unwrap();
    }
    let asset = p.assets.complete("ada", "r.png", 2).await.unwrap();
    for (start, end) in [
        (0, 9),
        (261_000, 262_000),
        (100, 599_999),
        (599_999, 599_999),
    ] {
        let got = read_all(p.assets.as_ref(), &asset, ByteRange { start, end }).await;
        assert_eq!(got, &file[start as usize..=end as usize], "{start}-{end}");
    }
    assert!(!asset.public && asset.groups.is_empty());
    p.assets.grant_group(&asset.id, "g1").await.unwrap();
    p.assets.grant_group(&asset.id, "g1").await.unwrap();
    p.assets.make_public(&asset.id).await.unwrap();
    let read = p.assets.get(&asset.id).await.unwrap().unwrap();
    assert_eq!(read.groups, vec!["g1".to_string()]);
    assert!(read.public);
    assert!(p
        .assets
        .get("000000000000000000000000")
        .await
        .unwrap()
        .is_none());
    assert!(p.assets.get("../x").await.unwrap().is_none());
}

async fn idle_uploads_expire_and_limits_hold(p: Ports) {
    let file = png(900_000, 5);
    let parts: Vec<&[u8]> = file.chunks(300_000).collect();
    p.assets
        .put_chunk(chunk("ada", "big.png", 0, 4, parts[0]))
        .await
        .unwrap();
    p.assets
        .put_chunk(chunk("ada", "big.png", 1, 4, parts[1]))
        .await
        .unwrap();
    p.assets
        .put_chunk(chunk("ada", "big.png", 2, 4, parts[2]))
        .await
        .unwrap();
    // The fourth chunk crosses the 1 MB limit: refused, and the upload is dropped.
    let err = p
        .assets
        .put_chunk(chunk("ada", "big.png", 3, 4, &png(200_000, 6)))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::PayloadTooLarge);
    assert!(p.assets.status("ada", "big.png").await.unwrap().is_none());
    p.assets
        .put_chunk(chunk("ada", "idle.png", 0, 2, &png(10, 7)))
        .await
        .unwrap();
    assert_eq!(p.assets.expire(Utc::now()).await.unwrap(), 0);
    let later = Utc::now() + chrono::Duration::seconds(61);
    assert_eq!(p.assets.expire(later).await.unwrap(), 1);
    assert!(p.assets.status("ada", "idle.png").await.unwrap().is_none());
}

/// MongoDB only (SQLite creates a conversation in one transaction): a direct pair claimed by a
/// creator that died before writing the conversation is finished by the next creator, without
/// waiting; a claim in the older form (the group's id only) is released and claimed again.
#[tokio::test]
async fn on_mongodb_a_creator_that_died_mid_way_is_finished_by_the_next() {
    use mongodb::bson::{doc, oid::ObjectId, DateTime, Document};
    let db = database().await;
    let groups = mongo::MongoGroupStore::new(&db);
    let pairs = db.collection::<Document>("direct_conversations");
    let id = ObjectId::new();
    let now = DateTime::now();
    let members = vec![
        doc! {"userId": "u1", "role": "admin"},
        doc! {"userId": "u2", "role": "member"},
    ];
    let group = doc! {"_id": id, "createdAt": now, "updatedAt": now, "directKey": "u1:u2"};
    pairs
        .insert_one(doc! {"_id": "u1:u2", "group": group, "members": members})
        .await
        .unwrap();
    let (found, created) = groups.create(pair("u1", "u2")).await.unwrap();
    assert!(!created, "the claim's conversation, not a new one");
    assert_eq!(found.id, id.to_hex());
    let members = groups.members(&found.id).await.unwrap();
    let roles: Vec<(&str, MemberRole)> = members
        .iter()
        .map(|m| (m.user_id.as_str(), m.role))
        .collect();
    assert_eq!(
        roles,
        [("u1", MemberRole::Admin), ("u2", MemberRole::Member)]
    );

    pairs
        .insert_one(doc! {"_id": "u3:u4", "groupId": ObjectId::new()})
        .await
        .unwrap();
    let (fresh, created) = groups.create(pair("u3", "u4")).await.unwrap();
    assert!(created, "an orphaned old-form claim is released");
    assert_eq!(groups.members(&fresh.id).await.unwrap().len(), 2);
    db.drop().await.unwrap();
}

/// MongoDB only: read positions kept on the memberships by earlier versions are carried over to
/// the message role's `read_positions` once, when the indexes are ensured (every start and
/// `chat-server migrate`).
#[tokio::test]
async fn on_mongodb_read_positions_kept_on_memberships_are_carried_over() {
    use mongodb::bson::{doc, DateTime, Document};
    let db = empty_database().await;
    let now = DateTime::now();
    db.collection::<Document>("group_members")
        .insert_many([
            doc! {"groupId": "g", "userId": "ada", "role": "admin", "joinedAt": now, "lastSeenSeq": 7_i64, "lastSeenAt": now},
            doc! {"groupId": "g", "userId": "bob", "role": "member", "joinedAt": now},
        ])
        .await
        .unwrap();
    mongo::ensure_indexes(&db).await.unwrap();
    let stores = mongo::stores(&db, limits());
    let seen = |user: &'static str| {
        let messages = stores.messages.clone();
        async move { messages.activity(user, &["g".to_string()]).await.unwrap()[0].last_seen_seq }
    };
    assert_eq!(seen("ada").await, 7);
    assert_eq!(seen("bob").await, 0);
    // Once only: a newer position survives the next start.
    assert_eq!(
        stores
            .messages
            .mark(Receipt::Seen, "g", "ada", 9, Utc::now())
            .await
            .unwrap(),
        9
    );
    mongo::ensure_indexes(&db).await.unwrap();
    assert_eq!(seen("ada").await, 9);
    db.drop().await.unwrap();
}

async fn an_ended_session_stays_ended_until_its_time_is_up(p: Ports) {
    let (session, brief) = (unique("family"), unique("brief"));
    assert!(!p.revocations.is_revoked(&session).await.unwrap());
    p.revocations
        .revoke(&session, Duration::from_secs(600))
        .await
        .unwrap();
    assert!(p.revocations.is_revoked(&session).await.unwrap());
    assert!(!p.revocations.is_revoked(&unique("other")).await.unwrap());
    // Checked only once its time is surely up: a slow machine cannot make this fail.
    p.revocations
        .revoke(&brief, Duration::from_secs(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(!p.revocations.is_revoked(&brief).await.unwrap(), "expired");
    assert!(p.revocations.is_revoked(&session).await.unwrap());
}
