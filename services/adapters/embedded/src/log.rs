//! The in-process event log of `chat-server all`: [`LocalLog`] implements [`EventTransport`]
//! with Kafka's semantics in memory. One ordered log per topic; like Kafka's consumers, a
//! consumer group handles several keys at once, each key's records in order
//! ([`handle_in_lanes`]), and commits the offset below which every record is handled; tails
//! start at the end. Records that every consumer
//! group has committed are trimmed once a topic holds more than [`LocalLog::RETAIN`] of them.
//! The log lives in memory: what it loses on a crash is what no client was told was done
//! (acknowledgements wait for the stores).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use chat_domain::Error;
use chat_ports::events::{
    handle_in_lanes, key_hash, EventTransport, RawHandler, RawRecord, StartAt,
};
use chat_ports::health::Gate;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The in-process event log. Cheap to share (`Arc`).
#[derive(Default)]
pub struct LocalLog {
    topics: Mutex<HashMap<String, Arc<LocalTopic>>>,
}

/// A record as kept: the hash of its key and its payload.
type Kept = (u64, Arc<[u8]>);

struct LocalTopic {
    /// (offset of the first record kept, the records).
    records: Mutex<(u64, VecDeque<Kept>)>,
    /// The offset after the last record; bumped on every publish.
    end: watch::Sender<u64>,
    committed: Mutex<HashMap<String, u64>>,
}

impl LocalLog {
    /// Records kept per topic before committed ones are trimmed.
    pub const RETAIN: usize = 10_000;

    fn topic(&self, name: &str) -> Arc<LocalTopic> {
        self.topics
            .lock()
            .expect("log poisoned")
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(LocalTopic {
                    records: Mutex::new((0, VecDeque::new())),
                    end: watch::channel(0).0,
                    committed: Mutex::default(),
                })
            })
            .clone()
    }
}

impl LocalTopic {
    fn append(&self, key: &str, payload: Vec<u8>) {
        let key = key_hash(key.as_bytes());
        let mut records = self.records.lock().expect("topic poisoned");
        records.1.push_back((key, payload.into()));
        let end = records.0 + records.1.len() as u64;
        if records.1.len() > LocalLog::RETAIN {
            let committed = self.committed.lock().expect("topic poisoned");
            let safe = committed.values().copied().min().unwrap_or(end);
            while records.1.len() > LocalLog::RETAIN && records.0 < safe {
                records.1.pop_front();
                records.0 += 1;
            }
        }
        drop(records);
        self.end.send_replace(end);
    }

    /// The record at `offset` or, if it was trimmed, the first one kept.
    fn at(&self, offset: u64) -> Option<RawRecord> {
        let records = self.records.lock().expect("topic poisoned");
        let offset = offset.max(records.0);
        records
            .1
            .get((offset - records.0) as usize)
            .map(|(key, payload)| RawRecord {
                payload: payload.clone(),
                partition: 0,
                offset: offset as i64,
                key: *key,
            })
    }

    /// Waits for the record at `offset` (or the first kept after it); `None` on shutdown.
    async fn next(&self, offset: u64, shutdown: &CancellationToken) -> Option<RawRecord> {
        let mut end = self.end.subscribe();
        loop {
            let ready = tokio::select! {
                r = end.wait_for(|e| *e > offset) => r.is_ok(),
                _ = shutdown.cancelled() => false,
            };
            if !ready {
                return None;
            }
            if let Some(record) = self.at(offset) {
                return Some(record);
            }
        }
    }

    fn commit(&self, group: &str, offset: u64) {
        self.committed
            .lock()
            .expect("topic poisoned")
            .insert(group.to_string(), offset);
    }
}

#[async_trait::async_trait]
impl EventTransport for LocalLog {
    async fn ensure_topics(&self, topics: &[String]) -> Result<(), Error> {
        for name in topics {
            self.topic(name);
        }
        Ok(())
    }

    async fn publish(&self, topic: &str, key: &str, payload: Vec<u8>) -> Result<(), Error> {
        self.topic(topic).append(key, payload);
        Ok(())
    }

    async fn consume(
        &self,
        topic: &str,
        group: &str,
        start: StartAt,
        shutdown: CancellationToken,
        handler: RawHandler,
    ) -> Result<(), Error> {
        let local = self.topic(topic);
        let start = match start {
            StartAt::Earliest => 0,
            StartAt::Latest => *local.end.borrow(),
        };
        let offset = *local
            .committed
            .lock()
            .expect("topic poisoned")
            .entry(group.to_string())
            .or_insert(start);
        let records = futures_util::stream::unfold(offset, |offset| {
            let (local, shutdown) = (local.clone(), shutdown.clone());
            async move {
                let record = local.next(offset, &shutdown).await?;
                let next = record.offset as u64 + 1;
                Some((record, next))
            }
        });
        handle_in_lanes(records, handler, |_, next| local.commit(group, next as u64)).await;
        Ok(())
    }

    async fn tail(
        &self,
        topic: &str,
        shutdown: CancellationToken,
        attached: Gate,
        handler: RawHandler,
    ) -> Result<(), Error> {
        let local = self.topic(topic);
        let mut offset = *local.end.borrow();
        attached.open();
        while let Some(record) = local.next(offset, &shutdown).await {
            let at = record.offset as u64;
            if at > offset {
                tracing::warn!(%topic, skipped = at - offset, "the tail fell behind the log's retention");
            }
            handler(record).await;
            offset = at + 1;
        }
        Ok(())
    }
}
