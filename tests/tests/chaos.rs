//! Fault injection under load (issue 16.1): every role as a process of its own (two chat
//! replicas) on the real servers, senders streaming messages into many groups with receivers on
//! both replicas, and one fault per test: a process killed with SIGKILL and started again, or a
//! dependency hung with SIGSTOP past the clients' timeout. Each test asserts what users rely on:
//!
//! - every acknowledged message is stored exactly once, and each group's `seq` has no gap;
//! - every receiver ends with every message of its groups, in order (live, or replayed with
//!   `lastSeq` when it reconnects, as a client does);
//! - every send is answered (the longest wait is reported, not asserted), unless the replica
//!   holding its socket died (then the client reconnects and resends, same `clientMessageId`);
//! - the system recovers by itself: nothing but the faulty process is restarted.
//!
//! Each test prints one `chaos:` line (the fault, messages, sends refused during the outage, the
//! longest wait for an answer, the time from healing to the next stored message, messages
//! replayed). `scripts/chaos.sh` runs them with 10,000 messages and prints the table; CI runs
//! them with fewer (`CHAOS_MESSAGES`). They restart shared servers, so they run one at a time,
//! in the same pass as the broker-restart tests.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chat_tests::*;
use serde_json::{json, Value};

/// How long the chat role waits for the message role before answering `send_timed_out`.
const ACK_TIMEOUT_SECONDS: u64 = 3;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What goes wrong.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// SIGKILL a role process, then start a new one.
    KillRole(&'static str),
    /// SIGKILL one of the two chat replicas, then start a new one.
    KillChatReplica,
    /// SIGKILL a server of the infrastructure; it is started again (by its supervisor or by
    /// `scripts/infra.sh up`).
    KillServer(Server),
    /// SIGSTOP a server for longer than the clients' timeout, then SIGCONT.
    HangServer(Server),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Server {
    Redis,
    RabbitMq,
    MongoDb,
    Kafka,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Redis => "redis",
            Server::RabbitMq => "rabbitmq",
            Server::MongoDb => "mongodb",
            Server::Kafka => "kafka",
        }
    }

    /// The server's process id, found by its command line.
    fn pid(self) -> u32 {
        let pattern = match self {
            Server::Redis => "redis-server 127.0.0.1",
            Server::RabbitMq => "beam.smp.*rabbit",
            Server::MongoDb => "^[^ ]*python[0-9.]* -m secantus",
            Server::Kafka => "^[^ ]*tansu broker",
        };
        let out = std::process::Command::new("pgrep")
            .args(["-o", "-f", pattern])
            .output()
            .expect("pgrep runs");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no {} process ({pattern})", self.name()))
    }

    fn signal(self, name: &str) {
        let pid = self.pid();
        let sent = std::process::Command::new("kill")
            .args([format!("-{name}"), pid.to_string()])
            .status();
        assert!(
            sent.is_ok_and(|s| s.success()),
            "kill -{name} {}",
            self.name()
        );
    }

    /// Starts the server again: MongoDB and Kafka run under `scripts/infra.sh`'s supervisor,
    /// which restarts them; Redis and RabbitMQ are started by `scripts/infra.sh up` (which
    /// waits until they answer).
    fn ensure_up(self) {
        if matches!(self, Server::MongoDb | Server::Kafka) {
            let address = if self == Server::MongoDb {
                mongodb_server_uri().replace("mongodb://", "")
            } else {
                std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
            };
            // A bounded number of tries, 200 ms apart (about two minutes): a hang guard.
            for _ in 0..600 {
                if std::net::TcpStream::connect(address.as_str()).is_ok() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            panic!("{} did not come back", self.name());
        }
        let script = package_dir().join("../scripts/infra.sh");
        let status = std::process::Command::new(script)
            .args(["up", self.name()])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("infra.sh runs");
        assert!(status.success(), "infra.sh up {}", self.name());
    }
}

impl Fault {
    fn name(self) -> String {
        match self {
            Fault::KillRole(role) => format!("SIGKILL {role}"),
            Fault::KillChatReplica => "SIGKILL a chat replica".into(),
            Fault::KillServer(s) => format!("SIGKILL {}", s.name()),
            Fault::HangServer(s) => format!("SIGSTOP {} {:.1} s", s.name(), s.hang().as_secs_f64()),
        }
    }
}

impl Server {
    /// How long the server stays stopped when hung: past every client timeout. The Kafka
    /// stand-in for less than a consumer's session (6 s): Tansu 0.6 keeps a member whose
    /// session expired as its group's leader, so a consumer that rejoins never gets its
    /// partitions back (SyncGroup answers "unknown member" forever), which Apache Kafka, expiring
    /// the member, does not do.
    fn hang(self) -> Duration {
        match self {
            Server::Kafka => Duration::from_millis(4500),
            _ => Duration::from_secs(ACK_TIMEOUT_SECONDS * 2),
        }
    }
}

/// Every role as a process of its own; restarted processes get new ports.
struct ChaosStack {
    deployment: Deployment,
    roles: HashMap<&'static str, RoleProcess>,
    chat: [RoleProcess; 2],
    /// The chat replicas' current ports, for clients that reconnect.
    chat_ports: Arc<RwLock<[u16; 2]>>,
}

impl ChaosStack {
    /// The stack, with `settings` added to every process's environment.
    async fn start(settings: &[(&str, &str)]) -> Self {
        let timeout = ACK_TIMEOUT_SECONDS.to_string();
        let mut env = vec![
            ("CHAT_ACK_TIMEOUT_SECONDS", timeout.as_str()),
            ("CHAT_EVENTS_PER_SECOND", "1000"),
            ("API_MAX_REQUESTS_PER_USER", "0"),
            ("API_MAX_REQUESTS_PER_ADDRESS", "0"),
        ];
        env.extend_from_slice(settings);
        let deployment = Deployment::new(&env);
        let mut roles = HashMap::new();
        for role in ["auth", "group", "message", "gateway"] {
            roles.insert(role, deployment.spawn(role).await);
        }
        let chat = [
            deployment.spawn("chat").await,
            deployment.spawn("chat").await,
        ];
        let chat_ports = Arc::new(RwLock::new([chat[0].port, chat[1].port]));
        ChaosStack {
            deployment,
            roles,
            chat,
            chat_ports,
        }
    }

    fn api(&self) -> Api {
        Api::new(self.roles["gateway"].port)
    }

    /// Applies `fault` and heals it; returns when the healing is done.
    async fn inject(&mut self, fault: Fault) {
        match fault {
            Fault::KillRole(role) => {
                self.roles.get_mut(role).expect("a role").kill();
                tokio::time::sleep(Duration::from_secs(1)).await;
                let process = self.deployment.spawn(role).await;
                self.roles.insert(role, process);
            }
            Fault::KillChatReplica => {
                self.chat[1].kill();
                tokio::time::sleep(Duration::from_secs(1)).await;
                self.chat[1] = self.deployment.spawn("chat").await;
                self.chat_ports.write().unwrap()[1] = self.chat[1].port;
            }
            Fault::KillServer(server) => {
                server.signal("KILL");
                tokio::time::sleep(Duration::from_secs(1)).await;
                tokio::task::spawn_blocking(move || server.ensure_up())
                    .await
                    .unwrap();
            }
            Fault::HangServer(server) => {
                server.signal("STOP");
                tokio::time::sleep(server.hang()).await;
                server.signal("CONT");
            }
        }
    }
}

/// What one user saw and did.
#[derive(Default)]
struct Outcome {
    /// clientMessageId → (group, message id) of every acknowledged send.
    acknowledged: Vec<(String, String, String)>,
    /// Per group, the seqs received, in the order received.
    received: BTreeMap<String, Vec<i64>>,
    refused: usize,
    unanswered: usize,
    /// Messages replayed to this user's reconnected sockets.
    replayed: usize,
    longest_answer: Duration,
}

/// Shared counters of the run.
#[derive(Default)]
struct Progress {
    stored: AtomicUsize,
    during_fault: AtomicBool,
    refused_during_fault: AtomicUsize,
}

struct User {
    user: chat_tests::User,
    groups: Vec<String>,
    replica: usize,
}

fn last_seq(received: &BTreeMap<String, Vec<i64>>) -> Value {
    // The highest seq below which nothing is missing: what a careful client resumes from.
    let mut out = serde_json::Map::new();
    for (group, seqs) in received {
        let mut sorted = seqs.clone();
        sorted.sort_unstable();
        let mut contiguous = 0;
        for s in sorted {
            if s == contiguous + 1 {
                contiguous = s;
            }
        }
        out.insert(group.clone(), json!(contiguous));
    }
    Value::Object(out)
}

/// Connects to the preferred replica, or the other, until one takes the socket.
async fn connect(
    ports: &RwLock<[u16; 2]>,
    preferred: usize,
    token: &str,
    received: &BTreeMap<String, Vec<i64>>,
) -> ChatClient {
    within(
        Duration::from_secs(120),
        "a chat replica taking the socket",
        async {
            let mut attempt = preferred;
            loop {
                let port = ports.read().unwrap()[attempt % 2];
                let auth = json!({"token": token, "lastSeq": last_seq(received)});
                if let Ok(client) =
                    ChatClient::try_connect_url(&format!("http://127.0.0.1:{port}"), auth).await
                {
                    return client;
                }
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        },
    )
    .await
}

fn record(received: &mut BTreeMap<String, Vec<i64>>, events: Vec<(String, Value)>) {
    for (name, value) in events {
        if name == "chat.message.incoming" {
            let group = value["groupId"].as_str().unwrap_or_default().to_string();
            received
                .entry(group)
                .or_default()
                .push(value["seq"].as_i64().unwrap_or_default());
        }
    }
}

/// One user: sends `count` messages round-robin over its groups, one at a time, resending
/// what is refused or unanswered (same `clientMessageId`), and records what it receives.
async fn run_user(
    me: Arc<User>,
    index: usize,
    count: usize,
    interval: Duration,
    ports: Arc<RwLock<[u16; 2]>>,
    progress: Arc<Progress>,
    ready: Arc<tokio::sync::Barrier>,
) -> (Outcome, Option<ChatClient>) {
    let mut outcome = Outcome::default();
    // A client resumes every group it knows, from 0 when it has nothing of it yet.
    for group in &me.groups {
        outcome.received.insert(group.clone(), Vec::new());
    }
    let mut socket = Some(connect(&ports, me.replica, &me.user.token, &outcome.received).await);
    let mut reconnected_at = None;
    // Everyone is connected before anyone sends: a message sent before a member connected is
    // not one it missed.
    ready.wait().await;
    let start = Instant::now();
    for n in 0..count {
        // An open schedule: the next message is due at its time, however the last one went.
        tokio::time::sleep_until((start + interval * n as u32).into()).await;
        let group = &me.groups[n % me.groups.len()];
        let client_id = format!("u{index}-m{n}");
        loop {
            let current = match socket.as_mut() {
                Some(s) => s,
                None => {
                    reconnected_at = Some(chrono::Utc::now());
                    let fresh =
                        connect(&ports, me.replica + 1, &me.user.token, &outcome.received).await;
                    socket.insert(fresh)
                }
            };
            let asked = Instant::now();
            let ack = current
                .try_request(
                    "chat.message.send",
                    json!({"groupId": group, "content": client_id, "clientMessageId": client_id}),
                )
                .await;
            let waited = asked.elapsed();
            let events = current.drain();
            // Messages stored before this socket reconnected came by replay.
            if let Some(at) = reconnected_at {
                outcome.replayed += events
                    .iter()
                    .filter(|(name, m)| {
                        name == "chat.message.incoming"
                            && m["createdAt"]
                                .as_str()
                                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                                .is_some_and(|t| t < at)
                    })
                    .count();
            }
            record(&mut outcome.received, events);
            match ack {
                Some(ack) if ack["ok"] == true => {
                    outcome.longest_answer = outcome.longest_answer.max(waited);
                    let id = ack["message"]["id"].as_str().unwrap().to_string();
                    outcome
                        .acknowledged
                        .push((client_id.clone(), group.clone(), id));
                    progress.stored.fetch_add(1, Ordering::SeqCst);
                    break;
                }
                Some(ack) => {
                    outcome.longest_answer = outcome.longest_answer.max(waited);
                    let reason = ack["error"]["reason"].as_str().unwrap_or_default();
                    assert!(
                        [
                            "send_timed_out",
                            "timeout",
                            "unavailable",
                            "overloaded",
                            "restarting",
                            "rate_limited"
                        ]
                        .contains(&reason),
                        "{client_id}: a send refused for a reason a retry cannot fix: {ack}"
                    );
                    outcome.refused += 1;
                    if progress.during_fault.load(Ordering::SeqCst) {
                        progress.refused_during_fault.fetch_add(1, Ordering::SeqCst);
                    }
                    if reason == "restarting" {
                        socket = None;
                    }
                    let pause = ack["error"]["retryAfter"].as_u64().unwrap_or(0);
                    tokio::time::sleep(Duration::from_millis(200 + pause * 1000)).await;
                }
                None => {
                    // No answer: the replica holding the socket went away (or the socket did).
                    outcome.unanswered += 1;
                    socket = None;
                }
            }
        }
    }
    (outcome, socket)
}

/// Reconnects `user` with `lastSeq` and gathers what it missed (replayed, or read from the
/// history after `chat.resync`) until it has every stored message of its groups; the number
/// of messages it had to catch up on.
async fn catch_up(
    stack: &ChaosStack,
    user: &User,
    received: &mut BTreeMap<String, Vec<i64>>,
    stored: &HashMap<String, Vec<Value>>,
) -> usize {
    let complete = |received: &BTreeMap<String, Vec<i64>>| {
        user.groups.iter().all(|g| {
            let have = received.get(g).map(Vec::len).unwrap_or(0);
            have >= stored[g].len()
        })
    };
    if complete(received) {
        return 0;
    }
    let distinct = |received: &BTreeMap<String, Vec<i64>>| -> usize {
        received
            .values()
            .map(|seqs| seqs.iter().collect::<std::collections::HashSet<_>>().len())
            .sum()
    };
    let before = distinct(received);
    let mut socket = connect(&stack.chat_ports, user.replica, &user.user.token, received).await;
    let api = stack.api();
    within(Duration::from_secs(60), "a receiver catching up", async {
        while !complete(received) {
            for (name, value) in socket.collect_all(Duration::from_millis(300)).await {
                if name == "chat.resync" {
                    let group = value["groupId"].as_str().unwrap().to_string();
                    let from = value["fromSeq"].as_i64().unwrap();
                    let seqs = received.entry(group.clone()).or_default();
                    for m in api.all_messages(&group, &user.user).await {
                        let seq = m["seq"].as_i64().unwrap();
                        if seq >= from && !seqs.contains(&seq) {
                            seqs.push(seq);
                        }
                    }
                } else {
                    record(received, vec![(name, value)]);
                }
            }
        }
    })
    .await;
    socket.disconnect().await;
    distinct(received) - before
}

/// How soon after healing a fresh client's send is stored (the recovery probe).
async fn recovery(stack: &ChaosStack, probe: &User, probe_group: &str, fault: usize) -> Duration {
    let healed = Instant::now();
    within(
        Duration::from_secs(120),
        "a send stored after healing",
        async {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let none = BTreeMap::new();
                let socket = connect(&stack.chat_ports, 0, &probe.user.token, &none).await;
                let id = format!("probe-{fault}-{attempt}");
                if let Some(ack) = socket
                    .try_request(
                        "chat.message.send",
                        json!({"groupId": probe_group, "content": id, "clientMessageId": id}),
                    )
                    .await
                {
                    if ack["ok"] == true {
                        socket.disconnect().await;
                        return healed.elapsed();
                    }
                }
                socket.disconnect().await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        },
    )
    .await
}

async fn run(faults: &[Fault]) {
    run_with(&[], faults).await
}

/// The facts relayed over Redis pub/sub instead of the Kafka topic.
const RELAY: &[(&str, &str)] = &[("FACTS_RELAY", "redis")];

/// [`run`] on a stack with `settings` in its environment.
async fn run_with(settings: &[(&str, &str)], faults: &[Fault]) {
    if skip_in_embedded_mode("the fault suite runs the roles as processes on the real servers") {
        return;
    }
    let on = if settings == RELAY {
        " (facts over the Redis relay)"
    } else {
        ""
    };
    let label = match faults {
        [fault] => format!("{}{on}", fault.name()),
        _ => format!("every fault in turn{on}"),
    };
    let messages = setting("CHAOS_MESSAGES", 400);
    let senders = setting("CHAOS_SENDERS", 20);
    let group_count = setting("CHAOS_GROUPS", 50);
    let mut stack = ChaosStack::start(settings).await;
    let api = stack.api();

    // Users in groups of four: group g has users g, g+1, g+2, g+3 (mod the number of users), so
    // every user is in several groups and every group has members on both replicas.
    let names: Vec<String> = (0..senders).map(|i| format!("user{i}")).collect();
    let mut accounts = Vec::new();
    for name in &names {
        accounts.push(api.user(name).await);
    }
    let mut memberships: Vec<Vec<String>> = vec![Vec::new(); senders];
    for g in 0..group_count {
        let members: Vec<usize> = (0..4).map(|k| (g + k) % senders).collect();
        let others: Vec<&chat_tests::User> = members[1..].iter().map(|&m| &accounts[m]).collect();
        let id = api
            .group(&accounts[members[0]], &format!("g{g}"), &others)
            .await;
        for m in members {
            memberships[m].push(id.clone());
        }
    }
    let users: Vec<Arc<User>> = accounts
        .into_iter()
        .zip(memberships)
        .enumerate()
        .map(|(i, (user, groups))| {
            Arc::new(User {
                user,
                groups,
                replica: i % 2,
            })
        })
        .collect();

    // A group of the first user alone, for the recovery probe (kept out of the load's checks).
    let probe_group = api.group(&users[0].user, "probe", &[]).await;
    let per_user = messages.div_ceil(senders);
    let rate = setting("CHAOS_RATE", 50).max(1);
    let interval = Duration::from_secs_f64(senders as f64 / rate as f64);
    let progress = Arc::new(Progress::default());
    let ready = Arc::new(tokio::sync::Barrier::new(users.len()));
    let workers: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(i, u)| {
            tokio::spawn(run_user(
                u.clone(),
                i,
                per_user,
                interval,
                stack.chat_ports.clone(),
                progress.clone(),
                ready.clone(),
            ))
        })
        .collect();

    // Each fault strikes in turn once enough messages are stored (a lone fault a third of the
    // way through), and is healed; then a fresh client's send must be stored again.
    let total = per_user * senders;
    let mut struck_faults = Vec::new();
    for (k, &fault) in faults.iter().enumerate() {
        let mark = total * (k + 1) / (faults.len() + 2);
        within(
            Duration::from_secs(600),
            "messages before the fault",
            async {
                while progress.stored.load(Ordering::SeqCst) < mark {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        )
        .await;
        assert!(
            progress.stored.load(Ordering::SeqCst) < total,
            "{} would strike after the load ended: raise CHAOS_MESSAGES",
            fault.name()
        );
        progress.during_fault.store(true, Ordering::SeqCst);
        let struck = Instant::now();
        stack.inject(fault).await;
        progress.during_fault.store(false, Ordering::SeqCst);
        let outage = struck.elapsed();
        let recovered = recovery(&stack, &users[0], &probe_group, k).await;
        let refused = progress.refused_during_fault.swap(0, Ordering::SeqCst);
        struck_faults.push((fault, outage, refused, recovered));
    }

    // Everyone stays connected until every sender is done, and a moment longer for what is
    // still on its way: what a receiver then lacks, it missed.
    let mut finished = Vec::new();
    for worker in workers {
        finished.push(
            within(Duration::from_secs(900), "every sender finishing", worker)
                .await
                .unwrap(),
        );
    }

    // Stored: exactly what was acknowledged, once, gap-free, per group.
    let api = stack.api();
    let mut stored: HashMap<String, Vec<Value>> = HashMap::new();
    let mut all_groups: Vec<String> = users.iter().flat_map(|u| u.groups.clone()).collect();
    all_groups.sort();
    all_groups.dedup();
    for group in &all_groups {
        let member = users.iter().find(|u| u.groups.contains(group)).unwrap();
        let messages = api.all_messages(group, &member.user).await;
        let seqs: Vec<i64> = messages
            .iter()
            .map(|m| m["seq"].as_i64().unwrap())
            .collect();
        assert_eq!(
            seqs,
            (1..=messages.len() as i64).collect::<Vec<_>>(),
            "{}: group {group} has a gap or a duplicate seq",
            label
        );
        stored.insert(group.clone(), messages);
    }
    // What is still on its way arrives: until every receiver has everything, or nothing has
    // come for 5 s. What a receiver then lacks, it missed live.
    let complete = |user: &User, outcome: &Outcome| {
        user.groups
            .iter()
            .all(|g| outcome.received.get(g).map(Vec::len).unwrap_or(0) >= stored[g].len())
    };
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_secs(5) {
        let mut all_complete = true;
        for (user, (outcome, socket)) in users.iter().zip(finished.iter_mut()) {
            if let Some(socket) = socket {
                let events = socket.drain();
                if !events.is_empty() {
                    quiet_since = Instant::now();
                }
                record(&mut outcome.received, events);
            }
            all_complete &= complete(user, outcome);
        }
        if all_complete {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut outcomes = Vec::new();
    for (outcome, socket) in finished {
        if let Some(socket) = socket {
            socket.disconnect().await;
        }
        outcomes.push(outcome);
    }
    let everything: Vec<Value> = stored.values().flatten().cloned().collect();
    let acknowledged: Vec<String> = outcomes
        .iter()
        .flat_map(|o| o.acknowledged.iter().map(|(_, _, id)| id.clone()))
        .collect();
    assert_eq!(
        acknowledged.len(),
        per_user * senders,
        "every send acknowledged in the end"
    );
    assert_stored_once(&acknowledged, &everything);
    assert_eq!(
        everything.len(),
        acknowledged.len(),
        "{}: stored messages nobody was told about",
        label
    );

    // Received: every receiver ends with every message of its groups, in order.
    let mut replayed: usize = outcomes.iter().map(|o| o.replayed).sum();
    let (mut out_of_order, mut duplicates) = (0, 0);
    for (user, outcome) in users.iter().zip(outcomes.iter_mut()) {
        for seqs in outcome.received.values() {
            let mut highest = 0;
            let mut seen = std::collections::HashSet::new();
            for &seq in seqs {
                if !seen.insert(seq) {
                    duplicates += 1;
                } else if seq < highest {
                    out_of_order += 1;
                }
                highest = highest.max(seq);
            }
        }
        replayed += catch_up(&stack, user, &mut outcome.received, &stored).await;
        for group in &user.groups {
            let mut seqs = outcome.received.get(group).cloned().unwrap_or_default();
            seqs.sort_unstable();
            seqs.dedup();
            assert_eq!(
                seqs,
                (1..=stored[group].len() as i64).collect::<Vec<_>>(),
                "{}: {} misses messages of {group}",
                label,
                user.user.id
            );
        }
    }
    assert_eq!(
        (out_of_order, duplicates),
        (0, 0),
        "{}: messages received out of order, or twice",
        label
    );

    let refused: usize = outcomes.iter().map(|o| o.refused).sum();
    let unanswered: usize = outcomes.iter().map(|o| o.unanswered).sum();
    let longest = outcomes
        .iter()
        .map(|o| o.longest_answer)
        .max()
        .unwrap_or_default();
    // Every send is answered (the client gives up after 15 s, five times the server's timeout:
    // a hang guard, not a timing check; the longest wait is reported, not asserted). A send left
    // unanswered is only allowed when the replica holding its socket died.
    if !faults.iter().any(|f| matches!(f, Fault::KillChatReplica)) {
        assert_eq!(unanswered, 0, "{}: sends left without an answer", label);
    }
    for (fault, outage, refused_during, recovered) in struck_faults {
        let name = match faults {
            [_] => format!("{}{on}", fault.name()),
            _ => format!("in turn: {}{on}", fault.name()),
        };
        println!(
            "chaos: {name} | {} messages | outage {:.1} s | {refused} refused ({refused_during} during the fault) | {unanswered} unanswered | longest answer {} ms | recovered {} ms after healing | {replayed} replayed",
            acknowledged.len(),
            outage.as_secs_f64(),
            longest.as_millis(),
            recovered.as_millis(),
        );
    }
}

/// One test per fault, each on a stack of its own.
macro_rules! faults {
    ($($name:ident => $fault:expr),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                run(&[$fault]).await;
            }
        )*
    };
}

faults! {
    chaos_kill_message_role => Fault::KillRole("message"),
    chaos_kill_group_role => Fault::KillRole("group"),
    chaos_kill_auth_role => Fault::KillRole("auth"),
    chaos_kill_gateway => Fault::KillRole("gateway"),
    chaos_kill_a_chat_replica => Fault::KillChatReplica,
    chaos_kill_redis => Fault::KillServer(Server::Redis),
    chaos_kill_rabbitmq => Fault::KillServer(Server::RabbitMq),
    chaos_kill_mongodb => Fault::KillServer(Server::MongoDb),
    chaos_hang_mongodb => Fault::HangServer(Server::MongoDb),
    chaos_hang_kafka => Fault::HangServer(Server::Kafka),
}

/// Redis killed, then hung, with the facts relayed over it (`FACTS_RELAY=redis`): Redis is then
/// on the send path (a fact not published fails its command, which is retried), and every
/// follower's subscription drops or goes silent with it, so the chat replicas subscribe again
/// and resynchronise their sockets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_kill_redis_on_the_relay() {
    run_with(RELAY, &[Fault::KillServer(Server::Redis)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_hang_redis_on_the_relay() {
    run_with(RELAY, &[Fault::HangServer(Server::Redis)]).await;
}

/// The full form (`scripts/chaos.sh`): one stream of messages (10,000 there) through which every
/// fault strikes in turn, each healed before the next. Not in CI, which runs the faults one per
/// test with fewer messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the full fault run: scripts/chaos.sh"]
async fn chaos_every_fault_in_turn() {
    run(&[
        Fault::KillRole("message"),
        Fault::KillServer(Server::Redis),
        Fault::KillRole("group"),
        Fault::KillServer(Server::RabbitMq),
        Fault::KillRole("auth"),
        Fault::KillServer(Server::MongoDb),
        Fault::KillRole("gateway"),
        Fault::HangServer(Server::MongoDb),
        Fault::KillChatReplica,
        Fault::HangServer(Server::Kafka),
    ])
    .await;
}
