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

use std::future::Future;
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
    producer: FutureProducer,
    brokers: String,
    namespace: String,
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
            producer,
            brokers: brokers.to_string(),
            namespace: namespace.to_string(),
        })
    }

    /// The namespaced name of a topic.
    pub fn topic(&self, name: &str) -> String {
        format!("{}.{name}", self.namespace)
    }

    /// Creates the topics if they do not exist.
    pub async fn ensure_topics(&self, names: &[&str], partitions: i32) -> Result<(), Error> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
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
        let record = FutureRecord::to(&topic)
            .key(&envelope.group_id)
            .payload(&payload);
        self.producer
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
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &log.brokers)
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
                let mut delay = Duration::from_millis(100);
                // Retry the same record until it is handled: skipping it would break ordering.
                while let Err(e) = handler(record.clone()).await {
                    tracing::warn!(%topic, partition = record.partition, offset = record.offset, error = %e,
                        "event handler failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.cancelled() => return Ok(()),
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
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
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &log.brokers)
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
        let producer = self.0.producer.clone();
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
