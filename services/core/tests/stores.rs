//! The MongoDB and Redis adapters against the real servers started by `scripts/infra.sh`
//! (SecantusDB for MongoDB). Each test uses its own database or key namespace.

use std::sync::Arc;
use std::time::Duration;

use chat_core::config::Secret;
use chat_core::domain::{Email, PageRequest};
use chat_core::mongo::{self, MongoRefreshTokenStore, MongoSigningKeyStore, MongoUserStore};
use chat_core::redis::RedisRateLimiter;
use chat_core::store::*;
use chat_core::ErrorCode;
use chrono::Utc;
use mongodb::Database;

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

async fn database() -> Database {
    let uri = std::env::var("MONGODB_URI").unwrap_or_else(|_| "mongodb://127.0.0.1:27017".into());
    let db = mongo::connect(
        &Secret::new(uri),
        &unique("test_stores"),
        "stores-test",
        Duration::from_secs(10),
    )
    .await
    .expect("MongoDB is running (scripts/infra.sh up)");
    mongo::ensure_indexes(&db).await.unwrap();
    db
}

fn new_user(first: &str, last: &str, email: &str) -> NewUser {
    NewUser {
        first_name: first.into(),
        last_name: last.into(),
        email: Email::parse(email).unwrap(),
        password_hash: "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g".into(),
    }
}

#[tokio::test]
async fn index_creation_is_idempotent() {
    let db = database().await;
    let first = mongo::ensure_indexes(&db).await.unwrap();
    assert_eq!(mongo::ensure_indexes(&db).await.unwrap(), first);
}

#[tokio::test]
async fn a_registered_email_cannot_be_registered_again() {
    let users = MongoUserStore::new(&database().await);
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

#[tokio::test]
async fn listing_pages_and_searches_case_insensitively() {
    let users = MongoUserStore::new(&database().await);
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

#[tokio::test]
async fn of_two_concurrent_spends_exactly_one_is_fresh() {
    let tokens = Arc::new(MongoRefreshTokenStore::new(&database().await));
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

#[tokio::test]
async fn revoking_a_family_spends_all_its_tokens() {
    let tokens = MongoRefreshTokenStore::new(&database().await);
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

#[tokio::test]
async fn every_replica_gets_the_same_development_key() {
    let keys = MongoSigningKeyStore::new(&database().await);
    let first = keys.development_key(b"candidate-one").await.unwrap();
    let second = keys.development_key(b"candidate-two").await.unwrap();
    assert_eq!(first, b"candidate-one");
    assert_eq!(second, first);
}

#[tokio::test]
async fn the_rate_limiter_allows_the_limit_then_says_when_to_retry() {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let conn = chat_core::redis::connect(&Secret::new(url), Duration::from_secs(5))
        .await
        .expect("Redis is running");
    let limiter = RedisRateLimiter::new(conn, &unique("t"));
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
