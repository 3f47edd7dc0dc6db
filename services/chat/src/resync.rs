//! After a gap in the facts: the relay over Redis pub/sub delivers a fact only to the
//! subscriptions open when it is published, so a replica whose subscription was replaced (a
//! Redis restart, a dropped connection, a silent one) may have missed some. Messages missed
//! show to clients as a `seq` jump, but a missed membership change would leave a removed member
//! in the group's room, still receiving its messages, and an added one outside it; a missed
//! edit, deletion or receipt would never reach the sockets here. So, once the tail has
//! subscribed again, every socket of this replica is put back in the rooms of the groups its
//! user belongs to now (asked of the group role), told of each group it is no longer in
//! (`group.member.removed`), asked to refetch each group it is in (`chat.resync`), and sent
//! who of its co-members is online (`user.presence`, as on connect). The
//! Kafka tail never needs this: it resumes from its offset.

use std::collections::HashSet;

use futures_util::StreamExt;

use super::*;

/// Users whose memberships are asked of the group role at once during a resync.
const RESYNC_CALLS: usize = 8;

/// Membership changes applied from facts while a resync runs, by (user, room): the fact is
/// newer than, or as new as, the group role's answer the resync holds, so the resync leaves
/// that room of that user as the fact put it.
#[derive(Clone, Default)]
pub(crate) struct Touched(Arc<Mutex<Option<HashSet<UserRoom>>>>);

/// A user and one of the rooms its sockets are in.
type UserRoom = (String, String);

impl Touched {
    /// Notes a membership change a fact applied, if a resync is under way.
    pub(crate) fn note(&self, user: &str, room: &str) {
        if let Some(touched) = self.0.lock().expect("touched poisoned").as_mut() {
            touched.insert((user.to_string(), room.to_string()));
        }
    }

    fn contains(&self, user: &str, room: &str) -> bool {
        self.0
            .lock()
            .expect("touched poisoned")
            .as_ref()
            .is_some_and(|t| t.contains(&(user.to_string(), room.to_string())))
    }

    fn start(&self) {
        *self.0.lock().expect("touched poisoned") = Some(HashSet::new());
    }

    fn stop(&self) {
        *self.0.lock().expect("touched poisoned") = None;
    }
}

impl Chat {
    /// Brings every socket of this replica up to date after the facts tail subscribed again
    /// (see the module documentation).
    pub(crate) async fn resync(&self, io: &SocketIo) {
        self.touched.start();
        let mut users: Vec<String> = io
            .sockets()
            .iter()
            .filter_map(|s| s.extensions.get::<SocketUser>().map(|SocketUser(u)| u))
            .collect();
        users.sort_unstable();
        users.dedup();
        let count = users.len();
        futures_util::stream::iter(users)
            .for_each_concurrent(RESYNC_CALLS, |user| async move {
                self.resync_user(io, &user).await
            })
            .await;
        self.touched.stop();
        tracing::info!(
            users = count,
            "sockets resynchronised after a gap in the facts"
        );
    }

    async fn resync_user(&self, io: &SocketIo, user: &str) {
        let Some(groups) = self.groups_now(user).await else {
            return;
        };
        let now: HashSet<&str> = groups.iter().map(|g| g.id.as_str()).collect();
        // Who of the co-members is online now: `user.online` / `user.offline` may have been missed.
        let presence = match presence_among(self, user, &groups).await {
            Ok(users) => Some(json!({ "users": users })),
            Err(e) => {
                tracing::warn!(error = %e, "no presence snapshot after a gap in the facts");
                None
            }
        };
        for socket in io.to(user_room(user)).sockets() {
            // One socket's events wait for room in its buffer at most this long in all, so a
            // socket that stopped reading holds up no other (it is dropped by its next ping).
            let deadline = Instant::now() + self.limits.ping_timeout;
            let patience = || deadline.saturating_duration_since(Instant::now());
            let had: HashSet<String> = socket
                .rooms()
                .iter()
                .filter_map(|r| room_group(r).map(String::from))
                .collect();
            for group_id in had.iter().filter(|g| !now.contains(g.as_str())) {
                let room = group_room(group_id);
                if self.touched.contains(user, &room) {
                    continue;
                }
                socket.leave(room);
                let body = json!({"groupId": group_id, "userId": user});
                emit_paced(&socket, "group.member.removed", &body, patience()).await;
            }
            for group_id in &now {
                let room = group_room(group_id);
                if !had.contains(*group_id) && !self.touched.contains(user, &room) {
                    socket.join(room);
                }
                let from_seq = self.announced_seq(group_id);
                let body = json!({"groupId": group_id, "fromSeq": from_seq});
                emit_paced(&socket, "chat.resync", &body, patience()).await;
            }
            if let Some(presence) = &presence {
                emit_paced(&socket, "user.presence", presence, patience()).await;
            }
        }
    }

    /// The groups `user` is a member of, asked of the group role (three tries); `None`, with a
    /// warning, when it does not answer: the user's sockets keep their rooms.
    async fn groups_now(&self, user: &str) -> Option<Vec<GroupView>> {
        let caller = CallerRef {
            caller: user.to_string(),
        };
        let mut pause = Duration::from_millis(200);
        for attempt in 1..=3 {
            match self
                .rpc
                .call::<GroupList>(&caller, &CallContext::internal())
                .await
            {
                Ok(groups) => return Some(groups),
                Err(e) if attempt == 3 => {
                    tracing::warn!(error = %e, "memberships unknown after a gap in the facts; the user's sockets keep their rooms");
                }
                Err(_) => {
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
            }
        }
        None
    }

    /// The last message seq this replica emitted in `group_id` (0 when none).
    fn announced_seq(&self, group_id: &str) -> i64 {
        self.announced
            .lock()
            .expect("announced poisoned")
            .0
            .get(group_id)
            .copied()
            .unwrap_or(0)
    }
}

/// Runs [`Chat::resync`] each time `attached` is opened again after its first opening, until
/// dropped.
pub(crate) async fn on_each_new_subscription(chat: Chat, io: SocketIo, attached: Gate) {
    let mut seen = attached.opened_after(0).await;
    loop {
        seen = attached.opened_after(seen).await;
        tracing::warn!(
            openings = seen,
            "the facts tail subscribed again: facts may have been missed; resynchronising this replica's sockets"
        );
        chat.resync(&io).await;
    }
}
