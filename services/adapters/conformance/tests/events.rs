//! The Kafka event log against the real Kafka-protocol broker started by `scripts/infra.sh`
//! (Tansu): per-key order, and commit-after-processing semantics. The same contract runs on the
//! in-process log of `chat-server all`. The facts relayed over Redis pub/sub (`FACTS_RELAY=redis`,
//! the real Redis of `scripts/infra.sh`) are tailed only: their own tests follow.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat_domain::config::Secret;
use chat_domain::events::Envelope;
use chat_embedded::LocalLog;
use chat_kafka::KafkaLog;
use chat_ports::events::{key_hash, EventLog, StartAt, LANES};
use chat_ports::health::Gate;
use chat_redis::RedisRelay;
use tokio_util::sync::CancellationToken;

/// Which log a test runs on: Kafka, or the in-process log of `chat-server all`; or Kafka with
/// the topic `facts` relayed over Redis pub/sub.
#[derive(Clone, Copy)]
enum Kind {
    Kafka,
    InProcess,
    RedisRelay,
}

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Kafka with `facts` relayed over Redis pub/sub: published directly, followed through
/// `follow_url` (Redis itself, or a proxy in front of it).
async fn relayed_log(follow_url: &str) -> EventLog {
    let url = Secret::new(redis_url());
    let publisher = chat_redis::connect(&url, Duration::from_secs(10))
        .await
        .unwrap();
    let relay = RedisRelay::new(&Secret::new(follow_url.to_string()), publisher).unwrap();
    log(Kind::Kafka, 3).route("facts", Arc::new(relay))
}

/// A log whose new topics get `partitions` partitions (on Kafka; the in-process log has one).
fn log(kind: Kind, partitions: i32) -> EventLog {
    let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let namespace = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    match kind {
        Kind::Kafka => EventLog::new(
            Arc::new(KafkaLog::new(&brokers, partitions, Duration::from_millis(10)).unwrap()),
            &namespace,
        ),
        Kind::InProcess => EventLog::new(Arc::new(LocalLog::default()), &namespace),
        Kind::RedisRelay => unreachable!("relayed_log"),
    }
}

/// The log's contract, on Kafka and on the in-process log alike.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod on_kafka {
            $(#[tokio::test] async fn $name() { super::$name(super::Kind::Kafka).await })*
        }
        mod in_process {
            $(#[tokio::test] async fn $name() { super::$name(super::Kind::InProcess).await })*
        }
    };
}

conformance!(
    events_of_one_group_arrive_in_order,
    what_was_not_committed_is_delivered_again,
    a_failing_handler_is_retried_without_skipping,
    a_consumer_that_starts_first_receives_later_events,
    a_tail_receives_what_is_published_after_it_starts,
    a_slow_group_holds_up_neither_others_nor_its_own_redelivery,
);

async fn wait_for(seen: &Arc<Mutex<Vec<u32>>>, n: usize) {
    for _ in 0..300 {
        if seen.lock().unwrap().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("only {} of {n} events arrived", seen.lock().unwrap().len());
}

type Seen = Arc<Mutex<Vec<u32>>>;
type Consumer = tokio::task::JoinHandle<Result<(), chat_domain::Error>>;

/// Consumes `topic` as `group`, recording each event in order of handling; the handler never
/// returns on the event `hang_on` (a consumer that crashes while handling it).
fn record_events(
    log: &EventLog,
    topic: &'static str,
    group: &'static str,
    shutdown: CancellationToken,
    hang_on: Option<u32>,
) -> (Seen, Consumer) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (s, l) = (seen.clone(), log.clone());
    let task = tokio::spawn(async move {
        l.consume::<u32, _, _>(topic, group, StartAt::Earliest, shutdown, move |r| {
            let s = s.clone();
            async move {
                s.lock().unwrap().push(r.envelope.event);
                if Some(r.envelope.event) == hang_on {
                    std::future::pending::<()>().await;
                }
                Ok(())
            }
        })
        .await
    });
    (seen, task)
}

async fn events_of_one_group_arrive_in_order(kind: Kind) {
    let log = log(kind, 3);
    log.ensure_topics(&["orders"]).await.unwrap();
    log.ensure_topics(&["orders"]).await.unwrap(); // idempotent
    for i in 0..30u32 {
        log.publish("orders", &Envelope::new("test", "group-a", i))
            .await
            .unwrap();
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let shutdown = CancellationToken::new();
    let (s, token, l) = (seen.clone(), shutdown.clone(), log.clone());
    let task = tokio::spawn(async move {
        l.consume::<u32, _, _>("orders", "readers", StartAt::Earliest, token, move |r| {
            let s = s.clone();
            async move {
                s.lock().unwrap().push(r.envelope.event);
                Ok(())
            }
        })
        .await
    });
    wait_for(&seen, 30).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(*seen.lock().unwrap(), (0..30).collect::<Vec<_>>());
}

async fn what_was_not_committed_is_delivered_again(kind: Kind) {
    let log = log(kind, 1);
    log.ensure_topics(&["work"]).await.unwrap();
    for i in 0..5u32 {
        log.publish("work", &Envelope::new("test", "g", i))
            .await
            .unwrap();
    }
    // The first consumer handles 0..=2 and "crashes" while handling 3: it never returns, so
    // record 3's offset is never committed.
    let (first, task) = record_events(&log, "work", "workers", CancellationToken::new(), Some(3));
    wait_for(&first, 4).await;
    task.abort();

    // A new member of the same group resumes at the first uncommitted record.
    let shutdown = CancellationToken::new();
    let (second, task) = record_events(&log, "work", "workers", shutdown.clone(), None);
    wait_for(&second, 2).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(*second.lock().unwrap(), vec![3, 4]);
}

async fn a_failing_handler_is_retried_without_skipping(kind: Kind) {
    let log = log(kind, 1);
    log.ensure_topics(&["flaky"]).await.unwrap();
    for i in 0..3u32 {
        log.publish("flaky", &Envelope::new("test", "g", i))
            .await
            .unwrap();
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let failures = Arc::new(Mutex::new(0));
    let shutdown = CancellationToken::new();
    let (s, f, token, l) = (
        seen.clone(),
        failures.clone(),
        shutdown.clone(),
        log.clone(),
    );
    let task = tokio::spawn(async move {
        l.consume::<u32, _, _>("flaky", "g", StartAt::Earliest, token, move |r| {
            let (s, f) = (s.clone(), f.clone());
            async move {
                if r.envelope.event == 1 && *f.lock().unwrap() < 2 {
                    *f.lock().unwrap() += 1;
                    return Err(chat_domain::Error::unavailable("database down"));
                }
                s.lock().unwrap().push(r.envelope.event);
                Ok(())
            }
        })
        .await
    });
    wait_for(&seen, 3).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![0, 1, 2]);
    assert_eq!(*failures.lock().unwrap(), 2);
}

async fn a_consumer_that_starts_first_receives_later_events(kind: Kind) {
    let log = log(kind, 6);
    log.ensure_topics(&["later"]).await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let shutdown = CancellationToken::new();
    let (s, token, l) = (seen.clone(), shutdown.clone(), log.clone());
    let task = tokio::spawn(async move {
        l.consume::<u32, _, _>("later", "early-birds", StartAt::Earliest, token, move |r| {
            let s = s.clone();
            async move {
                s.lock().unwrap().push(r.envelope.event);
                Ok(())
            }
        })
        .await
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    for i in 0..3u32 {
        log.publish("later", &Envelope::new("test", "some-group", i))
            .await
            .unwrap();
    }
    wait_for(&seen, 3).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![0, 1, 2]);
}

async fn a_tail_receives_what_is_published_after_it_starts(kind: Kind) {
    let log = match kind {
        Kind::RedisRelay => relayed_log(&redis_url()).await,
        kind => log(kind, 3),
    };
    log.ensure_topics(&["facts"]).await.unwrap();
    log.publish("facts", &Envelope::new("test", "g", 0u32))
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let (seen, attached, task) = tail_facts(&log, &shutdown);
    // The tail starts at the end, and says when it follows it: what is published from then
    // on is never skipped (the chat role's readiness waits for this).
    opened(&attached, 1).await;
    for i in 1..=5u32 {
        log.publish("facts", &Envelope::new("test", "g", i))
            .await
            .unwrap();
    }
    wait_for(&seen, 5).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        vec![1, 2, 3, 4, 5],
        "from the end, in order"
    );
}

/// Different keys are handled at once: a record that never finishes does not hold up the
/// records of other keys behind it. Yet the commit never passes it, so after a crash it is
/// delivered again.
async fn a_slow_group_holds_up_neither_others_nor_its_own_redelivery(kind: Kind) {
    let log = log(kind, 1);
    log.ensure_topics(&["mixed"]).await.unwrap();
    let lane = |key: &str| key_hash(key.as_bytes()) % LANES as u64;
    let fast = (0..)
        .map(|n| format!("fast-{n}"))
        .find(|k| lane(k) != lane("slow"))
        .unwrap();
    log.publish("mixed", &Envelope::new("test", "slow", 100u32))
        .await
        .unwrap();
    for i in 0..5u32 {
        log.publish("mixed", &Envelope::new("test", &fast, i))
            .await
            .unwrap();
    }
    let (first, task) = record_events(&log, "mixed", "mixed", CancellationToken::new(), Some(100));
    wait_for(&first, 6).await;
    let mut handled = first.lock().unwrap().clone();
    handled.sort_unstable();
    assert_eq!(handled, vec![0, 1, 2, 3, 4, 100], "the other key went on");
    task.abort();

    let shutdown = CancellationToken::new();
    let (second, task) = record_events(&log, "mixed", "mixed", shutdown.clone(), None);
    wait_for(&second, 6).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    let again = second.lock().unwrap().clone();
    assert!(
        again.contains(&100),
        "the unfinished record came again: {again:?}"
    );
    let fast_order: Vec<u32> = again.iter().copied().filter(|e| *e != 100).collect();
    assert_eq!(
        fast_order,
        vec![0, 1, 2, 3, 4],
        "one key's records stay in order"
    );
}

mod on_redis_relay {
    #[tokio::test]
    async fn a_tail_receives_what_is_published_after_it_starts() {
        super::a_tail_receives_what_is_published_after_it_starts(super::Kind::RedisRelay).await
    }
}

/// Follows `facts` on `log` until `shutdown`, recording each fact; returns what was seen, the
/// tail's gate and its task.
fn tail_facts(
    log: &EventLog,
    shutdown: &CancellationToken,
) -> (
    Seen,
    Gate,
    tokio::task::JoinHandle<Result<(), chat_domain::Error>>,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let attached = Gate::new("facts");
    let (s, token, l, gate) = (
        seen.clone(),
        shutdown.clone(),
        log.clone(),
        attached.clone(),
    );
    let task = tokio::spawn(async move {
        l.tail::<u32, _, _>("facts", token, gate, move |e| {
            let s = s.clone();
            async move { s.lock().unwrap().push(e.event) }
        })
        .await
    });
    (seen, attached, task)
}

/// Waits until `gate` has been opened `n` times.
async fn opened(gate: &Gate, n: u64) {
    for _ in 0..300 {
        if gate.openings() >= n && gate.is_open() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the gate was opened {} times, not {n}", gate.openings());
}

/// Every chat replica follows the facts: two tails each receive every fact, each key's in the
/// order published, facts of several groups published at once.
#[tokio::test]
async fn two_relay_tails_each_receive_every_fact_in_order() {
    let log = relayed_log(&redis_url()).await;
    let shutdown = CancellationToken::new();
    let (a, gate_a, task_a) = tail_facts(&log, &shutdown);
    let (b, gate_b, task_b) = tail_facts(&log, &shutdown);
    opened(&gate_a, 1).await;
    opened(&gate_b, 1).await;
    // Three groups publishing at once, each its facts one after another (as a lane does).
    let groups = (0..3u32).map(|g| {
        let log = log.clone();
        async move {
            for i in 0..100u32 {
                let key = format!("g{g}");
                log.publish("facts", &Envelope::new("test", &key, g * 1000 + i))
                    .await
                    .unwrap();
            }
        }
    });
    futures_util::future::join_all(groups).await;
    wait_for(&a, 300).await;
    wait_for(&b, 300).await;
    shutdown.cancel();
    task_a.await.unwrap().unwrap();
    task_b.await.unwrap().unwrap();
    for seen in [a, b] {
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 300, "each fact once");
        for g in 0..3u32 {
            let of_group: Vec<u32> = seen.iter().copied().filter(|e| e / 1000 == g).collect();
            assert_eq!(of_group, (0..100).map(|i| g * 1000 + i).collect::<Vec<_>>());
        }
    }
}

/// Pub/sub keeps nothing, so nothing can be consumed with a consumer group: refused with a
/// reason, not a consumer that waits for ever.
#[tokio::test]
async fn a_consumer_group_on_relayed_facts_is_refused() {
    let log = relayed_log(&redis_url()).await;
    let err = log
        .consume::<u32, _, _>(
            "facts",
            "g",
            StartAt::Earliest,
            CancellationToken::new(),
            |_| async { Ok(()) },
        )
        .await
        .unwrap_err();
    assert!(
        format!("{err:?}").contains("Redis pub/sub"),
        "the refusal says why: {err:?}"
    );
}

/// A TCP proxy to Redis whose connections the test can cut (closed at once) or freeze (kept
/// open, nothing forwarded: a partition, or a paused server).
struct Proxy {
    url: String,
    connections: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    frozen: Arc<Mutex<Vec<(tokio::net::TcpStream, tokio::net::TcpStream)>>>,
    freeze: Arc<tokio::sync::Notify>,
}

impl Proxy {
    async fn start() -> Proxy {
        let upstream = redis_url()
            .trim_start_matches("redis://")
            .trim_end_matches('/')
            .to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("redis://{}", listener.local_addr().unwrap());
        let connections: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Default::default();
        let frozen: Arc<Mutex<Vec<_>>> = Default::default();
        let freeze = Arc::new(tokio::sync::Notify::new());
        let (conns, held, signal) = (connections.clone(), frozen.clone(), freeze.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut server = tokio::net::TcpStream::connect(&upstream).await.unwrap();
                let (held, signal) = (held.clone(), signal.clone());
                conns.lock().unwrap().push(tokio::spawn(async move {
                    let frozen = {
                        let copy = tokio::io::copy_bidirectional(&mut client, &mut server);
                        tokio::select! {
                            _ = copy => false,
                            _ = signal.notified() => true,
                        }
                    };
                    if frozen {
                        held.lock().unwrap().push((client, server));
                    }
                }));
            }
        });
        Proxy {
            url,
            connections,
            frozen,
            freeze,
        }
    }

    /// Closes every connection made so far.
    fn cut(&self) {
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
        self.frozen.lock().unwrap().clear();
    }

    /// Stops forwarding on every connection made so far, keeping them open.
    fn freeze(&self) {
        self.freeze.notify_waiters();
    }
}

/// Publishes `facts` one after another, each once the tail may have it.
async fn publish_all(log: &EventLog, facts: std::ops::Range<u32>) {
    for i in facts {
        log.publish("facts", &Envelope::new("test", "g", i))
            .await
            .unwrap();
    }
}

/// A subscription that is closed under the tail is replaced: the tail subscribes again, opens
/// its gate again (so a membership cache forgets what it may have missed), and what is published
/// afterwards arrives; the gate never closed meanwhile (an outage of Redis does not make a
/// replica unready, as one of Kafka does not).
#[tokio::test]
async fn a_relay_tail_subscribes_again_when_its_connection_is_closed() {
    let proxy = Proxy::start().await;
    let log = relayed_log(&proxy.url).await;
    let shutdown = CancellationToken::new();
    let (seen, gate, task) = tail_facts(&log, &shutdown);
    opened(&gate, 1).await;
    publish_all(&log, 0..3).await;
    wait_for(&seen, 3).await;
    proxy.cut();
    opened(&gate, 2).await;
    publish_all(&log, 3..6).await;
    wait_for(&seen, 6).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![0, 1, 2, 3, 4, 5]);
}

/// A subscription that goes silent without closing (a partition, a paused server) is noticed
/// by its ping (every 5 s, answered within 2) and replaced.
#[tokio::test]
async fn a_relay_tail_replaces_a_subscription_that_went_silent() {
    let proxy = Proxy::start().await;
    let log = relayed_log(&proxy.url).await;
    let shutdown = CancellationToken::new();
    let (seen, gate, task) = tail_facts(&log, &shutdown);
    opened(&gate, 1).await;
    proxy.freeze();
    // Published while the tail's connection forwards nothing: never relayed to it.
    publish_all(&log, 0..3).await;
    opened(&gate, 2).await;
    publish_all(&log, 3..6).await;
    wait_for(&seen, 3).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        vec![3, 4, 5],
        "after the new subscription"
    );
    proxy.cut();
}
