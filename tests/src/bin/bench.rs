//! `scripts/bench.sh`: latency figures on this machine, printed, never asserted.
//!
//! - RPC round trip: sequential and 32-way concurrent calls over the real RabbitMQ.
//! - Login and `/auth/me` through the gateway of a release `chat-server all`, with the production
//!   argon2 cost (m=19 MiB, t=2, p=1).
//! - Real-time delivery across two chat replicas.
//! - Attachments: a 50 MB file uploaded in 5 MiB chunks, completed into GridFS and downloaded.
//!
//! `bench <section>...` runs only the named sections (rpc, login, realtime, attachments).

use std::time::{Duration, Instant};

use chat_core::config::Secret;
use chat_core::rpc::{CallContext, RpcClient, RpcServer};
use chat_tests::{Api, Deployment};
use serde_json::json;
use tokio_util::sync::CancellationToken;

chat_core::rpc_pattern!(Echo, "bench.echo", String => String);

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
    let server = RpcServer::new(&namespace, 64).handle::<Echo, _, _>(|s, _| async move { Ok(s) });
    let status = server.status();
    let (u, t) = (uri.clone(), shutdown.clone());
    tokio::spawn(async move {
        server
            .run(u, "bench-server", t, Duration::from_secs(1))
            .await
    });
    let client = RpcClient::start(
        uri,
        &namespace,
        Duration::from_secs(5),
        "bench-client",
        shutdown.clone(),
    );
    while !(status.is_connected() && client.status().is_connected()) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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

/// Two chat replicas and every other role as release processes; Ada sends on replica A, Bob
/// listens on replica B.
async fn realtime() {
    let stack = chat_tests::RealtimeStack::start(&[]).await;
    let api = stack.api();
    let (ada, bob) = (api.user("ada").await, api.user("bob").await);
    let group = api
        .send(
            api.authed(reqwest::Method::POST, "/groups", &ada)
                .json(&json!({"name": "bench", "memberIds": [bob.id]})),
        )
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_string();
    let a = chat_tests::ChatClient::connect(stack.chat_a.port, json!({"token": ada.token})).await;
    let mut b =
        chat_tests::ChatClient::connect(stack.chat_b.port, json!({"token": bob.token})).await;
    for n in 0..20 {
        a.send(&group, "warm-up", &format!("w{n}")).await;
        b.next("chat.message.incoming", Duration::from_secs(10))
            .await;
    }
    let (mut acks, mut deliveries) = (Vec::new(), Vec::new());
    let n = 500;
    let start = Instant::now();
    for i in 0..n {
        let sent = Instant::now();
        let ack = a.send(&group, "hello", &format!("m{i}")).await;
        assert_eq!(ack["ok"], true, "{ack}");
        acks.push(sent.elapsed());
        b.next("chat.message.incoming", Duration::from_secs(10))
            .await;
        deliveries.push(sent.elapsed());
    }
    let elapsed = start.elapsed();
    summary("send ack (stored), replica A", acks);
    summary("send on A -> received on B", deliveries);
    println!(
        "{:<40} {n} messages in {:.1} s, all delivered in order",
        "2-replica run (sequential sender)",
        elapsed.as_secs_f64()
    );
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
}
