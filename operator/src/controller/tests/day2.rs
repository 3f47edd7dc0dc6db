//! Day-2 operations through the reconcile loop: ordered upgrades and their failures, scaling
//! and `stopped`, drift repair, JWT key rotation and the deletion policy.

use super::*;
use crate::crd::{DeletionPolicy, FORCE_UPGRADE_ANNOTATION, ROTATE_JWT_KEY_ANNOTATION};
use crate::secrets::{JWT_KEYS_ANNOTATION, JWT_ROTATED_FOR_ANNOTATION};

fn version(v: &str) -> ChatDeploymentSpec {
    ChatDeploymentSpec {
        version: v.into(),
        ..Default::default()
    }
}

fn deployment_path(role: &str) -> String {
    format!("{DEPLOYMENTS_PATH}/chat-{role}")
}

/// The version label of each component's pod template, in rollout order.
fn running_versions(fake: &FakeApiServer) -> Vec<String> {
    Component::ALL
        .into_iter()
        .map(|c| {
            let d = fake
                .get(&deployment_path(c.role()))
                .expect("the Deployment exists");
            d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/version"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

fn jobs(fake: &FakeApiServer) -> Vec<Value> {
    let state = fake.0.lock().unwrap();
    state
        .objects
        .iter()
        .filter(|(p, _)| p.starts_with(&format!("{JOBS_PATH}/")))
        .map(|(_, o)| o.clone())
        .collect()
}

fn status(fake: &FakeApiServer) -> ChatDeploymentStatus {
    fake.chat_deployment().status.unwrap_or_default()
}

fn condition(fake: &FakeApiServer, type_: &str) -> (String, String, String) {
    let c = status(fake)
        .conditions
        .into_iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition"));
    (c.status, c.reason, c.message)
}

fn event_reasons(fake: &FakeApiServer) -> Vec<String> {
    fake.calls()
        .iter()
        .filter(|c| c.is_event() && c.method == Method::POST)
        .map(|c| c.body["reason"].as_str().unwrap_or_default().to_string())
        .collect()
}

async fn reconcile_stored(fake: &FakeApiServer) -> Action {
    run(fake, fake.chat_deployment()).await
}

#[tokio::test]
async fn first_install_creates_components_only_after_the_migration_succeeded() {
    let fake = FakeApiServer::default();
    run(&fake, stored(&fake, minimal(), 1)).await;
    assert!(fake.get(&deployment_path("message")).is_none());
    assert!(fake
        .get(&format!("{STATEFUL_SETS_PATH}/chat-mongodb"))
        .is_some());
    assert!(
        jobs(&fake).is_empty(),
        "the migration waits for the dependencies"
    );

    fake.settle();
    reconcile_stored(&fake).await;
    let job = jobs(&fake).pop().expect("the migration Job is created");
    assert!(fake.get(&deployment_path("message")).is_none());
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["args"], json!(["migrate"]));
    assert_eq!(
        container["image"],
        "ghcr.io/scalable-chat/chat-server:0.1.0"
    );
    assert_eq!(status(&fake).upgrade.unwrap().step, "migration");

    fake.settle();
    reconcile_stored(&fake).await;
    assert_eq!(running_versions(&fake), ["0.1.0"; 5], "all five at once");
    assert!(jobs(&fake).is_empty(), "the finished Job is pruned");
    assert_eq!(
        status(&fake).migrated_image.as_deref(),
        Some("ghcr.io/scalable-chat/chat-server:0.1.0")
    );
}

#[tokio::test]
async fn version_change_migrates_then_rolls_one_component_at_a_time() {
    let fake = FakeApiServer::default();
    install(&fake, minimal(), 1).await;
    fake.clear_calls();

    run(&fake, stored(&fake, version("0.2.0"), 2)).await;
    let job = jobs(&fake).pop().expect("the migration Job of 0.2.0");
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["image"],
        "ghcr.io/scalable-chat/chat-server:0.2.0"
    );
    assert_eq!(container["args"], json!(["migrate"]));
    let env: Vec<&str> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(env, ["MONGODB_PASSWORD", "MONGODB_URI"]);
    assert_eq!(running_versions(&fake), ["0.1.0"; 5]);
    let upgrade = status(&fake).upgrade.unwrap();
    assert_eq!(upgrade.step, "migration");
    assert_eq!(
        event_reasons(&fake),
        ["UpgradeStarted", "UpgradeStep", "RollingOut"]
    );

    // Nothing moves while the Job runs.
    reconcile_stored(&fake).await;
    assert_eq!(running_versions(&fake), ["0.1.0"; 5]);

    let expected = [
        ["0.2.0", "0.1.0", "0.1.0", "0.1.0", "0.1.0"],
        ["0.2.0", "0.2.0", "0.1.0", "0.1.0", "0.1.0"],
        ["0.2.0", "0.2.0", "0.2.0", "0.1.0", "0.1.0"],
        ["0.2.0", "0.2.0", "0.2.0", "0.2.0", "0.1.0"],
        ["0.2.0", "0.2.0", "0.2.0", "0.2.0", "0.2.0"],
    ];
    for (step, versions) in expected.iter().enumerate() {
        fake.settle();
        reconcile_stored(&fake).await;
        assert_eq!(running_versions(&fake), versions, "step {step}");
        let role = Component::ALL[step].role();
        assert_eq!(
            status(&fake).upgrade.unwrap().step,
            format!("component/{role}")
        );
        // Applied, not rolled yet: the next component waits.
        reconcile_stored(&fake).await;
        assert_eq!(running_versions(&fake), versions, "step {step} waits");
        let components = status(&fake).components;
        let reached = components.iter().find(|c| c.name == role).unwrap();
        assert_eq!(reached.version, "0.2.0");
    }
    assert!(jobs(&fake).is_empty());

    fake.settle();
    reconcile_stored(&fake).await;
    let done = status(&fake);
    assert!(done.upgrade.is_none());
    assert_eq!(done.version.as_deref(), Some("0.2.0"));
    assert_eq!(condition(&fake, READY).0, "True");
    assert!(event_reasons(&fake).contains(&"UpgradeCompleted".to_string()));
    assert!(event_reasons(&fake).contains(&"MigrationSucceeded".to_string()));
}

#[tokio::test]
async fn a_stalled_step_degrades_and_stops_the_sequence_until_the_spec_changes() {
    let fake = FakeApiServer::default();
    install(&fake, minimal(), 1).await;
    run(&fake, stored(&fake, version("0.2.0"), 2)).await;
    fake.settle();
    reconcile_stored(&fake).await; // migration done, message applied
    assert_eq!(status(&fake).upgrade.unwrap().step, "component/message");

    // message never becomes ready, and the step started 11 minutes ago.
    fake.edit(CD_PATH, |cd| {
        cd["status"]["upgrade"]["startedAt"] = json!("2024-12-31T23:49:00Z");
    });
    reconcile_stored(&fake).await;
    let (status_, reason, message) = condition(&fake, DEGRADED);
    assert_eq!(
        (status_.as_str(), reason.as_str()),
        ("True", "StepTimedOut")
    );
    assert!(
        message.contains("component/message did not finish within 600s"),
        "{message}"
    );
    assert_eq!(condition(&fake, "Progressing").1, "StepTimedOut");
    assert!(event_reasons(&fake).contains(&"UpgradeHalted".to_string()));

    // It finishes late; still nothing further rolls.
    fake.settle();
    reconcile_stored(&fake).await;
    assert_eq!(running_versions(&fake)[1], "0.1.0");

    // A spec change resumes the sequence.
    let mut spec = version("0.2.0");
    spec.log_level = Some("debug".into());
    run(&fake, stored(&fake, spec, 3)).await;
    assert_eq!(running_versions(&fake)[1], "0.2.0");
    assert_eq!(condition(&fake, DEGRADED).0, "False");
}

#[tokio::test]
async fn a_failed_migration_degrades_moves_nothing_and_is_retried_after_a_spec_change() {
    let fake = FakeApiServer::default();
    install(&fake, minimal(), 1).await;
    run(&fake, stored(&fake, version("0.2.0"), 2)).await;
    let job_path = format!(
        "{JOBS_PATH}/{}",
        jobs(&fake)[0]["metadata"]["name"].as_str().unwrap()
    );
    fake.edit(&job_path, |job| {
        job["status"] = json!({"failed": 4, "conditions": [{"type": "Failed", "status": "True"}]});
    });

    reconcile_stored(&fake).await;
    let (status_, reason, _) = condition(&fake, DEGRADED);
    assert_eq!(
        (status_.as_str(), reason.as_str()),
        ("True", "MigrationFailed")
    );
    assert!(fake.get(&job_path).is_some(), "kept for its logs");
    reconcile_stored(&fake).await;
    assert_eq!(running_versions(&fake), ["0.1.0"; 5]);

    fake.clear_calls();
    let mut spec = version("0.2.0");
    spec.log_level = Some("debug".into());
    run(&fake, stored(&fake, spec, 3)).await;
    assert!(fake
        .calls()
        .iter()
        .any(|c| c.method == Method::DELETE && c.path.starts_with(JOBS_PATH)));
    assert_eq!(running_versions(&fake), ["0.1.0"; 5]);
    reconcile_stored(&fake).await;
    assert_eq!(jobs(&fake).len(), 1, "a fresh Job runs the migration again");
    assert_eq!(jobs(&fake)[0]["status"], Value::Null);
}

#[tokio::test]
async fn skipping_a_minor_version_is_refused_until_forced() {
    let fake = FakeApiServer::default();
    install(&fake, minimal(), 1).await;

    run(&fake, stored(&fake, version("0.3.0"), 2)).await;
    let (status_, reason, message) = condition(&fake, DEGRADED);
    assert_eq!(
        (status_.as_str(), reason.as_str()),
        ("True", "VersionSkipRefused")
    );
    assert!(message.contains(FORCE_UPGRADE_ANNOTATION), "{message}");
    assert!(jobs(&fake).is_empty());
    assert_eq!(running_versions(&fake), ["0.1.0"; 5]);

    fake.edit(CD_PATH, |cd| {
        cd["metadata"]["annotations"] = json!({FORCE_UPGRADE_ANNOTATION: "true"});
    });
    reconcile_stored(&fake).await;
    assert_eq!(jobs(&fake).len(), 1, "forced: the migration of 0.3.0 runs");
}

#[tokio::test]
async fn hand_edits_to_owned_objects_are_repaired_on_the_next_reconcile() {
    let fake = FakeApiServer::default();
    install(&fake, minimal(), 1).await;
    let path = deployment_path("gateway");
    let intended = fake.get(&path).unwrap();
    fake.edit(&path, |d| {
        d["spec"]["replicas"] = json!(7);
        d["spec"]["template"]["spec"]["containers"][0]["resources"] = json!({});
    });
    let config = "/api/v1/namespaces/default/configmaps/chat-config";
    fake.edit(config, |c| c["data"]["RUST_LOG"] = json!("trace"));
    fake.clear_calls();

    reconcile_stored(&fake).await;

    let repaired = fake.get(&path).unwrap();
    assert_eq!(repaired["spec"], intended["spec"]);
    assert_eq!(fake.get(config).unwrap()["data"]["RUST_LOG"], "info");
    let apply = fake
        .calls()
        .into_iter()
        .find(|c| c.method == Method::PATCH && c.path == path)
        .unwrap();
    assert!(apply.query.contains("force=true"), "{}", apply.query);
    assert!(
        apply.query.contains("fieldManager=chat-operator"),
        "{}",
        apply.query
    );
}

#[tokio::test]
async fn a_hand_edited_image_is_rolled_back_in_order() {
    let fake = FakeApiServer::default();
    install(&fake, minimal(), 1).await;
    let path = deployment_path("chat");
    fake.edit(&path, |d| {
        d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("evil:latest");
    });

    reconcile_stored(&fake).await;

    let image =
        fake.get(&path).unwrap()["spec"]["template"]["spec"]["containers"][0]["image"].clone();
    assert_eq!(image, "ghcr.io/scalable-chat/chat-server:0.1.0");
    assert!(jobs(&fake).is_empty(), "the target's migration already ran");
}

#[tokio::test]
async fn stopped_scales_to_zero_deletes_the_hpa_and_starts_again_at_the_autoscaler_minimum() {
    let fake = FakeApiServer::default();
    install(&fake, autoscaled_chat(), 1).await;
    fake.clear_calls();
    let mut spec = autoscaled_chat();
    spec.stopped = true;

    run(&fake, stored(&fake, spec, 2)).await;

    for c in Component::ALL {
        assert_eq!(
            fake.get(&deployment_path(c.role())).unwrap()["spec"]["replicas"],
            0
        );
    }
    let mongodb = fake
        .get(&format!("{STATEFUL_SETS_PATH}/chat-mongodb"))
        .unwrap();
    assert_eq!(mongodb["spec"]["replicas"], 0);
    assert_eq!(deleted_paths(&fake), CHAT_PDB_AND_HPA);
    fake.settle();
    reconcile_stored(&fake).await;
    let (ready, reason, _) = condition(&fake, READY);
    assert_eq!((ready.as_str(), reason.as_str()), ("False", "Stopped"));
    assert_eq!(condition(&fake, "Progressing").1, "Stopped");

    // Our manager applied spec.replicas = 0.
    let chat = deployment_path("chat");
    we_own_replicas(&fake, &chat);
    fake.clear_calls();
    run(&fake, stored(&fake, autoscaled_chat(), 3)).await;
    let patches = patches_to(&fake, &chat);
    assert_eq!(
        patches[0].body["spec"],
        json!({"replicas": 2}),
        "the HPA never scales up from zero: hand over its minimum"
    );
    assert!(patches[1].body["spec"].get("replicas").is_none());
    assert!(fake.get(CHAT_HPA).is_some());
}

#[tokio::test]
async fn changing_replicas_is_applied_at_once() {
    let fake = FakeApiServer::default();
    install(&fake, minimal(), 1).await;
    let mut spec = minimal();
    spec.components = Some(ComponentsSpec {
        gateway: Some(ComponentSpec {
            replicas: Some(4),
            ..Default::default()
        }),
        ..Default::default()
    });

    run(&fake, stored(&fake, spec, 2)).await;

    assert_eq!(
        fake.get(&deployment_path("gateway")).unwrap()["spec"]["replicas"],
        4
    );
    assert!(fake
        .get("/apis/policy/v1/namespaces/default/poddisruptionbudgets/chat-gateway")
        .is_some());
    assert!(status(&fake).upgrade.is_none(), "scaling is not an upgrade");
}

fn config_hashes(fake: &FakeApiServer) -> Vec<String> {
    Component::ALL
        .into_iter()
        .map(|c| {
            fake.get(&deployment_path(c.role())).unwrap()["spec"]["template"]["metadata"]
                ["annotations"][CONFIG_HASH]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

const CONFIG_HASH: &str = "chat.scalablechat.dev/config-hash";

fn secret_text(secret: &Value, key: &str) -> String {
    if let Some(text) = secret["stringData"][key].as_str() {
        return text.to_string();
    }
    use base64::Engine;
    let encoded = secret["data"][key].as_str().unwrap();
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn the_rotate_annotation_rotates_the_jwt_key_and_rolls_every_pod() {
    let fake = FakeApiServer::default();
    install(&fake, minimal(), 1).await;
    let jwt_path = format!("{SECRETS_PATH}/chat-jwt");
    let before = fake.get(&jwt_path).unwrap();
    let hashes = config_hashes(&fake);
    fake.edit(CD_PATH, |cd| {
        cd["metadata"]["annotations"] = json!({ROTATE_JWT_KEY_ANNOTATION: "2025-01-01"});
    });
    fake.clear_calls();

    reconcile_stored(&fake).await;

    let writes = secret_writes(&fake.calls())
        .into_iter()
        .map(|c| (c.method.clone(), c.path.clone()))
        .collect::<Vec<_>>();
    assert_eq!(writes, [(Method::PUT, jwt_path.clone())]);
    let after = fake.get(&jwt_path).unwrap();
    assert_ne!(
        secret_text(&after, "private.pem"),
        secret_text(&before, "private.pem")
    );
    let bundle = secret_text(&after, "public.pem");
    assert_eq!(bundle.matches("-----BEGIN PUBLIC KEY-----").count(), 2);
    assert!(
        bundle.ends_with(&secret_text(&before, "public.pem")),
        "new key first, old kept"
    );
    assert_eq!(
        after["metadata"]["annotations"][JWT_ROTATED_FOR_ANNOTATION],
        "2025-01-01"
    );
    let keys = status(&fake).jwt_keys;
    assert_eq!(keys.len(), 2);
    assert!(keys[0].retire_after.is_none());
    // Access-token lifetime (900 s) plus the step timeout (600 s).
    assert_eq!(
        keys[1].retire_after.as_ref().unwrap().0,
        Utc.with_ymd_and_hms(2025, 1, 1, 0, 25, 0).unwrap()
    );
    let rolled = config_hashes(&fake);
    assert!(
        hashes.iter().zip(&rolled).all(|(a, b)| a != b),
        "every pod reads the bundle"
    );
    assert!(event_reasons(&fake).contains(&"JwtKeyRotated".to_string()));

    // Done once per annotation value.
    fake.clear_calls();
    reconcile_stored(&fake).await;
    assert!(secret_writes(&fake.calls()).is_empty());

    // Past its retirement the old key leaves the bundle.
    fake.edit(&jwt_path, |s| {
        let mut keys: Vec<Value> = serde_json::from_str(
            s["metadata"]["annotations"][JWT_KEYS_ANNOTATION]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        keys[1]["retireAfter"] = json!("2024-12-31T00:00:00Z");
        s["metadata"]["annotations"][JWT_KEYS_ANNOTATION] =
            json!(serde_json::to_string(&keys).unwrap());
    });
    reconcile_stored(&fake).await;
    let retired = fake.get(&jwt_path).unwrap();
    assert_eq!(
        secret_text(&retired, "public.pem")
            .matches("-----BEGIN PUBLIC KEY-----")
            .count(),
        1
    );
    assert_eq!(status(&fake).jwt_keys.len(), 1);
    assert!(event_reasons(&fake).contains(&"JwtKeyRetired".to_string()));
}

#[tokio::test]
async fn a_user_supplied_key_secret_is_never_rotated() {
    let fake = FakeApiServer::default();
    fake.put(
        &format!("{SECRETS_PATH}/my-keys"),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "my-keys"},
               "stringData": {"private.pem": "p", "public.pem": "q"}}),
    );
    let mut spec = minimal();
    spec.auth = Some(crate::crd::AuthSpec {
        jwt_secret_name: Some("my-keys".into()),
        ..Default::default()
    });
    let mut cd = stored(&fake, spec, 1);
    cd.metadata.annotations = Some([(ROTATE_JWT_KEY_ANNOTATION.into(), "now".into())].into());

    run(&fake, cd).await;

    assert!(!fake
        .calls()
        .iter()
        .any(|c| c.method == Method::PUT && c.path.ends_with("/my-keys")));
    assert!(status(&fake).jwt_keys.is_empty());
}

fn with_policy(policy: DeletionPolicy) -> ChatDeploymentSpec {
    ChatDeploymentSpec {
        deletion_policy: Some(policy),
        ..minimal()
    }
}

const CLAIMS_PATH: &str = "/api/v1/namespaces/default/persistentvolumeclaims";

#[tokio::test]
async fn deletion_policy_delete_finalizes_by_deleting_the_data() {
    let fake = FakeApiServer::default();
    install(&fake, with_policy(DeletionPolicy::Delete), 1).await;
    assert_eq!(
        fake.chat_deployment().metadata.finalizers,
        Some(vec![FINALIZER.to_string()])
    );
    // An instance's object that no owner reference ties to the ChatDeployment.
    let unowned = |api_version: &str, kind: &str, name: &str, label: (&str, &str)| {
        json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "labels": {
            "app.kubernetes.io/name": "scalable-chat",
            "app.kubernetes.io/instance": "chat",
            label.0: label.1}}})
    };
    // A StatefulSet's claim: deleted by its labels.
    fake.put(
        &format!("{CLAIMS_PATH}/data-chat-mongodb-0"),
        unowned(
            "v1",
            "PersistentVolumeClaim",
            "data-chat-mongodb-0",
            ("app.kubernetes.io/component", "mongodb"),
        ),
    );
    // Carries the instance's labels but was not created by the operator: left alone.
    fake.put(
        &format!("{STATEFUL_SETS_PATH}/chat-legacy"),
        unowned(
            "apps/v1",
            "StatefulSet",
            "chat-legacy",
            ("app.kubernetes.io/managed-by", "chat-operator"),
        ),
    );
    fake.edit(CD_PATH, |cd| {
        cd["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:00:00Z");
    });
    fake.clear_calls();

    reconcile_stored(&fake).await;

    let deleted = deleted_paths(&fake);
    assert!(
        deleted.contains(&format!("{STATEFUL_SETS_PATH}/chat-mongodb")),
        "{deleted:#?}"
    );
    assert!(
        deleted.contains(&format!("{CLAIMS_PATH}/data-chat-mongodb-0")),
        "{deleted:#?}"
    );
    assert!(
        deleted.contains(&format!("{SECRETS_PATH}/chat-mongodb")),
        "{deleted:#?}"
    );
    assert!(
        !deleted.contains(&format!("{STATEFUL_SETS_PATH}/chat-legacy")),
        "not owned by this ChatDeployment"
    );
    let claims = fake
        .calls()
        .into_iter()
        .find(|c| c.path == CLAIMS_PATH)
        .unwrap();
    assert!(
        claims.query.contains("app.kubernetes.io%2Finstance%3Dchat"),
        "{}",
        claims.query
    );
    assert_eq!(fake.chat_deployment().metadata.finalizers, Some(vec![]));
    assert!(!fake
        .calls()
        .iter()
        .any(|c| c.method == Method::PATCH && c.path.starts_with("/apis/apps")));
}

#[tokio::test]
async fn deletion_policy_retain_adds_no_finalizer_and_deleting_touches_nothing() {
    let fake = FakeApiServer::default();
    install(&fake, with_policy(DeletionPolicy::Retain), 1).await;
    assert!(!fake
        .calls()
        .iter()
        .any(|c| c.method == Method::PATCH && c.path == CD_PATH));
    fake.edit(CD_PATH, |cd| {
        cd["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:00:00Z");
        cd["metadata"]["finalizers"] = json!(["foregroundDeletion"]);
    });
    fake.clear_calls();

    reconcile_stored(&fake).await;

    assert!(fake.calls().is_empty(), "{:#?}", fake.calls());
}

#[tokio::test]
async fn switching_back_to_retain_removes_the_finalizer() {
    let fake = FakeApiServer::default();
    install(&fake, with_policy(DeletionPolicy::Delete), 1).await;
    run(&fake, stored(&fake, with_policy(DeletionPolicy::Retain), 2)).await;
    assert_eq!(fake.chat_deployment().metadata.finalizers, Some(vec![]));
}
