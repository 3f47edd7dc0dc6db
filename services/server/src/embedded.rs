//! The embedded family of `chat-server all`: every role in this process, on one SQLite file
//! under `CHAT_DATA_DIR`, the in-process event log and RPC bus, and presence and rate limits in
//! memory.

use std::sync::Arc;

use chat_domain::config::Config;
use chat_embedded::{LocalBus, LocalLog, MemoryPresence, MemoryRateLimiter, SqliteDb, SqliteProbe};
use chat_ports::events::EventLog;
use chat_ports::health::Probe;
use chat_ports::rpc::{RpcClient, RpcListener};
use chat_ports::store::Stores;

use crate::app::StartError;
use crate::family::{Cache, Family};

pub struct Embedded {
    config: Config,
    stores: Option<Stores>,
    cache: Cache,
    events: EventLog,
    bus: Arc<LocalBus>,
    probes: Vec<Arc<dyn Probe>>,
}

impl Embedded {
    pub fn new(config: &Config) -> Self {
        Embedded {
            config: config.clone(),
            stores: None,
            cache: Cache {
                limiter: Arc::new(MemoryRateLimiter::default()),
                presence: Arc::new(MemoryPresence::default()),
                revocations: Arc::new(chat_embedded::MemoryRevocations::default()),
            },
            events: EventLog::new(Arc::new(LocalLog::default()), &config.namespace),
            bus: Arc::new(LocalBus::new(config.rpc_prefetch)),
            probes: Vec::new(),
        }
    }
}

#[async_trait::async_trait]
impl Family for Embedded {
    async fn stores(&mut self) -> Result<Stores, StartError> {
        if let Some(stores) = &self.stores {
            return Ok(stores.clone());
        }
        let file = self.config.data_dir.join("chat.db");
        let db = SqliteDb::open(&file, self.config.assets.clone())?;
        self.probes.push(Arc::new(SqliteProbe(db.clone())));
        Ok(self.stores.insert(db.stores()).clone())
    }

    async fn cache(&mut self) -> Result<Cache, StartError> {
        Ok(self.cache.clone())
    }

    async fn events(&mut self) -> Result<EventLog, StartError> {
        Ok(self.events.clone())
    }

    fn rpc_client(&mut self) -> RpcClient {
        RpcClient::new(self.bus.clone(), self.config.rpc_timeout)
    }

    fn rpc_listener(&mut self) -> Arc<dyn RpcListener> {
        self.bus.clone()
    }

    fn probes(&self) -> Vec<Arc<dyn Probe>> {
        self.probes.clone()
    }
}
