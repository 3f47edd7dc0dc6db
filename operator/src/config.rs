//! Validate and default: the pure step that turns a `ChatDeployment` into a [`ValidatedConfig`]
//! the build step can trust. Every default lives here: the CRD's schema takes its `default:`
//! values from these constants and functions (see `crate::crd`), so the API server stores
//! the same values the operator falls back to for objects created before the schema had them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};

use crate::crd::{
    ChatDeployment, ComponentSpec, DeletionPolicy, Dependency, ExternalDependency, FactsRelay,
    ImagePullPolicy, ManagedDependency, ManagedKafka, PodOverrides, SecretKeyReference,
    StorageSpec, FORCE_UPGRADE_ANNOTATION, ROTATE_JWT_KEY_ANNOTATION,
};

/// Image repository used when `spec.image` is unset; the tag is `spec.version`.
pub const DEFAULT_IMAGE_REPOSITORY: &str = "ghcr.io/scalable-chat/chat-server";
/// Default access-token lifetime (seconds), as the services default it.
pub const DEFAULT_ACCESS_TOKEN_TTL_SECONDS: i64 = 900;
/// Default refresh-token lifetime (seconds), as the services default it.
pub const DEFAULT_REFRESH_TOKEN_TTL_SECONDS: i64 = 2_592_000;
/// Default longest duration of one upgrade step (seconds).
pub const DEFAULT_STEP_TIMEOUT_SECONDS: i64 = 600;
/// Default log filter of every component (`RUST_LOG` syntax).
pub const DEFAULT_LOG_LEVEL: &str = "info";
/// Default pull policy of every image the operator runs.
pub const DEFAULT_IMAGE_PULL_POLICY: ImagePullPolicy = ImagePullPolicy::IfNotPresent;
/// Default of what deleting a ChatDeployment does to its data.
pub const DEFAULT_DELETION_POLICY: DeletionPolicy = DeletionPolicy::Retain;
/// Default of how facts reach the chat replicas (the services' own default).
pub const DEFAULT_FACTS_RELAY: FactsRelay = FactsRelay::Kafka;
/// Default fewest pods of an autoscaled component.
pub const DEFAULT_MIN_REPLICAS: i32 = 1;
/// Default CPU utilisation (percent of the request) an autoscaler aims for.
pub const DEFAULT_TARGET_CPU_UTILIZATION_PERCENTAGE: i32 = 75;
/// Replicas of a component whose spec sets neither `replicas` nor `autoscaling`. Not in the
/// schema: a stored `replicas` would contradict an `autoscaling` set later.
pub const DEFAULT_REPLICAS: i32 = 1;
/// The user the components connect to a managed MongoDB, RabbitMQ and Redis with: it has only
/// the rights the services need (see `build::dependency`). The administrator (`chat`) stays
/// with the dependency itself, which creates this user.
pub const APP_USERNAME: &str = "chat-app";
/// The database the services use (their default: `MONGODB_URI` names no other); the
/// application user of a managed MongoDB may read and write it alone.
pub const MONGODB_DATABASE: &str = "scalable_chat";
/// Longest ChatDeployment name. Two derived names bound it: `<name>-rabbitmq-headless` must be
/// a DNS label of at most 63 characters (Service names are), and `<name>-rabbitmq`, the longest
/// StatefulSet name, at most 52: the StatefulSet controller labels each pod
/// `controller-revision-hash: <statefulset>-<hash of up to 10 characters>`, and a label value
/// longer than 63 characters makes every pod creation fail (seen on the control plane with a
/// 45-character name, the limit before).
pub const MAX_NAME_LENGTH: usize = min(
    63 - "-rabbitmq-headless".len(),
    63 - 1 - 10 - "-rabbitmq".len(),
);

const fn min(a: usize, b: usize) -> usize {
    if a < b {
        a
    } else {
        b
    }
}

/// The five roles of the one `chat-server` image, in the order an upgrade rolls them out:
/// consumers before their producers, so a new message is never sent to an old reader. Message
/// consumes the chat commands on Kafka and answers RPC; group and auth answer RPC; chat
/// produces commands and calls RPC; the gateway, which calls everyone, goes last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Component {
    Message,
    Group,
    Auth,
    Chat,
    Gateway,
}

impl Component {
    /// Every component, in rollout order.
    pub const ALL: [Component; 5] = [
        Component::Message,
        Component::Group,
        Component::Auth,
        Component::Chat,
        Component::Gateway,
    ];

    /// The role argument of `chat-server` and the `app.kubernetes.io/component` label.
    pub fn role(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::Group => "group",
            Self::Message => "message",
            Self::Chat => "chat",
            Self::Gateway => "gateway",
        }
    }

    /// The dependencies this component talks to when facts go over `relay`; env wiring,
    /// NetworkPolicies and the restart on a changed credential follow it. Group and message
    /// publish facts (and message follows the membership changes), so with the Redis relay
    /// they use Redis too.
    pub fn uses(self, relay: FactsRelay) -> Vec<DependencyKind> {
        use DependencyKind::*;
        let mut uses = match self {
            Self::Gateway => vec![MongoDb, RabbitMq, Redis],
            Self::Auth => vec![MongoDb, RabbitMq, Redis],
            Self::Group => vec![MongoDb, RabbitMq, Kafka],
            Self::Message => vec![MongoDb, RabbitMq, Kafka],
            Self::Chat => vec![RabbitMq, Kafka, Redis],
        };
        if relay == FactsRelay::Redis && !uses.contains(&Redis) {
            uses.push(Redis);
        }
        uses
    }

    /// Whether the component holds the JWT private key (only auth signs tokens).
    pub fn signs_tokens(self) -> bool {
        self == Self::Auth
    }

    /// How long Kubernetes waits for a pod to stop: the pre-stop pause, then the server's own
    /// drain (`SHUTDOWN_GRACE_SECONDS`, 20 s by default), with room to spare. Chat drains its
    /// Socket.IO connections, which takes longest.
    pub fn termination_grace_seconds(self) -> i64 {
        match self {
            Self::Chat => 45,
            _ => 30,
        }
    }
}

/// The four pieces of infrastructure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DependencyKind {
    MongoDb,
    RabbitMq,
    Kafka,
    Redis,
}

impl DependencyKind {
    /// Every dependency, in the order they are applied.
    pub const ALL: [DependencyKind; 4] = [
        DependencyKind::MongoDb,
        DependencyKind::RabbitMq,
        DependencyKind::Kafka,
        DependencyKind::Redis,
    ];

    /// Name used in object names and labels.
    pub fn name(self) -> &'static str {
        match self {
            Self::MongoDb => "mongodb",
            Self::RabbitMq => "rabbitmq",
            Self::Kafka => "kafka",
            Self::Redis => "redis",
        }
    }

    /// Environment variable carrying the connection URI into the components.
    pub fn uri_env(self) -> &'static str {
        match self {
            Self::MongoDb => "MONGODB_URI",
            Self::RabbitMq => "RABBITMQ_URI",
            Self::Kafka => "KAFKA_BROKERS",
            Self::Redis => "REDIS_URL",
        }
    }

    /// The port clients connect to.
    pub fn port(self) -> i32 {
        match self {
            Self::MongoDb => 27017,
            Self::RabbitMq => 5672,
            Self::Kafka => 9092,
            Self::Redis => 6379,
        }
    }

    /// The image a managed dependency runs unless its spec names one. Exact versions, never a
    /// floating tag: a node pulling `mongo:7.0` later would run another patch than the pods
    /// before it, outside the ordered upgrade. A new default is an image change like any
    /// other, so existing stacks roll to it through the ordered upgrade.
    pub fn default_image(self) -> &'static str {
        match self {
            // 7.0.28 fixes CVE-2025-14847 (unauthenticated heap read through zlib messages).
            Self::MongoDb => "mongo:7.0.28",
            // The last open-source release of 3.13.
            Self::RabbitMq => "rabbitmq:3.13.7-management",
            Self::Kafka => "apache/kafka:3.9.0",
            // 7.2.11 fixes CVE-2025-49844 (use-after-free in the Lua engine).
            Self::Redis => "redis:7.2.11",
        }
    }

    /// Size of a managed dependency's volume unless its spec names one.
    pub fn default_storage(self) -> &'static str {
        match self {
            Self::MongoDb | Self::Kafka => "10Gi",
            Self::RabbitMq => "2Gi",
            Self::Redis => "1Gi",
        }
    }

    /// CPU and memory of a managed dependency's container unless its spec sets them.
    pub fn default_resources(self) -> ResourceRequirements {
        let (cpu, memory, limit) = match self {
            Self::MongoDb => ("250m", "512Mi", "2Gi"),
            Self::RabbitMq => ("100m", "256Mi", "1Gi"),
            Self::Kafka => ("250m", "1Gi", "2Gi"),
            Self::Redis => ("50m", "64Mi", "256Mi"),
        };
        resources(cpu, memory, limit)
    }
}

/// Why a spec cannot be turned into objects. Messages never contain secret values.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidSpec {
    #[error("the ChatDeployment has no namespace")]
    MissingNamespace,
    #[error("name {0:?} is longer than {MAX_NAME_LENGTH} characters; derived object names would not be valid")]
    NameTooLong(String),
    #[error("name {0:?} is not a DNS label (lowercase letters, digits and '-', starting with a letter); derived Service names would not be valid")]
    NameNotDnsLabel(String),
    #[error("component {0}: set either replicas or autoscaling, not both")]
    ReplicasAndAutoscaling(&'static str),
    #[error("component {0}: autoscaling minReplicas {1} exceeds maxReplicas {2}")]
    AutoscalingBounds(&'static str, i32, i32),
    #[error("access token lifetime ({0}s) must be shorter than refresh token lifetime ({1}s)")]
    TokenLifetimes(i64, i64),
    #[error("ingress tlsSecretName needs a host")]
    TlsWithoutHost,
}

/// A key of a Secret the stack reads, and whether the operator generates it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SecretKey {
    pub secret: String,
    pub key: String,
    pub generated: bool,
}

/// How many pods a component runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scaling {
    /// A fixed count the operator sets on the Deployment.
    Fixed(i32),
    /// An HPA owns the count; the operator never sends `replicas`.
    Auto {
        min: i32,
        max: i32,
        target_cpu_percent: i32,
    },
}

impl Scaling {
    /// Fewest pods the component runs; a PodDisruptionBudget only makes sense above one.
    pub fn min_replicas(&self) -> i32 {
        match self {
            Self::Fixed(n) => *n,
            Self::Auto { min, .. } => *min,
        }
    }
}

/// A component with its defaults applied.
#[derive(Clone, Debug, PartialEq)]
pub struct ComponentConfig {
    pub component: Component,
    pub scaling: Scaling,
    pub resources: ResourceRequirements,
    pub overrides: PodOverrides,
}

/// A managed dependency with its defaults applied.
#[derive(Clone, Debug, PartialEq)]
pub struct ManagedConfig {
    pub image: String,
    pub storage_size: Quantity,
    pub storage_class: Option<String>,
    pub resources: ResourceRequirements,
    /// The administrator's password (MongoDB, RabbitMQ, Redis) or, for Kafka, the KRaft
    /// cluster id. Only the dependency's own pod reads it.
    pub credential: SecretKey,
    /// The password of [`APP_USERNAME`], the least-privilege user the components connect
    /// with (always generated; none for Kafka, which has no users).
    pub app_credential: Option<SecretKey>,
    /// Additions to the StatefulSet's pod.
    pub overrides: PodOverrides,
}

/// How a dependency is provided.
#[derive(Clone, Debug, PartialEq)]
pub enum DependencyMode {
    /// Boxed: with its pod overrides it is far larger than the external variant.
    Managed(Box<ManagedConfig>),
    External {
        uri: SecretKey,
    },
}

/// A dependency with its defaults applied.
#[derive(Clone, Debug, PartialEq)]
pub struct DependencyConfig {
    pub kind: DependencyKind,
    pub mode: DependencyMode,
}

/// Ingress settings.
#[derive(Clone, Debug, PartialEq)]
pub struct IngressConfig {
    pub class_name: Option<String>,
    pub host: Option<String>,
    pub tls_secret: Option<String>,
    pub annotations: BTreeMap<String, String>,
}

/// Everything the build step needs, validated and defaulted.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidatedConfig {
    pub name: String,
    pub namespace: String,
    pub owner: OwnerReference,
    pub version: String,
    pub image: String,
    pub image_pull_policy: String,
    pub image_pull_secrets: Vec<String>,
    pub rust_log: String,
    pub cors_allowed_origins: Vec<String>,
    pub access_token_ttl_seconds: i64,
    pub refresh_token_ttl_seconds: i64,
    /// The Secret with `private.pem` and `public.pem`.
    pub jwt_secret: String,
    pub jwt_generated: bool,
    pub components: Vec<ComponentConfig>,
    pub dependencies: Vec<DependencyConfig>,
    pub ingress: Option<IngressConfig>,
    /// Peers the components' NetworkPolicies admit; empty admits everyone.
    pub client_peers: Vec<NetworkPolicyPeer>,
    pub monitoring_peers: Vec<NetworkPolicyPeer>,
    /// Everything scaled to zero, data kept.
    pub stopped: bool,
    /// Longest duration of one upgrade step.
    pub step_timeout_seconds: i64,
    /// Additions to the migration Job's pod.
    pub migration_overrides: PodOverrides,
    pub deletion_policy: DeletionPolicy,
    pub facts_relay: FactsRelay,
    /// The force-upgrade annotation is `"true"`: minor versions may be skipped.
    pub force_upgrade: bool,
    /// Value of the rotate-jwt-key annotation: a value not yet applied rotates the key.
    pub jwt_rotation: Option<String>,
}

impl ValidatedConfig {
    /// The dependency settings of `kind`.
    pub fn dependency(&self, kind: DependencyKind) -> &DependencyConfig {
        self.dependencies
            .iter()
            .find(|d| d.kind == kind)
            .expect("validate() configures every dependency")
    }

    /// Every Secret key the stack reads, generated or the user's.
    pub fn secret_keys(&self) -> Vec<SecretKey> {
        let mut keys: Vec<SecretKey> = ["private.pem", "public.pem"]
            .into_iter()
            .map(|key| SecretKey {
                secret: self.jwt_secret.clone(),
                key: key.into(),
                generated: self.jwt_generated,
            })
            .collect();
        for dependency in &self.dependencies {
            match &dependency.mode {
                DependencyMode::Managed(managed) => {
                    keys.push(managed.credential.clone());
                    keys.extend(managed.app_credential.clone());
                }
                DependencyMode::External { uri } => keys.push(uri.clone()),
            }
        }
        keys
    }

    /// Names of the Secrets the operator generates (and never patches).
    pub fn generated_secret_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .secret_keys()
            .into_iter()
            .filter(|k| k.generated)
            .map(|k| k.secret)
            .collect();
        names.dedup();
        names
    }
}

/// Validate `cd` and merge the defaults into a [`ValidatedConfig`].
///
/// The schema already enforces most rules; they are checked again here because CEL rules are
/// only enforced by API servers that support them, and this is the last gate before objects
/// are built.
pub fn validate(cd: &ChatDeployment) -> Result<ValidatedConfig, InvalidSpec> {
    let name = cd.name_any();
    let namespace = cd.namespace().ok_or(InvalidSpec::MissingNamespace)?;
    if name.len() > MAX_NAME_LENGTH {
        return Err(InvalidSpec::NameTooLong(name));
    }
    if !is_dns_label(&name) {
        return Err(InvalidSpec::NameNotDnsLabel(name));
    }
    let spec = &cd.spec;
    let owner = cd
        .controller_owner_ref(&())
        .unwrap_or_else(|| OwnerReference {
            api_version: "chat.scalablechat.dev/v1alpha1".into(),
            kind: "ChatDeployment".into(),
            name: name.clone(),
            uid: String::new(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        });

    let auth = spec.auth.clone().unwrap_or_default();
    let access = auth
        .access_token_ttl_seconds
        .unwrap_or(DEFAULT_ACCESS_TOKEN_TTL_SECONDS);
    let refresh = auth
        .refresh_token_ttl_seconds
        .unwrap_or(DEFAULT_REFRESH_TOKEN_TTL_SECONDS);
    if access >= refresh {
        return Err(InvalidSpec::TokenLifetimes(access, refresh));
    }
    let (jwt_secret, jwt_generated) = match auth.jwt_secret_name {
        Some(secret) => (secret, false),
        None => (format!("{name}-jwt"), true),
    };

    let components_spec = spec.components.clone().unwrap_or_default();
    let components = Component::ALL
        .into_iter()
        .map(|component| {
            let given = match component {
                Component::Gateway => &components_spec.gateway,
                Component::Auth => &components_spec.auth,
                Component::Chat => &components_spec.chat,
                Component::Group => &components_spec.group,
                Component::Message => &components_spec.message,
            };
            component_config(component, given.clone().unwrap_or_default())
        })
        .collect::<Result<Vec<_>, _>>()?;

    let deps = spec.dependencies.clone().unwrap_or_default();
    let dependencies = vec![
        dependency_config(&name, DependencyKind::MongoDb, deps.mongodb),
        dependency_config(&name, DependencyKind::RabbitMq, deps.rabbitmq),
        kafka_config(&name, deps.kafka),
        dependency_config(&name, DependencyKind::Redis, deps.redis),
    ];

    let ingress = match &spec.ingress {
        None => None,
        Some(ingress) => {
            if ingress.tls_secret_name.is_some() && ingress.host.is_none() {
                return Err(InvalidSpec::TlsWithoutHost);
            }
            Some(IngressConfig {
                class_name: ingress.class_name.clone(),
                host: ingress.host.clone(),
                tls_secret: ingress.tls_secret_name.clone(),
                annotations: ingress.annotations.clone(),
            })
        }
    };

    let annotations = cd.annotations();
    Ok(ValidatedConfig {
        stopped: spec.stopped,
        step_timeout_seconds: spec
            .upgrade
            .as_ref()
            .and_then(|u| u.step_timeout_seconds)
            .unwrap_or(DEFAULT_STEP_TIMEOUT_SECONDS),
        migration_overrides: spec
            .migration
            .as_ref()
            .and_then(|m| m.pod_overrides.clone())
            .unwrap_or_default(),
        deletion_policy: spec.deletion_policy.unwrap_or(DEFAULT_DELETION_POLICY),
        facts_relay: spec.facts_relay.unwrap_or(DEFAULT_FACTS_RELAY),
        force_upgrade: annotations
            .get(FORCE_UPGRADE_ANNOTATION)
            .is_some_and(|v| v == "true"),
        jwt_rotation: annotations
            .get(ROTATE_JWT_KEY_ANNOTATION)
            .filter(|v| !v.is_empty())
            .cloned(),
        image: spec
            .image
            .clone()
            .unwrap_or_else(|| format!("{DEFAULT_IMAGE_REPOSITORY}:{}", spec.version)),
        version: spec.version.clone(),
        image_pull_policy: spec
            .image_pull_policy
            .unwrap_or(DEFAULT_IMAGE_PULL_POLICY)
            .as_str()
            .into(),
        // Each name once: the CRD refuses a duplicate now, but an object stored before it did
        // may hold one, and a pod's list is keyed by name (every apply would fail).
        image_pull_secrets: spec
            .image_pull_secrets
            .iter()
            .fold(Vec::new(), |mut names, s| {
                if !names.contains(&s.name) {
                    names.push(s.name.clone());
                }
                names
            }),
        rust_log: spec
            .log_level
            .clone()
            .unwrap_or_else(|| DEFAULT_LOG_LEVEL.into()),
        cors_allowed_origins: spec.cors_allowed_origins.clone(),
        access_token_ttl_seconds: access,
        refresh_token_ttl_seconds: refresh,
        jwt_secret,
        jwt_generated,
        components,
        dependencies,
        ingress,
        client_peers: spec
            .network_policy
            .as_ref()
            .map(|n| n.client_peers.clone())
            .unwrap_or_default(),
        monitoring_peers: spec
            .network_policy
            .as_ref()
            .map(|n| n.monitoring_peers.clone())
            .unwrap_or_default(),
        name,
        namespace,
        owner,
    })
}

/// An RFC 1035 label, as Service names must be: lowercase letters, digits and `-`, starting
/// with a letter and ending with a letter or digit (the length is checked separately).
fn is_dns_label(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn component_config(
    component: Component,
    spec: ComponentSpec,
) -> Result<ComponentConfig, InvalidSpec> {
    let role = component.role();
    let scaling = match (spec.replicas, spec.autoscaling) {
        (Some(_), Some(_)) => return Err(InvalidSpec::ReplicasAndAutoscaling(role)),
        (replicas, None) => Scaling::Fixed(replicas.unwrap_or(DEFAULT_REPLICAS)),
        (None, Some(auto)) => {
            let min = auto.min_replicas.unwrap_or(DEFAULT_MIN_REPLICAS);
            if min > auto.max_replicas {
                return Err(InvalidSpec::AutoscalingBounds(role, min, auto.max_replicas));
            }
            Scaling::Auto {
                min,
                max: auto.max_replicas,
                target_cpu_percent: auto
                    .target_cpu_utilization_percentage
                    .unwrap_or(DEFAULT_TARGET_CPU_UTILIZATION_PERCENTAGE),
            }
        }
    };
    Ok(ComponentConfig {
        component,
        scaling,
        resources: spec.resources.unwrap_or_else(default_component_resources),
        overrides: spec.pod_overrides.unwrap_or_default(),
    })
}

fn dependency_config(
    name: &str,
    kind: DependencyKind,
    spec: Option<Dependency<ManagedDependency>>,
) -> DependencyConfig {
    let mode = match spec.unwrap_or(Dependency::Managed(ManagedDependency::default())) {
        Dependency::External(external) => external_mode(external),
        Dependency::Managed(managed) => {
            let credential = match managed.password_secret {
                Some(SecretKeyReference { name, key }) => SecretKey {
                    secret: name,
                    key,
                    generated: false,
                },
                None => SecretKey {
                    secret: format!("{name}-{}", kind.name()),
                    key: "password".into(),
                    generated: true,
                },
            };
            DependencyMode::Managed(Box::new(managed_config(
                kind,
                managed.image,
                managed.storage,
                managed.resources,
                credential,
                Some(SecretKey {
                    secret: format!("{name}-{}-app", kind.name()),
                    key: "password".into(),
                    generated: true,
                }),
                managed.pod_overrides,
            )))
        }
    };
    DependencyConfig { kind, mode }
}

fn kafka_config(name: &str, spec: Option<Dependency<ManagedKafka>>) -> DependencyConfig {
    let kind = DependencyKind::Kafka;
    let mode = match spec.unwrap_or(Dependency::Managed(ManagedKafka::default())) {
        Dependency::External(external) => external_mode(external),
        Dependency::Managed(managed) => DependencyMode::Managed(Box::new(managed_config(
            kind,
            managed.image,
            managed.storage,
            managed.resources,
            SecretKey {
                secret: format!("{name}-kafka"),
                key: "cluster-id".into(),
                generated: true,
            },
            None,
            managed.pod_overrides,
        ))),
    };
    DependencyConfig { kind, mode }
}

fn external_mode(external: ExternalDependency) -> DependencyMode {
    DependencyMode::External {
        uri: SecretKey {
            secret: external.uri_secret.name,
            key: external.uri_secret.key,
            generated: false,
        },
    }
}

fn managed_config(
    kind: DependencyKind,
    image: Option<String>,
    storage: Option<StorageSpec>,
    given_resources: Option<ResourceRequirements>,
    credential: SecretKey,
    app_credential: Option<SecretKey>,
    overrides: Option<PodOverrides>,
) -> ManagedConfig {
    let storage = storage.unwrap_or_default();
    ManagedConfig {
        image: image.unwrap_or_else(|| kind.default_image().into()),
        storage_size: storage
            .size
            .unwrap_or_else(|| Quantity(kind.default_storage().into())),
        storage_class: storage.storage_class_name,
        resources: given_resources.unwrap_or_else(|| kind.default_resources()),
        credential,
        app_credential,
        overrides: overrides.unwrap_or_default(),
    }
}

/// CPU and memory of a `chat-server` container whose spec sets none (and of the migration
/// Job).
pub fn default_component_resources() -> ResourceRequirements {
    resources("100m", "128Mi", "512Mi")
}

fn resources(cpu: &str, memory: &str, memory_limit: &str) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".into(), Quantity(cpu.into())),
            ("memory".into(), Quantity(memory.into())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".into(),
            Quantity(memory_limit.into()),
        )])),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{AutoscalingSpec, ChatDeploymentSpec, ComponentsSpec};

    fn chat(spec: ChatDeploymentSpec) -> ChatDeployment {
        let mut cd = ChatDeployment::new("chat", spec);
        cd.metadata.namespace = Some("default".into());
        cd
    }

    fn minimal() -> ChatDeploymentSpec {
        ChatDeploymentSpec {
            version: "0.1.0".into(),
            ..Default::default()
        }
    }

    #[test]
    fn minimal_spec_gets_every_dependency_managed_and_one_replica_each() {
        let cfg = validate(&chat(minimal())).unwrap();
        assert_eq!(cfg.image, "ghcr.io/scalable-chat/chat-server:0.1.0");
        assert!(cfg
            .components
            .iter()
            .all(|c| c.scaling == Scaling::Fixed(1)));
        assert!(cfg
            .dependencies
            .iter()
            .all(|d| matches!(d.mode, DependencyMode::Managed(_))));
        assert_eq!(
            cfg.generated_secret_names(),
            [
                "chat-jwt",
                "chat-mongodb",
                "chat-mongodb-app",
                "chat-rabbitmq",
                "chat-rabbitmq-app",
                "chat-kafka",
                "chat-redis",
                "chat-redis-app"
            ]
        );
    }

    #[test]
    fn image_pull_secrets_are_passed_on_once_each_in_order() {
        let spec = ChatDeploymentSpec {
            image_pull_secrets: ["b", "a", "b"]
                .map(|name| crate::crd::LocalSecretReference { name: name.into() })
                .into(),
            ..minimal()
        };
        assert_eq!(
            validate(&chat(spec)).unwrap().image_pull_secrets,
            ["b", "a"]
        );
    }

    fn with_chat_component(component: ComponentSpec) -> ChatDeploymentSpec {
        ChatDeploymentSpec {
            components: Some(ComponentsSpec {
                chat: Some(component),
                ..Default::default()
            }),
            ..minimal()
        }
    }

    #[test]
    fn replicas_together_with_autoscaling_is_rejected() {
        let spec = with_chat_component(ComponentSpec {
            replicas: Some(2),
            autoscaling: Some(AutoscalingSpec {
                max_replicas: 3,
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(
            validate(&chat(spec)),
            Err(InvalidSpec::ReplicasAndAutoscaling("chat"))
        );
    }

    #[test]
    fn autoscaling_min_above_max_is_rejected() {
        let spec = with_chat_component(ComponentSpec {
            autoscaling: Some(AutoscalingSpec {
                min_replicas: Some(5),
                max_replicas: 3,
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(
            validate(&chat(spec)),
            Err(InvalidSpec::AutoscalingBounds("chat", 5, 3))
        );
    }

    #[test]
    fn a_name_too_long_for_derived_service_names_is_rejected() {
        let mut cd = chat(minimal());
        cd.metadata.name = Some("c".repeat(MAX_NAME_LENGTH + 1));
        assert!(matches!(validate(&cd), Err(InvalidSpec::NameTooLong(_))));
    }

    #[test]
    fn a_name_that_is_not_a_dns_label_is_rejected() {
        for name in ["chat.prod", "1chat", "chat-", "Chat"] {
            let mut cd = chat(minimal());
            cd.metadata.name = Some(name.into());
            assert_eq!(
                validate(&cd),
                Err(InvalidSpec::NameNotDnsLabel(name.into())),
                "{name}"
            );
        }
        let mut cd = chat(minimal());
        cd.metadata.name = Some("c0-x".into());
        assert!(validate(&cd).is_ok());
    }

    /// A floating tag (`redis:7.2`) would let a node pull another patch than the one the
    /// other pods run, outside the ordered upgrade; the CRD documents each default.
    #[test]
    fn default_dependency_images_are_exact_versions_the_crd_names() {
        let crd = crate::crd_yaml();
        for kind in DependencyKind::ALL {
            let image = kind.default_image();
            let (_, tag) = image.rsplit_once(':').expect("a tag");
            let version = tag.split('-').next().unwrap();
            let parts: Vec<&str> = version.split('.').collect();
            assert!(
                parts.len() == 3 && parts.iter().all(|p| p.parse::<u32>().is_ok()),
                "{image} is not pinned to MAJOR.MINOR.PATCH"
            );
            assert!(crd.contains(image), "the CRD does not name {image}");
        }
    }

    #[test]
    fn user_supplied_secrets_are_not_generated() {
        let mut spec = minimal();
        spec.auth = Some(crate::crd::AuthSpec {
            jwt_secret_name: Some("my-keys".into()),
            ..Default::default()
        });
        let cfg = validate(&chat(spec)).unwrap();
        assert!(!cfg
            .generated_secret_names()
            .contains(&"my-keys".to_string()));
        assert!(!cfg
            .generated_secret_names()
            .contains(&"chat-jwt".to_string()));
    }
}
