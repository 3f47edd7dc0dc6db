//! chat-core: what every scalable-chat role shares.
//!
//! - [`error`]: the one error type, mapped once to an HTTP status and the JSON error shape.
//! - [`config`]: configuration from environment variables, validated at start-up.
//! - [`telemetry`], [`metrics`], [`health`], [`http`]: logs, Prometheus metrics, probes and the
//!   HTTP middleware stack every role uses.
//! - [`rpc`]: typed request/response over RabbitMQ.
//! - [`tokens`]: access-token signing and verification (Ed25519 JWT with `kid`).
//! - [`domain`] and [`contracts`]: validated domain types and the wire contracts between roles.
//! - [`store`], [`mongo`], [`redis`]: the storage and rate-limit ports and their adapters.
//! - [`assets`], [`gridfs`]: chunked uploads and file downloads, stored in MongoDB GridFS.

pub mod assets;
pub mod config;
pub mod contracts;
pub mod domain;
pub mod error;
pub mod events;
pub mod gridfs;
pub mod health;
pub mod http;
pub mod memory;
pub mod metrics;
pub mod mongo;
pub mod redis;
pub mod rpc;
pub mod shutdown;
pub mod sqlite;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod tokens;

pub use error::{Error, ErrorCode};

/// The version of this build, reported by `/health` and `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
