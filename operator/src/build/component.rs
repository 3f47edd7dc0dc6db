//! The five chat components: one Deployment of the `chat-server` image per role, with its
//! Service, and a PodDisruptionBudget and HorizontalPodAutoscaler when they apply.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapEnvSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvFromSource, EnvVar, EnvVarSource, ExecAction, HTTPGetAction, KeyToPath, Lifecycle,
    LifecycleHandler, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SecretKeySelector,
    SecretVolumeSource, SecurityContext, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::pod::{locked_down_pod, merge_overrides};
use super::{
    hash, meta, selector_labels, versioned_meta, Resource, APP_CONTAINER, CONFIG_HASH_ANNOTATION,
    HTTP_PORT, MANAGEMENT_PORT, VERSION_LABEL,
};
use crate::config::{
    Component, ComponentConfig, DependencyKind, DependencyMode, Scaling, ValidatedConfig,
    APP_USERNAME, DEFAULT_FACTS_RELAY, MONGODB_DATABASE,
};
use crate::secrets::SecretDigests;
use crate::upgrade::Release;

/// The uid and gid `chat-server` runs as.
const APP_USER: i64 = 10001;
/// Where the JWT key files are mounted.
const JWT_DIR: &str = "/etc/chat/jwt";
/// How long a stopping pod keeps serving before it gets SIGTERM: time for the endpoint
/// removal to reach kube-proxy and the ingress controller, so no new request or Socket.IO
/// connection is sent to a pod that is shutting down. An `exec` of the image's `sleep`
/// (coreutils in the Debian runtime image), not the `sleep` handler: that one exists only from
/// Kubernetes 1.30 on, and an older API server refuses the whole Deployment for it
/// (`field not declared in schema`). `exec` works on every version the chart supports.
const PRE_STOP_SLEEP_SECONDS: i64 = 5;

/// The largest attachment chunk a client may upload in one request (the services' default).
pub(super) const ASSET_MAX_CHUNK_BYTES: u64 = 5 * 1024 * 1024;

/// The settings every component shares.
pub(super) fn config_map(cfg: &ValidatedConfig) -> ConfigMap {
    let mut data = BTreeMap::from([
        ("LOG_FORMAT".to_string(), "json".to_string()),
        ("RUST_LOG".into(), cfg.rust_log.clone()),
        ("CHAT_NAMESPACE".into(), cfg.name.clone()),
        (
            "CORS_ALLOWED_ORIGINS".into(),
            cfg.cors_allowed_origins.join(","),
        ),
        (
            "ACCESS_TOKEN_TTL_SECONDS".into(),
            cfg.access_token_ttl_seconds.to_string(),
        ),
        (
            "REFRESH_TOKEN_TTL_SECONDS".into(),
            cfg.refresh_token_ttl_seconds.to_string(),
        ),
        ("PORT".into(), HTTP_PORT.to_string()),
        ("MANAGEMENT_PORT".into(), MANAGEMENT_PORT.to_string()),
        // Behind the ingress every client arrives from the controller's address; without this
        // the gateway's per-address login limit would be shared by all users.
        (
            "TRUST_FORWARDED_FOR".into(),
            cfg.ingress.is_some().to_string(),
        ),
        (
            "JWT_PUBLIC_KEY_FILE".into(),
            format!("{JWT_DIR}/public.pem"),
        ),
        // Set here, not left to the services' default, because the gateway's Ingress sizes
        // its body limit from it (`routing`).
        (
            "ASSET_MAX_CHUNK_BYTES".into(),
            ASSET_MAX_CHUNK_BYTES.to_string(),
        ),
    ]);
    // Only when it is not the services' default: a stack on Kafka keeps the ConfigMap (and so
    // the pods' config hash) it had before the relay existed.
    if cfg.facts_relay != DEFAULT_FACTS_RELAY {
        data.insert("FACTS_RELAY".into(), cfg.facts_relay.as_env().into());
    }
    ConfigMap {
        metadata: meta(cfg, config_map_name(cfg), "config"),
        data: Some(data),
        ..Default::default()
    }
}

pub(super) fn config_map_name(cfg: &ValidatedConfig) -> String {
    format!("{}-config", cfg.name)
}

/// Name of a component's Deployment, Service, PDB and HPA.
pub(super) fn component_name(cfg: &ValidatedConfig, component: Component) -> String {
    format!("{}-{}", cfg.name, component.role())
}

/// The Service, Deployment and, when they apply, PDB and HPA of one component running
/// `release`. While stopped there is neither PDB nor HPA: the Deployment has zero replicas.
pub(super) fn objects(
    cfg: &ValidatedConfig,
    component: &ComponentConfig,
    release: &Release,
    config_map: &ConfigMap,
    secrets: &SecretDigests,
) -> Vec<Resource> {
    let mut objects = vec![
        Resource::Service(service(cfg, component.component)),
        Resource::Deployment(deployment(cfg, component, release, config_map, secrets)),
    ];
    if cfg.stopped {
        return objects;
    }
    if component.scaling.min_replicas() > 1 {
        objects.push(Resource::PodDisruptionBudget(pdb(cfg, component.component)));
    }
    if let Scaling::Auto {
        min,
        max,
        target_cpu_percent,
    } = component.scaling
    {
        objects.push(Resource::HorizontalPodAutoscaler(hpa(
            cfg,
            component.component,
            min,
            max,
            target_cpu_percent,
        )));
    }
    objects
}

fn service(cfg: &ValidatedConfig, component: Component) -> Service {
    let role = component.role();
    Service {
        metadata: meta(cfg, component_name(cfg, component), role),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(cfg, role)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            // Socket.IO's polling transport needs every request of a session on one replica;
            // the Ingress pins with a cookie, this covers in-cluster clients.
            session_affinity: (component == Component::Chat).then(|| "ClientIP".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn deployment(
    cfg: &ValidatedConfig,
    component: &ComponentConfig,
    release: &Release,
    config_map: &ConfigMap,
    secrets: &SecretDigests,
) -> Deployment {
    let role = component.component.role();

    let mut pod_labels = selector_labels(cfg, role);
    pod_labels.insert(VERSION_LABEL.into(), release.version.clone());
    let pod_annotations = BTreeMap::from([
        ("prometheus.io/scrape".to_string(), "true".to_string()),
        ("prometheus.io/port".into(), MANAGEMENT_PORT.to_string()),
        ("prometheus.io/path".into(), "/metrics".into()),
        (
            CONFIG_HASH_ANNOTATION.into(),
            config_hash(cfg, component.component, config_map, secrets),
        ),
    ]);
    let mut template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(pod_labels),
            annotations: Some(pod_annotations),
            ..Default::default()
        }),
        spec: Some(pod_spec(cfg, component, release)),
    };
    merge_overrides(&mut template, APP_CONTAINER, &component.overrides);

    let metadata = versioned_meta(
        cfg,
        component_name(cfg, component.component),
        role,
        &release.version,
    );

    Deployment {
        metadata,
        spec: Some(DeploymentSpec {
            // With an HPA the field is left out entirely, so this field manager never owns it
            // and applies never fight the autoscaler. Stopped, there is no HPA and zero pods.
            replicas: match component.scaling {
                _ if cfg.stopped => Some(0),
                Scaling::Fixed(n) => Some(n),
                Scaling::Auto { .. } => None,
            },
            selector: LabelSelector {
                match_labels: Some(selector_labels(cfg, role)),
                ..Default::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::String("25%".into())),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            revision_history_limit: Some(5),
            template,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn pod_spec(cfg: &ValidatedConfig, component: &ComponentConfig, release: &Release) -> PodSpec {
    PodSpec {
        termination_grace_period_seconds: Some(component.component.termination_grace_seconds()),
        ..app_pod_spec(
            cfg,
            container(cfg, component, release),
            component.component.signs_tokens(),
        )
    }
}

/// The pod of a `chat-server` role: one container, `/tmp` and the JWT keys (the private key
/// only when it signs tokens), as [`APP_USER`].
pub(super) fn app_pod_spec(
    cfg: &ValidatedConfig,
    container: Container,
    signs_tokens: bool,
) -> PodSpec {
    let mut jwt_items = vec![key_to_path("public.pem")];
    if signs_tokens {
        jwt_items.insert(0, key_to_path("private.pem"));
    }
    PodSpec {
        volumes: Some(vec![
            Volume {
                name: "tmp".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Default::default()
            },
            Volume {
                name: "jwt".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(cfg.jwt_secret.clone()),
                    // Only auth gets the private key; the others can verify, never sign.
                    items: Some(jwt_items),
                    default_mode: Some(0o440),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ]),
        ..locked_down_pod(cfg, container, APP_USER)
    }
}

fn key_to_path(key: &str) -> KeyToPath {
    KeyToPath {
        key: key.into(),
        path: key.into(),
        ..Default::default()
    }
}

fn container(cfg: &ValidatedConfig, component: &ComponentConfig, release: &Release) -> Container {
    let http_probe = |path: &str, period: i32, failures: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("management".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(failures),
        ..Default::default()
    };
    Container {
        ports: Some(vec![
            ContainerPort {
                name: Some("http".into()),
                container_port: HTTP_PORT,
                protocol: Some("TCP".into()),
                ..Default::default()
            },
            ContainerPort {
                name: Some("management".into()),
                container_port: MANAGEMENT_PORT,
                protocol: Some("TCP".into()),
                ..Default::default()
            },
        ]),
        // Up to a minute to start (index creation on first boot), then the usual checks.
        startup_probe: Some(http_probe("/livez", 2, 30)),
        liveness_probe: Some(http_probe("/livez", 10, 3)),
        readiness_probe: Some(http_probe("/readyz", 5, 3)),
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                exec: Some(ExecAction {
                    command: Some(vec!["sleep".into(), PRE_STOP_SLEEP_SECONDS.to_string()]),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..app_container(
            cfg,
            &release.image,
            component.component.role(),
            env(cfg, component),
            component.resources.clone(),
        )
    }
}

/// The `chat-server` container running `role` from `image`: the shared ConfigMap, `env`,
/// a read-only root file system without capabilities, `/tmp` and the JWT keys mounted.
pub(super) fn app_container(
    cfg: &ValidatedConfig,
    image: &str,
    role: &str,
    env: Vec<EnvVar>,
    resources: ResourceRequirements,
) -> Container {
    Container {
        name: APP_CONTAINER.into(),
        image: Some(image.into()),
        image_pull_policy: Some(cfg.image_pull_policy.clone()),
        args: Some(vec![role.into()]),
        env_from: Some(vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource {
                name: config_map_name(cfg),
                optional: Some(false),
            }),
            ..Default::default()
        }]),
        env: Some(env),
        resources: Some(resources),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "tmp".into(),
                mount_path: "/tmp".into(),
                ..Default::default()
            },
            VolumeMount {
                name: "jwt".into(),
                mount_path: JWT_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            },
        ]),
        ..Default::default()
    }
}

/// The component's own environment: connection URIs of the dependencies it uses and the
/// private key path for auth. The user's overrides are merged in with the other pod overrides.
fn env(cfg: &ValidatedConfig, component: &ComponentConfig) -> Vec<EnvVar> {
    let mut env = Vec::new();
    for kind in component.component.uses(cfg.facts_relay) {
        env.extend(dependency_env(cfg, kind));
    }
    if component.component.signs_tokens() {
        env.push(value(
            "JWT_PRIVATE_KEY_FILE",
            format!("{JWT_DIR}/private.pem"),
        ));
    }
    env
}

/// How a component reaches `kind`. A managed dependency is reached as [`APP_USERNAME`], the
/// user with only the rights the services need, never as its administrator; the password
/// comes from its Secret and Kubernetes expands `$(VAR)` into the URI, so no credential is
/// written into the pod template. An external dependency's whole URI comes from the user's
/// Secret.
pub(super) fn dependency_env(cfg: &ValidatedConfig, kind: DependencyKind) -> Vec<EnvVar> {
    let dependency = cfg.dependency(kind);
    let managed = match &dependency.mode {
        DependencyMode::External { uri } => {
            return vec![from_secret(kind.uri_env(), &uri.secret, &uri.key)];
        }
        DependencyMode::Managed(managed) => managed,
    };
    let host = format!("{}-{}", cfg.name, kind.name());
    let port = kind.port();
    let password_env = match kind {
        DependencyKind::MongoDb => "MONGODB_PASSWORD",
        DependencyKind::RabbitMq => "RABBITMQ_PASSWORD",
        DependencyKind::Redis => "REDIS_PASSWORD",
        DependencyKind::Kafka => return vec![value(kind.uri_env(), format!("{host}:{port}"))],
    };
    let user = APP_USERNAME;
    let uri = match kind {
        DependencyKind::MongoDb => format!(
            "mongodb://{user}:$({password_env})@{host}:{port}/{MONGODB_DATABASE}?authSource=admin"
        ),
        DependencyKind::RabbitMq => {
            format!("amqp://{user}:$({password_env})@{host}:{port}/%2f")
        }
        _ => format!("redis://{user}:$({password_env})@{host}:{port}"),
    };
    let app = managed
        .app_credential
        .as_ref()
        .expect("MongoDB, RabbitMQ and Redis have an application user");
    vec![
        from_secret(password_env, &app.secret, &app.key),
        value(kind.uri_env(), uri),
    ]
}

pub(super) fn value(name: &str, value: String) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value),
        ..Default::default()
    }
}

pub(super) fn from_secret(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Hash of everything a component reads that is not in its pod template: the shared
/// ConfigMap and the Secret keys it uses. A change restarts exactly the pods that read it.
fn config_hash(
    cfg: &ValidatedConfig,
    component: Component,
    config_map: &ConfigMap,
    secrets: &SecretDigests,
) -> String {
    let config =
        serde_json::to_string(&config_map.data).expect("a ConfigMap's data serialises to JSON");
    let mut parts = vec![config];
    let mut read = vec![(cfg.jwt_secret.clone(), "public.pem".to_string())];
    if component.signs_tokens() {
        read.push((cfg.jwt_secret.clone(), "private.pem".into()));
    }
    for kind in component.uses(cfg.facts_relay) {
        match &cfg.dependency(kind).mode {
            DependencyMode::Managed(m) => {
                if let Some(app) = &m.app_credential {
                    read.push((app.secret.clone(), app.key.clone()));
                }
            }
            DependencyMode::External { uri } => read.push((uri.secret.clone(), uri.key.clone())),
        }
    }
    for (secret, key) in read {
        let digest = secrets.get(&secret, &key).unwrap_or("absent");
        parts.push(format!("{secret}/{key}={digest}"));
    }
    hash(&parts.iter().map(String::as_str).collect::<Vec<_>>())
}

fn pdb(cfg: &ValidatedConfig, component: Component) -> PodDisruptionBudget {
    let role = component.role();
    PodDisruptionBudget {
        metadata: meta(cfg, component_name(cfg, component), role),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(cfg, role)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn hpa(
    cfg: &ValidatedConfig,
    component: Component,
    min: i32,
    max: i32,
    target_cpu_percent: i32,
) -> HorizontalPodAutoscaler {
    let role = component.role();
    HorizontalPodAutoscaler {
        metadata: meta(cfg, component_name(cfg, component), role),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: component_name(cfg, component),
            },
            min_replicas: Some(min),
            max_replicas: max,
            metrics: Some(vec![MetricSpec {
                type_: "Resource".into(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".into(),
                    target: MetricTarget {
                        type_: "Utilization".into(),
                        average_utilization: Some(target_cpu_percent),
                        ..Default::default()
                    },
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}
