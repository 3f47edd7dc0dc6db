//! Pod overrides through the real API server, scheduler and workload controllers: a managed
//! dependency's and the migration Job's `podOverrides` reach their pod templates and the pods
//! created from them (the priority admission resolves the class, the scheduler honours the
//! node selector and the spread constraint), and the stack still becomes Ready.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::watcher;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use super::harness::Stack;
use super::nodes::NODES;

/// A guard against hangs, not a performance target (as in the scenarios).
const READY_WITHIN: Duration = Duration::from_secs(180);
const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
const PRIORITY: i32 = 1000;

/// The overrides given to the workload whose pods carry `component`, with the PriorityClass
/// `class`. The component label among them is the operator's: it must not win.
fn overrides(component: &str, class: &str) -> Value {
    json!({
        "labels": {"example.com/team": "data", COMPONENT_LABEL: "hijacked"},
        "annotations": {"example.com/backup": "daily"},
        // The simulated nodes' labels: the pods must still be scheduled.
        "nodeSelector": {"type": "simulated", "kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "data", "effect": "NoSchedule"}],
        "priorityClassName": class,
        "topologySpreadConstraints": [{
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app.kubernetes.io/instance": "chat", COMPONENT_LABEL: component}},
        }],
        "env": [{"name": "EXTRA_SETTING", "value": "from-overrides"}],
    })
}

/// The first object labelled `selector` that appears in `api`, however briefly it exists: the
/// migration Job is deleted as soon as it succeeded, so it is watched rather than polled.
fn first_seen<K>(api: Api<K>, selector: &str) -> JoinHandle<K>
where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    K::DynamicType: Default,
{
    let config = watcher::Config::default().labels(selector);
    tokio::spawn(async move {
        let mut events = watcher(api, config).boxed();
        while let Some(event) = events.next().await {
            if let Ok(watcher::Event::Apply(object) | watcher::Event::InitApply(object)) = event {
                return object;
            }
        }
        unreachable!("a watch does not end")
    })
}

/// What [`first_seen`] saw; it has seen it once the stack is Ready.
async fn seen<K>(watch: JoinHandle<K>) -> K {
    tokio::time::timeout(Duration::from_secs(10), watch)
        .await
        .expect("the object was seen before the stack became Ready")
        .expect("the watch task does not panic")
}

/// Whether a pod template (or a pod) of `component` carries every override, with the main
/// container `container`.
fn assert_overridden(
    what: &str,
    metadata: &ObjectMeta,
    pod: &PodSpec,
    container: &str,
    component: &str,
    class: &str,
) {
    for (map, key, value) in [
        (&metadata.labels, "example.com/team", "data"),
        // The operator's label wins over the override.
        (&metadata.labels, COMPONENT_LABEL, component),
        (&metadata.annotations, "example.com/backup", "daily"),
    ] {
        let found = map.as_ref().and_then(|m| m.get(key));
        assert_eq!(
            found.map(String::as_str),
            Some(value),
            "{what}: {key} in {map:?}"
        );
    }
    assert_eq!(
        pod.node_selector,
        Some(BTreeMap::from([
            ("kubernetes.io/os".to_string(), "linux".to_string()),
            ("type".into(), "simulated".into()),
        ])),
        "{what}"
    );
    let tolerations = pod.tolerations.clone().unwrap_or_default();
    assert!(
        tolerations
            .iter()
            .any(|t| t.key.as_deref() == Some("dedicated") && t.value.as_deref() == Some("data")),
        "{what}: {tolerations:?}"
    );
    assert_eq!(pod.priority_class_name.as_deref(), Some(class), "{what}");
    let spread = pod.topology_spread_constraints.clone().unwrap_or_default();
    assert_eq!(spread.len(), 1, "{what}: {spread:?}");
    assert_eq!(spread[0].topology_key, "kubernetes.io/hostname", "{what}");
    assert_eq!(spread[0].when_unsatisfiable, "DoNotSchedule", "{what}");
    let pull: Vec<String> = pod
        .image_pull_secrets
        .iter()
        .flatten()
        .map(|s| s.name.clone())
        .collect();
    assert_eq!(pull, ["registry-credentials"], "{what}");
    let main = pod
        .containers
        .iter()
        .find(|c| c.name == container)
        .unwrap_or_else(|| panic!("{what}: no container {container}"));
    assert!(
        main.env
            .iter()
            .flatten()
            .any(|e| e.name == "EXTRA_SETTING" && e.value.as_deref() == Some("from-overrides")),
        "{what}: {:?}",
        main.env
    );
}

#[tokio::test]
async fn dependency_and_migration_overrides_reach_their_pods_and_the_stack_gets_ready() {
    let mut stack = Stack::new("overrides").await;
    // PriorityClasses are cluster-wide: one named after the test's namespace.
    let class = format!("{}-data", stack.namespace);
    let classes: Api<PriorityClass> = Api::all(stack.admin.clone());
    let priority: PriorityClass = serde_json::from_value(json!({
        "metadata": {"name": class},
        "value": PRIORITY,
        // Other tests share the nodes: queue ahead of their pods, never evict them.
        "preemptionPolicy": "Never",
        "description": "chat-operator control-plane test",
    }))
    .unwrap();
    classes
        .create(&PostParams::default(), &priority)
        .await
        .expect("the PriorityClass is created");

    let migrate = "app.kubernetes.io/instance=chat,app.kubernetes.io/component=migrate";
    let job = first_seen(stack.api::<Job>(), migrate);
    let job_pod = first_seen(stack.api::<Pod>(), migrate);
    stack.start_operator("chat-operator-0");
    stack
        .apply_chat(json!({
            "apiVersion": "chat.scalablechat.dev/v1alpha1",
            "kind": "ChatDeployment",
            "metadata": {"name": "chat"},
            "spec": {
                "version": "0.1.0",
                "imagePullSecrets": [{"name": "registry-credentials"}],
                "dependencies": {"redis": {"managed": {"podOverrides": overrides("redis", &class)}}},
                "migration": {"podOverrides": overrides("migrate", &class)},
            },
        }))
        .await
        .expect("the API server accepts the overrides");
    stack
        .wait_condition("chat", "Ready", "True", READY_WITHIN)
        .await;

    let redis = stack.api::<StatefulSet>().get("chat-redis").await.unwrap();
    let redis = redis.spec.unwrap();
    let redis_pod = stack.api::<Pod>().get("chat-redis-0").await.unwrap();
    // The migration Job, as it was while it existed, and its pod.
    let job = seen(job).await.spec.unwrap().template;
    let job_pod = seen(job_pod).await;
    for (what, metadata, pod, container, component) in [
        (
            "StatefulSet chat-redis",
            redis.template.metadata.clone(),
            redis.template.spec.clone(),
            "redis",
            "redis",
        ),
        (
            "pod chat-redis-0",
            Some(redis_pod.metadata.clone()),
            redis_pod.spec.clone(),
            "redis",
            "redis",
        ),
        (
            "migration Job",
            job.metadata,
            job.spec,
            "chat-server",
            "migrate",
        ),
        (
            "migration pod",
            Some(job_pod.metadata),
            job_pod.spec.clone(),
            "chat-server",
            "migrate",
        ),
    ] {
        let (metadata, pod) = (metadata.unwrap_or_default(), pod.unwrap_or_default());
        assert_overridden(what, &metadata, &pod, container, component, &class);
    }

    // The selector is the operator's.
    let selector = redis.selector.match_labels.unwrap_or_default();
    assert_eq!(
        selector.get(COMPONENT_LABEL).map(String::as_str),
        Some("redis")
    );
    assert!(!selector.contains_key("example.com/team"), "{selector:?}");
    // The pods were admitted with the class's priority; redis was scheduled on a simulated node.
    let (redis_pod, job_pod) = (redis_pod.spec.unwrap(), job_pod.spec.unwrap());
    assert_eq!(
        redis_pod.priority,
        Some(PRIORITY),
        "the priority admission resolved the class"
    );
    assert_eq!(job_pod.priority, Some(PRIORITY));
    let node = redis_pod.node_name.as_deref();
    assert!(node.is_some_and(|n| NODES.contains(&n)), "{node:?}");
    // The other dependencies are left alone.
    let mongodb = stack
        .api::<StatefulSet>()
        .get("chat-mongodb")
        .await
        .unwrap();
    let mongodb_pod = mongodb.spec.unwrap().template.spec.unwrap();
    assert_eq!(mongodb_pod.priority_class_name, None);
    assert_eq!(mongodb_pod.topology_spread_constraints, None);

    classes
        .delete(&class, &DeleteParams::default())
        .await
        .expect("the PriorityClass is deleted");
}
