//! The scenarios, each a test on its own namespace.

use std::collections::BTreeMap;
use std::time::Duration;

use chat_operator::build::{admitted_components, build, Resource, VERSION_LABEL};
use chat_operator::config::validate;
use chat_operator::config::Component;
use chat_operator::crd::ChatDeployment;
use chat_operator::secrets::{SecretDigests, SecretGenerator, SystemGenerator};
use chat_operator::upgrade::Versions;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::Role;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::GroupVersionKind;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::discovery::pinned_kind;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::common;
use super::harness::{eventually, owned_and_labelled, requests_since, Stack};
use super::nodes::labelled;

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

/// A namespace with the chart and one operator, and the spec in `path` applied as
/// ChatDeployment `chat` (after the user's `secrets`).
async fn applied(test: &str, path: &str, secrets: &[(&str, &[(&str, &str)])]) -> Stack {
    let mut stack = Stack::new(test).await;
    stack.start_operator("chat-operator-0");
    for (name, data) in secrets {
        stack.create_secret(name, data).await;
    }
    stack.apply_chat_yaml(&read(path), "chat").await;
    stack
}

/// Apply the spec in `path` (with `secrets` created first) and wait for `Ready=True` with every
/// object created, owned and labelled.
async fn reaches_ready(test: &str, path: &str, secrets: &[(&str, &[(&str, &str)])]) -> Stack {
    let stack = applied(test, path, secrets).await;
    stack
        .wait_condition("chat", "Ready", "True", READY_WITHIN)
        .await;
    // Ready is availability: the rollout may still be finishing. Wait for it to complete.
    let cd = stack
        .wait_status("chat", "the rollout complete", READY_WITHIN, |cd| {
            has_condition(cd, "Progressing", "False", "RolloutComplete")
        })
        .await;
    assert!(has_condition(&cd, "Ready", "True", "Available"));
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
async fn chart_example_reaches_ready_and_kubectl_shows_it() {
    let stack = reaches_ready(
        "chart-example",
        "../charts/chat-operator/examples/chatdeployment.yaml",
        &[],
    )
    .await;
    // What a user sees: `kubectl get chatdeployments` (and `chat`, the short name).
    for (args, header, row) in [
        (
            vec!["get", "chat"],
            vec!["NAME", "VERSION", "RUNNING", "READY", "REASON", "AGE"],
            vec!["chat", "0.1.0", "0.1.0", "True", "Available"],
        ),
        (
            vec!["get", "chatdeployments", "-o", "wide"],
            vec![
                "NAME", "VERSION", "RUNNING", "READY", "REASON", "STEP", "URL", "AGE",
            ],
            vec!["chat", "0.1.0", "0.1.0", "True", "Available"],
        ),
    ] {
        let output = stack.kubectl(&args);
        let mut lines = output.lines();
        let columns: Vec<&str> = lines
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        assert_eq!(columns, header, "{output}");
        let values: Vec<&str> = lines
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        assert_eq!(values[..row.len()], row[..], "{output}");
    }
}

/// The golden spec of a paused stack: nothing is created, the status says it is paused.
#[tokio::test]
async fn paused_spec_creates_nothing_and_says_so() {
    let stack = applied("paused", "tests/fixtures/paused.yaml", &[]).await;
    let cd = wait_reason(&stack, "ReconciliationPaused", "True", "Paused").await;
    assert_eq!(
        cd.status.unwrap().observed_generation,
        None,
        "a paused spec was never acted on"
    );
    let deployments: Api<Deployment> = stack.api();
    let secrets: Api<Secret> = stack.api();
    let ours = ListParams::default().labels("app.kubernetes.io/instance=chat");
    assert!(deployments.list(&ours).await.unwrap().items.is_empty());
    assert!(secrets.list(&ours).await.unwrap().items.is_empty());
}

/// The golden spec of a stack created stopped: the dependencies exist at zero replicas with
/// their data and Secrets, nothing autoscales, the status says Stopped; the components are
/// created once it starts (after the migration, like any first install), and it becomes Ready.
#[tokio::test]
async fn stopped_spec_waits_at_zero_and_starts() {
    let stack = applied("stopped", "tests/fixtures/stopped.yaml", &[]).await;
    wait_reason(&stack, "Ready", "False", "Stopped").await;
    let sets: Api<StatefulSet> = stack.api();
    let deployments: Api<Deployment> = stack.api();
    let hpas: Api<HorizontalPodAutoscaler> = stack.api();
    let replicas: Vec<i32> = sets
        .list(&Default::default())
        .await
        .unwrap()
        .iter()
        .map(|s| s.spec.as_ref().unwrap().replicas.unwrap_or(1))
        .collect();
    assert_eq!(replicas, [0, 0, 0, 0]);
    assert!(deployments
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(hpas
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .is_empty());

    stack.patch_spec("chat", json!({"stopped": null})).await;
    stack
        .wait_condition("chat", "Ready", "True", READY_WITHIN)
        .await;
    let chat = deployments.get("chat-chat").await.unwrap();
    assert_eq!(
        chat.spec.unwrap().replicas,
        Some(2),
        "the autoscaler's minimum"
    );
    assert_eq!(hpas.list(&Default::default()).await.unwrap().items.len(), 1);
}

/// The golden spec of an upgrade (0.2.0, with a key rotation asked for) installs and becomes
/// Ready like any other.
#[tokio::test]
async fn upgrade_spec_reaches_ready() {
    let stack = reaches_ready("upgrade-spec", "tests/fixtures/upgrade.yaml", &[]).await;
    let cd = stack.chat_deployments().get("chat").await.unwrap();
    assert_eq!(
        cd.status.unwrap().jwt_keys.len(),
        1,
        "a first install has one key"
    );
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
    // The writes that led to Ready (its status, its events, the last pods' readiness reported
    // in it) finish first: steady means the ChatDeployment stood still for 10 s.
    let api = stack.chat_deployments();
    let version = |cd: ChatDeployment| cd.metadata.resource_version.unwrap_or_default();
    eventually(
        || "the ChatDeployment standing still for 10 s".into(),
        READY_WITHIN,
        || async {
            let first = version(api.get("chat").await.map_err(|e| e.to_string())?);
            tokio::time::sleep(Duration::from_secs(10)).await;
            let second = version(api.get("chat").await.map_err(|e| e.to_string())?);
            (first == second)
                .then_some(())
                .ok_or(format!("resourceVersion {first} -> {second}"))
        },
    )
    .await;
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

    // Each reconcile reads the JWT Secret once (Secrets are not cached: most are the user's).
    let reads = stack.operator_requests_since(since, &["get", "list"]);
    let (lease_reads, reads): (Vec<String>, Vec<String>) =
        reads.into_iter().partition(|r| r.contains("leases/"));
    let reconciles = reads
        .iter()
        .filter(|r| r.starts_with("get secrets/chat-jwt"))
        .count();
    assert!(
        reconciles > 0,
        "no reconcile ran in the window:\n{}",
        stack.operator_logs()
    );
    let (renewals, writes): (Vec<String>, Vec<String>) = stack
        .operator_writes_since(since)
        .into_iter()
        .partition(|w| w.starts_with("update leases/chat-operator-leader"));
    println!(
        "in the 60 s after Ready: {} operator writes, {} leader lease renewals ({} lease reads), \
         {} reconciles making {} reads (get or list) of other objects: {:.1} per reconcile\n{}",
        writes.len(),
        renewals.len(),
        lease_reads.len(),
        reconciles,
        reads.len(),
        reads.len() as f64 / reconciles as f64,
        reads.join("\n")
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
        let Some(d) = api
            .get_opt(&format!("chat-{}", component.role()))
            .await
            .unwrap()
        else {
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
            return Err(format!(
                "{role} moved to {to} before the components ahead of it: {versions:?}"
            ));
        }
        all_before_done &= version == to && *complete;
    }
    let api: Api<Deployment> = stack.api();
    for d in api.list(&Default::default()).await.unwrap() {
        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let available = d
            .status
            .as_ref()
            .and_then(|s| s.available_replicas)
            .unwrap_or(0);
        if d.status
            .as_ref()
            .and_then(|s| s.observed_generation)
            .is_some()
            && available < want
        {
            return Err(format!(
                "{} had {available} of {want} pods available",
                d.name_any()
            ));
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
    assert!(
        before.iter().all(|(_, v, done)| v == "0.1.0" && *done),
        "{before:?}"
    );

    // Hold the new auth pods unready, so the sequence stops at auth for the kill. Old pods
    // take a moment to stop, as with the preStop pause.
    stack.sim.behave(|b| {
        b.stop_after = Duration::from_secs(1);
        b.keep_unready = labelled(&[
            ("app.kubernetes.io/component", "auth"),
            (VERSION_LABEL, "0.2.0"),
        ])
    });
    stack
        .patch_spec(
            "chat",
            json!({"version": "0.2.0",
                   "dependencies": {"redis": {"managed": {"image": "redis:7.4.2"}}}}),
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
    assert!(status
        .conditions
        .iter()
        .any(|c| c.type_ == "Progressing" && c.status == "True"));
    let rolled: Api<Deployment> = stack.api();
    let generation_of = |name: &'static str| {
        let rolled = rolled.clone();
        async move { rolled.get(name).await.unwrap().metadata.generation }
    };
    let (message_gen, group_gen) = (
        generation_of("chat-message").await,
        generation_of("chat-group").await,
    );

    // The leader dies mid-upgrade; a new one takes over once the Lease expires.
    stack.start_operator("chat-operator-1");
    stack.sim.behave(|b| b.keep_unready = Box::new(|_| false));
    let cd = stack
        .wait_status("chat", "upgraded to 0.2.0 and Ready", READY_WITHIN, |cd| {
            let s = cd.status.clone().unwrap_or_default();
            s.version.as_deref() == Some("0.2.0")
                && s.upgrade.is_none()
                && s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
        })
        .await;
    check_upgrade_order(&stack, "0.2.0").await.unwrap();
    assert!(component_versions(&stack)
        .await
        .iter()
        .all(|(_, v, done)| v == "0.2.0" && *done));
    // Resumed, not restarted: what had rolled was not rolled again.
    assert_eq!(generation_of("chat-message").await, message_gen);
    assert_eq!(generation_of("chat-group").await, group_gen);
    assert_eq!(
        cd.status.as_ref().unwrap().migrated_image.as_deref(),
        Some("ghcr.io/scalable-chat/chat-server:0.2.0")
    );
    let reasons: Vec<String> = stack
        .events("chat")
        .await
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    for reason in [
        "UpgradeStarted",
        "UpgradeStep",
        "MigrationSucceeded",
        "UpgradeCompleted",
    ] {
        assert!(
            reasons.iter().any(|r| r == reason),
            "no {reason} event in {reasons:?}"
        );
    }
    let notes: Vec<String> = stack
        .events("chat")
        .await
        .into_iter()
        .filter(|(r, _)| r == "UpgradeStep")
        .map(|(_, n)| n)
        .collect();
    assert!(
        notes.len() >= 5,
        "one UpgradeStep event per step, each with its own message: {notes:?}"
    );
}

/// A migration Job that fails stops the upgrade before any component moves, with the
/// documented condition; a component whose new pods never become ready stops it at that
/// step once the step timeout passes.
#[tokio::test]
async fn failed_migration_and_unready_pods_halt_the_upgrade() {
    let stack = reaches_ready("halt", "examples/minimal.yaml", &[]).await;
    stack
        .sim
        .behave(|b| b.fail_job = labelled(&[(VERSION_LABEL, "0.2.0")]));
    stack.patch_spec("chat", json!({"version": "0.2.0"})).await;
    let cd = wait_reason(&stack, "Degraded", "True", "MigrationFailed").await;
    assert!(component_versions(&stack)
        .await
        .iter()
        .all(|(_, v, _)| v == "0.1.0"));
    assert_eq!(
        cd.status.unwrap().upgrade.unwrap().halted.unwrap().reason,
        "MigrationFailed"
    );

    // A new spec resumes: the migration succeeds, then chat's new pods stay unready.
    stack.sim.behave(|b| {
        b.fail_job = Box::new(|_| false);
        b.keep_unready = labelled(&[
            ("app.kubernetes.io/component", "chat"),
            (VERSION_LABEL, "0.2.1"),
        ])
    });
    stack
        .patch_spec(
            "chat",
            json!({"version": "0.2.1", "upgrade": {"stepTimeoutSeconds": 30}}),
        )
        .await;
    stack
        .wait_status(
            "chat",
            "Degraded with StepTimedOut at chat",
            READY_WITHIN,
            |cd| {
                has_condition(cd, "Degraded", "True", "StepTimedOut")
                    && cd
                        .status
                        .as_ref()
                        .and_then(|s| s.upgrade.as_ref())
                        .map(|u| u.step.as_str())
                        == Some("component/chat")
            },
        )
        .await;
    let versions = component_versions(&stack).await;
    let gateway = versions.iter().find(|(r, _, _)| r == "gateway").unwrap();
    assert_eq!(
        gateway.1, "0.1.0",
        "the gateway is not reached: {versions:?}"
    );
    let reasons: Vec<String> = stack
        .events("chat")
        .await
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    assert!(reasons.iter().any(|r| r == "Degraded"), "{reasons:?}");
}

/// Wait until Deployment `name` asks for `replicas` pods.
async fn wait_replicas(stack: &Stack, name: &str, replicas: i32) {
    let api: Api<Deployment> = stack.api();
    let what = || format!("{name} at {replicas} replicas\n{}", stack.operator_logs());
    eventually(what, READY_WITHIN, || async {
        let now = api.get(name).await.map_err(|e| e.to_string())?;
        let now = now.spec.and_then(|s| s.replicas);
        (now == Some(replicas))
            .then_some(())
            .ok_or(format!("{now:?}"))
    })
    .await;
}

/// Wait until ChatDeployment `chat` has condition `type_` at `status` with `reason`.
async fn wait_reason(stack: &Stack, type_: &str, status: &str, reason: &str) -> ChatDeployment {
    let what = format!("{type_}={status} ({reason})");
    stack
        .wait_status("chat", &what, READY_WITHIN, |cd| {
            has_condition(cd, type_, status, reason)
        })
        .await
}

/// The message of condition `type_`.
fn message_of(cd: &ChatDeployment, type_: &str) -> String {
    let conditions = cd
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let condition = conditions.iter().find(|c| c.type_ == type_);
    condition.map(|c| c.message.clone()).unwrap_or_default()
}

/// When condition `Ready` last changed.
fn ready_transition(cd: &ChatDeployment) -> Option<String> {
    let conditions = &cd.status.as_ref()?.conditions;
    let ready = conditions.iter().find(|c| c.type_ == "Ready")?;
    Some(ready.last_transition_time.0.to_rfc3339())
}

fn has_condition(cd: &ChatDeployment, type_: &str, status: &str, reason: &str) -> bool {
    cd.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == status && c.reason == reason)
    })
}

/// The pod template's config hash annotation of each component Deployment.
async fn template_hashes(stack: &Stack) -> BTreeMap<String, String> {
    let api: Api<Deployment> = stack.api();
    api.list(&Default::default())
        .await
        .unwrap()
        .into_iter()
        .map(|d| {
            let annotations = d
                .spec
                .and_then(|s| s.template.metadata)
                .and_then(|m| m.annotations)
                .unwrap_or_default();
            (
                d.metadata.name.unwrap_or_default(),
                format!("{annotations:?}"),
            )
        })
        .collect()
}

/// A deleted owned object comes back, a hand-edited owned field is put back, and a generated
/// password deleted while its data remains is not regenerated: a condition and an event say
/// how to recover, and restoring the Secret recovers.
#[tokio::test]
async fn deleted_and_edited_objects_are_restored_and_a_lost_password_is_not_replaced() {
    let stack = reaches_ready("restore", "examples/minimal.yaml", &[]).await;
    let services: Api<Service> = stack.api();
    let old_uid = services.get("chat-gateway").await.unwrap().uid();
    services
        .delete("chat-gateway", &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        || format!("Service chat-gateway recreated\n{}", stack.operator_logs()),
        READY_WITHIN,
        || async {
            match services
                .get_opt("chat-gateway")
                .await
                .map_err(|e| e.to_string())?
            {
                Some(s) if s.uid() != old_uid => Ok(()),
                other => Err(format!("{:?}", other.map(|s| s.uid()))),
            }
        },
    )
    .await;

    // `kubectl edit` of fields the operator owns: another manager, an update.
    let deployments: Api<Deployment> = stack.api();
    let edit = PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..Default::default()
    };
    let hand_edit = json!({"spec": {"replicas": 4, "template": {"spec": {"containers": [
        {"name": "chat-server", "image": "evil:1"}
    ]}}}});
    deployments
        .patch("chat-gateway", &edit, &Patch::Strategic(hand_edit))
        .await
        .unwrap();
    eventually(
        || {
            format!(
                "Deployment chat-gateway put back\n{}",
                stack.operator_logs()
            )
        },
        READY_WITHIN,
        || async {
            let d = deployments
                .get("chat-gateway")
                .await
                .map_err(|e| e.to_string())?;
            let spec = d.spec.unwrap();
            let image = spec.template.spec.unwrap().containers[0]
                .image
                .clone()
                .unwrap_or_default();
            (image == "ghcr.io/scalable-chat/chat-server:0.1.0" && spec.replicas == Some(1))
                .then_some(())
                .ok_or(format!("image {image}, replicas {:?}", spec.replicas))
        },
    )
    .await;

    // The MongoDB password, deleted while its volume holds data written with it.
    let secrets: Api<Secret> = stack.api();
    let saved = secrets.get("chat-mongodb").await.unwrap();
    secrets
        .delete("chat-mongodb", &DeleteParams::default())
        .await
        .unwrap();
    let cd = wait_reason(&stack, "Degraded", "True", "SecretLost").await;
    let message = message_of(&cd, "Degraded");
    assert!(
        message.contains("chat-mongodb") && message.contains("data-chat-mongodb-0"),
        "{message}"
    );
    assert!(
        secrets.get_opt("chat-mongodb").await.unwrap().is_none(),
        "a new password was generated"
    );
    // The event follows the status write.
    eventually(
        || "a SecretLost event".into(),
        READY_WITHIN,
        || async {
            let events = stack.events("chat").await;
            events
                .iter()
                .any(|(r, n)| r == "SecretLost" && n.contains("Restore"))
                .then_some(())
                .ok_or(format!("{events:?}"))
        },
    )
    .await;

    let mut restored = Secret {
        data: saved.data.clone(),
        ..Default::default()
    };
    restored.metadata.name = Some("chat-mongodb".into());
    restored.metadata.labels = saved.metadata.labels.clone();
    secrets
        .create(&PostParams::default(), &restored)
        .await
        .unwrap();
    stack
        .wait_condition("chat", "Ready", "True", READY_WITHIN)
        .await;
}

/// Deleting the ChatDeployment lets the real garbage collector remove everything it owns;
/// `deletionPolicy` decides the claims and generated passwords.
#[tokio::test]
async fn deletion_collects_owned_objects_and_the_policy_decides_the_data() {
    for (policy, data_kept) in [("Retain", true), ("Delete", false)] {
        let stack = Stack::new(&format!("delete-{}", policy.to_lowercase())).await;
        let mut stack = stack;
        stack.start_operator("chat-operator-0");
        let mut spec: serde_json::Value =
            serde_yaml::from_str(&read("examples/minimal.yaml")).unwrap();
        spec["spec"]["deletionPolicy"] = json!(policy);
        stack.apply_chat(spec).await.unwrap();
        stack
            .wait_condition("chat", "Ready", "True", READY_WITHIN)
            .await;
        let claims: Api<PersistentVolumeClaim> = stack.api();
        assert_eq!(
            claims.list(&Default::default()).await.unwrap().items.len(),
            4,
            "mongodb, rabbitmq, kafka and redis claims"
        );

        stack
            .chat_deployments()
            .delete("chat", &DeleteParams::background())
            .await
            .unwrap();
        let deployments: Api<Deployment> = stack.api();
        let services: Api<Service> = stack.api();
        let cds = stack.chat_deployments();
        eventually(
            || {
                format!(
                    "{policy}: everything owned collected\n{}",
                    stack.operator_logs()
                )
            },
            READY_WITHIN,
            || async {
                let ours = ListParams::default().labels("app.kubernetes.io/instance=chat");
                let left = deployments.list(&ours).await.unwrap().items.len()
                    + services.list(&ours).await.unwrap().items.len()
                    + cds.list(&Default::default()).await.unwrap().items.len();
                (left == 0)
                    .then_some(())
                    .ok_or(format!("{left} objects left"))
            },
        )
        .await;
        let claims_left = claims.list(&Default::default()).await.unwrap().items.len();
        let secrets: Api<Secret> = stack.api();
        let password = secrets.get_opt("chat-mongodb").await.unwrap();
        if data_kept {
            assert!(
                claims_left > 0 && password.is_some(),
                "Retain keeps the data"
            );
        } else {
            eventually(
                || "Delete: claims gone".into(),
                READY_WITHIN,
                || async {
                    let left = claims.list(&Default::default()).await.unwrap().items;
                    left.iter()
                        .all(|c| c.metadata.deletion_timestamp.is_some())
                        .then_some(())
                        .ok_or(format!("{}", left.len()))
                },
            )
            .await;
            assert!(password.is_none(), "Delete removes the generated passwords");
        }
    }
}

/// `paused` writes nothing but its status; `stopped` scales everything to zero and back,
/// with an autoscaled component handed over without a conflict; switching between fixed
/// replicas and an autoscaler (the autoscaler's writes simulated through the scale
/// subresource) never fights it; a JWT key rotation rolls exactly the pods that read the key.
#[tokio::test]
async fn paused_stopped_autoscaling_and_key_rotation() {
    let stack = reaches_ready("day2", "tests/fixtures/autoscaling.yaml", &[]).await;
    let deployments: Api<Deployment> = stack.api();
    let replicas = |name: &'static str| {
        let deployments = deployments.clone();
        async move { deployments.get(name).await.unwrap().spec.unwrap().replicas }
    };
    assert_eq!(
        replicas("chat-gateway").await,
        Some(2),
        "the autoscaler's minimum"
    );

    // Paused: a spec change is not applied; only the status says so.
    stack.patch_spec("chat", json!({"paused": true})).await;
    let cd = wait_reason(&stack, "ReconciliationPaused", "True", "Paused").await;
    let observed = cd.status.unwrap().observed_generation;
    let since = chrono::Utc::now();
    stack
        .patch_spec("chat", json!({"components": {"auth": {"replicas": 3}}}))
        .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(replicas("chat-auth").await, Some(2));
    let cd = stack.chat_deployments().get("chat").await.unwrap();
    assert_eq!(
        cd.status.as_ref().unwrap().observed_generation,
        observed,
        "paused, the new generation is not observed"
    );
    assert!(cd.metadata.generation > observed);
    let writes: Vec<String> = stack
        .operator_writes_since(since)
        .into_iter()
        .filter(|w| {
            !w.contains("leases/")
                && !w.contains("chatdeployments/status/")
                && !w.contains("events/")
        })
        .collect();
    assert!(writes.is_empty(), "paused, yet wrote: {writes:?}");
    stack.patch_spec("chat", json!({"paused": null})).await;
    wait_replicas(&stack, "chat-auth", 3).await;
    let cd = stack
        .wait_status("chat", "the pause lifted", READY_WITHIN, |cd| {
            let status = cd.status.as_ref().unwrap();
            status.observed_generation == cd.metadata.generation
                && status
                    .conditions
                    .iter()
                    .all(|c| c.type_ != "ReconciliationPaused")
        })
        .await;
    let ready_since = ready_transition(&cd);

    // The HPA scales the gateway through the scale subresource; the operator leaves it.
    let scale = PatchParams {
        field_manager: Some("horizontal-pod-autoscaler".into()),
        ..Default::default()
    };
    deployments
        .patch_scale(
            "chat-gateway",
            &scale,
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        replicas("chat-gateway").await,
        Some(5),
        "the operator fought the autoscaler"
    );
    let cd = stack
        .wait_status("chat", "gateway at 5 ready replicas", READY_WITHIN, |cd| {
            let components = &cd.status.as_ref().unwrap().components;
            components
                .iter()
                .any(|c| c.name == "gateway" && c.ready_replicas == 5)
        })
        .await;
    assert!(
        has_condition(&cd, "Ready", "True", "Available"),
        "{:?}",
        cd.status
    );
    assert_eq!(
        ready_transition(&cd),
        ready_since,
        "a scale-up (and the auth rollout before it) never took Ready away"
    );

    // Stopped: everything at zero, autoscalers and budgets gone; then back, with no conflict.
    stack.patch_spec("chat", json!({"stopped": true})).await;
    let hpas: Api<HorizontalPodAutoscaler> = stack.api();
    let sets: Api<StatefulSet> = stack.api();
    eventually(
        || format!("stopped\n{}", stack.operator_logs()),
        READY_WITHIN,
        || async {
            let running: i32 = deployments
                .list(&Default::default())
                .await
                .unwrap()
                .iter()
                .map(|d| d.spec.as_ref().unwrap().replicas.unwrap_or(1))
                .sum::<i32>()
                + sets
                    .list(&Default::default())
                    .await
                    .unwrap()
                    .iter()
                    .map(|s| s.spec.as_ref().unwrap().replicas.unwrap_or(1))
                    .sum::<i32>();
            let hpa = hpas.list(&Default::default()).await.unwrap().items.len();
            (running == 0 && hpa == 0)
                .then_some(())
                .ok_or(format!("{running} replicas, {hpa} HPAs"))
        },
    )
    .await;
    stack.patch_spec("chat", json!({"stopped": null, "components": {"group": {"replicas": null, "autoscaling": {"minReplicas": 3, "maxReplicas": 6}}}})).await;
    let cd = stack
        .wait_condition("chat", "Ready", "True", READY_WITHIN)
        .await;
    assert!(!has_condition(&cd, "Degraded", "True", "ApplyFailed"));
    assert_eq!(
        replicas("chat-gateway").await,
        Some(2),
        "back at the autoscaler's minimum"
    );
    assert_eq!(
        replicas("chat-group").await,
        Some(3),
        "handed to its autoscaler at its minimum"
    );
    // And from an autoscaler back to a fixed count.
    stack
        .patch_spec(
            "chat",
            json!({"components": {"group": {"autoscaling": null, "replicas": 2}}}),
        )
        .await;
    wait_replicas(&stack, "chat-group", 2).await;
    stack
        .wait_condition("chat", "Ready", "True", READY_WITHIN)
        .await;

    // JWT key rotation: every component reads the public key, so every Deployment's pods
    // roll; the dependencies do not.
    let hashes = template_hashes(&stack).await;
    let set_templates = |sets: Vec<StatefulSet>| -> Vec<String> {
        sets.into_iter()
            .map(|s| format!("{:?}", s.spec.unwrap().template))
            .collect()
    };
    let sets_before = set_templates(sets.list(&Default::default()).await.unwrap().items);
    stack
        .chat_deployments()
        .patch("chat", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"annotations": {"chat.scalablechat.dev/rotate-jwt-key": "r1"}}})))
        .await
        .unwrap();
    let cd = stack
        .wait_status("chat", "two JWT keys", READY_WITHIN, |cd| {
            cd.status.as_ref().is_some_and(|s| s.jwt_keys.len() == 2)
        })
        .await;
    assert!(cd.status.unwrap().jwt_keys[1].retire_after.is_some());
    eventually(
        || "every component rolled".into(),
        READY_WITHIN,
        || async {
            let now = template_hashes(&stack).await;
            let unchanged: Vec<&String> = now
                .iter()
                .filter(|(k, v)| hashes.get(*k) == Some(*v))
                .map(|(k, _)| k)
                .collect();
            unchanged
                .is_empty()
                .then_some(())
                .ok_or(format!("not rolled: {unchanged:?}"))
        },
    )
    .await;
    assert_eq!(
        set_templates(sets.list(&Default::default()).await.unwrap().items),
        sets_before
    );
    stack
        .wait_condition("chat", "Ready", "True", READY_WITHIN)
        .await;
}

/// The Lease's holder and spec.
async fn lease(stack: &Stack) -> Option<LeaseSpec> {
    let leases: Api<Lease> = stack.api();
    leases
        .get_opt("chat-operator-leader")
        .await
        .unwrap()
        .and_then(|l| l.spec)
}

async fn wait_leader(stack: &Stack, holder: &str) -> LeaseSpec {
    eventually(
        || format!("{holder} leads\n{}", stack.operator_logs()),
        Duration::from_secs(60),
        || async {
            let spec = lease(stack).await.unwrap_or_default();
            if spec.holder_identity.as_deref() == Some(holder) {
                Ok(spec)
            } else {
                Err(format!("{:?}", spec.holder_identity))
            }
        },
    )
    .await
}

/// Two operator replicas (the second under its own ServiceAccount with the same roles, so the
/// audit log tells them apart): only the leader writes; when the leader is SIGKILLed the other
/// takes over, never before the Lease record has stood still for its duration, and carries
/// on; a follower stops on SIGTERM.
#[tokio::test]
async fn two_replicas_only_the_leader_writes_and_the_other_takes_over() {
    let mut stack = Stack::new("leader").await;
    let since = chrono::Utc::now();
    let a = stack.start_operator("chat-operator-a");
    wait_leader(&stack, "chat-operator-a").await;
    let (b_user, b_config) = stack.second_account("chat-operator-b").await;
    stack.start_operator_with("chat-operator-b", &b_config);
    stack
        .apply_chat_yaml(&read("examples/minimal.yaml"), "chat")
        .await;
    stack
        .wait_condition("chat", "Ready", "True", READY_WITHIN)
        .await;

    let writes = ["create", "update", "patch", "delete"];
    assert!(
        !stack.operator_writes_since(since).is_empty(),
        "the leader wrote"
    );
    let follower = requests_since(&b_user, since, &writes);
    assert!(follower.is_empty(), "the follower wrote: {follower:?}");
    let follower_reads = requests_since(&b_user, since, &["get"]);
    assert!(
        follower_reads
            .iter()
            .all(|r| r.contains("leases/chat-operator-leader")),
        "the follower only watches the Lease: {follower_reads:?}"
    );

    // SIGKILL: no release. The follower takes over after the record stood still for the
    // lease duration as it observed it, then reconciles.
    let held = lease(&stack).await.unwrap();
    stack.operators[a].kill();
    let taken = wait_leader(&stack, "chat-operator-b").await;
    assert_eq!(
        taken.lease_transitions,
        Some(held.lease_transitions.unwrap_or(0) + 1)
    );
    let gap = taken.acquire_time.unwrap().0 - held.renew_time.unwrap().0;
    let duration = i64::from(held.lease_duration_seconds.unwrap());
    // Never before the record stood still for its duration (how long after is a figure,
    // printed, not asserted: it depends on the machine's load).
    assert!(
        gap.num_seconds() >= duration,
        "taken over {gap} after the last renewal, lease duration {duration}s"
    );
    println!(
        "taken over {}s after the last renewal (lease duration {duration}s)",
        gap.num_seconds()
    );
    let since = chrono::Utc::now();
    stack
        .patch_spec("chat", json!({"components": {"auth": {"replicas": 2}}}))
        .await;
    // The new leader applies the change.
    wait_replicas(&stack, "chat-auth", 2).await;
    assert!(!requests_since(&b_user, since, &writes).is_empty());

    // A third replica follows; SIGTERM stops it (before, a follower ignored it until the
    // kubelet's SIGKILL). The limit is the default termination grace period, a hang guard.
    let c = stack.start_operator("chat-operator-c");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let grace = Duration::from_secs(30);
    assert!(
        stack.operators[c].terminate(grace),
        "a follower ignored SIGTERM"
    );
    // The leader releases the Lease on SIGTERM, so the next one need not wait.
    let b = stack.operators.len() - 2;
    assert!(
        stack.operators[b].terminate(grace),
        "the leader did not stop"
    );
    let released = lease(&stack).await.unwrap();
    assert_eq!(released.holder_identity, None, "the Lease is released");
}

/// A reconcile error reaches the status and an event, and one object's failure does not stop
/// the others: with `create` on NetworkPolicies taken from the operator's Role, the API
/// server refuses those four objects (`Degraded`, reason `Forbidden`, naming them) while
/// everything else is still created; given back, the stack becomes Ready. Each generated
/// Secret has an event of its own (they used to fold into one series keeping the first note).
#[tokio::test]
async fn a_refused_call_is_reported_and_does_not_block_the_rest() {
    let mut stack = Stack::new("forbidden").await;
    let roles: Api<Role> = stack.api();
    let granted = roles.get("chat-operator").await.unwrap();
    let mut narrowed = granted.clone();
    for rule in narrowed.rules.iter_mut().flatten() {
        if rule
            .resources
            .iter()
            .flatten()
            .any(|r| r == "networkpolicies")
        {
            rule.verbs.retain(|v| v != "create");
        }
    }
    roles
        .replace("chat-operator", &PostParams::default(), &narrowed)
        .await
        .unwrap();

    stack.start_operator("chat-operator-0");
    stack
        .apply_chat_yaml(&read("examples/minimal.yaml"), "chat")
        .await;
    let cd = wait_reason(&stack, "Degraded", "True", "Forbidden").await;
    let message = message_of(&cd, "Degraded");
    assert!(message.contains("NetworkPolicy"), "{message}");
    // The event follows the status write.
    let events = eventually(
        || "a Forbidden event".into(),
        READY_WITHIN,
        || async {
            let events = stack.events("chat").await;
            if events
                .iter()
                .any(|(r, n)| r == "Forbidden" && n.contains("networkpolicies"))
            {
                Ok(events)
            } else {
                Err(format!("{events:?}"))
            }
        },
    )
    .await;
    let sets: Api<StatefulSet> = stack.api();
    assert_eq!(
        sets.list(&Default::default()).await.unwrap().items.len(),
        4,
        "the rest was applied"
    );
    let created: Vec<String> = events
        .iter()
        .filter(|(r, _)| r == "SecretCreated")
        .map(|(_, n)| n.clone())
        .collect();
    assert_eq!(
        created.len(),
        8,
        "one event per generated Secret: {created:?}"
    );

    let mut restored = roles.get("chat-operator").await.unwrap();
    restored.rules = granted.rules;
    roles
        .replace("chat-operator", &PostParams::default(), &restored)
        .await
        .unwrap();
    stack
        .wait_condition("chat", "Ready", "True", READY_WITHIN)
        .await;
}

/// A StorageClass named `name`, allowing volume expansion or not.
async fn storage_class(stack: &Stack, name: &str, expandable: bool) {
    let classes: Api<StorageClass> = Api::all(stack.admin.clone());
    let class: StorageClass = serde_json::from_value(json!({
        "metadata": {"name": name},
        "provisioner": "sim.scalablechat.dev",
        "allowVolumeExpansion": expandable,
    }))
    .unwrap();
    classes
        .create(&PostParams::default(), &class)
        .await
        .unwrap();
}

/// A managed dependency's `storage.size` grows in place: its claim grows (the StorageClass
/// allows expansion), the StatefulSet is created again around its running pod (not
/// restarted), and the stack stays Ready. What cannot be done — growing on a class without
/// expansion, shrinking, another class — is refused with `Degraded` (`StorageChangeRefused`)
/// naming the dependency, while the other changes of the same edit are applied.
#[tokio::test]
async fn storage_grows_in_place_and_impossible_changes_are_refused() {
    let mut stack = Stack::new("storage").await;
    let (grow, fixed) = (
        format!("{}-grow", stack.namespace),
        format!("{}-fixed", stack.namespace),
    );
    storage_class(&stack, &grow, true).await;
    storage_class(&stack, &fixed, false).await;
    stack.start_operator("chat-operator-0");
    let mut spec: serde_json::Value = serde_yaml::from_str(&read("examples/minimal.yaml")).unwrap();
    spec["spec"]["dependencies"] = json!({
        "redis": {"managed": {"storage": {"size": "1Gi", "storageClassName": grow}}},
        "mongodb": {"managed": {"storage": {"size": "1Gi", "storageClassName": fixed}}},
    });
    stack.apply_chat(spec).await.unwrap();
    stack
        .wait_condition("chat", "Ready", "True", READY_WITHIN)
        .await;
    let sets: Api<StatefulSet> = stack.api();
    let pods: Api<Pod> = stack.api();
    let claims: Api<PersistentVolumeClaim> = stack.api();
    let set_uid = sets.get("chat-redis").await.unwrap().uid();
    let pod_uid = pods.get("chat-redis-0").await.unwrap().uid();

    stack
        .patch_spec(
            "chat",
            json!({
                "dependencies": {
                    "redis": {"managed": {"storage": {"size": "2Gi", "storageClassName": grow}}},
                    "mongodb": {"managed": {"storage": {"size": "2Gi", "storageClassName": fixed}}},
                },
                "components": {"auth": {"replicas": 2}},
            }),
        )
        .await;
    eventually(
        || {
            format!(
                "redis grown and its StatefulSet recreated\n{}",
                stack.operator_logs()
            )
        },
        READY_WITHIN,
        || async {
            let claim = claims
                .get("data-chat-redis-0")
                .await
                .map_err(|e| e.to_string())?;
            let capacity = claim
                .status
                .and_then(|s| s.capacity)
                .and_then(|c| c.get("storage").cloned());
            let set = sets
                .get_opt("chat-redis")
                .await
                .map_err(|e| e.to_string())?;
            let template = set
                .as_ref()
                .and_then(|s| s.spec.as_ref())
                .and_then(|s| s.volume_claim_templates.clone());
            let size = template
                .and_then(|t| t[0].spec.clone())
                .and_then(|s| s.resources)
                .and_then(|r| r.requests)
                .and_then(|r| r.get("storage").cloned());
            let recreated = set.as_ref().is_some_and(|s| s.uid() != set_uid);
            (capacity.as_ref().map(|q| q.0.as_str()) == Some("2Gi")
                && size.as_ref().map(|q| q.0.as_str()) == Some("2Gi")
                && recreated)
                .then_some(())
                .ok_or(format!(
                    "capacity {capacity:?}, template {size:?}, recreated {recreated}"
                ))
        },
    )
    .await;
    assert_eq!(
        pods.get("chat-redis-0").await.unwrap().uid(),
        pod_uid,
        "the pod kept running"
    );
    let cd = wait_reason(&stack, "Degraded", "True", "StorageChangeRefused").await;
    let message = message_of(&cd, "Degraded");
    assert!(
        message.contains("mongodb") && message.contains("cannot grow"),
        "{message}"
    );
    wait_replicas(&stack, "chat-auth", 2).await;
    let events = stack.events("chat").await;
    assert!(
        events
            .iter()
            .any(|(r, n)| r == "StorageExpanded" && n.contains("data-chat-redis-0")),
        "{events:?}"
    );

    // Back to the old sizes: redis cannot shrink; mongodb's refused growth is withdrawn.
    stack
        .patch_spec(
            "chat",
            json!({"dependencies": {
                "redis": {"managed": {"storage": {"size": "1Gi", "storageClassName": grow}}},
                "mongodb": {"managed": {"storage": {"size": "1Gi", "storageClassName": fixed}}},
            }}),
        )
        .await;
    let cd = stack
        .wait_status("chat", "redis cannot shrink", READY_WITHIN, |cd| {
            cd.status.as_ref().is_some_and(|s| {
                s.conditions.iter().any(|c| {
                    c.type_ == "Degraded" && c.message.contains("redis: storage cannot shrink")
                })
            })
        })
        .await;
    let message = message_of(&cd, "Degraded");
    assert!(!message.contains("mongodb"), "{message}");
}

/// An object of a name the stack needs that the ChatDeployment does not own (here a user's
/// Service `chat-gateway`) is never taken over: `Degraded` with reason `NameConflict` names
/// it, the user's object is left as it was, everything else is applied; once the user removes
/// it, the operator creates its own and the stack becomes Ready.
#[tokio::test]
async fn an_object_it_does_not_own_is_not_taken_over() {
    let stack = Stack::new("conflict").await;
    let services: Api<Service> = stack.api();
    let theirs: Service = serde_json::from_value(json!({
        "metadata": {"name": "chat-gateway", "labels": {"team": "web"}},
        "spec": {"selector": {"app": "legacy-gateway"}, "ports": [{"port": 80}]},
    }))
    .unwrap();
    services
        .create(&PostParams::default(), &theirs)
        .await
        .unwrap();
    let mut stack = stack;
    stack.start_operator("chat-operator-0");
    stack
        .apply_chat_yaml(&read("examples/minimal.yaml"), "chat")
        .await;

    let cd = wait_reason(&stack, "Degraded", "True", "NameConflict").await;
    let message = message_of(&cd, "Degraded");
    assert!(message.contains("Service chat-gateway"), "{message}");
    let kept = services.get("chat-gateway").await.unwrap();
    assert_eq!(
        kept.spec.unwrap().selector.unwrap()["app"],
        "legacy-gateway"
    );
    assert!(kept.metadata.owner_references.is_none(), "taken over");
    let deployments: Api<Deployment> = stack.api();
    assert_eq!(
        deployments
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .len(),
        5,
        "the rest was applied"
    );

    services
        .delete("chat-gateway", &DeleteParams::default())
        .await
        .unwrap();
    stack
        .wait_condition("chat", "Ready", "True", READY_WITHIN)
        .await;
    let ours = services.get("chat-gateway").await.unwrap();
    assert!(ours
        .owner_references()
        .iter()
        .any(|o| Some(&o.uid) == cd.metadata.uid.as_ref()));
}

/// `watchNamespaces` lists two namespaces: the chart grants a Role in each and nothing
/// cluster-wide, and the operator reconciles ChatDeployments in both (a paused one only
/// writes its status, so no Pod is needed) and leaves a third namespace alone.
#[tokio::test]
async fn a_list_of_watched_namespaces_is_reconciled_with_a_role_in_each() {
    let mut stack = Stack::watching("namespaces", 1).await;
    let other = stack.other_namespaces[0].clone();
    let unwatched = format!("{other}x");
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(stack.admin.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": unwatched}})).unwrap(),
        )
        .await
        .unwrap();
    stack.start_operator("chat-operator-0");
    let paused: serde_json::Value =
        serde_yaml::from_str(&read("tests/fixtures/paused.yaml")).unwrap();
    for namespace in [&stack.namespace, &other, &unwatched] {
        let api: Api<ChatDeployment> = Api::namespaced(stack.admin.clone(), namespace);
        api.patch(
            "chat",
            &PatchParams::apply("test"),
            &Patch::Apply(paused.clone()),
        )
        .await
        .unwrap();
    }
    for namespace in [&stack.namespace, &other] {
        let api: Api<ChatDeployment> = Api::namespaced(stack.admin.clone(), namespace);
        eventually(
            || format!("paused in {namespace}\n{}", stack.operator_logs()),
            READY_WITHIN,
            || async {
                let cd = api.get("chat").await.map_err(|e| e.to_string())?;
                has_condition(&cd, "ReconciliationPaused", "True", "Paused")
                    .then_some(())
                    .ok_or(format!("{:?}", cd.status))
            },
        )
        .await;
    }
    let roles: Api<Role> = Api::namespaced(stack.admin.clone(), &other);
    assert!(
        roles.get("chat-operator").await.is_ok(),
        "a Role in {other}"
    );
    let ignored: Api<ChatDeployment> = Api::namespaced(stack.admin.clone(), &unwatched);
    assert!(
        ignored.get("chat").await.unwrap().status.is_none(),
        "the unwatched namespace is left alone"
    );
    let logs = stack.operator_logs();
    assert!(!logs.contains("forbidden"), "{logs}");
    let _ = namespaces
        .delete(&unwatched, &DeleteParams::default())
        .await;
}

/// Waits until every Deployment and StatefulSet has rolled out its current template: the
/// controllers saw it, and every replica runs it and is ready (the test's nodes play the kubelet).
async fn all_rolled(stack: &Stack) {
    let deployments: Api<Deployment> = stack.api();
    let sets: Api<StatefulSet> = stack.api();
    eventually(
        || format!("every workload rolled\n{}", stack.operator_logs()),
        READY_WITHIN,
        || async {
            for d in deployments.list(&Default::default()).await.unwrap() {
                let (spec, status) = (
                    d.spec.clone().unwrap(),
                    d.status.clone().unwrap_or_default(),
                );
                let want = spec.replicas.unwrap_or(1);
                if status.observed_generation != d.metadata.generation
                    || status.updated_replicas.unwrap_or(0) != want
                    || status.ready_replicas.unwrap_or(0) != want
                    || status.replicas.unwrap_or(0) != want
                {
                    return Err(format!("Deployment {} rolling: {status:?}", d.name_any()));
                }
            }
            for s in sets.list(&Default::default()).await.unwrap() {
                let status = s.status.clone().unwrap_or_default();
                let want = s.spec.as_ref().unwrap().replicas.unwrap_or(1);
                if status.observed_generation != s.metadata.generation
                    || status.current_revision != status.update_revision
                    || status.ready_replicas.unwrap_or(0) != want
                {
                    return Err(format!("StatefulSet {} rolling: {status:?}", s.name_any()));
                }
            }
            Ok(())
        },
    )
    .await
}

/// What the live objects say of the facts relay: the shared ConfigMap's `FACTS_RELAY`, whether
/// group and message have `REDIS_URL` and get through Redis's NetworkPolicy, and whether Redis's
/// application user may use the facts channel; each must be there with the relay only.
async fn assert_live_relay(stack: &Stack, redis: bool) {
    let configs: Api<ConfigMap> = stack.api();
    let data = configs.get("chat-config").await.unwrap().data.unwrap();
    assert_eq!(
        data.get("FACTS_RELAY").map(String::as_str),
        redis.then_some("redis"),
        "the ConfigMap's FACTS_RELAY"
    );
    let deployments: Api<Deployment> = stack.api();
    let policy: Api<NetworkPolicy> = stack.api();
    let admitted = admitted_components(&policy.get("chat-redis").await.unwrap());
    for role in ["group", "message"] {
        let template = deployments
            .get(&format!("chat-{role}"))
            .await
            .unwrap()
            .spec
            .unwrap()
            .template;
        let app = template
            .spec
            .unwrap()
            .containers
            .into_iter()
            .find(|c| c.name == chat_operator::build::APP_CONTAINER)
            .expect("the app container");
        let has_url = app.env.iter().flatten().any(|e| e.name == "REDIS_URL");
        assert_eq!(has_url, redis, "{role}'s REDIS_URL");
        assert_eq!(
            admitted.contains(&role.to_string()),
            redis,
            "{role} through Redis's NetworkPolicy: {admitted:?}"
        );
    }
    let sets: Api<StatefulSet> = stack.api();
    let args = sets
        .get("chat-redis")
        .await
        .unwrap()
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers[0]
        .args
        .clone()
        .unwrap_or_default()
        .join(" ");
    assert_eq!(
        args.contains("&chat.chat.facts"),
        redis,
        "Redis's ACL and the facts channel: {args}"
    );
}

/// `spec.factsRelay` switched on a running stack, Kafka to Redis and back, through the real API
/// server's server-side apply and the real workload controllers: each way, the live objects say
/// what the operator builds for the spec and nothing of the other setting is left behind (a key,
/// an environment variable, a policy rule, an ACL grant), every workload rolls and the stack
/// is Ready again; back on Kafka, every pod template is what it was before the switch.
#[tokio::test]
async fn facts_relay_switched_and_back_leaves_nothing_of_the_other_setting() {
    let stack = reaches_ready("relay", "examples/minimal.yaml", &[]).await;
    let before = template_hashes(&stack).await;
    assert_live_relay(&stack, false).await;
    for (relay, redis) in [("Redis", true), ("Kafka", false)] {
        let generation = stack
            .patch_spec("chat", json!({"factsRelay": relay}))
            .await
            .metadata
            .generation;
        stack
            .wait_status("chat", &format!("{relay} observed"), READY_WITHIN, |cd| {
                cd.status.as_ref().unwrap().observed_generation == generation
            })
            .await;
        all_rolled(&stack).await;
        stack
            .wait_status("chat", &format!("Ready on {relay}"), READY_WITHIN, |cd| {
                has_condition(cd, "Ready", "True", "Available")
                    && has_condition(cd, "Progressing", "False", "RolloutComplete")
            })
            .await;
        assert_live_relay(&stack, redis).await;
    }
    assert_eq!(
        template_hashes(&stack).await,
        before,
        "back on Kafka, every pod template is what it was"
    );
}
