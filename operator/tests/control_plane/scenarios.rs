//! The scenarios, each a test on its own namespace.

use std::time::Duration;

use chat_operator::build::{build, Resource, VERSION_LABEL};
use chat_operator::config::Component;
use k8s_openapi::api::apps::v1::Deployment;
use chat_operator::config::validate;
use chat_operator::crd::ChatDeployment;
use chat_operator::secrets::{SecretDigests, SecretGenerator, SystemGenerator};
use chat_operator::upgrade::Versions;
use kube::api::GroupVersionKind;
use kube::api::{Patch, PatchParams};
use kube::discovery::pinned_kind;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::common;
use super::harness::{owned_and_labelled, Stack};

/// Longest wait for a stack to become Ready: PVC binding by the real binder, the dependencies,
/// the migration Job, then the components. A guard against hangs, not a performance target.
const READY_WITHIN: Duration = Duration::from_secs(180);

fn read(path: &str) -> String {
    std::fs::read_to_string(common::crate_dir().join(path)).unwrap()
}

/// Every object the operator builds for `cd` at its target version exists, is labelled and is
/// owned by it.
async fn assert_objects_owned(stack: &Stack, cd: &ChatDeployment) {
    let cfg = validate(cd).expect("a valid spec");
    let uid = cd.uid().expect("the ChatDeployment has a uid");
    for object in build(&cfg, &SecretDigests::default(), &Versions::target(&cfg)) {
        if matches!(object, Resource::Job(_)) {
            continue; // the migration Job is pruned once it succeeded
        }
        let ar = object.api_resource();
        let gvk = GroupVersionKind::gvk(&ar.group, &ar.version, &ar.kind);
        let (resource, _) = pinned_kind(&stack.admin, &gvk).await.unwrap();
        let api: Api<kube::api::DynamicObject> =
            Api::namespaced_with(stack.admin.clone(), &stack.namespace, &resource);
        let live = api
            .get(object.name())
            .await
            .unwrap_or_else(|e| panic!("{} {} was not created: {e}", ar.kind, object.name()));
        owned_and_labelled(&live, &uid).unwrap_or_else(|e| panic!("{}: {e}", ar.kind));
    }
}

/// Apply the spec in `path` (with `secrets` created first) and wait for `Ready=True` with every
/// object created, owned and labelled.
async fn reaches_ready(test: &str, path: &str, secrets: &[(&str, &[(&str, &str)])]) -> Stack {
    let mut stack = Stack::new(test).await;
    stack.start_operator("chat-operator-0");
    for (name, data) in secrets {
        stack.create_secret(name, data).await;
    }
    stack.apply_chat_yaml(&read(path), "chat").await;
    let cd = stack
        .wait_condition("chat", "Ready", "True", READY_WITHIN)
        .await;
    assert_objects_owned(&stack, &cd).await;
    let status = cd.status.as_ref().unwrap();
    assert_eq!(status.observed_generation, cd.metadata.generation);
    assert_eq!(status.version.as_deref(), Some(cd.spec.version.as_str()));
    stack
}

#[tokio::test]
async fn minimal_example_reaches_ready() {
    reaches_ready("minimal", "examples/minimal.yaml", &[]).await;
}

#[tokio::test]
async fn chart_example_reaches_ready() {
    reaches_ready(
        "chart-example",
        "../charts/chat-operator/examples/chatdeployment.yaml",
        &[],
    )
    .await;
}

#[tokio::test]
async fn full_example_reaches_ready() {
    reaches_ready(
        "full",
        "examples/full.yaml",
        &[("chat-mongodb-admin", &[("password", "a-url-safe-password")])],
    )
    .await;
}

#[tokio::test]
async fn autoscaling_spec_reaches_ready() {
    reaches_ready("autoscaling", "tests/fixtures/autoscaling.yaml", &[]).await;
}

#[tokio::test]
async fn external_dependencies_spec_reaches_ready() {
    let key = SystemGenerator::default().ed25519();
    reaches_ready(
        "external",
        "tests/fixtures/external.yaml",
        &[
            (
                "chat-external",
                &[
                    ("mongodb-uri", "mongodb://mongo.example:27017/chat"),
                    ("rabbitmq-uri", "amqp://u:p@rabbit.example:5672/%2f"),
                    ("kafka-brokers", "kafka.example:9092"),
                    ("redis-url", "redis://redis.example:6379"),
                ],
            ),
            (
                "chat-signing-key",
                &[
                    ("private.pem", key.private_pem.as_str()),
                    ("public.pem", key.public_pem.as_str()),
                ],
            ),
        ],
    )
    .await;
}

/// After `Ready`, a minute with no change makes no write at all, even through a reconcile: the
/// operator's requests are counted in the API server's audit log (a count, not a timing). The
/// leader Lease renewals are the one write a leader must make, and are counted apart.
#[tokio::test]
async fn steady_state_makes_no_writes() {
    let stack = reaches_ready("steady", "examples/minimal.yaml", &[]).await;
    // The writes that led to Ready (its status, its event) finish first.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let since = chrono::Utc::now();
    tokio::time::sleep(Duration::from_secs(30)).await;
    // A change the operator does not act on still wakes it: this reconcile must find
    // nothing to do.
    stack
        .chat_deployments()
        .patch(
            "chat",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"example.com/touched": "yes"}}})),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(30)).await;

    let lists = stack.operator_requests_since(since, &["list"]);
    assert!(
        lists.iter().any(|l| l.contains("deployments/")),
        "no reconcile ran in the window:\n{}",
        stack.operator_logs()
    );
    let (renewals, writes): (Vec<String>, Vec<String>) = stack
        .operator_writes_since(since)
        .into_iter()
        .partition(|w| w.starts_with("patch leases/chat-operator-leader"));
    println!(
        "in the 60 s after Ready: {} operator writes, {} leader lease renewals, {} reads by list",
        writes.len(),
        renewals.len(),
        lists.len()
    );
    assert!(
        writes.is_empty(),
        "the operator wrote in steady state:\n{}\n{}",
        writes.join("\n"),
        stack.operator_logs()
    );
}

/// The version of every component's Deployment template, with whether its rollout is complete
/// and available, in upgrade order (message, group, auth, chat, gateway).
async fn component_versions(stack: &Stack) -> Vec<(String, String, bool)> {
    let api: Api<Deployment> = stack.api();
    let mut out = Vec::new();
    for component in Component::ALL {
        let Some(d) = api.get_opt(&format!("chat-{}", component.role())).await.unwrap() else {
            continue;
        };
        let version = d
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.labels.as_ref())
            .and_then(|l| l.get(VERSION_LABEL).cloned())
            .unwrap_or_default();
        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let status = d.status.clone().unwrap_or_default();
        let complete = status.observed_generation == d.metadata.generation
            && status.updated_replicas.unwrap_or(0) == want
            && status.available_replicas.unwrap_or(0) >= want
            && status.replicas.unwrap_or(0) == want;
        out.push((component.role().to_owned(), version, complete));
    }
    out
}

/// What every sample of an upgrade must show: a component moves to `to` only after every
/// component before it runs `to` completely, and only after the migration of `to` succeeded;
/// no Deployment ever has fewer available pods than it wants (maxUnavailable 0).
async fn check_upgrade_order(stack: &Stack, to: &str) -> Result<(), String> {
    let versions = component_versions(stack).await;
    let mut all_before_done = true;
    for (role, version, complete) in &versions {
        if version == to && !all_before_done {
            return Err(format!("{role} moved to {to} before the components ahead of it: {versions:?}"));
        }
        all_before_done &= version == to && *complete;
    }
    let api: Api<Deployment> = stack.api();
    for d in api.list(&Default::default()).await.unwrap() {
        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let available = d.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0);
        if d.status.as_ref().and_then(|s| s.observed_generation).is_some() && available < want {
            return Err(format!("{} had {available} of {want} pods available", d.name_any()));
        }
    }
    Ok(())
}

/// A version upgrade through the real Deployment, StatefulSet and Job controllers: a dependency
/// image first, then the migration Job, then message, group, auth, chat and gateway, each after
/// the one before is complete; status and events at each step. The operator is killed in the
/// middle and its successor resumes where it stopped.
#[tokio::test]
async fn upgrade_walks_the_order_and_survives_an_operator_kill() {
    let mut stack = reaches_ready("upgrade", "examples/minimal.yaml", &[]).await;
    let before = component_versions(&stack).await;
    assert!(before.iter().all(|(_, v, done)| v == "0.1.0" && *done), "{before:?}");

    // Hold the new auth pods unready, so the sequence stops at auth for the kill.
    stack.sim.behave(|b| {
        b.keep_unready = Box::new(|pod| {
            let labels = pod.labels();
            labels.get("app.kubernetes.io/component").map(String::as_str) == Some("auth")
                && labels.get(VERSION_LABEL).map(String::as_str) == Some("0.2.0")
        })
    });
    stack
        .patch_spec(
            "chat",
            json!({"version": "0.2.0",
                   "dependencies": {"redis": {"managed": {"image": "redis:7.2.5"}}}}),
        )
        .await;

    let mut steps = Vec::new();
    let deadline = tokio::time::Instant::now() + READY_WITHIN;
    loop {
        check_upgrade_order(&stack, "0.2.0").await.unwrap();
        let cd = stack.chat_deployments().get("chat").await.unwrap();
        let status = cd.status.clone().unwrap_or_default();
        if let Some(step) = status.upgrade.as_ref().map(|u| u.step.clone()) {
            if steps.last() != Some(&step) {
                steps.push(step);
            }
        }
        if steps.last().map(String::as_str) == Some("component/auth") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the upgrade did not reach auth; steps {steps:?}\n{}",
            stack.operator_logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Dependencies first, then the migration, then the components in order.
    let redis_at = steps.iter().position(|s| s == "dependency/redis");
    let migration_at = steps.iter().position(|s| s == "migration");
    assert!(
        redis_at.is_some() && migration_at.is_some() && redis_at < migration_at,
        "steps seen: {steps:?}"
    );
    let cd = stack.chat_deployments().get("chat").await.unwrap();
    let status = cd.status.clone().unwrap();
    assert_eq!(status.upgrade.as_ref().unwrap().step, "component/auth");
    assert!(status.conditions.iter().any(|c| c.type_ == "Progressing" && c.status == "True"));
    let rolled: Api<Deployment> = stack.api();
    let generation_of = |name: &'static str| {
        let rolled = rolled.clone();
        async move { rolled.get(name).await.unwrap().metadata.generation }
    };
    let (message_gen, group_gen) = (generation_of("chat-message").await, generation_of("chat-group").await);

    // The leader dies mid-upgrade; a new one takes over once the Lease expires.
    stack.operators[0].kill();
    stack.start_operator("chat-operator-1");
    stack.sim.behave(|b| b.keep_unready = Box::new(|_| false));
    let cd = stack
        .wait_status("chat", "upgraded to 0.2.0 and Ready", READY_WITHIN, |cd| {
            let s = cd.status.clone().unwrap_or_default();
            s.version.as_deref() == Some("0.2.0")
                && s.upgrade.is_none()
                && s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
        })
        .await;
    check_upgrade_order(&stack, "0.2.0").await.unwrap();
    assert!(component_versions(&stack).await.iter().all(|(_, v, done)| v == "0.2.0" && *done));
    // Resumed, not restarted: what had rolled was not rolled again.
    assert_eq!(generation_of("chat-message").await, message_gen);
    assert_eq!(generation_of("chat-group").await, group_gen);
    assert_eq!(
        cd.status.as_ref().unwrap().migrated_image.as_deref(),
        Some("ghcr.io/scalable-chat/chat-server:0.2.0")
    );
    let reasons: Vec<String> = stack.events("chat").await.into_iter().map(|(r, _)| r).collect();
    for reason in ["UpgradeStarted", "UpgradeStep", "MigrationSucceeded", "UpgradeCompleted"] {
        assert!(reasons.iter().any(|r| r == reason), "no {reason} event in {reasons:?}");
    }
    let notes: Vec<String> = stack
        .events("chat")
        .await
        .into_iter()
        .filter(|(r, _)| r == "UpgradeStep")
        .map(|(_, n)| n)
        .collect();
    assert!(notes.len() >= 5, "one UpgradeStep event per step, each with its own message: {notes:?}");
}

/// A migration Job that fails stops the upgrade before any component moves, with the
/// documented condition; a component whose new pods never become ready stops it at that
/// step once the step timeout passes.
#[tokio::test]
async fn failed_migration_and_unready_pods_halt_the_upgrade() {
    let stack = reaches_ready("halt", "examples/minimal.yaml", &[]).await;
    stack.sim.behave(|b| {
        b.fail_job = Box::new(|pod| {
            pod.labels().get(VERSION_LABEL).map(String::as_str) == Some("0.2.0")
        })
    });
    stack.patch_spec("chat", json!({"version": "0.2.0"})).await;
    let cd = stack
        .wait_status("chat", "Degraded with MigrationFailed", READY_WITHIN, |cd| {
            has_condition(cd, "Degraded", "True", "MigrationFailed")
        })
        .await;
    assert!(component_versions(&stack).await.iter().all(|(_, v, _)| v == "0.1.0"));
    assert_eq!(cd.status.unwrap().upgrade.unwrap().halted.unwrap().reason, "MigrationFailed");

    // A new spec resumes: the migration succeeds, then chat's new pods stay unready.
    stack.sim.behave(|b| {
        b.fail_job = Box::new(|_| false);
        b.keep_unready = Box::new(|pod| {
            let labels = pod.labels();
            labels.get("app.kubernetes.io/component").map(String::as_str) == Some("chat")
                && labels.get(VERSION_LABEL).map(String::as_str) == Some("0.2.1")
        })
    });
    stack
        .patch_spec("chat", json!({"version": "0.2.1", "upgrade": {"stepTimeoutSeconds": 30}}))
        .await;
    stack
        .wait_status("chat", "Degraded with StepTimedOut at chat", READY_WITHIN, |cd| {
            has_condition(cd, "Degraded", "True", "StepTimedOut")
                && cd.status.as_ref().and_then(|s| s.upgrade.as_ref()).map(|u| u.step.as_str())
                    == Some("component/chat")
        })
        .await;
    let versions = component_versions(&stack).await;
    let gateway = versions.iter().find(|(r, _, _)| r == "gateway").unwrap();
    assert_eq!(gateway.1, "0.1.0", "the gateway is not reached: {versions:?}");
    let reasons: Vec<String> = stack.events("chat").await.into_iter().map(|(r, _)| r).collect();
    assert!(reasons.iter().any(|r| r == "Degraded"), "{reasons:?}");
}

fn has_condition(cd: &ChatDeployment, type_: &str, status: &str, reason: &str) -> bool {
    cd.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == status && c.reason == reason)
    })
}
