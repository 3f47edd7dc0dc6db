//! Managed dependencies: one single-replica StatefulSet each, with a PersistentVolumeClaim, a
//! headless Service (stable pod DNS) and a client Service.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, ExecAction, Lifecycle, LifecycleHandler,
    ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodTemplateSpec, Probe,
    SecurityContext, Service, ServicePort, ServiceSpec, TCPSocketAction, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::component::{from_secret, value};
use super::pod::{locked_down_pod, merge_overrides};
use super::{hash, meta, selector_labels, Resource, CONFIG_HASH_ANNOTATION};
use crate::config::{
    DependencyKind, ManagedConfig, ValidatedConfig, APP_USERNAME, MONGODB_DATABASE,
};
use crate::crd::FactsRelay;
use crate::secrets::SecretDigests;

/// Name of the dependency's client Service (and of its StatefulSet and NetworkPolicy).
pub(super) fn dependency_name(cfg: &ValidatedConfig, kind: DependencyKind) -> String {
    format!("{}-{}", cfg.name, kind.name())
}

fn headless_name(cfg: &ValidatedConfig, kind: DependencyKind) -> String {
    format!("{}-headless", dependency_name(cfg, kind))
}

/// Headless Service, client Service and StatefulSet, running `image`, of one managed
/// dependency.
pub(super) fn objects(
    cfg: &ValidatedConfig,
    kind: DependencyKind,
    managed: &ManagedConfig,
    image: &str,
    secrets: &SecretDigests,
) -> Vec<Resource> {
    vec![
        Resource::Service(service(cfg, kind, true)),
        Resource::Service(service(cfg, kind, false)),
        Resource::StatefulSet(stateful_set(cfg, kind, managed, image, secrets)),
    ]
}

/// The Redis ACL rules of [`APP_USERNAME`] (after its password): the keys of the stack's
/// namespace (`CHAT_NAMESPACE` is the ChatDeployment's name; the services' keys are
/// `<namespace>:ratelimit:…`, `<namespace>:revoked:…` and `<namespace>:presence:…`), no
/// channels unless facts go over `relay` Redis (then the one facts channel,
/// `<namespace>.chat.facts`), and exactly the commands the services' Redis adapter sends — no
/// `KEYS`, `SCAN`, `FLUSHALL`, `CONFIG`, `DEBUG`, `ACL` or any other administration. `AUTH`
/// needs no rule; the client's `CLIENT SETINFO`, whose answer it ignores, is refused. The
/// Kafka relay's rules are what they were before the Redis relay existed, so an operator
/// upgrade restarts no one's Redis.
pub fn redis_app_rules(namespace: &str, relay: FactsRelay) -> Vec<String> {
    let mut rules = vec![format!("~{namespace}:*"), "resetchannels".into()];
    if relay == FactsRelay::Redis {
        rules.push(format!("&{namespace}.chat.facts"));
    }
    rules.push("-@all".into());
    let mut commands = vec![
        "ping", "incr", "decr", "expire", "ttl", "set", "exists", "del", "mget",
    ];
    if relay == FactsRelay::Redis {
        commands.extend(["publish", "subscribe", "unsubscribe"]);
    }
    rules.extend(commands.into_iter().map(|command| format!("+{command}")));
    rules
}

/// The configure, write and read permissions of [`APP_USERNAME`] on RabbitMQ: it declares
/// and consumes the RPC request queues of its namespace (`<namespace>.rpc.<pattern>`), and
/// publishes requests and replies to the default exchange only (replies go to RabbitMQ's
/// direct reply-to, which needs no grant). No other queue or exchange, no tags.
pub fn rabbitmq_app_permissions(namespace: &str) -> [String; 3] {
    let queues = format!("^{}\\.rpc\\.", namespace.replace('.', "\\."));
    [queues.clone(), "^amq\\.default$".into(), queues]
}

/// The shell script that creates [`APP_USERNAME`] on the local RabbitMQ node (password from
/// `RABBITMQ_APP_PASSWORD`) with [`rabbitmq_app_permissions`] on `vhost`, or resets the
/// password, tags and permissions of the one there. It waits for the node to boot (up to
/// five minutes) and runs as the container's `postStart` hook, on every start, so a stack
/// created before the application user existed gets it when its broker next starts.
pub fn rabbitmq_app_user_script(vhost: &str, user: &str, namespace: &str) -> String {
    let [configure, write, read] = rabbitmq_app_permissions(namespace);
    format!(
        "i=0; until rabbitmqctl -q await_startup >/dev/null 2>&1; do \
         i=$((i+1)); [ \"$i\" -ge 60 ] && exit 1; sleep 5; done; \
         {{ rabbitmqctl -q add_user '{user}' \"$RABBITMQ_APP_PASSWORD\" >/dev/null 2>&1 \
         || rabbitmqctl -q change_password '{user}' \"$RABBITMQ_APP_PASSWORD\"; }} \
         && rabbitmqctl -q set_user_tags '{user}' \
         && rabbitmqctl -q set_permissions -p '{vhost}' '{user}' '{configure}' '{write}' '{read}'"
    )
}

/// The shell script that creates [`APP_USERNAME`] on the local MongoDB (password from
/// `MONGODB_APP_PASSWORD`) in the `admin` database with `readWrite` on [`MONGODB_DATABASE`]
/// alone, or resets the password and roles of the one there, as the administrator. It
/// retries until the server accepts the administrator (up to five minutes: a first start
/// initialises the database first) and runs as the container's `postStart` hook, on every
/// start, so a stack created before the application user existed gets it when MongoDB next
/// starts.
fn mongodb_app_user_script() -> String {
    let js = format!(
        "const pwd = process.env.MONGODB_APP_PASSWORD; \
         const roles = [{{role: \"readWrite\", db: \"{MONGODB_DATABASE}\"}}]; \
         const admin = db.getSiblingDB(\"admin\"); \
         if (admin.getUser(\"{APP_USERNAME}\")) {{ \
         admin.updateUser(\"{APP_USERNAME}\", {{pwd: pwd, roles: roles}}); \
         }} else {{ admin.createUser({{user: \"{APP_USERNAME}\", pwd: pwd, roles: roles}}); }}"
    );
    format!(
        "i=0; until mongosh --quiet --norc --host 127.0.0.1 -u chat \
         -p \"$MONGO_INITDB_ROOT_PASSWORD\" --authenticationDatabase admin \
         --eval '{js}' >/dev/null 2>&1; do \
         i=$((i+1)); [ \"$i\" -ge 60 ] && exit 1; sleep 5; done"
    )
}

/// Named ports of a dependency; the first is the one clients use.
fn ports(kind: DependencyKind) -> Vec<(&'static str, i32)> {
    match kind {
        DependencyKind::MongoDb => vec![("mongodb", 27017)],
        DependencyKind::RabbitMq => vec![("amqp", 5672), ("management", 15672)],
        DependencyKind::Kafka => vec![("kafka", 9092), ("controller", 9093)],
        DependencyKind::Redis => vec![("redis", 6379)],
    }
}

fn service(cfg: &ValidatedConfig, kind: DependencyKind, headless: bool) -> Service {
    let name = if headless {
        headless_name(cfg, kind)
    } else {
        dependency_name(cfg, kind)
    };
    Service {
        metadata: meta(cfg, name, kind.name()),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(cfg, kind.name())),
            cluster_ip: headless.then(|| "None".into()),
            // Pods need their DNS name before they are ready (Kafka advertises it).
            publish_not_ready_addresses: headless.then_some(true),
            // Clients get the client port alone (the one the NetworkPolicy admits); the
            // headless Service names every port for the pods themselves.
            ports: Some(
                ports(kind)
                    .into_iter()
                    .take(if headless { usize::MAX } else { 1 })
                    .map(|(name, port)| ServicePort {
                        name: Some(name.into()),
                        port,
                        target_port: Some(IntOrString::String(name.into())),
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// What differs between the four images.
struct Image {
    /// uid and gid the image's process runs as.
    user: i64,
    data_path: &'static str,
    args: Option<Vec<String>>,
    env: Vec<EnvVar>,
    ready: Check,
    /// Startup and liveness: never a command that boots a VM (mongosh is Node.js,
    /// rabbitmq-diagnostics an Erlang VM) every few seconds; the client port answering is
    /// enough to tell a hung process.
    alive: Check,
    /// A script run after each start (the application user's creation).
    post_start: Option<String>,
}

enum Check {
    Exec(Vec<String>),
    /// The client port accepts connections.
    Tcp,
}

/// Partitions of the topics the services create (`commands` and `facts`, six each: see
/// `KAFKA_PARTITIONS` in services/server/src/production.rs): Kafka's retention is per
/// partition, so the volume is shared among them.
const KAFKA_TOPIC_PARTITIONS: f64 = 12.0;

/// The memory limit of a managed dependency, in bytes, when it has one.
fn memory_limit(managed: &ManagedConfig) -> Option<u64> {
    let limit = managed.resources.limits.as_ref()?.get("memory")?;
    crate::storage::quantity_bytes(&limit.0).map(|b| b as u64)
}

fn image(cfg: &ValidatedConfig, kind: DependencyKind, managed: &ManagedConfig) -> Image {
    let credential = &managed.credential;
    let memory = memory_limit(managed);
    match kind {
        DependencyKind::MongoDb => Image {
            user: 999,
            data_path: "/data/db",
            args: None,
            env: vec![
                value("MONGO_INITDB_ROOT_USERNAME", "chat".into()),
                from_secret(
                    "MONGO_INITDB_ROOT_PASSWORD",
                    &credential.secret,
                    &credential.key,
                ),
            ]
            .into_iter()
            .chain(app_password("MONGODB_APP_PASSWORD", managed))
            .collect(),
            ready: Check::Exec(sh(
                "mongosh --quiet --eval 'db.adminCommand(\"ping\").ok' | grep -q 1",
            )),
            alive: Check::Tcp,
            post_start: Some(mongodb_app_user_script()),
        },
        DependencyKind::RabbitMq => Image {
            user: 999,
            data_path: "/var/lib/rabbitmq",
            args: None,
            env: [
                value("RABBITMQ_DEFAULT_USER", "chat".into()),
                from_secret("RABBITMQ_DEFAULT_PASS", &credential.secret, &credential.key),
            ]
            .into_iter()
            .chain(app_password("RABBITMQ_APP_PASSWORD", managed))
            // RabbitMQ reads the host's memory, not the container's limit: without an absolute
            // watermark it would block publishers only after the kernel has killed it. 60 %
            // of the limit, RabbitMQ's own default share, leaves room for the Erlang VM.
            .chain(memory.map(|limit| {
                value(
                    "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                    format!(
                        "-rabbit vm_memory_high_watermark {{absolute,{}}}",
                        limit * 6 / 10
                    ),
                )
            }))
            .collect(),
            ready: Check::Exec(vec![
                "rabbitmq-diagnostics".into(),
                "-q".into(),
                "check_port_connectivity".into(),
            ]),
            alive: Check::Tcp,
            post_start: Some(rabbitmq_app_user_script("/", APP_USERNAME, &cfg.name)),
        },
        DependencyKind::Kafka => {
            let host = format!(
                "$(POD_NAME).{}.{}.svc",
                headless_name(cfg, kind),
                cfg.namespace
            );
            Image {
                user: 1000,
                data_path: "/var/lib/kafka/data",
                args: None,
                env: vec![
                    EnvVar {
                        name: "POD_NAME".into(),
                        value_from: Some(EnvVarSource {
                            field_ref: Some(ObjectFieldSelector {
                                field_path: "metadata.name".into(),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    from_secret("CLUSTER_ID", &credential.secret, &credential.key),
                    value("KAFKA_NODE_ID", "1".into()),
                    value("KAFKA_PROCESS_ROLES", "broker,controller".into()),
                    value(
                        "KAFKA_LISTENERS",
                        "PLAINTEXT://:9092,CONTROLLER://:9093".into(),
                    ),
                    value(
                        "KAFKA_ADVERTISED_LISTENERS",
                        format!("PLAINTEXT://{host}:9092"),
                    ),
                    value("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER".into()),
                    value(
                        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
                        "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT".into(),
                    ),
                    value("KAFKA_INTER_BROKER_LISTENER_NAME", "PLAINTEXT".into()),
                    value("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093".into()),
                    // A subdirectory: the volume's root may hold lost+found, which Kafka
                    // would take for a broken partition directory.
                    value("KAFKA_LOG_DIRS", "/var/lib/kafka/data/logs".into()),
                    value("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1".into()),
                    value("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1".into()),
                    value("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1".into()),
                    value("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0".into()),
                ]
                .into_iter()
                .chain(kafka_retention(managed))
                .collect(),
                ready: Check::Tcp,
                alive: Check::Tcp,
                // KRaft with PLAINTEXT listeners: no users to create.
                post_start: None,
            }
        }
        DependencyKind::Redis => Image {
            user: 999,
            data_path: "/data",
            // Through a shell so the passwords come from the environment; redis-server
            // hides its arguments from the process title. The default user is the
            // administrator (the probes use it); without a password a client gets nothing.
            args: Some(sh(&format!(
                "exec redis-server --requirepass \"$REDIS_PASSWORD\" \
                 --user {APP_USERNAME} reset on \">$REDIS_APP_PASSWORD\" {} \
                 --appendonly yes --dir /data{}",
                redis_app_rules(&cfg.name, cfg.facts_relay)
                    .iter()
                    .map(|rule| format!("'{rule}'"))
                    .collect::<Vec<_>>()
                    .join(" "),
                redis_memory(memory)
            ))),
            env: [
                from_secret("REDIS_PASSWORD", &credential.secret, &credential.key),
                // redis-cli reads its password from here, so probes authenticate.
                from_secret("REDISCLI_AUTH", &credential.secret, &credential.key),
            ]
            .into_iter()
            .chain(app_password("REDIS_APP_PASSWORD", managed))
            .collect(),
            // redis-cli is a small C program: cheap enough for both.
            ready: Check::Exec(sh("redis-cli ping | grep -q PONG")),
            alive: Check::Exec(sh("redis-cli ping | grep -q PONG")),
            post_start: None,
        },
    }
}

/// `sh -c script`.
fn sh(script: &str) -> Vec<String> {
    vec!["sh".to_string(), "-c".into(), script.into()]
}

/// The application user's password, as `name`, from its generated Secret.
fn app_password(name: &str, managed: &ManagedConfig) -> Option<EnvVar> {
    let app = managed.app_credential.as_ref()?;
    Some(from_secret(name, &app.secret, &app.key))
}

/// Redis holds presence and rate-limit counters only, all of them with a time to live: under
/// its memory limit it evicts the least recently used (a user shown offline, a counter
/// restarted) rather than refusing writes. 80 % of the limit leaves room for the
/// append-only file's rewrite.
fn redis_memory(limit: Option<u64>) -> String {
    limit.map_or_else(String::new, |limit| {
        format!(
            " --maxmemory {} --maxmemory-policy allkeys-lru",
            limit * 8 / 10
        )
    })
}

/// Kafka keeps a week of records whatever the volume holds, and a full volume stops the
/// broker. Retention by size keeps every partition within 70 % of the volume, in segments
/// small enough for that retention to act on.
fn kafka_retention(managed: &ManagedConfig) -> Vec<EnvVar> {
    let Some(volume) = crate::storage::quantity_bytes(&managed.storage_size.0) else {
        return Vec::new();
    };
    let per_partition = (volume * 0.7 / KAFKA_TOPIC_PARTITIONS) as u64;
    let segment = (per_partition / 4).clamp(1 << 20, 256 << 20);
    vec![
        value("KAFKA_LOG_RETENTION_BYTES", per_partition.to_string()),
        value("KAFKA_LOG_SEGMENT_BYTES", segment.to_string()),
    ]
}

fn stateful_set(
    cfg: &ValidatedConfig,
    kind: DependencyKind,
    managed: &ManagedConfig,
    container_image: &str,
    secrets: &SecretDigests,
) -> StatefulSet {
    let image = image(cfg, kind, managed);
    let client_port = ports(kind)[0].0;
    let probe = |check: &Check, period: i32, timeout: i32, failures: i32| Probe {
        exec: match check {
            Check::Exec(command) => Some(ExecAction {
                command: Some(command.clone()),
            }),
            Check::Tcp => None,
        },
        tcp_socket: matches!(check, Check::Tcp).then(|| TCPSocketAction {
            port: IntOrString::String(client_port.into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(timeout),
        failure_threshold: Some(failures),
        ..Default::default()
    };
    let container = Container {
        name: kind.name().into(),
        image: Some(container_image.into()),
        args: image.args,
        env: Some(image.env),
        ports: Some(
            ports(kind)
                .into_iter()
                .map(|(name, port)| ContainerPort {
                    name: Some(name.into()),
                    container_port: port,
                    protocol: Some("TCP".into()),
                    ..Default::default()
                })
                .collect(),
        ),
        resources: Some(managed.resources.clone()),
        // Up to five minutes for a first start (RabbitMQ and Kafka boot slowly).
        startup_probe: Some(probe(&image.alive, 10, 10, 30)),
        liveness_probe: Some(probe(&image.alive, 20, 10, 3)),
        readiness_probe: Some(probe(&image.ready, 10, 10, 3)),
        lifecycle: image.post_start.map(|script| Lifecycle {
            post_start: Some(LifecycleHandler {
                exec: Some(ExecAction {
                    command: Some(sh(&script)),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            run_as_non_root: Some(true),
            capabilities: Some(k8s_openapi::api::core::v1::Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: "data".into(),
            mount_path: image.data_path.into(),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let labels = selector_labels(cfg, kind.name());
    // The application user's password is set when the dependency starts: a new one (a
    // ChatDeployment created again, a Secret replaced by hand) restarts it.
    let annotations = managed.app_credential.as_ref().map(|app| {
        let digest = secrets.get(&app.secret, &app.key).unwrap_or("absent");
        BTreeMap::from([(
            CONFIG_HASH_ANNOTATION.to_string(),
            hash(&[&format!("{}/{}={digest}", app.secret, app.key)]),
        )])
    });
    let mut template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels.clone()),
            annotations,
            ..Default::default()
        }),
        spec: Some(locked_down_pod(cfg, container, image.user)),
    };
    merge_overrides(&mut template, kind.name(), &managed.overrides);
    StatefulSet {
        metadata: meta(cfg, dependency_name(cfg, kind), kind.name()),
        spec: Some(StatefulSetSpec {
            // Stopped keeps the claim: scaling to zero deletes the pod, never its volume.
            replicas: Some(if cfg.stopped { 0 } else { 1 }),
            service_name: Some(headless_name(cfg, kind)),
            selector: LabelSelector {
                match_labels: Some(labels),
                ..Default::default()
            },
            template,
            // Claims outlive the ChatDeployment (StatefulSets retain them by default):
            // deleting the resource must never delete the data with it.
            volume_claim_templates: Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some("data".into()),
                    ..Default::default()
                },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".into()]),
                    storage_class_name: managed.storage_class.clone(),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([(
                            "storage".into(),
                            managed.storage_size.clone(),
                        )])),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}
