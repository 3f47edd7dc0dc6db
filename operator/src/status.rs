//! Conditions and status: pure functions from what was observed to the `status` to write.
//!
//! A condition's `lastTransitionTime` only moves when its status changes, so an unchanged
//! world yields an identical status and the reconciler skips the write.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;

use crate::build::url;
use crate::config::{Component, DependencyKind, ValidatedConfig};
use crate::crd::{
    ChatDeployment, ChatDeploymentStatus, ComponentStatus, DependencyStatus, JwtKeyStatus,
};
use crate::upgrade::{
    deployment_complete, deployment_release, stateful_set_image, stateful_set_rolled, Plan, State,
};

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
/// Present only while `spec.paused` is true.
pub const RECONCILIATION_PAUSED: &str = "ReconciliationPaused";

/// A condition to set: type, status (`True`/`False`/`Unknown`), reason, message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionUpdate {
    pub type_: &'static str,
    pub status: &'static str,
    pub reason: String,
    pub message: String,
}

impl ConditionUpdate {
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status: if status { "True" } else { "False" },
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// `old` with `updates` applied: conditions keep their transition time when their status
/// does not change; types not updated (another tool's too) are kept as they were, after the
/// operator's own. One entry per type: of two of one type in `old` the first is kept. The
/// status subresource of Kubernetes 1.25 does not refuse two (only the spec's map-lists are
/// checked), and until they are gone no server-side apply of the object succeeds (a 500
/// "duplicate entries for key"), so the operator's next status write removes them.
pub fn merge_conditions(
    old: &[Condition],
    updates: &[ConditionUpdate],
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> Vec<Condition> {
    let mut conditions: Vec<Condition> = Vec::with_capacity(old.len() + updates.len());
    for condition in old {
        if conditions.iter().all(|c| c.type_ != condition.type_) {
            conditions.push(condition.clone());
        }
    }
    for update in updates {
        let previous = old.iter().find(|c| c.type_ == update.type_);
        let last_transition_time = match previous {
            Some(p) if p.status == update.status => p.last_transition_time.clone(),
            _ => Time(now),
        };
        let condition = Condition {
            type_: update.type_.into(),
            status: update.status.into(),
            reason: update.reason.clone(),
            message: update.message.clone(),
            observed_generation: generation,
            last_transition_time,
        };
        match conditions.iter_mut().find(|c| c.type_ == update.type_) {
            Some(existing) => *existing = condition,
            None => conditions.push(condition),
        }
    }
    let order = |t: &str| {
        [READY, PROGRESSING, DEGRADED, RECONCILIATION_PAUSED]
            .iter()
            .position(|x| *x == t)
            .unwrap_or(usize::MAX)
    };
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
    let mut old: Vec<Condition> = cd
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    // `ReconciliationPaused` is there only while paused.
    if updates.iter().all(|u| u.type_ != RECONCILIATION_PAUSED) {
        old.retain(|c| c.type_ != RECONCILIATION_PAUSED);
    }
    status.conditions = merge_conditions(&old, updates, cd.metadata.generation, now);
    status
}

/// While paused: everything as last observed, `observedGeneration` included (the operator has
/// not acted on the generations since), and `ReconciliationPaused` true.
pub fn paused(cd: &ChatDeployment, now: DateTime<Utc>) -> ChatDeploymentStatus {
    with_conditions(
        cd,
        cd.status.clone().unwrap_or_default(),
        &[ConditionUpdate::new(
            RECONCILIATION_PAUSED,
            true,
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

/// `status` with `Degraded=True` for `reason`, the rest of it kept: a problem that stops one
/// part (a refused storage change) while everything else was applied and is reported as usual.
pub fn also_degraded(
    cd: &ChatDeployment,
    status: ChatDeploymentStatus,
    reason: &'static str,
    message: String,
    now: DateTime<Utc>,
) -> ChatDeploymentStatus {
    with_conditions(
        cd,
        status,
        &[ConditionUpdate::new(DEGRADED, true, reason, message)],
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
    /// At least one replica serves. A component at zero replicas (asked for, or an
    /// autoscaled one just started again) serves nothing, so it is not available.
    available: bool,
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
    let stalled = status.conditions.iter().flatten().any(|c| {
        c.type_ == "Progressing"
            && c.status == "False"
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    let release = deployment_release(d);
    let name = d.name_any();
    (
        ComponentStatus {
            name: String::new(),
            desired_replicas: desired,
            ready_replicas: ready,
            updated_replicas: updated,
            version: release
                .as_ref()
                .map(|r| r.version.clone())
                .unwrap_or_default(),
            image: release.map(|r| r.image).unwrap_or_default(),
        },
        Rollout {
            available: available > 0,
            complete: deployment_complete(d),
            stalled,
            summary: format!("{name} ({available}/{desired} available, {updated} updated)"),
        },
    )
}

/// Status after a successful apply, from the workloads' own status, where the upgrade `plan`
/// stands, and the JWT keys in use.
pub fn rolled_out(
    cd: &ChatDeployment,
    cfg: &ValidatedConfig,
    workloads: &Workloads,
    plan: &Plan,
    jwt_keys: Vec<JwtKeyStatus>,
    now: DateTime<Utc>,
) -> ChatDeploymentStatus {
    let mut status = base(cd);
    let mut waiting = Vec::new();
    let mut stalled = Vec::new();
    let mut unavailable = Vec::new();
    status.components = workloads
        .deployments
        .iter()
        .map(|(component, deployment)| {
            let (mut component_status, rollout) = deployment_rollout(deployment);
            component_status.name = component.role().into();
            if !rollout.available {
                unavailable.push(component.role().to_string());
            }
            if rollout.stalled {
                stalled.push(rollout.summary);
            } else if !rollout.complete {
                waiting.push(rollout.summary);
            }
            component_status
        })
        .collect();
    if status.components.len() < cfg.components.len() {
        waiting.push("the components, created once the migration has succeeded".into());
        unavailable.push("the components not created yet".into());
    }
    status.dependencies = workloads
        .stateful_sets
        .iter()
        .map(|(kind, set)| {
            let ready = stateful_set_rolled(set);
            if !ready {
                waiting.push(set.name_any());
            }
            let wanted = set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let serving = set.status.as_ref().and_then(|s| s.ready_replicas);
            if wanted > 0 && serving.unwrap_or(0) == 0 {
                unavailable.push(kind.name().to_string());
            }
            DependencyStatus {
                name: kind.name().into(),
                ready,
                image: stateful_set_image(set).unwrap_or_default(),
            }
        })
        .collect();
    status.url = url(cfg.ingress.as_ref());
    status.upgrade = plan.upgrade.clone();
    status.migrated_image = plan.migrated_image.clone();
    status.jwt_keys = jwt_keys;

    let all_ready = waiting.is_empty() && stalled.is_empty();
    let running: BTreeSet<&str> = status
        .components
        .iter()
        .map(|c| c.version.as_str())
        .collect();
    if all_ready && running.len() == 1 {
        status.version = running.first().map(|v| v.to_string());
    }
    // Ready is availability, like a Deployment's `Available`: a rollout or an autoscaler's
    // scale-up adds pods without taking the service away, so it leaves Ready alone.
    let ready = if plan.state == State::Stopped {
        ConditionUpdate::new(
            READY,
            false,
            "Stopped",
            "spec.stopped is true: every component and dependency is scaled to zero",
        )
    } else if unavailable.is_empty() {
        let message = match &status.version {
            Some(version) => format!("version {version} is available"),
            None => format!(
                "available while version {} rolls out: {}",
                cfg.version,
                stalled
                    .iter()
                    .chain(&waiting)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        ConditionUpdate::new(READY, true, "Available", message)
    } else {
        ConditionUpdate::new(
            READY,
            false,
            "NotAvailable",
            format!("nothing serves yet in: {}", unavailable.join(", ")),
        )
    };
    let (progressing, degraded) = match &plan.state {
        State::Stopped => (
            ConditionUpdate::new(
                PROGRESSING,
                false,
                "Stopped",
                "spec.stopped is true: nothing rolls until it is false",
            ),
            None,
        ),
        State::Refused(message) => (
            ConditionUpdate::new(PROGRESSING, false, "VersionSkipRefused", message.clone()),
            Some(ConditionUpdate::new(
                DEGRADED,
                true,
                "VersionSkipRefused",
                message.clone(),
            )),
        ),
        State::Halted { reason, message } => (
            ConditionUpdate::new(PROGRESSING, false, reason.clone(), message.clone()),
            Some(ConditionUpdate::new(
                DEGRADED,
                true,
                reason.clone(),
                message.clone(),
            )),
        ),
        State::Upgrading { description, .. } => (
            ConditionUpdate::new(
                PROGRESSING,
                true,
                "Upgrading",
                format!("upgrading to version {}: {description}", cfg.version),
            ),
            None,
        ),
        State::Steady if !stalled.is_empty() => (
            ConditionUpdate::new(
                PROGRESSING,
                false,
                "RolloutStalled",
                format!("rollout of version {} stalled", cfg.version),
            ),
            None,
        ),
        State::Steady if waiting.is_empty() => (
            ConditionUpdate::new(
                PROGRESSING,
                false,
                "RolloutComplete",
                format!("version {} runs everywhere", cfg.version),
            ),
            None,
        ),
        State::Steady => (
            ConditionUpdate::new(
                PROGRESSING,
                true,
                "RollingOut",
                format!(
                    "rolling out version {}: {}",
                    cfg.version,
                    waiting.join(", ")
                ),
            ),
            None,
        ),
    };
    let degraded = degraded.unwrap_or_else(|| {
        if stalled.is_empty() {
            ConditionUpdate::new(DEGRADED, false, "AsExpected", "no problem detected")
        } else {
            ConditionUpdate::new(
                DEGRADED,
                true,
                "RolloutStalled",
                format!("exceeded the progress deadline: {}", stalled.join(", ")),
            )
        }
    });
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
    fn one_condition_per_type_with_another_tools_kept_after_the_operators() {
        let condition = |type_: &str, status: &str| Condition {
            type_: type_.into(),
            status: status.into(),
            reason: "Tested".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: Time(at(0)),
        };
        let old = [
            condition("example.com/BackedUp", "True"),
            condition(READY, "True"),
            condition(READY, "False"),
            condition("example.com/BackedUp", "False"),
        ];
        let merged = merge_conditions(
            &old,
            &[ConditionUpdate::new(
                PROGRESSING,
                false,
                "RolloutComplete",
                "",
            )],
            Some(1),
            at(1),
        );
        let kept: Vec<(&str, &str)> = merged
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str()))
            .collect();
        assert_eq!(
            kept,
            [
                (READY, "True"),
                (PROGRESSING, "False"),
                ("example.com/BackedUp", "True")
            ]
        );
    }

    #[test]
    fn paused_status_says_so_without_claiming_the_generation() {
        let mut cd = ChatDeployment::new("chat", ChatDeploymentSpec::default());
        cd.metadata.generation = Some(3);
        cd.status = Some(ChatDeploymentStatus {
            observed_generation: Some(2),
            ..Default::default()
        });
        let status = paused(&cd, at(0));
        assert_eq!(status.observed_generation, Some(2));
        let condition = &status.conditions[0];
        assert_eq!(
            (condition.type_.as_str(), condition.status.as_str()),
            (RECONCILIATION_PAUSED, "True")
        );
        // Unpaused, the condition goes away.
        cd.status = Some(status);
        let blocked = blocked(&cd, "Invalid", "x".into(), at(1));
        assert!(blocked
            .conditions
            .iter()
            .all(|c| c.type_ != RECONCILIATION_PAUSED));
        assert_eq!(blocked.observed_generation, Some(3));
    }
}
