//! Overload, then recovery (issue 16.5): a chat replica waits for a bounded number of commands
//! and refuses the next at once (`overloaded`, retry in a second), so a flood never builds a
//! backlog that outlives it; commands whose senders gave up are not carried out late; and
//! through all of it every acknowledged message is stored exactly once, gap-free.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chat_tests::raw::RawSocket;
use chat_tests::*;
use serde_json::{json, Value};

/// Resends `client_id` until it is acknowledged, as a client told `overloaded` or `timeout`
/// does (same `clientMessageId`, after the hinted pause).
async fn resend_until_stored(socket: &ChatClient, group: &str, client_id: &str) -> Value {
    loop {
        let ack = socket.send(group, client_id, client_id).await;
        if ack["ok"] == true {
            return ack;
        }
        let reason = &ack["error"]["reason"];
        assert!(
            reason == "overloaded" || reason == "send_timed_out",
            "{client_id}: {ack}"
        );
        let pause = ack["error"]["retryAfter"].as_u64().unwrap_or(1);
        tokio::time::sleep(Duration::from_secs(pause)).await;
    }
}

/// The group's messages are numbered 1..n without a gap, and each client id is stored once.
fn assert_gap_free_and_once(stored: &[Value], expected_client_ids: &HashSet<String>) {
    let seqs: Vec<i64> = stored.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=stored.len() as i64).collect::<Vec<_>>());
    let client_ids: Vec<&str> = stored
        .iter()
        .map(|m| m["clientMessageId"].as_str().unwrap())
        .collect();
    let unique: HashSet<String> = client_ids.iter().map(|c| c.to_string()).collect();
    assert_eq!(unique.len(), client_ids.len(), "a message is stored twice");
    assert_eq!(&unique, expected_client_ids);
}

#[tokio::test]
async fn a_flood_beyond_what_a_replica_waits_for_is_refused_at_once_and_nothing_acknowledged_is_lost(
) {
    let stack = RealtimeStack::start(&[
        ("CHAT_MAX_PENDING_COMMANDS", "1"),
        ("CHAT_EVENTS_PER_SECOND", "100000"),
    ])
    .await;
    let api = stack.api();
    let [ada, bob] = api.users(["ada", "bob"]).await;
    let group = api.group(&ada, "Team", &[&bob]).await;
    let n = 200;
    let client_ids: Vec<String> = (0..n).map(|i| format!("flood-{i}")).collect();

    // 200 sends at once, from four sockets of 50 each, against a replica that waits for one
    // command at a time.
    let mut floods = Vec::new();
    for ids in client_ids.chunks(50) {
        let raw = RawSocket::open(stack.chat_a.port, &ada.token).await;
        let group = group.clone();
        floods.push(async move {
            let sends = ids.iter().map(|id| {
                (
                    "chat.message.send",
                    json!({"groupId": group, "content": id, "clientMessageId": id}),
                )
            });
            raw.flood(sends).await
        });
    }
    let acks: Vec<Value> = within(
        Duration::from_secs(120),
        "every send of the flood answered",
        futures_util::future::join_all(floods),
    )
    .await
    .into_iter()
    .flatten()
    .collect();
    let mut acknowledged = Vec::new();
    let (mut refused, mut timed_out) = (0, 0);
    for ack in &acks {
        if ack["ok"] == true {
            acknowledged.push(ack["message"]["id"].as_str().unwrap().to_string());
            continue;
        }
        match ack["error"]["reason"].as_str() {
            Some("overloaded") => {
                assert_eq!(ack["error"]["code"], "unavailable", "{ack}");
                assert_eq!(ack["error"]["retryAfter"], 1, "{ack}");
                refused += 1;
            }
            Some("send_timed_out") => timed_out += 1,
            _ => panic!("unexpected answer {ack}"),
        }
    }
    println!(
        "flood of {n}: {} stored, {refused} refused at once, {timed_out} timed out",
        acknowledged.len()
    );
    assert!(
        refused >= 1,
        "a replica waiting for one command took 200 at once"
    );

    // Right after the flood, a send goes through...
    let ada_socket = ChatClient::connect(stack.chat_b.port, json!({"token": ada.token})).await;
    let start = Instant::now();
    let after = within(
        Duration::from_secs(30),
        "a send right after the flood",
        resend_until_stored(&ada_socket, &group, "after-flood"),
    )
    .await;
    println!("first send after the flood stored in {:?}", start.elapsed());
    acknowledged.push(after["message"]["id"].as_str().unwrap().to_string());
    // ...and every refused or timed-out send, resent with its client id, is stored once.
    for (id, ack) in client_ids.iter().zip(&acks) {
        if ack["ok"] != true {
            resend_until_stored(&ada_socket, &group, id).await;
        }
    }
    let stored = api.all_messages(&group, &ada).await;
    assert_stored_once(&acknowledged, &stored);
    let mut expected: HashSet<String> = client_ids.into_iter().collect();
    expected.insert("after-flood".into());
    assert_gap_free_and_once(&stored, &expected);
}

#[tokio::test]
async fn commands_whose_senders_gave_up_are_not_carried_out_late() {
    if skip_in_embedded_mode("the message role is not a process of its own") {
        return;
    }
    let stack = RealtimeStack::start(&[("CHAT_ACK_TIMEOUT_SECONDS", "1")]).await;
    let api = stack.api();
    let [ada, bob] = api.users(["ada", "bob"]).await;
    let group = api.group(&ada, "Team", &[&bob]).await;
    let ada_socket = ChatClient::connect(stack.chat_a.port, json!({"token": ada.token})).await;
    let mut bob_socket = ChatClient::connect(stack.chat_b.port, json!({"token": bob.token})).await;

    // The message role hangs (not dead: its connections stay open) past the senders' timeout.
    stack.message.signal("STOP");
    for i in 0..5 {
        let ack = ada_socket.send(&group, "late", &format!("late-{i}")).await;
        assert_eq!(ack["error"]["reason"], "send_timed_out", "{ack}");
    }
    stack.message.signal("CONT");

    // It comes back to five commands whose senders were told to retry: none is stored late.
    let fresh = resend_until_stored(&ada_socket, &group, "fresh").await;
    assert_eq!(fresh["message"]["seq"], 1, "{fresh}");
    let stored = api.all_messages(&group, &ada).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    let delivered = bob_socket
        .next("chat.message.incoming", Duration::from_secs(10))
        .await;
    assert_eq!(delivered["clientMessageId"], "fresh");

    // The senders retry, as told: each is stored once, in order, and delivered.
    for i in 0..5 {
        resend_until_stored(&ada_socket, &group, &format!("late-{i}")).await;
    }
    let stored = api.all_messages(&group, &ada).await;
    let mut expected: HashSet<String> = (0..5).map(|i| format!("late-{i}")).collect();
    expected.insert("fresh".into());
    assert_gap_free_and_once(&stored, &expected);
    let delivered = bob_socket
        .collect("chat.message.incoming", Duration::from_secs(2))
        .await;
    assert_eq!(delivered.len(), 5, "{delivered:?}");
}
