//! The upgrade sequence as a state machine: each test builds what runs, plans, and checks
//! what moves.

use chrono::TimeZone;
use serde_json::json;

use super::*;
use crate::config::validate;
use crate::crd::{
    ChatDeployment, ChatDeploymentSpec, DependenciesSpec, Dependency, ManagedDependency,
};

const JOB: &str = "chat-migrate-0123abcd";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 12, 0, 0).unwrap()
}

fn image(version: &str) -> String {
    format!("ghcr.io/scalable-chat/chat-server:{version}")
}

fn chat(version: &str) -> ChatDeployment {
    let mut cd = ChatDeployment::new(
        "chat",
        ChatDeploymentSpec {
            version: version.into(),
            ..Default::default()
        },
    );
    cd.metadata.namespace = Some("default".into());
    cd
}

fn cfg(version: &str) -> ValidatedConfig {
    validate(&chat(version)).unwrap()
}

/// A Deployment running `version`; `complete` says whether its rollout finished.
fn deployment(version: &str, complete: bool) -> Deployment {
    let observed = if complete { 2 } else { 1 };
    serde_json::from_value(json!({
        "metadata": {"generation": 2},
        "spec": {
            "replicas": 2,
            "selector": {},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/version": version}},
                "spec": {"containers": [{"name": "chat-server", "image": image(version)}]},
            },
        },
        "status": {"observedGeneration": observed, "replicas": 2, "updatedReplicas": 2,
                   "readyReplicas": 2, "availableReplicas": 2},
    }))
    .unwrap()
}

/// A StatefulSet running `image`; `rolled` says whether it is fully rolled and ready.
fn stateful_set(image: &str, rolled: bool) -> StatefulSet {
    let update = if rolled { "r1" } else { "r2" };
    serde_json::from_value(json!({
        "metadata": {"generation": 3},
        "spec": {
            "replicas": 1,
            "selector": {},
            "serviceName": "x",
            "template": {"spec": {"containers": [{"name": "x", "image": image}]}},
        },
        "status": {"observedGeneration": 3, "replicas": 1, "readyReplicas": 1,
                   "updatedReplicas": 1, "currentRevision": "r1", "updateRevision": update},
    }))
    .unwrap()
}

fn job(condition: Option<&str>) -> Job {
    let conditions: Vec<_> = condition
        .map(|c| json!({"type": c, "status": "True"}))
        .into_iter()
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": JOB},
        "status": {"conditions": conditions},
    }))
    .unwrap()
}

/// Every default dependency at its default image, rolled.
fn dependencies_rolled() -> BTreeMap<DependencyKind, StatefulSet> {
    let cfg = cfg("0.1.0");
    cfg.dependencies
        .iter()
        .map(|d| match &d.mode {
            DependencyMode::Managed(m) => (d.kind, stateful_set(&m.image, true)),
            DependencyMode::External { .. } => unreachable!(),
        })
        .collect()
}

/// Everything running `version`, rolled.
fn running(version: &str) -> Observed {
    Observed {
        deployments: Component::ALL
            .into_iter()
            .map(|c| (c, deployment(version, true)))
            .collect(),
        stateful_sets: dependencies_rolled(),
        migration: None,
    }
}

fn plan_for(
    cfg: &ValidatedConfig,
    observed: &Observed,
    previous: Option<&ChatDeploymentStatus>,
    generation: i64,
) -> Plan {
    plan(&PlanInput {
        cfg,
        observed,
        previous,
        generation: Some(generation),
        migration_job: JOB,
        now: now(),
    })
}

/// The status the reconciler would write after `plan`.
fn status_after(plan: &Plan) -> ChatDeploymentStatus {
    ChatDeploymentStatus {
        upgrade: plan.upgrade.clone(),
        migrated_image: plan.migrated_image.clone(),
        ..Default::default()
    }
}

fn versions_of(plan: &Plan) -> Vec<(Component, String)> {
    plan.versions
        .components
        .iter()
        .map(|(c, r)| (*c, r.version.clone()))
        .collect()
}

fn step_of(plan: &Plan) -> Option<String> {
    plan.upgrade.as_ref().map(|u| u.step.clone())
}

fn reasons(plan: &Plan) -> Vec<&str> {
    plan.events.iter().map(|e| e.reason).collect()
}

#[test]
fn steady_state_runs_everything_at_the_target_and_plans_nothing() {
    let cfg = cfg("0.1.0");
    let plan = plan_for(&cfg, &running("0.1.0"), None, 1);
    assert_eq!(plan.state, State::Steady);
    assert_eq!(plan.versions, Versions::target(&cfg));
    assert!(plan.upgrade.is_none() && plan.events.is_empty());
}

#[test]
fn first_install_creates_the_dependencies_then_migrates_before_any_component() {
    let cfg = cfg("0.1.0");
    let mut observed = Observed::default();

    let plan = plan_for(&cfg, &observed, None, 1);
    assert_eq!(step_of(&plan).as_deref(), Some("dependency/mongodb"));
    assert_eq!(plan.versions.dependencies.len(), 4, "all created at once");
    assert!(plan.versions.components.is_empty() && !plan.versions.migration);
    assert_eq!(reasons(&plan), ["UpgradeStarted", "UpgradeStep"]);

    observed.stateful_sets = dependencies_rolled();
    let plan = plan_for(&cfg, &observed, Some(&status_after(&plan)), 1);
    assert_eq!(step_of(&plan).as_deref(), Some("migration"));
    assert!(plan.versions.migration);
    assert!(
        plan.versions.components.is_empty(),
        "no component before the migration"
    );

    observed.migration = Some(job(Some("Complete")));
    let plan = plan_for(&cfg, &observed, Some(&status_after(&plan)), 1);
    assert_eq!(
        plan.migrated_image.as_deref(),
        Some(image("0.1.0").as_str())
    );
    assert_eq!(plan.versions.components.len(), 5, "every component at once");
    assert!(!plan.versions.migration, "the finished Job is pruned");
    assert_eq!(step_of(&plan).as_deref(), Some("component/message"));
    assert_eq!(reasons(&plan), ["MigrationSucceeded", "UpgradeStep"]);
}

#[test]
fn dependencies_roll_one_at_a_time_before_the_migration() {
    let mut cd = chat("0.2.0");
    let managed = |image: &str| {
        Some(Dependency::Managed(ManagedDependency {
            image: Some(image.into()),
            ..Default::default()
        }))
    };
    cd.spec.dependencies = Some(DependenciesSpec {
        mongodb: managed("mongo:7.0.12"),
        redis: managed("redis:7.4"),
        ..Default::default()
    });
    let cfg = validate(&cd).unwrap();
    let mut observed = running("0.1.0");

    let plan = plan_for(&cfg, &observed, None, 2);
    assert_eq!(step_of(&plan).as_deref(), Some("dependency/mongodb"));
    assert_eq!(
        plan.versions.dependencies[&DependencyKind::MongoDb],
        "mongo:7.0.12"
    );
    assert_eq!(
        plan.versions.dependencies[&DependencyKind::Redis],
        DependencyKind::Redis.default_image()
    );
    assert!(!plan.versions.migration);
    assert!(versions_of(&plan).iter().all(|(_, v)| v == "0.1.0"));

    // Applied but still rolling: redis waits.
    observed
        .stateful_sets
        .insert(DependencyKind::MongoDb, stateful_set("mongo:7.0.12", false));
    let plan = plan_for(&cfg, &observed, Some(&status_after(&plan)), 2);
    assert_eq!(step_of(&plan).as_deref(), Some("dependency/mongodb"));
    assert_eq!(
        plan.versions.dependencies[&DependencyKind::Redis],
        DependencyKind::Redis.default_image()
    );

    observed
        .stateful_sets
        .insert(DependencyKind::MongoDb, stateful_set("mongo:7.0.12", true));
    let plan = plan_for(&cfg, &observed, Some(&status_after(&plan)), 2);
    assert_eq!(step_of(&plan).as_deref(), Some("dependency/redis"));
    assert_eq!(
        plan.versions.dependencies[&DependencyKind::Redis],
        "redis:7.4"
    );
    assert!(
        !plan.versions.migration,
        "the migration waits for every dependency"
    );
}

/// A stack created while the default dependency images were floating tags (`mongo:7.0`, …)
/// moves to the pinned defaults through the ordered upgrade when the operator is upgraded:
/// one dependency at a time, each after the one before is rolled, and no migration or
/// component roll, since the chat version did not change.
#[test]
fn new_default_dependency_images_roll_one_at_a_time_without_a_migration() {
    use DependencyKind::{Kafka, MongoDb, RabbitMq, Redis};
    let cfg = cfg("0.1.0");
    let mut observed = running("0.1.0");
    let floating = [
        (MongoDb, "mongo:7.0"),
        (RabbitMq, "rabbitmq:3.13-management"),
        (Redis, "redis:7.2"),
    ];
    for (kind, old) in floating {
        observed.stateful_sets.insert(kind, stateful_set(old, true));
    }

    let mut plan = plan_for(&cfg, &observed, None, 1);
    for (kind, _) in floating {
        assert_eq!(step_of(&plan), Some(format!("dependency/{}", kind.name())));
        for (other, old) in floating {
            let expected = if other <= kind {
                other.default_image()
            } else {
                old
            };
            assert_eq!(plan.versions.dependencies[&other], expected, "{kind:?}");
        }
        assert_eq!(plan.versions.dependencies[&Kafka], Kafka.default_image());
        assert!(!plan.versions.migration);
        assert!(versions_of(&plan).iter().all(|(_, v)| v == "0.1.0"));
        observed
            .stateful_sets
            .insert(kind, stateful_set(kind.default_image(), true));
        plan = plan_for(&cfg, &observed, Some(&status_after(&plan)), 1);
    }
    assert_eq!(plan.state, State::Steady);
    assert!(plan.upgrade.is_none() && !plan.versions.migration);
    assert_eq!(reasons(&plan), ["UpgradeCompleted"]);
}

#[test]
fn the_migration_of_the_new_image_runs_before_any_component_moves() {
    let cfg = cfg("0.2.0");
    let mut observed = running("0.1.0");
    let plan = plan_for(&cfg, &observed, None, 2);
    assert_eq!(step_of(&plan).as_deref(), Some("migration"));
    assert!(plan.versions.migration);
    assert!(versions_of(&plan).iter().all(|(_, v)| v == "0.1.0"));
    assert!(matches!(
        plan.state,
        State::Upgrading {
            step: Step::Migration,
            ..
        }
    ));

    // Running: still nothing moves.
    observed.migration = Some(job(None));
    let plan = plan_for(&cfg, &observed, Some(&status_after(&plan)), 2);
    assert_eq!(step_of(&plan).as_deref(), Some("migration"));
    assert!(versions_of(&plan).iter().all(|(_, v)| v == "0.1.0"));
    assert!(plan.events.is_empty(), "no event while a step continues");
}

#[test]
fn components_roll_in_order_each_after_the_previous_one_completed() {
    let cfg = cfg("0.2.0");
    let mut observed = running("0.1.0");
    let mut status = ChatDeploymentStatus {
        migrated_image: Some(image("0.2.0")),
        ..Default::default()
    };
    let order = ["message", "group", "auth", "chat", "gateway"];
    for (index, role) in order.iter().enumerate() {
        let plan = plan_for(&cfg, &observed, Some(&status), 2);
        assert_eq!(step_of(&plan), Some(format!("component/{role}")));
        for (component, version) in versions_of(&plan) {
            let reached = order[..=index].contains(&component.role());
            assert_eq!(
                version,
                if reached { "0.2.0" } else { "0.1.0" },
                "{role}: {component:?}"
            );
        }
        status = status_after(&plan);
        let component = Component::ALL[index];
        // Applied, rollout under way: the next one waits.
        observed
            .deployments
            .insert(component, deployment("0.2.0", false));
        let waiting = plan_for(&cfg, &observed, Some(&status), 2);
        assert_eq!(step_of(&waiting), Some(format!("component/{role}")));
        assert_eq!(waiting.versions, plan.versions);
        observed
            .deployments
            .insert(component, deployment("0.2.0", true));
    }
    let done = plan_for(&cfg, &observed, Some(&status), 2);
    assert_eq!(done.state, State::Steady);
    assert!(done.upgrade.is_none());
    assert_eq!(reasons(&done), ["UpgradeCompleted"]);
    assert_eq!(done.versions.components, Versions::target(&cfg).components);
    assert!(!done.versions.migration);
}

#[test]
fn a_step_past_its_deadline_halts_and_nothing_further_rolls_until_the_spec_changes() {
    let cfg = cfg("0.2.0");
    let mut observed = running("0.1.0");
    observed
        .deployments
        .insert(Component::Message, deployment("0.2.0", true));
    observed
        .deployments
        .insert(Component::Group, deployment("0.2.0", false));
    let status = ChatDeploymentStatus {
        migrated_image: Some(image("0.2.0")),
        upgrade: Some(UpgradeStatus {
            step: "component/group".into(),
            started_at: Time(now() - chrono::Duration::seconds(601)),
            image: image("0.2.0"),
            halted: None,
        }),
        ..Default::default()
    };
    let halted = plan_for(&cfg, &observed, Some(&status), 2);
    let State::Halted { reason, message } = &halted.state else {
        panic!("{:?}", halted.state)
    };
    assert_eq!(reason, "StepTimedOut");
    assert!(
        message.contains("component/group did not finish within 600s"),
        "{message}"
    );
    assert_eq!(reasons(&halted), ["UpgradeHalted"]);
    assert!(halted.events[0].warning);

    // The step finishes late: still halted, auth keeps 0.1.0.
    observed
        .deployments
        .insert(Component::Group, deployment("0.2.0", true));
    let still = plan_for(&cfg, &observed, Some(&status_after(&halted)), 2);
    assert!(matches!(still.state, State::Halted { .. }));
    assert_eq!(still.versions.components[&Component::Auth].version, "0.1.0");
    assert!(still.events.is_empty());

    // A new generation resumes where it stopped.
    let resumed = plan_for(&cfg, &observed, Some(&status_after(&halted)), 3);
    assert_eq!(step_of(&resumed).as_deref(), Some("component/auth"));
    assert_eq!(
        resumed.versions.components[&Component::Auth].version,
        "0.2.0"
    );
    assert_eq!(resumed.upgrade.as_ref().unwrap().started_at, Time(now()));
}

#[test]
fn a_failed_migration_halts_keeps_its_job_and_is_retried_after_a_spec_change() {
    let cfg = cfg("0.2.0");
    let mut observed = running("0.1.0");
    observed.migration = Some(job(Some("Failed")));
    let halted = plan_for(&cfg, &observed, None, 2);
    assert!(matches!(&halted.state, State::Halted { reason, .. } if reason == "MigrationFailed"));
    assert!(
        halted.versions.migration,
        "kept, so its pods' logs can be read"
    );
    assert!(versions_of(&halted).iter().all(|(_, v)| v == "0.1.0"));

    let still = plan_for(&cfg, &observed, Some(&status_after(&halted)), 2);
    assert!(matches!(still.state, State::Halted { .. }));

    // Deleted by hand while halted: not created again until the spec changes.
    let mut deleted = observed.clone();
    deleted.migration = None;
    let still = plan_for(&cfg, &deleted, Some(&status_after(&halted)), 2);
    assert!(matches!(still.state, State::Halted { .. }));
    assert!(!still.versions.migration, "not recreated while halted");

    let retry = plan_for(&cfg, &observed, Some(&status_after(&halted)), 3);
    assert!(
        !retry.versions.migration,
        "the failed Job is pruned now and created again on the next reconcile"
    );
    assert!(matches!(
        retry.state,
        State::Upgrading {
            step: Step::Migration,
            ..
        }
    ));
    assert!(versions_of(&retry).iter().all(|(_, v)| v == "0.1.0"));
}

#[test]
fn skipping_a_minor_version_is_refused_unless_forced() {
    let mut cd = chat("0.3.0");
    let observed = running("0.1.4");
    let refused = plan_for(&validate(&cd).unwrap(), &observed, None, 2);
    let State::Refused(message) = &refused.state else {
        panic!("{:?}", refused.state)
    };
    assert!(message.contains("components run 0.1.4"), "{message}");
    assert!(message.contains(FORCE_UPGRADE_ANNOTATION), "{message}");
    assert!(!refused.versions.migration);
    assert!(versions_of(&refused).iter().all(|(_, v)| v == "0.1.4"));

    cd.metadata.annotations =
        Some([(FORCE_UPGRADE_ANNOTATION.to_string(), "true".to_string())].into());
    let forced = plan_for(&validate(&cd).unwrap(), &observed, None, 2);
    assert_eq!(step_of(&forced).as_deref(), Some("migration"));
}

#[test]
fn one_minor_step_a_downgrade_and_non_semver_versions_are_not_refused() {
    for (from, to) in [
        ("0.1.0", "0.2.0"),
        ("0.1.9", "0.1.10"),
        ("0.9.3", "1.0.0"),
        ("0.3.0", "0.1.0"),
        ("0.1.0", "dev"),
        ("main-4f2a9c1", "0.3.0"),
        ("0.1.0", "0.2.0-rc.1"),
    ] {
        let plan = plan_for(&cfg(to), &running(from), None, 2);
        assert!(
            !matches!(plan.state, State::Refused(_)),
            "{from} → {to}: {:?}",
            plan.state
        );
    }
}

#[test]
fn the_lowest_running_version_counts_when_components_differ() {
    let mut observed = running("0.2.0");
    observed
        .deployments
        .insert(Component::Gateway, deployment("0.1.0", true));
    let plan = plan_for(&cfg("0.3.0"), &observed, None, 2);
    assert!(matches!(plan.state, State::Refused(_)), "{:?}", plan.state);
}

#[test]
fn stopped_holds_every_image_and_plans_no_step() {
    let mut cd = chat("0.2.0");
    cd.spec.stopped = true;
    let cfg = validate(&cd).unwrap();
    let plan = plan_for(&cfg, &running("0.1.0"), None, 2);
    assert_eq!(plan.state, State::Stopped);
    assert!(plan.upgrade.is_none() && !plan.versions.migration);
    assert!(versions_of(&plan).iter().all(|(_, v)| v == "0.1.0"));
}

#[test]
fn a_dependency_that_restarts_mid_upgrade_does_not_cancel_a_running_migration() {
    let cfg = cfg("0.2.0");
    let mut observed = running("0.1.0");
    observed.migration = Some(job(None));
    observed.stateful_sets.insert(
        DependencyKind::Redis,
        stateful_set(DependencyKind::Redis.default_image(), false),
    );
    let status = ChatDeploymentStatus {
        upgrade: Some(UpgradeStatus {
            step: "migration".into(),
            started_at: Time(now()),
            image: image("0.2.0"),
            halted: None,
        }),
        ..Default::default()
    };
    let plan = plan_for(&cfg, &observed, Some(&status), 2);
    assert_eq!(step_of(&plan).as_deref(), Some("dependency/redis"));
    assert!(plan.versions.migration);
    assert!(versions_of(&plan).iter().all(|(_, v)| v == "0.1.0"));
}

#[test]
fn semantic_versions_parse_with_optional_v_pre_release_and_build() {
    let v = |major, minor, patch| {
        Some(SemVer {
            major,
            minor,
            patch,
        })
    };
    assert_eq!(SemVer::parse("0.1.0"), v(0, 1, 0));
    assert_eq!(SemVer::parse("v1.2.3"), v(1, 2, 3));
    assert_eq!(SemVer::parse("1.2.3-rc.1"), v(1, 2, 3));
    assert_eq!(SemVer::parse("1.2.3-rc.1+build.5"), v(1, 2, 3));
    for bad in [
        "dev",
        "1.2",
        "1.2.3.4",
        "1.2.x",
        "sha256:abc",
        "1.2.3-",
        "1.2.3-a..b",
        "",
    ] {
        assert_eq!(SemVer::parse(bad), None, "{bad}");
    }
    let s = |t| SemVer::parse(t).unwrap();
    assert!(s("0.1.0").skips_a_minor_to(s("0.3.0")));
    assert!(!s("0.1.0").skips_a_minor_to(s("0.2.5")));
    assert!(s("0.9.0").skips_a_minor_to(s("1.1.0")));
    assert!(s("1.0.0").skips_a_minor_to(s("3.0.0")));
    assert!(!s("2.4.0").skips_a_minor_to(s("1.0.0")));
}

#[test]
fn job_state_reads_conditions_and_counts() {
    assert_eq!(job_state(&job(None)), JobState::Running);
    assert_eq!(job_state(&job(Some("Complete"))), JobState::Succeeded);
    assert_eq!(job_state(&job(Some("Failed"))), JobState::Failed);
}
