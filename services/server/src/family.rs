//! The adapter families: where a process gets its ports. A role asks for what it uses
//! ([`Family::stores`], [`Family::events`], …) and the family connects it on first use, so a role
//! can never start without a port it needs, and never connects to a server it does not use.
//!
//! - [`crate::production`] (feature `production`): MongoDB, Kafka, RabbitMQ and Redis.
//! - [`crate::embedded`] (feature `embedded`): SQLite, the in-process log and bus, memory.

use std::sync::Arc;

use chat_ports::events::EventLog;
use chat_ports::health::Probe;
use chat_ports::rpc::{RpcClient, RpcListener};
use chat_ports::store::{Presence, RateLimiter, Revocations, Stores};

use crate::app::StartError;

/// Rate limits and presence.
#[derive(Clone)]
pub struct Cache {
    pub limiter: Arc<dyn RateLimiter>,
    pub presence: Arc<dyn Presence>,
    /// Sessions ended before their access tokens expire.
    pub revocations: Arc<dyn Revocations>,
}

/// One adapter family: every port, connected when first asked for.
#[async_trait::async_trait]
pub trait Family: Send {
    /// Every store (the database, and file bytes).
    async fn stores(&mut self) -> Result<Stores, StartError>;
    /// Rate limits and presence.
    async fn cache(&mut self) -> Result<Cache, StartError>;
    /// The event log, its topics created.
    async fn events(&mut self) -> Result<EventLog, StartError>;
    /// A client of the roles serving RPC patterns.
    fn rpc_client(&mut self) -> RpcClient;
    /// Where this process serves its own RPC patterns.
    fn rpc_listener(&mut self) -> Arc<dyn RpcListener>;
    /// Readiness probes of everything connected so far.
    fn probes(&self) -> Vec<Arc<dyn Probe>>;
}
