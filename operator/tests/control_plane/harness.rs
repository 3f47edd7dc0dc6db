//! One test's world on the real control plane: a namespace, the operator's Helm chart installed
//! into it as a user installs it (rendered by Helm's engine, applied server-side, the CRD
//! included: it is one of the chart's templates, as `helm upgrade` applies it too), `chat-operator` processes running **as the chart's ServiceAccount** (a token from
//! the TokenRequest API, so the API server enforces the chart's RBAC), a node simulator for
//! the namespace, and the helpers the scenarios share: apply a ChatDeployment, wait for a
//! condition, count the operator's writes in the audit log.
//!
//! The control plane is `../shared/k8s/control-plane.sh up`, started by `scripts/test.sh`. The
//! suite finds it through `CHAT_CONTROL_PLANE_KUBECONFIG` (default
//! `~/.cache/k8s-control-plane/kubeconfig`), never through `KUBECONFIG`, so it cannot touch a
//! developer's real cluster. It fails, never skips, when the control plane does not answer.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chat_operator::crd::ChatDeployment;
use chrono::{DateTime, Utc};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::pinned_kind;
use kube::{Client, Config, ResourceExt};
use serde_json::{json, Value};

use super::common::helm::try_render;
use super::nodes::NodeSimulator;

/// Field manager of what the test applies as the user.
pub const USER_MANAGER: &str = "test-user";
/// The verbs that change state.
const WRITE_VERBS: [&str; 4] = ["create", "update", "patch", "delete"];

/// Where the control plane's state lives (`K8S_STATE` of `control-plane.sh`).
fn state_dir() -> PathBuf {
    std::env::var_os("K8S_STATE").map_or_else(
        || {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
                .join(".cache/k8s-control-plane")
        },
        PathBuf::from,
    )
}

fn admin_kubeconfig_path() -> PathBuf {
    std::env::var_os("CHAT_CONTROL_PLANE_KUBECONFIG")
        .map_or_else(|| state_dir().join("kubeconfig"), PathBuf::from)
}

async fn client_from(kubeconfig: Kubeconfig) -> Client {
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("the kubeconfig is usable");
    Client::try_from(config).expect("a client for the control plane")
}

/// An admin client for the control plane; panics with how to start it when it does not answer.
pub async fn admin() -> Client {
    let path = admin_kubeconfig_path();
    let how = "start it with `../shared/k8s/control-plane.sh up` (scripts/test.sh does)";
    let kubeconfig = Kubeconfig::read_from(&path).unwrap_or_else(|e| {
        panic!(
            "no control-plane kubeconfig at {}: {e}; {how}",
            path.display()
        )
    });
    let client = client_from(kubeconfig).await;
    match tokio::time::timeout(Duration::from_secs(10), client.apiserver_version()).await {
        Ok(Ok(_)) => client,
        Ok(Err(e)) => panic!(
            "the control plane at {} does not answer: {e}; {how}",
            path.display()
        ),
        Err(_) => panic!(
            "the control plane at {} did not answer in 10s; {how}",
            path.display()
        ),
    }
}

/// Poll `check` until it returns `Some`, every 250 ms, for at most `limit`; panics with `what`
/// and the last observation otherwise. The limit only guards against a hang: nothing is
/// asserted about how long it took.
pub async fn eventually<T, F, Fut>(what: impl Fn() -> String, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let last = match check().await {
            Ok(value) => return value,
            Err(observed) => observed,
        };
        if tokio::time::Instant::now() >= deadline {
            panic!(
                "{}: not reached within {limit:?}; last seen: {last}",
                what()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Server-side apply YAML or JSON objects as the admin, each with the API discovered for its
/// kind. Returns the objects as the server has them.
pub async fn apply_objects(
    client: &Client,
    namespace: &str,
    objects: &[Value],
    manager: &str,
) -> Vec<DynamicObject> {
    let mut applied = Vec::new();
    for object in objects {
        let gvk = gvk_of(object);
        let (resource, caps) = pinned_kind(client, &gvk)
            .await
            .unwrap_or_else(|e| panic!("the API server does not serve {gvk:?}: {e}"));
        let api: Api<DynamicObject> = if caps.scope == kube::discovery::Scope::Cluster {
            Api::all_with(client.clone(), &resource)
        } else {
            let namespace = object["metadata"]["namespace"]
                .as_str()
                .unwrap_or(namespace);
            Api::namespaced_with(client.clone(), namespace, &resource)
        };
        let name = object["metadata"]["name"]
            .as_str()
            .expect("the object has a name");
        let result = api
            .patch(
                name,
                &PatchParams::apply(manager).force(),
                &Patch::Apply(object),
            )
            .await
            .unwrap_or_else(|e| panic!("applying {} {name} failed: {e}", gvk.kind));
        applied.push(result);
    }
    applied
}

fn gvk_of(object: &Value) -> GroupVersionKind {
    let api_version = object["apiVersion"].as_str().expect("apiVersion");
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    GroupVersionKind::gvk(group, version, object["kind"].as_str().expect("kind"))
}

/// One running `chat-operator run`.
pub struct OperatorProcess {
    pub pod_name: String,
    child: Child,
    pub log: PathBuf,
}

impl OperatorProcess {
    /// SIGKILL: no lease released, no request finished.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for the exit; returns whether it exited within `limit`.
    pub fn terminate(&mut self, limit: Duration) -> bool {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// The last lines the process logged, for failure messages.
    pub fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One test's namespace with the chart installed, its operators and its simulated kubelet.
pub struct Stack {
    pub admin: Client,
    pub namespace: String,
    /// More namespaces the operator watches (see [`Stack::watching`]).
    pub other_namespaces: Vec<String>,
    /// `system:serviceaccount:<namespace>:<name>`: who the operator is to the API server.
    pub operator_user: String,
    pub sim: NodeSimulator,
    pub operators: Vec<OperatorProcess>,
    operator_env: BTreeMap<String, String>,
    operator_kubeconfig: PathBuf,
    /// The chart's (Cluster)RoleBindings as rendered.
    bindings: Vec<Value>,
    dir: PathBuf,
}

impl Stack {
    /// A fresh namespace named after `test`, with the chart installed in it (watching only it).
    pub async fn new(test: &str) -> Self {
        Self::watching(test, 0).await
    }

    /// A fresh namespace named after `test` with the chart installed in it, watching it and
    /// `others` more fresh namespaces (`watchNamespaces`).
    pub async fn watching(test: &str, others: usize) -> Self {
        let admin = admin().await;
        let suffix: String = uuid_like();
        let namespace = format!("{}-{suffix}", test.replace('_', "-"))
            .chars()
            .take(63)
            .collect::<String>()
            .trim_end_matches('-')
            .to_owned();
        let dir = std::env::temp_dir().join(format!("chat-control-plane-{namespace}"));
        std::fs::create_dir_all(&dir).unwrap();

        create_named::<Namespace>(&Api::all(admin.clone()), &namespace).await;
        let other_namespaces: Vec<String> = (1..=others)
            .map(|i| format!("{}-n{i}", &namespace[..namespace.len().min(58)]))
            .collect();
        for other in &other_namespaces {
            create_named::<Namespace>(&Api::all(admin.clone()), other).await;
        }

        // The chart, as `helm install chat-operator charts/chat-operator -n NS
        // --set 'watchNamespaces={NS,...}'` would install it.
        let values = dir.join("values.yaml");
        let watched: Vec<&str> = std::iter::once(namespace.as_str())
            .chain(other_namespaces.iter().map(String::as_str))
            .collect();
        std::fs::write(
            &values,
            format!("watchNamespaces: [{}]\n", watched.join(", ")),
        )
        .unwrap();
        let rendered = try_render("chat-operator", Some(&values), &namespace)
            .unwrap_or_else(|e| panic!("the chart does not render:\n{e}"));
        assert!(
            rendered.crds.is_empty(),
            "the chart's crds/ would be installed once and never upgraded"
        );
        let (crds, objects): (Vec<Value>, Vec<Value>) = rendered
            .objects()
            .into_iter()
            .partition(|o| o["kind"] == "CustomResourceDefinition");
        assert_eq!(
            crds.len(),
            1,
            "the chart renders the ChatDeployment CRD (crds.install defaults to true)"
        );
        assert_eq!(
            crds[0]["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
            "helm uninstall would delete every ChatDeployment"
        );
        apply_objects(&admin, &namespace, &crds, "helm").await;
        wait_established(&admin).await;

        let bindings: Vec<Value> = objects
            .iter()
            .filter(|o| o["kind"].as_str().is_some_and(|k| k.ends_with("Binding")))
            .cloned()
            .collect();
        let (deployments, rest): (Vec<Value>, Vec<Value>) =
            objects.into_iter().partition(|o| o["kind"] == "Deployment");
        // Everything but the operator's Deployment: no Pod runs here, the operator runs as a
        // process below, with that Deployment's environment and ServiceAccount.
        apply_objects(&admin, &namespace, &rest, "helm").await;
        let deployment = deployments
            .into_iter()
            .next()
            .expect("the chart renders the operator Deployment");
        let pod = &deployment["spec"]["template"]["spec"];
        let account = pod["serviceAccountName"]
            .as_str()
            .expect("a ServiceAccount")
            .to_owned();
        let operator_env = pod["containers"][0]["env"]
            .as_array()
            .expect("the container has env")
            .iter()
            .filter_map(|e| {
                Some((
                    e["name"].as_str()?.to_owned(),
                    e["value"].as_str()?.to_owned(),
                ))
            })
            .collect();

        let token = service_account_token(&admin, &namespace, &account).await;
        let operator_kubeconfig = dir.join("operator.kubeconfig");
        write_token_kubeconfig(&operator_kubeconfig, &token);

        let sim = NodeSimulator::start(admin.clone(), &namespace).await;
        Self {
            operator_user: format!("system:serviceaccount:{namespace}:{account}"),
            admin,
            namespace,
            other_namespaces,
            sim,
            operators: Vec::new(),
            operator_env,
            operator_kubeconfig,
            bindings,
            dir,
        }
    }

    /// Another ServiceAccount `account` bound to exactly the chart's roles, with a kubeconfig
    /// for it: a second replica under its own name, so the audit log tells replicas apart.
    pub async fn second_account(&self, account: &str) -> (String, PathBuf) {
        create_named::<ServiceAccount>(&self.api(), account).await;
        let bindings: Vec<Value> = self
            .bindings
            .iter()
            .map(|b| {
                let mut b = b.clone();
                let name = format!("{}-{account}", b["metadata"]["name"].as_str().unwrap());
                b["metadata"]["name"] = json!(name);
                b["subjects"] = json!([{"kind": "ServiceAccount", "name": account, "namespace": self.namespace}]);
                b
            })
            .collect();
        apply_objects(&self.admin, &self.namespace, &bindings, "test").await;
        let token = service_account_token(&self.admin, &self.namespace, account).await;
        let kubeconfig = self.dir.join(format!("{account}.kubeconfig"));
        write_token_kubeconfig(&kubeconfig, &token);
        (
            format!("system:serviceaccount:{}:{account}", self.namespace),
            kubeconfig,
        )
    }

    /// Start one more `chat-operator run` as the chart's ServiceAccount, as pod `pod_name`.
    pub fn start_operator(&mut self, pod_name: &str) -> usize {
        let kubeconfig = self.operator_kubeconfig.clone();
        self.start_operator_with(pod_name, &kubeconfig)
    }

    /// Start one more `chat-operator run` with the credentials in `kubeconfig`.
    pub fn start_operator_with(&mut self, pod_name: &str, kubeconfig: &std::path::Path) -> usize {
        let log = self.dir.join(format!("{pod_name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_chat-operator"))
            .arg("run")
            .env_clear()
            .envs(&self.operator_env)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", pod_name)
            .env("POD_NAMESPACE", &self.namespace)
            .env("HTTP_ADDR", "127.0.0.1:0")
            .env("LOG_FORMAT", "text")
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info,chat_operator=debug")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("chat-operator starts");
        self.operators.push(OperatorProcess {
            pod_name: pod_name.to_owned(),
            child,
            log,
        });
        self.operators.len() - 1
    }

    /// `kubectl ARGS -n NAMESPACE` as the admin; its standard output.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let output = Command::new("kubectl")
            .args(args)
            .args(["-n", &self.namespace])
            .env("KUBECONFIG", admin_kubeconfig_path())
            .output()
            .expect("kubectl runs");
        assert!(
            output.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The last log lines of every operator, for failure messages.
    pub fn operator_logs(&self) -> String {
        self.operators
            .iter()
            .map(|o| format!("---- {} ({})\n{}", o.pod_name, o.log.display(), o.tail()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn chat_deployments(&self) -> Api<ChatDeployment> {
        Api::namespaced(self.admin.clone(), &self.namespace)
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        Api::namespaced(self.admin.clone(), &self.namespace)
    }

    /// Apply a ChatDeployment (YAML text) as the user, forcing the name.
    pub async fn apply_chat_yaml(&self, yaml: &str, name: &str) -> ChatDeployment {
        let mut value: Value = serde_yaml::from_str(yaml).expect("the ChatDeployment is YAML");
        value["metadata"]["name"] = json!(name);
        self.apply_chat(value)
            .await
            .expect("the API server accepts the ChatDeployment")
    }

    /// Apply a ChatDeployment as the user; the API server's refusal as its message.
    pub async fn apply_chat(&self, value: Value) -> Result<ChatDeployment, kube::Error> {
        let name = value["metadata"]["name"]
            .as_str()
            .expect("a name")
            .to_owned();
        self.chat_deployments()
            .patch(
                &name,
                &PatchParams::apply(USER_MANAGER).force(),
                &Patch::Apply(value),
            )
            .await
    }

    /// Merge-patch the ChatDeployment's spec as the user.
    pub async fn patch_spec(&self, name: &str, spec: Value) -> ChatDeployment {
        self.chat_deployments()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": spec })),
            )
            .await
            .expect("the spec change is accepted")
    }

    /// Wait until condition `type_` of ChatDeployment `name` has `status`.
    pub async fn wait_condition(
        &self,
        name: &str,
        type_: &str,
        status: &str,
        limit: Duration,
    ) -> ChatDeployment {
        let api = self.chat_deployments();
        let what = || {
            format!(
                "ChatDeployment {name}: {type_}={status}\n{}",
                self.operator_logs()
            )
        };
        eventually(what, limit, || async {
            let cd = api.get(name).await.map_err(|e| e.to_string())?;
            let conditions = cd
                .status
                .as_ref()
                .map(|s| s.conditions.clone())
                .unwrap_or_default();
            if conditions
                .iter()
                .any(|c| c.type_ == type_ && c.status == status)
            {
                Ok(cd)
            } else {
                Err(format!("{:?}", cd.status))
            }
        })
        .await
    }

    /// Wait until `check` holds for the ChatDeployment's status; the status it held for.
    pub async fn wait_status(
        &self,
        name: &str,
        what: &str,
        limit: Duration,
        check: impl Fn(&ChatDeployment) -> bool,
    ) -> ChatDeployment {
        let api = self.chat_deployments();
        let what = || format!("ChatDeployment {name}: {what}\n{}", self.operator_logs());
        eventually(what, limit, || {
            let api = api.clone();
            let check = &check;
            async move {
                let cd = api.get(name).await.map_err(|e| e.to_string())?;
                if check(&cd) {
                    Ok(cd)
                } else {
                    Err(format!("{:?}", cd.status))
                }
            }
        })
        .await
    }

    /// Events on ChatDeployment `name` as `(reason, note)`, from the events.k8s.io API.
    pub async fn events(&self, name: &str) -> Vec<(String, String)> {
        let api: Api<k8s_openapi::api::events::v1::Event> = self.api();
        api.list(&Default::default())
            .await
            .expect("events are listed")
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
            .collect()
    }

    /// Writes (create, update, patch, delete) the operator made from `since` on, as
    /// `verb resource/name -> code` lines, read from the API server's audit log.
    pub fn operator_writes_since(&self, since: DateTime<Utc>) -> Vec<String> {
        self.operator_requests_since(since, &WRITE_VERBS)
    }

    /// Requests with one of `verbs` the operator made from `since` on, as
    /// `verb resource/name -> code` lines, read from the API server's audit log.
    pub fn operator_requests_since(&self, since: DateTime<Utc>, verbs: &[&str]) -> Vec<String> {
        requests_since(&self.operator_user, since, verbs)
    }

    /// Create a Secret with string data as the user.
    pub async fn create_secret(&self, name: &str, data: &[(&str, &str)]) {
        let data: BTreeMap<&str, &str> = data.iter().copied().collect();
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": name}, "stringData": data,
        }))
        .unwrap();
        self.api::<Secret>()
            .create(&PostParams::default(), &secret)
            .await
            .expect("the Secret is created");
    }
}

/// Requests by `user` with one of `verbs` from `since` on, as `verb resource/name -> code`
/// lines, read from the API server's audit log.
pub fn requests_since(user: &str, since: DateTime<Utc>, verbs: &[&str]) -> Vec<String> {
    {
        let file =
            std::fs::File::open(state_dir().join("audit.log")).expect("the audit log exists");
        // The log grows to hundreds of megabytes over a session: parse only the lines that can
        // match, or a test's runtime stalls long enough for its simulated nodes to miss their
        // heartbeats (and the node-lifecycle controller to mark every Pod NotReady).
        let needle = format!("\"username\":\"{user}\"");
        std::io::BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter(|line| line.contains(&needle))
            .filter_map(|line| serde_json::from_str::<Value>(&line).ok())
            .filter(|e| e["user"]["username"] == user)
            .filter(|e| verbs.contains(&e["verb"].as_str().unwrap_or_default()))
            .filter(|e| {
                e["requestReceivedTimestamp"]
                    .as_str()
                    .and_then(|t| t.parse::<DateTime<Utc>>().ok())
                    .is_some_and(|t| t >= since)
            })
            .map(|e| {
                let r = &e["objectRef"];
                let sub = r["subresource"]
                    .as_str()
                    .map(|s| format!("/{s}"))
                    .unwrap_or_default();
                format!(
                    "{} {}{sub}/{} -> {}",
                    e["verb"].as_str().unwrap_or_default(),
                    r["resource"].as_str().unwrap_or_default(),
                    r["name"].as_str().unwrap_or_default(),
                    e["responseStatus"]["code"]
                )
            })
            .collect()
    }
}

/// Create an object of kind `K` that has nothing but a name.
async fn create_named<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let object: K = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    api.create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("{name} is created: {e}"));
}

/// A short random suffix for names.
fn uuid_like() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    format!("{:06x}", h.finish() & 0xff_ffff)
}

async fn wait_established(admin: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    eventually(
        || "the ChatDeployment CRD is established".into(),
        Duration::from_secs(30),
        || async {
            let crd = crds
                .get("chatdeployments.chat.scalablechat.dev")
                .await
                .map_err(|e| e.to_string())?;
            let established = crd
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            established
                .then_some(())
                .ok_or_else(|| "not established".to_owned())
        },
    )
    .await;
}

/// A token for ServiceAccount `account` from the TokenRequest API (what `kubectl create
/// token` does), valid for an hour.
async fn service_account_token(admin: &Client, namespace: &str, account: &str) -> String {
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), namespace);
    let request: TokenRequest = serde_json::from_value(json!({
        "spec": {"audiences": [], "expirationSeconds": 3600},
    }))
    .unwrap();
    let issued = accounts
        .create_token_request(account, &PostParams::default(), &request)
        .await
        .expect("the TokenRequest API issues a token");
    issued.status.expect("the token request has a status").token
}

/// The admin kubeconfig with its user replaced by `token`.
fn write_token_kubeconfig(path: &std::path::Path, token: &str) {
    let admin =
        std::fs::read_to_string(admin_kubeconfig_path()).expect("the admin kubeconfig is readable");
    let mut config: Value = serde_yaml::from_str(&admin).expect("the kubeconfig is YAML");
    config["users"] = json!([{"name": "operator", "user": {"token": token}}]);
    for context in config["contexts"].as_array_mut().expect("contexts") {
        context["context"]["user"] = json!("operator");
    }
    std::fs::write(path, serde_yaml::to_string(&config).unwrap()).unwrap();
}

impl Drop for Stack {
    /// Stop the operators and delete the namespace (without waiting), so repeated runs do not
    /// fill the simulated nodes. `CHAT_CONTROL_PLANE_KEEP=1` keeps it for a post-mortem.
    fn drop(&mut self) {
        for operator in &mut self.operators {
            operator.kill();
        }
        if std::env::var_os("CHAT_CONTROL_PLANE_KEEP").is_none() {
            let kubectl = |args: &[&str]| {
                let _ = Command::new("kubectl")
                    .args(args)
                    .env("KUBECONFIG", admin_kubeconfig_path())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            };
            for other in &self.other_namespaces {
                kubectl(&["delete", "namespace", other, "--wait=false"]);
            }
            // No kubelet finishes a graceful deletion once the simulator is gone: force it.
            kubectl(&["delete", "namespace", &self.namespace, "--wait=false"]);
            kubectl(&[
                "delete",
                "pods",
                "--all",
                "-n",
                &self.namespace,
                "--grace-period=0",
                "--force",
                "--wait=false",
            ]);
        }
    }
}

/// Whether `object` carries the operator's labels and a controller owner reference to `owner`.
pub fn owned_and_labelled(object: &DynamicObject, owner_uid: &str) -> Result<(), String> {
    let labels = object.labels();
    let name = object.name_any();
    if labels
        .get("app.kubernetes.io/managed-by")
        .map(String::as_str)
        != Some("chat-operator")
    {
        return Err(format!("{name}: no managed-by label: {labels:?}"));
    }
    if !labels.contains_key("app.kubernetes.io/instance") {
        return Err(format!("{name}: no instance label: {labels:?}"));
    }
    let owned = object
        .owner_references()
        .iter()
        .any(|o| o.uid == owner_uid && o.controller == Some(true));
    if !owned {
        return Err(format!(
            "{name}: not owned by the ChatDeployment: {:?}",
            object.owner_references()
        ));
    }
    Ok(())
}
