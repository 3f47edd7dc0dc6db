//! In-memory adapters of the Redis ports, for `chat-server all` without Redis: rate limits and
//! presence. They hold only what Redis would hold with a TTL, so nothing durable is lost when
//! the process stops. One process is the whole deployment in that mode, so "across replicas"
//! means "in this process".

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chat_domain::key::Key;
use chat_domain::Error;
use chat_ports::store::{Presence, RateLimiter, Revocations};

/// Fixed-window counters, as `chat_redis::RedisRateLimiter`.
#[derive(Default)]
pub struct MemoryRateLimiter {
    windows: Mutex<HashMap<Key, (u64, Instant)>>,
}

#[async_trait::async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn hit(&self, key: &str, limit: u32, window: Duration) -> Result<Option<u64>, Error> {
        let now = Instant::now();
        let mut windows = self.windows.lock().expect("limiter poisoned");
        if windows.len() > 10_000 {
            windows.retain(|_, (_, ends)| *ends > now);
        }
        let entry = windows
            .entry(Key::from(key))
            .or_insert((0, now + window.max(Duration::from_secs(1))));
        if entry.1 <= now {
            *entry = (0, now + window.max(Duration::from_secs(1)));
        }
        entry.0 += 1;
        if entry.0 > u64::from(limit) {
            Ok(Some(entry.1.duration_since(now).as_secs().max(1)))
        } else {
            Ok(None)
        }
    }
}

/// Ended sessions, each until its time is up, as `chat_redis::RedisRevocations`.
#[derive(Default)]
pub struct MemoryRevocations {
    ended: Mutex<HashMap<String, Instant>>,
}

#[async_trait::async_trait]
impl Revocations for MemoryRevocations {
    async fn revoke(&self, session: &str, ttl: Duration) -> Result<(), Error> {
        let now = Instant::now();
        let mut ended = self.ended.lock().expect("revocations poisoned");
        ended.retain(|_, until| *until > now);
        ended.insert(session.to_string(), now + ttl);
        Ok(())
    }

    async fn is_revoked(&self, session: &str) -> Result<bool, Error> {
        let ended = self.ended.lock().expect("revocations poisoned");
        Ok(ended
            .get(session)
            .is_some_and(|until| *until > Instant::now()))
    }
}

/// Socket counts with an expiry, as `chat_redis::RedisPresence`.
#[derive(Default)]
pub struct MemoryPresence {
    counts: Mutex<HashMap<String, (i64, Instant)>>,
}

impl MemoryPresence {
    fn live<'a>(
        counts: &'a mut HashMap<String, (i64, Instant)>,
        user: &str,
    ) -> Option<&'a mut (i64, Instant)> {
        let now = Instant::now();
        if counts.get(user).is_some_and(|(_, expires)| *expires <= now) {
            counts.remove(user);
        }
        counts.get_mut(user)
    }
}

#[async_trait::async_trait]
impl Presence for MemoryPresence {
    async fn connected(&self, user: &str, ttl: Duration) -> Result<i64, Error> {
        let mut counts = self.counts.lock().expect("presence poisoned");
        let expires = Instant::now() + ttl;
        let count = match Self::live(&mut counts, user) {
            Some(entry) => {
                *entry = (entry.0 + 1, expires);
                entry.0
            }
            None => {
                counts.insert(user.to_string(), (1, expires));
                1
            }
        };
        Ok(count)
    }

    async fn disconnected(&self, user: &str) -> Result<i64, Error> {
        let mut counts = self.counts.lock().expect("presence poisoned");
        let count = match Self::live(&mut counts, user) {
            Some(entry) => {
                entry.0 -= 1;
                entry.0
            }
            None => -1,
        };
        if count <= 0 {
            counts.remove(user);
        }
        Ok(count)
    }

    async fn refresh(&self, user: &str, ttl: Duration) -> Result<bool, Error> {
        let mut counts = self.counts.lock().expect("presence poisoned");
        Ok(match Self::live(&mut counts, user) {
            Some(entry) => {
                entry.1 = Instant::now() + ttl;
                true
            }
            None => false,
        })
    }

    async fn online(&self, users: &[String]) -> Result<Vec<bool>, Error> {
        let mut counts = self.counts.lock().expect("presence poisoned");
        Ok(users
            .iter()
            .map(|u| Self::live(&mut counts, u).is_some_and(|entry| entry.0 > 0))
            .collect())
    }
}
