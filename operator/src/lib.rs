//! chat-operator: turns a `ChatDeployment` into a running scalable-chat stack.
//!
//! Reconcile is a pipeline (Stackable's shape): [`config::validate`] (pure: defaults and
//! checks) → dereference the Secrets the spec names → create missing generated
//! [`secrets`] (and rotate the JWT key when asked) → observe the workloads →
//! [`upgrade::plan`] (pure: which version each workload runs now) → [`build::build`] (pure:
//! the desired objects) → server-side apply in order → prune what is no longer desired →
//! conditions and status ([`status`]).

pub mod build;
pub mod cache;
pub mod config;
pub mod controller;
pub mod crd;
pub mod drift;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod rbac;
pub mod secrets;
pub mod status;
pub mod storage;
pub mod upgrade;

/// The CRD as YAML, exactly what `chat-operator crd` prints and `crds/` holds.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    serde_yaml::to_string(&crd::ChatDeployment::crd()).expect("the CRD serialises to YAML")
}
