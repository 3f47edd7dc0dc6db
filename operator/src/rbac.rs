//! The Kubernetes permissions the operator needs: every API call it makes, as (API group,
//! resource, verbs), with the call that needs it.
//!
//! The Helm chart grants exactly these and nothing more (`charts/chat-operator/templates/
//! _helpers.tpl`). `tests/chart.rs` fails when the chart's rules and this list differ, when
//! they hold a wildcard, or when the build step produces a kind this list cannot create,
//! patch or prune — so a new API call needs an entry here and a rule there.

/// Where a permission is needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// In the namespaces the operator watches: a ClusterRole, or a Role in `WATCH_NAMESPACE`.
    Watched,
    /// In the operator's own namespace only (its leader-election Lease).
    OwnNamespace,
}

/// Verbs on one resource and why they are needed.
#[derive(Clone, Copy, Debug)]
pub struct Permission {
    /// API group; `""` is the core group.
    pub group: &'static str,
    /// Plural resource name, with `/subresource` where one is meant.
    pub resource: &'static str,
    pub verbs: &'static [&'static str],
    pub scope: Scope,
    /// The calls that need it.
    pub why: &'static str,
}

const fn watched(
    group: &'static str,
    resource: &'static str,
    verbs: &'static [&'static str],
    why: &'static str,
) -> Permission {
    Permission {
        group,
        resource,
        verbs,
        scope: Scope::Watched,
        why,
    }
}

/// Watched (a deleted or edited object is put back at once), listed by the owned labels to
/// compare with what is wanted (`drift`); server-side apply creates an absent object (the API
/// server checks `create`) and patches an existing one.
/// An object of the stack's name that is not among the listed ones is read (`get`) before the
/// first apply, so one the ChatDeployment does not own is never taken over.
const APPLY: [&str; 5] = ["get", "list", "watch", "create", "patch"];
/// Applied, and deleted by the prune step when no longer desired (found by a labelled list).
const APPLY_AND_PRUNE: [&str; 6] = ["get", "create", "patch", "list", "watch", "delete"];

/// Everything the operator calls.
pub const PERMISSIONS: &[Permission] = &[
    watched(
        "chat.scalablechat.dev",
        "chatdeployments",
        &["list", "watch", "patch"],
        "the controller's watch (main.rs); sync_finalizer adds and removes the finalizer of \
         deletionPolicy Delete with a merge patch",
    ),
    watched(
        "chat.scalablechat.dev",
        "chatdeployments/status",
        &["patch"],
        "write_status: server-side apply of the status",
    ),
    watched(
        "chat.scalablechat.dev",
        "chatdeployments/finalizers",
        &["update"],
        "owner references with blockOwnerDeletion, where the OwnerReferencesPermissionEnforcement \
         admission plugin runs",
    ),
    watched(
        "",
        "secrets",
        &["get", "list", "watch", "create", "update", "delete"],
        "dereference reads referenced and generated Secrets; the controller watches the \
         generated ones (by label) so a deleted password is noticed at once; create_missing_secrets creates \
         absent generated ones; maintain_jwt_key replaces the generated JWT key Secret when a \
         rotation is asked for or an old key retires (the only update); delete_data deletes \
         the generated dependency passwords under deletionPolicy Delete",
    ),
    watched(
        "",
        "persistentvolumeclaims",
        &["list", "patch", "delete"],
        "storage: a dependency's claims grown in place when its storage.size grows; \
         lost_passwords: whether a dependency has data; delete_data: the dependencies' claims \
         under deletionPolicy Delete",
    ),
    watched(
        "",
        "configmaps",
        &APPLY,
        "apply_all (listed to compare, then applied); the ConfigMap is always desired",
    ),
    watched("", "services", &APPLY_AND_PRUNE, "apply_all and prune"),
    watched(
        "apps",
        "deployments",
        &["get", "create", "patch", "list", "watch"],
        "apply_all; observe lists them before planning an upgrade; the controller watches them",
    ),
    watched(
        "apps",
        "statefulsets",
        &["get", "create", "patch", "list", "watch", "delete"],
        "apply_all, observe and prune; delete_data; the controller watches them",
    ),
    watched(
        "batch",
        "jobs",
        &["get", "create", "patch", "list", "watch", "delete"],
        "the migration Job: apply_all, observe reads it by name, prune once it succeeded, delete to retry after \
         a failure; the controller watches them",
    ),
    watched(
        "policy",
        "poddisruptionbudgets",
        &APPLY_AND_PRUNE,
        "apply_all and prune",
    ),
    watched(
        "autoscaling",
        "horizontalpodautoscalers",
        &APPLY_AND_PRUNE,
        "apply_all and prune",
    ),
    watched(
        "networking.k8s.io",
        "ingresses",
        &APPLY_AND_PRUNE,
        "apply_all and prune",
    ),
    watched(
        "networking.k8s.io",
        "networkpolicies",
        &APPLY_AND_PRUNE,
        "apply_all and prune",
    ),
    watched(
        "events.k8s.io",
        "events",
        &["create", "patch"],
        "the event Recorder: a new event is created, a repeated one patched as a series",
    ),
    Permission {
        group: "coordination.k8s.io",
        resource: "leases",
        verbs: &["get", "create", "update"],
        scope: Scope::OwnNamespace,
        why: "leader election (leader.rs): get, create when absent, replace with the \
              resourceVersion read to take over, renew and release (compare-and-swap)",
    },
];

/// One verb on one resource: (scope, API group, resource, verb).
pub type Grant = (Scope, String, String, String);

/// Every grant in [`PERMISSIONS`].
pub fn grants() -> std::collections::BTreeSet<Grant> {
    PERMISSIONS
        .iter()
        .flat_map(|p| {
            p.verbs
                .iter()
                .map(|v| (p.scope, p.group.into(), p.resource.into(), (*v).into()))
        })
        .collect()
}
