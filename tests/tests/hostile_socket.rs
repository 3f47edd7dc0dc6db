//! Hostile input on the socket (issue 16): every client event with wrong types, missing fields,
//! the wrong shape, huge strings, binary attachments, unknown event names and floods, then raw
//! Engine.IO packets no client library would send (malformed JSON, deep nesting, a payload
//! over the limit). Each is answered by an error acknowledgement or a clean disconnect, never a
//! panic or a stuck socket; the same socket still works afterwards when it was not disconnected,
//! and another user's socket on the same replica is never affected.

use std::time::Duration;

use chat_tests::raw::{Outcome, RawSocket};
use chat_tests::*;
use serde_json::{json, Value};

const EVENTS: [&str; 8] = [
    "chat.message.send",
    "chat.typing",
    "chat.message.seen",
    "chat.message.delivered",
    "chat.message.delete",
    "chat.message.edit",
    "user.heartbeat",
    "user.presence",
];

/// An error acknowledgement that blames the request (never `internal` or `unavailable`), with a
/// specific reason.
fn assert_refused(ack: &Value, what: &str) {
    assert_eq!(ack["ok"], false, "{what}: {ack}");
    let code = ack["error"]["code"].as_str().unwrap_or_default();
    assert!(
        ["bad_request", "validation", "forbidden", "not_found"].contains(&code),
        "{what}: {ack}"
    );
    assert!(ack["error"]["reason"].is_string(), "{what}: {ack}");
}

/// Bob hears Ada's message on the same replica: the replica is unaffected.
async fn still_delivers(ada: &ChatClient, bob: &mut ChatClient, group: &str, n: usize) {
    let ack = ada
        .send(group, &format!("still here {n}"), &format!("ok-{n}"))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let heard = bob
        .next("chat.message.incoming", Duration::from_secs(10))
        .await;
    assert_eq!(heard["content"], format!("still here {n}"));
}

#[tokio::test]
async fn malformed_events_get_error_acks_and_the_socket_goes_on() {
    let stack = RealtimeStack::start(&[("CHAT_EVENTS_PER_SECOND", "1000")]).await;
    let api = stack.api();
    let [ada, bob] = api.users(["ada", "bob"]).await;
    let group = api.group(&ada, "Team", &[&bob]).await;
    let port = stack.chat_a.port;
    let ada_socket = ChatClient::connect(port, json!({"token": ada.token})).await;
    let mut bob_socket = ChatClient::connect(port, json!({"token": bob.token})).await;

    let huge = "x".repeat(40_000);
    let payloads: Vec<(&str, Value)> = vec![
        ("no payload fields", json!({})),
        ("a string", json!("hello")),
        ("a number", json!(42)),
        ("null", Value::Null),
        ("an array", json!([1, 2, 3])),
        (
            "groupId a number",
            json!({"groupId": 5, "content": "x", "clientMessageId": "c"}),
        ),
        (
            "groupId an object",
            json!({"groupId": {"$ne": null}, "seq": 1}),
        ),
        ("seq a string", json!({"groupId": group, "seq": "1; drop"})),
        ("seq huge", json!({"groupId": group, "seq": 1e300})),
        (
            "messageId an array",
            json!({"groupId": group, "messageId": ["a"]}),
        ),
        (
            "content an object",
            json!({"groupId": group, "content": {"a": 1}, "clientMessageId": "c"}),
        ),
        (
            "a huge groupId",
            json!({"groupId": huge, "content": "x", "clientMessageId": "c"}),
        ),
        (
            "a huge clientMessageId",
            json!({"groupId": group, "content": "x", "clientMessageId": huge}),
        ),
        (
            "a huge content",
            json!({"groupId": group, "content": huge, "clientMessageId": "c"}),
        ),
        (
            "typing not a bool",
            json!({"groupId": group, "typing": "yes"}),
        ),
    ];
    for event in EVENTS {
        for (what, payload) in &payloads {
            let what = format!("{event} with {what}");
            let ack = ada_socket
                .try_request(event, payload.clone())
                .await
                .unwrap_or_else(|| panic!("{what}: no acknowledgement (a stuck socket)"));
            if event == "user.heartbeat" || event == "user.presence" {
                // These take no payload: whatever comes, they answer.
                assert!(ack.get("ok").is_some(), "{what}: {ack}");
                continue;
            }
            // With the real group, an event may ignore a field it does not read (typing and a
            // `seq`): then it may succeed. Without it, every event is refused.
            let names_the_group = payload.get("groupId") == Some(&json!(group));
            if names_the_group && ack["ok"] == true {
                continue;
            }
            assert_refused(&ack, &what);
        }
    }
    // Nothing of it was stored.
    assert!(api.all_messages(&group, &ada).await.is_empty());
    still_delivers(&ada_socket, &mut bob_socket, &group, 1).await;

    // An unknown event is refused by name; a binary payload is dropped; the socket goes on.
    let unknown = ada_socket
        .request("no.such.event", json!({"groupId": group}))
        .await;
    assert_eq!(unknown["error"]["reason"], "unknown_event", "{unknown}");
    assert_eq!(unknown["error"]["code"], "bad_request", "{unknown}");
    ada_socket
        .emit_binary("chat.message.send", vec![0u8; 1024])
        .await;
    still_delivers(&ada_socket, &mut bob_socket, &group, 2).await;
    assert_eq!(api.all_messages(&group, &ada).await.len(), 2);
}

#[tokio::test]
async fn a_flood_of_bad_events_is_rate_limited_like_good_ones() {
    let stack = RealtimeStack::start(&[("CHAT_EVENTS_PER_SECOND", "1")]).await;
    let api = stack.api();
    let [ada, bob] = api.users(["ada", "bob"]).await;
    let group = api.group(&ada, "Team", &[&bob]).await;
    let mut bob_socket = ChatClient::connect(stack.chat_a.port, json!({"token": bob.token})).await;
    // 30 malformed events in one request against one event a second: whatever the machine's
    // speed, some are refused as too many, the others as malformed. A raw client sends them,
    // because a library client's acknowledgement ids may repeat among 30 at once.
    let raw = RawSocket::open(stack.chat_a.port, &ada.token).await;
    let acks = raw
        .flood((0..30).map(|_| ("chat.message.send", json!({"nonsense": true}))))
        .await;
    let limited = acks
        .iter()
        .filter(|ack| ack["error"]["reason"] == "rate_limited")
        .count();
    for ack in &acks {
        assert_eq!(ack["ok"], false, "{ack}");
        let reason = &ack["error"]["reason"];
        assert!(
            reason == "rate_limited" || reason == "invalid_payload",
            "{ack}"
        );
    }
    assert!(limited >= 1, "none of 30 malformed events was rate limited");
    // Bob, on the same replica, is not held back by Ada's flood.
    let ack = bob_socket.send(&group, "hello", "b-1").await;
    assert_eq!(ack["ok"], true, "{ack}");
    let _ = bob_socket
        .collect("chat.message.incoming", Duration::from_millis(200))
        .await;
}

#[tokio::test]
async fn raw_packets_no_library_would_send_get_an_error_or_a_clean_disconnect() {
    let stack = RealtimeStack::start(&[]).await;
    let api = stack.api();
    let [ada, bob] = api.users(["ada", "bob"]).await;
    let group = api.group(&ada, "Team", &[&bob]).await;
    let port = stack.chat_a.port;
    let mut bob_socket = ChatClient::connect(port, json!({"token": bob.token})).await;
    let ada_socket = ChatClient::connect(port, json!({"token": ada.token})).await;

    let deep = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
    let over_limit = format!(
        "421[\"chat.message.send\",{{\"groupId\":\"{group}\",\"content\":\"{}\"}}]",
        "y".repeat(200_000)
    );
    let packets = [
        (
            "malformed JSON",
            "421[\"chat.message.send\",{\"groupId\":".to_string(),
        ),
        ("deep nesting", format!("421[\"chat.message.send\",{deep}]")),
        ("an unknown packet type", "49garbage".to_string()),
        ("no event name", "421[]".to_string()),
        ("a non-string event name", "421[42,{}]".to_string()),
        ("a payload over the limit", over_limit),
    ];
    for (what, packet) in packets {
        let raw = RawSocket::open(port, &ada.token).await;
        raw.post(&packet).await;
        // An error acknowledgement, a packet dropped by a socket that goes on, or a clean end of
        // the session: never a hang, never a panic.
        let outcome = raw.outcome().await;
        eprintln!("{what}: {outcome:?}");
        if let Outcome::Answered(ack) = &outcome {
            assert_eq!(ack["ok"], false, "{what}: {ack}");
        }
        let health = Api::new(port).get("/health", None).await;
        assert_eq!(
            health.status,
            reqwest::StatusCode::OK,
            "{what}: the server is up"
        );
    }
    // The others on the replica never noticed.
    still_delivers(&ada_socket, &mut bob_socket, &group, 1).await;
}
