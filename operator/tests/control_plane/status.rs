//! `status.conditions` is a map-list keyed by `type` on the real API server: writes that grow
//! and shrink the list succeed (the operator's own form, a JSON patch replacing the status,
//! and a merge patch), another tool can server-side apply a condition type of its own with
//! `kubectl` and remove it again, and the operator keeps that condition while its own
//! conditions come and go. Two entries of one type are not refused by Kubernetes 1.25's status
//! subresource, and they then break every server-side apply of the object: the operator's next
//! status write removes them.

use std::time::Duration;

use chat_operator::crd::ChatDeployment;
use kube::api::{Patch, PatchParams};
use kube::Api;
use serde_json::{json, Value};

use super::harness::Stack;

const READY_WITHIN: Duration = Duration::from_secs(180);

/// A condition of `type_`, as every writer here sends it.
fn condition(type_: &str, status: &str) -> Value {
    json!({
        "type": type_, "status": status, "reason": "Tested", "message": format!("{type_} {status}"),
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    })
}

fn types(cd: &ChatDeployment) -> Vec<String> {
    cd.status
        .iter()
        .flat_map(|s| s.conditions.iter().map(|c| c.type_.clone()))
        .collect()
}

/// Replace the whole status with a JSON patch, as the operator writes it.
async fn replace_status(api: &Api<ChatDeployment>, name: &str, status: Value) -> ChatDeployment {
    let patch = json!([{"op": "add", "path": "/status", "value": status}]);
    let request = http::Request::patch(format!("{}/{name}/status", api.resource_url()))
        .header(http::header::CONTENT_TYPE, "application/json-patch+json")
        .body(serde_json::to_vec(&patch).unwrap())
        .unwrap();
    api.clone()
        .into_client()
        .request::<ChatDeployment>(request)
        .await
        .unwrap_or_else(|e| panic!("the status {status} is refused: {e}"))
}

/// `kubectl apply --server-side --subresource=status` of `conditions` as field manager
/// `manager`.
fn kubectl_apply_status(stack: &Stack, name: &str, manager: &str, conditions: Value) {
    let object = json!({
        "apiVersion": "chat.scalablechat.dev/v1alpha1",
        "kind": "ChatDeployment",
        "metadata": {"name": name},
        "status": {"conditions": conditions},
    });
    let file = std::env::temp_dir().join(format!("{}-{name}-{manager}.json", stack.namespace));
    std::fs::write(&file, object.to_string()).unwrap();
    stack.kubectl(&[
        "apply",
        "--server-side",
        "--subresource=status",
        &format!("--field-manager={manager}"),
        "-f",
        file.to_str().unwrap(),
    ]);
    let _ = std::fs::remove_file(file);
}

#[tokio::test]
async fn status_conditions_are_a_map_list_that_grows_and_shrinks() {
    let stack = Stack::new("status-conditions").await;
    let api = stack.chat_deployments();
    stack
        .apply_chat(json!({
            "apiVersion": "chat.scalablechat.dev/v1alpha1",
            "kind": "ChatDeployment",
            "metadata": {"name": "chat"},
            "spec": {"version": "0.1.0"},
        }))
        .await
        .expect("accepted");

    // Grown one type at a time, shrunk to one, grown again in another order: with the JSON
    // patch the operator sends and with a merge patch (which also replaces a list whole).
    let sequence: [&[&str]; 6] = [
        &["Ready"],
        &["Ready", "Progressing"],
        &["Ready", "Progressing", "Degraded"],
        &["Ready", "Progressing", "Degraded", "ReconciliationPaused"],
        &["Degraded"],
        &["ReconciliationPaused", "Ready", "Degraded"],
    ];
    for (round, merge) in [(0, false), (1, true)] {
        for written in sequence {
            let conditions: Vec<Value> = written
                .iter()
                .map(|t| condition(t, if round == 0 { "True" } else { "False" }))
                .collect();
            let status = json!({"observedGeneration": 1, "conditions": conditions});
            let stored = if merge {
                api.patch_status(
                    "chat",
                    &PatchParams::default(),
                    &Patch::Merge(json!({ "status": status })),
                )
                .await
                .unwrap_or_else(|e| panic!("merge patch of {written:?} refused: {e}"))
            } else {
                replace_status(&api, "chat", status).await
            };
            assert_eq!(types(&stored), written, "merge patch: {merge}");
        }
    }

    // Another tool applies a condition type of its own, server-side, with kubectl: it joins
    // the others; applied again without it, it is gone and the others stay.
    let before = types(&api.get("chat").await.unwrap());
    kubectl_apply_status(
        &stack,
        "chat",
        "backup-tool",
        json!([condition("example.com/BackedUp", "True")]),
    );
    let with_backup = types(&api.get("chat").await.unwrap());
    assert_eq!(
        with_backup,
        [before.clone(), vec!["example.com/BackedUp".to_owned()]].concat()
    );
    kubectl_apply_status(
        &stack,
        "chat",
        "backup-tool",
        json!([condition("example.com/BackedUp", "False")]),
    );
    let cd = api.get("chat").await.unwrap();
    let backup = &cd.status.as_ref().unwrap().conditions[before.len()];
    assert_eq!(
        (backup.type_.as_str(), backup.status.as_str()),
        ("example.com/BackedUp", "False")
    );
    kubectl_apply_status(&stack, "chat", "backup-tool", json!([]));
    assert_eq!(types(&api.get("chat").await.unwrap()), before);

    // Two entries of one type: the status subresource of Kubernetes 1.25 takes them (it does
    // not check a map-list's keys as the main resource does), and from then on a server-side
    // apply of the object — the spec too — fails until they are gone.
    let spec = json!({
        "apiVersion": "chat.scalablechat.dev/v1alpha1",
        "kind": "ChatDeployment",
        "metadata": {"name": "chat"},
        "spec": {"version": "0.1.0"},
    });
    api.patch_status(
        "chat",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"conditions": [
            condition("Ready", "True"), condition("Ready", "False"),
        ]}})),
    )
    .await
    .expect("taken");
    let refused = stack.apply_chat(spec.clone()).await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(e))
            if e.message.contains(".status.conditions: duplicate entries for key [type=\"Ready\"]")),
        "{refused:?}"
    );
    replace_status(
        &api,
        "chat",
        json!({"conditions": [condition("Ready", "True")]}),
    )
    .await;
    stack.apply_chat(spec).await.expect("applies again");
}

/// The operator's status writes with a map-list: paused, its only condition is
/// `ReconciliationPaused`; stopped instead, that one goes and `Ready`, `Progressing` and
/// `Degraded` come; a condition another tool applied meanwhile is kept throughout; a second
/// `Ready` someone wrote is gone with the operator's next status write, and the object can be
/// server-side applied again.
#[tokio::test]
async fn the_operator_keeps_a_condition_another_tool_applied() {
    let mut stack = Stack::new("status-foreign").await;
    stack.start_operator("chat-operator-0");
    stack
        .apply_chat(json!({
            "apiVersion": "chat.scalablechat.dev/v1alpha1",
            "kind": "ChatDeployment",
            "metadata": {"name": "chat"},
            "spec": {"version": "0.1.0", "paused": true},
        }))
        .await
        .expect("accepted");
    let cd = stack
        .wait_condition("chat", "ReconciliationPaused", "True", READY_WITHIN)
        .await;
    assert_eq!(types(&cd), ["ReconciliationPaused"]);

    kubectl_apply_status(
        &stack,
        "chat",
        "backup-tool",
        json!([condition("example.com/BackedUp", "True")]),
    );
    stack
        .patch_spec("chat", json!({"paused": null, "stopped": true}))
        .await;
    let cd = stack
        .wait_status(
            "chat",
            "Ready=False (Stopped), no longer paused",
            READY_WITHIN,
            |cd| {
                let status = cd.status.as_ref().unwrap();
                status
                    .conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.reason == "Stopped")
                    && status
                        .conditions
                        .iter()
                        .all(|c| c.type_ != "ReconciliationPaused")
            },
        )
        .await;
    let mut kept = types(&cd);
    kept.sort();
    assert_eq!(
        kept,
        ["Degraded", "Progressing", "Ready", "example.com/BackedUp"],
        "{:#?}",
        cd.status
    );
    let backup = cd
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "example.com/BackedUp")
        .unwrap();
    assert_eq!(backup.status, "True");

    let mut doubled = serde_json::to_value(&cd.status.as_ref().unwrap().conditions).unwrap();
    doubled
        .as_array_mut()
        .unwrap()
        .push(condition("Ready", "Unknown"));
    stack
        .chat_deployments()
        .patch_status(
            "chat",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": doubled}})),
        )
        .await
        .expect("taken");
    let cd = stack
        .wait_status("chat", "one Ready again", READY_WITHIN, |cd| {
            types(cd).iter().filter(|t| *t == "Ready").count() == 1
        })
        .await;
    let mut kept = types(&cd);
    kept.sort();
    assert_eq!(
        kept,
        ["Degraded", "Progressing", "Ready", "example.com/BackedUp"]
    );
    stack
        .apply_chat(json!({
            "apiVersion": "chat.scalablechat.dev/v1alpha1",
            "kind": "ChatDeployment",
            "metadata": {"name": "chat"},
            "spec": {"version": "0.1.0", "stopped": true},
        }))
        .await
        .expect("a server-side apply succeeds again");
}
