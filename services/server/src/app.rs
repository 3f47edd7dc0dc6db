//! The composition root: [`Application::build`] takes a role and its configuration, picks the
//! adapter family, mounts each service the role runs (its RPC handlers, routes and background
//! tasks) and binds the HTTP listener; [`Application::run_until_stopped`] serves until SIGTERM
//! and drains in order.

use chat_ports::startup::StartupError;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use chat_chat::Chat;
use chat_domain::config::{Config, ConfigError, INFRASTRUCTURE_VARIABLES};
use chat_http::health::Health;
use chat_ports::health::Gate;
use chat_ports::rpc::RpcServer;
use socketioxide::layer::SocketIoLayer;
use socketioxide::SocketIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::family::Family;
use crate::Role;

/// Why a process could not start (or stopped serving).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "set all of MONGODB_URI, RABBITMQ_URI, KAFKA_BROKERS and REDIS_URL, or none of them for \
         the embedded mode; missing: {0}"
    )]
    PartialInfrastructure(String),
    #[error("this build has no {0} adapters; rebuild with `--features {0}`")]
    #[cfg_attr(all(feature = "production", feature = "embedded"), allow(dead_code))]
    FamilyMissing(&'static str),
    /// A dependency, the database file or the token keys.
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error("{0}")]
    Listen(std::io::Error),
    #[error("http server failed: {0}")]
    Serve(std::io::Error),
}

/// `chat-server all` with no infrastructure variables runs on its embedded adapters; a partial
/// set is a mistake worth stopping for.
pub fn embedded_mode(role: Role, config: &Config) -> Result<bool, StartError> {
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
    Err(StartError::PartialInfrastructure(missing.join(", ")))
}

/// The adapter family for `role`, if this build has it.
fn family(
    role: Role,
    config: &Config,
    shutdown: &CancellationToken,
) -> Result<Box<dyn Family>, StartError> {
    if embedded_mode(role, config)? {
        #[cfg(feature = "embedded")]
        return Ok(Box::new(crate::embedded::Embedded::new(config)));
        #[cfg(not(feature = "embedded"))]
        return Err(StartError::FamilyMissing("embedded"));
    }
    let _ = shutdown;
    #[cfg(feature = "production")]
    return Ok(Box::new(crate::production::Production::new(
        config,
        &format!("chat-server-{}", role.name()),
        shutdown,
    )));
    #[cfg(not(feature = "production"))]
    Err(StartError::FamilyMissing("production"))
}

/// Runs `chat-server migrate`: creates the MongoDB indexes.
pub async fn migrate(config: &Config) -> Result<(), StartError> {
    #[cfg(feature = "production")]
    {
        let shutdown = CancellationToken::new();
        crate::production::Production::new(config, "chat-server-migrate", &shutdown)
            .database()
            .await
            .map(|_| ())
    }
    #[cfg(not(feature = "production"))]
    {
        let _ = config;
        Err(StartError::FamilyMissing("production"))
    }
}

/// A process ready to serve: its listener bound, its services mounted.
pub struct Application {
    role: Role,
    config: Config,
    listener: TcpListener,
    app: Router,
    /// The probes and metrics on their own port (`MANAGEMENT_PORT`), when set.
    management: Option<(TcpListener, Router)>,
    health: Health,
    tasks: JoinSet<()>,
    shutdown: CancellationToken,
    /// Cancelled once the chat sockets are drained (at once without chat): what answers the
    /// sends under way, the command consumer and the facts tail, runs until then.
    after_drain: CancellationToken,
    chat: Option<(Chat, SocketIo)>,
}

/// What the services of one process add up to while they are being mounted.
struct Mounts {
    family: Box<dyn Family>,
    rpc: RpcServer,
    router: Router,
    tasks: JoinSet<()>,
    chat: Option<(Chat, SocketIo)>,
    socket_layer: Option<SocketIoLayer>,
    /// What readiness waits for besides the drain.
    gates: Vec<Gate>,
}

impl Application {
    /// Connects what `role` uses, mounts its services and binds its port (`PORT`, or the role's
    /// default; `PORT=0` picks a free one, see [`Application::address`]).
    pub async fn build(
        role: Role,
        config: Config,
        shutdown: CancellationToken,
    ) -> Result<Self, StartError> {
        let after_drain = CancellationToken::new();
        let mut mounts = Mounts {
            family: family(role, &config, &shutdown)?,
            rpc: RpcServer::new(),
            router: Router::new(),
            tasks: JoinSet::new(),
            chat: None,
            socket_layer: None,
            gates: Vec::new(),
        };
        if role.runs_auth() {
            mounts.auth(&config).await?;
        }
        if role.runs_group() {
            mounts.group(&config).await?;
        }
        if role.runs_message() {
            mounts.message(&config, &after_drain).await?;
        }
        if role.runs_gateway() {
            mounts.asset_owner().await?;
        }
        // Served before any client is made, so in-process callers find every pattern.
        let handlers = std::mem::take(&mut mounts.rpc).into_handlers();
        if !handlers.is_empty() {
            let listener = mounts.family.rpc_listener();
            let serve = listener.serve(handlers, shutdown.clone(), config.shutdown_grace);
            mounts.tasks.spawn(serve);
        }
        if role.runs_gateway() {
            mounts.gateway(&config, &shutdown).await?;
        }
        if role.runs_chat() {
            mounts.chat(&config, &after_drain).await?;
        }
        if role == Role::All && config.web_client {
            mounts.router = std::mem::take(&mut mounts.router).merge(crate::web::router());
        }

        let health = Health::new(role.name(), mounts.family.probes(), mounts.gates);
        let management = match config.management_port {
            Some(port) => Some((
                chat_http::bind(config.bind_address, port)
                    .await
                    .map_err(StartError::Listen)?,
                chat_http::with_common_layers(health.router(), config.max_body_bytes),
            )),
            None => {
                mounts.router = mounts.router.merge(health.router());
                None
            }
        };
        let mut app = chat_http::with_common_layers(mounts.router, config.max_body_bytes);
        // Outside the router, so /socket.io never meets the not-found fallback.
        if let Some(layer) = mounts.socket_layer {
            app = app.layer(layer).layer(tower::util::MapRequestLayer::new(
                chat_chat::detach_socket_request,
            ));
        }
        // Outermost, so it answers for the REST routes and both Socket.IO transports alike.
        if let Some(cors) = chat_gateway::cors(&config.cors_allowed_origins)
            .filter(|_| role.runs_gateway() || role.runs_chat())
        {
            app = app.layer(cors);
        }
        let port = config.port.unwrap_or(role.default_port());
        let listener = chat_http::bind(config.bind_address, port)
            .await
            .map_err(StartError::Listen)?;
        Ok(Application {
            role,
            config,
            listener,
            app,
            management,
            health,
            tasks: mounts.tasks,
            shutdown,
            after_drain,
            chat: mounts.chat,
        })
    }

    /// The address the HTTP listener is bound to.
    pub fn address(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The address of the probes and metrics when they have their own port.
    pub fn management_address(&self) -> Option<SocketAddr> {
        let (listener, _) = self.management.as_ref()?;
        listener.local_addr().ok()
    }

    /// Serves until the shutdown token is cancelled, then drains: readiness turns false first;
    /// chat sockets are drained (in-flight sends answered, clients told to reconnect
    /// elsewhere); then the listener stops accepting, in-flight requests finish, and the
    /// background tasks stop.
    pub async fn run_until_stopped(self) -> Result<(), StartError> {
        let Application {
            role,
            config,
            listener,
            app,
            management,
            health,
            mut tasks,
            shutdown,
            after_drain,
            chat,
        } = self;
        let stop_http = CancellationToken::new();
        {
            let (stop_http, shutdown) = (stop_http.clone(), shutdown.clone());
            let grace = config.shutdown_grace;
            tokio::spawn(async move {
                shutdown.cancelled().await;
                health.set_draining();
                if let Some((chat, io)) = chat {
                    chat.drain(&io, grace).await;
                }
                after_drain.cancel();
                stop_http.cancel();
            });
        }
        let limits = chat_http::ServeLimits {
            headers: config.abuse.http_header_timeout,
            body_idle: config.abuse.http_body_idle_timeout,
            max_in_flight: config.abuse.http_max_in_flight as usize,
        };
        // The probes answer until the API stops: the kubelet sees the drain on /readyz.
        let probes = async {
            match management {
                Some((listener, router)) => {
                    chat_http::serve(listener, router, limits, stop_http.clone()).await
                }
                None => Ok(()),
            }
        };
        let (api, probes) = tokio::join!(
            chat_http::serve(listener, app, limits, stop_http.clone()),
            probes
        );
        api.and(probes).map_err(StartError::Serve)?;
        shutdown.cancel();
        while tasks.join_next().await.is_some() {}
        tracing::info!(role = role.name(), "stopped");
        Ok(())
    }
}

impl Mounts {
    async fn auth(&mut self, config: &Config) -> Result<(), StartError> {
        let stores = self.family.stores().await?;
        let cache = self.family.cache().await?;
        let (limiter, revocations) = (cache.limiter, cache.revocations);
        let signer = chat_auth::load_signing_key(config, stores.signing_keys.as_ref()).await?;
        let extra_keys = chat_ports::clients::configured_public_keys(config)?;
        let auth_stores = chat_auth::AuthStores {
            users: stores.users,
            refresh_tokens: stores.refresh_tokens,
            limiter,
            revocations,
            assets: chat_ports::clients::AssetsClient(self.family.rpc_client()),
        };
        let service = chat_auth::AuthService::new(auth_stores, signer, extra_keys, config.into())
            .map_err(StartupError::step("the signing keys"))?;
        self.rpc = chat_auth::rpc_handlers(Arc::new(service), std::mem::take(&mut self.rpc));
        Ok(())
    }

    async fn group(&mut self, config: &Config) -> Result<(), StartError> {
        let stores = self.family.stores().await?;
        let events = self.family.events().await?;
        let assets = chat_ports::clients::AssetsClient(self.family.rpc_client());
        let limits = chat_group::GroupLimits {
            max_members: config.abuse.group_max_members,
            max_groups_per_user: config.abuse.user_max_groups,
        };
        let service =
            chat_group::GroupService::new(stores.groups, stores.users, assets, events, limits);
        self.rpc = chat_group::rpc_handlers(Arc::new(service), std::mem::take(&mut self.rpc));
        Ok(())
    }

    async fn message(
        &mut self,
        config: &Config,
        after_drain: &CancellationToken,
    ) -> Result<(), StartError> {
        let stores = self.family.stores().await?;
        let events = self.family.events().await?;
        // Memberships are the group role's: asked over RPC, kept while the facts are quiet.
        let members = Arc::new(chat_message::members::Members::new(
            self.family.rpc_client(),
        ));
        self.tasks
            .spawn(chat_message::members::follow_membership_changes(
                members.clone(),
                events.clone(),
                after_drain.clone(),
            ));
        let service = Arc::new(chat_message::MessageService::new(
            stores.messages,
            members,
            chat_ports::clients::AssetsClient(self.family.rpc_client()),
            events.clone(),
            config.message_edit_window,
        ));
        self.rpc = chat_message::rpc_handlers(service.clone(), std::mem::take(&mut self.rpc));
        // In `all`, the sends the drain waits for are stored by this consumer.
        self.tasks.spawn(chat_message::consume_commands(
            service,
            events,
            after_drain.clone(),
        ));
        Ok(())
    }

    /// The gateway owns the files: it reads and writes their bytes itself (the routes), and the
    /// other roles check and grant them through it (these RPC patterns).
    async fn asset_owner(&mut self) -> Result<(), StartError> {
        let assets = self.family.stores().await?.assets;
        let owner = Arc::new(chat_gateway::AssetOwner(assets));
        self.rpc = chat_gateway::asset_rpc_handlers(owner, std::mem::take(&mut self.rpc));
        Ok(())
    }

    async fn gateway(
        &mut self,
        config: &Config,
        shutdown: &CancellationToken,
    ) -> Result<(), StartError> {
        // The gateway reads and writes file bytes itself, so it needs the stores too.
        let assets = self.family.stores().await?.assets;
        let cache = self.family.cache().await?;
        let rpc = self.family.rpc_client();
        let verifier = chat_ports::clients::verifier(config, &rpc)?;
        let state = chat_gateway::Gateway {
            rpc,
            verifier: Arc::new(verifier),
            trust_forwarded_for: config.trust_forwarded_for,
            assets: assets.clone(),
            asset_limits: config.assets.clone(),
            limiter: cache.limiter,
            revocations: cache.revocations,
            request_limits: chat_gateway::RequestLimits {
                per_user: config.abuse.api_max_per_user,
                per_address: config.abuse.api_max_per_address,
                window: config.abuse.api_window,
            },
        };
        self.router = std::mem::take(&mut self.router).merge(chat_gateway::router(state));
        self.tasks.spawn(chat_gateway::sweep_expired_uploads(
            assets,
            config.assets.sweep_interval(),
            shutdown.clone(),
        ));
        Ok(())
    }

    async fn chat(
        &mut self,
        config: &Config,
        after_drain: &CancellationToken,
    ) -> Result<(), StartError> {
        let events = self.family.events().await?;
        let cache = self.family.cache().await?;
        let rpc = self.family.rpc_client();
        let verifier = chat_ports::clients::verifier(config, &rpc)?;
        let chat = Chat::new(
            rpc,
            Arc::new(verifier),
            events.clone(),
            cache.presence,
            cache.revocations,
            config.chat.clone(),
        );
        let (layer, io) = chat.clone().layer();
        self.socket_layer = Some(layer);
        let asyncapi = chat_chat::asyncapi::document();
        self.router = std::mem::take(&mut self.router).route(
            "/asyncapi.json",
            axum::routing::get(move || async move { axum::Json(asyncapi) }),
        );
        // The facts tail outlives SIGTERM until the drain is over: it answers in-flight sends.
        let attached = Gate::new("facts");
        self.gates.push(attached.clone());
        self.tasks.spawn(chat_chat::follow_facts(
            chat.clone(),
            io.clone(),
            events,
            after_drain.clone(),
            attached,
        ));
        self.chat = Some((chat, io));
        Ok(())
    }
}
