//! The Redis adapters: connection with start-up retry, the readiness probe, rate limits,
//! presence, ended sessions, and the facts relay over pub/sub ([`RedisRelay`]).

use chat_ports::startup::StartupError;
use std::time::Duration;

mod relay;
pub use relay::RedisRelay;

pub use redis::aio::ConnectionManager;

use chat_domain::config::Secret;
use chat_domain::Error;
use chat_ports::health::Probe;
use chat_ports::store::{Presence, RateLimiter, Revocations};

/// `.db()?` on a Redis result: its error as the port's (logged, reported as unavailable).
trait Db<T> {
    fn db(self) -> Result<T, Error>;
}

impl<T> Db<T> for redis::RedisResult<T> {
    fn db(self) -> Result<T, Error> {
        self.map_err(|e| Error::dependency("redis", e))
    }
}

/// A client of `url` (`REDIS_URL`), refused without echoing it when it is not a Redis URL.
fn client(url: &Secret) -> Result<redis::Client, StartupError> {
    redis::Client::open(url.expose()).map_err(|_| StartupError::InvalidSetting {
        variable: "REDIS_URL",
        why: "not a Redis URL".into(),
    })
}

/// Connects, retrying until `timeout`; the returned manager reconnects by itself afterwards.
pub async fn connect(url: &Secret, timeout: Duration) -> Result<ConnectionManager, StartupError> {
    let client = client(url)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Duration::from_secs(2))
        .set_response_timeout(Duration::from_secs(2));
    chat_ports::startup::wait_for("redis", &url.redacted_uri(), timeout, || {
        ConnectionManager::new_with_config(client.clone(), config.clone())
    })
    .await
}

/// Readiness: `PING`.
pub struct RedisProbe(pub ConnectionManager);

#[async_trait::async_trait]
impl Probe for RedisProbe {
    fn name(&self) -> &'static str {
        "redis"
    }
    async fn check(&self) -> Result<(), String> {
        let mut conn = self.0.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// Fixed-window counters: `INCR` plus `EXPIRE NX`, in one round trip. Keys are prefixed with the
/// namespace.
pub struct RedisRateLimiter {
    conn: ConnectionManager,
    prefix: String,
}

impl RedisRateLimiter {
    pub fn new(conn: ConnectionManager, namespace: &str) -> Self {
        RedisRateLimiter {
            conn,
            prefix: format!("{namespace}:ratelimit:"),
        }
    }
}

#[async_trait::async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn hit(&self, key: &str, limit: u32, window: Duration) -> Result<Option<u64>, Error> {
        let key = format!("{}{key}", self.prefix);
        let mut conn = self.conn.clone();
        let (count, ttl): (u64, i64) = redis::pipe()
            .cmd("INCR")
            .arg(&key)
            .cmd("EXPIRE")
            .arg(&key)
            .arg(window.as_secs().max(1))
            .arg("NX")
            .ignore()
            .cmd("TTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .db()?;
        if count > u64::from(limit) {
            Ok(Some(ttl.max(1) as u64))
        } else {
            Ok(None)
        }
    }
}

/// Ended sessions in Redis: one key per session, expiring with its last access token.
pub struct RedisRevocations {
    conn: ConnectionManager,
    prefix: String,
}

impl RedisRevocations {
    pub fn new(conn: ConnectionManager, namespace: &str) -> Self {
        RedisRevocations {
            conn,
            prefix: format!("{namespace}:revoked:"),
        }
    }
}

#[async_trait::async_trait]
impl Revocations for RedisRevocations {
    async fn revoke(&self, session: &str, ttl: Duration) -> Result<(), Error> {
        let mut conn = self.conn.clone();
        redis::cmd("SET")
            .arg(format!("{}{session}", self.prefix))
            .arg(1)
            .arg("EX")
            .arg(ttl.as_secs().max(1))
            .query_async::<()>(&mut conn)
            .await
            .db()
    }

    async fn is_revoked(&self, session: &str) -> Result<bool, Error> {
        let mut conn = self.conn.clone();
        redis::cmd("EXISTS")
            .arg(format!("{}{session}", self.prefix))
            .query_async(&mut conn)
            .await
            .db()
    }
}

/// Socket counts in Redis: `INCR` + `EXPIRE`, `DECR`, and `EXPIRE` as the heartbeat.
pub struct RedisPresence {
    conn: ConnectionManager,
    prefix: String,
}

impl RedisPresence {
    pub fn new(conn: ConnectionManager, namespace: &str) -> Self {
        RedisPresence {
            conn,
            prefix: format!("{namespace}:presence:"),
        }
    }
}

#[async_trait::async_trait]
impl Presence for RedisPresence {
    async fn connected(&self, user: &str, ttl: Duration) -> Result<i64, Error> {
        let key = format!("{}{user}", self.prefix);
        let mut conn = self.conn.clone();
        let (count,): (i64,) = redis::pipe()
            .cmd("INCR")
            .arg(&key)
            .cmd("EXPIRE")
            .arg(&key)
            .arg(ttl.as_secs().max(1))
            .ignore()
            .query_async(&mut conn)
            .await
            .db()?;
        Ok(count)
    }

    async fn disconnected(&self, user: &str) -> Result<i64, Error> {
        let key = format!("{}{user}", self.prefix);
        let mut conn = self.conn.clone();
        let count: i64 = redis::cmd("DECR")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .db()?;
        if count <= 0 {
            let _: () = redis::cmd("DEL")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .db()?;
        }
        Ok(count)
    }

    async fn refresh(&self, user: &str, ttl: Duration) -> Result<bool, Error> {
        let mut conn = self.conn.clone();
        let refreshed: i64 = redis::cmd("EXPIRE")
            .arg(format!("{}{user}", self.prefix))
            .arg(ttl.as_secs().max(1))
            .query_async(&mut conn)
            .await
            .db()?;
        Ok(refreshed == 1)
    }

    async fn online(&self, users: &[String]) -> Result<Vec<bool>, Error> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = users
            .iter()
            .map(|u| format!("{}{u}", self.prefix))
            .collect();
        let mut conn = self.conn.clone();
        let counts: Vec<Option<i64>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .db()?;
        Ok(counts.into_iter().map(|c| c.unwrap_or(0) > 0).collect())
    }
}
