//! chat-embedded: every port in one process, for `chat-server all` with no infrastructure.
//!
//! - [`sqlite`]: every store on one SQLite file (users, tokens, keys, groups, messages, files).
//! - [`log`]: the event log in memory, with Kafka's commit semantics.
//! - [`bus`]: the RPC transport and listener in memory.
//! - [`memory`]: presence and rate limits in memory, as Redis holds them.
//!
//! The conformance suites (`services/adapters/conformance`) hold every adapter here to the
//! same assertions as its production counterpart.

pub mod bus;
pub mod log;
pub mod memory;
pub mod sqlite;

pub use bus::LocalBus;
pub use log::LocalLog;
pub use memory::{MemoryPresence, MemoryRateLimiter, MemoryRevocations};
pub use sqlite::{SqliteDb, SqliteProbe};
