//! The in-process RPC bus of `chat-server all`: [`LocalBus`] is both the transport callers use
//! and the listener servers register on, with the same request and reply encoding, the same
//! timeout and the same "nobody serves this pattern" answer as over RabbitMQ.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use chat_domain::rpc::CallContext;
use chat_domain::Error;
use chat_ports::rpc::{no_answer, no_server, RpcHandlers, RpcListener, RpcTransport};
use futures_util::future::BoxFuture;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// The in-process bus. Cheap to clone; clones share the registered handlers.
#[derive(Clone)]
pub struct LocalBus {
    served: Arc<RwLock<Vec<RpcHandlers>>>,
    /// At most this many requests run at once, as RabbitMQ's prefetch bounds a consumer.
    permits: Arc<Semaphore>,
}

impl LocalBus {
    /// A bus running at most `prefetch` requests at once.
    pub fn new(prefetch: u16) -> Self {
        LocalBus {
            served: Arc::default(),
            permits: Arc::new(Semaphore::new(usize::from(prefetch.max(1)))),
        }
    }

    fn handlers_of(&self, pattern: &str) -> Option<RpcHandlers> {
        self.served
            .read()
            .expect("bus poisoned")
            .iter()
            .find(|h| h.serves(pattern))
            .cloned()
    }
}

#[async_trait::async_trait]
impl RpcTransport for LocalBus {
    async fn request(
        &self,
        pattern: &'static str,
        body: Vec<u8>,
        ctx: &CallContext,
        timeout: Duration,
    ) -> Result<Vec<u8>, Error> {
        let handlers = self
            .handlers_of(pattern)
            .ok_or_else(|| no_server(pattern))?;
        let (permits, ctx) = (self.permits.clone(), ctx.clone());
        let deadline = tokio::time::Instant::now() + timeout;
        // Spawned, as over RabbitMQ: a caller that gives up does not cancel the handler. A
        // request still waiting for its turn at its deadline is dropped, as RabbitMQ drops an
        // expired message, rather than carried out for a caller that is gone.
        let call = tokio::spawn(async move {
            let Ok(Ok(_permit)) = tokio::time::timeout_at(deadline, permits.acquire_owned()).await
            else {
                chat_ports::metrics::shed("expired_rpc");
                return None;
            };
            Some(handlers.answer(pattern, body, ctx).await)
        });
        match tokio::time::timeout_at(deadline, call).await {
            Ok(Ok(Some(reply))) => Ok(reply),
            Ok(Ok(None)) | Err(_) => Err(no_answer(pattern, timeout)),
            Ok(Err(e)) => Err(Error::internal(e)),
        }
    }
}

impl RpcListener for LocalBus {
    /// Registers the handlers at once; there is nothing to run: the bus answers in tasks of
    /// its own, which the process's drain waits for.
    fn serve(
        self: Arc<Self>,
        handlers: RpcHandlers,
        _: CancellationToken,
        _: Duration,
    ) -> BoxFuture<'static, ()> {
        self.served.write().expect("bus poisoned").push(handlers);
        Box::pin(async {})
    }
}
