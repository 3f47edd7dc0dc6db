//! Real-time chat end to end: gateway, auth, group, message and two chat replicas as separate
//! processes on the real infrastructure, driven by Socket.IO clients (the `rust_socketio` crate,
//! and the stock `socket.io-client` from npm).

use std::time::{Duration, Instant};

use chat_tests::{within, ChatClient, RealtimeStack, User};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(15);

async fn group_of(stack: &RealtimeStack, admin: &User, members: &[&User]) -> String {
    stack.api().group(admin, "Team", members).await
}

async fn client(port: u16, user: &User) -> ChatClient {
    ChatClient::connect(port, json!({"token": user.token})).await
}

async fn history(
    stack: &RealtimeStack,
    user: &User,
    group: &str,
    query: &str,
) -> chat_tests::Response {
    stack
        .api()
        .send(stack.api().authed(
            Method::GET,
            &format!("/groups/{group}/messages{query}"),
            user,
        ))
        .await
}

/// Sends `id` as content and client message id, waiting and retrying while the socket is over
/// its event budget, as a client that resends a backlog does; `None` when no answer comes.
async fn send_within_rate_limit(client: &ChatClient, group: &str, id: &str) -> Option<Value> {
    let data = json!({"groupId": group, "content": id, "clientMessageId": id});
    loop {
        let answer = client.try_request("chat.message.send", data.clone()).await;
        if !answer
            .as_ref()
            .is_some_and(|ack| ack["error"]["code"] == "rate_limited")
        {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The settings that relay facts over Redis pub/sub, or `None` (the test skipped) against
/// `chat-server all`, whose facts stay in-process.
fn redis_relay() -> Option<&'static [(&'static str, &'static str)]> {
    let skip = chat_tests::skip_in_embedded_mode("chat-server all has no relay");
    (!skip).then_some(&[("FACTS_RELAY", "redis")])
}

/// What `redis-cli` prints for `args` against the suite's Redis (`--no-raw`: integers say so).
fn redis_cli(args: &[&str]) -> String {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let out = std::process::Command::new("redis-cli")
        .args(["-u", &url, "--no-raw"])
        .args(args)
        .output()
        .expect("redis-cli (scripts/infra.sh installs redis-server, which brings it)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The first integer in `redis-cli`'s answer.
fn integer(answer: &str) -> u64 {
    answer
        .lines()
        .find_map(|l| l.split("(integer)").nth(1))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no integer in {answer:?}"))
}

/// How many connections Redis has subscribed to `channel` (`PUBSUB NUMSUB`: `1) "<channel>"`
/// then `2) (integer) N`).
fn facts_subscribers(channel: &str) -> u64 {
    integer(&redis_cli(&["PUBSUB", "NUMSUB", channel]))
}

/// A stack on the Redis relay, its facts channel, ada and bob, and a group of the two.
async fn relay_stack(relay: &[(&str, &str)]) -> (RealtimeStack, String, User, User, String) {
    let stack = RealtimeStack::start(relay).await;
    let channel = format!("{}.chat.facts", stack.stack.deployment.namespace);
    let (ada, bob) = (stack.api().user("ada").await, stack.api().user("bob").await);
    let group = group_of(&stack, &ada, &[&bob]).await;
    (stack, channel, ada, bob, group)
}

/// Redis drops every pub/sub connection (`CLIENT KILL TYPE pubsub`), the stack's three among
/// them: for the shared-server tests only, which run alone.
fn drop_every_subscription() {
    let killed = integer(&redis_cli(&["CLIENT", "KILL", "TYPE", "pubsub"]));
    assert!(
        killed >= 3,
        "the stack's three subscriptions were dropped ({killed})"
    );
}

/// Waits (a hang guard of 30 s) until the stack's three followers of the facts, both chat
/// replicas and the message role, are subscribed to `channel` again.
async fn three_subscribers_again(channel: &str) {
    within(
        Duration::from_secs(30),
        "three subscriptions again",
        async {
            while facts_subscribers(channel) < 3 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        },
    )
    .await;
}

fn assert_ok(ack: &Value) {
    assert_eq!(ack["ok"], true, "ack: {ack}");
}

#[tokio::test]
async fn a_message_sent_through_replica_a_reaches_a_member_on_replica_b() {
    across_replicas(&[]).await
}

/// The same over the Redis relay of facts (`FACTS_RELAY=redis`).
#[tokio::test]
async fn a_message_sent_through_replica_a_reaches_a_member_on_replica_b_over_the_redis_relay() {
    if let Some(relay) = redis_relay() {
        across_replicas(relay).await
    }
}

async fn across_replicas(relay: &[(&str, &str)]) {
    let stack = RealtimeStack::start(relay).await;
    if !relay.is_empty() {
        // Both chat replicas and the message role (its membership cache) follow the facts on
        // Redis, not on Kafka.
        let channel = format!("{}.chat.facts", stack.stack.deployment.namespace);
        assert_eq!(facts_subscribers(&channel), 3, "subscribers of {channel}");
    }
    let (ada, bob) = (stack.api().user("ada").await, stack.api().user("bob").await);
    let group = group_of(&stack, &ada, &[&bob]).await;
    let a = client(stack.chat_a.port, &ada).await;
    let mut b = client(stack.chat_b.port, &bob).await;

    let start = Instant::now();
    let ack = a.send(&group, "hello from A", "m-1").await;
    assert_ok(&ack);
    assert_eq!(ack["message"]["seq"], 1);
    assert_eq!(ack["message"]["senderId"], ada.id.as_str());
    let received = b.next("chat.message.incoming", WAIT).await;
    println!("send on A -> received on B: {:?}", start.elapsed());
    assert_eq!(received["content"], "hello from A");
    assert_eq!(received["seq"], 1);
    assert_eq!(received["groupId"], group.as_str());

    // GET /groups shows the last message and the unread count.
    let groups = stack
        .api()
        .send(stack.api().authed(Method::GET, "/groups", &bob))
        .await;
    assert_eq!(groups.body[0]["lastMessage"]["content"], "hello from A");
    assert_eq!(groups.body[0]["unreadCount"], 1);
}

/// Redis drops every subscription at once (`CLIENT KILL TYPE pubsub`: a restart or failover
/// as subscribers see it; among the shared-server tests, which run alone): both chat replicas
/// and the message role subscribe again by themselves, and messages cross replicas as before.
#[tokio::test]
async fn broker_restart_drops_the_redis_relays_subscriptions_and_they_come_back() {
    let Some(relay) = redis_relay() else {
        return;
    };
    let (stack, channel, ada, bob, group) = relay_stack(relay).await;
    let a = client(stack.chat_a.port, &ada).await;
    let mut b = client(stack.chat_b.port, &bob).await;
    assert_ok(&a.send(&group, "before", "r-1").await);
    assert_eq!(
        b.next("chat.message.incoming", WAIT).await["content"],
        "before"
    );

    drop_every_subscription();
    three_subscribers_again(&channel).await;
    assert_ok(&a.send(&group, "after", "r-2").await);
    let after = b.next("chat.message.incoming", WAIT).await;
    assert_eq!(
        (after["content"].as_str(), after["seq"].as_i64()),
        (Some("after"), Some(2))
    );
}

/// A replica that misses facts while it has no subscription (Redis drops them all while the
/// replica is stopped, so it cannot subscribe again before a member is removed): once it has
/// subscribed again, its sockets are put back in the rooms of the groups their users belong to
/// now. The removed member's socket hears that it left and no longer receives the group's
/// messages; every socket is asked to refetch each of its groups (`chat.resync`, from the last
/// `seq` the replica delivered). Among the shared-server tests, which run alone.
#[tokio::test]
async fn broker_restart_while_a_replica_is_stopped_resynchronises_its_sockets() {
    let Some(relay) = redis_relay() else {
        return;
    };
    let (stack, channel, ada, bob, group) = relay_stack(relay).await;
    let other = group_of(&stack, &ada, &[&bob]).await;
    let mut a = client(stack.chat_a.port, &ada).await;
    let mut b = client(stack.chat_a.port, &bob).await;
    assert_ok(&a.send(&group, "before", "s-1").await);
    assert_eq!(
        b.next("chat.message.incoming", WAIT).await["content"],
        "before"
    );

    a.drain();
    stack.chat_a.signal("STOP");
    drop_every_subscription();
    let api = stack.api();
    let remove = api.authed(
        Method::DELETE,
        &format!("/groups/{group}/members/{}", bob.id),
        &ada,
    );
    assert_eq!(api.send(remove).await.status, StatusCode::NO_CONTENT);
    stack.chat_a.signal("CONT");
    three_subscribers_again(&channel).await;

    let removed = b.next("group.member.removed", WAIT).await;
    assert_eq!(
        (removed["groupId"].as_str(), removed["userId"].as_str()),
        (Some(group.as_str()), Some(bob.id.as_str()))
    );
    let mut resyncs = [
        a.next("chat.resync", WAIT).await,
        a.next("chat.resync", WAIT).await,
    ];
    resyncs.sort_by_key(|r| r["groupId"] != group.as_str());
    assert_eq!(resyncs[0], json!({"groupId": group, "fromSeq": 1}));
    assert_eq!(resyncs[1], json!({"groupId": other, "fromSeq": 0}));
    // And who is online now, as on connect: bob, whose socket is on this replica.
    let presence = a.next("user.presence", WAIT).await;
    assert_eq!(presence["users"][0]["userId"], bob.id.as_str());
    assert_eq!(presence["users"][0]["isOnline"], true);

    // Counted where an operator would look.
    let metrics = chat_tests::Api::new(stack.chat_a.port)
        .get("/metrics", None)
        .await
        .text;
    assert!(
        metrics.contains("chat_facts_resubscribed_total 1"),
        "replica A counts its new subscription: {metrics}"
    );

    // The group's next message does not reach the removed member; the other group's does.
    assert_ok(&a.send(&group, "after removal", "s-2").await);
    assert_ok(&a.send(&other, "still a member", "s-3").await);
    let next = b.next("chat.message.incoming", WAIT).await;
    assert_eq!(
        (next["groupId"].as_str(), next["content"].as_str()),
        (Some(other.as_str()), Some("still a member"))
    );
}

#[tokio::test]
async fn per_group_order_holds_with_concurrent_senders() {
    order_with_concurrent_senders(&[]).await
}

/// The same over the Redis relay of facts (`FACTS_RELAY=redis`).
#[tokio::test]
async fn per_group_order_holds_with_concurrent_senders_over_the_redis_relay() {
    if let Some(relay) = redis_relay() {
        order_with_concurrent_senders(relay).await
    }
}

async fn order_with_concurrent_senders(relay: &[(&str, &str)]) {
    let stack = RealtimeStack::start(relay).await;
    let api = stack.api();
    let users = [
        api.user("ann").await,
        api.user("ben").await,
        api.user("cat").await,
    ];
    let group = group_of(&stack, &users[0], &[&users[1], &users[2]]).await;
    let mut listener = client(stack.chat_b.port, &users[0]).await;

    let per_sender = 15;
    let mut tasks = Vec::new();
    for (i, user) in users.iter().enumerate() {
        let port = if i % 2 == 0 {
            stack.chat_a.port
        } else {
            stack.chat_b.port
        };
        let socket = client(port, user).await;
        let group = group.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..per_sender {
                let ack = socket
                    .send(&group, &format!("{i}:{n:02}"), &format!("{i}-{n}"))
                    .await;
                assert_eq!(ack["ok"], true, "{ack}");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let total = 3 * per_sender;
    let page = history(&stack, &users[0], &group, "?after=0&limit=100").await;
    let data = page.body["data"].as_array().unwrap();
    assert_eq!(data.len(), total);
    let seqs: Vec<i64> = data.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=total as i64).collect::<Vec<_>>(),
        "sequence numbers have gaps or repeats"
    );
    for i in 0..3 {
        let mine: Vec<&str> = data
            .iter()
            .map(|m| m["content"].as_str().unwrap())
            .filter(|c| c.starts_with(&format!("{i}:")))
            .collect();
        let expected: Vec<String> = (0..per_sender).map(|n| format!("{i}:{n:02}")).collect();
        assert_eq!(mine, expected, "sender {i}'s messages are out of order");
    }
    // A listener receives them in sequence order too.
    let mut received = Vec::new();
    while received.len() < total {
        received.push(
            listener.next("chat.message.incoming", WAIT).await["seq"]
                .as_i64()
                .unwrap(),
        );
    }
    assert_eq!(received, seqs);
}

/// One client's messages are numbered in the order it sent them, even when it sends many at
/// once without waiting for acknowledgements (30 sends in one long-polling request).
#[tokio::test]
async fn a_socket_sending_without_waiting_keeps_its_order() {
    let stack = RealtimeStack::start(&[("CHAT_EVENTS_PER_SECOND", "1000")]).await;
    let [ada, bob] = stack.api().users(["ada", "bob"]).await;
    let group = group_of(&stack, &ada, &[&bob]).await;
    let socket = chat_tests::raw::RawSocket::open(stack.chat_a.port, &ada.token).await;
    let sends = (0..30).map(|i| {
        let send = json!({"groupId": group, "content": format!("m{i}"), "clientMessageId": format!("burst-{i}")});
        ("chat.message.send", send)
    });
    let acks = socket.flood(sends).await;
    let seqs: Vec<i64> = acks
        .iter()
        .map(|ack| {
            assert_ok(ack);
            ack["message"]["seq"].as_i64().unwrap()
        })
        .collect();
    assert_eq!(
        seqs,
        (1..=30).collect::<Vec<i64>>(),
        "numbered in the order sent"
    );
}

#[tokio::test]
async fn a_retried_send_is_stored_once() {
    let stack = RealtimeStack::start(&[]).await;
    let (ada, bob) = (stack.api().user("ada").await, stack.api().user("bob").await);
    let group = group_of(&stack, &ada, &[&bob]).await;
    let a = client(stack.chat_a.port, &ada).await;
    let first = a.send(&group, "once", "same-id").await;
    let again = a.send(&group, "once", "same-id").await;
    assert_ok(&again);
    assert_eq!(first["message"]["id"], again["message"]["id"]);
    let page = history(&stack, &ada, &group, "").await;
    assert_eq!(page.body["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn history_pages_back_and_catches_up_exactly() {
    let stack = RealtimeStack::start(&[]).await;
    let (ada, bob) = (stack.api().user("ada").await, stack.api().user("bob").await);
    let group = group_of(&stack, &ada, &[&bob]).await;
    let a = client(stack.chat_a.port, &ada).await;
    for n in 1..=7 {
        assert_ok(&a.send(&group, &format!("m{n}"), &format!("c{n}")).await);
    }
    let newest = history(&stack, &bob, &group, "?limit=3").await;
    let seqs: Vec<i64> = newest.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, vec![7, 6, 5]);
    assert_eq!(newest.body["hasMore"], true);
    let older = history(&stack, &bob, &group, "?before=5&limit=10").await;
    let seqs: Vec<i64> = older.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, vec![4, 3, 2, 1]);
    assert_eq!(older.body["hasMore"], false);
    let caught_up = history(&stack, &bob, &group, "?after=5").await;
    let contents: Vec<&str> = caught_up.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, vec!["m6", "m7"]);
    history(&stack, &bob, &group, "?limit=101")
        .await
        .assert_error(400);
    // Both cursors: what lies between them, oldest first.
    let between = history(&stack, &bob, &group, "?after=2&before=6&limit=2").await;
    let seqs: Vec<i64> = between.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, vec![3, 4], "{}", between.text);
    assert_eq!(between.body["hasMore"], true);
    let rest = history(&stack, &bob, &group, "?after=4&before=6&limit=2").await;
    assert_eq!(rest.body["data"][0]["seq"], 5, "{}", rest.text);
    assert_eq!(rest.body["hasMore"], false, "{}", rest.text);
    history(&stack, &bob, &group, "?limit=abc")
        .await
        .assert_error(400);

    let found = stack
        .api()
        .send(
            stack
                .api()
                .authed(Method::GET, "/messages/search?q=M7", &bob),
        )
        .await;
    assert_eq!(found.body.as_array().unwrap().len(), 1, "{}", found.text);
}

#[tokio::test]
async fn non_members_can_neither_send_read_see_nor_delete() {
    let stack = RealtimeStack::start(&[]).await;
    let api = stack.api();
    let (ada, bob, eve) = (
        api.user("ada").await,
        api.user("bob").await,
        api.user("eve").await,
    );
    let group = group_of(&stack, &ada, &[&bob]).await;
    let a = client(stack.chat_a.port, &ada).await;
    let sent = a.send(&group, "secret", "s-1").await;
    let message_id = sent["message"]["id"].as_str().unwrap().to_string();

    let e = client(stack.chat_b.port, &eve).await;
    let refused = e.send(&group, "let me in", "e-1").await;
    assert_eq!(refused["ok"], false);
    assert_eq!(refused["error"]["code"], "forbidden");
    assert_eq!(refused["error"]["reason"], "not_member");
    let seen = e
        .request("chat.message.seen", json!({"groupId": group, "seq": 1}))
        .await;
    assert_eq!(seen["error"]["code"], "forbidden");
    let delete = e
        .request(
            "chat.message.delete",
            json!({"groupId": group, "messageId": message_id}),
        )
        .await;
    assert_eq!(delete["error"]["code"], "forbidden");
    assert_eq!(delete["error"]["reason"], "not_member", "{delete}");
    history(&stack, &eve, &group, "").await.assert_error(404);
    let found = api
        .send(api.authed(Method::GET, "/messages/search?q=secret", &eve))
        .await;
    assert!(found.body.as_array().unwrap().is_empty());

    // A member who is not the sender or an admin cannot delete either.
    let b = client(stack.chat_b.port, &bob).await;
    let denied = b
        .request(
            "chat.message.delete",
            json!({"groupId": group, "messageId": message_id}),
        )
        .await;
    assert_eq!(denied["error"]["code"], "forbidden", "{denied}");
    let malformed = b
        .request("chat.message.send", json!({"content": "no group"}))
        .await;
    assert_eq!(malformed["error"]["code"], "bad_request");
    assert_eq!(malformed["error"]["reason"], "invalid_payload");
    let too_long = b.send(&group, &"x".repeat(4001), "long").await;
    assert_eq!(too_long["error"]["code"], "validation");
}

#[tokio::test]
async fn seen_and_delete_reach_the_other_members() {
    let stack = RealtimeStack::start(&[]).await;
    let (ada, bob) = (stack.api().user("ada").await, stack.api().user("bob").await);
    let group = group_of(&stack, &ada, &[&bob]).await;
    let mut a = client(stack.chat_a.port, &ada).await;
    let b = client(stack.chat_b.port, &bob).await;
    let sent = a.send(&group, "read me", "r-1").await;
    let message_id = sent["message"]["id"].as_str().unwrap().to_string();

    assert_ok(
        &b.request("chat.message.seen", json!({"groupId": group, "seq": 1}))
            .await,
    );
    let seen = a.next("chat.message.seen", WAIT).await;
    assert_eq!(
        (seen["userId"].as_str(), seen["seq"].as_i64()),
        (Some(bob.id.as_str()), Some(1))
    );
    let groups = stack
        .api()
        .send(stack.api().authed(Method::GET, "/groups", &bob))
        .await;
    assert_eq!(groups.body[0]["unreadCount"], 0);
    // The seed's form names the message instead of its seq.
    let by_id = b
        .request(
            "chat.message.seen",
            json!({"groupId": group, "messageId": message_id}),
        )
        .await;
    assert_ok(&by_id);
    assert_eq!(by_id["seq"], 1, "{by_id}");
    let seen = a.next("chat.message.seen", WAIT).await;
    assert_eq!(seen["seq"], 1, "{seen}");
    let unknown = b
        .request(
            "chat.message.seen",
            json!({"groupId": group, "messageId": "665f1f77bcf86cd799439011"}),
        )
        .await;
    assert_eq!(unknown["error"]["reason"], "message_not_found", "{unknown}");
    let both = b
        .request(
            "chat.message.seen",
            json!({"groupId": group, "seq": 1, "messageId": message_id}),
        )
        .await;
    assert_eq!(both["error"]["code"], "bad_request", "{both}");
    let bad_seq = b
        .request("chat.message.seen", json!({"groupId": group, "seq": 99}))
        .await;
    assert_eq!(bad_seq["error"]["code"], "validation");
    assert_eq!(bad_seq["error"]["reason"], "seq_out_of_range");

    assert_ok(
        &a.request(
            "chat.message.delete",
            json!({"groupId": group, "messageId": message_id}),
        )
        .await,
    );
    let deleted = a.next("chat.message.deleted", WAIT).await;
    assert_eq!(deleted["messageId"], message_id.as_str());
    let page = history(&stack, &bob, &group, "").await;
    assert_eq!(page.body["data"][0]["deleted"], true);
    assert!(
        page.body["data"][0].get("content").is_none(),
        "a tombstone keeps no content"
    );
}

#[tokio::test]
async fn a_new_group_reaches_connected_members_at_once() {
    let stack = RealtimeStack::start(&[]).await;
    let (ada, bob) = (stack.api().user("ada").await, stack.api().user("bob").await);
    let a = client(stack.chat_a.port, &ada).await;
    let mut b = client(stack.chat_b.port, &bob).await;
    let group = group_of(&stack, &ada, &[&bob]).await;
    let created = b.next("group.created", WAIT).await;
    assert_eq!(created["id"], group.as_str());
    // Both sockets joined the new room without reconnecting, on both replicas.
    assert_ok(&a.send(&group, "first words", "f-1").await);
    assert_eq!(
        b.next("chat.message.incoming", WAIT).await["content"],
        "first words"
    );
}

#[tokio::test]
async fn a_reconnecting_client_receives_exactly_what_it_missed() {
    let stack = RealtimeStack::start(&[]).await;
    let (ada, bob) = (stack.api().user("ada").await, stack.api().user("bob").await);
    let group = group_of(&stack, &ada, &[&bob]).await;
    let a = client(stack.chat_a.port, &ada).await;
    let mut b = client(stack.chat_b.port, &bob).await;
    assert_ok(&a.send(&group, "m1", "c1").await);
    assert_eq!(b.next("chat.message.incoming", WAIT).await["seq"], 1);
    b.disconnect().await;

    for n in 2..=4 {
        assert_ok(&a.send(&group, &format!("m{n}"), &format!("c{n}")).await);
    }
    let mut b = ChatClient::connect(
        stack.chat_a.port,
        json!({"token": bob.token, "lastSeq": {group.clone(): 1}}),
    )
    .await;
    let replayed = b
        .collect("chat.message.incoming", Duration::from_secs(2))
        .await;
    let contents: Vec<&str> = replayed
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, vec!["m2", "m3", "m4"]);
}

#[tokio::test]
async fn a_negative_last_seq_replays_from_the_start() {
    let stack = RealtimeStack::start(&[]).await;
    let (ada, bob) = (stack.api().user("ada").await, stack.api().user("bob").await);
    let group = group_of(&stack, &ada, &[&bob]).await;
    let a = client(stack.chat_a.port, &ada).await;
    assert_ok(&a.send(&group, "m1", "c1").await);
    // A confused client's negative cursor is treated as 0.
    let mut b = ChatClient::connect(
        stack.chat_b.port,
        json!({"token": bob.token, "lastSeq": {group.clone(): -5}}),
    )
    .await;
    assert_eq!(b.next("chat.message.incoming", WAIT).await["content"], "m1");
}

#[tokio::test]
async fn killing_the_message_role_mid_stream_loses_no_acknowledged_message() {
    if chat_tests::skip_in_embedded_mode("the message role is not a separate process (see embedded.rs for SIGKILL of the whole process)") {
        return;
    }
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    let mut stack = RealtimeStack::start(&[]).await;
    let (ada, bob) = (stack.api().user("ada").await, stack.api().user("bob").await);
    let group = group_of(&stack, &ada, &[&bob]).await;
    let a = client(stack.chat_a.port, &ada).await;
    let total = 30;
    let acked = Arc::new(AtomicUsize::new(0));
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let (count, ids, g) = (acked.clone(), acknowledged.clone(), group.clone());
    // The client keeps sending; an unacknowledged send is retried with the same clientMessageId,
    // as a real client would after a timeout.
    let sender = tokio::spawn(async move {
        for n in 0..total {
            for _attempt in 0..6 {
                let ack = a.send(&g, &format!("n{n:02}"), &format!("k{n}")).await;
                if ack["ok"] == true {
                    ids.lock()
                        .unwrap()
                        .push(ack["message"]["id"].as_str().unwrap().to_string());
                    count.fetch_add(1, Ordering::SeqCst);
                    break;
                }
            }
        }
    });
    for kill_after in [8, 18] {
        while acked.load(Ordering::SeqCst) < kill_after {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stack.message.kill();
        stack.message = stack.stack.deployment.spawn("message").await;
    }
    sender.await.unwrap();

    let page = history(&stack, &ada, &group, "?after=0&limit=100").await;
    let data = page.body["data"].as_array().unwrap();
    let stored: Vec<&str> = data.iter().map(|m| m["id"].as_str().unwrap()).collect();
    let acknowledged = acknowledged.lock().unwrap();
    for id in acknowledged.iter() {
        assert_eq!(
            stored.iter().filter(|s| *s == id).count(),
            1,
            "acknowledged message {id} is not stored exactly once"
        );
    }
    let seqs: Vec<i64> = data.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=data.len() as i64).collect::<Vec<_>>(),
        "gaps or repeats in the sequence"
    );
    assert_eq!(
        acknowledged.len(),
        total,
        "every send was eventually acknowledged"
    );
    assert_eq!(data.len(), total, "each clientMessageId is stored once");
}

#[tokio::test]
async fn the_stock_socket_io_client_connects_as_the_seed_shows() {
    let stack = RealtimeStack::start(&[]).await;
    let script = chat_tests::package_dir().join("js/e2e.mjs");
    assert!(
        chat_tests::package_dir()
            .join("js/node_modules/socket.io-client")
            .exists(),
        "socket.io-client is not installed: run `npm ci --prefix tests/js` (scripts/test.sh does)"
    );
    let out = tokio::process::Command::new("node")
        .arg(&script)
        .env("API_URL", &stack.api().base)
        .env(
            "CHAT_A_URL",
            format!("http://127.0.0.1:{}", stack.chat_a.port),
        )
        .env(
            "CHAT_B_URL",
            format!("http://127.0.0.1:{}", stack.chat_b.port),
        )
        .output()
        .await
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("stock socket.io-client: {stdout}");
}

#[tokio::test]
async fn presence_is_announced_to_co_members_and_last_seen_is_kept() {
    let stack = RealtimeStack::start(&[]).await;
    let (ada, bob) = (stack.api().user("ada").await, stack.api().user("bob").await);
    group_of(&stack, &ada, &[&bob]).await;
    let mut b = client(stack.chat_b.port, &bob).await;

    // Ada's first socket brings her online; a second one (other replica) does not announce again.
    let a1 = client(stack.chat_a.port, &ada).await;
    assert_eq!(b.next("user.online", WAIT).await["userId"], ada.id.as_str());
    let a2 = client(stack.chat_b.port, &ada).await;
    let heartbeat = a2.request("user.heartbeat", json!({})).await;
    assert_ok(&heartbeat);
    assert!(b
        .collect("user.online", Duration::from_millis(500))
        .await
        .is_empty());

    // Only when her last socket closes is she offline, with a last-seen time that is stored.
    a1.disconnect().await;
    assert!(b
        .collect("user.offline", Duration::from_millis(700))
        .await
        .is_empty());
    a2.disconnect().await;
    let offline = b.next("user.offline", WAIT).await;
    assert_eq!(offline["userId"], ada.id.as_str());
    let mut stored = Value::Null;
    for _ in 0..50 {
        let profile = stack
            .api()
            .send(
                stack
                    .api()
                    .authed(Method::GET, &format!("/users/{}", ada.id), &bob),
            )
            .await;
        stored = profile.body["lastSeenAt"].clone();
        if !stored.is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        stored, offline["lastSeenAt"],
        "last seen is persisted on the user"
    );
}

#[tokio::test]
async fn a_socket_flooding_events_is_rate_limited() {
    let stack = RealtimeStack::start(&[]).await;
    let ada = stack.api().user("ada").await;
    let a = client(stack.chat_a.port, &ada).await;
    let mut limited = 0;
    for _ in 0..60 {
        let ack = a.request("user.heartbeat", json!({})).await;
        if ack["ok"] == false {
            assert_eq!(ack["error"]["code"], "rate_limited", "{ack}");
            limited += 1;
        }
    }
    assert!(
        limited > 0,
        "60 events in a burst must exceed 20 per second"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_ok(&a.request("user.heartbeat", json!({})).await);
}

/// A rolling upgrade of the chat role: replica A gets SIGTERM while Ada is sending through it.
/// Every acknowledged message is stored and delivered; the rest are refused or unanswered, and
/// resending them (same `clientMessageId`) through replica B stores each exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_replica_stopping_mid_stream_loses_no_message() {
    if chat_tests::skip_in_embedded_mode("there is one process, not two chat replicas") {
        return;
    }
    let mut stack = RealtimeStack::start(&[]).await;
    let [ada, bob] = stack.api().users(["ada", "bob"]).await;
    let group = group_of(&stack, &ada, &[&bob]).await;
    let a = std::sync::Arc::new(client(stack.chat_a.port, &ada).await);
    let mut b = client(stack.chat_b.port, &bob).await;

    let (senders, per_sender) = (3, 25);
    let mut tasks = Vec::new();
    for s in 0..senders {
        let (a, group) = (a.clone(), group.clone());
        tasks.push(tokio::spawn(async move {
            let mut unacknowledged = Vec::new();
            for n in 0..per_sender {
                let id = format!("s{s}-{n}");
                // Three senders share one socket's event budget.
                match send_within_rate_limit(&a, &group, &id).await {
                    Some(ack) if ack["ok"] == true => {}
                    Some(ack) => {
                        assert_eq!(ack["error"]["code"], "unavailable", "{ack}");
                        unacknowledged.push(id);
                    }
                    None => unacknowledged.push(id),
                }
            }
            unacknowledged
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    // The senders keep going on the other worker while this one waits for the exit.
    let status = tokio::task::block_in_place(|| stack.chat_a.terminate(Duration::from_secs(30)))
        .expect("replica A exits after SIGTERM");
    assert!(status.success(), "replica A exited with {status}");
    let drained_in = started.elapsed();
    let mut resend = Vec::new();
    for task in tasks {
        resend.extend(task.await.unwrap());
    }
    let mut a = std::sync::Arc::try_unwrap(a).unwrap_or_else(|_| unreachable!());
    assert!(
        !a.collect("server.restarting", Duration::from_millis(100))
            .await
            .is_empty(),
        "clients are told to reconnect"
    );
    // The client reconnects to the other replica and resends what was not acknowledged.
    let a2 = client(stack.chat_b.port, &ada).await;
    for id in &resend {
        let ack = send_within_rate_limit(&a2, &group, id).await;
        assert_ok(&ack.expect("an acknowledgement"));
    }
    let total = senders * per_sender;
    let all = stack.api().all_messages(&group, &bob).await;
    let stored: Vec<&str> = all.iter().map(|m| m["content"].as_str().unwrap()).collect();
    let distinct: std::collections::BTreeSet<&str> = stored.iter().copied().collect();
    assert_eq!(stored.len(), total, "each message stored once: {stored:?}");
    assert_eq!(distinct.len(), total);
    let seqs: Vec<i64> = all.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=total as i64).collect::<Vec<_>>(),
        "gap-free sequences"
    );
    // Bob, on the surviving replica, received every message.
    let received = b
        .collect("chat.message.incoming", Duration::from_secs(2))
        .await;
    let received: std::collections::BTreeSet<&str> = received
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(received.len(), total, "bob missed some");
    println!(
        "drained in {drained_in:?}; {} of {total} sends resent after the reconnect",
        resend.len()
    );
}

/// A browser app on another origin (a Vite dev server on :5173) reaches chat over both
/// Socket.IO transports: the polling handshake carries the CORS header for the configured
/// origin, and none for another.
#[tokio::test]
async fn socket_io_polling_answers_cors_for_the_configured_origin() {
    let stack = RealtimeStack::start(&[("CORS_ALLOWED_ORIGINS", "http://localhost:5173")]).await;
    let http = reqwest::Client::new();
    let url = format!(
        "http://127.0.0.1:{}/socket.io/?EIO=4&transport=polling",
        stack.chat_a.port
    );
    let handshake = |origin: &'static str| http.get(&url).header("origin", origin).send();
    let allowed = handshake("http://localhost:5173").await.unwrap();
    assert_eq!(allowed.status(), 200);
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "http://localhost:5173"
    );
    let body = allowed.text().await.unwrap();
    assert!(body.starts_with('0') && body.contains("\"sid\""), "{body}");
    let denied = handshake("http://evil.example").await.unwrap();
    assert!(denied
        .headers()
        .get("access-control-allow-origin")
        .is_none());
}

/// A frontend on another origin, in a real browser: headless Chromium (Debian's, driven by
/// playwright-core) loads a page from a server on localhost, as a Vite dev server would serve
/// it, registers and creates a group with `fetch`, sends with the stock socket.io-client on
/// long-polling (every request a cross-origin XHR) and receives on WebSocket. A page on
/// another origin is refused by the browser, REST and polling alike (tests/js/browser.mjs).
#[tokio::test]
async fn a_browser_frontend_on_another_origin_uses_rest_and_both_transports() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let js = chat_tests::package_dir().join("js");
    assert!(
        js.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `npm ci --prefix tests/js` (scripts/test.sh does)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "no Chromium at {chromium}: install Debian's `chromium` (scripts/test.sh does) or set CHROMIUM"
    );
    let mut node = tokio::process::Command::new("node")
        .arg(js.join("browser.mjs"))
        .env("CHROMIUM", &chromium)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    // The page server's origin first: the stack allows exactly that one.
    let mut stdout = tokio::io::BufReader::new(node.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).await.unwrap();
    let origin = first
        .trim()
        .strip_prefix("origin ")
        .unwrap_or_else(|| panic!("no origin from browser.mjs: {first:?}"))
        .to_string();
    let stack = RealtimeStack::start(&[("CORS_ALLOWED_ORIGINS", &origin)]).await;
    let urls = json!({
        "api": stack.api().base,
        "chat": format!("http://127.0.0.1:{}", stack.chat_a.port),
    });
    let mut stdin = node.stdin.take().unwrap();
    stdin
        .write_all(format!("{urls}\n").as_bytes())
        .await
        .unwrap();
    let mut rest = String::new();
    let status = tokio::time::timeout(Duration::from_secs(120), async {
        stdout.read_to_string(&mut rest).await.unwrap();
        node.wait().await.unwrap()
    })
    .await
    .expect("the browser check finishes within 2 minutes");
    let mut stderr = String::new();
    if let Some(mut e) = node.stderr.take() {
        let _ = e.read_to_string(&mut stderr).await;
    }
    assert!(status.success(), "{rest}{stderr}");
    println!("{first}{rest}");
}

/// `chat.typing` reaches the group's other members on the other replica (not the typist),
/// repeated starts are throttled, a stop always goes through, a non-member is refused, and
/// nothing is stored.
#[tokio::test]
async fn typing_reaches_co_members_across_replicas_throttled_and_never_stored() {
    let stack = RealtimeStack::start(&[]).await;
    let [ada, bob, eve] = stack.api().users(["ada", "bob", "eve"]).await;
    let group = group_of(&stack, &ada, &[&bob]).await;
    let mut a = client(stack.chat_a.port, &ada).await;
    let mut b = client(stack.chat_b.port, &bob).await;

    let start = a
        .request("chat.typing", json!({"groupId": group, "typing": true}))
        .await;
    assert_ok(&start);
    assert_eq!(start["throttled"], false, "{start}");
    let seen = b.next("chat.typing", WAIT).await;
    assert_eq!(
        seen,
        json!({"groupId": group, "userId": ada.id, "typing": true})
    );

    // A keystroke later: acknowledged, not passed on.
    let again = a.request("chat.typing", json!({"groupId": group})).await;
    assert_ok(&again);
    assert_eq!(again["throttled"], true, "{again}");
    let stop = a
        .request("chat.typing", json!({"groupId": group, "typing": false}))
        .await;
    assert_ok(&stop);
    let after = b.next("chat.typing", WAIT).await;
    assert_eq!(
        after["typing"], false,
        "the stop, not a second start: {after}"
    );
    assert!(
        a.collect("chat.typing", Duration::from_millis(500))
            .await
            .is_empty(),
        "the typist does not hear herself"
    );

    let intruder = client(stack.chat_a.port, &eve).await;
    let refused = intruder
        .request("chat.typing", json!({"groupId": group}))
        .await;
    assert_eq!(refused["ok"], false, "{refused}");
    assert_eq!(refused["error"]["reason"], "not_member", "{refused}");
    let wrong = a.request("chat.typing", json!({"typing": true})).await;
    assert_eq!(wrong["error"]["code"], "bad_request", "{wrong}");

    let page = history(&stack, &bob, &group, "").await;
    assert_eq!(page.body["data"], json!([]), "typing is never stored");
}

#[tokio::test]
async fn an_admin_changes_a_members_role_and_every_member_hears_of_it() {
    let stack = RealtimeStack::start(&[]).await;
    let api = stack.api();
    let [ada, bob, cy] = api.users(["ada", "bob", "cy"]).await;
    let group = stack.api().group(&ada, "Crew", &[&bob, &cy]).await;
    let as_caller = |caller: &User, target: &User, role: &str| {
        api.authed(
            Method::PATCH,
            &format!("/groups/{group}/members/{}", target.id),
            caller,
        )
        .json(&json!({ "role": role }))
    };
    let mut b = client(stack.chat_b.port, &bob).await;
    let mut c = client(stack.chat_a.port, &cy).await;
    let sent = c.send(&group, "mine", "cy-1").await;
    let message_id = sent["message"]["id"].as_str().unwrap().to_string();
    // Bob, a member, may not delete Cy's message (and the message role now knows him as one).
    let refused = b
        .request(
            "chat.message.delete",
            json!({"groupId": group, "messageId": message_id}),
        )
        .await;
    assert_eq!(
        refused["error"]["reason"], "not_sender_or_admin",
        "{refused}"
    );

    // Only an admin changes roles; a group keeps an admin; the role must be one of the two.
    let by_member = api.send(as_caller(&bob, &cy, "admin")).await;
    by_member.assert_error(403);
    assert_eq!(by_member.reason(), "not_group_admin", "{}", by_member.text);
    let last_admin = api.send(as_caller(&ada, &ada, "member")).await;
    last_admin.assert_error(409);
    assert_eq!(last_admin.reason(), "last_admin", "{}", last_admin.text);
    let bad = api.send(as_caller(&ada, &bob, "owner")).await;
    bad.assert_error(400);
    let stranger = api.user("eve").await;
    let not_member = api.send(as_caller(&ada, &stranger, "admin")).await;
    not_member.assert_error(404);
    assert_eq!(
        not_member.reason(),
        "member_not_found",
        "{}",
        not_member.text
    );

    // Ada makes Bob an admin: the answer shows it, and every member hears of it on every replica.
    let promoted = api.send(as_caller(&ada, &bob, "admin")).await;
    assert_eq!(
        promoted.status,
        reqwest::StatusCode::OK,
        "{}",
        promoted.text
    );
    let roles: Vec<(String, String)> = promoted.body["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["userId"].as_str().unwrap().into(),
                m["role"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        roles.contains(&(bob.id.clone(), "admin".into())),
        "{roles:?}"
    );
    for socket in [&mut b, &mut c] {
        let heard = socket.next("group.member.role_changed", WAIT).await;
        assert_eq!(
            heard,
            json!({"groupId": group, "userId": bob.id, "role": "admin", "changedBy": ada.id})
        );
    }
    // At once an admin: he deletes Cy's message, though the message role had him as a member.
    assert_ok(
        &b.request(
            "chat.message.delete",
            json!({"groupId": group, "messageId": message_id}),
        )
        .await,
    );
    // With two admins, Ada may step down; the same change again changes nothing.
    let stepped_down = api.send(as_caller(&ada, &ada, "member")).await;
    assert_eq!(
        stepped_down.status,
        reqwest::StatusCode::OK,
        "{}",
        stepped_down.text
    );
    let again = api.send(as_caller(&bob, &ada, "member")).await;
    assert_eq!(again.status, reqwest::StatusCode::OK, "{}", again.text);
    let now_bob_alone = api.send(as_caller(&bob, &bob, "member")).await;
    now_bob_alone.assert_error(409);
    assert_eq!(
        now_bob_alone.reason(),
        "last_admin",
        "{}",
        now_bob_alone.text
    );
}

#[tokio::test]
async fn unread_counts_agree_across_a_users_devices() {
    let stack = RealtimeStack::start(&[]).await;
    let api = stack.api();
    let [ada, bob] = api.users(["ada", "bob"]).await;
    let group = group_of(&stack, &ada, &[&bob]).await;
    let unread = |user: &User| {
        let request = api.authed(Method::GET, "/groups", user);
        async move { api.send(request).await.body[0]["unreadCount"].clone() }
    };
    let a = client(stack.chat_a.port, &ada).await;
    // Bob on two devices, one on each replica.
    let phone = client(stack.chat_a.port, &bob).await;
    let mut laptop = client(stack.chat_b.port, &bob).await;
    for i in 1..=3 {
        assert_ok(
            &a.send(&group, &format!("news {i}"), &format!("news-{i}"))
                .await,
        );
    }
    assert_eq!(unread(&bob).await, 3);
    // Read on the phone: the laptop hears it (its badge follows) and the count is shared.
    assert_ok(
        &phone
            .request("chat.message.seen", json!({"groupId": group, "seq": 2}))
            .await,
    );
    let heard = laptop.next("chat.message.seen", WAIT).await;
    assert_eq!(
        (heard["userId"].as_str(), heard["seq"].as_i64()),
        (Some(bob.id.as_str()), Some(2))
    );
    assert_eq!(unread(&bob).await, 1);
    // An older position from the laptop, which had not caught up, does not move it back.
    let stale = laptop
        .request("chat.message.seen", json!({"groupId": group, "seq": 1}))
        .await;
    assert_ok(&stale);
    assert_eq!(stale["seq"], 2, "{stale}");
    assert_eq!(unread(&bob).await, 1);
    // Bob's own messages are never unread to him, from whichever device he sends them.
    assert_ok(&laptop.send(&group, "on my way", "bob-1").await);
    assert_eq!(unread(&bob).await, 1);
    assert_eq!(unread(&ada).await, 1);
}

#[tokio::test]
async fn delivery_receipts_reach_the_sender_across_replicas_and_are_kept() {
    let stack = RealtimeStack::start(&[]).await;
    let api = stack.api();
    let [ada, bob, cy, eve] = api.users(["ada", "bob", "cy", "eve"]).await;
    let group = group_of(&stack, &ada, &[&bob, &cy]).await;
    let mut a = client(stack.chat_a.port, &ada).await;
    let mut b = client(stack.chat_b.port, &bob).await;
    let mut c = client(stack.chat_a.port, &cy).await;
    for i in 1..=3 {
        assert_ok(&a.send(&group, &format!("hi {i}"), &format!("hi-{i}")).await);
    }
    for _ in 1..=3 {
        b.next("chat.message.incoming", WAIT).await;
    }
    // Bob's device says it has received all three: Ada hears it on the other replica, Cy too.
    let delivered = |seq: i64| json!({"groupId": group, "seq": seq});
    let ack = b.request("chat.message.delivered", delivered(3)).await;
    assert_ok(&ack);
    assert_eq!(ack["seq"], 3, "{ack}");
    for socket in [&mut a, &mut c] {
        let heard = socket.next("chat.message.delivered", WAIT).await;
        assert_eq!(
            (
                heard["groupId"].as_str(),
                heard["userId"].as_str(),
                heard["seq"].as_i64()
            ),
            (Some(group.as_str()), Some(bob.id.as_str()), Some(3))
        );
        assert!(heard["deliveredAt"].is_string(), "{heard}");
    }
    // Never backwards; a position the group has not reached, or a bad payload, is refused.
    let stale = b.request("chat.message.delivered", delivered(1)).await;
    assert_ok(&stale);
    assert_eq!(stale["seq"], 3, "{stale}");
    let ahead = b.request("chat.message.delivered", delivered(9)).await;
    assert_eq!(ahead["error"]["reason"], "seq_out_of_range", "{ahead}");
    let malformed = b
        .request("chat.message.delivered", json!({"groupId": group}))
        .await;
    assert_eq!(
        malformed["error"]["reason"], "invalid_payload",
        "{malformed}"
    );
    // Cy saw the first message: seen implies delivered.
    assert_ok(
        &c.request("chat.message.seen", json!({"groupId": group, "seq": 1}))
            .await,
    );
    // The positions are kept: a client that reloads reads them over REST.
    let receipts = api
        .send(api.authed(Method::GET, &format!("/groups/{group}/receipts"), &ada))
        .await;
    assert_eq!(receipts.status, StatusCode::OK, "{}", receipts.text);
    let of = |user: &User| {
        receipts
            .body
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["userId"] == user.id.as_str())
            .map(|r| (r["deliveredSeq"].as_i64(), r["seenSeq"].as_i64()))
    };
    assert_eq!(of(&bob), Some((Some(3), Some(0))));
    assert_eq!(of(&cy), Some((Some(1), Some(1))));
    assert_eq!(of(&ada), None, "no receipt from Ada yet");
    // Members only, on both transports.
    let outsider = api
        .send(api.authed(Method::GET, &format!("/groups/{group}/receipts"), &eve))
        .await;
    outsider.assert_error(404);
    assert_eq!(outsider.reason(), "group_not_found", "{}", outsider.text);
    let e = client(stack.chat_b.port, &eve).await;
    let refused = e.request("chat.message.delivered", delivered(1)).await;
    assert_eq!(refused["error"]["reason"], "not_member", "{refused}");
}

#[tokio::test]
async fn a_sender_edits_a_message_within_the_window_and_every_member_sees_it() {
    let stack = RealtimeStack::start(&[]).await;
    let api = stack.api();
    let [ada, bob] = api.users(["ada", "bob"]).await;
    let group = group_of(&stack, &ada, &[&bob]).await;
    let a = client(stack.chat_a.port, &ada).await;
    let mut b = client(stack.chat_b.port, &bob).await;
    let sent = a.send(&group, "teh plan", "plan-1").await;
    let id = sent["message"]["id"].as_str().unwrap().to_string();
    b.next("chat.message.incoming", WAIT).await;
    let edit = |content: &str| json!({"groupId": group, "messageId": id, "content": content});

    let edited = a.request("chat.message.edit", edit("  the plan  ")).await;
    assert_ok(&edited);
    let message = &edited["message"];
    assert_eq!(
        (message["content"].as_str(), message["seq"].as_i64()),
        (Some("the plan"), Some(1))
    );
    assert!(message["editedAt"].is_string(), "{message}");
    // The other members see it on every replica; history and search have the new text.
    let heard = b.next("chat.message.edited", WAIT).await;
    assert_eq!(&heard, message);
    let stored = api.all_messages(&group, &bob).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(&stored[0], message);
    let found = api
        .send(api.authed(Method::GET, "/messages/search?q=plan", &bob))
        .await;
    assert_eq!(found.body[0]["content"], "the plan", "{}", found.text);

    // Only the sender, only text, and not a deleted message.
    let by_bob = b.request("chat.message.edit", edit("bob's plan")).await;
    assert_eq!(by_bob["error"]["reason"], "not_sender", "{by_bob}");
    let empty = a.request("chat.message.edit", edit("   ")).await;
    assert_eq!(empty["error"]["reason"], "empty_message", "{empty}");
    let unknown = a
        .request(
            "chat.message.edit",
            json!({"groupId": group, "messageId": "665f1f77bcf86cd799439011", "content": "x"}),
        )
        .await;
    assert_eq!(unknown["error"]["reason"], "message_not_found", "{unknown}");
    assert_ok(
        &a.request(
            "chat.message.delete",
            json!({"groupId": group, "messageId": id}),
        )
        .await,
    );
    let gone = a.request("chat.message.edit", edit("back")).await;
    assert_eq!(gone["error"]["reason"], "message_deleted", "{gone}");
    assert_eq!(api.all_messages(&group, &bob).await[0]["deleted"], true);
}

#[tokio::test]
async fn a_message_past_the_edit_window_stays_as_sent() {
    let stack = RealtimeStack::start(&[("MESSAGE_EDIT_WINDOW_SECONDS", "1")]).await;
    let api = stack.api();
    let [ada, bob] = api.users(["ada", "bob"]).await;
    let group = group_of(&stack, &ada, &[&bob]).await;
    let a = client(stack.chat_a.port, &ada).await;
    let sent = a.send(&group, "final words", "final-1").await;
    let id = sent["message"]["id"].as_str().unwrap().to_string();
    // Past the window (a wait, not a timing assertion).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let late = a
        .request(
            "chat.message.edit",
            json!({"groupId": group, "messageId": id, "content": "second thoughts"}),
        )
        .await;
    assert_eq!(late["error"]["code"], "conflict", "{late}");
    assert_eq!(late["error"]["reason"], "edit_window_closed", "{late}");
    let stored = api.all_messages(&group, &bob).await;
    assert_eq!(stored[0]["content"], "final words");
    assert!(stored[0].get("editedAt").is_none(), "{}", stored[0]);
}

/// The entry of `user` in a presence list.
fn presence_entry<'a>(users: &'a Value, user: &User) -> Option<&'a Value> {
    users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["userId"] == user.id.as_str())
}

#[tokio::test]
async fn a_socket_learns_which_co_members_are_online_on_connect_and_on_request() {
    let stack = RealtimeStack::start(&[]).await;
    let api = stack.api();
    let [ada, bob, cy, eve] = api.users(["ada", "bob", "cy", "eve"]).await;
    group_of(&stack, &ada, &[&bob]).await;
    stack.api().group(&ada, "Other", &[&cy]).await;
    // Eve shares no group with Ada: she is never in Ada's list, online or not.
    let _eve = client(stack.chat_a.port, &eve).await;
    let bob_socket = client(stack.chat_b.port, &bob).await;
    // Cy was online once and left: when, is kept.
    client(stack.chat_a.port, &cy).await.disconnect().await;
    let last_seen = |user: &User| {
        let request = api.authed(Method::GET, &format!("/users/{}", user.id), &ada);
        async move { api.send(request).await.body["lastSeenAt"].clone() }
    };
    let cy_seen = within(WAIT, "Cy's last seen recorded", async {
        loop {
            let seen = last_seen(&cy).await;
            if seen.is_string() {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;

    // On connect: every co-member, by id, online on any replica or not, and last seen.
    let mut a = client(stack.chat_a.port, &ada).await;
    let snapshot = a.next("user.presence", WAIT).await;
    let mut expected = vec![
        json!({"userId": bob.id, "isOnline": true, "lastSeenAt": null}),
        json!({"userId": cy.id, "isOnline": false, "lastSeenAt": cy_seen}),
    ];
    expected.sort_by_key(|u| u["userId"].as_str().unwrap().to_string());
    assert_eq!(snapshot["users"], json!(expected));
    assert!(presence_entry(&snapshot["users"], &eve).is_none());

    // On request, as it is now: Bob has left.
    bob_socket.disconnect().await;
    let bob_now = within(WAIT, "Bob seen offline", async {
        loop {
            let ack = a.request("user.presence", json!({})).await;
            assert_ok(&ack);
            let bob_now = presence_entry(&ack["users"], &bob).unwrap().clone();
            if bob_now["isOnline"] == false && bob_now["lastSeenAt"].is_string() {
                return bob_now;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(bob_now["lastSeenAt"], last_seen(&bob).await);
}

/// What a test saw on the socket: (the AsyncAPI message name, its payload).
#[derive(Default)]
struct Seen(Vec<(String, Value)>);

impl Seen {
    fn event(&mut self, event: &str, payload: Value) {
        self.0.push((format!("{event}.event"), payload));
    }

    fn ack(&mut self, event: &str, ack: Value) -> Value {
        self.0.push((format!("{event}.ack"), ack.clone()));
        ack
    }

    /// Waits for `event` on `socket` and keeps it.
    async fn next(&mut self, socket: &mut ChatClient, event: &str) -> Value {
        let payload = socket.next(event, WAIT).await;
        self.event(event, payload.clone());
        payload
    }

    /// Keeps whatever else `socket` received: every event is checked, not only those waited for.
    async fn rest(&mut self, socket: &mut ChatClient) {
        for (event, payload) in socket.collect_all(Duration::from_millis(300)).await {
            self.event(&event, payload);
        }
    }
}

/// The Socket.IO contract (`GET /asyncapi.json`, served by the chat role) is what the chat role
/// does: the document is a valid AsyncAPI 3.0 document, and a scenario makes the chat role send
/// every server event and answer every client event, on two replicas, each payload and
/// acknowledgement validating against the document's schemas (tests/contract/validate_events.py,
/// with Python's jsonschema).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_and_acknowledgement_matches_the_asyncapi_document() {
    every_event_scenario(&[]).await
}

/// The same with the facts relayed over Redis pub/sub (`FACTS_RELAY=redis`): every fact the
/// scenario makes (messages, receipts, edits, typing, presence, membership changes) crosses the
/// relay to the other replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_and_acknowledgement_matches_the_asyncapi_document_over_the_redis_relay() {
    if let Some(relay) = redis_relay() {
        every_event_scenario(relay).await
    }
}

async fn every_event_scenario(relay: &[(&str, &str)]) {
    let venv = std::env::var("CHAT_TOOLS_VENV")
        .expect("CHAT_TOOLS_VENV: run `eval \"$(scripts/infra.sh tools)\"` (scripts/test.sh does)");
    // A replay limit of 1: a client two messages behind is told to resync.
    let mut settings = vec![("CHAT_REPLAY_LIMIT", "1")];
    settings.extend_from_slice(relay);
    let mut stack = RealtimeStack::start(&settings).await;
    let api = stack.api();
    let document = api
        .http
        .get(format!(
            "http://127.0.0.1:{}/asyncapi.json",
            stack.chat_a.port
        ))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let declared: Vec<&str> = document["operations"]
        .as_object()
        .unwrap()
        .keys()
        .filter_map(|k| k.strip_prefix("send."))
        .collect();
    let mut registered: Vec<&str> = chat_tests::SERVER_EVENTS.to_vec();
    let mut sorted = declared.clone();
    sorted.sort_unstable();
    registered.sort_unstable();
    assert_eq!(
        sorted, registered,
        "the test client listens for every documented event"
    );

    let [ada, bob, cy] = api.users(["ada", "bob", "cy"]).await;
    let mut seen = Seen::default();
    let mut a = client(stack.chat_a.port, &ada).await;
    let mut b = client(stack.chat_b.port, &bob).await;
    seen.next(&mut a, "user.presence").await;
    let group = group_of(&stack, &ada, &[&bob]).await;
    seen.next(&mut b, "group.created").await;
    let sent = seen.ack("chat.message.send", a.send(&group, "hi", "c-1").await);
    let id = sent["message"]["id"].as_str().unwrap().to_string();
    seen.next(&mut b, "chat.message.incoming").await;
    let receipt = json!({"groupId": group, "seq": 1});
    for event in ["chat.message.delivered", "chat.message.seen"] {
        seen.ack(event, b.request(event, receipt.clone()).await);
        seen.next(&mut a, event).await;
    }
    let message = json!({"groupId": group, "messageId": id});
    let mut edit = message.clone();
    edit["content"] = json!("hello");
    seen.ack(
        "chat.message.edit",
        a.request("chat.message.edit", edit).await,
    );
    seen.next(&mut b, "chat.message.edited").await;
    let typing = json!({"groupId": group});
    seen.ack("chat.typing", b.request("chat.typing", typing).await);
    seen.next(&mut a, "chat.typing").await;
    seen.ack(
        "chat.message.delete",
        a.request("chat.message.delete", message).await,
    );
    seen.next(&mut b, "chat.message.deleted").await;
    seen.ack(
        "user.heartbeat",
        a.request("user.heartbeat", json!({})).await,
    );
    seen.ack("user.presence", a.request("user.presence", json!({})).await);
    // Refusals have their own shape: a bad payload, and an event for a group not one's own.
    seen.ack(
        "chat.message.send",
        a.request("chat.message.send", json!({"groupId": 7})).await,
    );
    seen.ack(
        "chat.message.seen",
        a.request("chat.message.seen", json!({"groupId": "nope", "seq": 1}))
            .await,
    );

    // Membership changes over REST reach the sockets.
    let add = api
        .authed(Method::POST, &format!("/groups/{group}/members"), &ada)
        .json(&json!({"memberIds": [cy.id]}));
    assert_eq!(api.send(add).await.status, StatusCode::OK);
    seen.next(&mut b, "group.members.added").await;
    let promote = api
        .authed(
            Method::PATCH,
            &format!("/groups/{group}/members/{}", bob.id),
            &ada,
        )
        .json(&json!({"role": "admin"}));
    assert_eq!(api.send(promote).await.status, StatusCode::OK);
    seen.next(&mut a, "group.member.role_changed").await;
    let c = client(stack.chat_b.port, &cy).await;
    seen.next(&mut a, "user.online").await;
    c.disconnect().await;
    seen.next(&mut a, "user.offline").await;
    let remove = api.authed(
        Method::DELETE,
        &format!("/groups/{group}/members/{}", cy.id),
        &ada,
    );
    assert_eq!(api.send(remove).await.status, StatusCode::NO_CONTENT);
    seen.next(&mut a, "group.member.removed").await;

    // Two messages missed, with a replay limit of one: a replay, then a resync.
    assert_ok(&a.send(&group, "one", "c-2").await);
    assert_ok(&a.send(&group, "two", "c-3").await);
    let auth = json!({"token": bob.token, "lastSeq": {group.clone(): 1}});
    let mut late = ChatClient::connect(stack.chat_a.port, auth).await;
    seen.next(&mut late, "chat.resync").await;
    seen.rest(&mut late).await;
    seen.rest(&mut b).await;
    // A replica shutting down tells its clients (two replicas only in the multi-process stack).
    if !chat_tests::embedded_mode() {
        let status =
            tokio::task::block_in_place(|| stack.chat_a.terminate(Duration::from_secs(30)));
        assert!(status.is_some_and(|s| s.success()), "replica A stops");
        seen.next(&mut a, "server.restarting").await;
    }
    seen.rest(&mut a).await;

    let mut covered: Vec<&str> = seen
        .0
        .iter()
        .filter_map(|(name, _)| name.strip_suffix(".event"))
        .collect();
    covered.sort_unstable();
    covered.dedup();
    // Only the multi-process stack has a second replica to stop.
    let expected = |e: &&&str| !(chat_tests::embedded_mode() && **e == "server.restarting");
    let untested: Vec<&&str> = sorted
        .iter()
        .filter(expected)
        .filter(|e| !covered.contains(e))
        .collect();
    assert!(untested.is_empty(), "the scenario never saw {untested:?}");

    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("contract/validate_events.py");
    // AsyncAPI's own schema of its 3.0.0 documents, from npm (tests/js/package.json).
    let specification =
        chat_tests::package_dir().join("js/node_modules/@asyncapi/specs/schemas/3.0.0.json");
    assert!(
        specification.exists(),
        "no {}: run `npm ci --prefix tests/js` (scripts/test.sh does)",
        specification.display()
    );
    let input =
        json!({"document": document, "specification": specification, "seen": seen.0}).to_string();
    let validate = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut python = std::process::Command::new(std::path::Path::new(&venv).join("bin/python"))
            .arg(script)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("the tools' Python runs");
        python
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        python.wait_with_output().unwrap()
    });
    let output = tokio::time::timeout(Duration::from_secs(60), validate)
        .await
        .expect("the validation finishes")
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    println!("{report}");
    assert!(
        output.status.success(),
        "payloads off the AsyncAPI document:\n{report}"
    );
}
