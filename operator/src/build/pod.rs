//! What every pod the operator builds shares, whichever workload runs it (a component's
//! Deployment, a dependency's StatefulSet, the migration Job): its security settings, the
//! registry credentials and the user's [`PodOverrides`], merged the same way everywhere.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, LocalObjectReference, PodSecurityContext, PodSpec, PodTemplateSpec, SeccompProfile,
};

use crate::config::ValidatedConfig;
use crate::crd::PodOverrides;

/// A pod of one `container` running as uid and gid `user`: non-root with the runtime's default
/// seccomp profile, `spec.imagePullSecrets`, no service-account token (nothing the operator
/// runs calls the Kubernetes API) and no Service environment variables (noise in every
/// program's config).
pub(super) fn locked_down_pod(cfg: &ValidatedConfig, container: Container, user: i64) -> PodSpec {
    PodSpec {
        containers: vec![container],
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(user),
            run_as_group: Some(user),
            fs_group: Some(user),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        image_pull_secrets: image_pull_secrets(cfg),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        ..Default::default()
    }
}

/// `spec.imagePullSecrets` as a pod's `imagePullSecrets`; absent when there are none.
fn image_pull_secrets(cfg: &ValidatedConfig) -> Option<Vec<LocalObjectReference>> {
    (!cfg.image_pull_secrets.is_empty()).then(|| {
        cfg.image_pull_secrets
            .iter()
            .map(|name| LocalObjectReference { name: name.clone() })
            .collect()
    })
}

/// Merge `overrides` into `template`, whose main container is named `container`.
///
/// What the operator set wins over the user's additions: a label or annotation it set keeps
/// its value, so the labels a selector matches (and the version label, the config hash) never
/// change. Node selector entries are added, tolerations and topology spread constraints
/// appended; the affinity and the priority class are the user's (the operator sets neither).
/// An env var replaces the main container's variable of the same name, or is appended. Empty
/// overrides leave the template exactly as it was, so a workload without them never rolls.
pub(super) fn merge_overrides(
    template: &mut PodTemplateSpec,
    container: &str,
    overrides: &PodOverrides,
) {
    let metadata = template.metadata.get_or_insert_with(Default::default);
    add_absent(&mut metadata.labels, &overrides.labels);
    add_absent(&mut metadata.annotations, &overrides.annotations);

    let pod = template.spec.get_or_insert_with(Default::default);
    add_absent(&mut pod.node_selector, &overrides.node_selector);
    append(&mut pod.tolerations, &overrides.tolerations);
    append(
        &mut pod.topology_spread_constraints,
        &overrides.topology_spread_constraints,
    );
    if let Some(affinity) = &overrides.affinity {
        pod.affinity = Some(affinity.clone());
    }
    if let Some(class) = &overrides.priority_class_name {
        pod.priority_class_name = Some(class.clone());
    }
    if overrides.env.is_empty() {
        return;
    }
    let main = pod
        .containers
        .iter_mut()
        .find(|c| c.name == container)
        .unwrap_or_else(|| panic!("the pod template has no container {container}"));
    let env = main.env.get_or_insert_with(Vec::new);
    for extra in &overrides.env {
        match env.iter_mut().find(|e| e.name == extra.name) {
            Some(existing) => *existing = extra.clone(),
            None => env.push(extra.clone()),
        }
    }
}

/// Add the entries of `extra` whose keys `map` does not have.
fn add_absent(map: &mut Option<BTreeMap<String, String>>, extra: &BTreeMap<String, String>) {
    if extra.is_empty() {
        return;
    }
    let map = map.get_or_insert_with(BTreeMap::new);
    for (key, value) in extra {
        map.entry(key.clone()).or_insert_with(|| value.clone());
    }
}

fn append<T: Clone>(list: &mut Option<Vec<T>>, extra: &[T]) {
    if !extra.is_empty() {
        list.get_or_insert_with(Vec::new).extend_from_slice(extra);
    }
}

#[cfg(test)]
mod tests;
