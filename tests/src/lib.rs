//! Harness for black-box tests: starts `chat-server` roles in-process on port 0
//! ([`Deployment::start`], through the same `Application` the binary runs), or as real processes
//! where a test kills, drains or runs several replicas ([`Deployment::spawn`]: `PORT=0`, the bound
//! port reported through `CHAT_ADDRESS_FILE`, so no port is picked and then raced for),
//! against the real servers of `scripts/infra.sh`, each test in its own MongoDB database and
//! namespace (queues, keys), and drives them over HTTP.
//!
//! Every response body goes through [`Response::new`], which fails the test if it contains a
//! password hash: no endpoint may ever return one.

pub mod raw;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::collections::HashMap;

use chat_domain::config::{Config, INFRASTRUCTURE_VARIABLES};
use chat_server::app::Application;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// The `chat-server` binary of the same cargo profile: beside this executable (the bench
/// binary) or one level up (test binaries live in `deps/`).
pub fn chat_server_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("own executable path");
    let name = format!("chat-server{}", std::env::consts::EXE_SUFFIX);
    let dir = exe.parent().expect("executable directory");
    let candidates = [
        dir.join(&name),
        dir.parent().map(|d| d.join(&name)).unwrap_or_default(),
    ];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "{} not found: build it with `cargo build -p chat-server` (scripts/test.sh does)",
                candidates[1].display()
            )
        })
}

/// A short unique name.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// `MONGODB_URI` without its database path, so tests can pick their own database.
pub fn mongodb_server_uri() -> String {
    let uri = env_or("MONGODB_URI", "mongodb://127.0.0.1:27017");
    let (scheme, rest) = uri.split_once("://").expect("MONGODB_URI has a scheme");
    let host = rest.split(['/', '?']).next().unwrap_or(rest);
    format!("{scheme}://{host}")
}

/// Whether the black-box tests run against `chat-server all` on its embedded adapters
/// (`CHAT_TEST_EMBEDDED=1`, the second pass of `scripts/test.sh`) instead of separate roles on
/// the real servers.
pub fn embedded_mode() -> bool {
    std::env::var("CHAT_TEST_EMBEDDED").is_ok_and(|v| v == "1")
}

/// True (and says so) in embedded mode, for tests about separate processes or the real servers.
pub fn skip_in_embedded_mode(why: &str) -> bool {
    let skip = embedded_mode();
    if skip {
        eprintln!("not applicable in embedded mode: {why}");
    }
    skip
}

/// A running `chat-server` process, killed when dropped. In embedded mode several roles are
/// one process: the others are aliases of it (same port, no process of their own).
pub struct RoleProcess {
    pub role: String,
    pub port: u16,
    /// Where `/readyz`, `/health` and `/metrics` answer: `port`, unless the deployment sets
    /// `MANAGEMENT_PORT` (in-process roles only).
    pub management_port: u16,
    child: Option<Child>,
    in_process: Option<InProcess>,
}

/// A role running in this process, on a thread and runtime of its own.
struct InProcess {
    stop: CancellationToken,
    stopped: std::sync::mpsc::Receiver<()>,
}

impl Drop for InProcess {
    /// Stops the role and waits (a bounded time) until it has drained.
    fn drop(&mut self) {
        self.stop.cancel();
        let _ = self.stopped.recv_timeout(Duration::from_secs(30));
    }
}

impl RoleProcess {
    /// Another name for the same process (embedded mode).
    pub fn alias(&self, role: &str) -> RoleProcess {
        RoleProcess {
            role: role.to_string(),
            port: self.port,
            management_port: self.management_port,
            child: None,
            in_process: None,
        }
    }

    /// The process id; `None` for an alias.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends SIGKILL and waits. A role started in-process is stopped instead (it drains): a
    /// test of what a crash leaves behind needs [`Deployment::spawn`].
    pub fn kill(&mut self) {
        drop(self.in_process.take());
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits up to `limit` for the exit status.
    pub fn terminate(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        self.signal("TERM");
        wait_at_most(self.child.as_mut()?, limit)
    }

    /// Sends the signal `name` (`STOP`, `CONT`, `TERM`) to a spawned process.
    pub fn signal(&self, name: &str) {
        let pid = self.pid().expect("a spawned process");
        let sent = Command::new("kill")
            .args([format!("-{name}"), pid.to_string()])
            .status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -{name} {pid}");
    }
}

/// Waits up to `limit` for `child` to exit; its status, or `None` if it still runs.
pub fn wait_at_most(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

impl Drop for RoleProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The environment of one isolated test deployment. An embedded deployment's data directory is
/// removed when it is dropped (declare it before its processes, so they stop first).
pub struct Deployment {
    pub namespace: String,
    pub database: String,
    pub env: Vec<(String, String)>,
    /// `chat-server all` on its embedded adapters, with its data under `data_dir`.
    pub embedded: bool,
    pub data_dir: PathBuf,
}

impl Drop for Deployment {
    /// Removes the deployment's data: the embedded data directory, or its MongoDB database.
    fn drop(&mut self) {
        if self.embedded {
            let _ = std::fs::remove_dir_all(&self.data_dir);
            return;
        }
        let database = self.database.clone();
        // On a thread of its own: a test's runtime may be the one dropping us.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let client = mongodb::Client::with_uri_str(mongodb_server_uri())
                    .await
                    .ok()?;
                client.database(&database).drop().await.ok()
            })
        })
        .join();
    }
}

impl Deployment {
    /// A fresh namespace and database; `extra` adds or overrides variables.
    pub fn new(extra: &[(&str, &str)]) -> Self {
        Self::with_mode(extra, embedded_mode())
    }

    /// A deployment of `chat-server all` on its embedded adapters, whatever the test mode.
    pub fn embedded(extra: &[(&str, &str)]) -> Self {
        Self::with_mode(extra, true)
    }

    fn with_mode(extra: &[(&str, &str)], embedded: bool) -> Self {
        let namespace = unique("t");
        let database = format!("test_{namespace}");
        let mut env = vec![
            ("CHAT_NAMESPACE".to_string(), namespace.clone()),
            (
                "MONGODB_URI".to_string(),
                format!("{}/{database}", mongodb_server_uri()),
            ),
            (
                "RABBITMQ_URI".to_string(),
                env_or("RABBITMQ_URI", "amqp://guest:guest@127.0.0.1:5672/%2f"),
            ),
            (
                "REDIS_URL".to_string(),
                env_or("REDIS_URL", "redis://127.0.0.1:6379"),
            ),
            (
                "KAFKA_BROKERS".to_string(),
                env_or("KAFKA_BROKERS", "127.0.0.1:9092"),
            ),
            ("RUST_LOG".to_string(), env_or("TEST_RUST_LOG", "warn")),
            ("BIND_ADDRESS".to_string(), "127.0.0.1".to_string()),
            // Cheaper hashing keeps the suite fast; production defaults are tested in unit tests.
            ("ARGON2_MEMORY_KIB".to_string(), "4096".to_string()),
            ("ARGON2_ITERATIONS".to_string(), "1".to_string()),
        ];
        let data_dir = std::env::temp_dir().join(format!("chat-test-{namespace}"));
        if embedded {
            env.retain(|(name, _)| !INFRASTRUCTURE_VARIABLES.contains(&name.as_str()));
            env.push(("CHAT_DATA_DIR".to_string(), data_dir.display().to_string()));
        }
        for (k, v) in extra {
            env.retain(|(name, _)| name != k);
            env.push((k.to_string(), v.to_string()));
        }
        Deployment {
            namespace,
            database,
            env,
            embedded,
            data_dir,
        }
    }

    /// The deployment's MongoDB database, for checks that look under the API.
    pub async fn database(&self) -> mongodb::Database {
        mongodb::Client::with_uri_str(mongodb_server_uri())
            .await
            .expect("mongodb client")
            .database(&self.database)
    }

    /// Starts `role` in this process, on port 0, as the `chat-server` binary would (the same
    /// `Application`), and waits until it is ready with its dependencies connected. In an embedded deployment every
    /// role is `all`. It stops when the returned handle is dropped.
    pub async fn start(&self, role: &str) -> RoleProcess {
        let server_role = chat_server::Role::parse(if self.embedded { "all" } else { role })
            .expect("a role name");
        let name = server_role.name();
        let mut vars: HashMap<String, String> = std::env::vars().collect();
        if self.embedded {
            for name in INFRASTRUCTURE_VARIABLES {
                vars.remove(name);
            }
        }
        vars.extend(self.env.iter().cloned());
        vars.insert("PORT".into(), "0".into());
        if vars.contains_key("MANAGEMENT_PORT") {
            vars.insert("MANAGEMENT_PORT".into(), "0".into());
        }
        let config = Config::from_lookup(&vars).expect("a valid test configuration");
        let stop = CancellationToken::new();
        let (bound_tx, bound) = tokio::sync::oneshot::channel::<Result<(u16, u16), String>>();
        let (stopped_tx, stopped) = std::sync::mpsc::channel();
        let token = stop.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let application = match Application::build(server_role, config, token).await {
                    Ok(application) => application,
                    Err(e) => return drop(bound_tx.send(Err(e.to_string()))),
                };
                let ports = application.address().map(|a| {
                    let management = application.management_address().unwrap_or(a);
                    (a.port(), management.port())
                });
                let _ = bound_tx.send(ports.map_err(|e| e.to_string()));
                if let Err(e) = application.run_until_stopped().await {
                    eprintln!("chat-server {name} stopped with an error: {e}");
                }
            });
            let _ = stopped_tx.send(());
        });
        let (port, management_port) = bound
            .await
            .expect("the role's thread answers")
            .unwrap_or_else(|e| panic!("chat-server {role} did not start: {e}"));
        let mut process = RoleProcess {
            role: role.to_string(),
            port,
            management_port,
            child: None,
            in_process: Some(InProcess { stop, stopped }),
        };
        wait_ready(&mut process).await;
        process
    }

    /// Starts `chat-server <role>` as a process on a port of its choosing and waits until its
    /// `/readyz` answers 200: for tests that kill, drain or run several replicas. In an embedded
    /// deployment every role is `chat-server all`.
    pub async fn spawn(&self, role: &str) -> RoleProcess {
        assert!(
            self.env.iter().all(|(name, _)| name != "MANAGEMENT_PORT"),
            "spawned processes report only their API port"
        );
        let address_file = std::env::temp_dir().join(unique("chat-address-"));
        let mut command = Command::new(chat_server_bin());
        command.arg(if self.embedded && role != "migrate" {
            "all"
        } else {
            role
        });
        if self.embedded {
            for name in INFRASTRUCTURE_VARIABLES {
                command.env_remove(name);
            }
        }
        let child = command
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("PORT", "0")
            .env("CHAT_ADDRESS_FILE", &address_file)
            .stdin(Stdio::null())
            .spawn()
            .expect("chat-server starts");
        let mut process = RoleProcess {
            role: role.to_string(),
            port: 0,
            management_port: 0,
            child: Some(child),
            in_process: None,
        };
        process.port = reported_port(&mut process, &address_file).await;
        process.management_port = process.port;
        let _ = std::fs::remove_file(&address_file);
        wait_ready(&mut process).await;
        process
    }
}

/// This package's directory (`tests/`), as the test runner gives it when the test runs: a test
/// binary reused from a build cache shared by two checkouts would otherwise read the files of the
/// checkout that built it.
pub fn package_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
}

/// Runs `work` to its end, panicking with `what` if that takes longer than `limit`: a guard
/// against a hang, not a timing assertion.
pub async fn within<T>(
    limit: Duration,
    what: impl std::fmt::Display,
    work: impl std::future::Future<Output = T>,
) -> T {
    tokio::time::timeout(limit, work)
        .await
        .unwrap_or_else(|_| panic!("{what}: not done within {limit:?}"))
}

/// Panics when a spawned process has already exited: it will never become ready.
fn assert_running(process: &mut RoleProcess) {
    if let Some(Ok(Some(status))) = process.child.as_mut().map(|c| c.try_wait()) {
        panic!(
            "chat-server {} exited during start-up: {status}",
            process.role
        );
    }
}

/// The port the process reports in `address_file` once it listens.
async fn reported_port(process: &mut RoleProcess, address_file: &std::path::Path) -> u16 {
    let what = format!("chat-server {} reporting its address", process.role);
    within(Duration::from_secs(60), what, async {
        loop {
            assert_running(process);
            if let Ok(address) = std::fs::read_to_string(address_file) {
                return address
                    .trim()
                    .parse::<std::net::SocketAddr>()
                    .unwrap_or_else(|_| {
                        panic!("not an address in {}: {address}", address_file.display())
                    })
                    .port();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// Waits until the role takes traffic (`/readyz`) and every dependency it uses answers
/// (`/health`): readiness no longer waits for dependencies, and a test's first request should
/// not race the first connection to RabbitMQ.
async fn wait_ready(process: &mut RoleProcess) {
    let base = format!("http://127.0.0.1:{}", process.management_port);
    let client = reqwest::Client::new();
    let what = format!("chat-server {} becoming ready", process.role);
    within(Duration::from_secs(30), what, async {
        loop {
            assert_running(process);
            let mut answered = 0;
            for path in ["/readyz", "/health"] {
                if let Ok(r) = client
                    .get(format!("{base}{path}"))
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                {
                    answered += u8::from(r.status() == StatusCode::OK);
                }
            }
            if answered == 2 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

/// A response, checked for leaked password hashes.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Response {
    async fn new(r: reqwest::Response) -> Self {
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap_or_default();
        assert!(
            !text.contains("$argon2") && !text.to_lowercase().contains("passwordhash"),
            "a response contains a password hash: {text}"
        );
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Response {
            status,
            headers,
            body,
            text,
        }
    }

    /// Asserts the status and the error shape `{"error":{"code","message"}}`; returns the code.
    /// The error's specific `reason`.
    pub fn reason(&self) -> &str {
        self.body["error"]["reason"]
            .as_str()
            .unwrap_or_else(|| panic!("no error reason in {}", self.text))
    }

    pub fn assert_error(&self, status: u16) -> &str {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.text
        );
        let error = &self.body["error"];
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "no error message in {}",
            self.text
        );
        let code = error["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {}", self.text));
        let reason = self.reason();
        assert!(
            reason == code
                || chat_domain::error::all_reasons()
                    .iter()
                    .any(|r| r.reason == reason && r.code.as_str() == code),
            "reason {reason} is not documented for code {code}"
        );
        assert_eq!(
            self.body.as_object().map(|o| o.len()),
            Some(1),
            "extra members in {}",
            self.text
        );
        code
    }
}

/// An HTTP client bound to one base URL.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(port: u16) -> Self {
        Self::at(&format!("http://127.0.0.1:{port}"))
    }

    /// A client of the API at `base` (an ingress, say).
    pub fn at(base: &str) -> Self {
        Api {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
        }
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Response {
        Response::new(
            request
                .timeout(Duration::from_secs(20))
                .send()
                .await
                .expect("request sent"),
        )
        .await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        self.send(request).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.send(self.http.post(format!("{}{path}", self.base)).json(&body))
            .await
    }

    /// Registers a user and returns the session (`user`, `accessToken`, `refreshToken`, ...).
    pub async fn register(&self, first: &str, last: &str, email: &str, password: &str) -> Value {
        let r = self
            .post(
                "/auth/register",
                json!({"firstName": first, "lastName": last, "email": email, "password": password}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "register failed: {}", r.text);
        r.body
    }
}

/// Gateway, auth and group as separate processes of one deployment.
pub struct Stack {
    pub api: Api,
    pub gateway: RoleProcess,
    pub auth: RoleProcess,
    pub group: RoleProcess,
    /// Last, so the processes stop before an embedded data directory is removed.
    pub deployment: Deployment,
}

impl Stack {
    pub async fn start(extra: &[(&str, &str)]) -> Self {
        let deployment = Deployment::new(extra);
        let (auth, group, gateway) = if deployment.embedded {
            let all = deployment.start("gateway").await;
            (all.alias("auth"), all.alias("group"), all)
        } else {
            (
                deployment.start("auth").await,
                deployment.start("group").await,
                deployment.start("gateway").await,
            )
        };
        Stack {
            api: Api::new(gateway.port),
            deployment,
            gateway,
            auth,
            group,
        }
    }
}

/// A registered user: id and access token.
pub struct User {
    pub id: String,
    pub token: String,
}

impl Api {
    /// Registers `name@example.com` and returns its id and access token.
    pub async fn user(&self, name: &str) -> User {
        let session = self
            .register(
                name,
                "Tester",
                &format!("{name}@example.com"),
                "correct horse",
            )
            .await;
        User {
            id: session["user"]["id"].as_str().unwrap().to_string(),
            token: session["accessToken"].as_str().unwrap().to_string(),
        }
    }

    /// Registers several users, in order.
    pub async fn users<const N: usize>(&self, names: [&str; N]) -> [User; N] {
        let mut users = Vec::with_capacity(N);
        for name in names {
            users.push(self.user(name).await);
        }
        users.try_into().unwrap_or_else(|_| unreachable!())
    }

    /// A request with the user's bearer token.
    pub fn authed(
        &self,
        method: reqwest::Method,
        path: &str,
        user: &User,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&user.token)
    }

    /// Creates a group named `name` with `admin` and `members`; returns its id.
    pub async fn group(&self, admin: &User, name: &str, members: &[&User]) -> String {
        let ids: Vec<&str> = members.iter().map(|u| u.id.as_str()).collect();
        let r = self
            .send(
                self.authed(reqwest::Method::POST, "/groups", admin)
                    .json(&serde_json::json!({"name": name, "memberIds": ids})),
            )
            .await;
        assert_eq!(r.status, reqwest::StatusCode::CREATED, "{}", r.text);
        r.body["id"].as_str().expect("group id").to_string()
    }

    /// Every message of `group` as `user` sees it, oldest first, following the `after` cursor
    /// page by page.
    pub async fn all_messages(&self, group: &str, user: &User) -> Vec<Value> {
        let (mut all, mut after) = (Vec::new(), 0);
        loop {
            let path = format!("/groups/{group}/messages?after={after}&limit=100");
            let page = self
                .send(self.authed(reqwest::Method::GET, &path, user))
                .await;
            assert_eq!(page.status, reqwest::StatusCode::OK, "{}", page.text);
            let data = page.body["data"].as_array().cloned().unwrap_or_default();
            let Some(last) = data.last() else {
                return all;
            };
            after = last["seq"].as_i64().expect("seq");
            all.extend(data);
        }
    }
}

/// Asserts that each acknowledged message id is stored exactly once.
pub fn assert_stored_once(acknowledged: &[String], stored: &[Value]) {
    for id in acknowledged {
        let copies = stored.iter().filter(|m| m["id"] == id.as_str()).count();
        assert_eq!(
            copies, 1,
            "acknowledged message {id} is stored {copies} times"
        );
    }
}

/// An Ed25519 key pair written to PEM files, for deployments configured with real keys.
pub struct KeyFiles {
    pub dir: PathBuf,
    pub private_pem: PathBuf,
    pub public_pem: PathBuf,
    pub key: chat_domain::tokens::SigningKey,
}

impl KeyFiles {
    pub fn generate() -> Self {
        use base64::Engine;
        let key = chat_domain::tokens::SigningKey::generate().unwrap();
        let dir = std::env::temp_dir().join(unique("chat-keys-"));
        std::fs::create_dir_all(&dir).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(key.to_pkcs8_der());
        let private = format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n");
        let (private_pem, public_pem) = (dir.join("private.pem"), dir.join("public.pem"));
        std::fs::write(&private_pem, private).unwrap();
        std::fs::write(&public_pem, key.verifying_key().to_pem()).unwrap();
        KeyFiles {
            dir,
            private_pem,
            public_pem,
            key,
        }
    }
}

impl Drop for KeyFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The first argument of a Socket.IO payload. `rust_socketio` hands acknowledgements over either
/// as the raw argument array (a string, or one JSON array value); events as a list of arguments.
#[allow(deprecated)]
fn first_argument(payload: rust_socketio::Payload) -> Option<Value> {
    let value = match payload {
        rust_socketio::Payload::Text(values) if values.len() == 1 => values.into_iter().next()?,
        rust_socketio::Payload::Text(values) => Value::Array(values),
        rust_socketio::Payload::String(text) => serde_json::from_str(&text).ok()?,
        rust_socketio::Payload::Binary(_) => return None,
    };
    match value {
        Value::Array(mut items) => (!items.is_empty()).then(|| items.remove(0)),
        other => Some(other),
    }
}

/// Every role as a separate process, with two chat replicas.
pub struct RealtimeStack {
    pub stack: Stack,
    pub message: RoleProcess,
    pub chat_a: RoleProcess,
    pub chat_b: RoleProcess,
}

impl RealtimeStack {
    pub async fn start(extra: &[(&str, &str)]) -> Self {
        let stack = Stack::start(extra).await;
        let (message, chat_a, chat_b) = if stack.deployment.embedded {
            let all = &stack.gateway;
            (all.alias("message"), all.alias("chat"), all.alias("chat"))
        } else {
            (
                stack.deployment.spawn("message").await,
                stack.deployment.spawn("chat").await,
                stack.deployment.spawn("chat").await,
            )
        };
        RealtimeStack {
            stack,
            message,
            chat_a,
            chat_b,
        }
    }

    pub fn api(&self) -> &Api {
        &self.stack.api
    }
}

/// A Socket.IO client (the `rust_socketio` crate) that records the events it receives.
pub struct ChatClient {
    client: rust_socketio::asynchronous::Client,
    events: tokio::sync::mpsc::UnboundedReceiver<(String, Value)>,
}

/// Server events a [`ChatClient`] records.
pub const SERVER_EVENTS: [&str; 15] = [
    "chat.message.incoming",
    "chat.message.edited",
    "chat.message.seen",
    "chat.message.delivered",
    "chat.message.deleted",
    "chat.typing",
    "chat.resync",
    "group.created",
    "group.members.added",
    "group.member.removed",
    "group.member.role_changed",
    "user.online",
    "user.offline",
    "user.presence",
    "server.restarting",
];

impl ChatClient {
    /// Connects to the chat replica on `port` with `auth` as the handshake payload.
    pub async fn connect(port: u16, auth: Value) -> Self {
        Self::connect_url(&format!("http://127.0.0.1:{port}"), auth).await
    }

    /// Connects to the chat server at `url` (an ingress, say).
    pub async fn connect_url(url: &str, auth: Value) -> Self {
        Self::try_connect_url(url, auth)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`ChatClient::connect_url`], but says why instead of panicking, for callers that
    /// retry while servers come and go.
    pub async fn try_connect_url(url: &str, auth: Value) -> Result<Self, String> {
        use futures_util::FutureExt;
        let (tx, events) = tokio::sync::mpsc::unbounded_channel();
        let mut builder = rust_socketio::asynchronous::ClientBuilder::new(url)
            .transport_type(rust_socketio::TransportType::Websocket)
            .reconnect(false)
            .auth(auth);
        for name in SERVER_EVENTS {
            let tx = tx.clone();
            builder = builder.on(name, move |payload, _| {
                let tx = tx.clone();
                async move {
                    if let Some(value) = first_argument(payload) {
                        let _ = tx.send((name.to_string(), value));
                    }
                }
                .boxed()
            });
        }
        // `connect()` returns once the transport is open; the namespace is joined when the
        // server's CONNECT arrives. Events emitted before that would be dropped.
        // The server's refusal (a CONNECT_ERROR packet) answers instead, with its message.
        let (connected_tx, connected) = tokio::sync::oneshot::channel::<Result<(), String>>();
        let connected_tx = std::sync::Arc::new(std::sync::Mutex::new(Some(connected_tx)));
        let refused_tx = connected_tx.clone();
        builder = builder.on(rust_socketio::Event::Connect, move |_, _| {
            if let Some(tx) = connected_tx.lock().unwrap().take() {
                let _ = tx.send(Ok(()));
            }
            async {}.boxed()
        });
        builder = builder.on(rust_socketio::Event::Error, move |payload, _| {
            let text = format!("{payload:?}");
            if text.contains("ConnectError") {
                if let Some(tx) = refused_tx.lock().unwrap().take() {
                    let _ = tx.send(Err(format!("refused: {text}")));
                }
            }
            async {}.boxed()
        });
        let client = builder
            .connect()
            .await
            .map_err(|e| format!("socket does not connect: {e}"))?;
        match tokio::time::timeout(Duration::from_secs(10), connected).await {
            Ok(Ok(Ok(()))) => Ok(ChatClient { client, events }),
            Ok(Ok(Err(refused))) => {
                let _ = client.disconnect().await;
                Err(refused)
            }
            _ => Err("namespace not joined in time".to_string()),
        }
    }

    /// Emits `event` and waits for its acknowledgement. One request at a time per client:
    /// rust_socketio draws acknowledgement ids at random below 1,000 and, when two outstanding
    /// ones share an id, drops the wrong callback (a flood at once goes through a raw client).
    pub async fn request(&self, event: &str, data: Value) -> Value {
        self.try_request(event, data)
            .await
            .unwrap_or_else(|| panic!("no acknowledgement of {event} in time"))
    }

    /// Emits `event` and waits up to 15 s for its acknowledgement; `None` when the emit fails or
    /// no acknowledgement comes (the server went away).
    pub async fn try_request(&self, event: &str, data: Value) -> Option<Value> {
        use futures_util::FutureExt;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let tx = std::sync::Arc::new(std::sync::Mutex::new(Some(tx)));
        let callback = move |payload: rust_socketio::Payload, _| {
            let tx = tx.clone();
            async move {
                if let (Some(value), Some(tx)) =
                    (first_argument(payload), tx.lock().unwrap().take())
                {
                    let _ = tx.send(value);
                }
            }
            .boxed()
        };
        self.client
            .emit_with_ack(event, data, Duration::from_secs(15), callback)
            .await
            .ok()?;
        tokio::time::timeout(Duration::from_secs(15), rx)
            .await
            .ok()?
            .ok()
    }

    /// Sends a message and returns the acknowledgement.
    pub async fn send(&self, group_id: &str, content: &str, client_id: &str) -> Value {
        self.request(
            "chat.message.send",
            json!({"groupId": group_id, "content": content, "clientMessageId": client_id}),
        )
        .await
    }

    /// The next received `event`, skipping others; panics after `limit`.
    pub async fn next(&mut self, event: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(remaining, self.events.recv()).await {
                Ok(Some((name, value))) if name == event => return value,
                Ok(Some(_)) => continue,
                _ => panic!("no {event} within {limit:?}"),
            }
        }
    }

    /// Every `event` received within `window`.
    pub async fn collect(&mut self, event: &str, window: Duration) -> Vec<Value> {
        let deadline = Instant::now() + window;
        let mut out = Vec::new();
        while let Ok(Some((name, value))) = tokio::time::timeout(
            deadline.saturating_duration_since(Instant::now()),
            self.events.recv(),
        )
        .await
        {
            if name == event {
                out.push(value);
            }
        }
        out
    }

    /// Every event received so far, without waiting.
    pub fn drain(&mut self) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        while let Ok(event) = self.events.try_recv() {
            out.push(event);
        }
        out
    }

    /// Every event, whatever its name, received within `window`.
    pub async fn collect_all(&mut self, window: Duration) -> Vec<(String, Value)> {
        let deadline = Instant::now() + window;
        let mut out = Vec::new();
        while let Ok(Some(event)) = tokio::time::timeout(
            deadline.saturating_duration_since(Instant::now()),
            self.events.recv(),
        )
        .await
        {
            out.push(event);
        }
        out
    }

    pub async fn disconnect(self) {
        let _ = self.client.disconnect().await;
    }

    /// Emits `event` with raw bytes as its payload (a binary attachment), without waiting.
    pub async fn emit_binary(&self, event: &str, bytes: Vec<u8>) {
        let _ = self
            .client
            .emit(event, rust_socketio::Payload::Binary(bytes.into()))
            .await;
    }
}
