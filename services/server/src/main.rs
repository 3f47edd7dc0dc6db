//! `chat-server`: the one scalable-chat binary. `chat-server <role>` runs one service; `all` runs
//! every service in one process; `migrate` creates the database indexes and exits.

use std::process::ExitCode;
use std::sync::Arc;

use axum::Router;
use chat_core::assets::AssetStore;
use chat_core::config::{Config, INFRASTRUCTURE_VARIABLES};
use chat_core::events::{consume, tail, EventLog, KafkaProbe, StartAt, COMMANDS, FACTS};
use chat_core::health::{Health, Probe};
use chat_core::memory::{MemoryPresence, MemoryRateLimiter};
use chat_core::rpc::{LocalBus, RpcClient, RpcServer};
use chat_core::sqlite::{SqliteProbe, SqliteStore};
use chat_core::store::{Presence, RateLimiter, Stores};

/// Partitions of the commands and facts topics (groups are spread over them by id).
const KAFKA_PARTITIONS: i32 = 6;
use chat_core::{http, mongo, redis, shutdown, telemetry};
use tokio_util::sync::CancellationToken;

const USAGE: &str = "\
usage: chat-server <role>

roles:
  gateway   the public REST API (default port 5000)
  auth      accounts, passwords and tokens over RPC (health on port 3004)
    group     groups, direct conversations and membership over RPC (health on port 3002)
  message   persists chat commands from Kafka; history and search over RPC (health on port 3003)
  chat      Socket.IO at /socket.io (port 3001)
  all       every role in one process (port 5000)
  migrate   create the MongoDB indexes, then exit

Configuration comes from environment variables; see the README. Every variable has a default
that works with `scripts/infra.sh up`.

options:
  -h, --help     this text
  -V, --version  the version";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Gateway,
    Auth,
    Group,
    Message,
    Chat,
    All,
    Migrate,
}

impl Role {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "gateway" => Some(Role::Gateway),
            "auth" => Some(Role::Auth),
            "group" => Some(Role::Group),
            "message" => Some(Role::Message),
            "chat" => Some(Role::Chat),
            "all" => Some(Role::All),
            "migrate" => Some(Role::Migrate),
            _ => None,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Role::Gateway => "gateway",
            Role::Auth => "auth",
            Role::Group => "group",
            Role::Message => "message",
            Role::Chat => "chat",
            Role::All => "all",
            Role::Migrate => "migrate",
        }
    }
    fn default_port(self) -> u16 {
        match self {
            Role::Auth => 3004,
            Role::Group => 3002,
            Role::Message => 3003,
            Role::Chat => 3001,
            _ => 5000,
        }
    }
    fn runs_auth(self) -> bool {
        matches!(self, Role::Auth | Role::All)
    }
    fn runs_group(self) -> bool {
        matches!(self, Role::Group | Role::All)
    }
    fn runs_message(self) -> bool {
        matches!(self, Role::Message | Role::All)
    }
    fn runs_chat(self) -> bool {
        matches!(self, Role::Chat | Role::All)
    }
    fn uses_kafka(self) -> bool {
        self.runs_group() || self.runs_message() || self.runs_chat()
    }
    fn runs_gateway(self) -> bool {
        matches!(self, Role::Gateway | Role::All)
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let role = match args.first().map(String::as_str) {
        None | Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            return if args.is_empty() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
        Some("-V" | "--version") => {
            println!("chat-server {}", chat_core::VERSION);
            return ExitCode::SUCCESS;
        }
        Some(name) => match Role::parse(name) {
            Some(role) if args.len() == 1 => role,
            _ => {
                eprintln!("chat-server: unknown arguments {args:?}\n\n{USAGE}");
                return ExitCode::from(2);
            }
        },
    };
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("chat-server: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(config.log_format, &config.log_filter);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("chat-server: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(role, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!(role = role.name(), "{message}");
            eprintln!("chat-server {}: {message}", role.name());
            ExitCode::FAILURE
        }
    }
}

/// Rate limits and presence, on Redis or in memory.
#[derive(Clone)]
struct Cache {
    limiter: Arc<dyn RateLimiter>,
    presence: Arc<dyn Presence>,
}

/// `chat-server all` with no infrastructure variables runs on its embedded adapters; a partial
/// set is a mistake worth stopping for.
fn embedded_mode(role: Role, config: &Config) -> Result<bool, String> {
    if role != Role::All || config.infrastructure_set.len() == INFRASTRUCTURE_VARIABLES.len() {
        return Ok(false);
    }
    if config.infrastructure_set.is_empty() {
        return Ok(true);
    }
    let missing: Vec<&str> = INFRASTRUCTURE_VARIABLES
        .into_iter()
        .filter(|v| !config.infrastructure_set.contains(v))
        .collect();
    Err(format!(
        "set all of MONGODB_URI, RABBITMQ_URI, KAFKA_BROKERS and REDIS_URL, or none of them for \
         the embedded mode; missing: {}",
        missing.join(", ")
    ))
}

async fn run(role: Role, config: Config) -> Result<(), String> {
    let embedded = embedded_mode(role, &config)?;
    if embedded {
        tracing::info!(data = %config.data_dir.display(),
            "embedded mode: no MONGODB_URI, RABBITMQ_URI, KAFKA_BROKERS or REDIS_URL set, so every \
             role runs in this process on an embedded database; set all four to use the real servers");
    }
    tracing::info!(role = role.name(), version = chat_core::VERSION, namespace = %config.namespace, "starting");
    let shutdown = shutdown::on_signal();
    let app_name = format!("chat-server-{}", role.name());
    let connect_mongo = || async {
        let db = mongo::connect(
            &config.mongodb_uri,
            &config.mongodb_database(),
            &app_name,
            config.startup_timeout,
        )
        .await?;
        let n = mongo::ensure_indexes(&db)
            .await
            .map_err(|e| format!("cannot create indexes: {}", e.message))?;
        tracing::info!(indexes = n, database = %config.mongodb_database(), "indexes are in place");
        Ok::<_, String>(db)
    };

    if role == Role::Migrate {
        connect_mongo().await?;
        return Ok(());
    }

    let mut probes: Vec<Arc<dyn Probe>> = Vec::new();
    let mut router = Router::new();
    let mut background = tokio::task::JoinSet::new();
    let mut socket_layer = None;
    let mut chat_to_drain = None;
    // Cancelled once the chat sockets are drained (at once without chat): what answers the
    // sends under way, the command consumer and the facts tail, runs until then.
    let after_drain = CancellationToken::new();
    let events = if !role.uses_kafka() {
        None
    } else if embedded {
        Some(EventLog::local(&config.namespace))
    } else {
        let log = EventLog::new(&config.kafka_brokers, &config.namespace)?;
        let ensure = || log.ensure_topics(&[COMMANDS, FACTS], KAFKA_PARTITIONS);
        chat_core::startup::wait_for(
            "kafka",
            &config.kafka_brokers,
            config.startup_timeout,
            ensure,
        )
        .await?;
        probes.push(Arc::new(KafkaProbe(log.clone())));
        Some(log)
    };
    // The gateway reads and writes file bytes itself (GridFS), so it needs MongoDB too.
    let stores = if embedded {
        let file = config.data_dir.join("chat.db");
        let db = SqliteStore::open(&file, config.assets.clone())?;
        probes.push(Arc::new(SqliteProbe(db.clone())));
        Some(Stores::embedded(db))
    } else if role.runs_auth() || role.runs_group() || role.runs_message() || role.runs_gateway() {
        let db = connect_mongo().await?;
        probes.push(Arc::new(mongo::MongoProbe(db.clone())));
        Some(Stores::mongo(&db, config.assets.clone()))
    } else {
        None
    };
    let stores = || stores.clone().ok_or("internal: this role has no stores");
    let cache = if embedded {
        Some(Cache {
            limiter: Arc::new(MemoryRateLimiter::default()),
            presence: Arc::new(MemoryPresence::default()),
        })
    } else if role.runs_auth() || role.runs_chat() {
        let conn = redis::connect(&config.redis_url, config.startup_timeout).await?;
        probes.push(Arc::new(redis::RedisProbe(conn.clone())));
        Some(Cache {
            limiter: Arc::new(redis::RedisRateLimiter::new(
                conn.clone(),
                &config.namespace,
            )),
            presence: Arc::new(redis::RedisPresence::new(conn, &config.namespace)),
        })
    } else {
        None
    };
    let cache = || cache.clone().ok_or("internal: this role has no cache");
    let bus = embedded.then(LocalBus::new);
    // Every RPC-serving role of this process shares one consumer connection.
    let mut rpc_server = RpcServer::new(&config.namespace, config.rpc_prefetch);

    if role.runs_auth() {
        let stores = stores()?;
        let signer = chat_auth::load_signing_key(&config, stores.signing_keys.as_ref()).await?;
        let extra_keys =
            chat_core::tokens::public_keys_from_file(config.jwt_public_key_file.as_deref())?;
        let auth_stores = chat_auth::AuthStores {
            users: stores.users,
            refresh_tokens: stores.refresh_tokens,
            limiter: cache()?.limiter,
            assets: stores.assets,
        };
        let service =
            chat_auth::AuthService::new(auth_stores, signer, extra_keys, (&config).into())
                .map_err(|e| e.message)?;
        rpc_server = chat_auth::rpc_handlers(Arc::new(service), rpc_server);
    }

    if let (true, Some(events)) = (role.runs_group(), &events) {
        let stores = stores()?;
        let service = chat_group::GroupService::new(
            stores.groups,
            stores.users,
            stores.assets,
            events.clone(),
        );
        rpc_server = chat_group::rpc_handlers(Arc::new(service), rpc_server);
    }

    if let (true, Some(events)) = (role.runs_message(), &events) {
        let stores = stores()?;
        let service = Arc::new(chat_message::MessageService::new(
            stores.messages,
            stores.groups,
            stores.assets,
            events.clone(),
        ));
        rpc_server = chat_message::rpc_handlers(service.clone(), rpc_server);
        // In `all`, the sends the drain waits for are stored by this consumer.
        let (log, token) = (events.clone(), after_drain.clone());
        background.spawn(async move {
            let handle = |record| {
                let service = service.clone();
                async move { service.handle(record).await }
            };
            if let Err(e) =
                consume(&log, COMMANDS, "message", StartAt::Earliest, token, handle).await
            {
                tracing::error!(error = %e, "the command consumer stopped");
            }
        });
    }

    if let Some(bus) = &bus {
        rpc_server.serve_local(bus);
    } else if !rpc_server.patterns().is_empty() {
        probes.push(Arc::new(rpc_server.status()));
        let (uri, grace, token) = (
            config.rabbitmq_uri.clone(),
            config.shutdown_grace,
            shutdown.clone(),
        );
        let name = format!("{app_name}-rpc-server");
        background.spawn(async move { rpc_server.run(uri, &name, token, grace).await });
    }

    if role.runs_gateway() || role.runs_chat() {
        let rpc = match &bus {
            Some(bus) => RpcClient::local(bus, config.rpc_timeout),
            None => {
                let rpc = RpcClient::start(
                    config.rabbitmq_uri.clone(),
                    &config.namespace,
                    config.rpc_timeout,
                    &format!("{app_name}-rpc-client"),
                    shutdown.clone(),
                );
                probes.push(Arc::new(rpc.status()));
                rpc
            }
        };
        let verifier = Arc::new(chat_core::contracts::auth::verifier(&config, &rpc)?);
        if role.runs_gateway() {
            let assets = stores()?.assets;
            let state = chat_gateway::Gateway {
                rpc: rpc.clone(),
                verifier: verifier.clone(),
                trust_forwarded_for: config.trust_forwarded_for,
                assets: assets.clone(),
                asset_limits: config.assets.clone(),
            };
            router = router.merge(chat_gateway::router(state));
            background.spawn(sweep_expired_uploads(
                assets,
                config.assets.sweep_interval(),
                shutdown.clone(),
            ));
        }
        if let (true, Some(events)) = (role.runs_chat(), &events) {
            let chat = chat_chat::Chat::new(
                rpc,
                verifier,
                events.clone(),
                cache()?.presence,
                config.chat.clone(),
            );
            let (layer, io) = chat.clone().layer();
            socket_layer = Some(layer);
            chat_to_drain = Some((chat.clone(), io.clone()));
            // The facts tail outlives SIGTERM until the drain is over: it answers in-flight sends.
            let (log, token) = (events.clone(), after_drain.clone());
            background.spawn(async move {
                let on_fact = |envelope| {
                    let (chat, io) = (chat.clone(), io.clone());
                    async move { chat.on_fact(&io, envelope).await }
                };
                if let Err(e) = tail(&log, FACTS, token, on_fact).await {
                    tracing::error!(error = %e, "the facts tail stopped");
                }
            });
        }
    }

    let health = Health::new(role.name(), probes);
    let mut app = http::with_common_layers(router.merge(health.router()), config.max_body_bytes);
    // Outside the router, so /socket.io never meets the not-found fallback.
    if let Some(layer) = socket_layer {
        app = app.layer(layer);
    }
    if let Some(cors) =
        chat_gateway::cors(&config.cors_allowed_origins).filter(|_| role.runs_gateway())
    {
        app = app.layer(cors);
    }
    let port = config.port.unwrap_or(role.default_port());
    let listener = http::bind(config.bind_address, port)
        .await
        .map_err(|e| e.to_string())?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(role = role.name(), %address, rabbitmq = %config.rabbitmq_uri.redacted_uri(), "listening");

    // Readiness turns false first; chat sockets are drained (in-flight sends answered, clients
    // told to reconnect elsewhere); then the listener stops accepting and in-flight requests
    // finish.
    let stop_http = CancellationToken::new();
    {
        let (health, stop_http, shutdown) = (health.clone(), stop_http.clone(), shutdown.clone());
        let grace = config.shutdown_grace;
        tokio::spawn(async move {
            shutdown.cancelled().await;
            health.set_draining();
            if let Some((chat, io)) = chat_to_drain {
                chat.drain(&io, grace).await;
            }
            after_drain.cancel();
            stop_http.cancel();
        });
    }
    http::serve(listener, app, stop_http)
        .await
        .map_err(|e| format!("http server failed: {e}"))?;
    shutdown.cancel();
    while background.join_next().await.is_some() {}
    tracing::info!(role = role.name(), "stopped");
    Ok(())
}

/// Deletes uploads that stopped receiving chunks, with their chunks.
async fn sweep_expired_uploads(
    assets: Arc<dyn AssetStore>,
    every: std::time::Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match assets.expire(chat_core::assets::now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(uploads = n, "expired uploads deleted"),
            Err(e) => tracing::warn!(error = %e, "cannot sweep expired uploads"),
        }
    }
}
