//! Who may do what in a group, as the message role learns it. The group role owns the
//! memberships; this role asks it over RPC (`group.memberships`) and keeps what it learned for a
//! while, so a busy group's sends cost no round trip each. A kept membership is dropped as soon
//! as a group fact says the group's members changed (the facts tail), and after [`KEEP_FOR`] in
//! any case. Nothing is kept while the tail is not following, everything kept is forgotten when
//! it follows again (a Redis relay that subscribed again), and a non-member is never kept:
//! a user added a moment ago is asked about again rather than refused on an old answer.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chat_domain::contracts::groups::{
    GroupMemberships, MemberRole, Membership, MembershipsRequest,
};
use chat_domain::events::{Envelope, FACTS};
use chat_domain::key::Key;
use chat_domain::rpc::CallContext;
use chat_domain::Error;
use chat_ports::events::EventLog;
use chat_ports::health::Gate;
use chat_ports::rpc::RpcClient;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// How long a membership is kept without news of its group. Expired ones are dropped at most
/// this long after they expire (when the next answer is kept), not held until [`MAX_KEPT`].
pub const KEEP_FOR: Duration = Duration::from_secs(30);
/// Kept memberships beyond which everything kept is dropped (a bound, not a target).
const MAX_KEPT: usize = 100_000;

/// The kinds of group facts after which a group's memberships are asked again.
const MEMBERSHIP_FACTS: [&str; 4] = [
    "group.created",
    "group.members_added",
    "group.member_removed",
    "group.member_role_changed",
];

/// Memberships asked of the group role, kept while the facts say nothing changed.
pub struct Members {
    rpc: RpcClient,
    /// Open while the facts tail follows the log.
    following: Gate,
    kept: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    /// Moves on at every membership change, so an answer asked before a change and received
    /// after it is not kept.
    generation: u64,
    groups: HashMap<Key, HashMap<Key, (MemberRole, Instant)>>,
    count: usize,
    /// When expired memberships were last dropped.
    swept: Option<Instant>,
    /// The tail's [`Gate::openings`] when this was last checked.
    openings: u64,
}

impl Members {
    pub fn new(rpc: RpcClient) -> Self {
        Members {
            rpc,
            following: Gate::new("group facts"),
            kept: Mutex::default(),
        }
    }

    /// What is kept, forgotten first if the tail opened its gate again since: it lost the facts
    /// for a while (a Redis relay that subscribed again) and may have missed a change.
    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        let mut kept = self
            .kept
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        kept.following_since(self.following.openings());
        kept
    }

    /// `user_id`'s role in `group_id`; `None` when not a member (or no such group).
    pub async fn role(&self, group_id: &str, user_id: &str) -> Result<Option<MemberRole>, Error> {
        {
            let kept = self.kept();
            if let Some(role) = kept.get(group_id, user_id) {
                if self.following.is_open() {
                    return Ok(Some(role));
                }
            }
        }
        self.asked(group_id, user_id).await
    }

    /// Like [`Members::role`], but asked of the group role even when an answer is kept: before
    /// refusing on a kept answer that the group role may since have changed.
    pub async fn asked(&self, group_id: &str, user_id: &str) -> Result<Option<MemberRole>, Error> {
        let generation = self.kept().generation;
        let role = self
            .among(user_id, Some(vec![group_id.to_string()]))
            .await?
            .into_iter()
            .find(|m| m.group_id == group_id)
            .map(|m| m.role);
        if let Some(role) = role {
            self.keep(generation, group_id, user_id, role);
        }
        Ok(role)
    }

    /// `user_id`'s memberships among `group_ids` (all when `None`), asked of the group role.
    pub async fn among(
        &self,
        user_id: &str,
        group_ids: Option<Vec<String>>,
    ) -> Result<Vec<Membership>, Error> {
        let request = MembershipsRequest {
            user_id: user_id.to_string(),
            group_ids,
        };
        self.rpc
            .call::<GroupMemberships>(&request, &CallContext::internal())
            .await
    }

    fn keep(&self, generation: u64, group_id: &str, user_id: &str, role: MemberRole) {
        if self.following.is_open() {
            self.kept()
                .keep(generation, group_id, user_id, role, Instant::now());
        }
    }

    /// The members of `group_id` changed: what was kept of it is asked again.
    pub fn changed(&self, group_id: &str) {
        self.kept().changed(group_id);
    }
}

impl Kept {
    fn get(&self, group_id: &str, user_id: &str) -> Option<MemberRole> {
        let (role, at) = self.groups.get(group_id)?.get(user_id)?;
        (at.elapsed() < KEEP_FOR).then_some(*role)
    }

    /// Keeps an answer asked at `generation`, unless members changed since; drops what expired
    /// if it has not done so for [`KEEP_FOR`].
    fn keep(
        &mut self,
        generation: u64,
        group_id: &str,
        user_id: &str,
        role: MemberRole,
        now: Instant,
    ) {
        if self.generation != generation {
            return;
        }
        if self
            .swept
            .is_none_or(|swept| now.saturating_duration_since(swept) >= KEEP_FOR)
        {
            self.drop_expired(now);
        }
        if self.count >= MAX_KEPT {
            self.forget();
        }
        let group = self.groups.entry(Key::from(group_id)).or_default();
        if group.insert(Key::from(user_id), (role, now)).is_none() {
            self.count += 1;
        }
    }

    fn drop_expired(&mut self, now: Instant) {
        self.groups.retain(|_, members| {
            members.retain(|_, (_, at)| now.saturating_duration_since(*at) < KEEP_FOR);
            !members.is_empty()
        });
        self.groups.shrink_to_fit();
        self.count = self.groups.values().map(HashMap::len).sum();
        self.swept = Some(now);
    }

    fn changed(&mut self, group_id: &str) {
        self.generation += 1;
        if let Some(group) = self.groups.remove(group_id) {
            self.count -= group.len();
        }
    }

    /// Forgets everything if the tail's gate was opened again since the last look (`openings`).
    fn following_since(&mut self, openings: u64) {
        if self.openings != openings {
            self.forget();
            self.openings = openings;
        }
    }

    /// Forgets everything (also when the tail stops following: changes may be missed).
    fn forget(&mut self) {
        self.generation += 1;
        self.groups.clear();
        self.count = 0;
    }
}

/// Only the kind of a fact: the rest is skipped unread.
#[derive(Deserialize)]
struct FactKind {
    kind: String,
}

/// Follows the facts until `shutdown`, dropping a group's kept memberships when they change.
pub async fn follow_membership_changes(
    members: std::sync::Arc<Members>,
    log: EventLog,
    shutdown: CancellationToken,
) {
    let following = members.following.clone();
    let watcher = members.clone();
    let on_fact = move |envelope: Envelope<FactKind>| {
        if MEMBERSHIP_FACTS.contains(&envelope.event.kind.as_str()) {
            watcher.changed(&envelope.key);
        }
        std::future::ready(())
    };
    if let Err(e) = log.tail(FACTS, shutdown, following.clone(), on_fact).await {
        tracing::error!(error = %e, "the membership facts tail stopped");
    }
    following.close();
    members.kept().forget();
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_domain::contracts::groups::GroupView;
    use chat_domain::contracts::messages::Fact;
    use chrono::Utc;

    #[test]
    fn a_kept_membership_is_dropped_when_its_group_changes() {
        let mut kept = Kept::default();
        let asked_at = kept.generation;
        kept.keep(asked_at, "g1", "ada", MemberRole::Admin, Instant::now());
        kept.keep(asked_at, "g2", "ada", MemberRole::Member, Instant::now());
        assert_eq!(kept.get("g1", "ada"), Some(MemberRole::Admin));
        assert_eq!(kept.get("g1", "bob"), None, "never asked: not known");
        kept.changed("g1");
        assert_eq!(kept.get("g1", "ada"), None);
        assert_eq!(kept.get("g2", "ada"), Some(MemberRole::Member));
        assert_eq!(kept.count, 1);
    }

    #[test]
    fn an_answer_asked_before_a_change_is_not_kept() {
        let mut kept = Kept::default();
        let asked_at = kept.generation;
        // Ada's removal is announced while the question about her is on its way.
        kept.changed("g1");
        kept.keep(asked_at, "g1", "ada", MemberRole::Member, Instant::now());
        assert_eq!(kept.get("g1", "ada"), None);
    }

    #[test]
    fn what_was_kept_is_forgotten_when_the_tail_follows_again() {
        let gate = Gate::new("group facts");
        let mut kept = Kept::default();
        gate.open();
        kept.following_since(gate.openings());
        let generation = kept.generation;
        kept.keep(generation, "g1", "ada", MemberRole::Admin, Instant::now());
        kept.following_since(gate.openings());
        assert_eq!(kept.get("g1", "ada"), Some(MemberRole::Admin));
        // A Redis relay that lost its subscription and subscribed again: facts may be missed.
        gate.open();
        kept.following_since(gate.openings());
        assert_eq!(kept.get("g1", "ada"), None);
    }

    #[test]
    fn what_is_kept_is_bounded() {
        let mut kept = Kept::default();
        for i in 0..MAX_KEPT {
            let generation = kept.generation;
            kept.keep(
                generation,
                &format!("g{i}"),
                "ada",
                MemberRole::Member,
                Instant::now(),
            );
        }
        assert_eq!(kept.count, MAX_KEPT);
        let generation = kept.generation;
        kept.keep(
            generation,
            "one more",
            "ada",
            MemberRole::Member,
            Instant::now(),
        );
        assert_eq!(kept.count, 1);
        assert_eq!(kept.get("one more", "ada"), Some(MemberRole::Member));
    }

    #[test]
    fn expired_memberships_are_dropped_not_held_until_the_bound() {
        let mut kept = Kept::default();
        let start = Instant::now();
        let generation = kept.generation;
        for i in 0..100 {
            kept.keep(
                generation,
                &format!("g{i}"),
                "ada",
                MemberRole::Member,
                start,
            );
        }
        kept.keep(
            generation,
            "g0",
            "bob",
            MemberRole::Member,
            start + KEEP_FOR / 2,
        );
        assert_eq!(kept.count, 101);
        // The next answer kept once KEEP_FOR has passed drops what expired meanwhile.
        let later = start + KEEP_FOR + Duration::from_secs(1);
        kept.keep(generation, "g100", "cy", MemberRole::Admin, later);
        assert_eq!(kept.count, 2, "bob in g0 (not expired yet) and cy in g100");
        assert_eq!(kept.groups.len(), 2);
        assert!(kept.groups.capacity() < 100, "{}", kept.groups.capacity());
        assert_eq!(kept.get("g0", "bob"), Some(MemberRole::Member));
        assert_eq!(kept.get("g1", "ada"), None);
        // Not again before another KEEP_FOR: bob outlives his time until then.
        kept.keep(
            generation,
            "g100",
            "dee",
            MemberRole::Member,
            later + KEEP_FOR / 2,
        );
        assert_eq!(kept.count, 3);
        kept.keep(
            generation,
            "g100",
            "eve",
            MemberRole::Member,
            later + KEEP_FOR,
        );
        assert_eq!(kept.count, 2, "bob and cy expired; dee and eve kept");
    }

    #[test]
    fn the_kinds_watched_are_the_group_facts_that_change_members() {
        let group = GroupView {
            id: "g".into(),
            name: None,
            image_url: None,
            direct: false,
            members: vec![],
            created_at: Utc::now(),
            updated_at: Utc::now(),
            last_message: None,
            unread_count: None,
        };
        let facts = [
            Fact::GroupCreated {
                group: group.clone(),
            },
            Fact::MembersAdded {
                user_ids: vec!["u".into()],
                group,
            },
            Fact::MemberRemoved {
                user_id: "u".into(),
            },
            Fact::MemberRoleChanged {
                user_id: "u".into(),
                role: MemberRole::Admin,
                changed_by: "a".into(),
            },
        ];
        let kinds: Vec<String> = facts
            .iter()
            .map(|f| {
                serde_json::to_value(f).unwrap()["kind"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(kinds, MEMBERSHIP_FACTS);
    }
}
