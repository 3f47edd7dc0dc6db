//! The limits a public deployment needs against abusive or broken clients (issue 16): REST
//! request rates per user and per address, slow-header and slow-body clients, sockets per user,
//! group size and groups per user. Each limit is set low here through its documented variable;
//! each refusal has the documented status and reason and changes nothing.

use std::time::Duration;

use chat_tests::raw;
use chat_tests::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn rest_requests_are_limited_per_user_then_per_address() {
    let stack = Stack::start(&[
        ("API_MAX_REQUESTS_PER_USER", "5"),
        ("API_MAX_REQUESTS_PER_ADDRESS", "1000"),
        ("API_RATE_WINDOW_SECONDS", "60"),
    ])
    .await;
    let api = &stack.api;
    let [ada, bob] = api.users(["ada", "bob"]).await;
    for _ in 0..5 {
        let me = api.send(api.authed(Method::GET, "/auth/me", &ada)).await;
        assert_eq!(me.status, StatusCode::OK, "{}", me.text);
    }
    let sixth = api.send(api.authed(Method::GET, "/auth/me", &ada)).await;
    assert_eq!(sixth.assert_error(429), "rate_limited");
    let retry_after: u64 = sixth.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    // Refused before anything runs: Ada's group is not created.
    let create = api
        .send(
            api.authed(Method::POST, "/groups", &ada)
                .json(&json!({"name": "Too many", "memberIds": [bob.id]})),
        )
        .await;
    assert_eq!(create.assert_error(429), "rate_limited");
    let bobs = api.send(api.authed(Method::GET, "/groups", &bob)).await;
    assert_eq!(bobs.status, StatusCode::OK, "another user is not limited");
    assert_eq!(bobs.body.as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn rest_requests_are_limited_per_client_address() {
    let stack = Stack::start(&[
        ("API_MAX_REQUESTS_PER_ADDRESS", "3"),
        ("TRUST_FORWARDED_FOR", "true"),
    ])
    .await;
    let api = &stack.api;
    let from = |address: &str| {
        api.http
            .get(format!("{}/openapi.json", api.base))
            .header("x-forwarded-for", address.to_string())
    };
    for _ in 0..3 {
        assert_eq!(api.send(from("203.0.113.7")).await.status, StatusCode::OK);
    }
    let fourth = api.send(from("203.0.113.7")).await;
    assert_eq!(fourth.assert_error(429), "rate_limited");
    assert!(fourth.headers.contains_key("retry-after"));
    // Unauthenticated routes count too: a login from the same address is refused unread.
    let login = api
        .send(
            api.http
                .post(format!("{}/auth/login", api.base))
                .header("x-forwarded-for", "203.0.113.7")
                .json(&json!({"email": "ada@example.com", "password": "x"})),
        )
        .await;
    assert_eq!(login.assert_error(429), "rate_limited");
    assert_eq!(
        api.send(from("198.51.100.1")).await.status,
        StatusCode::OK,
        "another address is not limited"
    );
}

/// A login whose body stops half-way: it holds a place among the requests served at once.
async fn hold_a_place(address: &str) -> tokio::net::TcpStream {
    let mut holder = tokio::net::TcpStream::connect(address).await.unwrap();
    holder
        .write_all(
            b"POST /auth/login HTTP/1.1\r\nHost: chat\r\nContent-Type: application/json\r\n\
              Content-Length: 45\r\nConnection: close\r\n\r\n{\"email\":",
        )
        .await
        .unwrap();
    holder
}

/// Whether the server has answered (or closed) `stream` already.
fn was_answered(stream: &tokio::net::TcpStream) -> bool {
    let mut byte = [0u8; 1];
    !matches!(stream.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// Reads what the server answers until it closes the connection.
async fn read_until_closed(stream: &mut tokio::net::TcpStream) -> String {
    let mut answer = Vec::new();
    within(
        Duration::from_secs(30),
        "the server closing a slow connection",
        stream.read_to_end(&mut answer),
    )
    .await
    .ok();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn slow_header_and_slow_body_clients_are_cut_off() {
    let stack = Stack::start(&[
        ("HTTP_HEADER_TIMEOUT_SECONDS", "1"),
        ("HTTP_BODY_IDLE_TIMEOUT_SECONDS", "1"),
    ])
    .await;
    let address = format!("127.0.0.1:{}", stack.gateway.port);

    // Headers that never end: the connection is closed without an answer.
    let mut slow_headers = tokio::net::TcpStream::connect(&address).await.unwrap();
    slow_headers
        .write_all(b"GET /openapi.json HTTP/1.1\r\nHost: chat\r\n")
        .await
        .unwrap();
    // Meanwhile everyone else is served.
    let served = stack.api.get("/openapi.json", None).await;
    assert_eq!(served.status, StatusCode::OK);
    assert_eq!(read_until_closed(&mut slow_headers).await, "");

    // A body that stops half-way: refused with the documented reason, connection closed.
    let mut slow_body = tokio::net::TcpStream::connect(&address).await.unwrap();
    slow_body
        .write_all(
            b"POST /auth/login HTTP/1.1\r\nHost: chat\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"email\":",
        )
        .await
        .unwrap();
    let answer = read_until_closed(&mut slow_body).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("\"reason\":\"body_stalled\""), "{answer}");
}

#[tokio::test]
async fn a_process_serving_its_limit_of_requests_refuses_the_next_at_once() {
    let stack = Stack::start(&[("HTTP_MAX_IN_FLIGHT", "1")]).await;
    let address = format!("127.0.0.1:{}", stack.gateway.port);
    // A request whose body is still coming holds the only place. The server may take a probe
    // below before it reads the holder's headers; the holder is then the one refused (answered
    // at once) and a new one takes the place.
    let (refused, mut holder) = within(
        Duration::from_secs(30),
        "a refusal while the place is held",
        async {
            let mut holder = hold_a_place(&address).await;
            loop {
                let r = stack.api.get("/openapi.json", None).await;
                if r.status != StatusCode::OK {
                    return (r, holder);
                }
                if was_answered(&holder) {
                    holder = hold_a_place(&address).await;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        },
    )
    .await;
    // The next is refused at once, with the documented reason and a time to come back...
    assert_eq!(refused.assert_error(503), "unavailable");
    assert_eq!(refused.reason(), "overloaded");
    assert_eq!(refused.headers["retry-after"], "1");
    // ...while the probes still answer.
    assert_eq!(stack.api.get("/health", None).await.status, StatusCode::OK);
    // Once the held request is answered, requests are served again.
    holder
        .write_all(b"\"nobody@example.com\",\"password\":\"x\"}")
        .await
        .unwrap();
    let answer = read_until_closed(&mut holder).await;
    assert!(answer.starts_with("HTTP/1.1 "), "{answer}");
    assert!(!answer.contains("overloaded"), "{answer}");
    assert_eq!(
        stack.api.get("/openapi.json", None).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_user_holds_at_most_the_configured_sockets_over_every_replica() {
    let stack = RealtimeStack::start(&[("CHAT_MAX_SOCKETS_PER_USER", "2")]).await;
    let api = stack.api();
    let [ada, bob] = api.users(["ada", "bob"]).await;
    let auth = |user: &User| json!({"token": user.token});
    let first = ChatClient::connect(stack.chat_a.port, auth(&ada)).await;
    let _second = ChatClient::connect(stack.chat_b.port, auth(&ada)).await;
    let third = ChatClient::try_connect_url(
        &format!("http://127.0.0.1:{}", stack.chat_a.port),
        auth(&ada),
    )
    .await;
    let refused = third.err().expect("a third socket is refused");
    assert!(
        refused.contains("too many connections: at most 2 sockets per user"),
        "{refused}"
    );
    // Bob is not affected, and a socket Ada closes makes room for another.
    let _bob = ChatClient::connect(stack.chat_a.port, auth(&bob)).await;
    first.disconnect().await;
    within(Duration::from_secs(10), "room for a new socket", async {
        loop {
            let url = format!("http://127.0.0.1:{}", stack.chat_b.port);
            if ChatClient::try_connect_url(&url, auth(&ada)).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn groups_are_bounded_in_size_and_in_number_per_user() {
    let stack = Stack::start(&[("GROUP_MAX_MEMBERS", "3"), ("USER_MAX_GROUPS", "2")]).await;
    let api = &stack.api;
    let [ada, bob, cy, dee] = api.users(["ada", "bob", "cy", "dee"]).await;
    let create = |admin: &User, name: &str, members: &[&User]| {
        let ids: Vec<&str> = members.iter().map(|u| u.id.as_str()).collect();
        api.send(
            api.authed(Method::POST, "/groups", admin)
                .json(&json!({"name": name, "memberIds": ids})),
        )
    };
    let members_of = |group: String, user: &User| {
        let request = api.authed(Method::GET, &format!("/groups/{group}"), user);
        async move {
            api.send(request).await.body["members"]
                .as_array()
                .unwrap()
                .len()
        }
    };

    // Size: four people in a group of at most three.
    let too_big = create(&ada, "Big", &[&bob, &cy, &dee]).await;
    assert_eq!(too_big.assert_error(409), "conflict");
    assert_eq!(too_big.reason(), "group_full");
    let team = api.group(&ada, "Team", &[&bob, &cy]).await;
    let add = api
        .send(
            api.authed(Method::POST, &format!("/groups/{team}/members"), &ada)
                .json(&json!({"memberIds": [dee.id]})),
        )
        .await;
    assert_eq!(add.assert_error(409), "conflict");
    assert_eq!(add.reason(), "group_full");
    assert_eq!(members_of(team.clone(), &ada).await, 3, "nobody was added");

    // Groups per user: Ada is in Team; a second group is allowed, a third is not.
    api.group(&ada, "Second", &[&dee]).await;
    let third = create(&ada, "Third", &[&dee]).await;
    assert_eq!(third.assert_error(409), "conflict");
    assert_eq!(third.reason(), "too_many_groups");
    assert!(third.text.contains(&ada.id), "{}", third.text);
    // Nor may anyone add Ada to another group.
    let bobs = api.group(&bob, "Bob's", &[]).await;
    let add_ada = api
        .send(
            api.authed(Method::POST, &format!("/groups/{bobs}/members"), &bob)
                .json(&json!({"memberIds": [ada.id]})),
        )
        .await;
    assert_eq!(add_ada.assert_error(409), "conflict");
    assert_eq!(add_ada.reason(), "too_many_groups");
    assert_eq!(members_of(bobs, &bob).await, 1, "nobody was added");
    let listed = api.send(api.authed(Method::GET, "/groups", &ada)).await;
    assert_eq!(listed.body.as_array().unwrap().len(), 2);
}

/// Posts one chunk of `filename` as `user`.
async fn put_chunk(
    api: &Api,
    user: &User,
    filename: &str,
    index: u32,
    total: u32,
    bytes: Vec<u8>,
) -> Response {
    let form = reqwest::multipart::Form::new()
        .text("filename", filename.to_string())
        .text("chunkIndex", index.to_string())
        .text("totalChunks", total.to_string())
        .part(
            "chunk",
            reqwest::multipart::Part::bytes(bytes).file_name("chunk"),
        );
    api.send(
        api.authed(Method::POST, "/assets/upload", user)
            .multipart(form),
    )
    .await
}

/// A PNG-looking chunk of `size` bytes.
fn png_bytes(size: usize) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.resize(size, 7);
    bytes
}

#[tokio::test]
async fn uploads_are_bounded_per_user_in_bytes_and_in_number() {
    let stack = Stack::start(&[
        ("ASSET_MAX_BYTES_PER_USER", "250000"),
        ("ASSET_MAX_UPLOADS_PER_USER", "2"),
    ])
    .await;
    let api = &stack.api;
    let [ada, bob] = api.users(["ada", "bob"]).await;

    // Two uploads in progress; a third is refused until one is finished or abandoned.
    for name in ["a.png", "b.png"] {
        let r = put_chunk(api, &ada, name, 0, 2, png_bytes(50_000)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    let third = put_chunk(api, &ada, "c.png", 0, 2, png_bytes(1_000)).await;
    assert_eq!(third.assert_error(409), "conflict");
    assert_eq!(third.reason(), "too_many_uploads");
    // Chunks of an upload in progress still go through, retries included.
    let retry = put_chunk(api, &ada, "a.png", 0, 2, png_bytes(50_000)).await;
    assert_eq!(retry.status, StatusCode::OK, "{}", retry.text);
    let abandon = api
        .send(api.authed(Method::DELETE, "/assets/upload?filename=b.png", &ada))
        .await;
    assert_eq!(abandon.status, StatusCode::NO_CONTENT, "{}", abandon.text);
    let c = put_chunk(api, &ada, "c.png", 0, 1, png_bytes(1_000)).await;
    assert_eq!(c.status, StatusCode::OK, "a slot was freed: {}", c.text);

    // Bytes: 50 kB pending for a.png and 1 kB for c.png; another 200 kB would cross 250 kB.
    let over = put_chunk(api, &ada, "a.png", 1, 2, png_bytes(200_000)).await;
    assert_eq!(over.assert_error(413), "payload_too_large");
    assert_eq!(over.reason(), "quota_exceeded");
    let status = api
        .send(api.authed(Method::GET, "/assets/upload?filename=a.png", &ada))
        .await;
    assert_eq!(
        status.body["receivedChunks"],
        json!([0]),
        "the chunk was not kept"
    );
    // Bob's quota is his own.
    let bobs = put_chunk(api, &bob, "big.png", 0, 1, png_bytes(200_000)).await;
    assert_eq!(bobs.status, StatusCode::OK, "{}", bobs.text);
}

/// The seqs of the new messages among `packets`.
fn incoming_seqs(packets: &[String]) -> Vec<i64> {
    packets
        .iter()
        .filter_map(|p| raw::event_of(p))
        .filter(|(event, _)| event == "chat.message.incoming")
        .map(|(_, message)| message["seq"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn a_socket_that_stops_reading_holds_a_bounded_buffer_is_dropped_and_catches_up() {
    let stack = RealtimeStack::start(&[
        ("CHAT_SOCKET_BUFFER", "16"),
        ("CHAT_PING_INTERVAL_MS", "1000"),
        ("CHAT_PING_TIMEOUT_MS", "1000"),
        ("CHAT_EVENTS_PER_SECOND", "1000"),
    ])
    .await;
    let api = stack.api();
    let [ada, bob] = api.users(["ada", "bob"]).await;
    let group = api.group(&ada, "Busy", &[&bob]).await;
    let auth = |user: &User| json!({"token": user.token});
    let sender = ChatClient::connect(stack.chat_a.port, auth(&ada)).await;
    let mut reader = ChatClient::connect(stack.chat_a.port, auth(&bob)).await;
    // Bob's second socket, on the same replica, stops reading once connected.
    let stalled = raw::RawSocket::open(stack.chat_a.port, &bob.token).await;
    let total = 40;
    for i in 0..total {
        let ack = sender
            .send(&group, &format!("burst {i}"), &format!("burst-{i}"))
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
    }
    // A socket that reads is not held back by one that does not.
    let mut seqs = Vec::new();
    while seqs.len() < total {
        let message = reader
            .next("chat.message.incoming", Duration::from_secs(10))
            .await;
        seqs.push(message["seq"].as_i64().unwrap());
    }
    assert_eq!(seqs, (1..=total as i64).collect::<Vec<_>>());

    // The stalled socket: the replica kept at most 16 packets for it, the oldest, and dropped
    // the session at a ping it could not send or that went unanswered.
    let mut kept = Vec::new();
    within(
        Duration::from_secs(20),
        "the stalled socket is dropped",
        async {
            loop {
                let packets = stalled.receive_unanswered().await;
                if packets.is_empty() || packets.iter().any(|p| p == "1") {
                    return;
                }
                kept.extend(incoming_seqs(&packets));
            }
        },
    )
    .await;
    assert!(kept.len() <= 16, "a buffer of 16 packets held {kept:?}");
    assert_eq!(kept, (1..=kept.len() as i64).collect::<Vec<_>>());
    assert!(kept.len() < total, "nothing was held back: {kept:?}");

    // Reconnecting with the last seq it holds, it is replayed the rest in order, paced by its
    // reading: more than its buffer holds at once, and nothing lost.
    let last = kept.last().copied().unwrap_or(0);
    let (replayed, first) = raw::RawSocket::connect(
        stack.chat_a.port,
        json!({"token": bob.token, "lastSeq": {group.clone(): last}}),
    )
    .await;
    let mut caught_up = incoming_seqs(&first);
    within(Duration::from_secs(20), "the replay", async {
        while caught_up.len() < total - kept.len() {
            let packets = replayed.receive().await;
            assert!(!packets.is_empty(), "the session ended during the replay");
            caught_up.extend(incoming_seqs(&packets));
        }
    })
    .await;
    assert_eq!(caught_up, (last + 1..=total as i64).collect::<Vec<_>>());
}
