//! The operator against a real Kubernetes control plane (kube-apiserver, controller-manager and
//! scheduler 1.25 from `../shared/k8s/`): RBAC enforced as the chart's ServiceAccount, CRD
//! validation, server-side apply with its conflicts, the real Deployment, StatefulSet, Job and
//! garbage-collector controllers, and a simulated kubelet ([`nodes`]) in place of running Pods.
//!
//! Each test gets its own namespace with the chart installed in it ([`harness::Stack`]), so the
//! tests run in parallel. What needs running Pods (images, probes, traffic) stays in
//! `cluster_e2e` and `tests/tests/cluster_upgrade.rs`, which run on kind.

#[path = "../common/mod.rs"]
mod common;
mod harness;
mod nodes;
mod overrides;
mod scenarios;
mod status;
mod validation;
