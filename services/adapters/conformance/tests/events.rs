//! The Kafka event log against the real Kafka-protocol broker started by `scripts/infra.sh`
//! (Tansu): per-key order, and commit-after-processing semantics. The same contract runs on the
//! in-process log of `chat-server all`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat_domain::events::Envelope;
use chat_embedded::LocalLog;
use chat_kafka::KafkaLog;
use chat_ports::events::{key_hash, EventLog, StartAt, LANES};
use chat_ports::health::Gate;
use tokio_util::sync::CancellationToken;

/// Which log a test runs on: Kafka, or the in-process log of `chat-server all`.
#[derive(Clone, Copy)]
enum Kind {
    Kafka,
    InProcess,
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
    let log = log(kind, 3);
    log.ensure_topics(&["facts"]).await.unwrap();
    log.publish("facts", &Envelope::new("test", "g", 0u32))
        .await
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let shutdown = CancellationToken::new();
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
    // The tail starts at the end, and says when it follows it: what is published from then
    // on is never skipped (the chat role's readiness waits for this).
    let waiting = async {
        while !attached.is_open() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("the tail attaches");
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
