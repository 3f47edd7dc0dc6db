//! The event log on Kafka: [`KafkaLog`] implements [`EventTransport`].
//!
//! - Producing is idempotent with `acks=all`, so "published" means durable.
//! - Events are keyed by group id, so one group's events share a partition and stay in order.
//! - Consumer groups commit a record's offset only after the handler succeeded.
//! - A tail assigns itself every partition from its end, with no consumer group.

use std::time::Duration;

use chat_domain::Error;
use chat_ports::events::{
    handle_in_lanes, key_hash, EventTransport, RawHandler, RawRecord, StartAt,
};
use chat_ports::health::{Gate, Probe};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

/// The Kafka event log of one process.
#[derive(Clone)]
pub struct KafkaLog {
    producer: FutureProducer,
    brokers: String,
    partitions: i32,
    fetch_wait: Duration,
}

fn kafka_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::dependency("kafka", format!("{what}: {e}"))
}

impl KafkaLog {
    /// A producer for `brokers` (comma-separated `host:port`); topics it creates get
    /// `partitions` partitions, and its consumers let the broker hold a fetch `fetch_wait` at
    /// most.
    pub fn new(brokers: &str, partitions: i32, fetch_wait: Duration) -> Result<Self, Error> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", "10000")
            .set("linger.ms", "1")
            .create()
            .map_err(|e| kafka_error("cannot create the producer", e))?;
        Ok(KafkaLog {
            producer,
            brokers: brokers.to_string(),
            partitions,
            fetch_wait,
        })
    }

    /// Readiness: the broker answers a metadata request.
    pub fn probe(&self) -> KafkaProbe {
        KafkaProbe(self.producer.clone())
    }

    fn consumer(&self, group: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            // Kafka holds a fetch until data arrives or this long; the Tansu stand-in holds it
            // this long whatever arrives (measured: a 200 ms wait gave a 188 ms median), so
            // librdkafka's default of 500 ms would be added to every message on it.
            .set("fetch.wait.max.ms", self.fetch_wait.as_millis().to_string());
        config
    }
}

/// The record as the port sees it.
fn raw(message: &BorrowedMessage<'_>) -> Option<RawRecord> {
    Some(RawRecord {
        payload: message.payload()?.into(),
        partition: message.partition(),
        offset: message.offset(),
        key: key_hash(message.key().unwrap_or_default()),
    })
}

/// Waits for the next message; `None` on shutdown. Receive errors are logged and retried.
async fn next<'a>(
    consumer: &'a StreamConsumer,
    topic: &str,
    shutdown: &CancellationToken,
) -> Option<BorrowedMessage<'a>> {
    loop {
        let message = tokio::select! {
            m = consumer.recv() => m,
            _ = shutdown.cancelled() => return None,
        };
        match message {
            Ok(m) => return Some(m),
            Err(e) => {
                tracing::warn!(%topic, error = %e, "kafka receive failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

#[async_trait::async_trait]
impl EventTransport for KafkaLog {
    async fn ensure_topics(&self, topics: &[String]) -> Result<(), Error> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .create()
            .map_err(|e| kafka_error("admin client", e))?;
        let new: Vec<NewTopic> = topics
            .iter()
            .map(|t| NewTopic::new(t, self.partitions, TopicReplication::Fixed(1)))
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

    async fn publish(&self, topic: &str, key: &str, payload: Vec<u8>) -> Result<(), Error> {
        let record = FutureRecord::to(topic).key(key).payload(&payload);
        self.producer
            .send(record, Duration::from_secs(10))
            .await
            .map(|_| ())
            .map_err(|(e, _)| kafka_error("publish", e))
    }

    async fn consume(
        &self,
        topic: &str,
        group: &str,
        start: StartAt,
        shutdown: CancellationToken,
        handler: RawHandler,
    ) -> Result<(), Error> {
        let consumer: StreamConsumer = self
            .consumer(group)
            .set(
                "auto.offset.reset",
                if start == StartAt::Earliest {
                    "earliest"
                } else {
                    "latest"
                },
            )
            // A dead member (SIGKILL) is noticed after the session timeout; a rebalance waits at
            // most the poll interval for members to rejoin (librdkafka's 300 s default would
            // stall processing for minutes after a crash).
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
            .set("max.poll.interval.ms", "30000")
            .create()
            .map_err(|e| kafka_error("cannot create the consumer", e))?;
        consumer
            .subscribe(&[topic])
            .map_err(|e| kafka_error(&format!("cannot subscribe to {topic}"), e))?;
        tracing::info!(%topic, group, "consuming");
        let records = futures_util::stream::unfold((), |()| async {
            loop {
                let message = next(&consumer, topic, &shutdown).await?;
                match raw(&message) {
                    Some(record) => return Some((record, ())),
                    // Committed with the next record handled after it.
                    None => {
                        tracing::error!(%topic, partition = message.partition(), offset = message.offset(), "skipping an empty event")
                    }
                }
            }
        });
        // Asynchronous: the commit is queued without blocking a runtime thread. A commit lost
        // in a crash (or to a rebalance) re-delivers records, which consumers deduplicate.
        let commit = |partition: i32, next: i64| {
            let mut offsets = TopicPartitionList::new();
            let committed = offsets
                .add_partition_offset(topic, partition, Offset::Offset(next))
                .and_then(|()| consumer.commit(&offsets, CommitMode::Async));
            if let Err(e) = committed {
                tracing::warn!(%topic, partition, error = %e, "offset commit failed; records may be delivered again");
            }
        };
        handle_in_lanes(records, handler, commit).await;
        Ok(())
    }

    async fn tail(
        &self,
        topic: &str,
        shutdown: CancellationToken,
        attached: Gate,
        handler: RawHandler,
    ) -> Result<(), Error> {
        let group = format!("{topic}.tail.{}", uuid::Uuid::new_v4().simple());
        let consumer: StreamConsumer = self
            .consumer(&group)
            .create()
            .map_err(|e| kafka_error("cannot create the consumer", e))?;
        // The end of each partition, resolved now rather than by the consumer once it has
        // connected: a fact published after `tail` returned from here is never skipped.
        let ends = partition_ends(&self.producer, topic).await?;
        let partitions = ends.len();
        let mut assignment = rdkafka::TopicPartitionList::new();
        for (p, end) in ends {
            assignment
                .add_partition_offset(topic, p, rdkafka::Offset::Offset(end))
                .map_err(|e| kafka_error("assign", e))?;
        }
        consumer
            .assign(&assignment)
            .map_err(|e| kafka_error(&format!("cannot assign {topic}"), e))?;
        tracing::info!(%topic, partitions, "tailing");
        attached.open();
        while let Some(message) = next(&consumer, topic, &shutdown).await {
            match raw(&message) {
                Some(record) => {
                    handler(record).await;
                }
                None => {
                    tracing::error!(%topic, offset = message.offset(), "skipping an empty event")
                }
            }
        }
        Ok(())
    }
}

/// Each partition of `topic` and the offset after its last record, asked off the runtime
/// threads (librdkafka's calls block).
async fn partition_ends(producer: &FutureProducer, topic: &str) -> Result<Vec<(i32, i64)>, Error> {
    let (producer, name) = (producer.clone(), topic.to_string());
    let ends = tokio::task::spawn_blocking(move || {
        let client = producer.client();
        let timeout = Duration::from_secs(10);
        let metadata = client.fetch_metadata(Some(&name), timeout)?;
        let count = metadata
            .topics()
            .first()
            .map_or(0, |t| t.partitions().len());
        (0..count as i32)
            .map(|p| Ok((p, client.fetch_watermarks(&name, p, timeout)?.1)))
            .collect::<Result<Vec<_>, rdkafka::error::KafkaError>>()
    })
    .await
    .map_err(Error::internal)?
    .map_err(|e| kafka_error(&format!("offsets of {topic}"), e))?;
    if ends.is_empty() {
        return Err(kafka_error(topic, "the topic has no partitions"));
    }
    Ok(ends)
}

/// Readiness: the broker answers a metadata request.
pub struct KafkaProbe(FutureProducer);

#[async_trait::async_trait]
impl Probe for KafkaProbe {
    fn name(&self) -> &'static str {
        "kafka"
    }
    async fn check(&self) -> Result<(), String> {
        let producer = self.0.clone();
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
