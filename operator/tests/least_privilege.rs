//! The application users the operator configures, on real servers: the Redis ACL and the
//! RabbitMQ user it renders give the services exactly what their adapters do, and refuse the
//! rest.
//!
//! Redis: a throwaway `redis-server` of this test's own, on a free port, started by the very
//! script the StatefulSet runs (only its data directory and port changed), then the services'
//! Redis adapter (`chat-redis`) as the application user. RabbitMQ: the broker on 127.0.0.1:5672
//! (`scripts/infra.sh up rabbitmq`), in a vhost and with a user of this test's own, deleted at
//! the end; the StatefulSet's `postStart` script creates the user, and the RPC adapter's AMQP
//! operations run as it. Both fail (never skip) without the servers. MongoDB is not proven
//! here: there is no `mongod` or `mongosh` on the build machine, and the SecantusDB stand-in
//! would prove its own authorization, not MongoDB's.

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chat_domain::config::Secret;
use chat_operator::build::{build, Resource};
use chat_operator::config::{validate, APP_USERNAME};
use chat_operator::crd::{ChatDeployment, ChatDeploymentSpec};
use chat_operator::secrets::SecretDigests;
use chat_operator::upgrade::Versions;
use chat_ports::store::{Presence, RateLimiter, Revocations};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Container;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Connection, ConnectionProperties};

/// The stack's name, hence `CHAT_NAMESPACE`: the prefix of its keys and queues.
const NAMESPACE: &str = "lp";

/// The main container of the managed dependency `dependency`, as the operator builds it for a
/// stack whose facts go over Redis (its application user's widest rights).
fn dependency_container(dependency: &str) -> Container {
    let mut cd = ChatDeployment::new(
        NAMESPACE,
        ChatDeploymentSpec {
            version: "0.1.0".into(),
            facts_relay: Some(chat_operator::crd::FactsRelay::Redis),
            ..Default::default()
        },
    );
    cd.metadata.namespace = Some("default".into());
    let cfg = validate(&cd).unwrap();
    let name = format!("{NAMESPACE}-{dependency}");
    build(&cfg, &SecretDigests::default(), &Versions::target(&cfg))
        .into_iter()
        .find_map(|object| match object {
            Resource::StatefulSet(set) if set.metadata.name.as_deref() == Some(&name) => {
                Some(set.spec?.template.spec?.containers.remove(0))
            }
            _ => None,
        })
        .expect("the dependency's StatefulSet")
}

/// The `sh -c` script of a command.
fn script(command: &[String]) -> String {
    assert_eq!(command[..2], ["sh", "-c"], "{command:?}");
    command[2].clone()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn tool(name: &str) -> String {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .unwrap();
    assert!(
        found.status.success(),
        "{name} is not installed; install it with `scripts/infra.sh up redis rabbitmq`"
    );
    String::from_utf8(found.stdout).unwrap().trim().to_string()
}

/// A `redis-server` of this test's own, killed when dropped.
struct RedisServer {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(what: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "chat-operator-{what}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const ADMIN_PASSWORD: &str = "admin-password-of-the-test";
const APP_PASSWORD: &str = "app-password-of-the-test";

impl RedisServer {
    /// Runs the StatefulSet's script with the passwords in its environment, on a free port
    /// of 127.0.0.1 and a temporary directory instead of `/data`.
    fn start(rendered: &str) -> Self {
        tool("redis-server");
        let dir = TempDir::new("redis");
        let port = free_port();
        assert!(rendered.contains(" --dir /data"), "{rendered}");
        let local = rendered.replace(
            " --dir /data",
            &format!(
                " --dir {} --port {port} --bind 127.0.0.1 --save ''",
                dir.0.display()
            ),
        );
        let child = Command::new("sh")
            .args(["-c", &local])
            .env("REDIS_PASSWORD", ADMIN_PASSWORD)
            .env("REDIS_APP_PASSWORD", APP_PASSWORD)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = RedisServer {
            child,
            port,
            _dir: dir,
        };
        // A bounded number of tries (about 20 s), not a clock: a hang guard.
        let started = (0..200).any(|_| {
            let up = server.cli(None, &["PING"]) == "NOAUTH Authentication required.";
            if !up {
                std::thread::sleep(Duration::from_millis(100));
            }
            up
        });
        assert!(started, "redis-server did not start");
        server
    }

    /// `redis-cli` as `user` (`None`: no credentials; `Some("default")`: the administrator).
    fn cli(&self, user: Option<&str>, args: &[&str]) -> String {
        let mut command = Command::new("redis-cli");
        command.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        match user {
            Some("default") => command.env("REDISCLI_AUTH", ADMIN_PASSWORD),
            Some(user) => command
                .args(["--user", user, "--no-auth-warning"])
                .env("REDISCLI_AUTH", APP_PASSWORD),
            None => command.env_remove("REDISCLI_AUTH"),
        };
        let output = command.args(args).output().unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
        .trim()
        .to_string()
    }
}

#[tokio::test]
async fn the_redis_application_user_runs_the_services_commands_on_its_prefix_alone() {
    let container = dependency_container("redis");
    let server = RedisServer::start(&script(container.args.as_ref().unwrap()));
    let url = Secret::new(format!(
        "redis://{APP_USERNAME}:{APP_PASSWORD}@127.0.0.1:{}",
        server.port
    ));

    // Every operation of the services' Redis adapter, through that adapter.
    let conn = chat_redis::connect(&url, Duration::from_secs(10))
        .await
        .unwrap();
    use chat_ports::health::Probe;
    chat_redis::RedisProbe(conn.clone()).check().await.unwrap();
    let limiter = chat_redis::RedisRateLimiter::new(conn.clone(), NAMESPACE);
    assert_eq!(
        limiter
            .hit("login", 1, Duration::from_secs(60))
            .await
            .unwrap(),
        None
    );
    assert!(limiter
        .hit("login", 1, Duration::from_secs(60))
        .await
        .unwrap()
        .is_some());
    let revocations = chat_redis::RedisRevocations::new(conn.clone(), NAMESPACE);
    revocations
        .revoke("session", Duration::from_secs(60))
        .await
        .unwrap();
    assert!(revocations.is_revoked("session").await.unwrap());
    let presence = chat_redis::RedisPresence::new(conn.clone(), NAMESPACE);
    let ttl = Duration::from_secs(60);
    assert_eq!(presence.connected("ada", ttl).await.unwrap(), 1);
    assert!(presence.refresh("ada", ttl).await.unwrap());
    assert_eq!(
        presence
            .online(&["ada".into(), "bob".into()])
            .await
            .unwrap(),
        [true, false]
    );
    assert_eq!(presence.disconnected("ada").await.unwrap(), 0);
    relay_facts_as_the_application_user(&url, conn.clone()).await;

    // Nothing else: no administration, no key outside the prefix, no channel but the facts.
    let app = Some(APP_USERNAME);
    for command in [
        &["FLUSHALL"][..],
        &["FLUSHDB"],
        &["CONFIG", "GET", "maxmemory"],
        &["CONFIG", "SET", "maxmemory", "1"],
        &["KEYS", "*"],
        &["SCAN", "0"],
        &["ACL", "LIST"],
        &["SHUTDOWN"],
        &["EVAL", "return 1", "0"],
        &["PUBLISH", "lp:x", "1"],
        &["PUBLISH", "other.chat.facts", "1"],
        &["SUBSCRIBE", "other.chat.facts"],
        &["PSUBSCRIBE", "*"],
        &["GET", "lp:presence:ada"],
        &["SET", "other:x", "1"],
        &["INCR", "other:ratelimit:x"],
        &["MGET", "lp:presence:ada", "other:presence:ada"],
        &["EXISTS", "ratelimit:x"],
    ] {
        let answer = server.cli(app, command);
        assert!(answer.starts_with("NOPERM"), "{command:?}: {answer}");
    }
    // DEBUG is refused to everyone before the ACL is asked (enable-debug-command); the ACL
    // refuses it too.
    let dry_run = server.cli(
        Some("default"),
        &["ACL", "DRYRUN", APP_USERNAME, "DEBUG", "SLEEP", "0"],
    );
    assert!(dry_run.contains("no permissions"), "{dry_run}");
    // The same commands in its prefix are fine; the administrator (the probes) keeps all.
    assert_eq!(server.cli(app, &["SET", "lp:x", "1"]), "OK");
    assert_eq!(server.cli(app, &["DEL", "lp:x"]), "1");
    assert_eq!(server.cli(Some("default"), &["PING"]), "PONG");
    assert_eq!(
        server.cli(Some("default"), &["CONFIG", "GET", "appendonly"]),
        "appendonly\nyes"
    );
    // Without credentials, nothing.
    for command in [&["GET", "lp:x"][..], &["KEYS", "*"], &["FLUSHALL"]] {
        assert_eq!(
            server.cli(None, command),
            "NOAUTH Authentication required.",
            "{command:?}"
        );
    }
    // A wrong password is refused.
    let answer = server.cli(None, &["AUTH", APP_USERNAME, "wrong"]);
    assert!(answer.starts_with("WRONGPASS"), "{answer}");
}

/// The facts relay (`spec.factsRelay: Redis`) as the application user: a tail subscribes to the
/// namespace's facts channel and receives what is published on it.
async fn relay_facts_as_the_application_user(url: &Secret, conn: chat_redis::ConnectionManager) {
    use chat_domain::events::{Envelope, FACTS};
    use chat_ports::events::EventTransport;
    use std::sync::{Arc, Mutex};
    let relay = Arc::new(chat_redis::RedisRelay::new(url, conn).unwrap());
    // The services' topic names: `<CHAT_NAMESPACE>.<topic>`.
    let channel = format!("{NAMESPACE}.{FACTS}");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (shutdown, attached) = (
        tokio_util::sync::CancellationToken::new(),
        chat_ports::health::Gate::new("facts"),
    );
    let record = seen.clone();
    let handler: chat_ports::events::RawHandler = Arc::new(move |raw| {
        record.lock().unwrap().push(raw.payload.to_vec());
        Box::pin(async { true })
    });
    let tail = tokio::spawn({
        let (relay, channel, shutdown, attached) = (
            relay.clone(),
            channel.clone(),
            shutdown.clone(),
            attached.clone(),
        );
        async move { relay.tail(&channel, shutdown, attached, handler).await }
    });
    until("the relay subscribes", || attached.is_open()).await;
    let fact = serde_json::to_vec(&Envelope::new("test", "g", 1)).unwrap();
    relay.publish(&channel, "g", fact.clone()).await.unwrap();
    until("the fact arrives", || !seen.lock().unwrap().is_empty()).await;
    assert_eq!(*seen.lock().unwrap(), [fact]);
    assert_eq!(attached.openings(), 1, "subscribed once, never refused");
    shutdown.cancel();
    tail.await.unwrap().unwrap();
}

/// Waits for `done`, checking every 50 ms; panics after 30 s (a hang guard, not a measure).
async fn until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..600 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not done within 30 s");
}

/// A vhost and user of this test's own on the shared broker, deleted when dropped.
struct RabbitScope {
    vhost: String,
    user: String,
}

fn rabbitmqctl(args: &[&str]) -> String {
    let output = Command::new("rabbitmqctl")
        .arg("-q")
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

impl Drop for RabbitScope {
    fn drop(&mut self) {
        for args in [
            ["delete_user", self.user.as_str()],
            ["delete_vhost", self.vhost.as_str()],
        ] {
            let _ = Command::new("rabbitmqctl").arg("-q").args(args).output();
        }
    }
}

#[tokio::test]
async fn the_rabbitmq_application_user_serves_and_calls_rpc_in_its_namespace_alone() {
    tool("rabbitmqctl");
    let container = dependency_container("rabbitmq");
    let rendered = script(
        container
            .lifecycle
            .as_ref()
            .and_then(|l| l.post_start.as_ref())
            .and_then(|h| h.exec.as_ref())
            .and_then(|e| e.command.as_ref())
            .expect("a postStart script"),
    );
    let unique = format!(
        "chat-operator-test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let scope = RabbitScope {
        vhost: unique.clone(),
        user: unique.clone(),
    };
    rabbitmqctl(&["add_vhost", &scope.vhost]);
    // The rendered script, in the test's vhost and for the test's user.
    let user = format!("'{APP_USERNAME}'");
    assert!(rendered.contains(&user) && rendered.contains("-p '/'"));
    let local = rendered
        .replace(&user, &format!("'{}'", scope.user))
        .replace("-p '/'", &format!("-p '{}'", scope.vhost));
    // Twice: a first start creates the user, every later one resets it (a new password too).
    for password in ["first-password", APP_PASSWORD] {
        let run = Command::new("timeout")
            .args(["120", "sh", "-c", &local])
            .env("RABBITMQ_APP_PASSWORD", password)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "postStart script failed: {}",
            String::from_utf8_lossy(&run.stderr)
        );
    }
    let users = rabbitmqctl(&["list_users"]);
    let line = users
        .lines()
        .find(|l| l.starts_with(&format!("{}\t", scope.user)))
        .expect("the user exists");
    assert!(line.ends_with("[]"), "no tags: {line}");

    let uri = format!(
        "amqp://{}:{APP_PASSWORD}@127.0.0.1:5672/{}",
        scope.user, scope.vhost
    );
    let connection = Connection::connect(&uri, ConnectionProperties::default())
        .await
        .expect("the application user connects");
    let wrong = format!(
        "amqp://{}:first-password@127.0.0.1:5672/{}",
        scope.user, scope.vhost
    );
    assert!(Connection::connect(&wrong, ConnectionProperties::default())
        .await
        .is_err());

    // The RPC adapter's server side: declare its request queue (durable, with an expiry)
    // and consume it.
    let queue = format!("{NAMESPACE}.rpc.test.ping");
    let mut args = FieldTable::default();
    args.insert("x-expires".into(), AMQPValue::LongLongInt(60_000));
    let declare = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let server = connection.create_channel().await.unwrap();
    server
        .queue_declare(&queue, declare, args.clone())
        .await
        .unwrap();
    let mut requests = server
        .basic_consume(
            &queue,
            "server",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    // Its client side: direct reply-to, publisher confirms, mandatory publishes to the
    // default exchange.
    let client = connection.create_channel().await.unwrap();
    client
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut replies = client
        .basic_consume(
            "amq.rabbitmq.reply-to",
            "",
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let confirm = client
        .basic_publish(
            "",
            &queue,
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"ping",
            BasicProperties::default()
                .with_correlation_id(ShortString::from("1"))
                .with_reply_to(ShortString::from("amq.rabbitmq.reply-to"))
                .with_expiration(ShortString::from("10000")),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirm.is_ack() && confirm.take_message().is_none());
    let request = tokio::time::timeout(Duration::from_secs(10), requests.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let reply_to = request.properties.reply_to().clone().unwrap();
    server
        .basic_publish(
            "",
            reply_to.as_str(),
            BasicPublishOptions::default(),
            b"pong",
            BasicProperties::default().with_correlation_id(ShortString::from("1")),
        )
        .await
        .unwrap();
    request.ack(BasicAckOptions::default()).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(10), replies.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(reply.data, b"pong");

    // Nothing else: another namespace's queues, other queues and exchanges. Each refusal
    // closes its channel, so each gets a fresh one.
    let refused = |what: &str, result: Result<(), lapin::Error>| {
        let error = result.expect_err(what).to_string();
        assert!(error.contains("ACCESS_REFUSED"), "{what}: {error}");
    };
    let channel = connection.create_channel().await.unwrap();
    refused(
        "declare another namespace's queue",
        channel
            .queue_declare("other.rpc.test.ping", declare, args.clone())
            .await
            .map(drop),
    );
    let channel = connection.create_channel().await.unwrap();
    refused(
        "declare a queue outside rpc",
        channel
            .queue_declare(&format!("{NAMESPACE}.events"), declare, args.clone())
            .await
            .map(drop),
    );
    let channel = connection.create_channel().await.unwrap();
    refused(
        "consume another namespace's queue",
        channel
            .basic_consume(
                "other.rpc.test.ping",
                "",
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map(drop),
    );
    let channel = connection.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let publish = match channel
        .basic_publish(
            "amq.topic",
            "x",
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default(),
        )
        .await
    {
        Ok(confirm) => confirm.await.map(drop),
        Err(e) => Err(e),
    };
    refused("publish to another exchange", publish);
    let _ = connection.close(200, "done").await;
    drop(scope);
}
