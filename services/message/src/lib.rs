//! The message role (seed §Message Service).
//!
//! It consumes chat commands from Kafka (keyed by group, so one group's commands arrive in
//! order), checks them against membership where the data is, persists them, and publishes the
//! resulting fact; only then does the consumer commit the command's offset. A crash before the
//! commit re-delivers the command: the store absorbs the duplicate (unique sender + client
//! message id) and the fact is published again, which chat replicas deduplicate by message id.
//!
//! Commands that are refused (not a member, invalid) become a `command.rejected` fact for their
//! sender; they are not retried. Infrastructure failures are retried in place.
//!
//! Over RPC it serves history (both directions), search and per-group summaries, to members
//! only.
//!
//! It owns the messages and each user's read position; the memberships it checks belong to the
//! group role, which it asks over RPC ([`members`]).

pub mod members;

use std::sync::Arc;

use chat_domain::contracts::assets::AssetGrant;
use chat_domain::contracts::groups::{GroupError, GroupRef, MemberRole};
use chat_domain::contracts::messages::*;
use chat_domain::events::COMMANDS;
use chat_domain::events::{Envelope, FACTS};
use chat_domain::Error;
use chat_ports::clients::AssetsClient;
use chat_ports::events::{EventLog, Record, StartAt};
use chat_ports::metrics::Hop;
use chat_ports::rpc::RpcServer;
use chat_ports::store::{MessageStore, NewMessage, Receipt};
use members::Members;
use tokio_util::sync::CancellationToken;

/// The message service.
pub struct MessageService {
    messages: Arc<dyn MessageStore>,
    members: Arc<Members>,
    assets: AssetsClient,
    events: EventLog,
    /// How long after sending a sender may edit (`MESSAGE_EDIT_WINDOW_SECONDS`).
    edit_window: std::time::Duration,
}

const PRODUCER: &str = "message";

fn not_a_member() -> Error {
    MessageError::NotMember.into()
}

/// Validates a send: text and/or attachment, bounded text and client id.
fn check_send(
    client_message_id: &str,
    content: &Option<String>,
    attachment: &Option<AttachmentRef>,
) -> Result<Option<String>, Error> {
    if client_message_id.trim().is_empty()
        || client_message_id.chars().count() > MAX_CLIENT_ID_CHARS
    {
        return Err(MessageError::InvalidClientMessageId {
            max: MAX_CLIENT_ID_CHARS,
        }
        .into());
    }
    match content.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
        None if attachment.is_some() => Ok(None),
        None => Err(MessageError::EmptyMessage.into()),
        Some(c) => check_text(c).map(Some),
    }
}

/// A message text: trimmed, not empty, within the limit.
fn check_text(content: &str) -> Result<String, Error> {
    let c = content.trim();
    if c.is_empty() {
        return Err(MessageError::EmptyMessage.into());
    }
    if c.chars().count() > MAX_MESSAGE_CHARS {
        return Err(MessageError::MessageTooLong {
            max: MAX_MESSAGE_CHARS,
        }
        .into());
    }
    Ok(c.to_string())
}

impl MessageService {
    pub fn new(
        messages: Arc<dyn MessageStore>,
        members: Arc<Members>,
        assets: AssetsClient,
        events: EventLog,
        edit_window: std::time::Duration,
    ) -> Self {
        MessageService {
            messages,
            members,
            assets,
            events,
            edit_window,
        }
    }

    /// The message `message_id` of the group; not found when it is another group's.
    async fn message_in(&self, group_id: &str, message_id: &str) -> Result<MessageView, Error> {
        self.messages
            .get(message_id)
            .await?
            .filter(|m| m.group_id == group_id)
            .ok_or_else(|| MessageError::MessageNotFound.into())
    }

    /// The sender's role in the group; refused when not a member.
    async fn member(&self, group_id: &str, user_id: &str) -> Result<MemberRole, Error> {
        self.members
            .role(group_id, user_id)
            .await?
            .ok_or_else(not_a_member)
    }

    async fn publish(&self, group_id: &str, fact: Fact) -> Result<(), Error> {
        self.events
            .publish(FACTS, &Envelope::new(PRODUCER, group_id, fact))
            .await
    }

    /// Handles one command. `Err` means "retry" (infrastructure failed); refusals are published
    /// as `command.rejected` and return `Ok`.
    pub async fn handle(&self, record: Record<Command>) -> Result<(), Error> {
        let (taken, started) = (chrono::Utc::now(), std::time::Instant::now());
        let group_id = record.envelope.key.clone();
        let expired = record.envelope.expired();
        let (stamped, waited) = (record.envelope.at, record.waited);
        let command = record.envelope.event;
        if expired {
            return self.expired(&group_id, &command).await;
        }
        match self.apply(&group_id, &command).await {
            Ok(fact) => {
                let created = matches!(fact, Fact::MessageCreated { .. });
                let stored = started.elapsed();
                self.publish(&group_id, fact).await?;
                if created {
                    // The log's time ends where the lane's queue began.
                    let read = taken - chrono::Duration::from_std(waited).unwrap_or_default();
                    chat_ports::metrics::hop_between(Hop::CommandLog, stamped, read);
                    chat_ports::metrics::hop(Hop::StoreQueued, waited);
                    chat_ports::metrics::hop(Hop::Store, stored);
                }
                Ok(())
            }
            // Infrastructure failed: the log redelivers the command.
            Err(e) if e.is_transient() => Err(e),
            Err(error) => {
                let user_id = match &command {
                    Command::Send { user_id, .. }
                    | Command::Seen { user_id, .. }
                    | Command::Delivered { user_id, .. }
                    | Command::Delete { user_id, .. }
                    | Command::Edit { user_id, .. } => user_id.clone(),
                };
                tracing::info!(%group_id, reason = error.reason(), "command rejected");
                let fact = Fact::CommandRejected {
                    command_id: command.command_id().to_string(),
                    user_id,
                    error,
                };
                self.publish(&group_id, fact).await
            }
        }
    }

    /// A command read after its sender stopped waiting: its sender was told to retry, so it is
    /// dropped, except a send that a consumer stored before dying without announcing it, which
    /// is announced now (the retry would find it stored, and receivers would miss it live).
    async fn expired(&self, group_id: &str, command: &Command) -> Result<(), Error> {
        chat_ports::metrics::shed("expired_command");
        let Command::Send {
            command_id,
            user_id,
            client_message_id,
            ..
        } = command
        else {
            return Ok(());
        };
        match self.messages.sent(user_id, client_message_id).await? {
            Some(message) if message.group_id == group_id => {
                let fact = Fact::MessageCreated {
                    command_id: Some(command_id.clone()),
                    message,
                };
                self.publish(group_id, fact).await
            }
            _ => {
                tracing::debug!(%group_id, "expired send dropped");
                Ok(())
            }
        }
    }

    async fn apply(&self, group_id: &str, command: &Command) -> Result<Fact, Error> {
        match command {
            Command::Send {
                command_id,
                user_id,
                client_message_id,
                content,
                attachment,
            } => {
                let content = check_send(client_message_id, content, attachment)?;
                self.member(group_id, user_id).await?;
                let asset = match attachment {
                    Some(a) => Some(
                        self.assets
                            .attachment(user_id, &a.url)
                            .await?
                            .ok_or_else(|| Error::from(MessageError::AttachmentNotUploaded))?,
                    ),
                    None => None,
                };
                let (message, created) = self
                    .messages
                    .append(NewMessage {
                        group_id: group_id.to_string(),
                        sender_id: user_id.clone(),
                        client_message_id: client_message_id.clone(),
                        content,
                        // What was stored, not what the client claims.
                        attachment: asset.as_ref().map(|a| a.attachment()),
                    })
                    .await?;
                // The group's members may now download the file.
                if let Some(asset) = asset.filter(|a| !a.groups.iter().any(|g| g == group_id)) {
                    let (asset_id, group_id) = (asset.id, group_id.to_string());
                    self.assets
                        .grant(AssetGrant::Group { asset_id, group_id })
                        .await?;
                }
                if !created {
                    tracing::info!(%group_id, seq = message.seq, "retried send absorbed");
                }
                Ok(Fact::MessageCreated {
                    command_id: Some(command_id.clone()),
                    message,
                })
            }
            Command::Seen {
                command_id,
                user_id,
                seq,
                message_id,
            } => {
                self.member(group_id, user_id).await?;
                let seq = &match (seq, message_id) {
                    (_, Some(id)) => self.message_in(group_id, id).await?.seq,
                    (Some(seq), None) => *seq,
                    (None, None) => {
                        return Err(MessageError::InvalidPayload {
                            event: "chat.message.seen".into(),
                        }
                        .into())
                    }
                };
                self.reached(group_id, *seq).await?;
                let now = chat_domain::values::now_millis();
                // From a device that had not caught up, the position stays where another device
                // moved it, and that is what every device hears (badges never move back).
                let seen = self
                    .messages
                    .mark(Receipt::Seen, group_id, user_id, *seq, now)
                    .await?;
                Ok(Fact::MessageSeen {
                    command_id: Some(command_id.clone()),
                    user_id: user_id.clone(),
                    seq: seen,
                    seen_at: now,
                })
            }
            Command::Delivered {
                command_id,
                user_id,
                seq,
            } => {
                self.member(group_id, user_id).await?;
                self.reached(group_id, *seq).await?;
                let now = chat_domain::values::now_millis();
                let delivered = self
                    .messages
                    .mark(Receipt::Delivered, group_id, user_id, *seq, now)
                    .await?;
                Ok(Fact::MessageDelivered {
                    command_id: Some(command_id.clone()),
                    user_id: user_id.clone(),
                    seq: delivered,
                    delivered_at: now,
                })
            }
            Command::Delete {
                command_id,
                user_id,
                message_id,
            } => {
                let role = self.member(group_id, user_id).await?;
                let message = self.message_in(group_id, message_id).await?;
                // Not refused on a kept answer: a member made an admin a moment ago may delete.
                if message.sender_id != *user_id
                    && role != MemberRole::Admin
                    && self.members.asked(group_id, user_id).await? != Some(MemberRole::Admin)
                {
                    return Err(MessageError::NotSenderOrAdmin.into());
                }
                let deleted = self
                    .messages
                    .tombstone(message_id)
                    .await?
                    .ok_or(MessageError::MessageNotFound)?;
                Ok(Fact::MessageDeleted {
                    command_id: Some(command_id.clone()),
                    message_id: deleted.id,
                    seq: deleted.seq,
                    deleted_by: user_id.clone(),
                })
            }
            Command::Edit {
                command_id,
                user_id,
                message_id,
                content,
            } => {
                self.member(group_id, user_id).await?;
                let message = self.message_in(group_id, message_id).await?;
                if message.sender_id != *user_id {
                    return Err(MessageError::NotSender.into());
                }
                if message.deleted {
                    return Err(MessageError::MessageDeleted.into());
                }
                let now = chat_domain::values::now_millis();
                let window = chrono::Duration::from_std(self.edit_window).unwrap_or_default();
                if now - message.created_at > window {
                    return Err(MessageError::EditWindowClosed {
                        seconds: self.edit_window.as_secs(),
                    }
                    .into());
                }
                let content = check_text(content)?;
                let edited = self
                    .messages
                    .edit(message_id, &content, now)
                    .await?
                    .ok_or(MessageError::MessageNotFound)?;
                Ok(Fact::MessageEdited {
                    command_id: Some(command_id.clone()),
                    message: edited,
                })
            }
        }
    }

    /// Refuses a receipt `seq` the group has not reached (0 is every group's start).
    async fn reached(&self, group_id: &str, seq: i64) -> Result<(), Error> {
        let last = self
            .messages
            .before(group_id, None, 1)
            .await?
            .first()
            .map(|m| m.seq)
            .unwrap_or(0);
        if seq < 0 || seq > last {
            return Err(MessageError::SeqOutOfRange { last }.into());
        }
        Ok(())
    }

    /// Every member's receipt positions, to members only. A member who saw messages has
    /// received them: the delivered position is never behind the seen one.
    pub async fn receipts(&self, request: GroupRef) -> Result<Vec<ReceiptPositions>, Error> {
        self.members
            .role(&request.group_id, &request.caller)
            .await?
            .ok_or(GroupError::GroupNotFound)?;
        let mut positions = self.messages.receipts(&request.group_id).await?;
        for p in &mut positions {
            p.delivered_seq = p.delivered_seq.max(p.seen_seq);
        }
        Ok(positions)
    }

    /// A page of history, to members only.
    pub async fn history(&self, request: HistoryRequest) -> Result<HistoryPage, Error> {
        self.members
            .role(&request.group_id, &request.caller)
            .await?
            .ok_or(GroupError::GroupNotFound)?;
        let q = request.query;
        let limit = q.limit.unwrap_or(DEFAULT_HISTORY_PAGE);
        if limit == 0 || limit > MAX_HISTORY_PAGE {
            return Err(MessageError::InvalidLimit {
                max: MAX_HISTORY_PAGE,
            }
            .into());
        }
        // One more than asked tells whether there is more.
        let mut data = match q.after {
            Some(after) => {
                let mut page = self
                    .messages
                    .after(&request.group_id, after, limit + 1)
                    .await?;
                // Both cursors: the messages between them, oldest first.
                if let Some(before) = q.before {
                    page.retain(|m| m.seq < before);
                }
                page
            }
            None => {
                self.messages
                    .before(&request.group_id, q.before, limit + 1)
                    .await?
            }
        };
        let has_more = data.len() > limit as usize;
        data.truncate(limit as usize);
        Ok(HistoryPage { data, has_more })
    }

    /// Search in the caller's groups.
    pub async fn search(&self, request: SearchRequest) -> Result<Vec<MessageView>, Error> {
        let text = request.query.q.trim();
        if text.is_empty() || text.chars().count() > 100 {
            return Err(MessageError::InvalidQuery.into());
        }
        let limit = request.query.limit.unwrap_or(20);
        if limit == 0 || limit > 100 {
            return Err(MessageError::InvalidLimit { max: 100 }.into());
        }
        let groups: Vec<String> = self
            .members
            .among(&request.caller, None)
            .await?
            .into_iter()
            .map(|m| m.group_id)
            .collect();
        self.messages.search(&groups, text, limit).await
    }

    /// Last message, unread count and last seen sequence of each of the caller's groups named.
    pub async fn summaries(&self, request: SummariesRequest) -> Result<Vec<GroupSummary>, Error> {
        let asked: Vec<String> = request.group_ids.into_iter().take(500).collect();
        // Only the caller's groups, in the order asked: the others are left out.
        let theirs: std::collections::HashSet<String> = self
            .members
            .among(&request.caller, Some(asked.clone()))
            .await?
            .into_iter()
            .map(|m| m.group_id)
            .collect();
        let asked: Vec<String> = asked.into_iter().filter(|g| theirs.contains(g)).collect();
        Ok(self
            .messages
            .activity(&request.caller, &asked)
            .await?
            .into_iter()
            .map(|a| GroupSummary {
                group_id: a.group_id,
                last_message: a.last_message,
                unread_count: a.unread,
                last_seen_seq: a.last_seen_seq,
            })
            .collect())
    }
}

/// Registers the message role's RPC patterns on `server`.
pub fn rpc_handlers(service: Arc<MessageService>, server: RpcServer) -> RpcServer {
    let server = chat_ports::rpc_bind!(server, service, MessageHistory, history);
    let server = chat_ports::rpc_bind!(server, service, MessageSearch, search);
    let server = chat_ports::rpc_bind!(server, service, MessageReceipts, receipts);
    chat_ports::rpc_bind!(server, service, MessageSummaries, summaries)
}

/// The message role's background work: stores the chat commands on the log, in order, until
/// `shutdown`. A command is committed on the log only once it is stored.
pub async fn consume_commands(
    service: Arc<MessageService>,
    log: EventLog,
    shutdown: CancellationToken,
) {
    let handle = move |record| {
        let service = service.clone();
        async move { service.handle(record).await }
    };
    if let Err(e) = log
        .consume(COMMANDS, "message", StartAt::Earliest, shutdown, handle)
        .await
    {
        tracing::error!(error = %e, "the command consumer stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_need_bounded_content_and_a_client_id() {
        assert_eq!(
            check_send("c1", &Some("  hi ".into()), &None)
                .unwrap()
                .as_deref(),
            Some("hi")
        );
        assert!(check_send("", &Some("hi".into()), &None).is_err());
        assert!(check_send(&"x".repeat(65), &Some("hi".into()), &None).is_err());
        assert!(check_send("c1", &Some("   ".into()), &None).is_err());
        assert!(check_send("c1", &None, &None).is_err());
        let file = AttachmentRef {
            url: "/assets/665f1f77bcf86cd799439011".into(),
        };
        assert_eq!(check_send("c1", &None, &Some(file)).unwrap(), None);
        assert!(check_send("c1", &Some("x".repeat(4001)), &None).is_err());
    }
}
