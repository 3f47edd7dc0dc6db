//! `fanout`: the real-time load driver of `scripts/bench-realtime.sh` (`BENCH_DRIVER=rust`), for
//! the same job as `../shared/bench/fanout.mjs` and with its flags and its JSON line: G groups of M
//! members, one websocket per member, an open-loop send rate spread over every socket, each
//! message delivered to the M members of its group (the sender included).
//!
//! It speaks Engine.IO 4 / Socket.IO 5 packets over a plain websocket, and runs on one thread,
//! as Node's driver does, so it takes at most one core from the two the targets share; it needs
//! far less of that core than Node's client, which lets the targets, not the driver, set the
//! highest rate. It is run against the Node reference too: ratios come from one driver.
//!
//!   fanout --target chat|ref --base URL --groups 20 --members 10 --rate 1000 --seconds 10
//!          [--warmup 3] [--cpu-pids PID,PID --clk-tck 100]
//!
//! `chat`: users are registered and groups created through the REST API first; `ref`
//! (reference-server.mjs): the handshake names the groups.
//!
//! `--cpu-pids`: the server's processes, whose CPU time (from `/proc`) is read when the warm-up
//! ends and when the last send is due, so the line also gives the server's cores and CPU per
//! send over the measured window alone (`window_cpu`), without the set-up's registrations. At a
//! rate the server cannot keep up with, its backlog is handled partly after the window, so the
//! CPU per send is then understated.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// The chat role's default events per second per socket: a higher rate needs more sockets.
const PER_SOCKET_LIMIT: f64 = 20.0;
/// An acknowledgement later than this counts as a timeout, as in fanout.mjs.
const ACK_TIMEOUT_MS: f64 = 10_000.0;

struct Args {
    target: String,
    base: String,
    groups: usize,
    members: usize,
    rate: f64,
    seconds: f64,
    warmup: f64,
    cpu_pids: Vec<u32>,
    clk_tck: f64,
}

fn args() -> Result<Args, String> {
    let argv: Vec<String> = std::env::args().collect();
    let get = |name: &str| {
        argv.iter()
            .position(|a| a == &format!("--{name}"))
            .and_then(|i| argv.get(i + 1).cloned())
    };
    let number = |name: &str, default: f64| match get(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite() && *n >= 0.0)
            .ok_or(format!("--{name} {v}: not a number")),
    };
    let target = get("target").unwrap_or_else(|| "chat".into());
    if target != "chat" && target != "ref" {
        return Err(format!("--target {target}: chat or ref"));
    }
    let default_base = if target == "chat" {
        "http://127.0.0.1:5000"
    } else {
        "http://127.0.0.1:5100"
    };
    Ok(Args {
        base: get("base").unwrap_or_else(|| default_base.into()),
        target,
        groups: number("groups", 20.0)? as usize,
        members: number("members", 10.0)?.max(1.0) as usize,
        rate: number("rate", 1000.0)?,
        seconds: number("seconds", 20.0)?.max(1.0),
        warmup: number("warmup", 3.0)?,
        cpu_pids: match get("cpu-pids") {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    p.parse()
                        .map_err(|_| format!("--cpu-pids {list}: not pids"))
                })
                .collect::<Result<_, _>>()?,
        },
        clk_tck: number("clk-tck", 100.0)?.max(1.0),
    })
}

/// One member's socket to open: its group and its handshake payload.
struct Member {
    group_id: String,
    auth: Value,
}

async fn post(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    body: Value,
    token: Option<&str>,
) -> Result<Value, String> {
    let mut request = http.post(format!("{base}{path}")).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.map_err(|e| format!("{path}: {e}"))?;
    let status = response.status();
    let json: Value = response.json().await.map_err(|e| format!("{path}: {e}"))?;
    if !status.is_success() {
        return Err(format!("{path}: {status} {json}"));
    }
    Ok(json)
}

async fn setup(args: &Args) -> Result<Vec<Member>, String> {
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let mut members = Vec::new();
    if args.target == "ref" {
        for g in 0..args.groups {
            let group_id = format!("g{g}-{tag}");
            for m in 0..args.members {
                let auth = json!({"token": format!("u{g}-{m}-{tag}"), "groups": [group_id]});
                members.push(Member {
                    group_id: group_id.clone(),
                    auth,
                });
            }
        }
        return Ok(members);
    }
    let http = reqwest::Client::new();
    let total = args.groups * args.members;
    let mut users = Vec::with_capacity(total);
    // Eight registrations at a time: each costs the server a password hash.
    for batch in (0..total).collect::<Vec<_>>().chunks(8) {
        let registrations = batch.iter().map(|j| {
            let body = json!({"firstName": "Load", "lastName": format!("U{j}"),
                "email": format!("load-{j}-{tag}@example.com"), "password": "load test password"});
            post(&http, &args.base, "/auth/register", body, None)
        });
        users.extend(futures_util::future::try_join_all(registrations).await?);
    }
    for group in users.chunks(args.members) {
        let ids: Vec<&Value> = group[1..].iter().map(|u| &u["user"]["id"]).collect();
        let body = json!({"name": format!("load {tag}"), "memberIds": ids});
        let owner = group[0]["accessToken"].as_str();
        let created = post(&http, &args.base, "/groups", body, owner).await?;
        let group_id = created["id"].as_str().ok_or("POST /groups: no id")?;
        for user in group {
            members.push(Member {
                group_id: group_id.to_string(),
                auth: json!({"token": user["accessToken"]}),
            });
        }
    }
    // The membership facts reach the chat role.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(members)
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a websocket and connects to the default namespace with `auth`.
async fn connect(base: &str, auth: &Value) -> Result<Ws, String> {
    let url = format!(
        "{}/socket.io/?EIO=4&transport=websocket",
        base.replacen("http", "ws", 1)
    );
    // Without TCP_NODELAY a small frame may wait for the previous one's ACK (Nagle), as long as
    // the peer delays its ACKs: tens of milliseconds added to the figures (Node's client sets it).
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url.as_str(), None, true)
        .await
        .map_err(|e| format!("websocket to {url}: {e}"))?;
    let mut connect_sent = false;
    while let Some(message) = ws.next().await {
        let Ok(Message::Text(packet)) = message else {
            continue;
        };
        if packet.starts_with('0') && !connect_sent {
            ws.send(Message::Text(format!("40{auth}")))
                .await
                .map_err(|e| e.to_string())?;
            connect_sent = true;
        } else if packet == "2" {
            let _ = ws.send(Message::Text("3".into())).await;
        } else if packet.starts_with("40") {
            return Ok(ws);
        } else if let Some(reason) = packet.strip_prefix("44") {
            return Err(format!("connect refused: {reason}"));
        }
    }
    Err("the websocket closed before the connect".into())
}

/// What one socket counted during the measured seconds.
#[derive(Default)]
struct Tally {
    acked: u64,
    failed: u64,
    errors: HashMap<String, u64>,
    ack_ms: Vec<f64>,
    delivered: u64,
    delivery_ms: Vec<f64>,
}

impl Tally {
    fn fail(&mut self, code: &str) {
        self.failed += 1;
        *self.errors.entry(code.to_string()).or_default() += 1;
    }

    fn merge(&mut self, other: Tally) {
        self.acked += other.acked;
        self.failed += other.failed;
        for (code, n) in other.errors {
            *self.errors.entry(code).or_default() += n;
        }
        self.ack_ms.extend(other.ack_ms);
        self.delivered += other.delivered;
        self.delivery_ms.extend(other.delivery_ms);
    }
}

/// A send to make: its time (ms since the run's start), and whether it is measured (warm-up
/// sends are not).
struct Send {
    at_ms: f64,
    counted: bool,
}

/// Drives one socket until `sends` closes: each send goes out with an acknowledgement id; acks
/// and deliveries are timed against the run's clock. `outstanding` counts measured sends not yet
/// answered (counted up where they are scheduled, down here).
async fn drive(
    mut ws: Ws,
    group_id: String,
    mut sends: mpsc::UnboundedReceiver<Send>,
    clock: Instant,
    outstanding: Arc<AtomicI64>,
) -> Tally {
    let now_ms = || clock.elapsed().as_secs_f64() * 1000.0;
    let mut tally = Tally::default();
    let mut pending: HashMap<u64, Send> = HashMap::new();
    let mut next_id = 0u64;
    loop {
        tokio::select! {
            send = sends.recv() => {
                let Some(send) = send else { break };
                let stamp = if send.counted { send.at_ms } else { -1.0 };
                let payload = json!(["chat.message.send", {"groupId": group_id,
                    "content": format!("{stamp:.3} load"),
                    "clientMessageId": uuid::Uuid::new_v4().to_string()}]);
                pending.insert(next_id, send);
                if ws.send(Message::Text(format!("42{next_id}{payload}"))).await.is_err() {
                    break;
                }
                next_id += 1;
            }
            message = ws.next() => {
                let Some(Ok(message)) = message else { break };
                let Message::Text(packet) = message else { continue };
                if packet == "2" {
                    let _ = ws.send(Message::Text("3".into())).await;
                } else if let Some(rest) = packet.strip_prefix("43") {
                    let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
                    let Some(send) = rest[..digits].parse().ok().and_then(|id| pending.remove(&id)) else {
                        continue;
                    };
                    if !send.counted {
                        continue;
                    }
                    outstanding.fetch_sub(1, Ordering::Relaxed);
                    let answer: Value = serde_json::from_str(&rest[digits..]).unwrap_or_default();
                    let took = now_ms() - send.at_ms;
                    if took > ACK_TIMEOUT_MS {
                        tally.fail("timeout");
                    } else if answer[0]["ok"] == true {
                        tally.acked += 1;
                        tally.ack_ms.push(took);
                    } else {
                        tally.fail(answer[0]["error"]["code"].as_str().unwrap_or("?"));
                    }
                } else if let Some(rest) = packet.strip_prefix("42") {
                    let event: Value = serde_json::from_str(rest).unwrap_or_default();
                    if event[0] != "chat.message.incoming" {
                        continue;
                    }
                    let content = event[1]["content"].as_str().unwrap_or_default();
                    let sent_at = content.split(' ').next().and_then(|t| t.parse::<f64>().ok());
                    // Warm-up traffic carries -1.
                    if let Some(sent_at) = sent_at.filter(|t| *t >= 0.0) {
                        tally.delivered += 1;
                        tally.delivery_ms.push(now_ms() - sent_at);
                    }
                } else if packet.starts_with("41") {
                    break;
                }
            }
        }
    }
    for _ in pending.into_values().filter(|s| s.counted) {
        tally.fail("timeout");
    }
    let _ = ws.close(None).await;
    tally
}

/// CPU time in clock ticks spent by `pids` (user and system, every thread), from `/proc`; a
/// process that is gone counts nothing.
fn cpu_ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .map(|stat| {
            // Fields after the command name (which may hold spaces), from the third on.
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map_or("", |(_, rest)| rest)
                .split_whitespace()
                .collect();
            let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
            field(14).unwrap_or(0) + field(15).unwrap_or(0)
        })
        .sum()
}

fn percentile(sorted: &[f64], p: f64) -> Value {
    if sorted.is_empty() {
        return Value::Null;
    }
    let i = ((sorted.len() as f64 * p) as usize).min(sorted.len() - 1);
    json!((sorted[i] * 100.0).round() / 100.0)
}

async fn run(args: Args) -> Result<Value, String> {
    let members = setup(&args).await?;
    if args.rate > members.len() as f64 * PER_SOCKET_LIMIT {
        return Err(format!(
            "rate {}/s exceeds {} sockets x {PER_SOCKET_LIMIT}/s; add groups or members",
            args.rate,
            members.len()
        ));
    }
    let clock = Instant::now();
    let outstanding = Arc::new(AtomicI64::new(0));
    let (mut queues, mut sockets) = (Vec::new(), Vec::new());
    for member in &members {
        let ws = connect(&args.base, &member.auth).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        queues.push(tx);
        let group_id = member.group_id.clone();
        sockets.push(tokio::spawn(drive(
            ws,
            group_id,
            rx,
            clock,
            outstanding.clone(),
        )));
    }
    // Open loop: every few milliseconds, the sends due by now, round-robin over the sockets.
    let start = clock.elapsed().as_secs_f64();
    let (mut issued, mut next) = (0u64, 0usize);
    // The servers' CPU ticks and the time when the measured window began.
    let mut window: Option<(u64, Instant)> = None;
    loop {
        let elapsed = clock.elapsed().as_secs_f64() - start;
        if window.is_none() && elapsed >= args.warmup {
            window = Some((cpu_ticks(&args.cpu_pids), Instant::now()));
        }
        if elapsed >= args.warmup + args.seconds {
            break;
        }
        let due = (args.rate * elapsed) as u64;
        while issued < due {
            let send = Send {
                at_ms: clock.elapsed().as_secs_f64() * 1000.0,
                counted: elapsed >= args.warmup,
            };
            if send.counted {
                outstanding.fetch_add(1, Ordering::Relaxed);
            }
            let _ = queues[next % queues.len()].send(send);
            (issued, next) = (issued + 1, next + 1);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let window_cpu = window
        .filter(|_| !args.cpu_pids.is_empty())
        .map(|(ticks, began)| {
            let cpu_s = cpu_ticks(&args.cpu_pids).saturating_sub(ticks) as f64 / args.clk_tck;
            (cpu_s, began.elapsed().as_secs_f64())
        });
    // Every measured send answered (or timed out), then late deliveries.
    let answered_by = Instant::now() + Duration::from_millis(ACK_TIMEOUT_MS as u64);
    while outstanding.load(Ordering::Relaxed) > 0 && Instant::now() < answered_by {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(queues);
    let mut tally = Tally::default();
    for socket in sockets {
        tally.merge(socket.await.map_err(|e| e.to_string())?);
    }
    tally.ack_ms.sort_by(f64::total_cmp);
    tally.delivery_ms.sort_by(f64::total_cmp);
    let expected = tally.acked * args.members as u64;
    let per_second = |n: u64| (n as f64 / args.seconds).round();
    let round = |v: f64, places: i32| (v * 10f64.powi(places)).round() / 10f64.powi(places);
    let window_cpu = window_cpu.map(|(cpu_s, window_s)| {
        json!({"cpu_s": round(cpu_s, 2), "window_s": round(window_s, 2),
            "cores": round(cpu_s / window_s, 2),
            "us_per_send": (tally.acked > 0).then(|| round(cpu_s * 1e6 / tally.acked as f64, 1))})
    });
    Ok(json!({
        "target": args.target, "driver": "rust", "groups": args.groups, "members": args.members,
        "sockets": members.len(), "seconds": args.seconds, "offered_sends_per_s": args.rate,
        "sends_per_s": per_second(tally.acked), "deliveries_per_s": per_second(tally.delivered),
        "acked": tally.acked, "failed": tally.failed, "errors": tally.errors,
        "expected_deliveries": expected, "delivered": tally.delivered,
        "lost_deliveries": expected.saturating_sub(tally.delivered),
        "ack_ms": {"p50": percentile(&tally.ack_ms, 0.5), "p99": percentile(&tally.ack_ms, 0.99),
            "max": percentile(&tally.ack_ms, 1.0)},
        "delivery_ms": {"p50": percentile(&tally.delivery_ms, 0.5),
            "p99": percentile(&tally.delivery_ms, 0.99), "max": percentile(&tally.delivery_ms, 1.0)},
        "window_cpu": window_cpu,
    }))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let outcome = match args() {
        Ok(args) => run(args).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(line) => println!("{line}"),
        Err(e) => {
            eprintln!("fanout: {e}");
            std::process::exit(2);
        }
    }
}
