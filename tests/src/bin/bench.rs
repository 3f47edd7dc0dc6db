//! `scripts/bench.sh`: latency figures on this machine, printed, never asserted.
//!
//! - RPC round trip: sequential and 32-way concurrent calls over the real RabbitMQ.
//! - Login and `/auth/me` through the gateway of a release `chat-server all`, with the production
//!   argon2 cost (m=19 MiB, t=2, p=1).

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

#[tokio::main]
async fn main() {
    println!(
        "scalable-chat benchmarks ({} cores; loopback; release build)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    rpc_round_trip().await;
    login_latency().await;
    realtime().await;
}
