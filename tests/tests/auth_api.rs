//! The REST API of gateway + auth, as separate processes on real infrastructure, driven by a real
//! HTTP client: the authentication flow of the seed, and everything a client can get wrong.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chat_domain::tokens::{AccessClaims, SigningKey, ISSUER};
use chat_tests::{within, Api, Deployment, KeyFiles, Stack};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn token_of(session: &Value, field: &str) -> String {
    session[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {session}"))
        .to_string()
}

#[tokio::test]
async fn register_login_me_refresh_reuse_and_logout() {
    let stack = Stack::start(&[]).await;
    let api = &stack.api;

    let registered = api
        .register("Ada", "Lovelace", "Ada@Example.com", "correct horse")
        .await;
    assert_eq!(registered["user"]["email"], "ada@example.com");
    assert_eq!(registered["tokenType"], "Bearer");
    assert!(registered["user"].get("password").is_none());

    let start = Instant::now();
    let login = api
        .post(
            "/auth/login",
            json!({"email": "ada@example.com", "password": "correct horse"}),
        )
        .await;
    println!("login latency (debug build, cold): {:?}", start.elapsed());
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
    let access = token_of(&login.body, "accessToken");
    let first_refresh = token_of(&login.body, "refreshToken");

    let me = api.get("/auth/me", Some(&access)).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["id"], registered["user"]["id"]);
    assert_eq!(me.body["firstName"], "Ada");

    let refreshed = api
        .post("/auth/refresh", json!({"refreshToken": first_refresh}))
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text);
    let second_refresh = token_of(&refreshed.body, "refreshToken");
    assert_ne!(second_refresh, first_refresh);
    let new_access = token_of(&refreshed.body, "accessToken");
    assert_eq!(
        api.get("/auth/me", Some(&new_access)).await.status,
        StatusCode::OK
    );

    // Someone presents the spent token again: the whole family is revoked, including the
    // legitimately rotated token.
    assert_eq!(
        api.post("/auth/refresh", json!({"refreshToken": first_refresh}))
            .await
            .assert_error(401),
        "unauthorized"
    );
    api.post("/auth/refresh", json!({"refreshToken": second_refresh}))
        .await
        .assert_error(401);

    // A new login starts a new family; logout ends it.
    let again = api
        .post(
            "/auth/login",
            json!({"email": "ada@example.com", "password": "correct horse"}),
        )
        .await;
    let refresh = token_of(&again.body, "refreshToken");
    let logout = api
        .post("/auth/logout", json!({"refreshToken": refresh}))
        .await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT);
    api.post("/auth/refresh", json!({"refreshToken": refresh}))
        .await
        .assert_error(401);
    // Logging out twice is harmless.
    assert_eq!(
        api.post("/auth/logout", json!({"refreshToken": refresh}))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn a_registered_email_conflicts_whatever_its_case() {
    let stack = Stack::start(&[]).await;
    stack
        .api
        .register("Ada", "Lovelace", "ada@example.com", "correct horse")
        .await;
    let r = stack
        .api
        .post("/auth/register", json!({"firstName": "A", "lastName": "L", "email": " ADA@example.COM ", "password": "another one"}))
        .await;
    assert_eq!(r.assert_error(409), "conflict");
    assert_eq!(r.reason(), "email_taken");
}

#[tokio::test]
async fn wrong_password_and_unknown_email_get_the_same_answer() {
    let stack = Stack::start(&[]).await;
    stack
        .api
        .register("Ada", "Lovelace", "ada@example.com", "correct horse")
        .await;
    let wrong = stack
        .api
        .post(
            "/auth/login",
            json!({"email": "ada@example.com", "password": "wrong horse"}),
        )
        .await;
    let unknown = stack
        .api
        .post(
            "/auth/login",
            json!({"email": "nobody@example.com", "password": "wrong horse"}),
        )
        .await;
    wrong.assert_error(401);
    assert_eq!(wrong.status, unknown.status);
    assert_eq!(wrong.body, unknown.body);
}

#[tokio::test]
async fn malformed_requests_get_4xx_with_the_error_shape() {
    let stack = Stack::start(&[("MAX_BODY_BYTES", "4096")]).await;
    let api = &stack.api;
    let url = format!("{}/auth/register", api.base);
    let raw = |body: &'static str| {
        api.http
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
    };

    assert_eq!(
        api.send(raw("{\"firstName\": ")).await.assert_error(400),
        "bad_request"
    );
    let missing = api
        .send(raw(r#"{"firstName":"A","lastName":"B","email":"a@b.co"}"#))
        .await;
    missing.assert_error(400);
    assert!(
        missing.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("password"),
        "{}",
        missing.text
    );
    api.send(raw(
        r#"{"firstName":1,"lastName":"B","email":"a@b.co","password":"12345678"}"#,
    ))
    .await
    .assert_error(400);

    let invalid_email = api
        .post(
            "/auth/register",
            json!({"firstName":"A","lastName":"B","email":"not-an-email","password":"12345678"}),
        )
        .await;
    assert_eq!(invalid_email.assert_error(400), "validation");
    let short_password = api
        .post(
            "/auth/register",
            json!({"firstName":"A","lastName":"B","email":"a@b.co","password":"short"}),
        )
        .await;
    assert_eq!(short_password.assert_error(400), "validation");
    let blank_name = api
        .post(
            "/auth/register",
            json!({"firstName":"  ","lastName":"B","email":"a@b.co","password":"12345678"}),
        )
        .await;
    assert_eq!(blank_name.assert_error(400), "validation");

    let no_content_type = api
        .send(api.http.post(&url).body(r#"{"email":"a@b.co"}"#))
        .await;
    assert_eq!(no_content_type.assert_error(415), "unsupported_media_type");

    let huge = json!({"firstName": "A".repeat(10_000), "lastName": "B", "email": "a@b.co", "password": "12345678"});
    assert_eq!(
        api.post("/auth/register", huge).await.assert_error(413),
        "payload_too_large"
    );

    assert_eq!(
        api.get("/no/such/route", None).await.assert_error(404),
        "not_found"
    );
    assert_eq!(
        api.send(api.http.delete(&url)).await.assert_error(405),
        "method_not_allowed"
    );
    api.post("/auth/login", json!({"email": "a@b.co"}))
        .await
        .assert_error(400);
    api.post("/auth/refresh", json!({})).await.assert_error(400);
}

fn claims(sub: &str, exp_offset: i64) -> AccessClaims {
    let now = chrono::Utc::now().timestamp();
    AccessClaims {
        sub: sub.into(),
        email: "ada@example.com".into(),
        iat: now - 120,
        exp: now + exp_offset,
        iss: ISSUER.into(),
        aud: ISSUER.into(),
        jti: "test".into(),
        sid: None,
    }
}

#[tokio::test]
async fn tampered_expired_and_foreign_tokens_are_rejected() {
    let keys = KeyFiles::generate();
    let (private, public) = (
        keys.private_pem.to_str().unwrap().to_string(),
        keys.public_pem.to_str().unwrap().to_string(),
    );
    let stack = Stack::start(&[
        ("JWT_PRIVATE_KEY_FILE", &private),
        ("JWT_PUBLIC_KEY_FILE", &public),
    ])
    .await;
    let api = &stack.api;
    let session = api
        .register("Ada", "Lovelace", "ada@example.com", "correct horse")
        .await;
    let user_id = session["user"]["id"].as_str().unwrap();
    let access = token_of(&session, "accessToken");
    assert_eq!(
        api.get("/auth/me", Some(&access)).await.status,
        StatusCode::OK
    );

    // A token we sign ourselves with the deployment's key is accepted: the key file is used.
    let forged_valid = keys.key.sign(&claims(user_id, 60)).unwrap();
    assert_eq!(
        api.get("/auth/me", Some(&forged_valid)).await.status,
        StatusCode::OK
    );

    let expired = keys.key.sign(&claims(user_id, -60)).unwrap();
    api.get("/auth/me", Some(&expired)).await.assert_error(401);

    let mut parts: Vec<String> = access.split('.').map(String::from).collect();
    let mut payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
    payload["sub"] = json!("000000000000000000000000");
    parts[1] = URL_SAFE_NO_PAD.encode(payload.to_string());
    api.get("/auth/me", Some(&parts.join(".")))
        .await
        .assert_error(401);

    let foreign = SigningKey::generate()
        .unwrap()
        .sign(&claims(user_id, 60))
        .unwrap();
    api.get("/auth/me", Some(&foreign)).await.assert_error(401);

    api.get("/auth/me", Some("not.a.token"))
        .await
        .assert_error(401);
    api.get("/auth/me", None).await.assert_error(401);
    let basic = api
        .send(
            api.http
                .get(format!("{}/auth/me", api.base))
                .basic_auth("ada", Some("pw")),
        )
        .await;
    basic.assert_error(401);
}

#[tokio::test]
async fn users_are_paginated_searchable_and_need_a_token() {
    let stack = Stack::start(&[]).await;
    let api = &stack.api;
    let session = api
        .register("Grace", "Hopper", "grace@navy.mil", "correct horse")
        .await;
    let token = token_of(&session, "accessToken");
    for i in 0..11 {
        api.register(
            &format!("User{i:02}"),
            "Smith",
            &format!("user{i:02}@example.com"),
            "correct horse",
        )
        .await;
    }

    let page = api.get("/users?page=3&limit=5", Some(&token)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.body["total"], 12);
    assert_eq!(page.body["page"], 3);
    assert_eq!(page.body["data"].as_array().unwrap().len(), 2);

    let default_page = api.get("/users", Some(&token)).await;
    assert_eq!(default_page.body["limit"], 10);
    assert_eq!(default_page.body["data"].as_array().unwrap().len(), 10);
    assert_eq!(
        api.get("/users?limit=1000", Some(&token)).await.body["limit"],
        100
    );

    let found = api.get("/users?search=hOpPeR", Some(&token)).await;
    assert_eq!(found.body["total"], 1);
    assert_eq!(found.body["data"][0]["email"], "grace@navy.mil");
    assert_eq!(
        api.get("/users?search=user0", Some(&token)).await.body["total"],
        10
    );

    api.get("/users?page=0", Some(&token))
        .await
        .assert_error(400);
    api.get("/users?limit=abc", Some(&token))
        .await
        .assert_error(400);
    api.get("/users?limit=-1", Some(&token))
        .await
        .assert_error(400);
    api.get("/users", None).await.assert_error(401);

    let id = session["user"]["id"].as_str().unwrap();
    let one = api.get(&format!("/users/{id}"), Some(&token)).await;
    assert_eq!(one.body["lastName"], "Hopper");
    api.get("/users/000000000000000000000000", Some(&token))
        .await
        .assert_error(404);
    api.get("/users/not-an-id", Some(&token))
        .await
        .assert_error(404);
}

#[tokio::test]
async fn login_attempts_are_rate_limited_per_email() {
    let stack = Stack::start(&[("LOGIN_MAX_ATTEMPTS_PER_EMAIL", "3")]).await;
    let api = &stack.api;
    api.register("Ada", "Lovelace", "ada@example.com", "correct horse")
        .await;
    for _ in 0..3 {
        api.post(
            "/auth/login",
            json!({"email": "ada@example.com", "password": "wrong horse"}),
        )
        .await
        .assert_error(401);
    }
    let limited = api
        .post(
            "/auth/login",
            json!({"email": "ADA@example.com", "password": "correct horse"}),
        )
        .await;
    assert_eq!(limited.assert_error(429), "rate_limited");
    let retry_after: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=300).contains(&retry_after));
    // Other accounts are unaffected.
    api.register("Bob", "B", "bob@example.com", "correct horse")
        .await;
    assert_eq!(
        api.post(
            "/auth/login",
            json!({"email": "bob@example.com", "password": "correct horse"})
        )
        .await
        .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn login_attempts_are_rate_limited_per_client_address() {
    let stack = Stack::start(&[("LOGIN_MAX_ATTEMPTS_PER_ADDRESS", "4")]).await;
    for i in 0..4 {
        let r = stack
            .api
            .post(
                "/auth/login",
                json!({"email": format!("n{i}@example.com"), "password": "whatever1"}),
            )
            .await;
        r.assert_error(401);
    }
    let r = stack
        .api
        .post(
            "/auth/login",
            json!({"email": "n9@example.com", "password": "whatever1"}),
        )
        .await;
    assert_eq!(r.assert_error(429), "rate_limited");
}

#[tokio::test]
async fn health_metrics_and_openapi_are_served() {
    let stack = Stack::start(&[]).await;
    let api = &stack.api;
    assert_eq!(api.get("/livez", None).await.status, StatusCode::OK);
    assert_eq!(api.get("/readyz", None).await.status, StatusCode::OK);
    let ready = api.get("/readyz?verbose", None).await;
    assert_eq!(ready.status, StatusCode::OK);
    let auth = Api::new(stack.auth.port);
    if stack.deployment.embedded {
        assert_eq!(
            ready.body["dependencies"]["database"], "ok",
            "{}",
            ready.text
        );
        assert_eq!(api.get("/health", None).await.body["role"], "all");
    } else {
        assert_eq!(ready.body["dependencies"]["rabbitmq"], "ok");
        let auth_ready = auth.get("/readyz?verbose", None).await;
        assert_eq!(auth_ready.status, StatusCode::OK);
        let health = auth.get("/health", None).await;
        assert_eq!(health.status, StatusCode::OK, "{}", health.text);
        assert_eq!(health.body["role"], "auth");
        for dep in ["mongodb", "redis", "rabbitmq"] {
            assert_eq!(
                auth_ready.body["dependencies"][dep], "ok",
                "{}",
                auth_ready.text
            );
            assert_eq!(health.body["checks"][dep], "ok", "{}", health.text);
        }
    }

    api.post(
        "/auth/login",
        json!({"email": "x@example.com", "password": "whatever1"}),
    )
    .await;
    let metrics = api.get("/metrics", None).await;
    assert!(
        metrics.text.contains(
            "chat_http_requests_total{method=\"POST\",route=\"/auth/login\",status=\"401\"}"
        ),
        "{}",
        metrics.text
    );
    assert!(metrics
        .text
        .contains("chat_rpc_calls_total{pattern=\"user.login\",outcome=\"unauthorized\"}"));

    let openapi = api.get("/openapi.json", None).await;
    for path in [
        "/auth/register",
        "/auth/login",
        "/auth/refresh",
        "/auth/logout",
        "/auth/me",
        "/users",
        "/users/{id}",
    ] {
        assert!(
            openapi.body["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
    let reasons = &openapi.body["components"]["schemas"]["ErrorDetail"]["properties"]["reason"];
    for reason in [
        "email_taken",
        "not_group_admin",
        "upload_not_found",
        "unavailable",
    ] {
        assert!(
            reasons["enum"].as_array().unwrap().contains(&json!(reason)),
            "{reason} missing from ErrorDetail.reason: {reasons}"
        );
    }
    let jwks = api.get("/.well-known/jwks.json", None).await;
    assert_eq!(jwks.body["keys"][0]["kty"], "OKP");

    let r = api
        .send(
            api.http
                .get(format!("{}/livez", api.base))
                .header("x-request-id", "abc-123"),
        )
        .await;
    assert_eq!(r.headers["x-request-id"], "abc-123");
}

#[tokio::test]
async fn cors_allows_only_configured_origins() {
    let stack = Stack::start(&[("CORS_ALLOWED_ORIGINS", "http://localhost:3000")]).await;
    let api = &stack.api;
    let preflight = |origin: &str| {
        api.http
            .request(reqwest::Method::OPTIONS, format!("{}/auth/login", api.base))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
    };
    let allowed = api.send(preflight("http://localhost:3000")).await;
    assert_eq!(
        allowed.headers["access-control-allow-origin"],
        "http://localhost:3000"
    );
    let denied = api.send(preflight("http://evil.example")).await;
    assert!(denied.headers.get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn the_gateway_answers_503_quickly_when_auth_is_down() {
    if chat_tests::skip_in_embedded_mode("auth is not a separate process") {
        return;
    }
    // With a ten-minute RPC timeout, only an answer that does not wait for one comes back
    // within the guard: nobody consumes auth's queue, so the gateway must not wait.
    let deployment = Deployment::new(&[("RPC_TIMEOUT_MS", "600000")]);
    let gateway = deployment.spawn("gateway").await;
    let api = Api::new(gateway.port);
    let login = api.post(
        "/auth/login",
        json!({"email": "a@example.com", "password": "whatever1"}),
    );
    let r = within(Duration::from_secs(60), "the gateway's answer", login).await;
    assert_eq!(r.assert_error(503), "unavailable");
}

#[tokio::test]
async fn all_runs_gateway_and_auth_in_one_process() {
    let deployment = Deployment::new(&[]);
    let all = deployment.spawn("all").await;
    let api = Api::new(all.port);
    let session = api
        .register("Ada", "Lovelace", "ada@example.com", "correct horse")
        .await;
    let me = api
        .get("/auth/me", Some(&token_of(&session, "accessToken")))
        .await;
    assert_eq!(me.body["email"], "ada@example.com");
}

#[tokio::test]
async fn sigterm_stops_a_role_cleanly() {
    let deployment = Deployment::new(&[]);
    let mut all = deployment.spawn("all").await;
    let status = all
        .terminate(Duration::from_secs(15))
        .expect("exits after SIGTERM");
    assert!(status.success(), "{status}");
}

fn run_with_env(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(chat_tests::chat_server_bin())
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn a_bad_setting_stops_the_process_naming_the_variable_without_its_value() {
    let out = run_with_env(&["gateway"], &[("PORT", "eighty")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("PORT"));

    let out = run_with_env(
        &["auth"],
        &[("MONGODB_URI", "postgres://admin:hunter2@db:5432")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("MONGODB_URI") && !stderr.contains("hunter2"),
        "{stderr}"
    );

    let out = run_with_env(
        &["auth"],
        &[("JWT_PRIVATE_KEY_FILE", "/nonexistent/key.pem")],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("JWT_PRIVATE_KEY_FILE"));

    let out = run_with_env(&["nonsense"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage"));
}

#[test]
fn an_unreachable_database_fails_start_up_without_printing_the_password() {
    let out = run_with_env(
        &["migrate"],
        &[
            ("MONGODB_URI", "mongodb://admin:hunter2@127.0.0.1:1/db"),
            ("STARTUP_TIMEOUT_SECONDS", "1"),
            ("LOG_FORMAT", "json"),
        ],
    );
    assert!(!out.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("mongodb"), "{all}");
    assert!(!all.contains("hunter2"), "password leaked: {all}");
}

#[tokio::test]
async fn migrate_creates_the_indexes_and_exits() {
    if chat_tests::skip_in_embedded_mode(
        "migrate creates MongoDB indexes; the embedded database makes its schema on open",
    ) {
        return;
    }
    let deployment = Deployment::new(&[]);
    let env: Vec<(&str, &str)> = deployment
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    for _ in 0..2 {
        let out = run_with_env(&["migrate"], &env);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test]
async fn other_roles_can_verify_tokens_over_rpc() {
    if chat_tests::skip_in_embedded_mode("the RPC bus is in-process") {
        return;
    }
    use chat_domain::contracts::auth::{UserVerify, VerifyRequest};
    use chat_domain::rpc::CallContext;
    use chat_ports::rpc::RpcClient;
    let stack = Stack::start(&[]).await;
    let session = stack
        .api
        .register("Ada", "Lovelace", "ada@example.com", "correct horse")
        .await;
    let uri = stack
        .deployment
        .env
        .iter()
        .find(|(k, _)| k == "RABBITMQ_URI")
        .unwrap()
        .1
        .clone();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let amqp = chat_rabbitmq::AmqpClient::start(
        chat_domain::config::Secret::new(uri),
        &stack.deployment.namespace,
        "verify-test",
        shutdown.clone(),
    );
    let rpc = RpcClient::new(std::sync::Arc::new(amqp), Duration::from_secs(5));
    let ctx = CallContext::internal();
    let verified = rpc
        .call::<UserVerify>(
            &VerifyRequest {
                token: token_of(&session, "accessToken"),
            },
            &ctx,
        )
        .await
        .unwrap();
    assert_eq!(verified.user_id, session["user"]["id"].as_str().unwrap());
    assert_eq!(verified.email, "ada@example.com");
    let err = rpc
        .call::<UserVerify>(
            &VerifyRequest {
                token: "forged".into(),
            },
            &ctx,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, chat_domain::ErrorCode::Unauthorized);
    shutdown.cancel();
}

#[test]
fn a_malformed_mongodb_uri_is_named_without_echoing_it() {
    let out = run_with_env(
        &["migrate"],
        &[("MONGODB_URI", "mongodb://admin:hunter2@/db?authSource=")],
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success());
    assert!(all.contains("MONGODB_URI"), "{all}");
    assert!(!all.contains("hunter2"), "password leaked: {all}");
}

#[tokio::test]
async fn probes_and_metrics_move_to_the_management_port() {
    let stack = Stack::start(&[("MANAGEMENT_PORT", "0")]).await;
    let (api, management) = (&stack.api, Api::new(stack.gateway.management_port));
    assert_ne!(stack.gateway.port, stack.gateway.management_port);
    api.register("Ada", "Lovelace", "ada@example.com", "correct horse")
        .await;
    for path in ["/livez", "/readyz", "/health", "/metrics"] {
        assert_eq!(
            api.get(path, None).await.assert_error(404),
            "not_found",
            "{path} on the API port"
        );
        assert_eq!(
            management.get(path, None).await.status,
            StatusCode::OK,
            "{path} on the management port"
        );
    }
    let metrics = management.get("/metrics", None).await;
    assert!(
        metrics.text.contains(
            "chat_http_requests_total{method=\"POST\",route=\"/auth/register\",status=\"201\"}"
        ),
        "{}",
        metrics.text
    );
    assert_eq!(
        management.get("/auth/me", None).await.assert_error(404),
        "not_found",
        "the management port serves no API"
    );
}

fn rabbitmqctl(command: &str) {
    let status = std::process::Command::new("rabbitmqctl")
        .args(["-q", command])
        .status()
        .expect("rabbitmqctl runs");
    assert!(status.success(), "rabbitmqctl {command} failed");
}

/// The broker stopped until dropped, so a failed assertion never leaves it down for later tests.
struct BrokerStopped;

impl BrokerStopped {
    fn new() -> Self {
        rabbitmqctl("stop_app");
        BrokerStopped
    }
}

impl Drop for BrokerStopped {
    fn drop(&mut self) {
        rabbitmqctl("start_app");
    }
}

/// Stops the RabbitMQ application under gateway, auth and group (run alone: see
/// scripts/test.sh). Readiness stays true so no Ingress pulls every pod; what needs the broker
/// is answered 503 `unavailable`; it all comes back without a restart.
#[tokio::test]
async fn broker_restart_keeps_every_role_ready_and_answers_unavailable() {
    if chat_tests::skip_in_embedded_mode("the embedded mode has no broker") {
        return;
    }
    let stack = Stack::start(&[("RPC_TIMEOUT_MS", "2000")]).await;
    let api = &stack.api;
    api.register("Ada", "Lovelace", "ada@example.com", "correct horse")
        .await;
    let login = json!({"email": "ada@example.com", "password": "correct horse"});
    let roles = [&stack.gateway, &stack.auth, &stack.group];

    let broker = BrokerStopped::new();
    for role in roles {
        let probes = Api::new(role.management_port);
        let ready = probes.get("/readyz?verbose", None).await;
        assert_eq!(
            ready.status,
            StatusCode::OK,
            "{}: {}",
            role.role,
            ready.text
        );
        assert_ne!(
            ready.body["dependencies"]["rabbitmq"], "ok",
            "{}",
            ready.text
        );
        let health = probes.get("/health", None).await;
        assert_eq!(
            health.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            health.text
        );
    }
    let refused = api.post("/auth/login", login.clone()).await;
    assert_eq!(refused.assert_error(503), "unavailable");
    drop(broker);

    let start = Instant::now();
    within(
        Duration::from_secs(60),
        "login after the broker's start",
        async {
            loop {
                let answer = api.post("/auth/login", login.clone()).await;
                if answer.status == StatusCode::OK {
                    return;
                }
                // While auth's consumer comes back, a request may wait in its queue until the
                // RPC timeout: 504 `timeout`. Either way an answer, never a hang.
                let status = answer.status.as_u16();
                assert!(status == 503 || status == 504, "{}", answer.text);
                let code = answer.assert_error(status);
                assert!(
                    ["unavailable", "timeout"].contains(&code),
                    "{}",
                    answer.text
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        },
    )
    .await;
    println!("login answered {:?} after start_app", start.elapsed());
    for role in roles {
        let probes = Api::new(role.management_port);
        let what = format!("{} reporting the broker back", role.role);
        within(Duration::from_secs(60), what, async {
            while probes.get("/health", None).await.status != StatusCode::OK {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
    }
}
