//! Facts relayed over Redis pub/sub (`FACTS_RELAY=redis`): each fact is one `PUBLISH` on a
//! channel named after the facts topic, and each chat replica (and each message role, for the
//! membership changes) follows the channel with one `SUBSCRIBE` connection. Nothing is kept:
//! what is published while a follower is not subscribed never reaches it, as a fact published
//! while a chat replica was down never did on Kafka either; clients fill such gaps with their
//! catch-up (a jump in a group's `seq`, `lastSeq` on reconnect).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use tokio_util::sync::CancellationToken;

use chat_domain::config::Secret;
use chat_domain::Error;
use chat_ports::events::{EventTransport, RawHandler, RawRecord, StartAt};
use chat_ports::health::Gate;
use chat_ports::startup::StartupError;

use crate::Db;

/// How often a follower asks Redis whether its subscription is still there: a connection that
/// died without a word (a partition, a paused server) is replaced within this and
/// [`RedisRelay::ANSWER_WITHIN`].
const PING_EVERY: Duration = Duration::from_secs(5);

/// The facts topic as Redis pub/sub: [`EventTransport::publish`] and [`EventTransport::tail`]
/// only. Consumer groups need a log that keeps records (Kafka, or the in-process log); this
/// relay keeps none, and refuses [`EventTransport::consume`].
pub struct RedisRelay {
    client: redis::Client,
    conn: ConnectionManager,
}

impl RedisRelay {
    /// Connecting, subscribing and a ping's answer each wait at most this long.
    const ANSWER_WITHIN: Duration = Duration::from_secs(2);

    /// The relay on `url`, publishing on `conn` (a connection to the same server, shared with
    /// the process's other Redis work).
    pub fn new(url: &Secret, conn: ConnectionManager) -> Result<Self, StartupError> {
        Ok(RedisRelay {
            client: crate::client(url)?,
            conn,
        })
    }

    /// A connection subscribed to `channel`.
    async fn subscribe(&self, channel: &str) -> Result<redis::aio::PubSub, String> {
        let within = |what: &'static str| move |_| format!("{what}: no answer in time");
        let mut pubsub = tokio::time::timeout(Self::ANSWER_WITHIN, self.client.get_async_pubsub())
            .await
            .map_err(within("connecting"))?
            .map_err(|e| e.to_string())?;
        tokio::time::timeout(Self::ANSWER_WITHIN, pubsub.subscribe(channel))
            .await
            .map_err(within("subscribing"))?
            .map_err(|e| e.to_string())?;
        Ok(pubsub)
    }

    /// Hands what arrives on `channel` to `handler` until the connection fails or stops
    /// answering its ping (`false`: subscribe again), or `shutdown` or the handler says stop
    /// (`true`).
    async fn follow(
        &self,
        channel: &str,
        pubsub: redis::aio::PubSub,
        shutdown: &CancellationToken,
        handler: &RawHandler,
        offset: &mut i64,
    ) -> bool {
        let (mut sink, mut messages) = pubsub.split();
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return true,
                message = messages.next() => {
                    let Some(message) = message else {
                        tracing::warn!(%channel, "the Redis subscription ended");
                        return false;
                    };
                    *offset += 1;
                    let record = RawRecord {
                        payload: Arc::from(message.get_payload_bytes()),
                        partition: 0,
                        offset: *offset,
                        key: 0,
                    };
                    if !handler(record).await {
                        return true;
                    }
                }
                _ = ping.tick() => {
                    let answer = tokio::time::timeout(Self::ANSWER_WITHIN, sink.ping::<redis::Value>()).await;
                    if !matches!(answer, Ok(Ok(_))) {
                        tracing::warn!(%channel, "Redis did not answer the subscription's ping");
                        return false;
                    }
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl EventTransport for RedisRelay {
    /// Channels need no creating.
    async fn ensure_topics(&self, _topics: &[String]) -> Result<(), Error> {
        Ok(())
    }

    /// Returns once Redis has handed the fact to the subscribers connected now. Facts published
    /// one after another on this connection reach each subscriber in that order.
    async fn publish(&self, topic: &str, _key: &str, payload: Vec<u8>) -> Result<(), Error> {
        let mut conn = self.conn.clone();
        redis::cmd("PUBLISH")
            .arg(topic)
            .arg(payload)
            .query_async::<i64>(&mut conn)
            .await
            .db()
            .map(|_| ())
    }

    async fn consume(
        &self,
        topic: &str,
        _group: &str,
        _start: StartAt,
        _shutdown: CancellationToken,
        _handler: RawHandler,
    ) -> Result<(), Error> {
        Err(Error::internal(format!(
            "{topic} is relayed over Redis pub/sub, which keeps nothing to consume: only a tail can follow it"
        )))
    }

    /// Subscribes, opens `attached`, and hands every fact to `handler` in the order Redis
    /// relays them. A lost subscription is replaced (backing off up to 5 s while Redis does not
    /// answer) and `attached` is opened again, which tells the process's users of the gate
    /// ([`Gate::openings`]) that facts may have been missed meanwhile; the gate is not closed
    /// while Redis is away, as a Kafka outage does not close it either.
    async fn tail(
        &self,
        topic: &str,
        shutdown: CancellationToken,
        attached: Gate,
        handler: RawHandler,
    ) -> Result<(), Error> {
        let mut offset = 0;
        let mut backoff = Duration::from_millis(100);
        loop {
            let subscribed = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                subscribed = self.subscribe(topic) => subscribed,
            };
            match subscribed {
                Ok(pubsub) => {
                    tracing::info!(channel = %topic, "following over Redis pub/sub");
                    backoff = Duration::from_millis(100);
                    if attached.openings() > 0 {
                        chat_ports::metrics::metrics().resubscribed.inc();
                    }
                    attached.open();
                    if self
                        .follow(topic, pubsub, &shutdown, &handler, &mut offset)
                        .await
                    {
                        return Ok(());
                    }
                }
                Err(e) => {
                    tracing::warn!(channel = %topic, error = %e, "cannot subscribe to the facts; retrying")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}
