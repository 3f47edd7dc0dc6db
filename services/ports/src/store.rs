//! The storage, presence and rate-limit ports. Services hold these as trait objects;
//! `chat-mongodb` and `chat-redis` are the production adapters, `chat-embedded` the one of
//! `chat-server all`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use chat_domain::contracts::auth::UserView;
use chat_domain::values::{Email, PageRequest};
use chat_domain::Error;

use crate::assets::AssetStore;

/// Every storage port, from one adapter family: MongoDB with GridFS (`chat-mongodb`) or the
/// embedded database (`chat-embedded`).
#[derive(Clone)]
pub struct Stores {
    pub users: Arc<dyn UserStore>,
    pub refresh_tokens: Arc<dyn RefreshTokenStore>,
    pub signing_keys: Arc<dyn SigningKeyStore>,
    pub groups: Arc<dyn GroupStore>,
    pub messages: Arc<dyn MessageStore>,
    pub assets: Arc<dyn AssetStore>,
}

/// A user to create.
pub struct NewUser {
    pub first_name: String,
    pub last_name: String,
    pub email: Email,
    pub password_hash: String,
}

/// A stored user, password hash included. Only auth sees this type; clients get [`UserView`].
#[derive(Clone)]
pub struct UserRecord {
    pub id: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub password_hash: String,
    pub profile_url: Option<String>,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl UserRecord {
    /// The client-facing view, without the hash.
    pub fn view(&self) -> UserView {
        UserView {
            id: self.id.clone(),
            first_name: self.first_name.clone(),
            last_name: self.last_name.clone(),
            email: self.email.clone(),
            profile_url: self.profile_url.clone(),
            last_seen_at: self.last_seen_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// Users.
#[async_trait::async_trait]
pub trait UserStore: Send + Sync {
    /// Creates a user; a taken email is [`ErrorCode::Conflict`](chat_domain::ErrorCode::Conflict).
    async fn insert(&self, user: NewUser) -> Result<UserRecord, Error>;
    async fn by_email(&self, email: &Email) -> Result<Option<UserRecord>, Error>;
    /// `None` for an unknown or malformed id.
    async fn by_id(&self, id: &str) -> Result<Option<UserRecord>, Error>;
    /// Changes the fields given (`Some(None)` removes the profile picture); `None` when the user
    /// does not exist.
    async fn update_profile(
        &self,
        id: &str,
        first_name: Option<String>,
        last_name: Option<String>,
        profile_url: Option<Option<String>>,
    ) -> Result<Option<UserRecord>, Error>;
    /// Records when the user was last online (never moves backwards).
    async fn set_last_seen(&self, id: &str, at: DateTime<Utc>) -> Result<(), Error>;
    /// Which of `ids` are existing users.
    async fn existing(&self, ids: &[String]) -> Result<Vec<String>, Error>;
    /// When each of the users among `ids` was last online (`None`: never recorded); unknown ids
    /// are left out.
    async fn last_seen(
        &self,
        ids: &[String],
    ) -> Result<Vec<(String, Option<DateTime<Utc>>)>, Error>;
    /// A page of users (oldest first) whose names or email contain every word of `search`,
    /// case-insensitively; and the total number of matches.
    async fn list(
        &self,
        search: Option<&str>,
        page: PageRequest,
    ) -> Result<(Vec<UserRecord>, u64), Error>;
}

/// A stored refresh token. The token itself is never stored, only its SHA-256.
#[derive(Debug, Clone)]
pub struct RefreshTokenRecord {
    pub token_hash: String,
    /// All tokens descending from one login share a family.
    pub family_id: String,
    pub user_id: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// What happened when a refresh token was presented.
#[derive(Debug)]
pub enum RefreshUse {
    /// First use: it is now spent.
    Fresh(RefreshTokenRecord),
    /// Already spent, or its family revoked: a sign of theft.
    Reused(RefreshTokenRecord),
    /// Not a token we issued (or long expired and removed).
    Unknown,
}

/// Refresh tokens, rotated on every use.
#[async_trait::async_trait]
pub trait RefreshTokenStore: Send + Sync {
    async fn insert(&self, token: RefreshTokenRecord) -> Result<(), Error>;
    /// Atomically spends the token: of two concurrent uses, exactly one is `Fresh`.
    async fn spend(&self, token_hash: &str) -> Result<RefreshUse, Error>;
    /// Revokes every token of the family; returns how many were still live.
    async fn revoke_family(&self, family_id: &str) -> Result<u64, Error>;
}

/// Storage for the development signing key, shared by every auth replica.
#[async_trait::async_trait]
pub trait SigningKeyStore: Send + Sync {
    /// Stores `candidate` (PKCS#8 DER) unless a development key exists; returns the stored key.
    async fn development_key(&self, candidate: &[u8]) -> Result<Vec<u8>, Error>;
}

/// Who is online: a count of each user's sockets across every chat replica, expiring after a
/// time-to-live unless refreshed (so a crashed replica cannot keep its users online).
#[async_trait::async_trait]
pub trait Presence: Send + Sync {
    /// One more socket of `user`; returns how many there are now.
    async fn connected(&self, user: &str, ttl: Duration) -> Result<i64, Error>;
    /// One socket fewer; returns how many remain (at 0 or below the count is removed).
    async fn disconnected(&self, user: &str) -> Result<i64, Error>;
    /// Keeps the count alive for `ttl` more; false when it had already expired.
    async fn refresh(&self, user: &str, ttl: Duration) -> Result<bool, Error>;
    /// Whether each of `users` has a socket now, in the order given.
    async fn online(&self, users: &[String]) -> Result<Vec<bool>, Error>;
}

/// Counts attempts in fixed windows.
/// Sessions ended before their access tokens expire (a logout, a refresh token replayed): the
/// roles that check access tokens refuse those naming an ended session.
#[async_trait::async_trait]
pub trait Revocations: Send + Sync {
    /// Marks `session` ended for `ttl`: the access-token lifetime, after which its tokens have
    /// expired anyway.
    async fn revoke(&self, session: &str, ttl: Duration) -> Result<(), Error>;
    async fn is_revoked(&self, session: &str) -> Result<bool, Error>;
}

#[async_trait::async_trait]
pub trait RateLimiter: Send + Sync {
    /// Counts one attempt under `key`. `Ok(None)` if within `limit` per `window`, otherwise
    /// `Ok(Some(seconds))` until the window resets.
    async fn hit(&self, key: &str, limit: u32, window: Duration) -> Result<Option<u64>, Error>;
}

pub use chat_domain::contracts::groups::MemberRole;

/// A stored group.
#[derive(Debug, Clone)]
pub struct GroupRecord {
    pub id: String,
    pub name: Option<String>,
    pub image_url: Option<String>,
    /// For direct conversations: the two member ids, sorted and joined; unique.
    pub direct_key: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A stored membership.
#[derive(Debug, Clone)]
pub struct MemberRecord {
    pub group_id: String,
    pub user_id: String,
    pub role: MemberRole,
    pub joined_at: DateTime<Utc>,
}

/// A group to create with its first members.
pub struct NewGroup {
    pub name: Option<String>,
    pub direct_key: Option<String>,
    pub members: Vec<(String, MemberRole)>,
}

/// Groups and memberships.
#[async_trait::async_trait]
pub trait GroupStore: Send + Sync {
    /// Creates the group and its members. For a direct conversation that exists already,
    /// returns the existing group and `false`.
    async fn create(&self, group: NewGroup) -> Result<(GroupRecord, bool), Error>;
    /// `None` for an unknown or malformed id.
    async fn get(&self, group_id: &str) -> Result<Option<GroupRecord>, Error>;
    /// The groups `user_id` belongs to, most recently updated first.
    async fn groups_of(&self, user_id: &str) -> Result<Vec<GroupRecord>, Error>;
    /// Members of a group, in joining order.
    async fn members(&self, group_id: &str) -> Result<Vec<MemberRecord>, Error>;
    /// Members of each of `group_ids`, in joining order within a group: one query for a list.
    async fn members_of(&self, group_ids: &[String]) -> Result<Vec<MemberRecord>, Error>;
    /// How many groups `user_id` belongs to.
    async fn group_count(&self, user_id: &str) -> Result<u64, Error>;
    /// `user_id`'s memberships among `group_ids` (groups they are not in are left out).
    async fn memberships(
        &self,
        user_id: &str,
        group_ids: &[String],
    ) -> Result<Vec<MemberRecord>, Error>;
    async fn membership(
        &self,
        group_id: &str,
        user_id: &str,
    ) -> Result<Option<MemberRecord>, Error>;
    /// Changes the name and/or image; returns the updated group.
    async fn update(
        &self,
        group_id: &str,
        name: Option<String>,
        image_url: Option<Option<String>>,
    ) -> Result<GroupRecord, Error>;
    /// Adds members (as [`MemberRole::Member`]); ids already members are skipped. Returns the
    /// ids actually added.
    async fn add_members(&self, group_id: &str, user_ids: &[String]) -> Result<Vec<String>, Error>;
    /// Removes a member; `false` if they were not one.
    async fn remove_member(&self, group_id: &str, user_id: &str) -> Result<bool, Error>;
    async fn set_role(&self, group_id: &str, user_id: &str, role: MemberRole) -> Result<(), Error>;
    /// Deletes a group that has no members left.
    async fn delete(&self, group_id: &str) -> Result<(), Error>;
}

pub use chat_domain::contracts::messages::{Attachment, MessageView, ReceiptPositions};

/// A group's latest message and how many messages the user has not seen.
#[derive(Debug, Clone)]
pub struct GroupActivity {
    pub group_id: String,
    pub last_message: Option<MessageView>,
    pub unread: u64,
    /// The last sequence number the user has seen (0: none).
    pub last_seen_seq: i64,
}

/// Which receipt a position records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receipt {
    /// A device of the user received the messages (`chat.message.delivered`).
    Delivered,
    /// The user saw them (`chat.message.seen`); what unread counts are counted from.
    Seen,
}

/// A message to append.
pub struct NewMessage {
    pub group_id: String,
    pub sender_id: String,
    pub client_message_id: String,
    pub content: Option<String>,
    pub attachment: Option<Attachment>,
}

/// Messages, numbered per group.
#[async_trait::async_trait]
pub trait MessageStore: Send + Sync {
    /// Appends at the group's next sequence number. If the sender already stored a message
    /// with this client id, returns that one and `false` (idempotent retries).
    async fn append(&self, message: NewMessage) -> Result<(MessageView, bool), Error>;
    /// The message `sender_id` stored with `client_message_id`, if any: what [`MessageStore::append`]
    /// would return for a retry, without storing anything.
    async fn sent(
        &self,
        sender_id: &str,
        client_message_id: &str,
    ) -> Result<Option<MessageView>, Error>;
    async fn get(&self, message_id: &str) -> Result<Option<MessageView>, Error>;
    /// Up to `limit` messages with `seq < before` (all if `None`), newest first.
    async fn before(
        &self,
        group_id: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<MessageView>, Error>;
    /// Up to `limit` messages with `seq > after`, oldest first.
    async fn after(
        &self,
        group_id: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<MessageView>, Error>;
    /// Removes the content, keeping the message's place; `None` if it does not exist.
    async fn tombstone(&self, message_id: &str) -> Result<Option<MessageView>, Error>;
    /// Replaces the text of a message that is not deleted and marks it edited at `at`; the
    /// message as it now is (unchanged if deleted), `None` if it does not exist.
    async fn edit(
        &self,
        message_id: &str,
        content: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<MessageView>, Error>;
    /// Messages after `seq` not sent by `user_id` and not deleted.
    async fn unread(&self, group_id: &str, user_id: &str, seq: i64) -> Result<u64, Error>;
    /// For each of `group_ids`, in that order: the group's latest message, `user_id`'s read
    /// position and [`MessageStore::unread`] after it, in one call (the group list's summaries).
    async fn activity(
        &self,
        user_id: &str,
        group_ids: &[String],
    ) -> Result<Vec<GroupActivity>, Error>;
    /// Records that `user_id` has received, or seen, the group up to `seq` (receipts belong to
    /// the messages, not to the memberships); never moves backwards. The two positions are kept
    /// apart: a seen receipt does not move the delivered position (the message role records
    /// both). Returns the position as it now is: `seq`, or the later one already stored.
    async fn mark(
        &self,
        receipt: Receipt,
        group_id: &str,
        user_id: &str,
        seq: i64,
        at: DateTime<Utc>,
    ) -> Result<i64, Error>;
    /// Every stored receipt position in the group, one entry per user who sent any receipt.
    async fn receipts(&self, group_id: &str) -> Result<Vec<ReceiptPositions>, Error>;
    /// Up to `limit` live messages in `group_ids` whose text contains `text`, case-insensitively,
    /// newest first.
    async fn search(
        &self,
        group_ids: &[String],
        text: &str,
        limit: u32,
    ) -> Result<Vec<MessageView>, Error>;
}
