//! Groups through the REST API, with gateway, auth and group as separate processes: creation,
//! direct conversations, visibility, admin rights and the last-admin rule.

use chat_tests::{Api, Stack, User};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn call(
    api: &Api,
    method: Method,
    path: &str,
    user: &User,
    body: Option<Value>,
) -> chat_tests::Response {
    let mut request = api.authed(method, path, user);
    if let Some(body) = body {
        request = request.json(&body);
    }
    api.send(request).await
}

fn member_ids(group: &Value) -> Vec<String> {
    group["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["userId"].as_str().unwrap().to_string())
        .collect()
}

fn role_of(group: &Value, user: &User) -> String {
    group["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["userId"] == user.id.as_str())
        .unwrap()["role"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn the_creator_is_admin_and_members_see_the_group() {
    let stack = Stack::start(&[]).await;
    let api = &stack.api;
    let (ada, bob, eve) = (
        api.user("ada").await,
        api.user("bob").await,
        api.user("eve").await,
    );

    let created = call(
        api,
        Method::POST,
        "/groups",
        &ada,
        Some(json!({"name": " Project Team ", "memberIds": [bob.id, ada.id]})),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.body["name"], "Project Team");
    assert_eq!(created.body["direct"], false);
    assert_eq!(
        member_ids(&created.body),
        vec![ada.id.clone(), bob.id.clone()]
    );
    assert_eq!(role_of(&created.body, &ada), "admin");
    assert_eq!(role_of(&created.body, &bob), "member");
    let id = created.body["id"].as_str().unwrap();

    let bobs = call(api, Method::GET, "/groups", &bob, None).await;
    assert_eq!(bobs.body.as_array().unwrap().len(), 1);
    assert_eq!(
        call(api, Method::GET, &format!("/groups/{id}"), &bob, None)
            .await
            .status,
        StatusCode::OK
    );

    // Non-members cannot tell the group exists.
    call(api, Method::GET, &format!("/groups/{id}"), &eve, None)
        .await
        .assert_error(404);
    assert!(call(api, Method::GET, "/groups", &eve, None)
        .await
        .body
        .as_array()
        .unwrap()
        .is_empty());
    call(
        api,
        Method::GET,
        "/groups/000000000000000000000000",
        &ada,
        None,
    )
    .await
    .assert_error(404);
    call(api, Method::GET, "/groups/nonsense", &ada, None)
        .await
        .assert_error(404);
    api.get("/groups", None).await.assert_error(401);
}

#[tokio::test]
async fn a_direct_conversation_is_created_once_per_pair() {
    let stack = Stack::start(&[]).await;
    let api = &stack.api;
    let (ada, bob) = (api.user("ada").await, api.user("bob").await);
    let first = call(
        api,
        Method::POST,
        "/groups",
        &ada,
        Some(json!({"memberIds": [bob.id]})),
    )
    .await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(first.body["direct"], true);
    // Either side asking again gets the same conversation, with 200.
    let again = call(
        api,
        Method::POST,
        "/groups",
        &bob,
        Some(json!({"memberIds": [ada.id]})),
    )
    .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["id"], first.body["id"]);

    let id = first.body["id"].as_str().unwrap();
    let rename = call(
        api,
        Method::PATCH,
        &format!("/groups/{id}"),
        &ada,
        Some(json!({"name": "x"})),
    )
    .await;
    assert_eq!(rename.assert_error(400), "validation");
    let carol = api.user("carol").await;
    call(
        api,
        Method::POST,
        &format!("/groups/{id}/members"),
        &ada,
        Some(json!({"memberIds": [carol.id]})),
    )
    .await
    .assert_error(400);
}

#[tokio::test]
async fn bad_group_requests_get_400() {
    let stack = Stack::start(&[]).await;
    let api = &stack.api;
    let ada = api.user("ada").await;
    let bad = |body: Value| call(api, Method::POST, "/groups", &ada, Some(body));
    assert_eq!(
        bad(json!({"memberIds": []})).await.assert_error(400),
        "validation"
    );
    assert_eq!(
        bad(json!({"memberIds": [ada.id]})).await.assert_error(400),
        "validation"
    );
    let unknown = bad(json!({"name": "T", "memberIds": ["000000000000000000000000"]})).await;
    assert!(unknown.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("unknown"));
    unknown.assert_error(400);
    bad(json!({"name": "x".repeat(101), "memberIds": []}))
        .await
        .assert_error(400);
    bad(json!({"name": "T"})).await.assert_error(400);
    bad(json!({"name": 5, "memberIds": []}))
        .await
        .assert_error(400);
    // A named group with only its creator is fine.
    assert_eq!(
        bad(json!({"name": "Notes to self", "memberIds": []}))
            .await
            .status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn only_admins_rename_add_and_remove_others() {
    let stack = Stack::start(&[]).await;
    let api = &stack.api;
    let (ada, bob, carol) = (
        api.user("ada").await,
        api.user("bob").await,
        api.user("carol").await,
    );
    let group = call(
        api,
        Method::POST,
        "/groups",
        &ada,
        Some(json!({"name": "Team", "memberIds": [bob.id]})),
    )
    .await;
    let id = group.body["id"].as_str().unwrap().to_string();
    let path = |rest: &str| format!("/groups/{id}{rest}");

    assert_eq!(
        call(
            api,
            Method::PATCH,
            &path(""),
            &bob,
            Some(json!({"name": "Mine"}))
        )
        .await
        .reason(),
        "not_group_admin"
    );
    call(
        api,
        Method::POST,
        &path("/members"),
        &bob,
        Some(json!({"memberIds": [carol.id]})),
    )
    .await
    .assert_error(403);
    call(
        api,
        Method::DELETE,
        &path(&format!("/members/{}", ada.id)),
        &bob,
        None,
    )
    .await
    .assert_error(403);
    // Outsiders get 404, not 403: they do not learn the group exists.
    let outsider = call(
        api,
        Method::POST,
        &path("/members"),
        &carol,
        Some(json!({"memberIds": [carol.id]})),
    )
    .await;
    assert_eq!(outsider.assert_error(404), "not_found");
    assert_eq!(outsider.reason(), "group_not_found");

    let renamed = call(
        api,
        Method::PATCH,
        &path(""),
        &ada,
        Some(json!({"name": "Renamed", "imageUrl": "https://cdn.example.com/t.png"})),
    )
    .await;
    assert_eq!(renamed.body["name"], "Renamed");
    assert_eq!(renamed.body["imageUrl"], "https://cdn.example.com/t.png");
    let cleared = call(
        api,
        Method::PATCH,
        &path(""),
        &ada,
        Some(json!({"imageUrl": null})),
    )
    .await;
    assert!(cleared.body.get("imageUrl").is_none(), "{}", cleared.text);
    call(
        api,
        Method::PATCH,
        &path(""),
        &ada,
        Some(json!({"imageUrl": "javascript:alert(1)"})),
    )
    .await
    .assert_error(400);
    call(api, Method::PATCH, &path(""), &ada, Some(json!({})))
        .await
        .assert_error(400);

    let added = call(
        api,
        Method::POST,
        &path("/members"),
        &ada,
        Some(json!({"memberIds": [carol.id, bob.id]})),
    )
    .await;
    assert_eq!(member_ids(&added.body).len(), 3);
    assert_eq!(
        call(api, Method::GET, &path(""), &carol, None).await.status,
        StatusCode::OK
    );

    let removed = call(
        api,
        Method::DELETE,
        &path(&format!("/members/{}", carol.id)),
        &ada,
        None,
    )
    .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    call(api, Method::GET, &path(""), &carol, None)
        .await
        .assert_error(404);
    call(
        api,
        Method::DELETE,
        &path(&format!("/members/{}", carol.id)),
        &ada,
        None,
    )
    .await
    .assert_error(404);

    // A member may leave on their own.
    assert_eq!(
        call(
            api,
            Method::DELETE,
            &path(&format!("/members/{}", bob.id)),
            &bob,
            None
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );
    call(api, Method::GET, &path(""), &bob, None)
        .await
        .assert_error(404);
}

#[tokio::test]
async fn a_group_never_loses_its_last_admin() {
    let stack = Stack::start(&[]).await;
    let api = &stack.api;
    let (ada, bob, carol) = (
        api.user("ada").await,
        api.user("bob").await,
        api.user("carol").await,
    );
    let group = call(
        api,
        Method::POST,
        "/groups",
        &ada,
        Some(json!({"name": "Team", "memberIds": [bob.id, carol.id]})),
    )
    .await;
    let id = group.body["id"].as_str().unwrap().to_string();

    // The only admin leaves: the longest-standing member inherits the group.
    call(
        api,
        Method::DELETE,
        &format!("/groups/{id}/members/{}", ada.id),
        &ada,
        None,
    )
    .await;
    let now = call(api, Method::GET, &format!("/groups/{id}"), &bob, None).await;
    assert_eq!(member_ids(&now.body).len(), 2);
    let admins: Vec<_> = now.body["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "admin")
        .collect();
    assert_eq!(admins.len(), 1, "{}", now.text);

    // When the last member leaves, the group is gone.
    call(
        api,
        Method::DELETE,
        &format!("/groups/{id}/members/{}", bob.id),
        &bob,
        None,
    )
    .await;
    call(
        api,
        Method::DELETE,
        &format!("/groups/{id}/members/{}", carol.id),
        &carol,
        None,
    )
    .await;
    assert!(call(api, Method::GET, "/groups", &carol, None)
        .await
        .body
        .as_array()
        .unwrap()
        .is_empty());
}
