//! chat-ports: what the roles need from the outside world, one trait per need, with no driver.
//! Each adapter family implements every port: `chat-mongodb`, `chat-kafka`, `chat-rabbitmq` and
//! `chat-redis` in production, `chat-embedded` for `chat-server all` on one machine.
//!
//! - [`store`]: users, refresh tokens, signing keys, groups, messages; presence and rate limits.
//! - [`assets`]: chunked uploads and stored files.
//! - [`events`]: the event log (commands and facts).
//! - [`rpc`]: request/response between roles.
//! - [`health`]: readiness probes; [`metrics`]: the process's Prometheus registry.
//! - [`clients`]: typed calls other roles make (token verification keys, membership).

pub mod assets;
pub mod clients;
pub mod events;
pub mod health;
pub mod metrics;
pub mod rpc;
pub mod startup;
pub mod store;
