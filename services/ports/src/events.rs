//! The event log port: chat commands and facts, keyed by group id so one group's events stay
//! in order. Kafka (`chat-kafka`) and the in-process log (`chat-embedded`) implement
//! [`EventTransport`]; roles use the typed [`EventLog`] over it.
//!
//! - [`EventLog::publish`] returns once the log has the event durably.
//! - [`EventLog::consume`] hands records to a handler, those with the same key in order and up
//!   to [`LANES`] keys at once ([`handle_in_lanes`]), and commits an offset only once every
//!   record before it was handled; a failing handler is retried with backoff (ordering is
//!   kept), and a crash re-delivers what was not committed.
//! - [`EventLog::tail`] follows every partition from its end, without commits: how each chat
//!   replica receives all facts.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::health::Gate;
use chat_domain::events::Envelope;
use chat_domain::Error;

/// Where a consumer starts when its group has no committed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// Everything still on the log (for processing that must not miss anything).
    Earliest,
    /// Only what arrives from now on (for live fan-out; gaps are filled by catch-up).
    Latest,
}

/// One record as the transport delivers it.
#[derive(Debug, Clone)]
pub struct RawRecord {
    pub payload: Arc<[u8]>,
    pub partition: i32,
    pub offset: i64,
    /// The hash of the record's key ([`key_hash`]): records with the same key stay in order.
    pub key: u64,
}

/// The hash of a record key, as [`RawRecord::key`] carries it.
pub fn key_hash(key: &[u8]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish()
}

/// Keys a consumer handles at once. A handler mostly waits (on a database), so handling one
/// record at a time would cap a consumer at one store round trip per record; and keys that share
/// a lane wait for each other's round trips, so there are lanes enough that few keys share one.
/// With 16, 35 busy groups (7,000 sends/s in the real-time bench) queued behind each other's
/// commits with a core still idle: p99 210 ms; with 64, 44 ms on the same build. A lane costs a
/// task and a small channel.
pub const LANES: usize = 64;

tokio::task_local! {
    /// When the record a lane is handling was read off the log ([`Record::waited`]).
    static READ_AT: Instant;
}

/// Hands `records` to `handler` on [`LANES`] lanes chosen by key: the records of one key in
/// order, different keys at once. Calls `commit(partition, offset)` whenever the offset below
/// which every record of `partition` is handled advances (`offset` is the next one to read).
/// Stops when `records` ends or a handler returns false, after the lanes finish what they hold;
/// a record whose handler returned false is never committed.
pub async fn handle_in_lanes(
    records: impl Stream<Item = RawRecord>,
    handler: RawHandler,
    mut commit: impl FnMut(i32, i64),
) {
    let (done_tx, mut done) = mpsc::unbounded_channel::<(i32, i64, bool)>();
    let lanes: Vec<mpsc::Sender<(Instant, RawRecord)>> = (0..LANES)
        .map(|_| {
            let (tx, mut rx) = mpsc::channel::<(Instant, RawRecord)>(64);
            let (handler, done) = (handler.clone(), done_tx.clone());
            tokio::spawn(async move {
                while let Some((read_at, record)) = rx.recv().await {
                    let (partition, offset) = (record.partition, record.offset);
                    let handled = READ_AT.scope(read_at, handler(record)).await;
                    let _ = done.send((partition, offset, handled));
                    if !handled {
                        break;
                    }
                }
            });
            tx
        })
        .collect();
    drop(done_tx);
    // Per partition: offsets handed to a lane and not yet handled, and the next offset to read.
    let mut partitions: HashMap<i32, (BTreeSet<i64>, i64)> = HashMap::new();
    let mut settle = |partitions: &mut HashMap<i32, (BTreeSet<i64>, i64)>, partition, offset| {
        if let Some((in_flight, next)) = partitions.get_mut(&partition) {
            in_flight.remove(&offset);
            commit(partition, in_flight.first().copied().unwrap_or(*next));
        }
    };
    let mut records = std::pin::pin!(records);
    loop {
        tokio::select! {
            record = records.next() => {
                let Some(record) = record else { break };
                let entry = partitions.entry(record.partition).or_default();
                entry.0.insert(record.offset);
                entry.1 = record.offset + 1;
                let lane = &lanes[(record.key % LANES as u64) as usize];
                if lane.send((Instant::now(), record)).await.is_err() {
                    break;
                }
            }
            Some((partition, offset, handled)) = done.recv() => {
                if !handled {
                    break;
                }
                settle(&mut partitions, partition, offset);
            }
        }
    }
    drop(lanes);
    while let Some((partition, offset, handled)) = done.recv().await {
        if handled {
            settle(&mut partitions, partition, offset);
        }
    }
}

/// Takes one record; `false` means "stop now" (shutdown): the record is not committed.
pub type RawHandler = Arc<dyn Fn(RawRecord) -> BoxFuture<'static, bool> + Send + Sync>;

/// What an event log must do. Topic and group names arrive namespaced.
#[async_trait::async_trait]
pub trait EventTransport: Send + Sync {
    /// Creates the topics that do not exist yet.
    async fn ensure_topics(&self, topics: &[String]) -> Result<(), Error>;
    /// Appends `payload` to `topic` under `key` and returns once the log has it durably.
    async fn publish(&self, topic: &str, key: &str, payload: Vec<u8>) -> Result<(), Error>;
    /// Hands the records of `topic` to `handler` as consumer group `group`, each key's in order
    /// (through [`handle_in_lanes`]), committing an offset once every record before it returned
    /// true. Runs until `shutdown` or `handler` returns false.
    async fn consume(
        &self,
        topic: &str,
        group: &str,
        start: StartAt,
        shutdown: CancellationToken,
        handler: RawHandler,
    ) -> Result<(), Error>;
    /// Hands every record of every partition of `topic` from its end to `handler`, without a
    /// consumer group or commits; opens `attached` once every partition is assigned, so a record
    /// published after that is never skipped. Runs until `shutdown`.
    async fn tail(
        &self,
        topic: &str,
        shutdown: CancellationToken,
        attached: Gate,
        handler: RawHandler,
    ) -> Result<(), Error>;
}

/// One topic on a transport of its own, the others on the log's ([`EventLog::route`]).
struct Routed {
    /// The namespaced topic that goes to `to`.
    topic: String,
    to: Arc<dyn EventTransport>,
    rest: Arc<dyn EventTransport>,
}

impl Routed {
    fn transport(&self, topic: &str) -> &dyn EventTransport {
        if topic == self.topic {
            self.to.as_ref()
        } else {
            self.rest.as_ref()
        }
    }
}

#[async_trait::async_trait]
impl EventTransport for Routed {
    async fn ensure_topics(&self, topics: &[String]) -> Result<(), Error> {
        let (routed, rest): (Vec<String>, Vec<String>) =
            topics.iter().cloned().partition(|t| *t == self.topic);
        if !routed.is_empty() {
            self.to.ensure_topics(&routed).await?;
        }
        if !rest.is_empty() {
            self.rest.ensure_topics(&rest).await?;
        }
        Ok(())
    }

    async fn publish(&self, topic: &str, key: &str, payload: Vec<u8>) -> Result<(), Error> {
        self.transport(topic).publish(topic, key, payload).await
    }

    async fn consume(
        &self,
        topic: &str,
        group: &str,
        start: StartAt,
        shutdown: CancellationToken,
        handler: RawHandler,
    ) -> Result<(), Error> {
        self.transport(topic)
            .consume(topic, group, start, shutdown, handler)
            .await
    }

    async fn tail(
        &self,
        topic: &str,
        shutdown: CancellationToken,
        attached: Gate,
        handler: RawHandler,
    ) -> Result<(), Error> {
        self.transport(topic)
            .tail(topic, shutdown, attached, handler)
            .await
    }
}

/// One record handed to a consumer's handler.
#[derive(Debug, Clone)]
pub struct Record<T> {
    pub envelope: Envelope<T>,
    pub partition: i32,
    pub offset: i64,
    /// How long it waited, once read off the log, for its lane to take it (behind earlier
    /// records of the lane's keys): the consumer's own queueing, not the log's.
    pub waited: Duration,
}

/// The typed event log of a process. Cheap to clone.
#[derive(Clone)]
pub struct EventLog {
    transport: Arc<dyn EventTransport>,
    namespace: String,
}

impl EventLog {
    /// The log on `transport`, with topics and consumer groups prefixed by `namespace`.
    pub fn new(transport: Arc<dyn EventTransport>, namespace: &str) -> Self {
        EventLog {
            transport,
            namespace: namespace.to_string(),
        }
    }

    /// This log with `topic` (un-namespaced) on `transport` instead of the log's own: the facts
    /// relayed over Redis pub/sub (`FACTS_RELAY=redis`) while the commands stay on Kafka.
    pub fn route(mut self, topic: &str, transport: Arc<dyn EventTransport>) -> Self {
        let topic = self.topic(topic);
        self.transport = Arc::new(Routed {
            topic,
            to: transport,
            rest: self.transport,
        });
        self
    }

    /// The namespaced name of a topic.
    pub fn topic(&self, name: &str) -> String {
        format!("{}.{name}", self.namespace)
    }

    /// Creates the topics (un-namespaced names) if they do not exist.
    pub async fn ensure_topics(&self, names: &[&str]) -> Result<(), Error> {
        let topics: Vec<String> = names.iter().map(|n| self.topic(n)).collect();
        self.transport.ensure_topics(&topics).await
    }

    /// Publishes `envelope` on `topic` (un-namespaced), keyed by its group id, and waits until
    /// the log has it.
    pub async fn publish<T: Serialize>(
        &self,
        topic: &str,
        envelope: &Envelope<T>,
    ) -> Result<(), Error> {
        let payload = serde_json::to_vec(envelope).map_err(Error::internal)?;
        self.transport
            .publish(&self.topic(topic), &envelope.key, payload)
            .await
    }

    /// Consumes `topic` (un-namespaced) as consumer group `group`, handing each record to
    /// `handler` in order and committing its offset only after `handler` succeeds. A failing
    /// handler is retried with backoff; undecodable records are logged and skipped. Runs until
    /// `shutdown`.
    pub async fn consume<T, F, Fut>(
        &self,
        topic: &str,
        group: &str,
        start: StartAt,
        shutdown: CancellationToken,
        handler: F,
    ) -> Result<(), Error>
    where
        T: DeserializeOwned + Clone + Send + 'static,
        F: Fn(Record<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), Error>> + Send + 'static,
    {
        let topic = self.topic(topic);
        let handler = Arc::new(handler);
        let (name, stop) = (topic.clone(), shutdown.clone());
        let raw: RawHandler = Arc::new(move |raw: RawRecord| {
            let (handler, topic, shutdown) = (handler.clone(), name.clone(), stop.clone());
            Box::pin(async move {
                let waited = READ_AT.try_with(Instant::elapsed).unwrap_or_default();
                match serde_json::from_slice::<Envelope<T>>(&raw.payload) {
                    Ok(envelope) => {
                        tracing::debug!(%topic, partition = raw.partition, offset = raw.offset, event_id = %envelope.id, "consumed");
                        let record = Record {
                            envelope,
                            partition: raw.partition,
                            offset: raw.offset,
                            waited,
                        };
                        retry_until_handled(handler.as_ref(), record, &topic, &shutdown).await
                    }
                    Err(_) => {
                        tracing::error!(%topic, partition = raw.partition, offset = raw.offset, "skipping an undecodable event");
                        true
                    }
                }
            })
        });
        let group = self.topic(group);
        self.transport
            .consume(&topic, &group, start, shutdown, raw)
            .await
    }

    /// Follows every partition of `topic` (un-namespaced) from its end, without a consumer group
    /// or commits. Anything missed while down is recovered by clients' catch-up, not by the log.
    /// Opens `attached` once it follows every partition. Runs until `shutdown`.
    pub async fn tail<T, F, Fut>(
        &self,
        topic: &str,
        shutdown: CancellationToken,
        attached: Gate,
        handler: F,
    ) -> Result<(), Error>
    where
        T: DeserializeOwned + Send + 'static,
        F: Fn(Envelope<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let topic = self.topic(topic);
        let handler = Arc::new(handler);
        let name = topic.clone();
        let raw: RawHandler = Arc::new(move |raw: RawRecord| {
            let (handler, topic) = (handler.clone(), name.clone());
            Box::pin(async move {
                match serde_json::from_slice::<Envelope<T>>(&raw.payload) {
                    Ok(envelope) => {
                        tracing::debug!(%topic, partition = raw.partition, offset = raw.offset, event_id = %envelope.id, "tailed");
                        handler(envelope).await
                    }
                    Err(_) => {
                        tracing::error!(%topic, offset = raw.offset, "skipping an undecodable event")
                    }
                }
                true
            })
        });
        self.transport.tail(&topic, shutdown, attached, raw).await
    }
}

/// Hands `record` to `handler` until it succeeds, backing off between attempts: skipping it would
/// break ordering. False when `shutdown` came first.
async fn retry_until_handled<T, F, Fut>(
    handler: &F,
    record: Record<T>,
    topic: &str,
    shutdown: &CancellationToken,
) -> bool
where
    T: Clone,
    F: Fn(Record<T>) -> Fut,
    Fut: Future<Output = Result<(), Error>>,
{
    let mut delay = Duration::from_millis(100);
    while let Err(e) = handler(record.clone()).await {
        tracing::warn!(%topic, partition = record.partition, offset = record.offset, error = %e,
            "event handler failed; retrying");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => return false,
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
    true
}
