//! chat-domain: what every scalable-chat role agrees on, with no framework and no driver.
//!
//! - [`error`]: the one error type and its stable codes (mapped to HTTP by `chat-http`).
//! - [`values`]: validated values (email, names, passwords, pages, search words).
//! - [`contracts`]: the wire contracts: REST bodies, RPC patterns, commands and facts.
//! - [`rpc`] and [`events`]: the transport-independent envelopes of RPC replies and events.
//! - [`assets`]: the attachment rules (limits, file names, sniffing, ranges, assembly).
//! - [`tokens`]: access-token signing and verification (Ed25519 JWT with `kid`).
//! - [`config`]: configuration from environment variables, validated at start-up.

pub mod assets;
pub mod config;
pub mod contracts;
pub mod error;
pub mod events;
pub mod key;
pub mod rpc;
pub mod tokens;
pub mod values;

pub use error::{Error, ErrorCode};

/// The version of this build, reported by `/health` and `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
