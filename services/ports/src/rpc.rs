//! The RPC port: typed request/response between roles over a transport (RabbitMQ in
//! `chat-rabbitmq`, the in-process bus in `chat-embedded`).
//!
//! - [`RpcTransport`] carries one encoded request to whoever serves its pattern and brings back
//!   the encoded reply, or fails with `unavailable` (nobody serves it) or `timeout`.
//! - [`RpcListener`] serves a set of [`RpcHandlers`] until shutdown.
//! - [`RpcClient`] and [`RpcServer`] are the typed sides every role uses; they encode with
//!   [`chat_domain::rpc`] and record the metrics, so both transports behave the same.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;

use chat_domain::rpc::{decode_reply, encode_reply, CallContext, RpcPattern};
use chat_domain::{Error, ErrorCode};

use crate::metrics::{metrics, PatternLabels, RpcLabels};

/// Carries encoded requests to the role serving their pattern.
#[async_trait::async_trait]
pub trait RpcTransport: Send + Sync {
    /// Sends `body` to the server of `pattern` and waits at most `timeout` for the reply body.
    async fn request(
        &self,
        pattern: &'static str,
        body: Vec<u8>,
        ctx: &CallContext,
        timeout: Duration,
    ) -> Result<Vec<u8>, Error>;
}

/// Serves handlers on a transport.
pub trait RpcListener: Send + Sync {
    /// Starts answering requests for the patterns of `handlers`; the returned task runs until
    /// `shutdown`, then waits up to `grace` for the requests in flight. What can be done at once
    /// (registering on an in-process bus) is done before this returns, so callers started after
    /// it find the patterns served.
    fn serve(
        self: Arc<Self>,
        handlers: RpcHandlers,
        shutdown: CancellationToken,
        grace: Duration,
    ) -> BoxFuture<'static, ()>;
}

/// `unavailable`: nobody serves `pattern` now.
pub fn no_server(pattern: &str) -> Error {
    Error::unavailable(format!("the service answering {pattern} is unavailable"))
}

/// `timeout`: the server of `pattern` did not answer within `timeout`.
pub fn no_answer(pattern: &str, timeout: Duration) -> Error {
    Error::timeout(format!(
        "{pattern} did not answer within {} ms",
        timeout.as_millis()
    ))
}

/// Calls RPC patterns. Cheap to clone.
#[derive(Clone)]
pub struct RpcClient {
    transport: Arc<dyn RpcTransport>,
    timeout: Duration,
}

impl RpcClient {
    /// A client on `transport` whose calls wait at most `timeout` by default.
    pub fn new(transport: Arc<dyn RpcTransport>, timeout: Duration) -> Self {
        RpcClient { transport, timeout }
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
        let result = match serde_json::to_vec(request) {
            Ok(body) => match self.transport.request(P::NAME, body, ctx, timeout).await {
                Ok(reply) => decode_reply::<P::Response>(P::NAME, &reply),
                Err(e) => Err(e),
            },
            Err(e) => Err(Error::internal(e)),
        };
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

/// An erased handler: the encoded reply and its outcome label (`ok` or the error code).
type Handler =
    Arc<dyn Fn(Vec<u8>, CallContext) -> BoxFuture<'static, (Vec<u8>, &'static str)> + Send + Sync>;

/// The patterns a process serves, built with [`RpcServer::handle`] and handed to an
/// [`RpcListener`].
#[derive(Default)]
pub struct RpcServer {
    handlers: HashMap<&'static str, Handler>,
}

impl RpcServer {
    pub fn new() -> Self {
        Self::default()
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

    /// Adds every handler of `other`.
    pub fn merge(mut self, other: RpcServer) -> Self {
        self.handlers.extend(other.handlers);
        self
    }

    /// The handlers, ready for a listener.
    pub fn into_handlers(self) -> RpcHandlers {
        RpcHandlers(Arc::new(self.handlers))
    }
}

/// The handlers of every pattern a process serves. Cheap to clone.
#[derive(Clone, Default)]
pub struct RpcHandlers(Arc<HashMap<&'static str, Handler>>);

impl RpcHandlers {
    /// The patterns served, sorted.
    pub fn patterns(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.0.keys().copied().collect();
        names.sort_unstable();
        names
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `pattern` is served here.
    pub fn serves(&self, pattern: &str) -> bool {
        self.0.contains_key(pattern)
    }

    /// Answers one request: the encoded reply, whatever happens (an unknown pattern, a
    /// malformed request or a panicking handler all get an error reply, so the caller never
    /// waits for nothing). Counted in `chat_rpc_handled_total`.
    pub async fn answer(&self, pattern: &str, body: Vec<u8>, ctx: CallContext) -> Vec<u8> {
        let (reply, outcome) = match self.0.get(pattern) {
            Some(handler) => std::panic::AssertUnwindSafe(handler(body, ctx))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| {
                    encode_reply::<()>(Err(Error::internal(format!(
                        "handler of {pattern} panicked"
                    ))))
                }),
            None => encode_reply::<()>(Err(Error::new(
                ErrorCode::BadRequest,
                format!("unknown pattern {pattern}"),
            ))),
        };
        metrics()
            .rpc_handled
            .get_or_create(&RpcLabels {
                pattern: pattern.to_string(),
                outcome: outcome.into(),
            })
            .inc();
        reply
    }
}

/// Exponential backoff between reconnection attempts: 100 ms doubling to 5 s.
pub struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Backoff(Duration::from_millis(100))
    }
}

impl Backoff {
    pub fn reset(&mut self) {
        *self = Self::default();
    }
    /// Waits the current delay and doubles it; false when `shutdown` came first.
    pub async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let delay = self.0;
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
        tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = shutdown.cancelled() => false,
        }
    }
}
