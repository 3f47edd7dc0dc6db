//! The group role's RPC patterns and the bodies of the `/groups` endpoints (seed §Group Service).
//! Every request names its caller: authorization is checked where the data is.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::rpc_pattern as pattern;

/// Longest group name, in characters.
pub const MAX_GROUP_NAME_CHARS: usize = 100;
/// Most members one request may add (creation included).
pub const MAX_MEMBERS_PER_REQUEST: usize = 256;

/// A member's role in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MemberRole {
    /// May rename the group, change its image, add and remove members.
    Admin,
    Member,
}

/// `POST /groups` body. With no name and exactly one other member, this is a direct
/// conversation: creating it again returns the existing one.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateGroupBody {
    #[schema(example = "Project Team")]
    pub name: Option<String>,
    /// The other members (the caller is added as admin).
    pub member_ids: Vec<String>,
}

/// `PATCH /groups/{id}` body: the fields to change (admins only). `null` clears the image.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateGroupBody {
    #[serde(
        default,
        deserialize_with = "super::present::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = String)]
    pub name: Option<String>,
    // Absent stays absent across the RPC hop; only an explicit null clears the image.
    #[serde(
        default,
        with = "super::double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>)]
    pub image_url: Option<Option<String>>,
}

/// `POST /groups/{id}/members` body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddMembersBody {
    #[serde(alias = "userIds")]
    pub member_ids: Vec<String>,
}

/// `PATCH /groups/{id}/members/{userId}` body: the member's new role (admins only).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangeRoleBody {
    pub role: MemberRole,
}

/// One member of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberView {
    pub user_id: String,
    pub role: MemberRole,
    pub joined_at: DateTime<Utc>,
}

/// A group as its members see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupView {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    /// A two-person conversation without a name.
    pub direct: bool,
    pub members: Vec<MemberView>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// In `GET /groups`: the newest message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub last_message: Option<Box<super::messages::MessageView>>,
    /// In `GET /groups`: messages from others after the caller's last seen one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unread_count: Option<u64>,
}

/// The answer to `group.create`: the group, and whether it was created now (`false` when a
/// direct conversation already existed).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedGroup {
    pub group: GroupView,
    pub created: bool,
}

/// `group.create` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateGroup {
    pub caller: String,
    #[serde(flatten)]
    pub body: CreateGroupBody,
}

/// Requests naming a caller and a group.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupRef {
    pub caller: String,
    pub group_id: String,
}

/// `group.update` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateGroup {
    pub caller: String,
    pub group_id: String,
    #[serde(flatten)]
    pub body: UpdateGroupBody,
}

/// `group.members.add` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddMembers {
    pub caller: String,
    pub group_id: String,
    pub member_ids: Vec<String>,
}

/// `group.members.remove` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoveMember {
    pub caller: String,
    pub group_id: String,
    pub user_id: String,
}

/// `group.members.role` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeRole {
    pub caller: String,
    pub group_id: String,
    pub user_id: String,
    pub role: MemberRole,
}

/// `group.memberships` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MembershipsRequest {
    pub user_id: String,
    /// Only these groups (the others the user is in are left out); all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_ids: Option<Vec<String>>,
}

/// One of a user's memberships.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Membership {
    pub group_id: String,
    pub role: MemberRole,
}

/// `group.list` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallerRef {
    pub caller: String,
}

pattern!(/// Create a group (or find the existing direct conversation).
    GroupCreate, "group.create", CreateGroup => CreatedGroup);
pattern!(/// The caller's groups, most recently updated first.
    GroupList, "group.list", CallerRef => Vec<GroupView>);
pattern!(/// One group, to its members (404 to everyone else).
    GroupGet, "group.get", GroupRef => GroupView);
pattern!(/// A user's memberships with their roles: all of them, or those among `groupIds`. Internal
    /// (the message role's membership checks); no route leads to it.
    GroupMemberships, "group.memberships", MembershipsRequest => Vec<Membership>);
pattern!(/// Rename or change the image (admins).
    GroupUpdate, "group.update", UpdateGroup => GroupView);
pattern!(/// Add members (admins).
    GroupAddMembers, "group.members.add", AddMembers => GroupView);
pattern!(/// Remove a member (admins, or a member removing themself).
    GroupRemoveMember, "group.members.remove", RemoveMember => ());
pattern!(/// Make a member an admin, or an admin a member (admins; a group keeps at least one admin).
    GroupChangeRole, "group.members.role", ChangeRole => GroupView);

crate::error_reasons! {
    /// Why the group role refuses a request.
    pub enum GroupError {
        /// The group does not exist, or the caller is not a member of it.
        #[error("group not found")]
        GroupNotFound => (NotFound, "group_not_found"),
        /// The caller is a member but not an admin of the group.
        #[error("only group admins can do this")]
        NotGroupAdmin => (Forbidden, "not_group_admin"),
        /// A name longer than the limit, or with control characters.
        #[error("name must be at most {max} characters")]
        NameTooLong { max: usize } => (Validation, "name_too_long"),
        /// A rename to an empty name.
        #[error("name must not be empty")]
        NameEmpty => (Validation, "name_empty"),
        /// A group without a name and without another member.
        #[error("a group needs a name or at least one other member")]
        NameOrMembersRequired => (Validation, "name_or_members_required"),
        /// More members in one request than allowed.
        #[error("at most {max} members per request")]
        TooManyMembers { max: usize } => (Validation, "too_many_members"),
        /// The group would have more members than `GROUP_MAX_MEMBERS`.
        #[error("a group has at most {max} members")]
        GroupFull { max: u32 } => (Conflict, "group_full"),
        /// A user would belong to more groups than `USER_MAX_GROUPS`.
        #[error("{user_id} already belongs to {max} groups, the most allowed")]
        TooManyGroups { user_id: String, max: u32 } => (Conflict, "too_many_groups"),
        /// `memberIds` names users that do not exist.
        #[error("unknown user ids in memberIds: {ids}")]
        UnknownUsers { ids: String } => (Validation, "unknown_users"),
        /// Adding members without naming one.
        #[error("memberIds must name at least one other user")]
        NoMembersGiven => (Validation, "no_members_given"),
        /// An update that changes nothing.
        #[error("nothing to change: give name and/or imageUrl")]
        NothingToChange => (Validation, "group_nothing_to_change"),
        /// A direct conversation is between two people: it has no name and takes no members.
        #[error("direct conversations have a fixed pair of members and no name; create a group")]
        DirectGroupIsFixed => (Validation, "direct_group_is_fixed"),
        /// Removing a user who is not a member, or changing their role.
        #[error("that user is not a member of this group")]
        NotAMember => (NotFound, "member_not_found"),
        /// Making the group's only admin a member: make another member an admin first.
        #[error("a group keeps at least one admin: make another member an admin first")]
        LastAdmin => (Conflict, "last_admin"),
    }
}
