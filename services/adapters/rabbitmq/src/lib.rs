//! The RPC transport on RabbitMQ: [`AmqpClient`] sends requests, [`AmqpListener`] serves them.
//!
//! A pattern has one durable queue, `<namespace>.rpc.<pattern>`, consumed by every replica of the
//! role that serves it, so replicas share the load. Callers publish with a correlation id and
//! `reply_to = amq.rabbitmq.reply-to` (RabbitMQ's direct reply-to: no reply queue per caller),
//! as `mandatory` messages with publisher confirms, so a pattern nobody serves fails at once with
//! `unavailable` instead of waiting for the timeout. Requests carry an expiration equal to the
//! caller's timeout, so a request nobody took in time is dropped rather than executed late.
//!
//! Both sides run a supervisor that reconnects with backoff when the broker goes away, and
//! re-declares and re-consumes on reconnect; a caller that finds the bus down waits (within its
//! timeout) for the reconnection rather than failing at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat_domain::config::Secret;
use chat_domain::rpc::CallContext;
use chat_domain::Error;
use chat_ports::health::Probe;
use chat_ports::rpc::{no_answer, no_server, Backoff, RpcHandlers, RpcListener, RpcTransport};
use futures_util::future::BoxFuture;
use futures_util::stream::{SelectAll, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer};
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";
/// Request queues nobody consumes for this long are deleted by the broker (old namespaces, test
/// runs). A role that comes back re-declares its queues.
const QUEUE_EXPIRES_MS: i64 = 30 * 60 * 1000;

fn queue_name(namespace: &str, pattern: &str) -> String {
    format!("{namespace}.rpc.{pattern}")
}

fn header_string(headers: &Option<FieldTable>, key: &str) -> Option<String> {
    match headers.as_ref()?.inner().get(key)? {
        AMQPValue::LongString(s) => Some(s.to_string()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

async fn connect(uri: &Secret, name: &str) -> Result<Connection, lapin::Error> {
    let props =
        ConnectionProperties::default().with_connection_name(LongString::from(name.to_string()));
    Connection::connect(uri.expose(), props).await
}

/// Whether a process currently holds a working connection to the broker (for readiness).
#[derive(Clone, Default)]
pub struct BusStatus(Arc<AtomicBool>);

impl BusStatus {
    pub fn is_connected(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
    fn set(&self, connected: bool) {
        self.0.store(connected, Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl Probe for BusStatus {
    fn name(&self) -> &'static str {
        "rabbitmq"
    }
    async fn check(&self) -> Result<(), String> {
        if self.is_connected() {
            Ok(())
        } else {
            Err("not connected".into())
        }
    }
}

// ------------------------------------------------------------------------------------- client

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Vec<u8>>>>>;

/// Sends requests over RabbitMQ. Cheap to clone; one connection and channel per client.
#[derive(Clone)]
pub struct AmqpClient {
    namespace: String,
    channel: watch::Receiver<Option<Channel>>,
    pending: Pending,
    status: BusStatus,
}

impl AmqpClient {
    /// Starts the client's connection supervisor; it connects in the background and reconnects
    /// until `shutdown` is cancelled. `name` names the connection in RabbitMQ's management UI.
    pub fn start(uri: Secret, namespace: &str, name: &str, shutdown: CancellationToken) -> Self {
        let (tx, rx) = watch::channel(None);
        let pending: Pending = Arc::default();
        let status = BusStatus::default();
        tokio::spawn(client_supervisor(
            uri,
            name.to_string(),
            tx,
            pending.clone(),
            status.clone(),
            shutdown,
        ));
        AmqpClient {
            namespace: namespace.to_string(),
            channel: rx,
            pending,
            status,
        }
    }

    /// Connection state, for readiness.
    pub fn status(&self) -> BusStatus {
        self.status.clone()
    }
}

#[async_trait::async_trait]
impl RpcTransport for AmqpClient {
    async fn request(
        &self,
        pattern: &'static str,
        body: Vec<u8>,
        ctx: &CallContext,
        timeout: Duration,
    ) -> Result<Vec<u8>, Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        let channel = self.wait_for_channel(deadline).await?;

        let correlation_id = uuid::Uuid::new_v4().to_string();
        let (tx, rx) = oneshot::channel();
        let _guard = PendingGuard::insert(&self.pending, correlation_id.clone(), tx);

        let mut headers = FieldTable::default();
        headers.insert(
            "x-request-id".into(),
            AMQPValue::LongString(ctx.request_id.clone().into()),
        );
        headers.insert(
            "x-correlation-id".into(),
            AMQPValue::LongString(ctx.correlation_id.clone().into()),
        );
        let properties = BasicProperties::default()
            .with_correlation_id(ShortString::from(correlation_id))
            .with_reply_to(ShortString::from(DIRECT_REPLY_TO))
            .with_content_type("application/json".into())
            .with_type(ShortString::from(pattern))
            .with_expiration(ShortString::from(timeout.as_millis().to_string()))
            .with_headers(headers);

        let queue = queue_name(&self.namespace, pattern);
        let unavailable = || no_server(pattern);
        let confirm = channel
            .basic_publish(
                "",
                &queue,
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &body,
                properties,
            )
            .await
            .map_err(|e| {
                tracing::warn!(pattern = pattern, error = %e, "rpc publish failed");
                unavailable()
            })?;
        match tokio::time::timeout_at(deadline, confirm).await {
            Ok(Ok(Confirmation::Ack(None))) | Ok(Ok(Confirmation::NotRequested)) => {}
            Ok(Ok(Confirmation::Ack(Some(_)))) => return Err(unavailable()),
            Ok(Ok(Confirmation::Nack(_))) | Ok(Err(_)) => return Err(unavailable()),
            Err(_) => return Err(no_answer(pattern, timeout)),
        }

        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(reply)) => Ok(reply),
            // The sender was dropped: the connection went away before the reply came.
            Ok(Err(_)) => Err(unavailable()),
            Err(_) => Err(no_answer(pattern, timeout)),
        }
    }
}

impl AmqpClient {
    async fn wait_for_channel(&self, deadline: tokio::time::Instant) -> Result<Channel, Error> {
        let mut rx = self.channel.clone();
        let found = tokio::time::timeout_at(
            deadline,
            rx.wait_for(|c| c.as_ref().is_some_and(|c| c.status().connected())),
        )
        .await;
        match found {
            Ok(Ok(channel)) => Ok(channel.clone().expect("checked by wait_for")),
            _ => Err(Error::unavailable("the message bus is unavailable")),
        }
    }
}

/// Removes a pending call however the call ends (reply, timeout, error or cancellation).
struct PendingGuard {
    pending: Pending,
    id: String,
}

impl PendingGuard {
    fn insert(pending: &Pending, id: String, tx: oneshot::Sender<Vec<u8>>) -> Self {
        pending
            .lock()
            .expect("pending map poisoned")
            .insert(id.clone(), tx);
        PendingGuard {
            pending: pending.clone(),
            id,
        }
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        if let Ok(mut map) = self.pending.lock() {
            map.remove(&self.id);
        }
    }
}

async fn open_client_channel(
    uri: &Secret,
    name: &str,
) -> Result<(Connection, Channel, Consumer), lapin::Error> {
    let connection = connect(uri, name).await?;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let consumer = channel
        .basic_consume(
            DIRECT_REPLY_TO,
            "",
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok((connection, channel, consumer))
}

async fn client_supervisor(
    uri: Secret,
    name: String,
    tx: watch::Sender<Option<Channel>>,
    pending: Pending,
    status: BusStatus,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::default();
    loop {
        match open_client_channel(&uri, &name).await {
            Ok((connection, channel, mut replies)) => {
                tracing::info!(connection = %name, "rpc client connected");
                backoff.reset();
                let lost = watch_connection(&connection);
                status.set(true);
                tx.send_replace(Some(channel));
                loop {
                    tokio::select! {
                        delivery = replies.next() => match delivery {
                            Some(Ok(delivery)) => deliver_reply(&pending, delivery),
                            Some(Err(e)) => { tracing::warn!(error = %e, "rpc reply consumer failed"); break; }
                            None => break,
                        },
                        _ = lost.notified() => break,
                        _ = shutdown.cancelled() => {
                            status.set(false);
                            tx.send_replace(None);
                            let _ = connection.close(200, "shutdown").await;
                            return;
                        }
                    }
                }
                status.set(false);
                tx.send_replace(None);
                // Calls waiting on this connection cannot get their reply any more.
                pending.lock().expect("pending map poisoned").clear();
                tracing::warn!(connection = %name, "rpc client lost the broker; reconnecting");
            }
            Err(e) => {
                tracing::warn!(connection = %name, error = %e, "rpc client cannot reach the broker; retrying")
            }
        }
        if !backoff.wait(&shutdown).await {
            return;
        }
    }
}

fn deliver_reply(pending: &Pending, delivery: Delivery) {
    let Some(id) = delivery
        .properties
        .correlation_id()
        .as_ref()
        .map(|c| c.to_string())
    else {
        return;
    };
    if let Some(tx) = pending.lock().expect("pending map poisoned").remove(&id) {
        let _ = tx.send(delivery.data);
    }
}

/// A notification fired when the connection reports an error (broker stopped, socket closed).
fn watch_connection(connection: &Connection) -> Arc<tokio::sync::Notify> {
    let notify = Arc::new(tokio::sync::Notify::new());
    let n = notify.clone();
    connection.on_error(move |e| {
        tracing::warn!(error = %e, "amqp connection error");
        n.notify_one();
    });
    notify
}

// ------------------------------------------------------------------------------------- server

/// Serves RPC handlers from their RabbitMQ queues.
pub struct AmqpListener {
    uri: Secret,
    namespace: String,
    name: String,
    prefetch: u16,
    status: BusStatus,
}

impl AmqpListener {
    /// A listener for `namespace`, handling at most `prefetch` requests at once. `name` names the
    /// connection in RabbitMQ's management UI.
    pub fn new(uri: Secret, namespace: &str, name: &str, prefetch: u16) -> Self {
        AmqpListener {
            uri,
            namespace: namespace.to_string(),
            name: name.to_string(),
            prefetch,
            status: BusStatus::default(),
        }
    }

    /// Connection state, for readiness.
    pub fn status(&self) -> BusStatus {
        self.status.clone()
    }
}

impl RpcListener for AmqpListener {
    fn serve(
        self: Arc<Self>,
        handlers: RpcHandlers,
        shutdown: CancellationToken,
        grace: Duration,
    ) -> BoxFuture<'static, ()> {
        Box::pin(async move { self.run(handlers, shutdown, grace).await })
    }
}

impl AmqpListener {
    /// Consumes and answers requests until `shutdown` is cancelled, reconnecting when the broker
    /// goes away. On shutdown it stops taking requests and waits up to `grace` for those in flight.
    async fn run(&self, handlers: RpcHandlers, shutdown: CancellationToken, grace: Duration) {
        let name = &self.name;
        let mut backoff = Backoff::default();
        let in_flight = tokio_util::task::TaskTracker::new();
        loop {
            match self.consume(&handlers).await {
                Ok((connection, channel, mut consumers)) => {
                    tracing::info!(connection = %name, patterns = ?handlers.patterns(), "rpc server consuming");
                    backoff.reset();
                    self.status.set(true);
                    let lost = watch_connection(&connection);
                    loop {
                        tokio::select! {
                            delivery = consumers.next() => match delivery {
                                Some(Ok(delivery)) => {
                                    in_flight.spawn(answer(channel.clone(), handlers.clone(), delivery));
                                }
                                Some(Err(e)) => { tracing::warn!(error = %e, "rpc consumer failed"); break; }
                                None => break,
                            },
                            _ = lost.notified() => break,
                            _ = shutdown.cancelled() => {
                                self.status.set(false);
                                drop(consumers);
                                in_flight.close();
                                if tokio::time::timeout(grace, in_flight.wait()).await.is_err() {
                                    tracing::warn!("rpc requests still running at the end of the shutdown grace period");
                                }
                                let _ = connection.close(200, "shutdown").await;
                                return;
                            }
                        }
                    }
                    self.status.set(false);
                    tracing::warn!(connection = %name, "rpc server lost the broker; reconnecting");
                }
                Err(e) => {
                    tracing::warn!(connection = %name, error = %e, "rpc server cannot reach the broker; retrying")
                }
            }
            if !backoff.wait(&shutdown).await {
                return;
            }
        }
    }

    async fn consume(
        &self,
        handlers: &RpcHandlers,
    ) -> Result<(Connection, Channel, SelectAll<Consumer>), lapin::Error> {
        let name = &self.name;
        let connection = connect(&self.uri, name).await?;
        let channel = connection.create_channel().await?;
        channel
            .basic_qos(self.prefetch, BasicQosOptions::default())
            .await?;
        let mut args = FieldTable::default();
        args.insert("x-expires".into(), AMQPValue::LongLongInt(QUEUE_EXPIRES_MS));
        let mut consumers = SelectAll::new();
        for pattern in handlers.patterns() {
            let queue = queue_name(&self.namespace, pattern);
            channel
                .queue_declare(
                    &queue,
                    QueueDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    args.clone(),
                )
                .await?;
            let consumer = channel
                .basic_consume(
                    &queue,
                    &format!("{name}.{pattern}"),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            consumers.push(consumer);
        }
        Ok((connection, channel, consumers))
    }
}

async fn answer(channel: Channel, handlers: RpcHandlers, mut delivery: Delivery) {
    let body = std::mem::take(&mut delivery.data);
    let props = &delivery.properties;
    let pattern = props
        .kind()
        .as_ref()
        .map(|k| k.to_string())
        .unwrap_or_default();
    let ctx = CallContext {
        request_id: header_string(props.headers(), "x-request-id").unwrap_or_default(),
        correlation_id: header_string(props.headers(), "x-correlation-id").unwrap_or_default(),
    };
    let span = tracing::info_span!("rpc", %pattern, request_id = %ctx.request_id, correlation_id = %ctx.correlation_id);
    async {
        let reply = handlers.answer(&pattern, body, ctx).await;
        if let (Some(reply_to), Some(correlation_id)) = (props.reply_to(), props.correlation_id()) {
            let reply_props = BasicProperties::default()
                .with_correlation_id(correlation_id.clone())
                .with_content_type("application/json".into());
            if let Err(e) = channel
                .basic_publish(
                    "",
                    reply_to.as_str(),
                    BasicPublishOptions::default(),
                    &reply,
                    reply_props,
                )
                .await
            {
                tracing::warn!(error = %e, "could not send rpc reply");
            }
        }
        if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
            tracing::warn!(error = %e, "could not ack rpc request");
        }
    }
    .instrument(span)
    .await
}
