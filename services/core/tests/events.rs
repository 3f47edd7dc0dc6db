//! The Kafka event log against the real Kafka-protocol broker started by `scripts/infra.sh`
//! (Tansu): per-key order, and commit-after-processing semantics.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat_core::events::{consume, Envelope, EventLog, StartAt};
use tokio_util::sync::CancellationToken;

fn log() -> EventLog {
    let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let namespace = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    EventLog::new(&brokers, &namespace).unwrap()
}

async fn wait_for(seen: &Arc<Mutex<Vec<u32>>>, n: usize) {
    for _ in 0..300 {
        if seen.lock().unwrap().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("only {} of {n} events arrived", seen.lock().unwrap().len());
}

#[tokio::test]
async fn events_of_one_group_arrive_in_order() {
    let log = log();
    log.ensure_topics(&["orders"], 3).await.unwrap();
    log.ensure_topics(&["orders"], 3).await.unwrap(); // idempotent
    for i in 0..30u32 {
        log.publish("orders", &Envelope::new("test", "group-a", i))
            .await
            .unwrap();
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let shutdown = CancellationToken::new();
    let (s, token, l) = (seen.clone(), shutdown.clone(), log.clone());
    let task = tokio::spawn(async move {
        consume::<u32, _, _>(&l, "orders", "readers", StartAt::Earliest, token, |r| {
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

#[tokio::test]
async fn what_was_not_committed_is_delivered_again() {
    let log = log();
    log.ensure_topics(&["work"], 1).await.unwrap();
    for i in 0..5u32 {
        log.publish("work", &Envelope::new("test", "g", i))
            .await
            .unwrap();
    }
    // The first consumer handles 0..=2 and "crashes" while handling 3: it never returns, so
    // record 3's offset is never committed.
    let first = Arc::new(Mutex::new(Vec::new()));
    let shutdown = CancellationToken::new();
    let (s, token, l) = (first.clone(), shutdown.clone(), log.clone());
    let task = tokio::spawn(async move {
        consume::<u32, _, _>(&l, "work", "workers", StartAt::Earliest, token, |r| {
            let s = s.clone();
            async move {
                s.lock().unwrap().push(r.envelope.event);
                if r.envelope.event == 3 {
                    std::future::pending::<()>().await;
                }
                Ok(())
            }
        })
        .await
    });
    wait_for(&first, 4).await;
    task.abort();
    drop(shutdown);

    // A new member of the same group resumes at the first uncommitted record.
    let second = Arc::new(Mutex::new(Vec::new()));
    let shutdown = CancellationToken::new();
    let (s, token, l) = (second.clone(), shutdown.clone(), log.clone());
    let task = tokio::spawn(async move {
        consume::<u32, _, _>(&l, "work", "workers", StartAt::Earliest, token, |r| {
            let s = s.clone();
            async move {
                s.lock().unwrap().push(r.envelope.event);
                Ok(())
            }
        })
        .await
    });
    wait_for(&second, 2).await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(*second.lock().unwrap(), vec![3, 4]);
}

#[tokio::test]
async fn a_failing_handler_is_retried_without_skipping() {
    let log = log();
    log.ensure_topics(&["flaky"], 1).await.unwrap();
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
        consume::<u32, _, _>(&l, "flaky", "g", StartAt::Earliest, token, |r| {
            let (s, f) = (s.clone(), f.clone());
            async move {
                if r.envelope.event == 1 && *f.lock().unwrap() < 2 {
                    *f.lock().unwrap() += 1;
                    return Err(chat_core::Error::unavailable("database down"));
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

#[tokio::test]
async fn a_consumer_that_starts_first_receives_later_events() {
    let log = log();
    log.ensure_topics(&["later"], 6).await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let shutdown = CancellationToken::new();
    let (s, token, l) = (seen.clone(), shutdown.clone(), log.clone());
    let task = tokio::spawn(async move {
        consume::<u32, _, _>(&l, "later", "early-birds", StartAt::Earliest, token, |r| {
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
