//! The group role's decisions, apart from the stores so they are tested on their own: who may
//! change a group, what kind of group a creation makes, and who inherits a group its last admin
//! leaves.

use chat_domain::contracts::groups::{GroupError, MemberRole};
use chat_ports::store::MemberRecord;

/// Whether `caller` is an admin among `members`.
pub fn require_admin(members: &[MemberRecord], caller: &str) -> Result<(), GroupError> {
    if members
        .iter()
        .any(|m| m.user_id == caller && m.role == MemberRole::Admin)
    {
        Ok(())
    } else {
        Err(GroupError::NotGroupAdmin)
    }
}

/// The direct-conversation key of a new group, if it is one: no name and exactly one other
/// member. A group with neither a name nor another member is refused.
pub fn direct_key(
    caller: &str,
    name: Option<&str>,
    others: &[String],
) -> Result<Option<String>, GroupError> {
    match (name, others) {
        (None, []) => Err(GroupError::NameOrMembersRequired),
        (None, [other]) => {
            let mut pair = [caller, other.as_str()];
            pair.sort_unstable();
            Ok(Some(pair.join(":")))
        }
        _ => Ok(None),
    }
}

/// What becomes of a group when `leaving` leaves it.
#[derive(Debug, PartialEq, Eq)]
pub enum Succession {
    /// Nobody is left: the group is deleted.
    Delete,
    /// No admin is left: the longest-standing member (members come in joining order) becomes one.
    Promote(String),
    /// An admin remains.
    Keep,
}

pub fn succession(members: &[MemberRecord], leaving: &str) -> Succession {
    let mut remaining = members.iter().filter(|m| m.user_id != leaving).peekable();
    let Some(first) = remaining.peek().map(|m| m.user_id.clone()) else {
        return Succession::Delete;
    };
    if remaining.any(|m| m.role == MemberRole::Admin) {
        Succession::Keep
    } else {
        Succession::Promote(first)
    }
}

/// Whether making `user` a `role` changes anything: refused when they are not a member, or when
/// it would leave the group without an admin.
pub fn role_change(
    members: &[MemberRecord],
    user: &str,
    role: MemberRole,
) -> Result<bool, GroupError> {
    let target = members
        .iter()
        .find(|m| m.user_id == user)
        .ok_or(GroupError::NotAMember)?;
    if target.role == role {
        return Ok(false);
    }
    if role == MemberRole::Member && !has_admin(members, Some(user)) {
        return Err(GroupError::LastAdmin);
    }
    Ok(true)
}

/// Whether an admin other than `except` is among `members`.
pub fn has_admin(members: &[MemberRecord], except: Option<&str>) -> bool {
    members
        .iter()
        .any(|m| m.role == MemberRole::Admin && Some(m.user_id.as_str()) != except)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn member(user: &str, role: MemberRole) -> MemberRecord {
        MemberRecord {
            group_id: "g".into(),
            user_id: user.into(),
            role,
            joined_at: Utc::now(),
        }
    }

    #[test]
    fn only_an_admin_of_the_group_may_change_it() {
        let members = [
            member("ada", MemberRole::Admin),
            member("bob", MemberRole::Member),
        ];
        assert_eq!(require_admin(&members, "ada"), Ok(()));
        assert_eq!(
            require_admin(&members, "bob"),
            Err(GroupError::NotGroupAdmin)
        );
        assert_eq!(
            require_admin(&members, "eve"),
            Err(GroupError::NotGroupAdmin)
        );
    }

    #[test]
    fn a_role_change_keeps_an_admin_and_names_a_member() {
        let members = [
            member("ada", MemberRole::Admin),
            member("bob", MemberRole::Member),
        ];
        assert_eq!(role_change(&members, "bob", MemberRole::Admin), Ok(true));
        assert_eq!(role_change(&members, "bob", MemberRole::Member), Ok(false));
        assert_eq!(
            role_change(&members, "ada", MemberRole::Member),
            Err(GroupError::LastAdmin)
        );
        assert_eq!(
            role_change(&members, "eve", MemberRole::Admin),
            Err(GroupError::NotAMember)
        );
        let two_admins = [
            member("ada", MemberRole::Admin),
            member("bob", MemberRole::Admin),
        ];
        assert_eq!(
            role_change(&two_admins, "ada", MemberRole::Member),
            Ok(true)
        );
    }

    #[test]
    fn a_nameless_pair_is_a_direct_conversation_keyed_the_same_from_both_sides() {
        let from_ada = direct_key("ada", None, &["bob".into()]).unwrap();
        let from_bob = direct_key("bob", None, &["ada".into()]).unwrap();
        assert_eq!(from_ada.as_deref(), Some("ada:bob"));
        assert_eq!(from_ada, from_bob);
        assert_eq!(direct_key("ada", Some("Team"), &["bob".into()]), Ok(None));
        assert_eq!(
            direct_key("ada", None, &["bob".into(), "cy".into()]),
            Ok(None)
        );
        assert_eq!(direct_key("ada", Some("Notes"), &[]), Ok(None));
        assert_eq!(
            direct_key("ada", None, &[]),
            Err(GroupError::NameOrMembersRequired)
        );
    }

    #[test]
    fn the_longest_standing_member_inherits_a_group_its_last_admin_leaves() {
        let members = [
            member("ada", MemberRole::Admin),
            member("bob", MemberRole::Member),
            member("cy", MemberRole::Member),
        ];
        assert_eq!(
            succession(&members, "ada"),
            Succession::Promote("bob".into())
        );
        assert_eq!(succession(&members, "bob"), Succession::Keep);
        let two_admins = [
            member("ada", MemberRole::Admin),
            member("bob", MemberRole::Member),
            member("cy", MemberRole::Admin),
        ];
        assert_eq!(succession(&two_admins, "ada"), Succession::Keep);
        assert_eq!(
            succession(&[member("ada", MemberRole::Admin)], "ada"),
            Succession::Delete
        );
    }
}
