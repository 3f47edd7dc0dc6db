//! Configuration from environment variables, validated once at start-up.
//!
//! Every variable has a documented default (see the README's configuration table), chosen so that
//! a developer machine running `scripts/infra.sh up` needs none of them. A bad value stops the
//! process with a [`ConfigError`] naming the variable; the value itself is never printed, because
//! several variables carry credentials.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::assets::AssetLimits;

/// A configuration value that must never be printed (connection strings with passwords).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret value. Call only where the value is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// The value with any password in a `scheme://user:password@host` URI replaced by `***`,
    /// fit for logs.
    pub fn redacted_uri(&self) -> String {
        redact_uri(&self.0)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Replaces the password of `scheme://user:password@host/...` with `***`.
pub fn redact_uri(uri: &str) -> String {
    let Some(scheme_end) = uri.find("://") else {
        return uri.to_string();
    };
    let rest = &uri[scheme_end + 3..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return uri.to_string();
    };
    let userinfo = &rest[..at];
    let user = userinfo.split(':').next().unwrap_or("");
    let masked = if userinfo.contains(':') {
        format!("{user}:***")
    } else {
        user.to_string()
    };
    format!("{}{}{}", &uri[..scheme_end + 3], masked, &rest[at..])
}

/// A configuration problem: which variable, and why. Never contains the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {variable}: {reason}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub reason: String,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (default).
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// How facts travel from the roles that publish them to every chat replica (and to the message
/// role's membership cache) in the multi-process stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactsRelay {
    /// On the Kafka facts topic, which every follower tails from its end (default).
    Kafka,
    /// Over Redis pub/sub: one `PUBLISH` per fact, one subscription per follower.
    Redis,
}

/// Everything a scalable-chat process reads from its environment. Each role uses the parts it
/// needs; all values are validated whichever role runs, so a typo never waits for the day a
/// code path first reads it.
#[derive(Debug, Clone)]
pub struct Config {
    /// `PORT`: HTTP port (API and/or health and metrics). Default: the role's port. `0` takes a
    /// free port (see `address_file`).
    pub port: Option<u16>,
    /// `MANAGEMENT_PORT`: when set, `/livez`, `/readyz`, `/health` and `/metrics` are served on
    /// this port only, apart from the API port an Ingress publishes. Default: unset (served on
    /// `PORT`). `0` takes a free port.
    pub management_port: Option<u16>,
    /// `CHAT_ADDRESS_FILE`: once listening, the process writes the address it bound
    /// (`127.0.0.1:41234`) to this file, for supervisors and tests that start it on `PORT=0`.
    pub address_file: Option<PathBuf>,
    /// `BIND_ADDRESS`: address to listen on. Default `0.0.0.0`.
    pub bind_address: std::net::IpAddr,
    /// `LOG_FORMAT`: `text` or `json`. Default `text`.
    pub log_format: LogFormat,
    /// `RUST_LOG`: tracing filter. Default `info`.
    pub log_filter: String,
    /// `CHAT_NAMESPACE`: prefix of RabbitMQ queues, Redis keys and Kafka topics, so several
    /// deployments (or test runs) can share one broker. Default `chat`.
    pub namespace: String,
    /// `MONGODB_URI`: MongoDB connection string; the database is the URI's path.
    /// Default `mongodb://127.0.0.1:27017/scalable_chat`.
    pub mongodb_uri: Secret,
    /// `RABBITMQ_URI`: AMQP URI. Default `amqp://guest:guest@127.0.0.1:5672/%2f`.
    pub rabbitmq_uri: Secret,
    /// `REDIS_URL`: Redis URL. Default `redis://127.0.0.1:6379`.
    pub redis_url: Secret,
    /// `KAFKA_BROKERS`: comma-separated `host:port` list. Default `127.0.0.1:9092`.
    pub kafka_brokers: String,
    /// `KAFKA_FETCH_WAIT_MS`: how long the broker may hold a consumer's fetch while it has no
    /// new record. Kafka answers as soon as a record arrives, so this only bounds idle polling;
    /// the Tansu stand-in holds every fetch this long, adding it to each log hop. Default 10.
    pub kafka_fetch_wait: Duration,
    /// `FACTS_RELAY`: `kafka` or `redis`, how facts reach the chat replicas (see
    /// [`FactsRelay`]). Every process of a deployment must say the same. Default `kafka`.
    pub facts_relay: FactsRelay,
    /// `RPC_TIMEOUT_MS`: how long a caller waits for an RPC reply. Default 5000.
    pub rpc_timeout: Duration,
    /// `RPC_PREFETCH`: RPC requests one process handles concurrently (AMQP prefetch). Default 32.
    pub rpc_prefetch: u16,
    /// `STARTUP_TIMEOUT_SECONDS`: how long to wait for MongoDB and Redis at start-up. Default 60.
    pub startup_timeout: Duration,
    /// `SHUTDOWN_GRACE_SECONDS`: how long in-flight work may take after SIGTERM. Default 20.
    pub shutdown_grace: Duration,
    /// `JWT_PRIVATE_KEY_FILE` (auth): PKCS#8 PEM Ed25519 key that signs access tokens. When
    /// unset, auth uses a development key generated once and stored in MongoDB.
    pub jwt_private_key_file: Option<PathBuf>,
    /// `JWT_PUBLIC_KEY_FILE`: SPKI PEM Ed25519 public key(s) that verify access tokens. When unset,
    /// verifying roles fetch the public keys from auth over RPC.
    pub jwt_public_key_file: Option<PathBuf>,
    /// `ACCESS_TOKEN_TTL_SECONDS`: access-token lifetime. Default 900 (15 minutes).
    pub access_token_ttl: Duration,
    /// `REFRESH_TOKEN_TTL_SECONDS`: refresh-token lifetime. Default 2592000 (30 days).
    pub refresh_token_ttl: Duration,
    /// `ARGON2_MEMORY_KIB`, `ARGON2_ITERATIONS`, `ARGON2_PARALLELISM`: password hashing cost.
    /// Defaults 19456, 2, 1 (the OWASP argon2id recommendation).
    pub argon2: Argon2Params,
    /// `LOGIN_MAX_ATTEMPTS_PER_EMAIL`: login attempts per email per window. Default 10.
    pub login_max_per_email: u32,
    /// `LOGIN_MAX_ATTEMPTS_PER_ADDRESS`: login attempts per client address per window. Default 50.
    pub login_max_per_address: u32,
    /// `LOGIN_RATE_WINDOW_SECONDS`: the rate-limit window. Default 300.
    pub login_window: Duration,
    /// `MAX_BODY_BYTES`: largest accepted JSON request body. Default 65536.
    pub max_body_bytes: usize,
    /// `CORS_ALLOWED_ORIGINS`: comma-separated origins allowed to call the API from a browser, or
    /// `*`. Default empty (same-origin only, as behind the ingress).
    pub cors_allowed_origins: Vec<String>,
    /// `TRUST_FORWARDED_FOR`: take the client address from `X-Forwarded-For` (behind an ingress).
    /// Default `false`.
    pub trust_forwarded_for: bool,
    /// `CHAT_WEB_CLIENT`: `chat-server all` serves the reference web client (`examples/web`) at
    /// `/`. Default `true`; `false` turns it off. The separate roles never serve it.
    pub web_client: bool,
    /// Uploads: `ASSET_MAX_FILE_BYTES` (default 104857600, 100 MiB), `ASSET_MAX_CHUNK_BYTES`
    /// (default 5242880, at most 15 MiB), `ASSET_MAX_CHUNKS` (default 10000),
    /// `UPLOAD_SESSION_TTL_SECONDS` (an upload idle this long expires with its chunks; default
    /// 86400), `ASSET_MAX_BYTES_PER_USER` (a user's files and uploads in progress together;
    /// default 1073741824, 0 for no limit), `ASSET_MAX_UPLOADS_PER_USER` (uploads in progress at
    /// once; default 10) and `ASSET_ALLOWED_TYPES` (comma-separated content types, sniffed from the bytes;
    /// default [`crate::assets::DEFAULT_ALLOWED_TYPES`]).
    pub assets: AssetLimits,
    /// Socket clients: `CHAT_EVENTS_PER_SECOND` (events one socket may send per second, burst
    /// and sustained; default 20), `CHAT_ACK_TIMEOUT_SECONDS` (how long a send waits to be
    /// stored before acknowledging `timeout`; default 10) and `CHAT_REPLAY_LIMIT` (most missed
    /// messages replayed per group on reconnect before `chat.resync`; default 100, at most 100)
    /// and `CHAT_MAX_SOCKETS_PER_USER` (sockets one user may hold open over every replica; the
    /// next is refused at connect; default 20) and `CHAT_MAX_PENDING_COMMANDS` (commands one
    /// replica waits for at once; the next is refused with `overloaded`; default 1000).
    pub chat: ChatLimits,
    /// `MESSAGE_EDIT_WINDOW_SECONDS`: how long after sending a sender may edit a message's text.
    /// `0` turns editing off. Default 900 (15 minutes).
    pub message_edit_window: Duration,
    /// Limits against abusive or broken clients: see [`AbuseLimits`].
    pub abuse: AbuseLimits,
    /// Which of `MONGODB_URI`, `RABBITMQ_URI`, `KAFKA_BROKERS` and `REDIS_URL` are set. With none
    /// set, `chat-server all` runs on its embedded adapters.
    pub infrastructure_set: Vec<&'static str>,
    /// `CHAT_DATA_DIR`: where `chat-server all` keeps its embedded database. Default `chat-data`
    /// (relative to the working directory).
    pub data_dir: PathBuf,
}

/// The variables that point at external infrastructure.
pub const INFRASTRUCTURE_VARIABLES: [&str; 4] =
    ["MONGODB_URI", "RABBITMQ_URI", "KAFKA_BROKERS", "REDIS_URL"];

/// Limits the chat role holds socket clients to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatLimits {
    /// Events one socket may send per second (burst and sustained).
    pub events_per_second: u32,
    /// How long a send waits for the message role before acknowledging `timeout`.
    pub ack_timeout: Duration,
    /// Most missed messages replayed per group on reconnect before `chat.resync` instead.
    pub replay_limit: u32,
    /// Most sockets one user may hold open at once, over every chat replica.
    pub max_sockets_per_user: u32,
    /// Most commands (sends, seen receipts, deletes) one replica waits for at once; the next is
    /// refused at once with `overloaded`.
    pub max_pending_commands: u32,
    /// Most packets a replica holds for one socket that has not read them yet; what a full
    /// socket cannot take is dropped (it catches up with `lastSeq` when it reconnects).
    pub socket_buffer: u32,
    /// How often a replica pings each socket. A socket whose buffer is full at a ping, or that
    /// has not answered one within `ping_timeout`, is dropped: a client that does not read
    /// holds at most `socket_buffer` packets, for at most `ping_interval + ping_timeout`.
    pub ping_interval: Duration,
    /// How long a replica waits for the answer to a ping.
    pub ping_timeout: Duration,
}

impl Default for ChatLimits {
    fn default() -> Self {
        ChatLimits {
            events_per_second: 20,
            ack_timeout: Duration::from_secs(10),
            replay_limit: 100,
            max_sockets_per_user: 20,
            max_pending_commands: 1000,
            socket_buffer: 128,
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
        }
    }
}

/// Limits a public deployment needs against abusive or broken clients. Counters live in Redis
/// (in memory for `chat-server all`), so they hold over every replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbuseLimits {
    /// `HTTP_HEADER_TIMEOUT_SECONDS`: a client must send a request's headers within this time,
    /// or it is disconnected (slow-header clients). It is also how long an idle keep-alive
    /// connection stays open, so it must exceed the idle timeout of the proxy in front (60 s in
    /// ingress-nginx), or the proxy meets connections closed under it. Default 75.
    pub http_header_timeout: Duration,
    /// `HTTP_BODY_IDLE_TIMEOUT_SECONDS`: the longest pause between two pieces of a request body
    /// before the request is refused (slow-body clients); a slow but steady upload goes on.
    /// Default 30.
    pub http_body_idle_timeout: Duration,
    /// `HTTP_MAX_IN_FLIGHT`: REST requests one process serves at once; the next gets `503
    /// overloaded` with `Retry-After: 1` at once (probes, metrics and Socket.IO not counted).
    /// Default 1000.
    pub http_max_in_flight: u32,
    /// `API_MAX_REQUESTS_PER_USER`: REST requests one signed-in user may make per window, over
    /// every gateway replica; beyond, `429` with `Retry-After`. `0` turns it off. Default 600.
    pub api_max_per_user: u32,
    /// `API_MAX_REQUESTS_PER_ADDRESS`: REST requests one client address may make per window
    /// (behind an ingress, set `TRUST_FORWARDED_FOR`). `0` turns it off. Default 1200.
    pub api_max_per_address: u32,
    /// `API_RATE_WINDOW_SECONDS`: the window of both. Default 60.
    pub api_window: Duration,
    /// `GROUP_MAX_MEMBERS`: most members one group may have. Default 1000.
    pub group_max_members: u32,
    /// `USER_MAX_GROUPS`: most groups one user may belong to. Default 2000.
    pub user_max_groups: u32,
}

impl Default for AbuseLimits {
    fn default() -> Self {
        AbuseLimits {
            http_header_timeout: Duration::from_secs(75),
            http_body_idle_timeout: Duration::from_secs(30),
            http_max_in_flight: 1000,
            api_max_per_user: 600,
            api_max_per_address: 1200,
            api_window: Duration::from_secs(60),
            group_max_members: 1000,
            user_max_groups: 2000,
        }
    }
}

fn abuse_limits(env: &Env<'_>) -> Result<AbuseLimits, ConfigError> {
    let d = AbuseLimits::default();
    Ok(AbuseLimits {
        http_header_timeout: env.seconds(
            "HTTP_HEADER_TIMEOUT_SECONDS",
            d.http_header_timeout.as_secs(),
            1..=600,
        )?,
        http_body_idle_timeout: env.seconds(
            "HTTP_BODY_IDLE_TIMEOUT_SECONDS",
            d.http_body_idle_timeout.as_secs(),
            1..=3600,
        )?,
        http_max_in_flight: env.ranged(
            "HTTP_MAX_IN_FLIGHT",
            d.http_max_in_flight,
            1..=1_000_000,
        )?,
        api_max_per_user: env.ranged(
            "API_MAX_REQUESTS_PER_USER",
            d.api_max_per_user,
            0..=1_000_000,
        )?,
        api_max_per_address: env.ranged(
            "API_MAX_REQUESTS_PER_ADDRESS",
            d.api_max_per_address,
            0..=1_000_000,
        )?,
        api_window: env.seconds(
            "API_RATE_WINDOW_SECONDS",
            d.api_window.as_secs(),
            1..=86_400,
        )?,
        group_max_members: env.ranged("GROUP_MAX_MEMBERS", d.group_max_members, 2..=1_000_000)?,
        user_max_groups: env.ranged("USER_MAX_GROUPS", d.user_max_groups, 1..=1_000_000)?,
    })
}

/// The `ASSET_*` and `UPLOAD_SESSION_TTL_SECONDS` variables, defaulting to
/// [`AssetLimits::default`].
fn asset_limits(env: &Env<'_>) -> Result<AssetLimits, ConfigError> {
    let d = AssetLimits::default();
    let types = env.checked(
        "ASSET_ALLOWED_TYPES",
        &d.allowed_types.join(","),
        "a comma-separated list of content types such as image/png",
        |v| {
            v.split(',').all(|t| {
                let t = t.trim();
                t.split_once('/')
                    .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty())
            })
        },
    )?;
    Ok(AssetLimits {
        max_file_bytes: env.ranged("ASSET_MAX_FILE_BYTES", d.max_file_bytes, 1..=1 << 40)?,
        max_chunk_bytes: env.ranged(
            "ASSET_MAX_CHUNK_BYTES",
            d.max_chunk_bytes,
            16..=15 * 1024 * 1024,
        )?,
        max_chunks: env.ranged("ASSET_MAX_CHUNKS", d.max_chunks, 1..=1_000_000)?,
        session_ttl: env.seconds(
            "UPLOAD_SESSION_TTL_SECONDS",
            d.session_ttl.as_secs(),
            1..=2_592_000,
        )?,
        allowed_types: types
            .split(',')
            .map(|t| t.trim().to_ascii_lowercase())
            .collect(),
        max_bytes_per_user: env.ranged(
            "ASSET_MAX_BYTES_PER_USER",
            d.max_bytes_per_user,
            0..=1 << 50,
        )?,
        max_uploads_per_user: env.ranged(
            "ASSET_MAX_UPLOADS_PER_USER",
            d.max_uploads_per_user,
            1..=10_000,
        )?,
    })
}

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&std::env::vars().collect())
    }

    /// Reads configuration from a map of variables (the process environment in production).
    pub fn from_lookup(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let env = Env(vars);
        let chat = ChatLimits::default();
        let config = Config {
            port: env.optional(
                "PORT",
                "a TCP port number (1-65535, or 0 for a free one)",
                |v| v.parse::<u16>().ok(),
            )?,
            management_port: env.optional(
                "MANAGEMENT_PORT",
                "a TCP port number (1-65535, or 0 for a free one)",
                |v| v.parse::<u16>().ok(),
            )?,
            address_file: env.raw("CHAT_ADDRESS_FILE").map(PathBuf::from),
            bind_address: env.parse("BIND_ADDRESS", "0.0.0.0".parse().unwrap(), "an IP address")?,
            log_format: env.choice(
                "LOG_FORMAT",
                LogFormat::Text,
                &[("text", LogFormat::Text), ("json", LogFormat::Json)],
            )?,
            log_filter: env.string("RUST_LOG", "info"),
            namespace: env.checked(
                "CHAT_NAMESPACE",
                "chat",
                "1-40 characters of a-z, 0-9, '-', '_'",
                |v| {
                    (1..=40).contains(&v.len())
                        && v.bytes().all(|b| {
                            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                        })
                },
            )?,
            mongodb_uri: env.uri(
                "MONGODB_URI",
                "mongodb://127.0.0.1:27017/scalable_chat",
                &["mongodb://", "mongodb+srv://"],
            )?,
            rabbitmq_uri: env.uri(
                "RABBITMQ_URI",
                "amqp://guest:guest@127.0.0.1:5672/%2f",
                &["amqp://", "amqps://"],
            )?,
            redis_url: env.uri(
                "REDIS_URL",
                "redis://127.0.0.1:6379",
                &["redis://", "rediss://"],
            )?,
            kafka_brokers: env.checked(
                "KAFKA_BROKERS",
                "127.0.0.1:9092",
                "a comma-separated list of host:port",
                |v| {
                    v.split(',').all(|b| {
                        b.rsplit_once(':')
                            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
                    })
                },
            )?,
            kafka_fetch_wait: env.millis("KAFKA_FETCH_WAIT_MS", 10, 0..=10_000)?,
            facts_relay: env.choice(
                "FACTS_RELAY",
                FactsRelay::Kafka,
                &[("kafka", FactsRelay::Kafka), ("redis", FactsRelay::Redis)],
            )?,
            rpc_timeout: env.millis("RPC_TIMEOUT_MS", 5000, 10..=600_000)?,
            rpc_prefetch: env.ranged("RPC_PREFETCH", 32u16, 1..=1000)?,
            startup_timeout: env.seconds("STARTUP_TIMEOUT_SECONDS", 60, 1..=3600)?,
            shutdown_grace: env.seconds("SHUTDOWN_GRACE_SECONDS", 20, 0..=3600)?,
            jwt_private_key_file: env.path("JWT_PRIVATE_KEY_FILE")?,
            jwt_public_key_file: env.path("JWT_PUBLIC_KEY_FILE")?,
            access_token_ttl: env.seconds("ACCESS_TOKEN_TTL_SECONDS", 900, 10..=86_400)?,
            refresh_token_ttl: env.seconds(
                "REFRESH_TOKEN_TTL_SECONDS",
                2_592_000,
                60..=31_536_000,
            )?,
            argon2: Argon2Params {
                memory_kib: env.ranged("ARGON2_MEMORY_KIB", 19_456u32, 8..=4_194_304)?,
                iterations: env.ranged("ARGON2_ITERATIONS", 2u32, 1..=100)?,
                parallelism: env.ranged("ARGON2_PARALLELISM", 1u32, 1..=64)?,
            },
            login_max_per_email: env.ranged(
                "LOGIN_MAX_ATTEMPTS_PER_EMAIL",
                10u32,
                1..=1_000_000,
            )?,
            login_max_per_address: env.ranged(
                "LOGIN_MAX_ATTEMPTS_PER_ADDRESS",
                50u32,
                1..=1_000_000,
            )?,
            login_window: env.seconds("LOGIN_RATE_WINDOW_SECONDS", 300, 1..=86_400)?,
            max_body_bytes: env.ranged("MAX_BODY_BYTES", 65_536usize, 1024..=64 * 1024 * 1024)?,
            cors_allowed_origins: env
                .string("CORS_ALLOWED_ORIGINS", "")
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            trust_forwarded_for: env.choice(
                "TRUST_FORWARDED_FOR",
                false,
                &[("true", true), ("false", false), ("1", true), ("0", false)],
            )?,
            web_client: env.choice(
                "CHAT_WEB_CLIENT",
                true,
                &[("true", true), ("false", false), ("1", true), ("0", false)],
            )?,
            infrastructure_set: INFRASTRUCTURE_VARIABLES
                .into_iter()
                .filter(|v| env.raw(v).is_some_and(|s| !s.is_empty()))
                .collect(),
            data_dir: PathBuf::from(env.string("CHAT_DATA_DIR", "chat-data")),
            assets: asset_limits(&env)?,
            chat: ChatLimits {
                events_per_second: env.ranged(
                    "CHAT_EVENTS_PER_SECOND",
                    chat.events_per_second,
                    1..=100_000,
                )?,
                ack_timeout: env.seconds(
                    "CHAT_ACK_TIMEOUT_SECONDS",
                    chat.ack_timeout.as_secs(),
                    1..=300,
                )?,
                replay_limit: env.ranged("CHAT_REPLAY_LIMIT", chat.replay_limit, 1..=100)?,
                max_sockets_per_user: env.ranged(
                    "CHAT_MAX_SOCKETS_PER_USER",
                    chat.max_sockets_per_user,
                    1..=10_000,
                )?,
                max_pending_commands: env.ranged(
                    "CHAT_MAX_PENDING_COMMANDS",
                    chat.max_pending_commands,
                    1..=1_000_000,
                )?,
                socket_buffer: env.ranged("CHAT_SOCKET_BUFFER", chat.socket_buffer, 8..=100_000)?,
                ping_interval: env.millis(
                    "CHAT_PING_INTERVAL_MS",
                    chat.ping_interval.as_millis() as u64,
                    100..=300_000,
                )?,
                ping_timeout: env.millis(
                    "CHAT_PING_TIMEOUT_MS",
                    chat.ping_timeout.as_millis() as u64,
                    100..=300_000,
                )?,
            },
            abuse: abuse_limits(&env)?,
            message_edit_window: env.seconds("MESSAGE_EDIT_WINDOW_SECONDS", 900, 0..=31_536_000)?,
        };
        if config.refresh_token_ttl <= config.access_token_ttl {
            return Err(ConfigError {
                variable: "REFRESH_TOKEN_TTL_SECONDS",
                reason: "must be longer than ACCESS_TOKEN_TTL_SECONDS".into(),
            });
        }
        Ok(config)
    }

    /// The MongoDB database name: the URI's path, or `scalable_chat`.
    pub fn mongodb_database(&self) -> String {
        database_from_uri(self.mongodb_uri.expose()).unwrap_or_else(|| "scalable_chat".into())
    }
}

fn database_from_uri(uri: &str) -> Option<String> {
    let rest = uri.split_once("://")?.1;
    let path = rest.split_once('/')?.1;
    let name = path.split('?').next()?;
    (!name.is_empty()).then(|| name.to_string())
}

struct Env<'a>(&'a HashMap<String, String>);

impl Env<'_> {
    fn raw(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    fn string(&self, name: &str, default: &str) -> String {
        self.raw(name).unwrap_or(default).to_string()
    }

    fn checked(
        &self,
        name: &'static str,
        default: &str,
        expected: &str,
        ok: impl Fn(&str) -> bool,
    ) -> Result<String, ConfigError> {
        let value = self.string(name, default);
        if ok(&value) {
            Ok(value)
        } else {
            Err(ConfigError {
                variable: name,
                reason: format!("expected {expected}"),
            })
        }
    }

    fn optional<T>(
        &self,
        name: &'static str,
        expected: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<Option<T>, ConfigError> {
        match self.raw(name) {
            None => Ok(None),
            Some(v) => parse(v).map(Some).ok_or_else(|| ConfigError {
                variable: name,
                reason: format!("expected {expected}"),
            }),
        }
    }

    fn parse<T: FromStr>(
        &self,
        name: &'static str,
        default: T,
        expected: &str,
    ) -> Result<T, ConfigError> {
        Ok(self
            .optional(name, expected, |v| v.parse().ok())?
            .unwrap_or(default))
    }

    fn ranged<T>(
        &self,
        name: &'static str,
        default: T,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + fmt::Display + Copy,
    {
        let expected = format!("a whole number from {} to {}", range.start(), range.end());
        let value = self.parse(name, default, &expected)?;
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(ConfigError {
                variable: name,
                reason: format!("expected {expected}"),
            })
        }
    }

    fn seconds(
        &self,
        name: &'static str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Duration, ConfigError> {
        self.ranged(name, default, range).map(Duration::from_secs)
    }

    fn millis(
        &self,
        name: &'static str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Duration, ConfigError> {
        self.ranged(name, default, range).map(Duration::from_millis)
    }

    fn choice<T: Copy>(
        &self,
        name: &'static str,
        default: T,
        options: &[(&str, T)],
    ) -> Result<T, ConfigError> {
        let Some(v) = self.raw(name) else {
            return Ok(default);
        };
        options
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(v))
            .map(|(_, value)| *value)
            .ok_or_else(|| ConfigError {
                variable: name,
                reason: format!(
                    "expected one of: {}",
                    options
                        .iter()
                        .map(|(k, _)| *k)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
    }

    fn uri(
        &self,
        name: &'static str,
        default: &str,
        schemes: &[&str],
    ) -> Result<Secret, ConfigError> {
        let value = self.string(name, default);
        if schemes.iter().any(|s| value.starts_with(s))
            && value.len() > value.find("://").unwrap_or(0) + 3
        {
            Ok(Secret(value))
        } else {
            Err(ConfigError {
                variable: name,
                reason: format!("expected a URI starting with {}", schemes.join(" or ")),
            })
        }
    }

    fn path(&self, name: &'static str) -> Result<Option<PathBuf>, ConfigError> {
        match self.raw(name) {
            None => Ok(None),
            Some(p) => {
                let path = PathBuf::from(p);
                if path.is_file() {
                    Ok(Some(path))
                } else {
                    Err(ConfigError {
                        variable: name,
                        reason: "no readable file at that path".into(),
                    })
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_need_no_variables() {
        let c = Config::from_lookup(&HashMap::new()).unwrap();
        assert_eq!(c.namespace, "chat");
        assert_eq!(c.rpc_timeout, Duration::from_secs(5));
        assert_eq!(c.kafka_fetch_wait, Duration::from_millis(10));
        assert_eq!(c.facts_relay, FactsRelay::Kafka);
        assert_eq!(c.mongodb_database(), "scalable_chat");
        assert_eq!(c.log_format, LogFormat::Text);
        assert!(c.cors_allowed_origins.is_empty());
        assert_eq!(c.assets, AssetLimits::default());
        assert_eq!(c.chat, ChatLimits::default());
    }

    #[test]
    fn a_bad_value_names_the_variable() {
        let err = Config::from_lookup(&vars(&[("PORT", "eighty")])).unwrap_err();
        assert_eq!(err.variable, "PORT");
        let any = Config::from_lookup(&vars(&[("PORT", "0")])).unwrap();
        assert_eq!(any.port, Some(0), "0 asks for a free port");
        let err = Config::from_lookup(&vars(&[("RPC_TIMEOUT_MS", "0")])).unwrap_err();
        assert_eq!(err.variable, "RPC_TIMEOUT_MS");
        let err = Config::from_lookup(&vars(&[("KAFKA_FETCH_WAIT_MS", "-1")])).unwrap_err();
        assert_eq!(err.variable, "KAFKA_FETCH_WAIT_MS");
        let err = Config::from_lookup(&vars(&[("LOG_FORMAT", "xml")])).unwrap_err();
        assert!(err.to_string().contains("LOG_FORMAT") && err.to_string().contains("json"));
        let err = Config::from_lookup(&vars(&[("FACTS_RELAY", "rabbitmq")])).unwrap_err();
        assert!(err.to_string().contains("FACTS_RELAY") && err.to_string().contains("redis"));
        let redis = Config::from_lookup(&vars(&[("FACTS_RELAY", "redis")])).unwrap();
        assert_eq!(redis.facts_relay, FactsRelay::Redis);
    }

    #[test]
    fn a_bad_secret_is_never_echoed() {
        let err = Config::from_lookup(&vars(&[("MONGODB_URI", "postgres://admin:hunter2@db")]))
            .unwrap_err();
        assert_eq!(err.variable, "MONGODB_URI");
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn secrets_debug_print_redacted() {
        let c =
            Config::from_lookup(&vars(&[("REDIS_URL", "redis://:hunter2@cache:6379")])).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn uri_passwords_are_redacted_for_logs() {
        assert_eq!(
            redact_uri("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact_uri("redis://:pw@h:6379"), "redis://:***@h:6379");
        assert_eq!(redact_uri("mongodb://h:27017/db"), "mongodb://h:27017/db");
    }

    #[test]
    fn refresh_tokens_must_outlive_access_tokens() {
        let err = Config::from_lookup(&vars(&[
            ("ACCESS_TOKEN_TTL_SECONDS", "3600"),
            ("REFRESH_TOKEN_TTL_SECONDS", "600"),
        ]))
        .unwrap_err();
        assert_eq!(err.variable, "REFRESH_TOKEN_TTL_SECONDS");
    }

    #[test]
    fn database_name_comes_from_the_uri_path() {
        assert_eq!(
            database_from_uri("mongodb://h:1/chat_x?retryWrites=false").as_deref(),
            Some("chat_x")
        );
        assert_eq!(database_from_uri("mongodb://h:1/?x=1"), None);
    }

    #[test]
    fn chat_limits_are_configurable_and_bounded() {
        let c = Config::from_lookup(&vars(&[
            ("CHAT_EVENTS_PER_SECOND", "500"),
            ("CHAT_ACK_TIMEOUT_SECONDS", "30"),
            ("CHAT_REPLAY_LIMIT", "50"),
        ]))
        .unwrap();
        assert_eq!(c.chat.events_per_second, 500);
        assert_eq!(c.chat.ack_timeout, Duration::from_secs(30));
        assert_eq!(c.chat.replay_limit, 50);
        // Replays are one history page, and a page holds at most 100 messages.
        let err = Config::from_lookup(&vars(&[("CHAT_REPLAY_LIMIT", "101")])).unwrap_err();
        assert_eq!(err.variable, "CHAT_REPLAY_LIMIT");
        let err = Config::from_lookup(&vars(&[("CHAT_EVENTS_PER_SECOND", "0")])).unwrap_err();
        assert_eq!(err.variable, "CHAT_EVENTS_PER_SECOND");
    }

    #[test]
    fn namespace_rejects_characters_unsafe_for_queue_names() {
        assert!(Config::from_lookup(&vars(&[("CHAT_NAMESPACE", "Prod Chat")])).is_err());
        assert!(Config::from_lookup(&vars(&[("CHAT_NAMESPACE", "prod-chat_1")])).is_ok());
    }
}
