//! Typed request/response over RabbitMQ.
//!
//! Each [`RpcPattern`] names one operation (`user.login`) with its request and response types.
//! A pattern has one durable queue, `<namespace>.rpc.<pattern>`, consumed by every replica of the
//! role that serves it, so replicas share the load. Callers publish with a correlation id and
//! `reply_to = amq.rabbitmq.reply-to` (RabbitMQ's direct reply-to: no reply queue per caller),
//! as `mandatory` messages with publisher confirms, so a pattern nobody serves fails at once with
//! [`ErrorCode::Unavailable`](crate::ErrorCode) instead of waiting for the timeout. Requests
//! carry an expiration equal to the caller's timeout, so a request nobody took in time is dropped
//! rather than executed late.
//!
//! Both sides run a supervisor that reconnects with backoff when the broker goes away, and
//! re-declares and re-consumes on reconnect; a caller that finds the bus down waits (within its
//! timeout) for the reconnection rather than failing at once.
//!
//! Wire format (version 1): the request body is the request as JSON; the reply body is
//! `{"v":1,"ok":<response>}` or `{"v":1,"error":{"code":..,"message":..}}`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::{SelectAll, StreamExt};
use futures_util::FutureExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::Secret;
use crate::error::{Error, ErrorCode};
use crate::health::Probe;
use crate::metrics::{metrics, PatternLabels, RpcLabels};

/// Version of the RPC envelope.
pub const WIRE_VERSION: u8 = 1;
const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";
/// Request queues nobody consumes for this long are deleted by the broker (old namespaces, test
/// runs). A role that comes back re-declares its queues.
const QUEUE_EXPIRES_MS: i64 = 30 * 60 * 1000;

/// One RPC operation: its name and its request and response types.
pub trait RpcPattern: Send + Sync + 'static {
    /// The pattern name, for example `user.login`.
    const NAME: &'static str;
    type Request: Serialize + DeserializeOwned + Send + Sync + 'static;
    type Response: Serialize + DeserializeOwned + Send + 'static;
}

/// Declares an [`RpcPattern`]: `rpc_pattern!(/// doc
/// UserLogin, "user.login", LoginRequest => AuthSession);`
#[macro_export]
macro_rules! rpc_pattern {
    ($(#[$doc:meta])* $name:ident, $wire:literal, $req:ty => $resp:ty) => {
        $(#[$doc])*
        pub struct $name;
        impl $crate::rpc::RpcPattern for $name {
            const NAME: &'static str = $wire;
            type Request = $req;
            type Response = $resp;
        }
    };
}

/// Registers `service.method(request)` as the handler of `Pattern` on an [`RpcServer`]:
/// `let server = rpc_bind!(server, service, GroupGet, get);` where `service` is an `Arc`.
#[macro_export]
macro_rules! rpc_bind {
    ($server:expr, $service:expr, $pattern:ty, $method:ident) => {{
        let service = $service.clone();
        $server.handle::<$pattern, _, _>(move |request, _ctx| {
            let service = service.clone();
            async move { service.$method(request).await }
        })
    }};
}

/// Ids that follow a request across roles, for logs.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    /// Id of the originating HTTP request (or socket event).
    pub request_id: String,
    /// Id tying several requests together; defaults to the request id.
    pub correlation_id: String,
}

impl CallContext {
    /// A context for work that does not come from a request (start-up, background jobs).
    pub fn internal() -> Self {
        let id = uuid::Uuid::new_v4().to_string();
        CallContext {
            request_id: id.clone(),
            correlation_id: id,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct ReplyEnvelope {
    v: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ok: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<Error>,
}

/// The reply body, and the outcome label for metrics (`ok` or the error code), which the caller
/// would otherwise have to parse back out of the body.
fn encode_reply<T: Serialize>(result: Result<T, Error>) -> (Vec<u8>, &'static str) {
    let envelope = match result.map(|v| serde_json::to_value(v)) {
        Ok(Ok(value)) => ReplyEnvelope {
            v: WIRE_VERSION,
            ok: Some(value),
            error: None,
        },
        Ok(Err(e)) => ReplyEnvelope {
            v: WIRE_VERSION,
            ok: None,
            error: Some(Error::internal(e)),
        },
        Err(e) => ReplyEnvelope {
            v: WIRE_VERSION,
            ok: None,
            error: Some(e),
        },
    };
    let outcome = envelope.error.as_ref().map_or("ok", |e| e.code.as_str());
    (serde_json::to_vec(&envelope).unwrap_or_default(), outcome)
}

fn decode_reply<T: DeserializeOwned>(pattern: &str, body: &[u8]) -> Result<T, Error> {
    let envelope: ReplyEnvelope = serde_json::from_slice(body)
        .map_err(|e| Error::internal(format!("malformed reply to {pattern}: {e}")))?;
    if let Some(error) = envelope.error {
        return Err(error);
    }
    T::deserialize(envelope.ok.unwrap_or(serde_json::Value::Null)).map_err(|e| {
        Error::internal(format!(
            "reply to {pattern} does not match its contract: {e}"
        ))
    })
}

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

/// Exponential backoff between reconnection attempts: 100 ms doubling to 5 s.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Backoff(Duration::from_millis(100))
    }
    fn reset(&mut self) {
        self.0 = Duration::from_millis(100);
    }
    async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let delay = self.0;
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
        tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = shutdown.cancelled() => false,
        }
    }
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

/// Calls RPC patterns. Cheap to clone; one connection and channel per client.
#[derive(Clone)]
pub struct RpcClient {
    namespace: String,
    timeout: Duration,
    channel: watch::Receiver<Option<Channel>>,
    pending: Pending,
    status: BusStatus,
    /// Set for the in-process bus of `chat-server all` without RabbitMQ.
    local: Option<LocalBus>,
}

/// The in-process RPC bus (`chat-server all` with no RabbitMQ): servers register their handlers
/// and clients call them directly, with the same request and reply encoding, the same timeout
/// and the same "nobody serves this pattern" answer as over RabbitMQ.
#[derive(Clone, Default)]
pub struct LocalBus {
    handlers: Arc<std::sync::RwLock<HashMap<&'static str, Handler>>>,
}

impl LocalBus {
    pub fn new() -> Self {
        Self::default()
    }

    fn handler(&self, pattern: &str) -> Option<Handler> {
        self.handlers
            .read()
            .expect("bus poisoned")
            .get(pattern)
            .cloned()
    }
}

impl RpcClient {
    /// Starts the client's connection supervisor; it connects in the background and reconnects
    /// until `shutdown` is cancelled.
    pub fn start(
        uri: Secret,
        namespace: &str,
        timeout: Duration,
        name: &str,
        shutdown: CancellationToken,
    ) -> Self {
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
        RpcClient {
            namespace: namespace.to_string(),
            timeout,
            channel: rx,
            pending,
            status,
            local: None,
        }
    }

    /// A client of the in-process bus.
    pub fn local(bus: &LocalBus, timeout: Duration) -> Self {
        let (_, rx) = watch::channel(None);
        let status = BusStatus::default();
        status.set(true);
        RpcClient {
            namespace: String::new(),
            timeout,
            channel: rx,
            pending: Arc::default(),
            status,
            local: Some(bus.clone()),
        }
    }

    /// Connection state, for readiness.
    pub fn status(&self) -> BusStatus {
        self.status.clone()
    }

    /// Calls `P` and waits for its reply, at most the configured timeout.
    pub async fn call<P: RpcPattern>(
        &self,
        request: &P::Request,
        ctx: &CallContext,
    ) -> Result<P::Response, Error> {
        self.call_with_timeout::<P>(request, ctx, self.timeout)
            .await
    }

    /// Calls `P` with an explicit timeout.
    pub async fn call_with_timeout<P: RpcPattern>(
        &self,
        request: &P::Request,
        ctx: &CallContext,
        timeout: Duration,
    ) -> Result<P::Response, Error> {
        let start = Instant::now();
        let result = self.round_trip::<P>(request, ctx, timeout).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.code.as_str(),
        };
        let m = metrics();
        m.rpc_calls
            .get_or_create(&RpcLabels {
                pattern: P::NAME.into(),
                outcome: outcome.into(),
            })
            .inc();
        m.rpc_call_duration
            .get_or_create(&PatternLabels {
                pattern: P::NAME.into(),
            })
            .observe(start.elapsed().as_secs_f64());
        result
    }

    async fn round_trip<P: RpcPattern>(
        &self,
        request: &P::Request,
        ctx: &CallContext,
        timeout: Duration,
    ) -> Result<P::Response, Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        let body = serde_json::to_vec(request).map_err(Error::internal)?;
        if let Some(bus) = &self.local {
            let handler = bus.handler(P::NAME).ok_or_else(|| {
                Error::unavailable(format!("the service answering {} is unavailable", P::NAME))
            })?;
            // Spawned, as over RabbitMQ: a caller that gives up does not cancel the handler.
            let call = tokio::spawn(handler(body, ctx.clone()));
            return match tokio::time::timeout_at(deadline, call).await {
                Ok(Ok((reply, _))) => decode_reply::<P::Response>(P::NAME, &reply),
                Ok(Err(e)) => Err(Error::internal(e)),
                Err(_) => Err(Error::timeout(format!(
                    "{} did not answer within {} ms",
                    P::NAME,
                    timeout.as_millis()
                ))),
            };
        }
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
            .with_type(ShortString::from(P::NAME))
            .with_expiration(ShortString::from(timeout.as_millis().to_string()))
            .with_headers(headers);

        let queue = queue_name(&self.namespace, P::NAME);
        let unavailable =
            || Error::unavailable(format!("the service answering {} is unavailable", P::NAME));
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
                tracing::warn!(pattern = P::NAME, error = %e, "rpc publish failed");
                unavailable()
            })?;
        match tokio::time::timeout_at(deadline, confirm).await {
            Ok(Ok(Confirmation::Ack(None))) | Ok(Ok(Confirmation::NotRequested)) => {}
            Ok(Ok(Confirmation::Ack(Some(_)))) => return Err(unavailable()),
            Ok(Ok(Confirmation::Nack(_))) | Ok(Err(_)) => return Err(unavailable()),
            Err(_) => {
                return Err(Error::timeout(format!(
                    "{} did not answer in time",
                    P::NAME
                )))
            }
        }

        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(reply)) => decode_reply::<P::Response>(P::NAME, &reply),
            // The sender was dropped: the connection went away before the reply came.
            Ok(Err(_)) => Err(unavailable()),
            Err(_) => Err(Error::timeout(format!(
                "{} did not answer within {} ms",
                P::NAME,
                timeout.as_millis()
            ))),
        }
    }

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
    let mut backoff = Backoff::new();
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

type BoxFuture = Pin<Box<dyn Future<Output = (Vec<u8>, &'static str)> + Send>>;
type Handler = Arc<dyn Fn(Vec<u8>, CallContext) -> BoxFuture + Send + Sync>;

/// Serves RPC patterns. Build it with [`RpcServer::handle`] for each pattern, then [`RpcServer::run`].
pub struct RpcServer {
    namespace: String,
    prefetch: u16,
    handlers: HashMap<&'static str, Handler>,
    status: BusStatus,
}

impl RpcServer {
    /// A server for `namespace`, handling at most `prefetch` requests at once.
    pub fn new(namespace: &str, prefetch: u16) -> Self {
        RpcServer {
            namespace: namespace.to_string(),
            prefetch,
            handlers: HashMap::new(),
            status: BusStatus::default(),
        }
    }

    /// Registers the handler of pattern `P`.
    pub fn handle<P, F, Fut>(mut self, handler: F) -> Self
    where
        P: RpcPattern,
        F: Fn(P::Request, CallContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<P::Response, Error>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let erased: Handler = Arc::new(move |body: Vec<u8>, ctx: CallContext| {
            let handler = handler.clone();
            Box::pin(async move {
                let result = match serde_json::from_slice::<P::Request>(&body) {
                    Ok(request) => handler(request, ctx).await,
                    Err(e) => Err(Error::bad_request(format!(
                        "malformed {} request: {e}",
                        P::NAME
                    ))),
                };
                encode_reply(result)
            })
        });
        self.handlers.insert(P::NAME, erased);
        self
    }

    /// Serves the registered patterns on the in-process bus instead of RabbitMQ.
    /// At most `prefetch` requests run at once, as over RabbitMQ.
    pub fn serve_local(self, bus: &LocalBus) {
        let permits = Arc::new(tokio::sync::Semaphore::new(usize::from(self.prefetch)));
        let mut handlers = bus.handlers.write().expect("bus poisoned");
        for (pattern, handler) in self.handlers {
            let permits = permits.clone();
            let bounded: Handler = Arc::new(move |body: Vec<u8>, ctx: CallContext| {
                let (permits, handler) = (permits.clone(), handler.clone());
                Box::pin(async move {
                    let _permit = permits.acquire_owned().await;
                    handler(body, ctx).await
                })
            });
            handlers.insert(pattern, bounded);
        }
    }

    /// The patterns this server answers.
    pub fn patterns(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.handlers.keys().copied().collect();
        names.sort_unstable();
        names
    }

    /// Connection state, for readiness.
    pub fn status(&self) -> BusStatus {
        self.status.clone()
    }

    /// Consumes and answers requests until `shutdown` is cancelled, reconnecting when the broker
    /// goes away. On shutdown it stops taking requests and waits up to `grace` for those in flight.
    pub async fn run(
        mut self,
        uri: Secret,
        name: &str,
        shutdown: CancellationToken,
        grace: Duration,
    ) {
        let handlers = Arc::new(std::mem::take(&mut self.handlers));
        let mut backoff = Backoff::new();
        let in_flight = tokio_util::task::TaskTracker::new();
        loop {
            match self.consume(&uri, name, &handlers).await {
                Ok((connection, channel, mut consumers)) => {
                    tracing::info!(connection = %name, patterns = ?handlers.keys().collect::<Vec<_>>(), "rpc server consuming");
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
        uri: &Secret,
        name: &str,
        handlers: &HashMap<&'static str, Handler>,
    ) -> Result<(Connection, Channel, SelectAll<Consumer>), lapin::Error> {
        let connection = connect(uri, name).await?;
        let channel = connection.create_channel().await?;
        channel
            .basic_qos(self.prefetch, BasicQosOptions::default())
            .await?;
        let mut args = FieldTable::default();
        args.insert("x-expires".into(), AMQPValue::LongLongInt(QUEUE_EXPIRES_MS));
        let mut consumers = SelectAll::new();
        for pattern in handlers.keys() {
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

async fn answer(
    channel: Channel,
    handlers: Arc<HashMap<&'static str, Handler>>,
    mut delivery: Delivery,
) {
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
        let (reply, outcome) = match handlers.get(pattern.as_str()) {
            Some(handler) => {
                // A panicking handler must still answer (and ack), or the caller waits for nothing.
                match std::panic::AssertUnwindSafe(handler(body, ctx))
                    .catch_unwind()
                    .await
                {
                    Ok(reply) => reply,
                    Err(_) => encode_reply::<()>(Err(Error::internal(format!(
                        "handler of {pattern} panicked"
                    )))),
                }
            }
            None => encode_reply::<()>(Err(Error::new(
                ErrorCode::BadRequest,
                format!("unknown pattern {pattern}"),
            ))),
        };

        metrics()
            .rpc_handled
            .get_or_create(&RpcLabels {
                pattern: pattern.clone(),
                outcome: outcome.into(),
            })
            .inc();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_carry_either_a_value_or_an_error() {
        let (ok, outcome) = encode_reply::<u32>(Ok(7));
        assert_eq!(outcome, "ok");
        assert_eq!(decode_reply::<u32>("p", &ok).unwrap(), 7);
        let (err, outcome) = encode_reply::<u32>(Err(Error::conflict("taken")));
        assert_eq!(outcome, "conflict");
        assert_eq!(
            decode_reply::<u32>("p", &err).unwrap_err().code,
            ErrorCode::Conflict
        );
        let (unit, _) = encode_reply::<()>(Ok(()));
        decode_reply::<()>("p", &unit).unwrap();
    }

    #[test]
    fn queues_are_namespaced() {
        assert_eq!(queue_name("prod", "user.login"), "prod.rpc.user.login");
    }
}
