//! Changes to a managed dependency's storage. A StatefulSet's `volumeClaimTemplates` cannot be
//! changed in place, so a new `storage.size` would make its apply fail for ever. Instead, as
//! the RabbitMQ cluster-operator does: grow each existing claim in place (the StorageClass
//! must allow volume expansion), then delete the StatefulSet *orphaning* its pods, and the next
//! apply creates it again with the new template, adopting the running pods. What cannot be
//! done — shrinking a volume, moving it to another class — is refused and reported, and that
//! one StatefulSet is left as it is while everything else is still applied. A class change is
//! refused by the CRD itself first (a transition rule on `storage`); the check here is for an
//! API server that did not evaluate it. A shrink only the operator can see: Kubernetes 1.25's
//! CEL cannot compare quantities.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PropagationPolicy};
use kube::{Client, ResourceExt};
use serde_json::json;
use tracing::info;

use crate::build::{dependency_data_selector, Resource};
use crate::upgrade::Observed;

/// What the storage step did or could not do.
#[derive(Debug, Default)]
pub struct StorageOutcome {
    /// StatefulSets not to apply in this reconcile (a refused change, or claims still growing).
    pub hold: BTreeSet<String>,
    /// Changes that cannot be made, for the `Degraded` condition.
    pub refused: Vec<String>,
    /// Claims grown in this reconcile, for an event.
    pub expanded: Vec<String>,
}

/// The size and class of a claim template or claim.
fn size_and_class(
    spec: Option<&k8s_openapi::api::core::v1::PersistentVolumeClaimSpec>,
) -> (Option<String>, Option<String>) {
    let size = spec
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| q.0.clone());
    (size, spec.and_then(|s| s.storage_class_name.clone()))
}

fn template(set: &StatefulSet) -> (Option<String>, Option<String>) {
    let claim = set
        .spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_ref())
        .and_then(|t| t.first());
    size_and_class(claim.and_then(|c| c.spec.as_ref()))
}

/// What a change of a claim template's size and class amounts to.
#[derive(Debug, PartialEq)]
enum Change {
    /// Nothing to do (the same, or a size that cannot be read: the apply will say).
    None,
    /// It cannot be done; why, for the `Degraded` condition.
    Refused(String),
    /// The claims grow to `to` (`bytes`).
    Grow { to: String, bytes: f64 },
}

/// Judge a change of `kind`'s claim template from `have` to `want` (size, class). A class
/// change — setting one where none was set, or removing it, included — is refused, as the CRD's
/// transition rule does (this is for an API server that did not evaluate it); so is a
/// smaller size. Quantities are compared by value: `1Gi` to `1024Mi` is no change.
fn judge(
    kind: &str,
    want: (Option<String>, Option<String>),
    have: (Option<String>, Option<String>),
) -> Change {
    let ((want_size, want_class), (have_size, have_class)) = (want, have);
    if want_class != have_class {
        return Change::Refused(format!(
            "{kind}: storageClassName cannot change from {} to {} (the data stays on its volumes; \
             move it with a backup and restore)",
            have_class.as_deref().unwrap_or("the default class"),
            want_class.as_deref().unwrap_or("the default class"),
        ));
    }
    let (Some(want), Some(have)) = (want_size, have_size) else {
        return Change::None;
    };
    let (Some(want_bytes), Some(have_bytes)) = (quantity_bytes(&want), quantity_bytes(&have))
    else {
        return Change::None;
    };
    if want_bytes < have_bytes {
        return Change::Refused(format!(
            "{kind}: storage cannot shrink from {have} to {want}"
        ));
    }
    if want_bytes == have_bytes {
        return Change::None; // the same size written differently
    }
    Change::Grow {
        to: want,
        bytes: want_bytes,
    }
}

/// Compare each desired StatefulSet's claim template with the live one and act on a change.
pub async fn reconcile_storage(
    client: &Client,
    namespace: &str,
    instance: &str,
    observed: &Observed,
    objects: &[Resource],
) -> Result<StorageOutcome, kube::Error> {
    let mut outcome = StorageOutcome::default();
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    for object in objects {
        let Resource::StatefulSet(desired) = object else {
            continue;
        };
        let Some((kind, live)) = observed
            .stateful_sets
            .iter()
            .find(|(_, s)| s.name_any() == desired.name_any())
        else {
            continue;
        };
        let (want, have) = (template(desired), template(live));
        if want == have {
            continue;
        }
        let name = live.name_any();
        if live.metadata.deletion_timestamp.is_some() {
            // Deleted to be created again: wait until the garbage collector has orphaned its
            // pods and it is gone.
            outcome.hold.insert(name);
            continue;
        }
        let (want, want_bytes) = match judge(kind.name(), want, have) {
            Change::None => continue,
            Change::Refused(reason) => {
                outcome.refused.push(reason);
                outcome.hold.insert(name);
                continue;
            }
            Change::Grow { to, bytes } => (to, bytes),
        };
        // Grow every claim of this StatefulSet, then let the StatefulSet be created again.
        let selector = ListParams::default().labels(&dependency_data_selector(instance, *kind));
        for claim in claims.list(&selector).await? {
            let (size, _) = size_and_class(claim.spec.as_ref());
            if size
                .as_deref()
                .and_then(quantity_bytes)
                .is_some_and(|s| s >= want_bytes)
            {
                continue;
            }
            let patch = json!({"spec": {"resources": {"requests": {"storage": want}}}});
            match claims
                .patch(
                    &claim.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(patch),
                )
                .await
            {
                Ok(_) => outcome
                    .expanded
                    .push(format!("{} to {want}", claim.name_any())),
                Err(kube::Error::Api(e)) if matches!(e.code, 403 | 422) => {
                    outcome.refused.push(format!(
                        "{}: PersistentVolumeClaim {} cannot grow to {want}: {}",
                        kind.name(),
                        claim.name_any(),
                        e.message
                    ));
                    outcome.hold.insert(name.clone());
                }
                Err(e) => return Err(e),
            }
        }
        if !outcome.hold.contains(&name) {
            // The pods keep running; the apply that follows creates the StatefulSet again
            // with the new template, and it adopts them.
            let orphan = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Orphan),
                ..DeleteParams::default()
            };
            sets.delete(&name, &orphan).await?;
            info!(statefulset = %name, size = %want, "claims grown; StatefulSet recreated with its pods orphaned");
            outcome.hold.insert(name);
        }
    }
    Ok(outcome)
}

/// A Kubernetes quantity in bytes (or units): `10Gi`, `500M`, `1e9`, `0.5Ki`.
pub fn quantity_bytes(quantity: &str) -> Option<f64> {
    let q = quantity.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        exponent if exponent.starts_with(['e', 'E']) => 10f64.powf(exponent[1..].parse().ok()?),
        _ => return None,
    };
    Some(number * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage(size: &str, class: Option<&str>) -> (Option<String>, Option<String>) {
        (Some(size.into()), class.map(Into::into))
    }

    /// Defence in depth behind the CRD's transition rule: every class change is refused,
    /// setting a class where none was and removing one included.
    #[test]
    fn a_class_change_is_refused_whichever_way() {
        for (want, have, says) in [
            (Some("b"), Some("a"), "from a to b"),
            (Some("fast"), None, "from the default class to fast"),
            (None, Some("fast"), "from fast to the default class"),
        ] {
            let change = judge("mongodb", storage("1Gi", want), storage("1Gi", have));
            let Change::Refused(reason) = change else {
                panic!("{want:?} after {have:?}: {change:?}");
            };
            assert!(
                reason.starts_with("mongodb: storageClassName cannot change")
                    && reason.contains(says),
                "{reason}"
            );
        }
        // A class change is refused even when the size grows too.
        assert!(matches!(
            judge(
                "redis",
                storage("2Gi", Some("b")),
                storage("1Gi", Some("a"))
            ),
            Change::Refused(_)
        ));
    }

    #[test]
    fn a_size_grows_but_never_shrinks() {
        assert_eq!(
            judge(
                "kafka",
                storage("20Gi", Some("a")),
                storage("10Gi", Some("a"))
            ),
            Change::Grow {
                to: "20Gi".into(),
                bytes: 20.0 * 1024f64.powi(3)
            }
        );
        assert_eq!(
            judge("kafka", storage("1024Mi", None), storage("1Gi", None)),
            Change::None
        );
        assert_eq!(
            judge("kafka", storage("1Gi", None), storage("2Gi", None)),
            Change::Refused("kafka: storage cannot shrink from 2Gi to 1Gi".into())
        );
    }

    #[test]
    fn quantities_compare_across_notations() {
        assert_eq!(quantity_bytes("1Gi"), Some(1024f64.powi(3)));
        assert_eq!(quantity_bytes("1G"), Some(1e9));
        assert_eq!(quantity_bytes("1e9"), Some(1e9));
        assert_eq!(quantity_bytes("1024Mi"), quantity_bytes("1Gi"));
        assert_eq!(quantity_bytes("0.5Gi"), quantity_bytes("512Mi"));
        assert!(quantity_bytes("2Gi") > quantity_bytes("2G"));
        assert_eq!(quantity_bytes("lots"), None);
    }
}
