//! Events on the log: every command and fact travels in a versioned [`Envelope`] with a key:
//! the group id for everything about a group (so one group's events stay in order), the user id
//! for a user's presence.
//!
//! Topics are `<namespace>.chat.commands` (chat → message) and `<namespace>.chat.facts`
//! (message and group → every chat replica).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Version of the event envelope.
///
/// 2: the partition key is `key` (it was `groupId`, which presence facts filled with a user id).
/// Version-1 events are still read.
pub const EVENT_VERSION: u8 = 2;
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
    /// The partition key: the group the event is about, or the user whose presence changed.
    #[serde(alias = "groupId")]
    pub key: String,
    pub at: DateTime<Utc>,
    /// For a command: when its sender stops waiting and is told to retry. A command read after
    /// its deadline is not carried out (unless it already was, by a consumer that died before
    /// announcing it), so a backlog built up under overload drains without doing work nobody
    /// waits for. Absent on facts and on commands of older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<DateTime<Utc>>,
    pub event: T,
}

impl<T> Envelope<T> {
    pub fn new(producer: &str, key: &str, event: T) -> Self {
        Envelope {
            v: EVENT_VERSION,
            id: uuid::Uuid::new_v4().to_string(),
            producer: producer.to_string(),
            key: key.to_string(),
            at: Utc::now(),
            deadline: None,
            event,
        }
    }

    /// The same envelope with a deadline `after` from now.
    pub fn expiring_after(mut self, after: std::time::Duration) -> Self {
        self.deadline = chrono::Duration::from_std(after)
            .ok()
            .map(|after| self.at + after);
        self
    }

    /// Whether its deadline has passed.
    pub fn expired(&self) -> bool {
        self.deadline.is_some_and(|deadline| deadline < Utc::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_1_envelope_is_read_with_its_group_as_key() {
        let old = r#"{"v":1,"id":"e1","producer":"message","groupId":"g1","at":"2026-01-01T00:00:00Z","event":7}"#;
        let envelope: Envelope<u32> = serde_json::from_str(old).unwrap();
        assert_eq!((envelope.key.as_str(), envelope.event), ("g1", 7));
        let new = serde_json::to_value(Envelope::new("chat", "ada", 1u32)).unwrap();
        assert_eq!(new["key"], "ada");
        assert!(new.get("groupId").is_none());
    }
}
