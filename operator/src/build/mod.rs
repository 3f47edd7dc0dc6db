//! Build: the pure function from a [`ValidatedConfig`], the digests of the Secrets it reads
//! and the [`Versions`] each workload runs now (decided by [`crate::upgrade::plan`]) to every
//! object the operator applies, in apply order.
//!
//! Nothing here does I/O, so golden files pin the output exactly.

mod component;
mod dependency;
mod migration;
mod pod;
mod routing;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{ApiResource, ObjectMeta};
use sha2::{Digest, Sha256};

use crate::config::{DependencyMode, ValidatedConfig};
use crate::secrets::SecretDigests;
use crate::upgrade::Versions;

pub use dependency::{rabbitmq_app_permissions, rabbitmq_app_user_script, redis_app_rules};
pub use migration::migration_job;
pub use routing::{admitted_components, url};

/// Field manager of every server-side apply the operator sends.
pub const FIELD_MANAGER: &str = "chat-operator";
/// Pod-template annotation holding the hash of the config and secrets a pod reads.
pub const CONFIG_HASH_ANNOTATION: &str = "chat.scalablechat.dev/config-hash";
/// Port every `chat-server` role listens on (env `PORT`).
pub const HTTP_PORT: i32 = 8080;
/// Where every component serves its probes and `/metrics`: a port no client Service or Ingress
/// exposes (the services' `MANAGEMENT_PORT`).
pub const MANAGEMENT_PORT: i32 = 9090;
/// Name of the `chat-server` container in component pods and the migration Job.
pub const APP_CONTAINER: &str = "chat-server";
/// Label with the version a pod template runs.
pub const VERSION_LABEL: &str = "app.kubernetes.io/version";

const NAME_LABEL: &str = "app.kubernetes.io/name";
const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

/// One object the operator owns and applies.
#[derive(Clone, Debug, PartialEq)]
pub enum Resource {
    ConfigMap(ConfigMap),
    Service(Service),
    StatefulSet(StatefulSet),
    Deployment(Deployment),
    PodDisruptionBudget(PodDisruptionBudget),
    HorizontalPodAutoscaler(HorizontalPodAutoscaler),
    Ingress(Ingress),
    NetworkPolicy(NetworkPolicy),
    Job(Job),
}

impl Resource {
    fn metadata(&self) -> &ObjectMeta {
        match self {
            Self::ConfigMap(o) => &o.metadata,
            Self::Service(o) => &o.metadata,
            Self::StatefulSet(o) => &o.metadata,
            Self::Deployment(o) => &o.metadata,
            Self::PodDisruptionBudget(o) => &o.metadata,
            Self::HorizontalPodAutoscaler(o) => &o.metadata,
            Self::Ingress(o) => &o.metadata,
            Self::NetworkPolicy(o) => &o.metadata,
            Self::Job(o) => &o.metadata,
        }
    }

    /// The object's name.
    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or_default()
    }

    /// Group, version, kind and plural, for the dynamic API the reconciler applies through.
    pub fn api_resource(&self) -> ApiResource {
        match self {
            Self::ConfigMap(_) => ApiResource::erase::<ConfigMap>(&()),
            Self::Service(_) => ApiResource::erase::<Service>(&()),
            Self::StatefulSet(_) => ApiResource::erase::<StatefulSet>(&()),
            Self::Deployment(_) => ApiResource::erase::<Deployment>(&()),
            Self::PodDisruptionBudget(_) => ApiResource::erase::<PodDisruptionBudget>(&()),
            Self::HorizontalPodAutoscaler(_) => ApiResource::erase::<HorizontalPodAutoscaler>(&()),
            Self::Ingress(_) => ApiResource::erase::<Ingress>(&()),
            Self::NetworkPolicy(_) => ApiResource::erase::<NetworkPolicy>(&()),
            Self::Job(_) => ApiResource::erase::<Job>(&()),
        }
    }

    /// The object as JSON, with `apiVersion` and `kind`.
    pub fn to_json(&self) -> serde_json::Value {
        let value = match self {
            Self::ConfigMap(o) => serde_json::to_value(o),
            Self::Service(o) => serde_json::to_value(o),
            Self::StatefulSet(o) => serde_json::to_value(o),
            Self::Deployment(o) => serde_json::to_value(o),
            Self::PodDisruptionBudget(o) => serde_json::to_value(o),
            Self::HorizontalPodAutoscaler(o) => serde_json::to_value(o),
            Self::Ingress(o) => serde_json::to_value(o),
            Self::NetworkPolicy(o) => serde_json::to_value(o),
            Self::Job(o) => serde_json::to_value(o),
        };
        value.expect("Kubernetes objects serialise to JSON")
    }
}

/// Kinds that can stop being desired (a dependency turned external, autoscaling or ingress
/// removed, replicas dropped to one, a migration Job that succeeded); the reconciler deletes
/// the ones it owns but no longer builds. Deployments and the ConfigMap are never deleted.
pub fn prunable_kinds() -> Vec<ApiResource> {
    vec![
        ApiResource::erase::<Job>(&()),
        ApiResource::erase::<StatefulSet>(&()),
        ApiResource::erase::<Service>(&()),
        ApiResource::erase::<NetworkPolicy>(&()),
        ApiResource::erase::<PodDisruptionBudget>(&()),
        ApiResource::erase::<HorizontalPodAutoscaler>(&()),
        ApiResource::erase::<Ingress>(&()),
    ]
}

/// Every object for `cfg`, in apply order: shared config, then managed dependencies (with
/// their Services and NetworkPolicies), then the migration Job when `versions` asks for it,
/// then the components `versions` lists, in rollout order, then ingress. Each dependency and
/// component runs the image `versions` gives it.
pub fn build(cfg: &ValidatedConfig, secrets: &SecretDigests, versions: &Versions) -> Vec<Resource> {
    let config_map = component::config_map(cfg);
    let mut objects = Vec::new();
    for dependency in &cfg.dependencies {
        if let DependencyMode::Managed(managed) = &dependency.mode {
            let image = versions
                .dependencies
                .get(&dependency.kind)
                .unwrap_or(&managed.image);
            objects.extend(dependency::objects(
                cfg,
                dependency.kind,
                managed,
                image,
                secrets,
            ));
            objects.push(Resource::NetworkPolicy(routing::network_policy(
                cfg,
                dependency.kind,
            )));
        }
    }
    if versions.migration {
        objects.push(Resource::Job(migration_job(cfg)));
    }
    for component in &cfg.components {
        if let Some(release) = versions.components.get(&component.component) {
            objects.extend(component::objects(
                cfg,
                component,
                release,
                &config_map,
                secrets,
            ));
            objects.push(Resource::NetworkPolicy(routing::component_network_policy(
                cfg,
                component.component,
            )));
        }
    }
    if let Some(ingress) = &cfg.ingress {
        objects.extend(
            routing::ingresses(cfg, ingress)
                .into_iter()
                .map(Resource::Ingress),
        );
    }
    objects.insert(0, Resource::ConfigMap(config_map));
    objects
}

/// The labels every object of `cfg` carries; `component` names the part it belongs to.
pub fn labels(cfg: &ValidatedConfig, component: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(cfg, component);
    labels.insert(MANAGED_BY_LABEL.into(), FIELD_MANAGER.into());
    labels
}

/// The label selector the reconciler lists owned objects with.
pub fn owned_selector(name: &str) -> String {
    format!("{NAME_LABEL}=scalable-chat,{INSTANCE_LABEL}={name},{MANAGED_BY_LABEL}={FIELD_MANAGER}")
}

/// Whether `labels` match [`owned_selector`] of `name`.
pub fn has_owned_labels(labels: &BTreeMap<String, String>, name: &str) -> bool {
    let is = |key: &str, value: &str| labels.get(key).is_some_and(|v| v == value);
    is(NAME_LABEL, "scalable-chat")
        && is(INSTANCE_LABEL, name)
        && is(MANAGED_BY_LABEL, FIELD_MANAGER)
}

/// Every kind the operator creates with its labels (the Secrets aside), which it watches and
/// keeps in its cache (see `cache`).
pub fn owned_kinds() -> Vec<ApiResource> {
    let mut kinds = prunable_kinds();
    kinds.push(ApiResource::erase::<Deployment>(&()));
    kinds.push(ApiResource::erase::<ConfigMap>(&()));
    kinds
}

/// The label selector of the PersistentVolumeClaims of dependency `kind` of `name`.
pub fn dependency_data_selector(name: &str, kind: crate::config::DependencyKind) -> String {
    format!(
        "{NAME_LABEL}=scalable-chat,{INSTANCE_LABEL}={name},{COMPONENT_LABEL}={}",
        kind.name()
    )
}

/// The label selector of the PersistentVolumeClaims of `name`'s managed dependencies: a
/// StatefulSet copies its selector labels onto the claims it creates.
pub fn data_selector(name: &str) -> String {
    let kinds: Vec<&str> = crate::config::DependencyKind::ALL
        .into_iter()
        .map(|k| k.name())
        .collect();
    format!(
        "{NAME_LABEL}=scalable-chat,{INSTANCE_LABEL}={name},{COMPONENT_LABEL} in ({})",
        kinds.join(",")
    )
}

/// The immutable subset of [`labels`] that selects pods.
fn selector_labels(cfg: &ValidatedConfig, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME_LABEL.into(), "scalable-chat".into()),
        (INSTANCE_LABEL.into(), cfg.name.clone()),
        (COMPONENT_LABEL.into(), component.into()),
    ])
}

/// Metadata of an object named `name` belonging to `component`.
fn meta(cfg: &ValidatedConfig, name: String, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(cfg.namespace.clone()),
        labels: Some(labels(cfg, component)),
        owner_references: Some(vec![cfg.owner.clone()]),
        ..Default::default()
    }
}

/// [`meta`] with the version label: the version a workload runs.
fn versioned_meta(
    cfg: &ValidatedConfig,
    name: String,
    component: &str,
    version: &str,
) -> ObjectMeta {
    let mut metadata = meta(cfg, name, component);
    metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(VERSION_LABEL.into(), version.into());
    metadata
}

/// A short, stable hash of `parts`, for the pod-template annotation.
fn hash(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    let digest = hasher.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
