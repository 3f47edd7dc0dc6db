//! The production family: MongoDB (files in GridFS), Kafka, RabbitMQ and Redis, each connected
//! when a role first asks for it and waited for up to `STARTUP_TIMEOUT_SECONDS` (in Kubernetes
//! pods start in any order).

use chat_ports::startup::StartupError;
use std::sync::Arc;

use chat_domain::config::{Config, FactsRelay};
use chat_domain::events::{COMMANDS, FACTS};
use chat_kafka::KafkaLog;
use chat_mongodb::Database;
use chat_ports::events::EventLog;
use chat_ports::health::Probe;
use chat_ports::rpc::{RpcClient, RpcListener};
use chat_ports::store::Stores;
use chat_rabbitmq::{AmqpClient, AmqpListener};
use chat_redis::ConnectionManager;
use chat_redis::{RedisPresence, RedisProbe, RedisRateLimiter, RedisRelay};
use tokio_util::sync::CancellationToken;

use crate::app::StartError;
use crate::family::{Cache, Family};

/// Partitions of the commands and facts topics (groups are spread over them by id).
const KAFKA_PARTITIONS: i32 = 6;

pub struct Production {
    config: Config,
    /// Names this process's connections (`chat-server-<role>`), in the servers' client lists.
    app_name: String,
    shutdown: CancellationToken,
    stores: Option<Stores>,
    cache: Option<Cache>,
    redis: Option<ConnectionManager>,
    events: Option<EventLog>,
    rpc: Option<RpcClient>,
    probes: Vec<Arc<dyn Probe>>,
}

impl Production {
    pub fn new(config: &Config, app_name: &str, shutdown: &CancellationToken) -> Self {
        Production {
            config: config.clone(),
            app_name: app_name.to_string(),
            shutdown: shutdown.clone(),
            stores: None,
            cache: None,
            redis: None,
            events: None,
            rpc: None,
            probes: Vec::new(),
        }
    }

    /// Connects to MongoDB and creates the indexes (what `chat-server migrate` does).
    pub async fn database(&self) -> Result<Database, StartError> {
        let config = &self.config;
        let db = chat_mongodb::connect(
            &config.mongodb_uri,
            &config.mongodb_database(),
            &self.app_name,
            config.startup_timeout,
        )
        .await?;
        let n = chat_mongodb::ensure_indexes(&db)
            .await
            .map_err(StartupError::step("creating the indexes"))?;
        tracing::info!(indexes = n, database = %config.mongodb_database(), "indexes are in place");
        Ok(db)
    }

    /// The process's one Redis connection (rate limits, presence, ended sessions and the facts
    /// relay share it), connected when first needed.
    async fn redis(&mut self) -> Result<ConnectionManager, StartError> {
        if let Some(conn) = &self.redis {
            return Ok(conn.clone());
        }
        let config = &self.config;
        let conn = chat_redis::connect(&config.redis_url, config.startup_timeout).await?;
        self.probes.push(Arc::new(RedisProbe(conn.clone())));
        Ok(self.redis.insert(conn).clone())
    }
}

#[async_trait::async_trait]
impl Family for Production {
    async fn stores(&mut self) -> Result<Stores, StartError> {
        if let Some(stores) = &self.stores {
            return Ok(stores.clone());
        }
        let db = self.database().await?;
        self.probes
            .push(Arc::new(chat_mongodb::MongoProbe(db.clone())));
        let stores = chat_mongodb::stores(&db, self.config.assets.clone());
        Ok(self.stores.insert(stores).clone())
    }

    async fn cache(&mut self) -> Result<Cache, StartError> {
        if let Some(cache) = &self.cache {
            return Ok(cache.clone());
        }
        let conn = self.redis().await?;
        let config = &self.config;
        let cache = Cache {
            limiter: Arc::new(RedisRateLimiter::new(conn.clone(), &config.namespace)),
            revocations: Arc::new(chat_redis::RedisRevocations::new(
                conn.clone(),
                &config.namespace,
            )),
            presence: Arc::new(RedisPresence::new(conn, &config.namespace)),
        };
        Ok(self.cache.insert(cache).clone())
    }

    async fn events(&mut self) -> Result<EventLog, StartError> {
        if let Some(events) = &self.events {
            return Ok(events.clone());
        }
        let config = &self.config;
        let kafka = KafkaLog::new(
            &config.kafka_brokers,
            KAFKA_PARTITIONS,
            config.kafka_fetch_wait,
        )
        .map_err(StartupError::step("the Kafka client"))?;
        self.probes.push(Arc::new(kafka.probe()));
        let mut log = EventLog::new(Arc::new(kafka), &config.namespace);
        if config.facts_relay == FactsRelay::Redis {
            let url = config.redis_url.clone();
            let relay = RedisRelay::new(&url, self.redis().await?)?;
            log = log.route(FACTS, Arc::new(relay));
        }
        let config = &self.config;
        chat_ports::startup::wait_for(
            "kafka",
            &config.kafka_brokers,
            config.startup_timeout,
            || log.ensure_topics(&[COMMANDS, FACTS]),
        )
        .await?;
        Ok(self.events.insert(log).clone())
    }

    fn rpc_client(&mut self) -> RpcClient {
        if let Some(rpc) = &self.rpc {
            return rpc.clone();
        }
        let config = &self.config;
        let client = AmqpClient::start(
            config.rabbitmq_uri.clone(),
            &config.namespace,
            &format!("{}-rpc-client", self.app_name),
            self.shutdown.clone(),
        );
        self.probes.push(Arc::new(client.status()));
        let rpc = RpcClient::new(Arc::new(client), config.rpc_timeout);
        self.rpc.insert(rpc).clone()
    }

    fn rpc_listener(&mut self) -> Arc<dyn RpcListener> {
        let config = &self.config;
        let listener = AmqpListener::new(
            config.rabbitmq_uri.clone(),
            &config.namespace,
            &format!("{}-rpc-server", self.app_name),
            config.rpc_prefetch,
        );
        self.probes.push(Arc::new(listener.status()));
        Arc::new(listener)
    }

    fn probes(&self) -> Vec<Arc<dyn Probe>> {
        self.probes.clone()
    }
}
