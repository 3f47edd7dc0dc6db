//! The group role (seed §Group Service): groups, direct conversations and membership.
//!
//! Rules, checked here where the data is:
//! - the creator of a group is its admin; only members see a group (everyone else gets 404);
//! - a group without a name and with exactly one other member is a *direct conversation*, unique
//!   per pair: creating it again returns the existing one;
//! - admins rename, change the image, add and remove members; a member may remove themself;
//! - a group never loses its last admin: when the last admin leaves, the longest-standing member
//!   becomes admin; when the last member leaves, the group is deleted.

mod rules;

use rules::Succession;
use std::collections::BTreeSet;
use std::collections::HashMap;
use std::sync::Arc;

use chat_domain::contracts::assets::AssetGrant;
use chat_domain::contracts::groups::*;
use chat_domain::contracts::messages::Fact;
use chat_domain::events::{Envelope, FACTS};
use chat_domain::Error;
use chat_ports::clients::AssetsClient;
use chat_ports::events::EventLog;
use chat_ports::rpc::RpcServer;
use chat_ports::store::{GroupRecord, GroupStore, MemberRecord, NewGroup, UserStore};

/// The group service.
pub struct GroupService {
    groups: Arc<dyn GroupStore>,
    users: Arc<dyn UserStore>,
    assets: AssetsClient,
    events: EventLog,
    limits: GroupLimits,
}

/// `GROUP_MAX_MEMBERS` and `USER_MAX_GROUPS`.
#[derive(Debug, Clone, Copy)]
pub struct GroupLimits {
    pub max_members: u32,
    pub max_groups_per_user: u32,
}

fn not_found() -> Error {
    GroupError::GroupNotFound.into()
}

fn clean_name(raw: &str) -> Result<Option<String>, Error> {
    let name = raw.trim();
    if raw.chars().count() > MAX_GROUP_NAME_CHARS || raw.chars().any(char::is_control) {
        return Err(GroupError::NameTooLong {
            max: MAX_GROUP_NAME_CHARS,
        }
        .into());
    }
    Ok((!name.is_empty()).then(|| name.to_string()))
}

fn view(group: GroupRecord, members: Vec<MemberRecord>) -> GroupView {
    GroupView {
        id: group.id,
        name: group.name,
        image_url: group.image_url,
        direct: group.direct_key.is_some(),
        members: members
            .into_iter()
            .map(|m| MemberView {
                user_id: m.user_id,
                role: m.role,
                joined_at: m.joined_at,
            })
            .collect(),
        created_at: group.created_at,
        updated_at: group.updated_at,
        last_message: None,
        unread_count: None,
    }
}

impl GroupService {
    pub fn new(
        groups: Arc<dyn GroupStore>,
        users: Arc<dyn UserStore>,
        assets: AssetsClient,
        events: EventLog,
        limits: GroupLimits,
    ) -> Self {
        GroupService {
            groups,
            users,
            assets,
            events,
            limits,
        }
    }

    /// Refuses when one of `users` already belongs to the most groups allowed.
    async fn check_room_for(&self, users: &[String]) -> Result<(), Error> {
        let max = self.limits.max_groups_per_user;
        let counts = futures_util::future::try_join_all(
            users.iter().map(|user| self.groups.group_count(user)),
        )
        .await?;
        match users.iter().zip(counts).find(|(_, n)| *n >= u64::from(max)) {
            Some((user_id, _)) => Err(GroupError::TooManyGroups {
                user_id: user_id.clone(),
                max,
            }
            .into()),
            None => Ok(()),
        }
    }

    /// Refuses a group of more than `GROUP_MAX_MEMBERS`.
    fn check_size(&self, members: usize) -> Result<(), Error> {
        let max = self.limits.max_members;
        if members > max as usize {
            return Err(GroupError::GroupFull { max }.into());
        }
        Ok(())
    }

    /// Tells every chat replica, so affected sockets join or leave the group's room at once.
    /// The change is already stored: a failure here is logged, and clients catch up on their
    /// next `GET /groups` or reconnect.
    async fn announce(&self, group_id: &str, fact: Fact) {
        if let Err(e) = self
            .events
            .publish(FACTS, &Envelope::new("group", group_id, fact))
            .await
        {
            tracing::warn!(%group_id, error = %e, "could not publish a group fact");
        }
    }

    /// Distinct ids other than the caller, all of existing users.
    async fn existing_members(&self, caller: &str, ids: &[String]) -> Result<Vec<String>, Error> {
        if ids.len() > MAX_MEMBERS_PER_REQUEST {
            return Err(GroupError::TooManyMembers {
                max: MAX_MEMBERS_PER_REQUEST,
            }
            .into());
        }
        let wanted: BTreeSet<String> = ids
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|id| id != caller)
            .collect();
        let wanted: Vec<String> = wanted.into_iter().collect();
        let found: BTreeSet<String> = self.users.existing(&wanted).await?.into_iter().collect();
        let unknown: Vec<&str> = wanted
            .iter()
            .filter(|id| !found.contains(*id))
            .map(String::as_str)
            .take(5)
            .collect();
        if !unknown.is_empty() {
            return Err(GroupError::UnknownUsers {
                ids: unknown.join(", "),
            }
            .into());
        }
        Ok(wanted)
    }

    /// A group and its members, if `caller` is one of them.
    async fn visible(
        &self,
        caller: &str,
        group_id: &str,
    ) -> Result<(GroupRecord, Vec<MemberRecord>), Error> {
        let group = self.groups.get(group_id).await?.ok_or_else(not_found)?;
        let members = self.groups.members(&group.id).await?;
        if !members.iter().any(|m| m.user_id == caller) {
            return Err(not_found());
        }
        Ok((group, members))
    }

    async fn as_admin(
        &self,
        caller: &str,
        group_id: &str,
    ) -> Result<(GroupRecord, Vec<MemberRecord>), Error> {
        let (group, members) = self.visible(caller, group_id).await?;
        rules::require_admin(&members, caller)?;
        Ok((group, members))
    }

    pub async fn create(&self, request: CreateGroup) -> Result<CreatedGroup, Error> {
        let caller = request.caller;
        let name = match &request.body.name {
            Some(raw) => clean_name(raw)?,
            None => None,
        };
        let others = self
            .existing_members(&caller, &request.body.member_ids)
            .await?;
        let direct_key = rules::direct_key(&caller, name.as_deref(), &others)?;
        self.check_size(others.len() + 1)?;
        let mut everyone = others.clone();
        everyone.push(caller.clone());
        self.check_room_for(&everyone).await?;
        let mut members = vec![(caller.clone(), MemberRole::Admin)];
        members.extend(others.into_iter().map(|id| (id, MemberRole::Member)));
        let (group, created) = self
            .groups
            .create(NewGroup {
                name,
                direct_key,
                members,
            })
            .await?;
        let members = self.groups.members(&group.id).await?;
        let group = view(group, members);
        if created {
            tracing::info!(group_id = %group.id, "group created");
            self.announce(
                &group.id,
                Fact::GroupCreated {
                    group: group.clone(),
                },
            )
            .await;
        }
        Ok(CreatedGroup { group, created })
    }

    pub async fn list(&self, request: CallerRef) -> Result<Vec<GroupView>, Error> {
        let groups = self.groups.groups_of(&request.caller).await?;
        let ids: Vec<String> = groups.iter().map(|g| g.id.clone()).collect();
        let mut members: HashMap<String, Vec<MemberRecord>> = HashMap::new();
        for member in self.groups.members_of(&ids).await? {
            members
                .entry(member.group_id.clone())
                .or_default()
                .push(member);
        }
        Ok(groups
            .into_iter()
            .map(|group| {
                let of_group = members.remove(&group.id).unwrap_or_default();
                view(group, of_group)
            })
            .collect())
    }

    /// A user's memberships, for the roles that check them (the message role). The group role
    /// owns them: no other role reads the group store.
    pub async fn memberships(&self, request: MembershipsRequest) -> Result<Vec<Membership>, Error> {
        let ids = match request.group_ids {
            Some(ids) => ids,
            None => self
                .groups
                .groups_of(&request.user_id)
                .await?
                .into_iter()
                .map(|g| g.id)
                .collect(),
        };
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .groups
            .memberships(&request.user_id, &ids)
            .await?
            .into_iter()
            .map(|m| Membership {
                group_id: m.group_id,
                role: m.role,
            })
            .collect())
    }

    pub async fn get(&self, request: GroupRef) -> Result<GroupView, Error> {
        let (group, members) = self.visible(&request.caller, &request.group_id).await?;
        Ok(view(group, members))
    }

    pub async fn update(&self, request: UpdateGroup) -> Result<GroupView, Error> {
        let (group, members) = self.as_admin(&request.caller, &request.group_id).await?;
        let body = request.body;
        if body.name.is_none() && body.image_url.is_none() {
            return Err(GroupError::NothingToChange.into());
        }
        let name = match &body.name {
            Some(raw) => Some(clean_name(raw)?.ok_or(GroupError::NameEmpty)?),
            None => None,
        };
        if name.is_some() && group.direct_key.is_some() {
            return Err(GroupError::DirectGroupIsFixed.into());
        }
        let mut image = None;
        if let Some(Some(url)) = &body.image_url {
            image = self
                .assets
                .picture("imageUrl", &request.caller, url)
                .await?;
        }
        let updated = self.groups.update(&group.id, name, body.image_url).await?;
        // The group's members may now read the picture.
        if let Some(asset) = image.filter(|a| !a.groups.contains(&group.id)) {
            let (asset_id, group_id) = (asset.id, group.id.clone());
            self.assets
                .grant(AssetGrant::Group { asset_id, group_id })
                .await?;
        }
        Ok(view(updated, members))
    }

    pub async fn add_members(&self, request: AddMembers) -> Result<GroupView, Error> {
        let (group, members) = self.as_admin(&request.caller, &request.group_id).await?;
        if group.direct_key.is_some() {
            return Err(GroupError::DirectGroupIsFixed.into());
        }
        let ids = self
            .existing_members(&request.caller, &request.member_ids)
            .await?;
        if ids.is_empty() {
            return Err(GroupError::NoMembersGiven.into());
        }
        let joining: Vec<String> = ids
            .into_iter()
            .filter(|id| !members.iter().any(|m| &m.user_id == id))
            .collect();
        self.check_size(members.len() + joining.len())?;
        self.check_room_for(&joining).await?;
        let added = self.groups.add_members(&group.id, &joining).await?;
        tracing::info!(group_id = %group.id, added = added.len(), "members added");
        let (group, members) = self.visible(&request.caller, &group.id).await?;
        let group = view(group, members);
        if !added.is_empty() {
            self.announce(
                &group.id,
                Fact::MembersAdded {
                    user_ids: added,
                    group: group.clone(),
                },
            )
            .await;
        }
        Ok(group)
    }

    pub async fn remove_member(&self, request: RemoveMember) -> Result<(), Error> {
        let leaving = request.user_id == request.caller;
        let (group, members) = if leaving {
            self.visible(&request.caller, &request.group_id).await?
        } else {
            self.as_admin(&request.caller, &request.group_id).await?
        };
        let target = members
            .iter()
            .find(|m| m.user_id == request.user_id)
            .ok_or(GroupError::NotAMember)?;
        self.groups
            .remove_member(&group.id, &target.user_id)
            .await?;
        match rules::succession(&members, &target.user_id) {
            Succession::Delete => {
                self.groups.delete(&group.id).await?;
                tracing::info!(group_id = %group.id, "last member left; group deleted");
            }
            Succession::Promote(heir) => {
                self.groups
                    .set_role(&group.id, &heir, MemberRole::Admin)
                    .await?;
                tracing::info!(group_id = %group.id, user_id = %heir, "last admin left; promoted the longest-standing member");
            }
            Succession::Keep => {}
        }
        // Announced once the succession is stored: whoever reacts to the fact (the message role
        // drops its copy of the group's memberships) reads the group as it now is.
        self.announce(
            &group.id,
            Fact::MemberRemoved {
                user_id: target.user_id.clone(),
            },
        )
        .await;
        Ok(())
    }

    /// Makes a member an admin or an admin a member. A group keeps at least one admin: a
    /// demotion that two admins make of each other at once is undone when none is left.
    pub async fn change_role(&self, request: ChangeRole) -> Result<GroupView, Error> {
        let (group, members) = self.as_admin(&request.caller, &request.group_id).await?;
        if group.direct_key.is_some() {
            return Err(GroupError::DirectGroupIsFixed.into());
        }
        let (user_id, role) = (request.user_id, request.role);
        if rules::role_change(&members, &user_id, role)? {
            self.groups.set_role(&group.id, &user_id, role).await?;
            if role == MemberRole::Member
                && !rules::has_admin(&self.groups.members(&group.id).await?, None)
            {
                self.groups
                    .set_role(&group.id, &user_id, MemberRole::Admin)
                    .await?;
                return Err(GroupError::LastAdmin.into());
            }
            tracing::info!(group_id = %group.id, %user_id, ?role, "member role changed");
            self.announce(
                &group.id,
                Fact::MemberRoleChanged {
                    user_id,
                    role,
                    changed_by: request.caller.clone(),
                },
            )
            .await;
        }
        let (group, members) = self.visible(&request.caller, &group.id).await?;
        Ok(view(group, members))
    }
}

/// Registers every group pattern on `server`.
pub fn rpc_handlers(service: Arc<GroupService>, server: RpcServer) -> RpcServer {
    let server = chat_ports::rpc_bind!(server, service, GroupCreate, create);
    let server = chat_ports::rpc_bind!(server, service, GroupList, list);
    let server = chat_ports::rpc_bind!(server, service, GroupGet, get);
    let server = chat_ports::rpc_bind!(server, service, GroupMemberships, memberships);
    let server = chat_ports::rpc_bind!(server, service, GroupUpdate, update);
    let server = chat_ports::rpc_bind!(server, service, GroupAddMembers, add_members);
    let server = chat_ports::rpc_bind!(server, service, GroupRemoveMember, remove_member);
    chat_ports::rpc_bind!(server, service, GroupChangeRole, change_role)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_bounded_and_blank_means_none() {
        assert_eq!(clean_name("  Team  ").unwrap().as_deref(), Some("Team"));
        assert_eq!(clean_name("   ").unwrap(), None);
        assert!(clean_name(&"x".repeat(101)).is_err());
    }
}
