//! Conditions and status: pure functions from what was observed to the `status` to write.
//!
//! A condition's `lastTransitionTime` only moves when its status changes, so an unchanged
//! world yields an identical status and the reconciler skips the write.

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;

use crate::build::url;
use crate::config::{Component, DependencyKind, ValidatedConfig};
use crate::crd::{ChatDeployment, ChatDeploymentStatus, ComponentStatus, DependencyStatus};

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";

/// A condition to set: type, status (`True`/`False`/`Unknown`), reason, message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionUpdate {
    pub type_: &'static str,
    pub status: &'static str,
    pub reason: &'static str,
    pub message: String,
}

impl ConditionUpdate {
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status: if status { "True" } else { "False" },
            reason,
            message: message.into(),
        }
    }
}

/// `old` with `updates` applied: conditions keep their transition time when their status
/// does not change; types not updated are kept as they were.
pub fn merge_conditions(
    old: &[Condition],
    updates: &[ConditionUpdate],
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> Vec<Condition> {
    let mut conditions: Vec<Condition> = old.to_vec();
    for update in updates {
        let previous = old.iter().find(|c| c.type_ == update.type_);
        let last_transition_time = match previous {
            Some(p) if p.status == update.status => p.last_transition_time.clone(),
            _ => Time(now),
        };
        let condition = Condition {
            type_: update.type_.into(),
            status: update.status.into(),
            reason: update.reason.into(),
            message: update.message.clone(),
            observed_generation: generation,
            last_transition_time,
        };
        match conditions.iter_mut().find(|c| c.type_ == update.type_) {
            Some(existing) => *existing = condition,
            None => conditions.push(condition),
        }
    }
    let order = |t: &str| [READY, PROGRESSING, DEGRADED].iter().position(|x| *x == t);
    conditions.sort_by_key(|c| order(&c.type_));
    conditions
}

fn base(cd: &ChatDeployment) -> ChatDeploymentStatus {
    let mut status = cd.status.clone().unwrap_or_default();
    status.observed_generation = cd.metadata.generation;
    status
}

fn with_conditions(
    cd: &ChatDeployment,
    mut status: ChatDeploymentStatus,
    updates: &[ConditionUpdate],
    now: DateTime<Utc>,
) -> ChatDeploymentStatus {
    let old = cd
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    status.conditions = merge_conditions(old, updates, cd.metadata.generation, now);
    status
}

/// While paused: everything else as last observed, `Progressing` false with reason `Paused`.
pub fn paused(cd: &ChatDeployment, now: DateTime<Utc>) -> ChatDeploymentStatus {
    with_conditions(
        cd,
        base(cd),
        &[ConditionUpdate::new(
            PROGRESSING,
            false,
            "Paused",
            "spec.paused is true: the operator writes nothing to the objects it manages",
        )],
        now,
    )
}

/// The spec cannot be turned into objects, or something it names is missing: `Degraded`
/// with `reason`; nothing is rolled out until it is fixed.
pub fn blocked(
    cd: &ChatDeployment,
    reason: &'static str,
    message: String,
    now: DateTime<Utc>,
) -> ChatDeploymentStatus {
    with_conditions(
        cd,
        base(cd),
        &[
            ConditionUpdate::new(PROGRESSING, false, reason, message.clone()),
            ConditionUpdate::new(DEGRADED, true, reason, message),
        ],
        now,
    )
}

/// What the API server returned for the workloads just applied.
#[derive(Clone, Debug, Default)]
pub struct Workloads {
    pub deployments: Vec<(Component, Deployment)>,
    pub stateful_sets: Vec<(DependencyKind, StatefulSet)>,
}

struct Rollout {
    complete: bool,
    stalled: bool,
    summary: String,
}

fn deployment_rollout(d: &Deployment) -> (ComponentStatus, Rollout) {
    let status = d.status.clone().unwrap_or_default();
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let ready = status.ready_replicas.unwrap_or(0);
    let updated = status.updated_replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    let total = status.replicas.unwrap_or(0);
    let observed = status.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0);
    let complete = observed && updated >= desired && available >= desired && total == updated;
    let stalled = status.conditions.iter().flatten().any(|c| {
        c.type_ == "Progressing"
            && c.status == "False"
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    let version = d
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.as_ref())
        .and_then(|l| l.get("app.kubernetes.io/version"))
        .cloned()
        .unwrap_or_default();
    let name = d.name_any();
    (
        ComponentStatus {
            name: String::new(),
            desired_replicas: desired,
            ready_replicas: ready,
            updated_replicas: updated,
            version,
        },
        Rollout {
            complete,
            stalled,
            summary: format!("{name} ({available}/{desired} available, {updated} updated)"),
        },
    )
}

fn stateful_set_ready(s: &StatefulSet) -> bool {
    let status = s.status.clone().unwrap_or_default();
    let desired = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    status.observed_generation.unwrap_or(0) >= s.metadata.generation.unwrap_or(0)
        && status.ready_replicas.unwrap_or(0) >= desired
        && status.updated_replicas.unwrap_or(0) >= desired
}

/// Status after a successful apply, from the workloads' own status.
pub fn rolled_out(
    cd: &ChatDeployment,
    cfg: &ValidatedConfig,
    workloads: &Workloads,
    now: DateTime<Utc>,
) -> ChatDeploymentStatus {
    let mut status = base(cd);
    let mut waiting = Vec::new();
    let mut stalled = Vec::new();
    status.components = workloads
        .deployments
        .iter()
        .map(|(component, deployment)| {
            let (mut component_status, rollout) = deployment_rollout(deployment);
            component_status.name = component.role().into();
            if rollout.stalled {
                stalled.push(rollout.summary);
            } else if !rollout.complete {
                waiting.push(rollout.summary);
            }
            component_status
        })
        .collect();
    status.dependencies = workloads
        .stateful_sets
        .iter()
        .map(|(kind, set)| {
            let ready = stateful_set_ready(set);
            if !ready {
                waiting.push(set.name_any());
            }
            DependencyStatus {
                name: kind.name().into(),
                ready,
            }
        })
        .collect();
    status.url = url(cfg.ingress.as_ref());

    let all_ready = waiting.is_empty() && stalled.is_empty();
    if all_ready {
        status.version = Some(cfg.version.clone());
    }
    let ready = if all_ready {
        ConditionUpdate::new(
            READY,
            true,
            "Available",
            format!("version {} is available", cfg.version),
        )
    } else {
        let mut not_ready = stalled.clone();
        not_ready.extend(waiting.iter().cloned());
        ConditionUpdate::new(
            READY,
            false,
            "NotAvailable",
            format!("waiting for {}", not_ready.join(", ")),
        )
    };
    let progressing = if !stalled.is_empty() {
        ConditionUpdate::new(
            PROGRESSING,
            false,
            "RolloutStalled",
            format!("rollout of version {} stalled", cfg.version),
        )
    } else if waiting.is_empty() {
        ConditionUpdate::new(
            PROGRESSING,
            false,
            "RolloutComplete",
            format!("version {} runs everywhere", cfg.version),
        )
    } else {
        ConditionUpdate::new(
            PROGRESSING,
            true,
            "RollingOut",
            format!(
                "rolling out version {}: {}",
                cfg.version,
                waiting.join(", ")
            ),
        )
    };
    let degraded = if stalled.is_empty() {
        ConditionUpdate::new(DEGRADED, false, "AsExpected", "no problem detected")
    } else {
        ConditionUpdate::new(
            DEGRADED,
            true,
            "RolloutStalled",
            format!("exceeded the progress deadline: {}", stalled.join(", ")),
        )
    };
    with_conditions(cd, status, &[ready, progressing, degraded], now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ChatDeploymentSpec;
    use chrono::TimeZone;

    fn at(second: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, second).unwrap()
    }

    #[test]
    fn unchanged_condition_keeps_its_transition_time() {
        let first = merge_conditions(
            &[],
            &[ConditionUpdate::new(READY, false, "NotAvailable", "a")],
            Some(1),
            at(0),
        );
        let second = merge_conditions(
            &first,
            &[ConditionUpdate::new(READY, false, "NotAvailable", "b")],
            Some(2),
            at(5),
        );
        assert_eq!(second[0].last_transition_time, Time(at(0)));
        assert_eq!(second[0].message, "b");
        let third = merge_conditions(
            &second,
            &[ConditionUpdate::new(READY, true, "Available", "c")],
            Some(2),
            at(9),
        );
        assert_eq!(third[0].last_transition_time, Time(at(9)));
    }

    #[test]
    fn paused_status_says_so_and_records_the_generation() {
        let mut cd = ChatDeployment::new("chat", ChatDeploymentSpec::default());
        cd.metadata.generation = Some(3);
        let status = paused(&cd, at(0));
        assert_eq!(status.observed_generation, Some(3));
        let progressing = &status.conditions[0];
        assert_eq!(
            (progressing.type_.as_str(), progressing.reason.as_str()),
            (PROGRESSING, "Paused")
        );
    }
}
