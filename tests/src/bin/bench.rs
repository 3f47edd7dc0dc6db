//! `scripts/bench.sh`: latency figures on this machine, printed, never asserted.
//!
//! - RPC round trip: sequential and 32-way concurrent calls over the real RabbitMQ.
//! - Login and `/auth/me` through the gateway of a release `chat-server all`, with the production
//!   argon2 cost (m=19 MiB, t=2, p=1).
//! - Real-time delivery across two chat replicas.
//! - Attachments: a 50 MB file uploaded in 5 MiB chunks, completed into GridFS and downloaded.
//! - Embedded mode: `chat-server all` with nothing installed, from start to a first message,
//!   its memory idle and after a burst, and its send rate.
//!
//! - Reads: `GET /groups` for a user in 100 groups (with members, last message and unread
//!   count each) and a 50-message history page, on the embedded store and on MongoDB.
//!
//! `bench <section>...` runs only the named sections (rpc, login, realtime, attachments,
//! embedded, reads).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_domain::config::Secret;
use chat_domain::rpc::CallContext;
use chat_ports::rpc::{RpcClient, RpcListener, RpcServer};
use chat_rabbitmq::{AmqpClient, AmqpListener};
use chat_tests::{Api, ChatClient, Deployment};
use serde_json::json;
use tokio_util::sync::CancellationToken;

chat_domain::rpc_pattern!(Echo, "bench.echo", String => String);

fn summary(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let pct = |p: f64| {
        samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)].as_secs_f64() * 1000.0
    };
    let mean = samples.iter().sum::<Duration>().as_secs_f64() * 1000.0 / samples.len() as f64;
    println!(
        "{label:<40} n={:<5} mean {mean:>7.3} ms  p50 {:>7.3} ms  p99 {:>7.3} ms",
        samples.len(),
        pct(0.5),
        pct(0.99)
    );
}

async fn rpc_round_trip() {
    let uri = Secret::new(
        std::env::var("RABBITMQ_URI")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into()),
    );
    let namespace = chat_tests::unique("bench");
    let shutdown = CancellationToken::new();
    let server = RpcServer::new().handle::<Echo, _, _>(|s, _| async move { Ok(s) });
    let listener = Arc::new(AmqpListener::new(
        uri.clone(),
        &namespace,
        "bench-server",
        64,
    ));
    let status = listener.status();
    tokio::spawn(listener.serve(
        server.into_handlers(),
        shutdown.clone(),
        Duration::from_secs(1),
    ));
    let amqp = AmqpClient::start(uri, &namespace, "bench-client", shutdown.clone());
    while !(status.is_connected() && amqp.status().is_connected()) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let client = RpcClient::new(Arc::new(amqp), Duration::from_secs(5));
    let ctx = CallContext::internal();
    for _ in 0..100 {
        client.call::<Echo>(&"warm".into(), &ctx).await.unwrap();
    }
    let mut samples = Vec::new();
    for _ in 0..2000 {
        let start = Instant::now();
        client.call::<Echo>(&"ping".into(), &ctx).await.unwrap();
        samples.push(start.elapsed());
    }
    summary("rpc round trip (sequential)", samples);

    let start = Instant::now();
    let total = 4000;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let client = client.clone();
        tasks.spawn(async move {
            let mut samples = Vec::new();
            for _ in 0..total / 32 {
                let s = Instant::now();
                client
                    .call::<Echo>(&"ping".into(), &CallContext::internal())
                    .await
                    .unwrap();
                samples.push(s.elapsed());
            }
            samples
        });
    }
    let mut samples = Vec::new();
    while let Some(r) = tasks.join_next().await {
        samples.extend(r.unwrap());
    }
    let elapsed = start.elapsed();
    summary("rpc round trip (32 concurrent callers)", samples);
    println!(
        "{:<40} {:.0} calls/s",
        "rpc throughput (32 concurrent callers)",
        total as f64 / elapsed.as_secs_f64()
    );
    shutdown.cancel();
}

async fn login_latency() {
    // Production hashing cost, whatever the test defaults are.
    let deployment = Deployment::new(&[
        ("ARGON2_MEMORY_KIB", "19456"),
        ("ARGON2_ITERATIONS", "2"),
        ("LOGIN_MAX_ATTEMPTS_PER_EMAIL", "100000"),
        ("LOGIN_MAX_ATTEMPTS_PER_ADDRESS", "100000"),
        ("API_MAX_REQUESTS_PER_USER", "0"),
        ("API_MAX_REQUESTS_PER_ADDRESS", "0"),
    ]);
    let all = deployment.spawn("all").await;
    let api = Api::new(all.port);
    let session = api
        .register("Bench", "Mark", "bench@example.com", "correct horse")
        .await;
    let token = session["accessToken"].as_str().unwrap().to_string();
    let mut logins = Vec::new();
    for _ in 0..100 {
        let start = Instant::now();
        let r = api
            .post(
                "/auth/login",
                json!({"email": "bench@example.com", "password": "correct horse"}),
            )
            .await;
        logins.push(start.elapsed());
        assert_eq!(r.status.as_u16(), 200);
    }
    summary("POST /auth/login (argon2id m=19MiB t=2)", logins);
    let mut me = Vec::new();
    for _ in 0..1000 {
        let start = Instant::now();
        let r = api.get("/auth/me", Some(&token)).await;
        me.push(start.elapsed());
        assert_eq!(r.status.as_u16(), 200);
    }
    summary("GET /auth/me (JWT check + RPC + MongoDB)", me);
}

/// Ada and Bob in a new group, Ada's socket on `port_a`, Bob's on `port_b`.
async fn ada_and_bob(api: &Api, port_a: u16, port_b: u16) -> (ChatClient, ChatClient, String) {
    let (ada, bob) = (api.user("ada").await, api.user("bob").await);
    let group = api.group(&ada, "bench", &[&bob]).await;
    let a = ChatClient::connect(port_a, json!({"token": ada.token})).await;
    let b = ChatClient::connect(port_b, json!({"token": bob.token})).await;
    (a, b, group)
}

/// `a` sends `n` messages one after the other, each after `b` received the previous one, and
/// prints acknowledgement and delivery times and the rate under `label`.
async fn send_and_receive(a: &ChatClient, b: &mut ChatClient, group: &str, n: usize, label: &str) {
    let (mut acks, mut deliveries) = (Vec::new(), Vec::new());
    let start = Instant::now();
    for i in 0..n {
        let sent = Instant::now();
        let ack = a.send(group, "hello", &format!("m{i}")).await;
        assert_eq!(ack["ok"], true, "{ack}");
        acks.push(sent.elapsed());
        b.next("chat.message.incoming", Duration::from_secs(10))
            .await;
        deliveries.push(sent.elapsed());
    }
    let elapsed = start.elapsed();
    summary(&format!("{label}: send ack (stored)"), acks);
    summary(&format!("{label}: sent -> received"), deliveries);
    println!(
        "{:<40} {n} messages in {:.1} s ({:.0}/s, one sender), all delivered in order",
        format!("{label}: rate"),
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64()
    );
}

/// Two chat replicas and every other role as release processes; Ada sends on replica A, Bob
/// listens on replica B.
async fn realtime() {
    let stack = chat_tests::RealtimeStack::start(&[("CHAT_EVENTS_PER_SECOND", "100000")]).await;
    let api = stack.api();
    let (a, mut b, group) = ada_and_bob(api, stack.chat_a.port, stack.chat_b.port).await;
    for n in 0..20 {
        a.send(&group, "warm-up", &format!("w{n}")).await;
        b.next("chat.message.incoming", Duration::from_secs(10))
            .await;
    }
    send_and_receive(&a, &mut b, &group, 500, "2 replicas, A to B").await;
}

/// A 50 MB file through `chat-server all`: chunked upload, assembly, whole download.
async fn attachments() {
    use sha2::{Digest, Sha256};
    let deployment = Deployment::new(&[]);
    let all = deployment.spawn("all").await;
    let api = Api::new(all.port);
    let user = api.user("uploader").await;
    let size = 50 * 1000 * 1000;
    let mut file = vec![0u8; size];
    rand::Rng::fill(&mut rand::thread_rng(), &mut file[..]);
    file[..8].copy_from_slice(b"\x89PNG\r\n\x1a\n");
    let chunks: Vec<&[u8]> = file.chunks(5 * 1024 * 1024).collect();
    let mb = size as f64 / 1e6;

    let start = Instant::now();
    for (i, chunk) in chunks.iter().enumerate() {
        let form = reqwest::multipart::Form::new()
            .text("filename", "big.png")
            .text("chunkIndex", i.to_string())
            .text("totalChunks", chunks.len().to_string())
            .part("chunk", reqwest::multipart::Part::bytes(chunk.to_vec()));
        let r = api
            .send(
                api.authed(reqwest::Method::POST, "/assets/upload", &user)
                    .multipart(form),
            )
            .await;
        assert_eq!(r.status.as_u16(), 200, "{}", r.text);
    }
    let uploaded = start.elapsed();
    let start = Instant::now();
    let r = api
        .send(
            api.authed(reqwest::Method::POST, "/assets/complete-upload", &user)
                .json(&json!({"filename": "big.png", "totalChunks": chunks.len()})),
        )
        .await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.text);
    let completed = start.elapsed();
    let url = r.body["url"].as_str().unwrap().to_string();

    let start = Instant::now();
    let bytes = api
        .authed(reqwest::Method::GET, &url, &user)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let downloaded = start.elapsed();
    assert_eq!(
        Sha256::digest(&bytes),
        Sha256::digest(&file),
        "download differs"
    );
    let rate = |d: Duration| mb / d.as_secs_f64();
    println!(
        "{:<40} {mb:.0} MB in {} chunks: {:.1} s ({:.1} MB/s)",
        "upload (chunks stored)",
        chunks.len(),
        uploaded.as_secs_f64(),
        rate(uploaded)
    );
    println!(
        "{:<40} {:.1} s ({:.1} MB/s)",
        "complete-upload (assembled into GridFS)",
        completed.as_secs_f64(),
        rate(completed)
    );
    println!(
        "{:<40} {:.1} s ({:.1} MB/s); upload end to end {:.1} MB/s",
        "download (whole file, checksum equal)",
        downloaded.as_secs_f64(),
        rate(downloaded),
        rate(uploaded + completed)
    );
}

/// Resident memory of a process, from `/proc`.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// `chat-server all` on its embedded adapters (a fresh data directory, production argon2 cost):
/// what a newcomer gets from the README's first command.
async fn embedded() {
    let deployment = Deployment::embedded(&[
        ("ARGON2_MEMORY_KIB", "19456"),
        ("ARGON2_ITERATIONS", "2"),
        // One socket sends as fast as it is acknowledged, beyond the default per-socket limit.
        ("CHAT_EVENTS_PER_SECOND", "100000"),
        ("API_MAX_REQUESTS_PER_ADDRESS", "0"),
    ]);
    let start = Instant::now();
    let all = deployment.spawn("all").await;
    let ready = start.elapsed();
    let api = Api::new(all.port);
    let (a, mut b, group) = ada_and_bob(&api, all.port, all.port).await;
    let ack = a.send(&group, "hello", "first").await;
    assert_eq!(ack["ok"], true, "{ack}");
    b.next("chat.message.incoming", Duration::from_secs(10))
        .await;
    let first = start.elapsed();
    println!(
        "{:<40} ready in {:.2} s; first message received {:.2} s after start",
        "embedded: start to first message",
        ready.as_secs_f64(),
        first.as_secs_f64()
    );
    let pid = all.pid().expect("a process");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = rss_mib(pid);

    send_and_receive(&a, &mut b, &group, 1000, "embedded").await;
    println!(
        "{:<40} {idle:.1} MiB idle after start; {:.1} MiB after 1000 messages",
        "embedded: resident memory",
        rss_mib(pid)
    );
    drop((a, b, all));
}

/// `GET /groups` for a user in 100 groups and a history page of 50, sequentially, on `chat-server
/// all` with `deployment`'s store.
async fn reads_on(deployment: Deployment, label: &str) {
    let all = deployment.spawn("all").await;
    let api = Api::new(all.port);
    let (ada, bob) = (api.user("ada").await, api.user("bob").await);
    let mut groups = Vec::new();
    for i in 0..100 {
        groups.push(api.group(&ada, &format!("group {i}"), &[&bob]).await);
    }
    let a = ChatClient::connect(all.port, json!({"token": ada.token})).await;
    // A last message in every group, and a history of 50 in the first.
    for (i, group) in groups.iter().enumerate() {
        assert_eq!(a.send(group, "hello", &format!("g{i}")).await["ok"], true);
    }
    for i in 0..49 {
        assert_eq!(
            a.send(&groups[0], "hello", &format!("h{i}")).await["ok"],
            true
        );
    }
    let measure = |path: String| {
        let api = &api;
        let bob = &bob;
        async move {
            let mut samples = Vec::new();
            for i in 0..550 {
                let start = Instant::now();
                let r = api.send(api.authed(reqwest::Method::GET, &path, bob)).await;
                assert_eq!(r.status, reqwest::StatusCode::OK, "{}", r.text);
                // The first 50 warm up.
                if i >= 50 {
                    samples.push(start.elapsed());
                }
            }
            samples
        }
    };
    let listed = measure("/groups".into()).await;
    summary(&format!("{label}: GET /groups (100 groups)"), listed);
    let page = measure(format!("/groups/{}/messages?limit=50", groups[0])).await;
    summary(&format!("{label}: history page of 50"), page);
    drop((a, all));
}

async fn reads() {
    let limits = [
        ("API_MAX_REQUESTS_PER_ADDRESS", "0"),
        ("API_MAX_REQUESTS_PER_USER", "0"),
        ("CHAT_EVENTS_PER_SECOND", "100000"),
    ];
    reads_on(Deployment::embedded(&limits), "reads, embedded").await;
    // The same process on the real servers (MongoDB through the stand-in here).
    reads_on(Deployment::new(&limits), "reads, MongoDB").await;
}

#[tokio::main]
async fn main() {
    println!(
        "scalable-chat benchmarks ({} cores; loopback; release build)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    let only: Vec<String> = std::env::args().skip(1).collect();
    let run = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    if run("rpc") {
        rpc_round_trip().await;
    }
    if run("login") {
        login_latency().await;
    }
    if run("realtime") {
        realtime().await;
    }
    if run("attachments") {
        attachments().await;
    }
    if run("embedded") {
        embedded().await;
    }
    if run("reads") {
        reads().await;
    }
}
