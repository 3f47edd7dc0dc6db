//! The chat role (seed §Chat Service): Socket.IO at `/socket.io`, for a stock `socket.io-client`.
//!
//! - **Handshake**: `auth: { token, lastSeq?: { <groupId>: <seq> } }`. A missing or bad token is
//!   refused with a `connect_error` whose message says what is wrong.
//! - **Rooms**: each socket joins `g:<groupId>` for every group of its user, and `u:<userId>`.
//!   Group facts make sockets join and leave group rooms at once, on every replica.
//! - **Client → server** events, each acknowledged with `{ ok: true, ... }` or
//!   `{ ok: false, error: { code, reason, message } }`, and **server → client** events: every one
//!   with its payload in the AsyncAPI document ([`asyncapi`], served at `/asyncapi.json`).
//!
//! A send becomes a command on Kafka (key = group id); the ack waits for the message role's fact,
//! so an acknowledged message is stored. Every replica tails the facts topic and emits to its
//! own sockets, so a member on replica B receives what was sent through replica A.
//!
//! Reconnecting clients send their last sequence per group in the handshake and receive what
//! they missed, in order, or `chat.resync { groupId }` when the gap is larger than one page.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chat_domain::contracts::auth::{LastSeen, UserLastSeen, UsersLastSeen, UsersRef};
use chat_domain::contracts::groups::{CallerRef, GroupList, GroupView};
use chat_domain::contracts::messages::*;
use chat_domain::error::RequestError;
use chat_domain::events::{Envelope, COMMANDS, FACTS};
use chat_domain::key::Key;
use chat_domain::rpc::CallContext;
use chat_domain::tokens::TokenVerifier;
use chat_domain::Error;
use chat_ports::clients::is_member;
use chat_ports::events::EventLog;
use chat_ports::health::Gate;
use chat_ports::metrics::Hop;
use chat_ports::rpc::RpcClient;
use chat_ports::store::{Presence, Revocations};
use serde::Deserialize;
use serde_json::{json, Value};
use socketioxide::extract::{AckSender, Data, Event, SocketRef, State, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::layer::SocketIoLayer;
use socketioxide::{BroadcastError, SendError, SocketError, SocketIo};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub use chat_domain::config::ChatLimits;
pub mod asyncapi;
mod detach;
mod resync;
pub use detach::detach_socket_request;

/// Each websocket's read buffer, in bytes.
const WS_READ_BUFFER_BYTES: usize = 1024;

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Result<Value, Error>>>>>;

/// A command waiting for its answer, removed from the pending map however the wait ends: an
/// answer, a timeout, an error, or the caller's future being dropped (a socket that went away).
struct Waiting {
    pending: Pending,
    id: String,
}

impl Waiting {
    /// Waits for `id`, unless `limit` commands are waited for already: then the command is
    /// refused at once (`overloaded`, retry in a second) rather than queued behind a backlog
    /// whose senders will mostly be told `timeout`.
    fn insert(
        pending: &Pending,
        limit: usize,
        id: String,
        tx: oneshot::Sender<Result<Value, Error>>,
    ) -> Result<Self, Error> {
        let mut waiting = pending.lock().expect("pending poisoned");
        if waiting.len() >= limit {
            chat_ports::metrics::shed("chat_send");
            return Err(Error::from(RequestError::Overloaded).retry_after(1));
        }
        waiting.insert(id.clone(), tx);
        Ok(Waiting {
            pending: pending.clone(),
            id,
        })
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.remove(&self.id);
        }
    }
}

/// A published command's answer, to be waited for until the command's deadline.
struct Answer {
    _waiting: Waiting,
    rx: oneshot::Receiver<Result<Value, Error>>,
    deadline: tokio::time::Instant,
}

impl Answer {
    async fn answer(self) -> Result<Value, Error> {
        match tokio::time::timeout_at(self.deadline, self.rx).await {
            Ok(Ok(answer)) => answer,
            _ => Err(MessageError::SendTimedOut.into()),
        }
    }
}

/// A socket's sends, in the order they arrived: one task per socket takes them from this queue
/// and puts each on the log before looking at the next, so one client's messages are numbered
/// in the order it sent them (their acknowledgements are still waited for side by side).
#[derive(Clone)]
struct Sends(mpsc::Sender<QueuedSend>);

/// A send as it arrived: its payload, its acknowledgement, and when its sender stops waiting
/// (the ack timeout counts from arrival, not from when its turn comes).
type QueuedSend = (Value, AckSender, tokio::time::Instant);

/// Sends a socket may have queued before the next is refused (`overloaded`).
const QUEUED_SENDS: usize = 64;

/// What the chat role's handlers share.
#[derive(Clone)]
pub struct Chat {
    rpc: RpcClient,
    verifier: Arc<TokenVerifier>,
    events: EventLog,
    presence: Arc<dyn Presence>,
    /// Sessions ended before their access tokens expire: refused at connect.
    revocations: Arc<dyn Revocations>,
    limits: ChatLimits,
    pending: Pending,
    /// The highest message seq emitted per group (see [`Announced`]).
    announced: Arc<Mutex<Announced>>,
    /// Set on SIGTERM: no new sockets, no new commands (see [`Chat::drain`]).
    draining: Arc<AtomicBool>,
    /// Membership changes facts applied while a resync runs (see [`resync`]).
    touched: resync::Touched,
}

/// The authenticated user of a socket (a socket extension).
#[derive(Clone)]
struct SocketUser(String);

/// How many sockets the user held, this one included, when it connected (a socket extension;
/// absent when presence could not be counted, so the disconnect counts nothing either).
#[derive(Clone, Copy)]
struct Counted(i64);

/// A token bucket per socket (a socket extension).
#[derive(Clone)]
struct Bucket(Arc<Mutex<(f64, Instant)>>);

/// When this socket last announced typing in each group (a socket extension).
#[derive(Clone, Default)]
struct TypingSent(Arc<Mutex<HashMap<String, Instant>>>);

/// A "typing" start is passed on at most this often per socket and group: clients send one
/// per keystroke; co-members need one every few seconds.
const TYPING_THROTTLE: Duration = Duration::from_secs(2);

fn group_room(group_id: &str) -> String {
    format!("g:{group_id}")
}

/// The group whose room `room` is ([`group_room`]); `None` for any other room.
fn room_group(room: &str) -> Option<&str> {
    room.strip_prefix("g:")
}

/// The sockets of a group's room still being replayed what they missed.
fn replaying_room(room: &str) -> String {
    format!("replaying:{room}")
}

const INCOMING: &str = "chat.message.incoming";

/// New messages of a group that arrive while a reconnecting socket is replayed what it missed
/// (a socket extension): held back and delivered after the replay, without those the replay
/// already sent, so the socket sees every message once and in order. After the replay the gate
/// keeps the last seq it sent as a floor until a newer message passes: a message announced
/// again (a retried send) is not sent twice even by a replica too new to have announced it.
#[derive(Clone, Default)]
struct ReplayGate(Arc<Mutex<HashMap<String, Gated>>>);

/// Where a socket's replay of one group stands.
enum Gated {
    /// Replaying: new messages wait here.
    Holding(Vec<Value>),
    /// Replayed up to this seq: only newer messages pass.
    Floor(i64),
}

fn seq_of(message: &Value) -> i64 {
    message["seq"].as_i64().unwrap_or(i64::MAX)
}

impl ReplayGate {
    /// Holds `message` for `socket` while it is being replayed `room`, drops it if the replay
    /// sent it, emits it otherwise.
    fn offer(socket: &SocketRef, room: &str, message: &Value) {
        let mut ungated = false;
        if let Some(gate) = socket.extensions.get::<ReplayGate>() {
            let mut groups = gate.0.lock().expect("replay gate poisoned");
            match groups.get_mut(room) {
                Some(Gated::Holding(waiting)) => return waiting.push(message.clone()),
                Some(Gated::Floor(floor)) if seq_of(message) <= *floor => return,
                Some(Gated::Floor(_)) => {
                    groups.remove(room);
                    ungated = true;
                }
                None => {}
            }
        }
        if let Err(SendError::Socket(SocketError::InternalChannelFull)) =
            socket.emit(INCOMING, message)
        {
            chat_ports::metrics::shed("slow_socket");
        }
        if ungated {
            // This replica has now announced a newer message: it stops repeats by itself.
            socket.leave(replaying_room(room));
        }
    }

    /// Ends the replay of `room`: emits what was held back above `replayed` (the last seq the
    /// replay sent), paced by what the client reads, then lets newer messages through. Messages
    /// arriving meanwhile are held back too, so they follow in order.
    async fn open(socket: &SocketRef, room: &str, replayed: i64, patience: Duration) {
        let Some(gate) = socket.extensions.get::<ReplayGate>() else {
            return;
        };
        let mut floor = replayed;
        loop {
            let waiting = {
                let mut groups = gate.0.lock().expect("replay gate poisoned");
                match groups.get_mut(room) {
                    Some(Gated::Holding(waiting)) if !waiting.is_empty() => std::mem::take(waiting),
                    _ => {
                        groups.insert(room.to_string(), Gated::Floor(floor));
                        return;
                    }
                }
            };
            for message in waiting {
                if seq_of(&message) > floor {
                    floor = seq_of(&message);
                    if !emit_paced(socket, INCOMING, &message, patience).await {
                        return;
                    }
                }
            }
        }
    }
}

/// Emits to one socket, waiting while its buffer is full (a client reading slowly) for at most
/// `patience`; false when the socket is gone or never made room. A replay emits up to
/// `CHAT_REPLAY_LIMIT` messages per group at once, more than a socket's buffer holds.
async fn emit_paced<T: serde::Serialize + ?Sized>(
    socket: &SocketRef,
    event: &str,
    data: &T,
    patience: Duration,
) -> bool {
    let deadline = Instant::now() + patience;
    loop {
        match socket.emit(event, data) {
            Ok(()) => return true,
            Err(SendError::Socket(SocketError::InternalChannelFull)) => {
                if Instant::now() >= deadline {
                    chat_ports::metrics::shed("slow_socket");
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            // Closed: the socket is gone, nothing was shed.
            Err(_) => return false,
        }
    }
}

/// Counts the deliveries a broadcast dropped because a socket's buffer was full (a client that
/// does not read; the next ping finds its buffer full and drops it).
fn count_slow_sockets(error: &BroadcastError) {
    if let BroadcastError::Socket(errors) = error {
        for e in errors {
            if matches!(e, SocketError::InternalChannelFull) {
                chat_ports::metrics::shed("slow_socket");
            }
        }
    }
}

fn user_room(user_id: &str) -> String {
    format!("u:{user_id}")
}

/// The highest message seq this replica has emitted in each group. A message role that dies
/// before committing its place on the commands topic carries the last commands out again; the
/// store absorbs them and the facts come again, so a replica emits a new message only above the
/// group's mark (facts of one group arrive in order). At most [`ANNOUNCED_GROUPS`] groups are
/// remembered; past that the marks start over, and a repeated fact could pass once.
#[derive(Default)]
struct Announced(HashMap<Key, i64>);

const ANNOUNCED_GROUPS: usize = 100_000;

impl Announced {
    /// Whether `seq` is new in `group_id`, marking it.
    fn advance(&mut self, group_id: &str, seq: i64) -> bool {
        if let Some(mark) = self.0.get_mut(group_id) {
            if seq <= *mark {
                return false;
            }
            *mark = seq;
            return true;
        }
        if self.0.len() >= ANNOUNCED_GROUPS {
            self.0.clear();
        }
        self.0.insert(Key::from(group_id), seq);
        true
    }
}

/// What a fact means on a replica: the command it answers, if any, and what to do with the
/// sockets, in order.
#[derive(Debug)]
struct Routing {
    answer: Option<(String, Result<Value, Error>)>,
    steps: Vec<Step>,
}

#[derive(Debug, PartialEq)]
enum Step {
    /// Every socket of `user` joins `room`.
    Join { user: String, room: String },
    /// Every socket of `user` leaves `room`.
    Leave { user: String, room: String },
    /// `event` to the sockets in the rooms `to`, except those in `except`.
    Emit {
        to: Vec<String>,
        except: Option<String>,
        event: &'static str,
        body: Value,
    },
}

fn emit(to: String, event: &'static str, body: Value) -> Step {
    Step::Emit {
        to: vec![to],
        except: None,
        event,
        body,
    }
}

/// Decides what a fact does, without touching a socket (the unit tests' subject).
fn route(envelope: Envelope<Fact>) -> Routing {
    // Every fact but presence is keyed by its group; presence carries its own group ids.
    let group_id = envelope.key;
    let room = group_room(&group_id);
    let answer = |command_id: Option<String>, value: Value| command_id.map(|id| (id, Ok(value)));
    match envelope.event {
        Fact::MessageCreated {
            command_id,
            message,
        } => {
            let body = serde_json::to_value(&message).unwrap_or_default();
            Routing {
                answer: answer(command_id, json!({ "message": &body })),
                steps: vec![emit(room, "chat.message.incoming", body)],
            }
        }
        Fact::MessageEdited {
            command_id,
            message,
        } => {
            let body = serde_json::to_value(&message).unwrap_or_default();
            Routing {
                answer: answer(command_id, json!({ "message": &body })),
                steps: vec![emit(room, "chat.message.edited", body)],
            }
        }
        Fact::MessageSeen {
            command_id,
            user_id,
            seq,
            seen_at,
        } => Routing {
            answer: answer(command_id, json!({ "seq": seq })),
            steps: vec![emit(
                room,
                "chat.message.seen",
                json!({"groupId": group_id, "userId": user_id, "seq": seq, "seenAt": seen_at}),
            )],
        },
        Fact::MessageDelivered {
            command_id,
            user_id,
            seq,
            delivered_at,
        } => Routing {
            answer: answer(command_id, json!({ "seq": seq })),
            // The user's own devices need no word of it: their seen receipts are what they share.
            steps: vec![Step::Emit {
                to: vec![room],
                except: Some(user_room(&user_id)),
                event: "chat.message.delivered",
                body: json!({"groupId": group_id, "userId": user_id, "seq": seq, "deliveredAt": delivered_at}),
            }],
        },
        Fact::MessageDeleted {
            command_id,
            message_id,
            seq,
            deleted_by,
        } => Routing {
            answer: answer(command_id, json!({ "messageId": &message_id })),
            steps: vec![emit(
                room,
                "chat.message.deleted",
                json!({"groupId": group_id, "messageId": message_id, "seq": seq, "deletedBy": deleted_by}),
            )],
        },
        Fact::CommandRejected {
            command_id, error, ..
        } => Routing {
            answer: Some((command_id, Err(error))),
            steps: Vec::new(),
        },
        Fact::GroupCreated { group } => {
            let mut steps: Vec<Step> = group
                .members
                .iter()
                .map(|m| Step::Join {
                    user: m.user_id.clone(),
                    room: group_room(&group.id),
                })
                .collect();
            let body = serde_json::to_value(&group).unwrap_or_default();
            steps.push(emit(group_room(&group.id), "group.created", body));
            Routing {
                answer: None,
                steps,
            }
        }
        Fact::MembersAdded { user_ids, group } => {
            let mut steps: Vec<Step> = user_ids
                .iter()
                .map(|user| Step::Join {
                    user: user.clone(),
                    room: room.clone(),
                })
                .collect();
            let body = json!({"groupId": group_id, "userIds": user_ids, "group": group});
            steps.push(emit(room, "group.members.added", body));
            Routing {
                answer: None,
                steps,
            }
        }
        Fact::Presence {
            user_id,
            online,
            at,
            group_ids,
        } => {
            let (event, body) = if online {
                ("user.online", json!({ "userId": user_id }))
            } else {
                ("user.offline", json!({"userId": user_id, "lastSeenAt": at}))
            };
            Routing {
                answer: None,
                steps: vec![Step::Emit {
                    to: group_ids.iter().map(|g| group_room(g)).collect(),
                    except: Some(user_room(&user_id)),
                    event,
                    body,
                }],
            }
        }
        Fact::Typing { user_id, typing } => Routing {
            answer: None,
            steps: vec![Step::Emit {
                to: vec![room],
                except: Some(user_room(&user_id)),
                event: "chat.typing",
                body: json!({"groupId": group_id, "userId": user_id, "typing": typing}),
            }],
        },
        Fact::MemberRoleChanged {
            user_id,
            role,
            changed_by,
        } => Routing {
            answer: None,
            steps: vec![emit(
                room,
                "group.member.role_changed",
                json!({"groupId": group_id, "userId": user_id, "role": role, "changedBy": changed_by}),
            )],
        },
        Fact::MemberRemoved { user_id } => {
            let body = json!({"groupId": group_id, "userId": user_id});
            Routing {
                answer: None,
                // The removed member hears of it once, then leaves; the others hear it in the room.
                steps: vec![
                    emit(user_room(&user_id), "group.member.removed", body.clone()),
                    Step::Leave {
                        user: user_id,
                        room: room.clone(),
                    },
                    emit(room, "group.member.removed", body),
                ],
            }
        }
    }
}

fn ack_ok(extra: Value) -> Value {
    let mut body = json!({"ok": true});
    if let (Value::Object(map), Value::Object(more)) = (&mut body, extra) {
        map.extend(more);
    }
    body
}

fn ack_err(error: &Error) -> Value {
    error.log_at_boundary("socket");
    let mut body = json!({"code": error.code, "reason": error.reason(), "message": error.message});
    if let Some(secs) = error.retry_after_secs {
        body["retryAfter"] = json!(secs);
    }
    json!({"ok": false, "error": body})
}

/// Why a handshake was refused; its text is what `connect_error` carries.
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Handshake {
    token: Option<String>,
    #[serde(default)]
    last_seq: HashMap<String, i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SendEvent {
    group_id: String,
    content: Option<String>,
    client_message_id: Option<String>,
    attachment: Option<AttachmentRef>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SeenEvent {
    group_id: String,
    seq: Option<i64>,
    /// The seed's form: seen up to this message.
    message_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeliveredEvent {
    group_id: String,
    seq: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypingEvent {
    group_id: String,
    /// `false` when the user stopped; a start when absent.
    #[serde(default = "yes")]
    typing: bool,
}

fn yes() -> bool {
    true
}

impl Chat {
    pub fn new(
        rpc: RpcClient,
        verifier: Arc<TokenVerifier>,
        events: EventLog,
        presence: Arc<dyn Presence>,
        revocations: Arc<dyn Revocations>,
        limits: ChatLimits,
    ) -> Self {
        Chat {
            rpc,
            verifier,
            events,
            presence,
            revocations,
            limits,
            pending: Arc::default(),
            announced: Arc::default(),
            draining: Arc::default(),
            touched: Default::default(),
        }
    }

    /// Shuts the chat role down without losing a message (a rolling upgrade):
    ///
    /// 1. no new sockets are accepted and no new commands start (they are refused with
    ///    `unavailable`; a client resends them, with the same `clientMessageId`, after
    ///    reconnecting);
    /// 2. connected clients receive `server.restarting`;
    /// 3. sends already under way are answered (up to `limit`);
    /// 4. every transport is closed, so a stock Socket.IO client reconnects by itself (to
    ///    another replica, since readiness turned false first) and replays what it missed with
    ///    `lastSeq`.
    pub async fn drain(&self, io: &SocketIo, limit: Duration) {
        self.draining.store(true, Ordering::SeqCst);
        let _ = io
            .emit("server.restarting", &json!({"reconnect": true}))
            .await;
        let deadline = Instant::now() + limit;
        loop {
            let in_flight = self.pending.lock().expect("pending poisoned").len();
            if in_flight == 0 {
                break;
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    in_flight,
                    "drain deadline reached with sends still unanswered"
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let sockets = io.sockets().len();
        io.close().await;
        tracing::info!(
            sockets,
            "chat drained: every socket was told to reconnect elsewhere"
        );
    }

    fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// The Socket.IO layer (serving `/socket.io`) and its handle.
    pub fn layer(self) -> (SocketIoLayer, SocketIo) {
        let (layer, io) = SocketIo::builder()
            .max_payload(64 * 1024)
            // Allocated whole for every websocket, idle or not (4 KiB by default): chat frames
            // are far smaller, and a larger one is read in several turns.
            .ws_read_buffer_size(WS_READ_BUFFER_BYTES)
            .max_buffer_size(self.limits.socket_buffer as usize)
            .ping_interval(self.limits.ping_interval)
            .ping_timeout(self.limits.ping_timeout)
            .with_state(self)
            .build_layer();
        io.ns("/", on_connect.with(authenticate));
        (layer, io)
    }

    /// Sends a command and waits for the fact that answers it.
    async fn command(&self, group_id: &str, command: Command) -> Result<Value, Error> {
        let deadline = tokio::time::Instant::now() + self.limits.ack_timeout;
        self.publish(group_id, command, deadline)
            .await?
            .answer()
            .await
    }

    /// Puts a command on the log; what it returns waits for the answer. The whole of it is
    /// before `deadline`, when the sender stops waiting: a hung log holds the publish as long as
    /// a hung message role holds the answer. A command published after its sender was told to
    /// retry is past its deadline, and the message role drops it.
    async fn publish(
        &self,
        group_id: &str,
        command: Command,
        deadline: tokio::time::Instant,
    ) -> Result<Answer, Error> {
        if self.is_draining() {
            return Err(MessageError::Restarting.into());
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Err(MessageError::SendTimedOut.into());
        }
        let (tx, rx) = oneshot::channel();
        let waiting = Waiting::insert(
            &self.pending,
            self.limits.max_pending_commands as usize,
            command.command_id().to_string(),
            tx,
        )?;
        let envelope = Envelope::new("chat", group_id, command).expiring_after(left);
        tokio::time::timeout_at(deadline, self.events.publish(COMMANDS, &envelope))
            .await
            .unwrap_or_else(|_| Err(MessageError::SendTimedOut.into()))?;
        Ok(Answer {
            _waiting: waiting,
            rx,
            deadline,
        })
    }

    fn resolve(&self, command_id: Option<&str>, answer: Result<Value, Error>) {
        if let Some(id) = command_id {
            if let Some(tx) = self.pending.lock().expect("pending poisoned").remove(id) {
                let _ = tx.send(answer);
            }
        }
    }

    /// Emits a fact to this replica's sockets and answers the command it settles, if waited on here.
    pub async fn on_fact(&self, io: &SocketIo, envelope: Envelope<Fact>) {
        let taken = Instant::now();
        let repeated = match &envelope.event {
            Fact::MessageCreated { message, .. } => !self
                .announced
                .lock()
                .expect("announced poisoned")
                .advance(&envelope.key, message.seq),
            _ => false,
        };
        // A new message's time in the log, and then here until emitted.
        let timed = matches!(envelope.event, Fact::MessageCreated { .. }) && !repeated;
        if timed {
            chat_ports::metrics::hop_between(Hop::FactLog, envelope.at, chrono::Utc::now());
        }
        let mut routing = route(envelope);
        if repeated {
            // Its sender may be waiting (a retry): answered, but not delivered twice.
            routing.steps.clear();
        }
        if let Some((command_id, answer)) = routing.answer {
            self.resolve(Some(&command_id), answer);
        }
        for step in routing.steps {
            match step {
                Step::Join { user, room } => {
                    self.touched.note(&user, &room);
                    let _ = io.to(user_room(&user)).join(room).await;
                }
                Step::Leave { user, room } => {
                    self.touched.note(&user, &room);
                    let _ = io.to(user_room(&user)).leave(room).await;
                }
                Step::Emit {
                    to,
                    except,
                    event,
                    body,
                } => {
                    // New messages skip the sockets still being replayed what they missed:
                    // those get them from their gate, after the replay, in order.
                    let gated = event == INCOMING;
                    let mut skip: Vec<String> = except.into_iter().collect();
                    if gated {
                        skip.extend(to.iter().map(|room| replaying_room(room)));
                    }
                    let target = io.to(to.clone());
                    let emitted = if skip.is_empty() {
                        target.emit(event, &body).await
                    } else {
                        target.except(skip).emit(event, &body).await
                    };
                    if let Err(e) = emitted {
                        count_slow_sockets(&e);
                        tracing::debug!(error = %e, "emit failed");
                    }
                    if gated {
                        for room in &to {
                            for socket in io.to(replaying_room(room)).sockets() {
                                ReplayGate::offer(&socket, room, &body);
                            }
                        }
                    }
                }
            }
        }
        if timed {
            chat_ports::metrics::hop(Hop::Emit, taken.elapsed());
        }
    }

    fn allow(&self, socket: &SocketRef) -> bool {
        let Some(Bucket(bucket)) = socket.extensions.get::<Bucket>() else {
            return false;
        };
        let mut state = bucket.lock().expect("bucket poisoned");
        let rate = f64::from(self.limits.events_per_second);
        let (tokens, last) = *state;
        let now = Instant::now();
        let refilled = (tokens + now.duration_since(last).as_secs_f64() * rate).min(rate);
        if refilled < 1.0 {
            *state = (refilled, now);
            false
        } else {
            *state = (refilled - 1.0, now);
            true
        }
    }
}

/// Connect middleware: verifies the handshake token, joins the user's rooms and registers the
/// event handlers — all before socket.io acknowledges the connection, so an event the client
/// emits right after `connect` is never dropped or checked against missing rooms. Its error text
/// becomes `connect_error`.
async fn authenticate(
    socket: SocketRef,
    TryData(auth): TryData<Value>,
    State(chat): State<Chat>,
) -> Result<(), Refused> {
    if chat.is_draining() {
        return Err(Refused("this server is restarting; connect again".into()));
    }
    let required = || Refused("authentication required: connect with auth: { token }".into());
    let handshake: Handshake = auth
        .ok()
        .and_then(|v| serde_json::from_value(v).ok())
        .ok_or_else(required)?;
    let token = handshake
        .token
        .filter(|t| !t.is_empty())
        .ok_or_else(required)?;
    let claims = chat
        .verifier
        .verify(&token)
        .await
        .map_err(|_| Refused("invalid or expired access token".into()))?;
    chat_ports::clients::check_session(chat.revocations.as_ref(), &claims)
        .await
        .map_err(|_| Refused("invalid or expired access token".into()))?;
    let user = claims.sub;
    let groups = chat
        .rpc
        .call::<GroupList>(
            &CallerRef {
                caller: user.clone(),
            },
            &CallContext::internal(),
        )
        .await
        .map_err(|e| Refused(format!("chat is unavailable, retry shortly ({})", e.code)))?;
    // Counted before the socket is accepted, so one over the cap is refused at connect.
    match chat.presence.connected(&user, PRESENCE_TTL).await {
        Ok(count) if count > i64::from(chat.limits.max_sockets_per_user) => {
            if let Err(e) = chat.presence.disconnected(&user).await {
                tracing::warn!(error = %e, "presence unavailable");
            }
            return Err(Refused(format!(
                "too many connections: at most {} sockets per user",
                chat.limits.max_sockets_per_user
            )));
        }
        Ok(count) => {
            socket.extensions.insert(Counted(count));
        }
        Err(e) => tracing::warn!(error = %e, "presence unavailable; the socket is not counted"),
    }
    let replays: Vec<(String, i64)> = groups
        .iter()
        .filter_map(|g| {
            handshake
                .last_seq
                .get(&g.id)
                .map(|seq| (g.id.clone(), *seq))
        })
        .collect();
    // Gated before the socket joins its rooms: a message emitted between the join and the
    // replay is held back, never sent ahead of (or besides) the replay.
    let gate = ReplayGate::default();
    socket.extensions.insert(gate.clone());
    for (group_id, _) in &replays {
        let room = group_room(group_id);
        gate.0
            .lock()
            .expect("replay gate poisoned")
            .insert(room.clone(), Gated::Holding(Vec::new()));
        socket.join(replaying_room(&room));
    }
    socket.join(user_room(&user));
    for group in &groups {
        socket.join(group_room(&group.id));
    }
    socket.extensions.insert(SocketUser(user));
    socket.extensions.insert(Bucket(Arc::new(Mutex::new((
        f64::from(chat.limits.events_per_second),
        Instant::now(),
    )))));
    socket.extensions.insert(Arc::new(replays));
    socket.extensions.insert(TypingSent::default());
    socket.on("chat.message.send", queue_send);
    socket.on("chat.typing", on_typing);
    socket.on("chat.message.seen", on_seen);
    socket.on("chat.message.delivered", on_delivered);
    socket.on("chat.message.delete", on_delete);
    socket.on("chat.message.edit", on_edit);
    socket.on("user.heartbeat", on_heartbeat);
    socket.on("user.presence", on_presence);
    socket.on_fallback(on_unknown);
    socket.on_disconnect(on_disconnect);
    Ok(())
}

/// After the connection is acknowledged: replays what a reconnecting client missed.
async fn on_connect(socket: SocketRef, State(chat): State<Chat>) {
    let Some(SocketUser(user)) = socket.extensions.get::<SocketUser>() else {
        return;
    };
    if let Some(Counted(1)) = socket.extensions.get::<Counted>() {
        came_online(&chat, &socket, &user).await;
    }
    let replays = socket
        .extensions
        .get::<Arc<Vec<(String, i64)>>>()
        .unwrap_or_default();
    for (group_id, seq) in replays.iter() {
        replay(&chat, &socket, &user, group_id, *seq).await;
    }
    // Who of its co-members is online now: later changes come as user.online / user.offline.
    match presence_of(&chat, &user).await {
        Ok(users) => {
            let _ = socket.emit("user.presence", &json!({ "users": users }));
        }
        Err(e) => tracing::warn!(error = %e, "no presence snapshot for a new socket"),
    }
}

/// Sends what a reconnecting client missed in a group, in order, or asks it to resync; then the
/// new messages held back meanwhile.
async fn replay(chat: &Chat, socket: &SocketRef, user: &str, group_id: &str, after: i64) {
    let replayed = replay_history(chat, socket, user, group_id, after).await;
    ReplayGate::open(
        socket,
        &group_room(group_id),
        replayed,
        chat.limits.ping_timeout,
    )
    .await;
}

/// The replay itself; the last seq it sent (`after` when it sent none).
async fn replay_history(
    chat: &Chat,
    socket: &SocketRef,
    user: &str,
    group_id: &str,
    after: i64,
) -> i64 {
    let request = HistoryRequest {
        caller: user.to_string(),
        group_id: group_id.to_string(),
        query: HistoryQuery {
            before: None,
            after: Some(after.max(0)),
            limit: Some(chat.limits.replay_limit),
        },
    };
    match chat
        .rpc
        .call::<MessageHistory>(&request, &CallContext::internal())
        .await
    {
        Ok(page) if !page.has_more => {
            let mut sent = after;
            for message in &page.data {
                if !emit_paced(socket, INCOMING, message, chat.limits.ping_timeout).await {
                    break;
                }
                sent = message.seq;
            }
            return sent;
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "replay failed; asking the client to resync"),
    }
    emit_paced(
        socket,
        "chat.resync",
        &json!({"groupId": group_id, "fromSeq": after}),
        chat.limits.ping_timeout,
    )
    .await;
    after
}

/// Membership, checked for every client event once [`admit`] let it in. The socket's rooms are a
/// fast path: a socket is in a group's room only while its user is a member. A socket outside
/// the room may belong to a member whose membership fact this replica has not applied yet (a
/// group created through REST a moment ago, with the fact still on its way to this replica), so
/// the group role answers authoritatively and a member joins the room at once. The message role
/// checks membership again where the data is.
async fn precheck(chat: &Chat, socket: &SocketRef, group_id: &str) -> Result<String, Error> {
    let Some(SocketUser(user)) = socket.extensions.get::<SocketUser>() else {
        return Err(MessageError::NotAuthenticated.into());
    };
    let room = group_room(group_id);
    if socket.rooms().iter().any(|r| r.as_ref() == room) {
        return Ok(user);
    }
    if is_member(&chat.rpc, &user, group_id, &CallContext::internal()).await? {
        socket.join(room);
        Ok(user)
    } else {
        Err(MessageError::NotMember.into())
    }
}

/// Counts the event against the socket's rate, then reads its payload: a flood of malformed
/// events is limited like any other.
fn admit<T: serde::de::DeserializeOwned>(
    chat: &Chat,
    socket: &SocketRef,
    event: &str,
    data: Value,
) -> Result<T, Error> {
    if !chat.allow(socket) {
        return Err(Error::rate_limited(1));
    }
    payload(event, data)
}

/// The payload of `event` in its documented shape.
fn payload<T: serde::de::DeserializeOwned>(event: &str, data: Value) -> Result<T, Error> {
    serde_json::from_value(data).map_err(|_| {
        MessageError::InvalidPayload {
            event: event.to_string(),
        }
        .into()
    })
}

fn answer(ack: AckSender, result: Result<Value, Error>) {
    let body = match result {
        Ok(v) => ack_ok(v),
        Err(e) => ack_err(&e),
    };
    let _ = ack.send(&body);
}

/// `chat.message.send`, taken in arrival order: socketioxide calls this synchronously for each
/// packet as it is read (only the future it returns runs on its own), so the queue holds the
/// socket's sends in the order the client sent them. The socket's event rate is counted here.
/// The queue and its task are made at a socket's first send: an idle socket costs neither.
fn queue_send(
    socket: SocketRef,
    Data(data): Data<Value>,
    ack: AckSender,
    State(chat): State<Chat>,
) -> std::future::Ready<()> {
    let queue = match socket.extensions.get::<Sends>() {
        Some(Sends(queue)) => Some(queue),
        None if socket.extensions.get::<SocketUser>().is_none() => None,
        None => {
            let (queue, sends) = mpsc::channel(QUEUED_SENDS);
            socket.extensions.insert(Sends(queue.clone()));
            tokio::spawn(send_in_order(chat.clone(), socket.clone(), sends));
            Some(queue)
        }
    };
    let refused = match queue {
        _ if !chat.allow(&socket) => Some((ack, Error::rate_limited(1))),
        Some(queue) => {
            let deadline = tokio::time::Instant::now() + chat.limits.ack_timeout;
            let queued = queue.try_send((data, ack, deadline));
            queued.err().map(|e| match e {
                mpsc::error::TrySendError::Full((_, ack, _)) => {
                    chat_ports::metrics::shed("chat_send_queue");
                    (ack, Error::from(RequestError::Overloaded).retry_after(1))
                }
                mpsc::error::TrySendError::Closed((_, ack, _)) => {
                    (ack, MessageError::Restarting.into())
                }
            })
        }
        None => Some((ack, MessageError::NotAuthenticated.into())),
    };
    if let Some((ack, error)) = refused {
        answer(ack, Err(error));
    }
    std::future::ready(())
}

/// Takes a socket's sends off its queue one by one until the socket closes: each is checked and
/// put on the log before the next; its acknowledgement is waited for on a task of its own.
async fn send_in_order(chat: Chat, socket: SocketRef, mut queue: mpsc::Receiver<QueuedSend>) {
    while let Some((data, ack, deadline)) = queue.recv().await {
        match published(&chat, &socket, data, deadline).await {
            Ok(pending) => {
                tokio::spawn(async move { answer(ack, pending.answer().await) });
            }
            Err(e) => answer(ack, Err(e)),
        }
    }
}

async fn published(
    chat: &Chat,
    socket: &SocketRef,
    data: Value,
    deadline: tokio::time::Instant,
) -> Result<Answer, Error> {
    let event: SendEvent = payload("chat.message.send", data)?;
    let user = precheck(chat, socket, &event.group_id).await?;
    if event
        .content
        .as_ref()
        .is_some_and(|c| c.chars().count() > MAX_MESSAGE_CHARS)
    {
        return Err(MessageError::MessageTooLong {
            max: MAX_MESSAGE_CHARS,
        }
        .into());
    }
    let command = Command::Send {
        command_id: uuid::Uuid::new_v4().to_string(),
        user_id: user,
        client_message_id: event
            .client_message_id
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        content: event.content,
        attachment: event.attachment,
    };
    // The deadline is the send's arrival plus the ack timeout (see `QueuedSend`).
    let now = tokio::time::Instant::now();
    let queued = (now + chat.limits.ack_timeout).saturating_duration_since(deadline);
    let answer = chat.publish(&event.group_id, command, deadline).await?;
    chat_ports::metrics::hop(Hop::CommandQueued, queued);
    Ok(answer)
}

async fn on_seen(
    socket: SocketRef,
    Data(data): Data<Value>,
    ack: AckSender,
    State(chat): State<Chat>,
) {
    let result = async {
        let event: SeenEvent = admit(&chat, &socket, "chat.message.seen", data)?;
        if event.seq.is_some() == event.message_id.is_some() {
            // Exactly one of them says how far.
            return Err(MessageError::InvalidPayload {
                event: "chat.message.seen".into(),
            }
            .into());
        }
        let user = precheck(&chat, &socket, &event.group_id).await?;
        let command = Command::Seen {
            command_id: uuid::Uuid::new_v4().to_string(),
            user_id: user,
            seq: event.seq,
            message_id: event.message_id,
        };
        chat.command(&event.group_id, command).await
    }
    .await;
    answer(ack, result);
}

/// `chat.message.delivered`: a device received the group's messages up to `seq`.
async fn on_delivered(
    socket: SocketRef,
    Data(data): Data<Value>,
    ack: AckSender,
    State(chat): State<Chat>,
) {
    let result = async {
        let event: DeliveredEvent = admit(&chat, &socket, "chat.message.delivered", data)?;
        let user = precheck(&chat, &socket, &event.group_id).await?;
        let command = Command::Delivered {
            command_id: uuid::Uuid::new_v4().to_string(),
            user_id: user,
            seq: event.seq,
        };
        chat.command(&event.group_id, command).await
    }
    .await;
    answer(ack, result);
}

/// An event the chat role does not know: refused with `unknown_event` when the client asked for
/// an answer, so it can tell a typo or an older server from a slow one. Counted like any event.
async fn on_unknown(
    socket: SocketRef,
    Event(event): Event,
    ack: AckSender,
    State(chat): State<Chat>,
) {
    let error = if chat.allow(&socket) {
        let event: String = event.chars().take(64).collect();
        MessageError::UnknownEvent { event }.into()
    } else {
        Error::rate_limited(1)
    };
    answer(ack, Err(error));
}

/// A socket event that names a message of a group.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageEvent<T> {
    group_id: String,
    message_id: String,
    #[serde(flatten)]
    rest: T,
}

/// What `chat.message.edit` carries besides the message it names.
#[derive(Deserialize)]
struct EditFields {
    content: String,
}

/// Admits `event` naming a message, checks its group, and waits for the command `build` makes
/// of it: `build(message id, command id, user id, the event's other fields)`.
async fn on_message<T: serde::de::DeserializeOwned>(
    chat: &Chat,
    socket: &SocketRef,
    event: &'static str,
    data: Value,
    build: impl FnOnce(String, String, String, T) -> Command,
) -> Result<Value, Error> {
    let event: MessageEvent<T> = admit(chat, socket, event, data)?;
    let user = precheck(chat, socket, &event.group_id).await?;
    let command_id = uuid::Uuid::new_v4().to_string();
    let command = build(event.message_id, command_id, user, event.rest);
    chat.command(&event.group_id, command).await
}

async fn on_delete(
    socket: SocketRef,
    Data(data): Data<Value>,
    ack: AckSender,
    State(chat): State<Chat>,
) {
    let delete = |message_id, command_id, user_id, _: serde::de::IgnoredAny| Command::Delete {
        command_id,
        user_id,
        message_id,
    };
    let result = on_message(&chat, &socket, "chat.message.delete", data, delete).await;
    answer(ack, result);
}

/// `chat.message.edit`: the sender replaces a message's text within the edit window.
async fn on_edit(
    socket: SocketRef,
    Data(data): Data<Value>,
    ack: AckSender,
    State(chat): State<Chat>,
) {
    let edit = |message_id, command_id, user_id, fields: EditFields| Command::Edit {
        command_id,
        user_id,
        message_id,
        content: fields.content,
    };
    let result = on_message(&chat, &socket, "chat.message.edit", data, edit).await;
    answer(ack, result);
}

/// `chat.typing`: tells the group's other members, on every replica, that the user started
/// (or stopped) typing. Membership-checked and rate-limited like every event, throttled to one
/// start per group every 2 s, and never stored: it goes through the facts topic only.
async fn on_typing(
    socket: SocketRef,
    Data(data): Data<Value>,
    ack: AckSender,
    State(chat): State<Chat>,
) {
    let result = async {
        let event: TypingEvent = admit(&chat, &socket, "chat.typing", data)?;
        let user = precheck(&chat, &socket, &event.group_id).await?;
        let Some(TypingSent(sent)) = socket.extensions.get::<TypingSent>() else {
            return Err(MessageError::NotAuthenticated.into());
        };
        let pass_on = {
            let mut sent = sent.lock().expect("typing map poisoned");
            let now = Instant::now();
            if !event.typing {
                sent.remove(&event.group_id);
                true
            } else if sent
                .get(&event.group_id)
                .is_some_and(|at| now.duration_since(*at) < TYPING_THROTTLE)
            {
                false
            } else {
                sent.insert(event.group_id.clone(), now);
                true
            }
        };
        if pass_on {
            let fact = Fact::Typing {
                user_id: user,
                typing: event.typing,
            };
            chat.events
                .publish(FACTS, &Envelope::new("chat", &event.group_id, fact))
                .await?;
        }
        Ok(json!({"typing": event.typing, "throttled": !pass_on}))
    }
    .await;
    answer(ack, result);
}

/// How long a user stays online without a heartbeat: the socket count expires then, so a
/// crashed replica cannot leave its users online for ever. Clients send `user.heartbeat` at
/// least every minute.
const PRESENCE_TTL: Duration = Duration::from_secs(120);

/// The groups `user` belongs to, for presence announcements.
async fn group_ids(chat: &Chat, user: &str) -> Vec<String> {
    match chat
        .rpc
        .call::<GroupList>(
            &CallerRef {
                caller: user.to_string(),
            },
            &CallContext::internal(),
        )
        .await
    {
        Ok(groups) => groups.into_iter().map(|g| g.id).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list groups for a presence announcement");
            Vec::new()
        }
    }
}

/// The user's first socket over every replica: co-members hear `user.online`.
async fn came_online(chat: &Chat, socket: &SocketRef, user: &str) {
    let group_ids: Vec<String> = socket
        .rooms()
        .iter()
        .filter_map(|r| room_group(r).map(String::from))
        .collect();
    announce(chat, user, true, chrono::Utc::now(), group_ids).await;
}

/// Presence goes through the facts topic like everything else, so co-members on every replica
/// hear of it (a Socket.IO broadcast would reach only this replica's sockets).
async fn announce(
    chat: &Chat,
    user: &str,
    online: bool,
    at: chrono::DateTime<chrono::Utc>,
    group_ids: Vec<String>,
) {
    let fact = Fact::Presence {
        user_id: user.to_string(),
        online,
        at,
        group_ids,
    };
    if let Err(e) = chat
        .events
        .publish(FACTS, &Envelope::new("chat", user, fact))
        .await
    {
        tracing::warn!(error = %e, "could not announce presence");
    }
}

async fn on_disconnect(socket: SocketRef, State(chat): State<Chat>) {
    // Closes the send queue: its task answers what is queued, then ends (and lets go of the
    // socket).
    socket.extensions.remove::<Sends>();
    let Some(SocketUser(user)) = socket.extensions.get::<SocketUser>() else {
        return;
    };
    if socket.extensions.get::<Counted>().is_none() {
        return;
    }
    if !matches!(chat.presence.disconnected(&user).await, Ok(c) if c <= 0) {
        return;
    }
    // Millisecond precision, as stored: what co-members hear equals what `GET /users` says.
    let at = chat_domain::values::now_millis();
    announce(&chat, &user, false, at, group_ids(&chat, &user).await).await;
    let request = LastSeen { user_id: user, at };
    if let Err(e) = chat
        .rpc
        .call::<UserLastSeen>(&request, &CallContext::internal())
        .await
    {
        tracing::warn!(error = %e, "could not record last seen");
    }
}

async fn on_heartbeat(socket: SocketRef, ack: AckSender, State(chat): State<Chat>) {
    let result = async {
        if !chat.allow(&socket) {
            return Err(Error::rate_limited(1));
        }
        let Some(SocketUser(user)) = socket.extensions.get::<SocketUser>() else {
            return Err(MessageError::NotAuthenticated.into());
        };
        if !chat.presence.refresh(&user, PRESENCE_TTL).await? {
            // The count expired (no heartbeat for too long): count this socket again.
            let count = chat.presence.connected(&user, PRESENCE_TTL).await?;
            socket.extensions.insert(Counted(count));
            if count == 1 {
                came_online(&chat, &socket, &user).await;
            }
        }
        Ok(json!({"online": true, "ttlSeconds": PRESENCE_TTL.as_secs()}))
    }
    .await;
    answer(ack, result);
}

/// `user.presence`: who among the user's co-members is online now, and when each was last seen.
async fn on_presence(socket: SocketRef, ack: AckSender, State(chat): State<Chat>) {
    let result = async {
        if !chat.allow(&socket) {
            return Err(Error::rate_limited(1));
        }
        let Some(SocketUser(user)) = socket.extensions.get::<SocketUser>() else {
            return Err(MessageError::NotAuthenticated.into());
        };
        Ok(json!({ "users": presence_of(&chat, &user).await? }))
    }
    .await;
    answer(ack, result);
}

/// Every co-member of `user` (members of any of their groups), ordered by id, with whether they
/// have a socket now (on any replica) and when they were last online.
async fn presence_of(chat: &Chat, user: &str) -> Result<Vec<Value>, Error> {
    let caller = CallerRef {
        caller: user.to_string(),
    };
    let groups = chat
        .rpc
        .call::<GroupList>(&caller, &CallContext::internal())
        .await?;
    presence_among(chat, user, &groups).await
}

/// [`presence_of`] with `user`'s groups already known.
async fn presence_among(
    chat: &Chat,
    user: &str,
    groups: &[GroupView],
) -> Result<Vec<Value>, Error> {
    let mut ids: Vec<String> = groups
        .iter()
        .flat_map(|g| g.members.iter().map(|m| m.user_id.clone()))
        .filter(|id| id != user)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let online = chat.presence.online(&ids).await?;
    let request = UsersRef {
        user_ids: ids.clone(),
    };
    let seen: HashMap<String, Option<chrono::DateTime<chrono::Utc>>> = chat
        .rpc
        .call::<UsersLastSeen>(&request, &CallContext::internal())
        .await?
        .into_iter()
        .map(|v| (v.user_id, v.last_seen_at))
        .collect();
    Ok(ids
        .into_iter()
        .zip(online)
        .map(|(id, is_online)| {
            let last_seen_at = seen.get(&id).cloned().flatten();
            json!({"userId": id, "isOnline": is_online, "lastSeenAt": last_seen_at})
        })
        .collect())
}

/// The chat role's background work: delivers every fact on the log to this replica's sockets
/// until `shutdown` (it outlives SIGTERM until the drain is over: it answers in-flight sends).
/// `attached` is open while the tail follows the log: a replica that cannot deliver what its
/// sockets' groups say is not ready. Each time the tail subscribes again after its first time
/// (the Redis relay, after a lost connection), the sockets are resynchronised ([`resync`]).
pub async fn follow_facts(
    chat: Chat,
    io: SocketIo,
    log: EventLog,
    shutdown: CancellationToken,
    attached: Gate,
) {
    let resyncs = resync::on_each_new_subscription(chat.clone(), io.clone(), attached.clone());
    let on_fact = move |envelope| {
        let (chat, io) = (chat.clone(), io.clone());
        async move { chat.on_fact(&io, envelope).await }
    };
    let tail = log.tail(FACTS, shutdown, attached.clone(), on_fact);
    tokio::select! {
        stopped = tail => if let Err(e) = stopped {
            tracing::error!(error = %e, "the facts tail stopped");
        },
        () = resyncs => {}
    }
    attached.close();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fact(group_id: &str, fact: Fact) -> Envelope<Fact> {
        Envelope::new("test", group_id, fact)
    }

    fn emitted(steps: &[Step]) -> Vec<(&[String], Option<&str>, &str)> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Emit {
                    to, except, event, ..
                } => Some((to.as_slice(), except.as_deref(), *event)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_stored_message_answers_its_send_and_reaches_the_group_room() {
        let message = MessageView {
            id: "m1".into(),
            group_id: "g1".into(),
            seq: 7,
            sender_id: "ada".into(),
            client_message_id: "c1".into(),
            content: Some("hi".into()),
            attachment: None,
            deleted: false,
            created_at: chrono::Utc::now(),
            edited_at: None,
        };
        let created = |command_id: Option<&str>| Fact::MessageCreated {
            command_id: command_id.map(String::from),
            message: message.clone(),
        };
        let routing = route(fact("g1", created(Some("cmd"))));
        let (id, answer) = routing.answer.unwrap();
        assert_eq!(id, "cmd");
        assert_eq!(answer.unwrap()["message"]["seq"], 7);
        assert_eq!(
            emitted(&routing.steps),
            vec![(&["g:g1".to_string()][..], None, "chat.message.incoming")]
        );
        // Sent from another replica: nothing to answer here, the room still hears it.
        let elsewhere = route(fact("g1", created(None)));
        assert!(elsewhere.answer.is_none());
        assert_eq!(elsewhere.steps.len(), 1);
    }

    #[test]
    fn typing_reaches_the_room_but_not_the_typist() {
        let routing = route(fact(
            "g1",
            Fact::Typing {
                user_id: "ada".into(),
                typing: true,
            },
        ));
        assert!(routing.answer.is_none());
        let ada = user_room("ada");
        assert_eq!(
            emitted(&routing.steps),
            vec![(&["g:g1".to_string()][..], Some(ada.as_str()), "chat.typing")]
        );
    }

    #[test]
    fn a_delivered_receipt_answers_with_the_stored_position_and_skips_the_users_devices() {
        let routing = route(fact(
            "g1",
            Fact::MessageDelivered {
                command_id: Some("c1".into()),
                user_id: "bob".into(),
                seq: 7,
                delivered_at: chrono::Utc::now(),
            },
        ));
        let (id, answer) = routing.answer.unwrap();
        assert_eq!((id.as_str(), answer.unwrap()), ("c1", json!({"seq": 7})));
        let bob = user_room("bob");
        assert_eq!(
            emitted(&routing.steps),
            vec![(
                &["g:g1".to_string()][..],
                Some(bob.as_str()),
                "chat.message.delivered"
            )]
        );
    }

    #[test]
    fn a_rejection_answers_with_its_error_and_emits_nothing() {
        let routing = route(fact(
            "g1",
            Fact::CommandRejected {
                command_id: "cmd".into(),
                user_id: "eve".into(),
                error: MessageError::NotMember.into(),
            },
        ));
        let (id, answer) = routing.answer.unwrap();
        assert_eq!(id, "cmd");
        assert_eq!(answer.unwrap_err().reason(), "not_member");
        assert!(routing.steps.is_empty());
    }

    #[test]
    fn presence_reaches_every_shared_group_but_not_the_users_own_sockets() {
        let routing = route(fact(
            "ada",
            Fact::Presence {
                user_id: "ada".into(),
                online: false,
                at: chrono::Utc::now(),
                group_ids: vec!["g1".into(), "g2".into()],
            },
        ));
        assert_eq!(
            emitted(&routing.steps),
            vec![(
                &["g:g1".to_string(), "g:g2".to_string()][..],
                Some("u:ada"),
                "user.offline"
            )]
        );
    }

    #[test]
    fn a_removed_member_hears_it_once_then_leaves_the_room() {
        let routing = route(fact(
            "g1",
            Fact::MemberRemoved {
                user_id: "bob".into(),
            },
        ));
        assert!(routing.answer.is_none());
        let order: Vec<String> = routing
            .steps
            .iter()
            .map(|s| match s {
                Step::Emit { to, event, .. } => format!("{event} to {}", to.join(",")),
                Step::Leave { user, room } => format!("{user} leaves {room}"),
                Step::Join { user, room } => format!("{user} joins {room}"),
            })
            .collect();
        assert_eq!(
            order,
            [
                "group.member.removed to u:bob",
                "bob leaves g:g1",
                "group.member.removed to g:g1"
            ]
        );
    }

    #[test]
    fn a_wait_that_ends_any_way_leaves_nothing_pending() {
        let pending: Pending = Arc::default();
        let (tx, rx) = oneshot::channel();
        let waiting = Waiting::insert(&pending, 10, "c1".into(), tx).unwrap();
        assert_eq!(pending.lock().unwrap().len(), 1);
        // The socket went away: the future holding the wait is dropped before any answer.
        drop(waiting);
        assert!(pending.lock().unwrap().is_empty());
        drop(rx);
    }

    #[test]
    fn a_message_is_announced_once_per_group_whatever_comes_again() {
        let mut announced = Announced::default();
        assert!(announced.advance("g1", 1));
        assert!(announced.advance("g1", 2));
        assert!(announced.advance("g2", 1));
        // The message role carried seq 2 out again after a crash.
        assert!(!announced.advance("g1", 2));
        assert!(!announced.advance("g1", 1));
        assert!(announced.advance("g1", 3));
    }

    #[test]
    fn a_replica_waiting_for_its_limit_refuses_the_next_command_at_once() {
        let pending: Pending = Arc::default();
        let (tx, _rx1) = oneshot::channel();
        let first = Waiting::insert(&pending, 1, "c1".into(), tx).unwrap();
        let (tx, _rx2) = oneshot::channel();
        let refused = Waiting::insert(&pending, 1, "c2".into(), tx).err().unwrap();
        assert_eq!(refused.reason(), "overloaded");
        assert_eq!(refused.retry_after_secs, Some(1));
        // Once the first is answered there is room again.
        drop(first);
        let (tx, _rx3) = oneshot::channel();
        assert!(Waiting::insert(&pending, 1, "c3".into(), tx).is_ok());
    }
}
