//! The reconcile loop against a mocked API server (controller-rs `fixtures.rs` style, with
//! `tower_test::mock`). The fake answers like a tiny API server (objects by path, SSA as a
//! replace that bumps `metadata.generation` when the spec changes, merge patches, 404 for
//! unknown names) and records every call, so each test states the sequence of writes a user
//! would expect. [`FakeApiServer::settle`] plays the controllers: every workload finishes
//! rolling and every Job succeeds. Upgrades, scaling, rotation and deletion are in
//! [`day2`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::TimeZone;
use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use kube::runtime::events::Reporter;
use kube::Client;
use serde_json::{json, Value};

use super::*;
use crate::crd::{AutoscalingSpec, ChatDeploymentSpec, ComponentSpec, ComponentsSpec};
use crate::secrets::{key_pair_pem, KeyPairPem};

mod day2;

/// One call the reconciler made.
#[derive(Clone, Debug)]
struct Call {
    method: Method,
    path: String,
    query: String,
    body: Value,
}

impl Call {
    fn is_write(&self) -> bool {
        self.method != Method::GET
    }
    fn is_event(&self) -> bool {
        self.path.contains("/events")
    }
}

/// Objects by path and the log of calls.
#[derive(Default)]
struct FakeState {
    objects: BTreeMap<String, Value>,
    calls: Vec<Call>,
}

#[derive(Clone, Default)]
struct FakeApiServer(Arc<Mutex<FakeState>>);

impl FakeApiServer {
    /// A client whose requests this fake answers.
    fn client(&self) -> Client {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let state = self.0.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                let bytes = body.collect_bytes().await.unwrap();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let merge = parts
                    .headers
                    .get("content-type")
                    .is_some_and(|t| t.as_bytes().starts_with(b"application/merge-patch"));
                let response = state.lock().unwrap().answer(
                    parts.method,
                    parts.uri.path().to_string(),
                    parts.uri.query().unwrap_or_default(),
                    merge,
                    body,
                );
                send.send_response(response);
            }
        });
        Client::new(service, "default")
    }

    fn calls(&self) -> Vec<Call> {
        self.0.lock().unwrap().calls.clone()
    }

    fn clear_calls(&self) {
        self.0.lock().unwrap().calls.clear();
    }

    fn put(&self, path: &str, object: Value) {
        self.0.lock().unwrap().objects.insert(path.into(), object);
    }

    fn get(&self, path: &str) -> Option<Value> {
        self.0.lock().unwrap().objects.get(path).cloned()
    }

    /// Change a stored object in place.
    fn edit(&self, path: &str, change: impl FnOnce(&mut Value)) {
        let mut state = self.0.lock().unwrap();
        change(state.objects.get_mut(path).expect("the object is stored"));
    }

    /// The stored ChatDeployment, as the next reconcile would receive it.
    fn chat_deployment(&self) -> ChatDeployment {
        serde_json::from_value(self.get(CD_PATH).expect("the ChatDeployment is stored")).unwrap()
    }

    /// Play the workload controllers: every Deployment and StatefulSet has rolled out its
    /// latest spec with every replica ready, and every Job has succeeded.
    fn settle(&self) {
        let mut state = self.0.lock().unwrap();
        for (path, object) in state.objects.iter_mut() {
            let generation = object["metadata"]["generation"].clone();
            let replicas = object["spec"]["replicas"].as_i64().unwrap_or(1);
            if path.contains("/deployments/") {
                object["status"] = json!({
                    "observedGeneration": generation, "replicas": replicas,
                    "updatedReplicas": replicas, "readyReplicas": replicas,
                    "availableReplicas": replicas,
                });
            } else if path.contains("/statefulsets/") {
                object["status"] = json!({
                    "observedGeneration": generation, "replicas": replicas,
                    "updatedReplicas": replicas, "readyReplicas": replicas,
                    "availableReplicas": replicas,
                    "currentRevision": "rev", "updateRevision": "rev",
                });
            } else if path.contains("/jobs/") {
                object["status"] = json!({
                    "succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}],
                });
            }
        }
    }
}

const DEPLOYMENTS_PATH: &str = "/apis/apps/v1/namespaces/default/deployments";
const STATEFUL_SETS_PATH: &str = "/apis/apps/v1/namespaces/default/statefulsets";
const JOBS_PATH: &str = "/apis/batch/v1/namespaces/default/jobs";

/// RFC 7386: `patch` merged into `target`.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

const CD_PATH: &str =
    "/apis/chat.scalablechat.dev/v1alpha1/namespaces/default/chatdeployments/chat";
const SECRETS_PATH: &str = "/api/v1/namespaces/default/secrets";

fn respond(code: StatusCode, body: Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

fn not_found(path: &str) -> Response<Body> {
    respond(
        StatusCode::NOT_FOUND,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": format!("{path} not found"), "reason": "NotFound", "code": 404}),
    )
}

impl FakeState {
    fn answer(
        &mut self,
        method: Method,
        path: String,
        query: &str,
        merge_patch: bool,
        body: Value,
    ) -> Response<Body> {
        self.calls.push(Call {
            method: method.clone(),
            path: path.clone(),
            query: query.into(),
            body: body.clone(),
        });
        match method {
            Method::GET if query.contains("labelSelector") => {
                let prefix = format!("{path}/");
                let items: Vec<Value> = self
                    .objects
                    .iter()
                    .filter(|(p, _)| p.starts_with(&prefix) && !p[prefix.len()..].contains('/'))
                    .map(|(_, o)| o.clone())
                    .collect();
                respond(
                    StatusCode::OK,
                    json!({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items}),
                )
            }
            Method::GET => match self.objects.get(&path) {
                Some(object) => respond(StatusCode::OK, object.clone()),
                None => not_found(&path),
            },
            Method::POST => {
                let mut object = body;
                let name = object["metadata"]["name"]
                    .as_str()
                    .unwrap_or("event")
                    .to_string();
                object["metadata"]["uid"] = json!(format!("uid-{name}"));
                object["metadata"]["resourceVersion"] = json!("1");
                object["metadata"]["generation"] = json!(1);
                self.objects
                    .insert(format!("{path}/{name}"), object.clone());
                respond(StatusCode::CREATED, object)
            }
            Method::PATCH => {
                if let Some(object_path) = path.strip_suffix("/status") {
                    let Some(object) = self.objects.get_mut(object_path) else {
                        return not_found(&path);
                    };
                    // The operator replaces the whole status with a JSON patch.
                    let ops = body.as_array().expect("a JSON patch");
                    assert_eq!(ops.len(), 1, "{body}");
                    assert_eq!(
                        (&ops[0]["op"], &ops[0]["path"]),
                        (&json!("add"), &json!("/status"))
                    );
                    object["status"] = ops[0]["value"].clone();
                    return respond(StatusCode::OK, object.clone());
                }
                if merge_patch {
                    let Some(object) = self.objects.get_mut(&path) else {
                        return not_found(&path);
                    };
                    merge(object, &body);
                    return respond(StatusCode::OK, object.clone());
                }
                let mut object = body;
                let mut generation = 1;
                if let Some(existing) = self.objects.get(&path) {
                    // A field the body leaves out that another manager set stays, as with
                    // server-side apply: the replicas handed over to an autoscaler.
                    let replicas = &existing["spec"]["replicas"];
                    if object["spec"].get("replicas").is_none() && !replicas.is_null() {
                        object["spec"]["replicas"] = replicas.clone();
                    }
                    if object["spec"].as_object().is_some_and(|s| s.len() == 1)
                        && object["spec"].get("replicas").is_some()
                    {
                        // The hand-over manager's apply of `replicas` alone.
                        let mut merged = existing.clone();
                        merged["spec"]["replicas"] = object["spec"]["replicas"].clone();
                        object = merged;
                    }
                    object["status"] = existing["status"].clone();
                    object["metadata"]["uid"] = existing["metadata"]["uid"].clone();
                    generation = existing["metadata"]["generation"].as_i64().unwrap_or(1);
                    if existing["spec"] != object["spec"] {
                        generation += 1;
                    }
                }
                object["metadata"]["generation"] = json!(generation);
                self.objects.insert(path, object.clone());
                respond(StatusCode::OK, object)
            }
            Method::PUT => {
                let mut object = body;
                if let Some(existing) = self.objects.get(&path) {
                    object["status"] = existing["status"].clone();
                }
                self.objects.insert(path, object.clone());
                respond(StatusCode::OK, object)
            }
            Method::DELETE => match self.objects.remove(&path) {
                Some(_) => respond(
                    StatusCode::OK,
                    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 200}),
                ),
                None => not_found(&path),
            },
            _ => respond(StatusCode::METHOD_NOT_ALLOWED, json!({})),
        }
    }
}

/// Predictable secret values; each key pair is a new, real Ed25519 key (a context is made per
/// reconcile, so the count is shared).
struct TestGenerator;

static KEYS_GENERATED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl SecretGenerator for TestGenerator {
    fn password(&mut self) -> String {
        "test-password".into()
    }
    fn ed25519(&mut self) -> KeyPairPem {
        let n = KEYS_GENERATED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut seed = [7u8; 32];
        seed[..4].copy_from_slice(&n.to_le_bytes());
        // PKCS#8 v1 (RFC 8410) of an Ed25519 seed.
        let mut pkcs8 = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        pkcs8.extend_from_slice(&seed);
        let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
        key_pair_pem(&pkcs8, ring::signature::KeyPair::public_key(&pair).as_ref())
    }
    fn kafka_cluster_id(&mut self) -> String {
        "test-cluster-id".into()
    }
}

fn context(fake: &FakeApiServer) -> Arc<Context> {
    let client = fake.client();
    Arc::new(Context {
        events: EventPublisher::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.into(),
                instance: None,
            },
        ),
        client,
        metrics: Arc::default(),
        generator: Mutex::new(Box::new(TestGenerator)),
        clock: || Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap(),
        cache: Default::default(),
        failures: Default::default(),
    })
}

/// A ChatDeployment as the API server would store it, also stored in `fake`. A stored one's
/// status, annotations and finalizers are kept, as a spec change keeps them.
fn stored(fake: &FakeApiServer, spec: ChatDeploymentSpec, generation: i64) -> ChatDeployment {
    let mut cd = ChatDeployment::new("chat", spec);
    cd.metadata.namespace = Some("default".into());
    cd.metadata.uid = Some("cd-uid".into());
    cd.metadata.generation = Some(generation);
    if fake.get(CD_PATH).is_some() {
        let old = fake.chat_deployment();
        cd.status = old.status;
        cd.metadata.annotations = old.metadata.annotations;
        cd.metadata.finalizers = old.metadata.finalizers;
    }
    fake.put(CD_PATH, serde_json::to_value(&cd).unwrap());
    cd
}

/// Reconcile and settle until the stack is up: every workload rolled, no upgrade under way.
async fn install(fake: &FakeApiServer, spec: ChatDeploymentSpec, generation: i64) {
    stored(fake, spec, generation);
    for _ in 0..12 {
        run(fake, fake.chat_deployment()).await;
        fake.settle();
        let status = fake.chat_deployment().status.unwrap_or_default();
        if status.upgrade.is_none() && condition_is(&status, READY, "True") {
            return;
        }
    }
    panic!(
        "the stack never became ready: {:#?}",
        fake.chat_deployment().status
    );
}

fn minimal() -> ChatDeploymentSpec {
    ChatDeploymentSpec {
        version: "0.1.0".into(),
        ..Default::default()
    }
}

async fn run(fake: &FakeApiServer, cd: ChatDeployment) -> Action {
    reconcile(Arc::new(cd), context(fake))
        .await
        .expect("reconcile succeeds")
}

/// Paths of every write except events.
fn object_writes(fake: &FakeApiServer) -> Vec<String> {
    fake.calls()
        .into_iter()
        .filter(|c| c.is_write() && !c.is_event())
        .map(|c| c.path)
        .collect()
}

/// Every PATCH of the object at `path`, in order.
fn patches_to(fake: &FakeApiServer, path: &str) -> Vec<Call> {
    fake.calls()
        .into_iter()
        .filter(|c| c.method == Method::PATCH && c.path == path)
        .collect()
}

const CHAT_HPA: &str = "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/chat-chat";

/// Paths of every DELETE, in order.
fn deleted_paths(fake: &FakeApiServer) -> Vec<String> {
    fake.calls()
        .into_iter()
        .filter(|c| c.method == Method::DELETE)
        .map(|c| c.path)
        .collect()
}

/// What removing chat's autoscaling (or stopping) deletes.
const CHAT_PDB_AND_HPA: [&str; 2] = [
    "/apis/policy/v1/namespaces/default/poddisruptionbudgets/chat-chat",
    CHAT_HPA,
];

fn secret_writes(calls: &[Call]) -> Vec<&Call> {
    calls
        .iter()
        .filter(|c| c.is_write() && c.path.starts_with(SECRETS_PATH))
        .collect()
}

#[tokio::test]
async fn first_reconcile_creates_the_generated_secrets() {
    let fake = FakeApiServer::default();
    run(&fake, stored(&fake, minimal(), 1)).await;

    let created: Vec<(Method, String)> = secret_writes(&fake.calls())
        .into_iter()
        .map(|c| {
            (
                c.method.clone(),
                c.body["metadata"]["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: Vec<(Method, String)> = [
        "chat-jwt",
        "chat-mongodb",
        "chat-rabbitmq",
        "chat-kafka",
        "chat-redis",
        "chat-mongodb-app",
        "chat-rabbitmq-app",
        "chat-redis-app",
    ]
    .into_iter()
    .map(|n| (Method::POST, n.to_string()))
    .collect();
    assert_eq!(created, expected);
    let jwt = fake.get(&format!("{SECRETS_PATH}/chat-jwt")).unwrap();
    assert!(jwt["stringData"]["public.pem"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN PUBLIC KEY-----"));
    assert!(fake
        .calls()
        .iter()
        .any(|c| c.is_event() && c.body["reason"] == "SecretCreated"));
}

/// A stack created before the application users existed has the administrators' Secrets
/// alone: the next reconcile adds the application users' and leaves the others as they are.
#[tokio::test]
async fn a_stack_without_application_users_gets_their_secrets_and_keeps_the_others() {
    let fake = FakeApiServer::default();
    run(&fake, stored(&fake, minimal(), 1)).await;
    {
        let mut state = fake.0.lock().unwrap();
        for dependency in ["mongodb", "rabbitmq", "redis"] {
            state
                .objects
                .remove(&format!("{SECRETS_PATH}/chat-{dependency}-app"));
        }
    }
    fake.clear_calls();

    run(&fake, fake.chat_deployment()).await;

    let written: Vec<(Method, String)> = secret_writes(&fake.calls())
        .into_iter()
        .map(|c| {
            (
                c.method.clone(),
                c.body["metadata"]["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: Vec<(Method, String)> =
        ["chat-mongodb-app", "chat-rabbitmq-app", "chat-redis-app"]
            .into_iter()
            .map(|n| (Method::POST, n.to_string()))
            .collect();
    assert_eq!(written, expected);
}

#[tokio::test]
async fn second_reconcile_creates_no_secret_and_never_patches_one() {
    let fake = FakeApiServer::default();
    run(&fake, stored(&fake, minimal(), 1)).await;
    // A user rotated a generated password by hand: the operator must leave it alone.
    let rotated = format!("{SECRETS_PATH}/chat-redis");
    let mut secret = fake.get(&rotated).unwrap();
    secret["stringData"]["password"] = json!("rotated-by-a-human");
    fake.put(&rotated, secret.clone());
    fake.clear_calls();

    run(&fake, fake.chat_deployment()).await;

    assert!(
        secret_writes(&fake.calls()).is_empty(),
        "{:#?}",
        secret_writes(&fake.calls())
    );
    assert_eq!(fake.get(&rotated).unwrap(), secret);
}

#[tokio::test]
async fn steady_state_reconcile_writes_no_status_and_no_event() {
    let fake = FakeApiServer::default();
    install(&fake, minimal(), 1).await;
    fake.clear_calls();

    run(&fake, fake.chat_deployment()).await;

    let calls = fake.calls();
    assert!(!calls.iter().any(|c| c.path.ends_with("/status")));
    assert!(!calls.iter().any(Call::is_event));
    // What remains are idempotent applies of unchanged objects (no-ops on a real server).
    assert!(calls
        .iter()
        .filter(|c| c.is_write())
        .all(|c| c.method == Method::PATCH));
}

#[tokio::test]
async fn status_is_patched_with_observed_generation() {
    let fake = FakeApiServer::default();
    run(&fake, stored(&fake, minimal(), 7)).await;

    let patch = fake
        .calls()
        .into_iter()
        .find(|c| c.method == Method::PATCH && c.path == format!("{CD_PATH}/status"))
        .expect("status is patched");
    let status = &patch.body[0]["value"];
    assert_eq!(status["observedGeneration"], 7);
    let types: Vec<&str> = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["Ready", "Progressing", "Degraded"]);
    // A first install is an upgrade from nothing: it starts with the dependencies.
    assert_eq!(status["conditions"][1]["reason"], "Upgrading");
    assert_eq!(status["upgrade"]["step"], "dependency/mongodb");
    assert!(!patch.body.to_string().contains("test-password"));
}

#[tokio::test]
async fn paused_writes_nothing() {
    let fake = FakeApiServer::default();
    let mut spec = minimal();
    spec.paused = true;
    let mut cd = stored(&fake, spec, 2);
    cd.status = Some(status::paused(&cd, (context(&fake).clock)()));

    run(&fake, cd).await;

    assert!(fake.calls().is_empty(), "{:#?}", fake.calls());
}

#[tokio::test]
async fn pausing_patches_only_the_status_saying_so() {
    let fake = FakeApiServer::default();
    let mut spec = minimal();
    spec.paused = true;

    run(&fake, stored(&fake, spec, 2)).await;

    assert_eq!(object_writes(&fake), [format!("{CD_PATH}/status")]);
    let status = fake.chat_deployment().status.unwrap();
    assert!(status
        .conditions
        .iter()
        .any(|c| c.type_ == "ReconciliationPaused" && c.reason == "Paused"));
}

/// Record in the Deployment at `path`, as a real API server would, that our field manager
/// applied its `spec.replicas`.
fn we_own_replicas(fake: &FakeApiServer, path: &str) {
    fake.edit(path, |d| {
        d["metadata"]["managedFields"] = json!([{
            "manager": FIELD_MANAGER, "operation": "Apply", "apiVersion": "apps/v1",
            "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}
        }]);
    });
}

fn autoscaled_chat() -> ChatDeploymentSpec {
    let mut spec = minimal();
    spec.components = Some(ComponentsSpec {
        chat: Some(ComponentSpec {
            autoscaling: Some(AutoscalingSpec {
                min_replicas: Some(2),
                max_replicas: 6,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    spec
}

#[tokio::test]
async fn hpa_owned_replicas_are_not_sent() {
    let fake = FakeApiServer::default();
    install(&fake, autoscaled_chat(), 1).await;

    let deployment_patch = |name: &str| {
        fake.calls()
            .into_iter()
            .find(|c| {
                c.method == Method::PATCH && c.path.ends_with(&format!("/deployments/{name}"))
            })
            .unwrap_or_else(|| panic!("{name} is applied"))
    };
    assert!(deployment_patch("chat-chat").body["spec"]
        .get("replicas")
        .is_none());
    assert_eq!(deployment_patch("chat-gateway").body["spec"]["replicas"], 1);
    assert!(fake.get(CHAT_HPA).is_some());
}

#[tokio::test]
async fn switching_to_autoscaling_hands_replicas_over_before_dropping_them() {
    let fake = FakeApiServer::default();
    install(&fake, minimal(), 1).await;
    // As a real API server records it: our manager applied spec.replicas = 3.
    let path = "/apis/apps/v1/namespaces/default/deployments/chat-chat";
    fake.edit(path, |d| d["spec"]["replicas"] = json!(3));
    we_own_replicas(&fake, path);
    fake.clear_calls();

    run(&fake, stored(&fake, autoscaled_chat(), 2)).await;

    let patches = patches_to(&fake, path);
    assert_eq!(patches.len(), 2);
    assert_eq!(patches[0].body["spec"], json!({"replicas": 3}));
    assert!(patches[1].body["spec"].get("replicas").is_none());
}

#[tokio::test]
async fn removing_autoscaling_deletes_the_hpa_and_pdb() {
    let fake = FakeApiServer::default();
    install(&fake, autoscaled_chat(), 1).await;
    fake.clear_calls();

    run(&fake, stored(&fake, minimal(), 2)).await;

    assert_eq!(deleted_paths(&fake), CHAT_PDB_AND_HPA);
}

#[tokio::test]
async fn missing_user_secret_degrades_and_applies_nothing() {
    let fake = FakeApiServer::default();
    let mut spec = minimal();
    spec.auth = Some(crate::crd::AuthSpec {
        jwt_secret_name: Some("my-signing-key".into()),
        ..Default::default()
    });

    run(&fake, stored(&fake, spec, 1)).await;

    let calls = fake.calls();
    assert!(!calls
        .iter()
        .any(|c| c.method == Method::PATCH && !c.path.ends_with("/status")));
    let status = fake.chat_deployment().status.unwrap();
    let degraded = status
        .conditions
        .iter()
        .find(|c| c.type_ == DEGRADED)
        .unwrap();
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "SecretMissing")
    );
    assert!(degraded
        .message
        .contains("my-signing-key (key private.pem)"));
}

#[tokio::test]
async fn invalid_spec_degrades_without_writing_objects() {
    let fake = FakeApiServer::default();
    let mut spec = autoscaled_chat();
    spec.components
        .as_mut()
        .unwrap()
        .chat
        .as_mut()
        .unwrap()
        .replicas = Some(3);

    let action = run(&fake, stored(&fake, spec, 1)).await;

    assert_eq!(action, Action::await_change());
    assert_eq!(object_writes(&fake), [format!("{CD_PATH}/status")]);
}

#[test]
fn failures_in_a_row_back_off_exponentially_up_to_five_minutes() {
    let seconds: Vec<u64> = [1, 2, 3, 6, 7, 40, u32::MAX]
        .into_iter()
        .map(|n| super::backoff(n).as_secs())
        .collect();
    assert_eq!(seconds, [5, 10, 20, 160, 300, 300, 300]);
}
