//! The authorization matrix (issue 16), table-driven: every REST route behind a token × every
//! kind of bad token, then the group routes and socket events × who the caller is to the group.
//! Every cell that must be denied is denied with the documented status and reason, and the
//! state read back afterwards is what it was.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chat_domain::tokens::{AccessClaims, SigningKey, ISSUER};
use chat_tests::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn claims(sub: &str, exp_offset: i64, iss: &str, aud: &str) -> AccessClaims {
    let now = chrono::Utc::now().timestamp();
    AccessClaims {
        sub: sub.into(),
        email: "ada@example.com".into(),
        iat: now,
        exp: now + exp_offset,
        iss: iss.into(),
        aud: aud.into(),
        jti: "matrix".into(),
        sid: None,
    }
}

/// A compact JWT with `header`, `payload` and a signature made by `sign` over the first two.
fn jwt(header: Value, payload: &AccessClaims, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let head = URL_SAFE_NO_PAD.encode(header.to_string());
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(payload).unwrap());
    let signed = format!("{head}.{body}");
    let signature = URL_SAFE_NO_PAD.encode(sign(signed.as_bytes()));
    format!("{signed}.{signature}")
}

/// Every kind of token that must be refused, named, with the reason the API gives.
fn bad_tokens(keys: &KeyFiles, user_id: &str, valid: &str) -> Vec<(&'static str, String)> {
    let kid = keys.key.kid().to_string();
    let public_pem = std::fs::read(&keys.public_pem).unwrap();
    let mut tampered: Vec<String> = valid.split('.').map(String::from).collect();
    let mut payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&tampered[1]).unwrap()).unwrap();
    payload["sub"] = json!("000000000000000000000000");
    tampered[1] = URL_SAFE_NO_PAD.encode(payload.to_string());
    let good = claims(user_id, 600, ISSUER, ISSUER);
    vec![
        (
            "expired",
            keys.key
                .sign(&claims(user_id, -120, ISSUER, ISSUER))
                .unwrap(),
        ),
        ("signature not matching", tampered.join(".")),
        (
            "alg none",
            jwt(
                json!({"alg": "none", "typ": "JWT", "kid": kid}),
                &good,
                |_| Vec::new(),
            ),
        ),
        (
            "HS256 keyed with the public key",
            jwt(
                json!({"alg": "HS256", "typ": "JWT", "kid": kid}),
                &good,
                |data| {
                    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &public_pem);
                    ring::hmac::sign(&key, data).as_ref().to_vec()
                },
            ),
        ),
        (
            "another issuer",
            keys.key
                .sign(&claims(user_id, 600, "evil", ISSUER))
                .unwrap(),
        ),
        (
            "another audience",
            keys.key
                .sign(&claims(user_id, 600, ISSUER, "evil"))
                .unwrap(),
        ),
        (
            "another key",
            SigningKey::generate().unwrap().sign(&good).unwrap(),
        ),
        ("not a JWT", "not.a.token".to_string()),
    ]
}

/// A deployment whose signing key the test holds, so it can forge every kind of token.
async fn signed_with_known_keys() -> (KeyFiles, RealtimeStack) {
    let keys = KeyFiles::generate();
    let (private, public) = (
        keys.private_pem.to_str().unwrap().to_string(),
        keys.public_pem.to_str().unwrap().to_string(),
    );
    let stack = RealtimeStack::start(&[
        ("JWT_PRIVATE_KEY_FILE", &private),
        ("JWT_PUBLIC_KEY_FILE", &public),
        ("API_MAX_REQUESTS_PER_ADDRESS", "0"),
    ])
    .await;
    (keys, stack)
}

/// Every REST route that needs a token, with a body where it takes one.
fn protected_routes(group: &str, user: &str, file: &str) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (Method::GET, "/auth/me".into(), None),
        (Method::GET, "/users".into(), None),
        (Method::GET, "/users/me".into(), None),
        (
            Method::PATCH,
            "/users/me".into(),
            Some(json!({"firstName": "Mallory"})),
        ),
        (Method::GET, format!("/users/{user}"), None),
        (
            Method::POST,
            "/groups".into(),
            Some(json!({"name": "Evil", "memberIds": [user]})),
        ),
        (Method::GET, "/groups".into(), None),
        (Method::GET, format!("/groups/{group}"), None),
        (
            Method::PATCH,
            format!("/groups/{group}"),
            Some(json!({"name": "Owned"})),
        ),
        (
            Method::POST,
            format!("/groups/{group}/members"),
            Some(json!({"memberIds": [user]})),
        ),
        (
            Method::DELETE,
            format!("/groups/{group}/members/{user}"),
            None,
        ),
        (
            Method::PATCH,
            format!("/groups/{group}/members/{user}"),
            Some(json!({"role": "admin"})),
        ),
        (Method::GET, format!("/groups/{group}/messages"), None),
        (Method::GET, format!("/groups/{group}/receipts"), None),
        (Method::GET, "/messages/search?q=secret".into(), None),
        (Method::GET, "/assets/upload?filename=a.png".into(), None),
        (Method::DELETE, "/assets/upload?filename=a.png".into(), None),
        (
            Method::POST,
            "/assets/complete-upload".into(),
            Some(json!({"filename": "a.png", "totalChunks": 1})),
        ),
        (Method::GET, file.to_string(), None),
    ]
}

/// What the admin reads back: the group's name and members, Bob's profile, the messages.
async fn state(api: &Api, admin: &User, group: &str) -> Value {
    let group_view = api
        .send(api.authed(Method::GET, &format!("/groups/{group}"), admin))
        .await
        .body;
    let mut members: Vec<String> = group_view["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| format!("{}:{}", m["userId"], m["role"]))
        .collect();
    members.sort();
    let me = api
        .send(api.authed(Method::GET, "/users/me", admin))
        .await
        .body;
    let groups = api
        .send(api.authed(Method::GET, "/groups", admin))
        .await
        .body;
    json!({
        "name": group_view["name"],
        "members": members,
        "firstName": me["firstName"],
        "groups": groups.as_array().unwrap().len(),
        "messages": api.all_messages(group, admin).await.len(),
    })
}

#[tokio::test]
async fn every_protected_route_refuses_every_bad_token_and_changes_nothing() {
    let (keys, stack) = signed_with_known_keys().await;
    let api = stack.api();
    let [ada, bob] = api.users(["ada", "bob"]).await;
    let group = api.group(&ada, "Team", &[&bob]).await;
    let file = "/assets/665f1f77bcf86cd799439011";
    let before = state(api, &ada, &group).await;
    let tokens = bad_tokens(&keys, &ada.id, &ada.token);
    let mut cells = 0;
    for (method, path, body) in protected_routes(&group, &bob.id, file) {
        let request = |token: Option<&str>| {
            let mut r = api
                .http
                .request(method.clone(), format!("{}{path}", api.base));
            if let Some(token) = token {
                r = r.bearer_auth(token);
            }
            if let Some(body) = &body {
                r = r.json(body);
            }
            r
        };
        let none = api.send(request(None)).await;
        assert_eq!(none.assert_error(401), "unauthorized", "{method} {path}");
        assert_eq!(none.reason(), "missing_token", "{method} {path}");
        let basic = api
            .send(request(None).header("authorization", "Basic YWRhOnB3"))
            .await;
        assert_eq!(basic.assert_error(401), "unauthorized", "{method} {path}");
        assert_eq!(basic.reason(), "malformed_authorization", "{method} {path}");
        for (kind, token) in &tokens {
            let r = api.send(request(Some(token))).await;
            assert_eq!(
                r.status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {kind}: {}",
                r.text
            );
            assert_eq!(r.reason(), "invalid_token", "{method} {path} with {kind}");
            cells += 1;
        }
    }
    assert_eq!(state(api, &ada, &group).await, before, "nothing changed");
    assert!(cells >= 100, "{cells} cells");
}

#[tokio::test]
async fn an_ended_session_is_refused_before_its_access_token_expires() {
    let stack = RealtimeStack::start(&[]).await;
    let api = stack.api();
    let session = api
        .register("Ada", "Lovelace", "ada@example.com", "correct horse")
        .await;
    let access = session["accessToken"].as_str().unwrap().to_string();
    let refresh = session["refreshToken"].as_str().unwrap().to_string();
    // A second session of the same user, on another device.
    let other = api
        .post(
            "/auth/login",
            json!({"email": "ada@example.com", "password": "correct horse"}),
        )
        .await;
    let other_access = other.body["accessToken"].as_str().unwrap().to_string();
    assert_eq!(
        api.get("/auth/me", Some(&access)).await.status,
        StatusCode::OK
    );

    let out = api
        .post("/auth/logout", json!({"refreshToken": refresh}))
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT, "{}", out.text);
    let me = api.get("/auth/me", Some(&access)).await;
    assert_eq!(me.assert_error(401), "unauthorized");
    assert_eq!(me.reason(), "invalid_token");
    let url = format!("http://127.0.0.1:{}", stack.chat_a.port);
    let refused = ChatClient::try_connect_url(&url, json!({"token": access})).await;
    assert!(refused.err().is_some_and(|why| why.starts_with("refused")));
    // The other session goes on.
    assert_eq!(
        api.get("/auth/me", Some(&other_access)).await.status,
        StatusCode::OK
    );
    ChatClient::connect(stack.chat_a.port, json!({"token": other_access})).await;
}

#[tokio::test]
async fn group_routes_answer_each_caller_as_documented_and_refusals_change_nothing() {
    let stack = RealtimeStack::start(&[]).await;
    let api = stack.api();
    let [ada, bob, eve, cy] = api.users(["ada", "bob", "eve", "cy"]).await;
    // Ada created the group (its admin); Bob is a member; Eve is not; Cy is only added.
    let group = api.group(&ada, "Team", &[&bob]).await;
    let ack = ChatClient::connect(stack.chat_a.port, json!({"token": ada.token}))
        .await
        .send(&group, "for members only", "m-1")
        .await;
    let message_id = ack["message"]["id"].as_str().unwrap().to_string();
    let before = state(api, &ada, &group).await;

    let call = |user: &User, method: Method, path: String, body: Option<Value>| {
        let mut r = api.authed(method, &path, user);
        if let Some(body) = body {
            r = r.json(&body);
        }
        api.send(r)
    };
    // (caller, method, path, body, expected status, expected reason)
    type Cell<'a> = (&'a User, Method, String, Option<Value>, u16, &'static str);
    let g = &group;
    let denied: Vec<Cell> = vec![
        (
            &eve,
            Method::GET,
            format!("/groups/{g}"),
            None,
            404,
            "group_not_found",
        ),
        (
            &eve,
            Method::GET,
            format!("/groups/{g}/messages"),
            None,
            404,
            "group_not_found",
        ),
        (
            &eve,
            Method::GET,
            format!("/groups/{g}/receipts"),
            None,
            404,
            "group_not_found",
        ),
        (
            &eve,
            Method::PATCH,
            format!("/groups/{g}"),
            Some(json!({"name": "Eve's"})),
            404,
            "group_not_found",
        ),
        (
            &eve,
            Method::POST,
            format!("/groups/{g}/members"),
            Some(json!({"memberIds": [eve.id]})),
            404,
            "group_not_found",
        ),
        (
            &eve,
            Method::DELETE,
            format!("/groups/{g}/members/{}", bob.id),
            None,
            404,
            "group_not_found",
        ),
        (
            &eve,
            Method::PATCH,
            format!("/groups/{g}/members/{}", eve.id),
            Some(json!({"role": "admin"})),
            404,
            "group_not_found",
        ),
        (
            &bob,
            Method::PATCH,
            format!("/groups/{g}"),
            Some(json!({"name": "Bob's"})),
            403,
            "not_group_admin",
        ),
        (
            &bob,
            Method::POST,
            format!("/groups/{g}/members"),
            Some(json!({"memberIds": [eve.id]})),
            403,
            "not_group_admin",
        ),
        (
            &bob,
            Method::DELETE,
            format!("/groups/{g}/members/{}", ada.id),
            None,
            403,
            "not_group_admin",
        ),
        (
            &bob,
            Method::PATCH,
            format!("/groups/{g}/members/{}", bob.id),
            Some(json!({"role": "admin"})),
            403,
            "not_group_admin",
        ),
    ];
    for (user, method, path, body, status, reason) in denied {
        let r = call(user, method.clone(), path.clone(), body).await;
        r.assert_error(status);
        assert_eq!(r.reason(), reason, "{method} {path}: {}", r.text);
    }
    // Search does not reach into groups the caller is not in.
    let found = call(&eve, Method::GET, "/messages/search?q=members".into(), None).await;
    assert_eq!(found.body, json!([]), "{}", found.text);
    assert_eq!(
        state(api, &ada, &group).await,
        before,
        "no refusal changed anything"
    );

    // Non-members on the socket: every group event is refused, and nothing is stored.
    let eve_socket = ChatClient::connect(stack.chat_b.port, json!({"token": eve.token})).await;
    for (event, payload) in [
        (
            "chat.message.send",
            json!({"groupId": g, "content": "hi", "clientMessageId": "e-1"}),
        ),
        ("chat.message.seen", json!({"groupId": g, "seq": 1})),
        ("chat.message.delivered", json!({"groupId": g, "seq": 1})),
        (
            "chat.message.delete",
            json!({"groupId": g, "messageId": message_id}),
        ),
        (
            "chat.message.edit",
            json!({"groupId": g, "messageId": message_id, "content": "mine now"}),
        ),
        ("chat.typing", json!({"groupId": g})),
    ] {
        let ack = eve_socket.request(event, payload).await;
        assert_eq!(ack["ok"], false, "{event}: {ack}");
        assert_eq!(ack["error"]["reason"], "not_member", "{event}: {ack}");
    }
    // A member who is not the sender nor an admin cannot delete someone else's message.
    let bob_socket = ChatClient::connect(stack.chat_b.port, json!({"token": bob.token})).await;
    let ack = bob_socket
        .request(
            "chat.message.delete",
            json!({"groupId": g, "messageId": message_id}),
        )
        .await;
    assert_eq!(ack["error"]["reason"], "not_sender_or_admin", "{ack}");
    assert_eq!(
        state(api, &ada, &group).await,
        before,
        "no refusal changed anything"
    );

    // The allowed cells: the admin renames and adds, a member leaves by themself.
    let renamed = call(
        &ada,
        Method::PATCH,
        format!("/groups/{g}"),
        Some(json!({"name": "Crew"})),
    )
    .await;
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.text);
    let added = call(
        &ada,
        Method::POST,
        format!("/groups/{g}/members"),
        Some(json!({"memberIds": [cy.id]})),
    )
    .await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.text);
    let left = call(
        &bob,
        Method::DELETE,
        format!("/groups/{g}/members/{}", bob.id),
        None,
    )
    .await;
    assert_eq!(left.status, StatusCode::NO_CONTENT, "{}", left.text);
    let after = state(api, &ada, &group).await;
    assert_eq!(after["name"], "Crew");
    assert_eq!(after["members"].as_array().unwrap().len(), 2, "{after}");
}

#[tokio::test]
async fn sockets_refuse_every_bad_token_at_connect() {
    let (keys, stack) = signed_with_known_keys().await;
    let ada = stack.api().user("ada").await;
    let url = format!("http://127.0.0.1:{}", stack.chat_a.port);
    let mut handshakes = vec![
        ("no token", json!({})),
        ("an empty token", json!({"token": ""})),
    ];
    for (kind, token) in bad_tokens(&keys, &ada.id, &ada.token) {
        handshakes.push((kind, json!({"token": token})));
    }
    for (kind, auth) in handshakes {
        let refused = ChatClient::try_connect_url(&url, auth).await;
        let why = refused.err().unwrap_or_else(|| panic!("{kind}: connected"));
        assert!(why.starts_with("refused"), "{kind}: {why}");
    }
    // The real token still connects.
    ChatClient::connect(stack.chat_a.port, json!({"token": ada.token})).await;
}
