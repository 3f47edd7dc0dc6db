//! The `ChatDeployment` custom resource: the only source of the CRD.
//!
//! Doc comments on every field become the CRD's field descriptions (`kubectl explain`).
//!
//! Every default that a schema can hold is a `default:` of the schema, taken from the constant
//! or function of [`crate::config`] the operator itself falls back to: the API server stores
//! it on create and update, so a new operator version with another default changes only
//! ChatDeployments created (or whose field is removed) after its CRD is installed, and the
//! operator still reads objects stored without them the same way. Defaults inside an object
//! apply only when the object is there, so the objects holding them default to `{}`. What no
//! schema can default stays the operator's alone: `image` (it follows `version`), the names of
//! generated Secrets (they follow the name), and `replicas` (a stored value would contradict an
//! `autoscaling` set later).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::config::{
    default_component_resources, DependencyKind, DEFAULT_ACCESS_TOKEN_TTL_SECONDS,
    DEFAULT_DELETION_POLICY, DEFAULT_FACTS_RELAY, DEFAULT_IMAGE_PULL_POLICY, DEFAULT_LOG_LEVEL,
    DEFAULT_MIN_REPLICAS, DEFAULT_REFRESH_TOKEN_TTL_SECONDS, DEFAULT_STEP_TIMEOUT_SECONDS,
    DEFAULT_TARGET_CPU_UTILIZATION_PERCENTAGE, MAX_NAME_LENGTH,
};

/// API group of every resource this operator defines.
pub const GROUP: &str = "chat.scalablechat.dev";

/// Annotation on a ChatDeployment: `"true"` lets an upgrade skip minor versions, which is
/// otherwise refused (the migrations of the skipped versions would never run).
pub const FORCE_UPGRADE_ANNOTATION: &str = "chat.scalablechat.dev/force-upgrade";

/// Annotation on a ChatDeployment: a new value (any, for example a timestamp) rotates the
/// generated JWT signing key once.
pub const ROTATE_JWT_KEY_ANNOTATION: &str = "chat.scalablechat.dev/rotate-jwt-key";

/// A complete scalable-chat installation: the five chat services, their dependencies
/// (MongoDB, RabbitMQ, Kafka, Redis), secrets, scaling and ingress.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "chat.scalablechat.dev",
    version = "v1alpha1",
    kind = "ChatDeployment",
    namespaced,
    shortname = "chat",
    status = "ChatDeploymentStatus",
    doc = "A scalable-chat installation: one ChatDeployment becomes the chat services, their dependencies, secrets, scaling and ingress.",
    printcolumn = r#"{"name":"Version","type":"string","description":"Requested scalable-chat version","jsonPath":".spec.version"}"#,
    printcolumn = r#"{"name":"Running","type":"string","description":"Version every component runs","jsonPath":".status.version"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","description":"Whether every component is available","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","description":"Why it is or is not ready","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Step","type":"string","description":"Upgrade step in progress","jsonPath":".status.upgrade.step","priority":1}"#,
    printcolumn = r#"{"name":"URL","type":"string","description":"Where clients reach the stack","jsonPath":".status.url","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    // The name prefixes every object the operator creates, Services included, whose names
    // must be DNS labels (RFC 1035): `<name>-rabbitmq-headless` must fit in 63 characters, and
    // the pods' `controller-revision-hash` label, `<name>-rabbitmq-<hash>`, too.
    validation = Rule::new(format!("self.metadata.name.size() <= {MAX_NAME_LENGTH}"))
        .message(Message::Message(format!(
            "metadata.name must be at most {MAX_NAME_LENGTH} characters: it prefixes the names of the Services and StatefulSets the operator creates and their pods' labels"
        ))),
    validation = Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')")
        .message("metadata.name must be a DNS label (lowercase letters, digits and '-', starting with a letter): it prefixes the names of the Services the operator creates")
)]
#[serde(rename_all = "camelCase")]
pub struct ChatDeploymentSpec {
    /// Version of scalable-chat to run. It is the image tag unless `image` is set, and it is
    /// reported per component in the status. It labels every workload, so it must be a label
    /// value: at most 63 letters, digits, `-`, `_` and `.`, starting and ending with a letter
    /// or digit (no `+build` suffix, no digest: pin a digest with `image`).
    #[schemars(length(max = 63), regex(pattern = LABEL_VALUE))]
    pub version: String,

    /// Full image reference of the `chat-server` image, overriding the default
    /// `ghcr.io/scalable-chat/chat-server:<version>`. Every component runs this one image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = IMAGE))]
    pub image: Option<String>,

    /// When to pull the image. Defaults to `IfNotPresent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        schema_with = "nullable::<ImagePullPolicy>",
        extend("default" = DEFAULT_IMAGE_PULL_POLICY)
    )]
    pub image_pull_policy: Option<ImagePullPolicy>,

    /// Secrets in this namespace used to pull images from a private registry, in the pods'
    /// own form (`[{name: registry-credentials}]`). Every pod the operator creates gets them:
    /// the components, the migration Job and the managed dependencies (whose images may be
    /// mirrored into the same registry). Each name at most once.
    // A map-list keyed by `name`, like a pod's own: a duplicate name is refused when written
    // rather than accepted here and then refused in every workload the operator applies (a
    // pod's `imagePullSecrets` is keyed by name in server-side apply). Kubernetes 1.25 refuses
    // a create, update or merge patch with 422 "Duplicate value", but a server-side apply with
    // 500 "failed to create typed patch object (…): .spec.imagePullSecrets: duplicate entries
    // for key [name=\"…\"]": the wrong status code, yet the field and the name are in the
    // message, and either way the object is not stored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub image_pull_secrets: Vec<LocalSecretReference>,

    /// Stop reconciling: while true the operator writes nothing to the objects it manages and
    /// only reports, through the `ReconciliationPaused` condition, that it is paused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,

    /// Scale everything to zero while keeping the data: every component Deployment and every
    /// managed dependency StatefulSet gets zero replicas, autoscalers and disruption budgets
    /// are removed, and PersistentVolumeClaims and Secrets stay. Setting it back to false
    /// starts everything again at the version it ran. Upgrades do not advance while stopped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopped: bool,

    /// How version changes are rolled out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = {}))]
    pub upgrade: Option<UpgradeSpec>,

    /// The migration Job an upgrade runs before any component moves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<MigrationSpec>,

    /// What happens to the managed dependencies' data (their PersistentVolumeClaims and
    /// generated passwords) when the ChatDeployment is deleted. Defaults to `Retain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        schema_with = "nullable::<DeletionPolicy>",
        extend("default" = DEFAULT_DELETION_POLICY)
    )]
    pub deletion_policy: Option<DeletionPolicy>,

    /// How facts (stored messages, edits, receipts, typing, presence, membership changes)
    /// reach every chat replica: `Kafka`, the facts topic each replica tails (the default), or
    /// `Redis`, relayed over Redis pub/sub (about 10 ms less per message on the test
    /// stand-ins; facts published while a replica resubscribes are not relayed to it, and
    /// clients catch up by sequence number). Changing it rolls every component; facts published
    /// during that roll may reach only the replicas on the same setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        schema_with = "nullable::<FactsRelay>",
        extend("default" = DEFAULT_FACTS_RELAY)
    )]
    pub facts_relay: Option<FactsRelay>,

    /// Log filter of every component, in `RUST_LOG` syntax. Defaults to `info`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1), extend("default" = DEFAULT_LOG_LEVEL))]
    pub log_level: Option<String>,

    /// Browser origins allowed by CORS, for example `https://chat.example.com`. Empty means
    /// none beyond same-origin requests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cors_allowed_origins: Vec<String>,

    /// Token lifetimes and the JWT signing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = {}))]
    pub auth: Option<AuthSpec>,

    /// Per-component replicas, resources, autoscaling and pod overrides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = {}))]
    pub components: Option<ComponentsSpec>,

    /// How each dependency is provided: run by the operator (`managed`, the default) or
    /// provided outside (`external`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = {}))]
    pub dependencies: Option<DependenciesSpec>,

    /// Expose the stack through an Ingress: `/` to the gateway and `/socket.io` to chat.
    /// Without it the stack is reachable only inside the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressSpec>,

    /// Who may connect to the components. Every component gets a NetworkPolicy that admits
    /// only its API port (gateway and chat) and its management port (probes and `/metrics`);
    /// auth, group and message take no connections but those. The managed dependencies admit
    /// only the components that use them, whatever this says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_policy: Option<NetworkPolicySpec>,
}

/// Schema of an optional enum. schemars describes `Option<enum>` as an `anyOf` with `null`,
/// which is not a structural schema (the API server rejects it), so mark the enum's own schema
/// nullable instead.
fn nullable<T: JsonSchema>(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = generator.subschema_for::<T>();
    schema.insert("nullable".into(), true.into());
    schema
}

/// Schema of one dependency of `kind`: managed unless said otherwise (`default: {managed:
/// {}}`), and the managed variant's image, storage size and resources defaulted to `kind`'s.
/// One Rust type serves MongoDB, RabbitMQ and Redis, so the defaults are set per field of
/// [`DependenciesSpec`], not on the type.
fn dependency<M: JsonSchema>(
    generator: &mut schemars::SchemaGenerator,
    kind: DependencyKind,
) -> schemars::Schema {
    use serde_json::Value;
    let mut schema = nullable::<Dependency<M>>(generator);
    schema.insert("default".into(), json!({"managed": {}}));
    // Before kube's structural rewrite the variants' properties are still under `oneOf`.
    let variants = schema
        .get("oneOf")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let managed = (0..variants)
        .map(|i| format!("/oneOf/{i}/properties/managed/properties"))
        .chain(["/properties/managed/properties".to_owned()])
        .find(|path| schema.pointer(path).is_some())
        .expect("a dependency's schema has the managed variant");
    let mut set = |field: &str, value: Value| {
        schema
            .pointer_mut(&format!("{managed}/{field}"))
            .and_then(Value::as_object_mut)
            .unwrap_or_else(|| panic!("the managed variant has {field}"))
            .insert("default".into(), value);
    };
    set("image", json!(kind.default_image()));
    set("storage", json!({}));
    set("storage/properties/size", json!(kind.default_storage()));
    set("resources", json!(kind.default_resources()));
    // Not nullable: the API server evaluates a rule only on a value that is not null, so
    // `storage: null` or `storageClassName: null` would slip past the storage class's
    // transition rule. Without `nullable` a null is pruned (and `storage` defaulted to `{}`).
    for (field, kind) in [
        ("storage", "object"),
        ("storage/properties/storageClassName", "string"),
    ] {
        schema
            .pointer_mut(&format!("{managed}/{field}"))
            .and_then(Value::as_object_mut)
            .unwrap_or_else(|| panic!("the managed variant has {field}"))
            .insert("type".into(), kind.into()); // `[kind, "null"]` becomes `nullable`
    }
    schema
}

fn mongodb(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    dependency::<ManagedDependency>(generator, DependencyKind::MongoDb)
}

fn rabbitmq(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    dependency::<ManagedDependency>(generator, DependencyKind::RabbitMq)
}

fn kafka(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    dependency::<ManagedKafka>(generator, DependencyKind::Kafka)
}

fn redis(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    dependency::<ManagedDependency>(generator, DependencyKind::Redis)
}

/// A Kubernetes resource quantity, as `resource.Quantity` parses it (`500m`, `1.5Gi`, `2`,
/// `1e3`). Without it a wrong quantity would pass the CRD and fail only when the operator
/// applies the Deployment or StatefulSet.
pub const QUANTITY: &str = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$";

/// A non-empty label value (its 63-character limit is a `maxLength`).
pub const LABEL_VALUE: &str = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$";

/// A label value, possibly empty.
const OPTIONAL_LABEL_VALUE: &str = r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$";

/// A label or annotation key: an optional DNS subdomain and `/`, then a name of at most 63
/// characters. A CEL regular expression, inside a single-quoted CEL string.
const QUALIFIED_NAME: &str = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$";

/// A DNS subdomain (RFC 1123): names of Secrets, StorageClasses and IngressClasses (their
/// 253-character limit is a `maxLength`).
pub const DNS_SUBDOMAIN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// An Ingress rule's host: a DNS subdomain whose last label starts with a letter (so not an
/// IP address), optionally behind a `*.` wildcard.
pub const HOST: &str = r"^(\*\.)?([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)*[a-z]([-a-z0-9]*[a-z0-9])?$";

/// A key of a Secret's data.
pub const SECRET_KEY: &str = r"^[-._a-zA-Z0-9]+$";

/// An image reference: not empty, no whitespace (the API server refuses a container image
/// with leading or trailing whitespace).
pub const IMAGE: &str = r"^\S+$";

/// Give every Quantity under this field (the int-or-string values of `limits`, `requests`,
/// a storage `size`, an env var's `divisor`) the quantity pattern. Only Quantities are
/// int-or-string in the Kubernetes types this is used on.
fn quantities(schema: &mut schemars::Schema) {
    use serde_json::{Map, Value};
    fn object(object: &mut Map<String, Value>) {
        if object.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
            object.insert("pattern".into(), QUANTITY.into());
        }
        object.values_mut().for_each(walk);
    }
    fn walk(value: &mut Value) {
        match value {
            Value::Object(o) => object(o),
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    if let Some(o) = schema.as_object_mut() {
        object(o);
    }
}

/// A map that becomes labels (or a node selector): keys are qualified names, values label
/// values. The API server refuses anything else only when the operator applies the pods.
fn label_map(schema: &mut schemars::Schema) {
    qualified_keys(schema, "label");
    if let Some(values) = schema
        .get_mut("additionalProperties")
        .and_then(|v| v.as_object_mut())
    {
        values.insert("maxLength".into(), 63.into());
        values.insert("pattern".into(), OPTIONAL_LABEL_VALUE.into());
    }
}

/// A Secret in the ChatDeployment's namespace, by name.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LocalSecretReference {
    /// The Secret's name.
    #[schemars(length(max = 253), regex(pattern = DNS_SUBDOMAIN))]
    pub name: String,
}

/// A map that becomes annotations: keys are qualified names.
fn annotation_map(schema: &mut schemars::Schema) {
    qualified_keys(schema, "annotation");
}

fn qualified_keys(schema: &mut schemars::Schema, what: &str) {
    // A bound on the entries keeps the rule's estimated cost within the API server's budget.
    schema.insert("maxProperties".into(), 64.into());
    schema.insert(
        "x-kubernetes-validations".into(),
        json!([{
            "rule": format!("self.all(k, k.matches('{QUALIFIED_NAME}'))"),
            "message": format!("{what} keys must be qualified names: an optional DNS subdomain prefix and '/', then at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"),
        }]),
    );
}

/// When the kubelet pulls the image.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ImagePullPolicy {
    /// Pull on every pod start.
    Always,
    /// Pull only when the node does not have the image.
    IfNotPresent,
    /// Never pull; the image must be on the node.
    Never,
}

impl ImagePullPolicy {
    /// The value Kubernetes expects in a container's `imagePullPolicy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        }
    }
}

/// Settings of ordered upgrades.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeSpec {
    /// Longest time one upgrade step (rolling one StatefulSet or Deployment, or running the
    /// migration Job) may take. A step that takes longer sets `Degraded` (reason
    /// `StepTimedOut`) and stops the sequence until the spec changes. Defaults to 600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 30, max = 86400), extend("default" = DEFAULT_STEP_TIMEOUT_SECONDS))]
    pub step_timeout_seconds: Option<i64>,
}

/// Settings of the migration Job (`chat-server migrate` of the image being rolled out).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrationSpec {
    /// Additions to the migration Job's pod, as for a component: where it may be scheduled,
    /// its priority, extra labels, annotations and environment. A change while a migration
    /// runs replaces the Job (its name is a hash of its spec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_overrides: Option<PodOverrides>,
}

/// What deleting the ChatDeployment does to the managed dependencies' data.
// No `Default`: the default is `config::DEFAULT_DELETION_POLICY`, which the schema states too.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Keep the PersistentVolumeClaims and generated dependency passwords, so a ChatDeployment
    /// created again under the same name finds its data.
    Retain,
    /// Delete them too (through a finalizer on the ChatDeployment).
    Delete,
}

/// How facts reach the chat replicas (`FACTS_RELAY` of every component).
// No `Default`: the default is `config::DEFAULT_FACTS_RELAY`, which the schema states too.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum FactsRelay {
    /// The Kafka facts topic, tailed by every replica.
    Kafka,
    /// Redis pub/sub: group and message use Redis too.
    Redis,
}

impl FactsRelay {
    /// The value of the services' `FACTS_RELAY`.
    pub fn as_env(self) -> &'static str {
        match self {
            Self::Kafka => "kafka",
            Self::Redis => "redis",
        }
    }
}

/// Authentication settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.accessTokenTtlSeconds) || !has(self.refreshTokenTtlSeconds) || self.accessTokenTtlSeconds < self.refreshTokenTtlSeconds").message("accessTokenTtlSeconds must be shorter than refreshTokenTtlSeconds"))]
pub struct AuthSpec {
    /// Lifetime of an access token in seconds. Defaults to 900 (15 minutes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        range(min = 60, max = 86400),
        extend("default" = DEFAULT_ACCESS_TOKEN_TTL_SECONDS)
    )]
    pub access_token_ttl_seconds: Option<i64>,

    /// Lifetime of a refresh token in seconds. Defaults to 2592000 (30 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        range(min = 300, max = 31536000),
        extend("default" = DEFAULT_REFRESH_TOKEN_TTL_SECONDS)
    )]
    pub refresh_token_ttl_seconds: Option<i64>,

    /// Name of a Secret holding the Ed25519 signing key pair under `private.pem` (PKCS#8 PEM)
    /// and `public.pem` (SPKI PEM; may hold several public keys). When unset the operator
    /// generates `<name>-jwt` once and changes it only when the annotation
    /// `chat.scalablechat.dev/rotate-jwt-key` gets a new value. The private key is mounted
    /// only into auth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253), regex(pattern = DNS_SUBDOMAIN))]
    pub jwt_secret_name: Option<String>,
}

/// The five chat components. Each runs the same image with its role as argument.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentsSpec {
    /// The REST API (`/auth`, `/users`, `/groups`, `/assets`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = {}))]
    pub gateway: Option<ComponentSpec>,
    /// Registration, login and tokens; the only holder of the signing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = {}))]
    pub auth: Option<ComponentSpec>,
    /// The Socket.IO server clients stay connected to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = {}))]
    pub chat: Option<ComponentSpec>,
    /// Groups and memberships.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = {}))]
    pub group: Option<ComponentSpec>,
    /// Message persistence and history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = {}))]
    pub message: Option<ComponentSpec>,
}

/// Settings of one component.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.replicas) && has(self.autoscaling))").message("set either replicas or autoscaling, not both"))]
pub struct ComponentSpec {
    /// Number of pods. Defaults to 1. Not allowed together with `autoscaling`, which then owns
    /// the replica count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: Option<i32>,

    /// CPU and memory of the component's container. Defaults to requests of 100m CPU and
    /// 128Mi memory and a 512Mi memory limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        transform = quantities,
        extend("default" = default_component_resources())
    )]
    pub resources: Option<ResourceRequirements>,

    /// Scale on CPU with a HorizontalPodAutoscaler instead of a fixed replica count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,

    /// Additions to the component's pods: the escape hatch for what this resource does not
    /// model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_overrides: Option<PodOverrides>,
}

/// CPU-based horizontal autoscaling of one component.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.minReplicas) || self.minReplicas <= self.maxReplicas").message("minReplicas must not exceed maxReplicas"))]
pub struct AutoscalingSpec {
    /// Fewest pods the autoscaler keeps. Defaults to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000), extend("default" = DEFAULT_MIN_REPLICAS))]
    pub min_replicas: Option<i32>,

    /// Most pods the autoscaler may run.
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,

    /// Average CPU utilisation, as a percentage of the CPU request, the autoscaler aims for.
    /// Defaults to 75.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        range(min = 1, max = 100),
        extend("default" = DEFAULT_TARGET_CPU_UTILIZATION_PERCENTAGE)
    )]
    pub target_cpu_utilization_percentage: Option<i32>,
}

/// Additions merged into the pod template of a workload the operator runs: a component's
/// Deployment, a managed dependency's StatefulSet or the migration Job. They are the escape
/// hatch for scheduling and metadata this resource does not model; what the operator sets
/// itself (selector and version labels, its annotations) always wins.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodOverrides {
    /// Extra pod labels. They never change the workload's selector, and a label the operator
    /// sets keeps the operator's value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(transform = label_map)]
    pub labels: BTreeMap<String, String>,

    /// Extra pod annotations. An annotation the operator sets keeps the operator's value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(transform = annotation_map)]
    pub annotations: BTreeMap<String, String>,

    /// Node labels the pods must be scheduled on.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(transform = label_map)]
    pub node_selector: BTreeMap<String, String>,

    /// Taints the pods tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,

    /// Node and pod affinity of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// How the pods spread over zones, nodes or other topology domains. A constraint's
    /// `labelSelector` should select the workload's own pods, for example by
    /// `app.kubernetes.io/instance` and `app.kubernetes.io/component`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,

    /// PriorityClass of the pods. The class must exist: until it does, the API server refuses
    /// to create the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253), regex(pattern = DNS_SUBDOMAIN))]
    pub priority_class_name: Option<String>,

    /// Extra environment variables of the workload's main container; one with the name of an
    /// operator-set variable replaces it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(transform = quantities)]
    pub env: Vec<EnvVar>,
}

/// How each dependency is provided. An absent entry means managed with defaults.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DependenciesSpec {
    /// Document store for users, groups, messages and uploads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "mongodb")]
    pub mongodb: Option<Dependency<ManagedDependency>>,
    /// Message broker carrying RPC between the gateway and the services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "rabbitmq")]
    pub rabbitmq: Option<Dependency<ManagedDependency>>,
    /// Event log carrying chat commands and facts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "kafka")]
    pub kafka: Option<Dependency<ManagedKafka>>,
    /// Presence, fan-out and rate limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "redis")]
    pub redis: Option<Dependency<ManagedDependency>>,
}

/// Exactly one of `managed` or `external`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Dependency<M> {
    /// The operator runs it as a single-replica StatefulSet with a PersistentVolumeClaim.
    Managed(M),
    /// It runs elsewhere; the operator only wires its URI into the components.
    External(ExternalDependency),
}

/// A dependency the operator runs (MongoDB, RabbitMQ or Redis).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedDependency {
    /// Container image. Defaults to `mongo:7.0.28`, `rabbitmq:3.13.7-management` or
    /// `redis:7.2.11`: exact versions, so an operator upgrade changes them only when it ships
    /// a new default. A change of the image (or of the default) is rolled out by the ordered
    /// upgrade: dependencies one at a time, before the migration and the components.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = IMAGE))]
    pub image: Option<String>,

    /// Persistent volume of the data directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,

    /// CPU and memory of the dependency's container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = quantities)]
    pub resources: Option<ResourceRequirements>,

    /// A Secret key holding the password to use instead of a generated one. The value must be
    /// URL-safe, since it is placed into connection URIs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret: Option<SecretKeyReference>,

    /// Additions to the dependency's pod, as for a component: scheduling, priority, extra
    /// labels, annotations and environment. A change rolls the StatefulSet's pod at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_overrides: Option<PodOverrides>,
}

/// Kafka run by the operator: one KRaft node (broker and controller), no ZooKeeper. It has no
/// password; a NetworkPolicy admits only the components that use it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedKafka {
    /// Container image. Defaults to `apache/kafka:3.9.0`. A change is rolled out by the
    /// ordered upgrade, like the other dependencies' images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = IMAGE))]
    pub image: Option<String>,

    /// Persistent volume of the log directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,

    /// CPU and memory of the Kafka container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = quantities)]
    pub resources: Option<ResourceRequirements>,

    /// Additions to the Kafka pod, as for a component: scheduling, priority, extra labels,
    /// annotations and environment. A change rolls the StatefulSet's pod at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_overrides: Option<PodOverrides>,
}

/// A dependency run elsewhere.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalDependency {
    /// The Secret key holding the connection URI: `mongodb://…` for MongoDB, `amqp://…` for
    /// RabbitMQ, a `host:port[,host:port]` list for Kafka, `redis://…` for Redis.
    pub uri_secret: SecretKeyReference,
}

/// One key of a Secret in the ChatDeployment's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyReference {
    /// Name of the Secret.
    #[schemars(length(max = 253), regex(pattern = DNS_SUBDOMAIN))]
    pub name: String,
    /// Key inside the Secret: letters, digits, `-`, `_` and `.`.
    #[schemars(length(max = 253), regex(pattern = SECRET_KEY))]
    pub key: String,
}

/// A PersistentVolumeClaim's size and class.
// The class is part of the StatefulSet's volume claim template, which cannot change: a
// transition rule refuses a change of it (setting or removing it included) in the API server.
// The size can grow (the operator grows the claims in place) but not shrink, which only the
// operator can judge: Kubernetes 1.25's CEL cannot compare quantities.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(STORAGE_CLASS_UNCHANGED).message(STORAGE_CLASS_MESSAGE))]
pub struct StorageSpec {
    /// Requested size, for example `10Gi`. Defaults to 10Gi for MongoDB and Kafka, 2Gi for
    /// RabbitMQ and 1Gi for Redis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = quantities)]
    pub size: Option<Quantity>,

    /// StorageClass of the claim; the cluster's default class when unset. It cannot change
    /// (nor be set or removed) once the ChatDeployment is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253), regex(pattern = DNS_SUBDOMAIN))]
    pub storage_class_name: Option<String>,
}

/// The transition rule of [`StorageSpec`]: the class stays what it was, set or unset.
// Not `has(self.x) == has(oldSelf.x) && …`: Kubernetes 1.25 estimates the cost of comparing
// two `has()` results as unbounded and refuses the CRD ("estimated rule cost exceeds budget by
// factor of more than 100x").
pub const STORAGE_CLASS_UNCHANGED: &str = "has(self.storageClassName) ? has(oldSelf.storageClassName) && self.storageClassName == oldSelf.storageClassName : !has(oldSelf.storageClassName)";

/// What the API server says when [`STORAGE_CLASS_UNCHANGED`] fails.
pub const STORAGE_CLASS_MESSAGE: &str = "storageClassName cannot change (nor be set or removed) once the dependency exists: the StatefulSet's volume claim template is immutable and the data stays on its volumes; move it with a backup and restore";

/// Routing from outside the cluster.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.tlsSecretName) || has(self.host)").message("tlsSecretName needs a host"))]
pub struct IngressSpec {
    /// IngressClass to use; the cluster's default class when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253), regex(pattern = DNS_SUBDOMAIN))]
    pub class_name: Option<String>,

    /// Host name clients use, for example `chat.example.com`, or a wildcard such as
    /// `*.example.com`; lowercase, not an IP address. All hosts when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253), regex(pattern = HOST))]
    pub host: Option<String>,

    /// Secret of type `kubernetes.io/tls` holding the certificate for `host`. Plain HTTP when
    /// unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253), regex(pattern = DNS_SUBDOMAIN))]
    pub tls_secret_name: Option<String>,

    /// Extra annotations on the Ingress objects, for the ingress controller or cert-manager.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(transform = annotation_map)]
    pub annotations: BTreeMap<String, String>,
}

/// Peers admitted to the components' ports, in the NetworkPolicy peer form (`podSelector`,
/// `namespaceSelector`, `ipBlock`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Who may reach the gateway's and chat's API port: your ingress controller, for example
    /// `[{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: ingress-nginx}}}]`,
    /// and any in-cluster client. Unset or empty: every pod and address. Set it when an
    /// Ingress is used: the gateway then trusts `X-Forwarded-For` from these peers only, so no
    /// other pod can pose as a different client to the login rate limit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client_peers: Vec<NetworkPolicyPeer>,

    /// Who may reach every component's management port (9090: `/metrics` and the probes,
    /// which the kubelet reaches from the node whatever this says): your Prometheus, for
    /// example. Unset or empty: every pod and address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub monitoring_peers: Vec<NetworkPolicyPeer>,
}

/// What the operator last observed. Never contains a credential.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatDeploymentStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready` (every component has an available replica and every dependency is ready),
    /// `Progressing` (a rollout is under way), `Degraded` (the spec is invalid, a Secret is
    /// missing or a rollout stalled) and, while `spec.paused` is true, `ReconciliationPaused`;
    /// with reasons and messages. One entry per type.
    // A map-list keyed by `type` (the Kubernetes API conventions' `+listType=map`): another
    // tool may server-side apply a condition type of its own, which the operator keeps. The
    // 1.25 status subresource does not refuse two entries of one type (the operator's next
    // status write removes them: `status::merge_conditions`). An "index out of range" failure
    // of status writes seen on the 1.25 control plane was once blamed on this list type: it is
    // kubernetes/kubernetes#114661, a data race in Kubernetes 1.25.0's CEL library (cel-go
    // before 0.12.6; kubernetes/kubernetes#114864 fixed it in a later 1.25 patch release). It
    // failed a few writes in ten thousand under 32 concurrent writers on the control plane,
    // with this list plain and as a map-list, in root rules and spec rules alike; the
    // operator retries such a write with its back-off.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// The version every component runs, once a rollout has completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,

    /// The upgrade in progress, absent when every workload runs what the spec asks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<UpgradeStatus>,

    /// The `chat-server` image whose migration Job last succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrated_image: Option<String>,

    /// The public keys in the generated JWT key bundle, newest (the signing key) first. Empty
    /// when the key Secret is the user's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jwt_keys: Vec<JwtKeyStatus>,

    /// Replicas and version of each component.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<ComponentStatus>,

    /// Readiness of each managed dependency.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<DependencyStatus>,

    /// Where clients reach the stack, when an ingress is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// Observed state of one component's Deployment.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    /// Component name: gateway, auth, chat, group or message.
    pub name: String,
    /// Replicas wanted (by the spec or, when autoscaling, by the autoscaler).
    pub desired_replicas: i32,
    /// Replicas that pass their readiness probe.
    pub ready_replicas: i32,
    /// Replicas already running the requested version.
    pub updated_replicas: i32,
    /// Version the component's pod template asks for. During an upgrade, components not yet
    /// reached keep their old version.
    pub version: String,
    /// Image the component's pod template asks for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image: String,
}

/// Observed state of one managed dependency's StatefulSet.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DependencyStatus {
    /// Dependency name: mongodb, rabbitmq, kafka or redis.
    pub name: String,
    /// Whether every replica is ready.
    pub ready: bool,
    /// Image the dependency's pod template asks for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image: String,
}

/// An upgrade under way: dependencies first, then the migration Job, then the components in
/// the order message, group, auth, chat, gateway, each step waiting for the one before.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeStatus {
    /// The step in progress: `dependency/<name>`, `migration` or `component/<name>`.
    pub step: String,
    /// When the step started; it must finish within `spec.upgrade.stepTimeoutSeconds`.
    pub started_at: Time,
    /// The `chat-server` image being rolled out.
    pub image: String,
    /// Set when the sequence stopped; it resumes when the spec changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halted: Option<UpgradeHalt>,
}

/// Why an upgrade stopped.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeHalt {
    /// `StepTimedOut` or `MigrationFailed`.
    pub reason: String,
    /// What went wrong, for humans.
    pub message: String,
    /// The `metadata.generation` it stopped at; a newer generation resumes the sequence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
}

/// One public key of the generated JWT key bundle. Never the key itself.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JwtKeyStatus {
    /// Key id, as the services put it in a token's `kid` header.
    pub kid: String,
    /// When the key was generated; absent for keys older than rotation support.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Time>,
    /// When the key leaves the bundle; absent for the signing key. Set at rotation to the
    /// rotation time plus the access-token lifetime plus the upgrade step timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retire_after: Option<Time>,
}
