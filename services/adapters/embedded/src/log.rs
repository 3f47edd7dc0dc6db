//! The in-process event log of `chat-server all`: [`LocalLog`] implements [`EventTransport`]
//! with Kafka's semantics in memory. One ordered log per topic; like Kafka's consumers, a
//! consumer group handles several keys at once, each key's records in order
//! ([`handle_in_lanes`]), and commits the offset below which every record is handled; tails
//! start at the end. Records that every consumer group has committed and every running tail
//! has handled are trimmed once a topic holds more than [`LocalLog::RETAIN`] of them. No reader
//! holds more than [`LocalLog::MAX_BEHIND`] records: a tail that far behind is skipped ahead,
//! and while a consumer group is, publishing to its topic is refused (`overloaded`).
//! The log lives in memory: what it loses on a crash is what no client was told was done
//! (acknowledgements wait for the stores).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chat_domain::error::RequestError;
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
    /// The offset each consumer group has committed: never trimmed past.
    committed: Mutex<HashMap<String, u64>>,
    /// The next offset each running tail needs, by tail: not trimmed past either, up to
    /// [`LocalLog::MAX_BEHIND`] records.
    tails: Mutex<HashMap<u64, u64>>,
    next_tail: AtomicU64,
    /// Whether publishes are refused because a consumer group is too far behind (logged once
    /// per episode).
    refusing: AtomicBool,
}

impl LocalLog {
    /// Records kept per topic even when every reader is past them, for a consumer group that
    /// starts reading after the first records were published (the event conformance suite
    /// publishes 30 before its consumer starts; Kafka keeps records for days). Tails record
    /// their positions, so this need not cover a lagging one (it was 10,000 for that, 9 MiB
    /// after a load that stayed resident; then 256, whose ~550 records, each an allocation of
    /// its own, were the only live data on ~150 heap pages after a load run).
    pub const RETAIN: usize = 64;
    /// Records kept at most for a reader that has not handled them: 8 s at 6,000 messages/s.
    /// A tail further behind skips ahead and logs how many records it missed; a consumer group
    /// is never skipped: publishes are refused (`overloaded`, retry after 1 s) until it has
    /// caught up.
    pub const MAX_BEHIND: usize = 50_000;

    /// How many records `topic` keeps now.
    #[cfg(test)]
    fn kept(&self, topic: &str) -> usize {
        self.topic(topic)
            .records
            .lock()
            .expect("topic poisoned")
            .1
            .len()
    }

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
                    tails: Mutex::default(),
                    next_tail: AtomicU64::new(0),
                    refusing: AtomicBool::new(false),
                })
            })
            .clone()
    }
}

impl LocalTopic {
    /// Appends a record; refused (`overloaded`) while a consumer group is
    /// [`LocalLog::MAX_BEHIND`] records behind.
    fn append(&self, topic: &str, key: &str, payload: Vec<u8>) -> Result<(), Error> {
        let key = key_hash(key.as_bytes());
        let mut records = self.records.lock().expect("topic poisoned");
        records.1.push_back((key, payload.into()));
        let end = records.0 + records.1.len() as u64;
        if records.1.len() > LocalLog::RETAIN {
            let groups = lowest(&self.committed.lock().expect("topic poisoned")).unwrap_or(end);
            let tails = lowest(&self.tails.lock().expect("topic poisoned")).unwrap_or(end);
            while records.1.len() > LocalLog::RETAIN
                && records.0 < groups
                && (records.0 < tails || records.1.len() > LocalLog::MAX_BEHIND)
            {
                records.1.pop_front();
                records.0 += 1;
            }
        }
        // Still more than that: a consumer group has not handled them (tails were skipped
        // ahead). Skipping them would lose its work and keeping them would hold memory without
        // bound; the publisher is told to retry instead, as Kafka's producer would be told
        // when its broker is full.
        let full = records.1.len() > LocalLog::MAX_BEHIND;
        if full {
            records.1.pop_back();
        }
        drop(records);
        if full {
            if !self.refusing.swap(true, Ordering::Relaxed) {
                tracing::warn!(%topic, behind = LocalLog::MAX_BEHIND,
                    "a consumer group fell LocalLog::MAX_BEHIND records behind: refusing new records until it catches up");
            }
            return Err(Error::from(RequestError::Overloaded).retry_after(1));
        }
        if self.refusing.swap(false, Ordering::Relaxed) {
            tracing::info!(%topic, "the consumer groups caught up: taking records again");
        }
        self.end.send_replace(end);
        Ok(())
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

    /// Registers a tail at the end of the log: its position, kept until the returned guard is
    /// dropped. Taken under the records' lock, so nothing it has not seen can be trimmed first.
    fn attach_tail(self: &Arc<Self>) -> TailPosition {
        let records = self.records.lock().expect("topic poisoned");
        let end = records.0 + records.1.len() as u64;
        let id = self.next_tail.fetch_add(1, Ordering::Relaxed);
        self.tails.lock().expect("topic poisoned").insert(id, end);
        TailPosition {
            topic: self.clone(),
            id,
            offset: end,
        }
    }

    fn commit(&self, group: &str, offset: u64) {
        self.committed
            .lock()
            .expect("topic poisoned")
            .insert(group.to_string(), offset);
    }
}

/// The lowest of `positions`, if any.
fn lowest<K>(positions: &HashMap<K, u64>) -> Option<u64> {
    positions.values().copied().min()
}

/// A running tail's position in its topic; forgotten when dropped, however the tail ends.
struct TailPosition {
    topic: Arc<LocalTopic>,
    id: u64,
    offset: u64,
}

impl TailPosition {
    fn advance(&mut self, offset: u64) {
        self.offset = offset;
        if let Some(at) = self
            .topic
            .tails
            .lock()
            .expect("topic poisoned")
            .get_mut(&self.id)
        {
            *at = offset;
        }
    }
}

impl Drop for TailPosition {
    fn drop(&mut self) {
        if let Ok(mut tails) = self.topic.tails.lock() {
            tails.remove(&self.id);
        }
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
        self.topic(topic).append(topic, key, payload)
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
        let mut position = local.attach_tail();
        attached.open();
        while let Some(record) = local.next(position.offset, &shutdown).await {
            let at = record.offset as u64;
            if at > position.offset {
                tracing::warn!(%topic, skipped = at - position.offset, "the tail fell more than LocalLog::MAX_BEHIND records behind");
            }
            handler(record).await;
            position.advance(at + 1);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;
    use tokio::sync::Semaphore;

    /// Publishes `n` records numbered from `from` (the payload is the number).
    async fn publish(log: &LocalLog, from: u64, n: u64) {
        for i in from..from + n {
            log.publish("t", "k", i.to_string().into_bytes())
                .await
                .unwrap();
        }
    }

    /// A tail on "t" that records every payload and waits for a permit of `gate` per record.
    async fn tail(
        log: &Arc<LocalLog>,
        gate: Arc<Semaphore>,
    ) -> (Arc<Mutex<Vec<u64>>>, CancellationToken) {
        let (seen, stop) = (Arc::new(Mutex::new(Vec::new())), CancellationToken::new());
        let attached = Gate::new("tail");
        let handler = recording(&seen, gate);
        let (l, a, st) = (log.clone(), attached.clone(), stop.clone());
        tokio::spawn(async move { l.tail("t", st, a, handler).await });
        while !attached.is_open() {
            tokio::task::yield_now().await;
        }
        (seen, stop)
    }

    /// A handler that records every payload in `seen`, waiting for a permit of `gate` first.
    fn recording(seen: &Arc<Mutex<Vec<u64>>>, gate: Arc<Semaphore>) -> RawHandler {
        let (s, g) = (seen.clone(), gate);
        Arc::new(move |record: RawRecord| {
            let (s, g) = (s.clone(), g.clone());
            async move {
                g.acquire().await.unwrap().forget();
                let n = std::str::from_utf8(&record.payload)
                    .unwrap()
                    .parse()
                    .unwrap();
                s.lock().unwrap().push(n);
                true
            }
            .boxed()
        })
    }

    async fn wait_for(seen: &Mutex<Vec<u64>>, n: usize) {
        while seen.lock().unwrap().len() < n {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_lagging_tail_loses_nothing_and_what_every_reader_passed_is_trimmed() {
        let log = Arc::new(LocalLog::default());
        let gate = Arc::new(Semaphore::new(0));
        let (seen, stop) = tail(&log, gate.clone()).await;
        // Far more than the records kept for nobody, while the tail handles none.
        let n = (LocalLog::RETAIN * 8) as u64;
        publish(&log, 0, n).await;
        assert_eq!(log.kept("t"), n as usize, "all kept for the tail");
        gate.add_permits(n as usize);
        wait_for(&seen, n as usize).await;
        assert_eq!(
            *seen.lock().unwrap(),
            (0..n).collect::<Vec<_>>(),
            "in order, no gap"
        );
        // Once it has passed them, the next record trims them.
        publish(&log, n, 1).await;
        assert!(log.kept("t") <= LocalLog::RETAIN + 1, "{}", log.kept("t"));
        // A stopped tail's position is forgotten: it holds nothing back.
        stop.cancel();
        gate.add_permits(1);
        while !log.topic("t").tails.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        publish(&log, n + 1, LocalLog::RETAIN as u64 * 2).await;
        assert!(log.kept("t") <= LocalLog::RETAIN + 1);
    }

    #[tokio::test]
    async fn a_tail_stuck_beyond_max_behind_is_skipped_ahead_not_kept_for() {
        let log = Arc::new(LocalLog::default());
        let gate = Arc::new(Semaphore::new(0));
        let (seen, _stop) = tail(&log, gate.clone()).await;
        let n = (LocalLog::MAX_BEHIND + 100) as u64;
        publish(&log, 0, n).await;
        assert_eq!(log.kept("t"), LocalLog::MAX_BEHIND, "bounded");
        gate.add_permits(2);
        wait_for(&seen, 2).await;
        // It goes on from the oldest record kept, in order.
        let oldest = n - LocalLog::MAX_BEHIND as u64;
        assert_eq!(*seen.lock().unwrap(), vec![oldest, oldest + 1]);
    }

    /// A consumer group is never skipped: while it is `MAX_BEHIND` records behind, publishing
    /// is refused (retry later) and memory stays bounded; once it has caught up, records are
    /// taken again, and it has handled every one that was taken, in order.
    #[tokio::test]
    async fn a_consumer_group_too_far_behind_refuses_publishes_and_loses_nothing() {
        let log = Arc::new(LocalLog::default());
        let gate = Arc::new(Semaphore::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler = recording(&seen, gate.clone());
        let l = log.clone();
        tokio::spawn(async move {
            l.consume(
                "t",
                "g",
                StartAt::Earliest,
                CancellationToken::new(),
                handler,
            )
            .await
        });
        while !log.topic("t").committed.lock().unwrap().contains_key("g") {
            tokio::task::yield_now().await;
        }
        let n = LocalLog::MAX_BEHIND as u64;
        publish(&log, 0, n).await;
        let refused = log.publish("t", "k", b"x".to_vec()).await.unwrap_err();
        assert_eq!(refused.reason(), "overloaded");
        assert_eq!(refused.retry_after_secs, Some(1));
        assert_eq!(log.kept("t"), LocalLog::MAX_BEHIND, "bounded");

        gate.add_permits(n as usize + 1);
        wait_for(&seen, n as usize).await;
        assert_eq!(*seen.lock().unwrap(), (0..n).collect::<Vec<_>>());
        while log.topic("t").committed.lock().unwrap().get("g") != Some(&n) {
            tokio::task::yield_now().await;
        }
        publish(&log, n, 1).await;
        wait_for(&seen, n as usize + 1).await;
        assert_eq!(seen.lock().unwrap().last(), Some(&n), "taken again");
        assert!(log.kept("t") <= LocalLog::RETAIN + 1, "{}", log.kept("t"));
    }
}
