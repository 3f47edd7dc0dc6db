//! Events on the log: every command and fact travels in a versioned [`Envelope`], keyed by
//! group id so one group's events stay in order.
//!
//! Topics are `<namespace>.chat.commands` (chat → message) and `<namespace>.chat.facts`
//! (message and group → every chat replica).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Version of the event envelope.
pub const EVENT_VERSION: u8 = 1;
/// Topic of chat commands.
pub const COMMANDS: &str = "chat.commands";
/// Topic of facts.
pub const FACTS: &str = "chat.facts";

/// Every event on the log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope<T> {
    /// Envelope version.
    pub v: u8,
    /// Unique event id; consumers use it to drop duplicates.
    pub id: String,
    /// The role that produced it.
    pub producer: String,
    /// The group the event is about (also the partition key).
    pub group_id: String,
    pub at: DateTime<Utc>,
    pub event: T,
}

impl<T> Envelope<T> {
    pub fn new(producer: &str, group_id: &str, event: T) -> Self {
        Envelope {
            v: EVENT_VERSION,
            id: uuid::Uuid::new_v4().to_string(),
            producer: producer.to_string(),
            group_id: group_id.to_string(),
            at: Utc::now(),
            event,
        }
    }
}
