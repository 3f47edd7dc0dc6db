//! The migration Job: `chat-server migrate` of the image being rolled out, which creates the
//! MongoDB indexes (idempotently) before any component runs the new version.

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::component::{app_container, app_pod_spec, dependency_env};
use super::pod::merge_overrides;
use super::{hash, selector_labels, versioned_meta, APP_CONTAINER, VERSION_LABEL};
use crate::config::{default_component_resources, DependencyKind, ValidatedConfig};

/// The `app.kubernetes.io/component` of the Job and its pods; the MongoDB NetworkPolicy
/// admits it.
pub const MIGRATION_COMPONENT: &str = "migrate";
/// Retries of a failed migration pod before the Job fails.
const BACKOFF_LIMIT: i32 = 3;

/// The Job that migrates to `cfg.image`. It reads MongoDB exactly as the components do (the
/// same URI and password wiring and the shared ConfigMap), with `spec.migration.podOverrides`
/// merged into its pod. Its name ends in a hash of its spec: a Job's pod template cannot
/// change, so a different image or setting is a new Job, and the old one is pruned.
pub fn migration_job(cfg: &ValidatedConfig) -> Job {
    let container = app_container(
        cfg,
        &cfg.image,
        MIGRATION_COMPONENT,
        dependency_env(cfg, DependencyKind::MongoDb),
        default_component_resources(),
    );
    let mut pod_labels = selector_labels(cfg, MIGRATION_COMPONENT);
    pod_labels.insert(VERSION_LABEL.into(), cfg.version.clone());
    let mut spec = JobSpec {
        backoff_limit: Some(BACKOFF_LIMIT),
        // The same bound as the upgrade step, so a stuck Job stops retrying when the step
        // times out.
        active_deadline_seconds: Some(cfg.step_timeout_seconds),
        template: PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(pod_labels),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                restart_policy: Some("Never".into()),
                ..app_pod_spec(cfg, container, false)
            }),
        },
        ..Default::default()
    };
    merge_overrides(&mut spec.template, APP_CONTAINER, &cfg.migration_overrides);
    let digest = serde_json::to_string(&spec).expect("a JobSpec serialises to JSON");
    // `<name>-migrate-` plus 8 hex digits stays within the 63 characters of the Job's
    // `job-name` label for the longest ChatDeployment name.
    let name = format!("{}-migrate-{}", cfg.name, &hash(&[&digest])[..8]);
    Job {
        metadata: versioned_meta(cfg, name, MIGRATION_COMPONENT, &cfg.version),
        spec: Some(spec),
        ..Default::default()
    }
}
