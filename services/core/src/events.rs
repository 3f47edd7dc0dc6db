//! The event log: chat commands and facts on Kafka, keyed by group id so one group's events stay
//! in order (one partition per key).
//!
//! - Topics are `<namespace>.chat.commands` (chat → message) and `<namespace>.chat.facts`
//!   (message and group → every chat replica).
//! - Every event travels in a versioned [`Envelope`] with a unique id (consumers deduplicate), the
//!   producing role and the group id.
//! - [`EventLog::publish`] returns once the broker has the event (`acks=all`, idempotent
//!   producer), so "published" means durable.
//! - [`consume`] hands records to a handler one at a time and commits a record's offset only
//!   after the handler succeeded; a failing handler is retried, and a crash re-delivers what was
//!   not committed.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::health::Probe;

/// Version of the event envelope.
pub const EVENT_VERSION: u8 = 1;
/// Topic of chat commands.
pub const COMMANDS: &str = "chat.commands";
/// Topic of facts.
pub const FACTS: &str = "chat.facts";

/// Every event on the log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope<T> {
    /// Envelope version.
    pub v: u8,
    /// Unique event id; consumers use it to drop duplicates.
    pub id: String,
    /// The role that produced it.
    pub producer: String,
    /// The group the event is about (also the partition key).
    pub group_id: String,
    pub at: DateTime<Utc>,
    pub event: T,
}

impl<T> Envelope<T> {
    pub fn new(producer: &str, group_id: &str, event: T) -> Self {
        Envelope {
            v: EVENT_VERSION,
            id: uuid::Uuid::new_v4().to_string(),
            producer: producer.to_string(),
            group_id: group_id.to_string(),
            at: Utc::now(),
            event,
        }
    }
}

/// Produces events; one per process.
#[derive(Clone)]
pub struct EventLog {
    backend: Backend,
    namespace: String,
}

#[derive(Clone)]
enum Backend {
    Kafka {
        producer: FutureProducer,
        brokers: String,
    },
    /// `chat-server all` without Kafka: the same semantics in memory (see [`LocalLog`]).
    Local(Arc<LocalLog>),
}

/// The in-process event log of `chat-server all` without Kafka. One ordered partition per
/// topic; consumer groups commit offsets after their handler succeeded, as on Kafka; tails start
/// at the end. Records that every consumer group has committed are trimmed once a topic holds
/// more than [`LocalLog::RETAIN`] of them. The log lives in memory: what it loses on a crash is
/// what no client was told was done (acknowledgements wait for the stores).
#[derive(Default)]
pub struct LocalLog {
    topics: Mutex<HashMap<String, Arc<LocalTopic>>>,
}

struct LocalTopic {
    /// (offset of the first record kept, the records).
    records: Mutex<(u64, VecDeque<Arc<[u8]>>)>,
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
    fn append(&self, payload: Vec<u8>) {
        let mut records = self.records.lock().expect("topic poisoned");
        records.1.push_back(payload.into());
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
    fn at(&self, offset: u64) -> Option<(u64, Arc<[u8]>)> {
        let records = self.records.lock().expect("topic poisoned");
        let offset = offset.max(records.0);
        records
            .1
            .get((offset - records.0) as usize)
            .map(|r| (offset, r.clone()))
    }

    /// Waits until a record at `offset` exists; false on shutdown.
    async fn wait_for(&self, offset: u64, shutdown: &CancellationToken) -> bool {
        let mut end = self.end.subscribe();
        tokio::select! {
            r = end.wait_for(|e| *e > offset) => r.is_ok(),
            _ = shutdown.cancelled() => false,
        }
    }
}

fn kafka_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::dependency("kafka", format!("{what}: {e}"))
}

impl EventLog {
    /// A producer for `brokers` (comma-separated `host:port`).
    pub fn new(brokers: &str, namespace: &str) -> Result<Self, String> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", "10000")
            .set("linger.ms", "1")
            .create()
            .map_err(|e| format!("cannot create the Kafka producer: {e}"))?;
        Ok(EventLog {
            backend: Backend::Kafka {
                producer,
                brokers: brokers.to_string(),
            },
            namespace: namespace.to_string(),
        })
    }

    /// The in-process log (no Kafka).
    pub fn local(namespace: &str) -> Self {
        EventLog {
            backend: Backend::Local(Arc::default()),
            namespace: namespace.to_string(),
        }
    }

    /// The namespaced name of a topic.
    pub fn topic(&self, name: &str) -> String {
        format!("{}.{name}", self.namespace)
    }

    /// Creates the topics if they do not exist.
    pub async fn ensure_topics(&self, names: &[&str], partitions: i32) -> Result<(), Error> {
        let brokers = match &self.backend {
            Backend::Kafka { brokers, .. } => brokers,
            Backend::Local(log) => {
                for name in names {
                    log.topic(&self.topic(name));
                }
                return Ok(());
            }
        };
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .create()
            .map_err(|e| kafka_error("admin client", e))?;
        let topics: Vec<String> = names.iter().map(|n| self.topic(n)).collect();
        let new: Vec<NewTopic> = topics
            .iter()
            .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = admin
            .create_topics(&new, &options)
            .await
            .map_err(|e| kafka_error("create topics", e))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(kafka_error(&format!("create topic {topic}"), code))
                }
            }
        }
        Ok(())
    }

    /// Publishes `envelope` on `topic` (un-namespaced name), keyed by its group id, and waits
    /// until the broker has it.
    pub async fn publish<T: Serialize>(
        &self,
        topic: &str,
        envelope: &Envelope<T>,
    ) -> Result<(), Error> {
        let payload = serde_json::to_vec(envelope).map_err(Error::internal)?;
        let topic = self.topic(topic);
        let producer = match &self.backend {
            Backend::Kafka { producer, .. } => producer,
            Backend::Local(log) => {
                log.topic(&topic).append(payload);
                return Ok(());
            }
        };
        let record = FutureRecord::to(&topic)
            .key(&envelope.group_id)
            .payload(&payload);
        producer
            .send(record, Duration::from_secs(10))
            .await
            .map(|_| ())
            .map_err(|(e, _)| kafka_error("publish", e))
    }
}

/// Where a consumer starts when its group has no committed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// Everything still on the log (for processing that must not miss anything).
    Earliest,
    /// Only what arrives from now on (for live fan-out; gaps are filled by catch-up).
    Latest,
}

/// One record handed to a consumer's handler.
#[derive(Debug, Clone)]
pub struct Record<T> {
    pub envelope: Envelope<T>,
    pub partition: i32,
    pub offset: i64,
}

/// Consumes `topic` (un-namespaced) as consumer group `group`, handing each record to `handler`
/// in order and committing its offset only after `handler` succeeds. A failing handler is retried
/// with backoff (ordering is kept); undecodable records are logged and skipped. Runs until
/// `shutdown`.
pub async fn consume<T, F, Fut>(
    log: &EventLog,
    topic: &str,
    group: &str,
    start: StartAt,
    shutdown: CancellationToken,
    handler: F,
) -> Result<(), String>
where
    T: DeserializeOwned + Clone,
    F: Fn(Record<T>) -> Fut,
    Fut: Future<Output = Result<(), Error>>,
{
    let brokers = match &log.backend {
        Backend::Kafka { brokers, .. } => brokers,
        Backend::Local(local) => {
            let name = log.topic(topic);
            let topic = local.topic(&name);
            let group = group.to_string();
            let mut offset = match start {
                StartAt::Earliest => 0,
                StartAt::Latest => *topic.end.borrow(),
            };
            offset = *topic
                .committed
                .lock()
                .expect("topic poisoned")
                .entry(group.clone())
                .or_insert(offset);
            loop {
                if !topic.wait_for(offset, &shutdown).await {
                    return Ok(());
                }
                let Some((at, payload)) = topic.at(offset) else {
                    continue;
                };
                if let Ok(envelope) = serde_json::from_slice::<Envelope<T>>(&payload) {
                    let record = Record {
                        envelope,
                        partition: 0,
                        offset: at as i64,
                    };
                    if !retry_until_handled(&handler, record, &name, &shutdown).await {
                        return Ok(());
                    }
                } else {
                    tracing::error!(%group, offset = at, "skipping an undecodable event");
                }
                offset = at + 1;
                topic
                    .committed
                    .lock()
                    .expect("topic poisoned")
                    .insert(group.clone(), offset);
            }
        }
    };
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{}.{group}", log.namespace))
        .set("enable.auto.commit", "false")
        .set(
            "auto.offset.reset",
            if start == StartAt::Earliest {
                "earliest"
            } else {
                "latest"
            },
        )
        // A dead member (SIGKILL) is noticed after the session timeout; a rebalance waits at
        // most the poll interval for members to rejoin (librdkafka's 300 s default would stall
        // processing for minutes after a crash).
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        .set("max.poll.interval.ms", "30000")
        // Brokers hold a fetch until data or this long: the default 500 ms is added to every
        // message's latency.
        .set("fetch.wait.max.ms", "10")
        .create()
        .map_err(|e| format!("cannot create the Kafka consumer: {e}"))?;
    let topic = log.topic(topic);
    consumer
        .subscribe(&[&topic])
        .map_err(|e| format!("cannot subscribe to {topic}: {e}"))?;
    tracing::info!(%topic, group, "consuming");
    loop {
        let message = tokio::select! {
            m = consumer.recv() => m,
            _ = shutdown.cancelled() => return Ok(()),
        };
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(%topic, error = %e, "kafka receive failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let decoded = message.payload().map(serde_json::from_slice::<Envelope<T>>);
        match decoded {
            Some(Ok(envelope)) => {
                tracing::debug!(%topic, partition = message.partition(), offset = message.offset(), event_id = %envelope.id, "consumed");
                let record = Record {
                    envelope,
                    partition: message.partition(),
                    offset: message.offset(),
                };
                if !retry_until_handled(&handler, record, &topic, &shutdown).await {
                    return Ok(());
                }
            }
            _ => {
                tracing::error!(%topic, partition = message.partition(), offset = message.offset(), "skipping an undecodable event")
            }
        }
        if let Err(e) = consumer.commit_message(&message, CommitMode::Sync) {
            tracing::warn!(%topic, error = %e, "offset commit failed; the record may be delivered again");
        }
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

/// Follows every partition of `topic` from its end, without a consumer group or commits: how
/// each chat replica receives all facts. Anything missed while down is recovered by clients'
/// catch-up, not by the log. Runs until `shutdown`.
pub async fn tail<T, F, Fut>(
    log: &EventLog,
    topic: &str,
    shutdown: CancellationToken,
    handler: F,
) -> Result<(), String>
where
    T: DeserializeOwned,
    F: Fn(Envelope<T>) -> Fut,
    Fut: Future<Output = ()>,
{
    let topic = log.topic(topic);
    let brokers = match &log.backend {
        Backend::Kafka { brokers, .. } => brokers,
        Backend::Local(local) => {
            let local = local.topic(&topic);
            let mut offset = *local.end.borrow();
            loop {
                if !local.wait_for(offset, &shutdown).await {
                    return Ok(());
                }
                let Some((at, payload)) = local.at(offset) else {
                    continue;
                };
                if at > offset {
                    tracing::warn!(%topic, skipped = at - offset, "the tail fell behind the log's retention");
                }
                match serde_json::from_slice::<Envelope<T>>(&payload) {
                    Ok(envelope) => handler(envelope).await,
                    Err(_) => tracing::error!(%topic, offset = at, "skipping an undecodable event"),
                }
                offset = at + 1;
            }
        }
    };
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("{}.tail.{}", log.namespace, uuid::Uuid::new_v4().simple()),
        )
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()
        .map_err(|e| format!("cannot create the Kafka consumer: {e}"))?;
    let metadata = consumer
        .fetch_metadata(Some(&topic), Duration::from_secs(10))
        .map_err(|e| format!("metadata of {topic}: {e}"))?;
    let partitions = metadata
        .topics()
        .first()
        .map(|t| t.partitions().len())
        .unwrap_or(0);
    if partitions == 0 {
        return Err(format!("topic {topic} has no partitions"));
    }
    let mut assignment = rdkafka::TopicPartitionList::new();
    for p in 0..partitions as i32 {
        assignment
            .add_partition_offset(&topic, p, rdkafka::Offset::End)
            .map_err(|e| e.to_string())?;
    }
    consumer
        .assign(&assignment)
        .map_err(|e| format!("cannot assign {topic}: {e}"))?;
    tracing::info!(%topic, partitions, "tailing");
    loop {
        let message = tokio::select! {
            m = consumer.recv() => m,
            _ = shutdown.cancelled() => return Ok(()),
        };
        match message {
            Ok(m) => match m.payload().map(serde_json::from_slice::<Envelope<T>>) {
                Some(Ok(envelope)) => {
                    tracing::debug!(%topic, partition = m.partition(), offset = m.offset(), event_id = %envelope.id, "tailed");
                    handler(envelope).await
                }
                _ => tracing::error!(%topic, offset = m.offset(), "skipping an undecodable event"),
            },
            Err(e) => {
                tracing::warn!(%topic, error = %e, "kafka receive failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Readiness: the broker answers a metadata request.
pub struct KafkaProbe(pub EventLog);

#[async_trait::async_trait]
impl Probe for KafkaProbe {
    fn name(&self) -> &'static str {
        "kafka"
    }
    async fn check(&self) -> Result<(), String> {
        let producer = match &self.0.backend {
            Backend::Kafka { producer, .. } => producer.clone(),
            Backend::Local(_) => return Ok(()),
        };
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, Duration::from_secs(2))
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }
}
