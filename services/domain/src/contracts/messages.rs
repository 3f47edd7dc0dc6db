//! Messages: the commands chat sends to the message role over Kafka, the facts every chat replica
//! receives, and the message role's RPC patterns (history, catch-up, search, summaries).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::groups::{GroupView, MemberRole};
use crate::error::Error;
use crate::rpc_pattern as pattern;

/// Longest message text, in characters.
pub const MAX_MESSAGE_CHARS: usize = 4000;
/// Longest client message id.
pub const MAX_CLIENT_ID_CHARS: usize = 64;
/// Default and largest history page.
pub const DEFAULT_HISTORY_PAGE: u32 = 50;
pub const MAX_HISTORY_PAGE: u32 = 100;

/// A file attached to a message (the seed's `attachment`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    pub filename: String,
    pub url: String,
    #[serde(rename = "type")]
    pub content_type: String,
    pub size: u64,
}

/// What a sender attaches: the `url` of a file it uploaded (`/assets/<id>`, as
/// `complete-upload` answers). Whatever else a client sends along (`filename`, `type`, `size`)
/// is ignored: the message carries the stored file's own values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AttachmentRef {
    pub url: String,
}

/// A stored message. Deleted messages keep their place (`seq`) as tombstones without content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageView {
    pub id: String,
    pub group_id: String,
    /// Position in the group: 1, 2, 3, ... with no gaps.
    pub seq: i64,
    pub sender_id: String,
    /// The sender's idempotency key.
    pub client_message_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<Attachment>,
    pub deleted: bool,
    pub created_at: DateTime<Utc>,
    /// When the sender last edited the text; absent if never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<DateTime<Utc>>,
}

/// What a client asks the chat role to do; travels on `chat.commands` keyed by group id.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all_fields = "camelCase")]
pub enum Command {
    /// Store a message. Retrying with the same `client_message_id` returns the stored one.
    #[serde(rename = "message.send")]
    Send {
        command_id: String,
        user_id: String,
        client_message_id: String,
        content: Option<String>,
        attachment: Option<AttachmentRef>,
    },
    /// The user has seen the group up to `seq`, or up to the message `message_id` (the
    /// seed's form); exactly one of them.
    #[serde(rename = "message.seen")]
    Seen {
        command_id: String,
        user_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message_id: Option<String>,
    },
    /// A device of the user has received the group's messages up to `seq`.
    #[serde(rename = "message.delivered")]
    Delivered {
        command_id: String,
        user_id: String,
        seq: i64,
    },
    /// Delete a message (its sender or a group admin).
    #[serde(rename = "message.delete")]
    Delete {
        command_id: String,
        user_id: String,
        message_id: String,
    },
    /// Replace a message's text (its sender, within the edit window).
    #[serde(rename = "message.edit")]
    Edit {
        command_id: String,
        user_id: String,
        message_id: String,
        content: String,
    },
}

impl Command {
    pub fn command_id(&self) -> &str {
        match self {
            Command::Send { command_id, .. }
            | Command::Seen { command_id, .. }
            | Command::Delivered { command_id, .. }
            | Command::Delete { command_id, .. }
            | Command::Edit { command_id, .. } => command_id,
        }
    }
}

/// What happened; travels on `chat.facts` keyed by group id, to every chat replica.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all_fields = "camelCase")]
pub enum Fact {
    #[serde(rename = "message.created")]
    MessageCreated {
        command_id: Option<String>,
        message: MessageView,
    },
    #[serde(rename = "message.seen")]
    MessageSeen {
        command_id: Option<String>,
        user_id: String,
        seq: i64,
        seen_at: DateTime<Utc>,
    },
    /// A device of the user received the group up to `seq` (a seen receipt implies it).
    #[serde(rename = "message.delivered")]
    MessageDelivered {
        command_id: Option<String>,
        user_id: String,
        seq: i64,
        delivered_at: DateTime<Utc>,
    },
    #[serde(rename = "message.deleted")]
    MessageDeleted {
        command_id: Option<String>,
        message_id: String,
        seq: i64,
        deleted_by: String,
    },
    /// A message's text was edited by its sender.
    #[serde(rename = "message.edited")]
    MessageEdited {
        command_id: Option<String>,
        message: MessageView,
    },
    /// A command was refused (not a member, invalid, ...); only its sender hears of it.
    #[serde(rename = "command.rejected")]
    CommandRejected {
        command_id: String,
        user_id: String,
        error: Error,
    },
    #[serde(rename = "group.created")]
    GroupCreated { group: GroupView },
    #[serde(rename = "group.members_added")]
    MembersAdded {
        user_ids: Vec<String>,
        group: GroupView,
    },
    #[serde(rename = "group.member_removed")]
    MemberRemoved { user_id: String },
    /// An admin made a member an admin, or an admin a member.
    #[serde(rename = "group.member_role_changed")]
    MemberRoleChanged {
        user_id: String,
        role: MemberRole,
        changed_by: String,
    },
    /// A member started or stopped typing in the group (never stored).
    #[serde(rename = "user.typing")]
    Typing { user_id: String, typing: bool },
    /// A user's first socket connected, or their last one closed (keyed by user id).
    #[serde(rename = "user.presence")]
    Presence {
        user_id: String,
        online: bool,
        at: DateTime<Utc>,
        group_ids: Vec<String>,
    },
}

/// `GET /groups/{id}/messages` query: `before` pages back (newest first), `after` catches up
/// (oldest first); both: the messages between them, oldest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Messages with a smaller sequence number, newest first.
    pub before: Option<i64>,
    /// Messages with a larger sequence number, oldest first.
    pub after: Option<i64>,
    /// Page size, default 50, at most 100.
    pub limit: Option<u32>,
}

/// A page of history.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryPage {
    pub data: Vec<MessageView>,
    /// More messages exist beyond this page in the same direction.
    pub has_more: bool,
}

/// `message.history` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryRequest {
    pub caller: String,
    pub group_id: String,
    #[serde(flatten)]
    pub query: HistoryQuery,
}

/// `GET /messages/search` query.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// Case-insensitive text to find in the caller's groups.
    pub q: String,
    /// At most this many results (default 20, at most 100).
    pub limit: Option<u32>,
}

/// `message.search` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchRequest {
    pub caller: String,
    #[serde(flatten)]
    pub query: SearchQuery,
}

/// Per-group state for one user.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupSummary {
    pub group_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_message: Option<MessageView>,
    pub unread_count: u64,
    pub last_seen_seq: i64,
}

/// A member's receipts in a group: how far their devices have received it and how far they
/// have seen it (0: not yet). `seenSeq` never exceeds `deliveredSeq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptPositions {
    pub user_id: String,
    pub delivered_seq: i64,
    pub seen_seq: i64,
}

/// `message.summaries` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SummariesRequest {
    pub caller: String,
    pub group_ids: Vec<String>,
}

pattern!(/// A page of a group's history, to members only.
    MessageHistory, "message.history", HistoryRequest => HistoryPage);
pattern!(/// Search the caller's groups.
    MessageSearch, "message.search", SearchRequest => Vec<MessageView>);
pattern!(/// Every member's receipt positions in a group, to members only.
    MessageReceipts, "message.receipts", super::groups::GroupRef => Vec<ReceiptPositions>);
pattern!(/// Last message, unread count and last seen sequence per group, for the caller.
    MessageSummaries, "message.summaries", SummariesRequest => Vec<GroupSummary>);

crate::error_reasons! {
    /// Why the message or chat role refuses a request or a socket event.
    pub enum MessageError {
        /// The caller is not a member of the group.
        #[error("you are not a member of this group")]
        NotMember => (Forbidden, "not_member"),
        /// A socket event before the handshake was authenticated.
        #[error("not authenticated")]
        NotAuthenticated => (Unauthorized, "not_authenticated"),
        /// A socket event this server does not know (a typo, or a client newer than the server).
        #[error("unknown event {event}")]
        UnknownEvent { event: String } => (BadRequest, "unknown_event"),
        /// A socket event whose payload does not have the documented shape.
        #[error("invalid {event} payload")]
        InvalidPayload { event: String } => (BadRequest, "invalid_payload"),
        /// A `clientMessageId` that is empty or too long.
        #[error("clientMessageId must be 1 to {max} characters")]
        InvalidClientMessageId { max: usize } => (Validation, "invalid_client_message_id"),
        /// A message with neither text nor attachment.
        #[error("a message needs content or an attachment")]
        EmptyMessage => (Validation, "empty_message"),
        /// A message text over the limit.
        #[error("a message is at most {max} characters")]
        MessageTooLong { max: usize } => (Validation, "message_too_long"),
        /// An attachment that is not a file the sender uploaded.
        #[error("attach a file you uploaded (its url from complete-upload)")]
        AttachmentNotUploaded => (Validation, "attachment_not_uploaded"),
        /// A seen or delivered receipt for a sequence number the group has not reached.
        #[error("seq must be between 0 and {last}")]
        SeqOutOfRange { last: i64 } => (Validation, "seq_out_of_range"),
        /// The message does not exist in this group.
        #[error("message not found")]
        MessageNotFound => (NotFound, "message_not_found"),
        /// Deleting someone else's message without being an admin.
        #[error("only the sender or a group admin can delete a message")]
        NotSenderOrAdmin => (Forbidden, "not_sender_or_admin"),
        /// Editing someone else's message.
        #[error("only the sender can edit a message")]
        NotSender => (Forbidden, "not_sender"),
        /// Editing a message older than `MESSAGE_EDIT_WINDOW_SECONDS` (or editing turned off).
        #[error("a message can be edited for {seconds} seconds after it is sent")]
        EditWindowClosed { seconds: u64 } => (Conflict, "edit_window_closed"),
        /// Editing a deleted message.
        #[error("a deleted message cannot be edited")]
        MessageDeleted => (Conflict, "message_deleted"),
        /// A history page size out of range.
        #[error("limit must be 1 to {max}")]
        InvalidLimit { max: u32 } => (Validation, "invalid_limit"),
        /// A search query that is empty or longer than 100 characters.
        #[error("q must be 1 to 100 characters")]
        InvalidQuery => (Validation, "invalid_query"),
        /// The chat replica is shutting down: resend after reconnecting, same `clientMessageId`.
        #[error("this server is restarting; resend after reconnecting, with the same clientMessageId")]
        Restarting => (Unavailable, "restarting"),
        /// The message role did not confirm in time: resend with the same `clientMessageId`.
        #[error("the message service did not answer in time; retry with the same clientMessageId")]
        SendTimedOut => (Timeout, "send_timed_out"),
    }
}
