//! A node simulator (kwok-style) for a control plane without kubelets: it plays the kubelet
//! and the storage provisioner for the Pods and claims of one namespace, through the API only.
//!
//! - Nodes: [`register_nodes`] creates [`NODES`] Ready `Node` objects with capacity and renews
//!   their Leases, so the node-lifecycle controller keeps them Ready and the real scheduler
//!   binds Pods to them. Every test process shares them; each renews them while it runs.
//! - Pods bound to a simulated node in the namespace: phase `Running` at once, `Ready` after
//!   [`Behaviour::ready_after`], unless [`Behaviour::keep_unready`] says the pod is in a crash
//!   loop or fails its readiness probe (then it is kept, or turned, NotReady). Job Pods end
//!   `Succeeded`, or `Failed` when [`Behaviour::fail_job`] says so.
//! - Graceful deletion: a Pod with a `deletionTimestamp` has "stopped its containers" and is
//!   deleted with grace period 0, as the kubelet's final delete does.
//! - Claims: every Pending PersistentVolumeClaim gets a `PersistentVolume` of its size and
//!   class, pre-bound to it, which the real binder binds; a bound claim asking for more than
//!   it has is grown, on its volume and in its status, as a CSI resizer would.
//!
//! Nothing here writes a Deployment's, StatefulSet's or Job's status: the real controllers
//! compute them from the Pods.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chat_operator::storage::quantity_bytes;
use chrono::Utc;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::task::JoinHandle;

/// The simulated nodes every test shares.
pub const NODES: [&str; 3] = ["sim-node-0", "sim-node-1", "sim-node-2"];
/// How often the simulator looks at its Pods and claims.
const TICK: Duration = Duration::from_millis(250);
/// How often a node's Lease and Ready condition are renewed (the kubelet's default).
const NODE_HEARTBEAT: Duration = Duration::from_secs(10);

pub type PodPredicate = Box<dyn Fn(&Pod) -> bool + Send>;

/// Pods carrying every one of `labels`.
pub fn labelled(labels: &[(&str, &str)]) -> PodPredicate {
    let wanted: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Box::new(move |pod| {
        let have = pod.labels();
        wanted.iter().all(|(k, v)| have.get(k) == Some(v))
    })
}

/// How the simulated kubelet treats the namespace's Pods. Change it while a test runs through
/// [`NodeSimulator::behave`].
pub struct Behaviour {
    /// Time from `Running` to `Ready` (the readiness probe's first success).
    pub ready_after: Duration,
    /// Pods this says yes to never become Ready (a crash loop, a failing readiness probe); a
    /// Ready one turns NotReady.
    pub keep_unready: PodPredicate,
    /// Job Pods this says yes to fail (exit code 1) instead of succeeding.
    pub fail_job: PodPredicate,
    /// How long a deleted Pod's containers take to stop (its preStop hook and drain); never
    /// longer than the Pod's grace period.
    pub stop_after: Duration,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            ready_after: Duration::from_millis(500),
            keep_unready: Box::new(|_| false),
            fail_job: Box::new(|_| false),
            stop_after: Duration::ZERO,
        }
    }
}

/// Plays the kubelet and the volume provisioner for one namespace until dropped.
pub struct NodeSimulator {
    behaviour: Arc<Mutex<Behaviour>>,
    task: JoinHandle<()>,
}

impl NodeSimulator {
    /// Register the shared nodes (idempotent) and start simulating `namespace`.
    pub async fn start(client: Client, namespace: &str) -> Self {
        register_nodes(&client).await;
        let behaviour = Arc::new(Mutex::new(Behaviour::default()));
        let sim = Sim {
            pods: Api::namespaced(client.clone(), namespace),
            claims: Api::namespaced(client.clone(), namespace),
            volumes: Api::all(client.clone()),
            nodes: Api::all(client.clone()),
            leases: Api::namespaced(client, "kube-node-lease"),
            namespace: namespace.to_owned(),
            behaviour: behaviour.clone(),
            running_since: HashMap::new(),
        };
        let task = tokio::spawn(sim.run());
        Self { behaviour, task }
    }

    /// Change how Pods are treated from now on.
    pub fn behave(&self, change: impl FnOnce(&mut Behaviour)) {
        change(&mut self.behaviour.lock().unwrap());
    }
}

impl Drop for NodeSimulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Create the simulated nodes if absent and mark them Ready with capacity.
pub async fn register_nodes(client: &Client) {
    let nodes: Api<Node> = Api::all(client.clone());
    for name in NODES {
        let node: Node = serde_json::from_value(json!({
            "metadata": {
                "name": name,
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "simulated",
                },
            },
        }))
        .unwrap();
        match nodes.create(&PostParams::default(), &node).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => panic!("cannot register node {name}: {e}"),
        }
    }
    heartbeat(&nodes, &Api::namespaced(client.clone(), "kube-node-lease")).await;
}

/// What a kubelet reports every few seconds: the node's Ready condition and its Lease.
async fn heartbeat(nodes: &Api<Node>, leases: &Api<Lease>) {
    let now = Utc::now();
    for (i, name) in NODES.into_iter().enumerate() {
        let condition = |type_: &str, status: &str, reason: &str| {
            json!({"type": type_, "status": status, "reason": reason,
                   "lastHeartbeatTime": now, "lastTransitionTime": now})
        };
        let status = json!({"status": {
            "capacity": {"cpu": "64", "memory": "256Gi", "pods": "500", "ephemeral-storage": "1Ti"},
            "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "500", "ephemeral-storage": "1Ti"},
            "conditions": [
                condition("Ready", "True", "KubeletReady"),
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID"),
            ],
            "addresses": [{"type": "InternalIP", "address": format!("10.250.0.{}", i + 1)},
                          {"type": "Hostname", "address": name}],
            "nodeInfo": {"kubeletVersion": "v1.25.0", "kubeProxyVersion": "v1.25.0",
                         "operatingSystem": "linux", "architecture": "amd64",
                         "containerRuntimeVersion": "simulated://1", "osImage": "simulated",
                         "kernelVersion": "simulated", "machineID": name, "systemUUID": name,
                         "bootID": name},
        }});
        if let Err(e) = nodes
            .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
            .await
        {
            eprintln!("node simulator: heartbeat of {name} failed: {e}");
        }
        let lease = json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": 40,
                     "renewTime": MicroTime(now)},
        });
        if let Err(e) = leases
            .patch(
                name,
                &PatchParams::apply("node-simulator").force(),
                &Patch::Apply(lease),
            )
            .await
        {
            eprintln!("node simulator: lease of {name} failed: {e}");
        }
    }
}

struct Sim {
    pods: Api<Pod>,
    claims: Api<PersistentVolumeClaim>,
    volumes: Api<PersistentVolume>,
    nodes: Api<Node>,
    leases: Api<Lease>,
    namespace: String,
    behaviour: Arc<Mutex<Behaviour>>,
    /// When each Pod (by uid) was set Running.
    running_since: HashMap<String, Instant>,
}

impl Sim {
    async fn run(mut self) {
        let mut last_heartbeat = Instant::now();
        loop {
            if last_heartbeat.elapsed() >= NODE_HEARTBEAT {
                heartbeat(&self.nodes, &self.leases).await;
                last_heartbeat = Instant::now();
            }
            if let Err(e) = self.tick().await {
                eprintln!("node simulator ({}): {e}", self.namespace);
            }
            tokio::time::sleep(TICK).await;
        }
    }

    async fn tick(&mut self) -> Result<(), kube::Error> {
        for claim in self.claims.list(&ListParams::default()).await? {
            self.provision(&claim).await?;
        }
        let pods = self.pods.list(&ListParams::default()).await?;
        let alive: Vec<String> = pods.iter().filter_map(|p| p.uid()).collect();
        self.running_since.retain(|uid, _| alive.contains(uid));
        for pod in pods {
            if let Err(e) = self.kubelet(&pod).await {
                // A Pod deleted or changed since the list: the next tick sees it as it is.
                if !matches!(&e, kube::Error::Api(a) if a.code == 404 || a.code == 409) {
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// The storage provisioner: a volume of the claim's size and class, pre-bound to it.
    async fn provision(&self, claim: &PersistentVolumeClaim) -> Result<(), kube::Error> {
        let spec = claim.spec.clone().unwrap_or_default();
        if claim.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        if let Some(volume) = &spec.volume_name {
            return self.resize(claim, volume).await;
        }
        let name = format!("sim-{}-{}", self.namespace, claim.name_any());
        let size = spec
            .resources
            .and_then(|r| r.requests)
            .and_then(|r| r.get("storage").cloned())
            .map_or_else(|| json!("1Gi"), |q| json!(q));
        let volume: PersistentVolume = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"sim-namespace": self.namespace}},
            "spec": {
                "capacity": {"storage": size},
                "accessModes": spec.access_modes.unwrap_or_else(|| vec!["ReadWriteOnce".into()]),
                "storageClassName": spec.storage_class_name.unwrap_or_default(),
                "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": {"path": format!("/tmp/sim-volumes/{name}")},
                "claimRef": {"namespace": self.namespace, "name": claim.name_any(),
                             "uid": claim.uid()},
            },
        }))
        .unwrap();
        match self.volumes.create(&PostParams::default(), &volume).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The CSI resizer: a bound claim asking for more than it has gets it, on its volume and
    /// in its status.
    async fn resize(&self, claim: &PersistentVolumeClaim, volume: &str) -> Result<(), kube::Error> {
        let storage = |r: Option<&BTreeMap<String, Quantity>>| {
            r.and_then(|r| r.get("storage")).map(|q| q.0.clone())
        };
        let wanted = storage(
            claim
                .spec
                .as_ref()
                .and_then(|s| s.resources.as_ref())
                .and_then(|r| r.requests.as_ref()),
        );
        let have = storage(claim.status.as_ref().and_then(|s| s.capacity.as_ref()));
        let (Some(wanted), Some(have)) = (wanted, have) else {
            return Ok(());
        };
        if quantity_bytes(&wanted) <= quantity_bytes(&have) {
            return Ok(());
        }
        let capacity = json!({"storage": wanted});
        self.volumes
            .patch(
                volume,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"capacity": capacity}})),
            )
            .await?;
        self.claims
            .patch_status(
                &claim.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"capacity": capacity}})),
            )
            .await?;
        Ok(())
    }

    /// What a kubelet does for one Pod.
    async fn kubelet(&mut self, pod: &Pod) -> Result<(), kube::Error> {
        let name = pod.name_any();
        if let Some(deadline) = &pod.metadata.deletion_timestamp {
            // The kubelet deletes the Pod for good once its containers stopped, at the latest
            // when the grace period ends.
            let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(0);
            let requested = deadline.0 - chrono::Duration::seconds(grace);
            let stop_after = self.behaviour.lock().unwrap().stop_after;
            let stop = chrono::Duration::from_std(stop_after).unwrap_or_default();
            if Utc::now() < requested + stop.min(chrono::Duration::seconds(grace)) {
                return Ok(());
            }
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                ..DeleteParams::default()
            };
            self.pods.delete(&name, &params).await?;
            return Ok(());
        }
        let spec = pod.spec.clone().unwrap_or_default();
        let Some(node) = spec.node_name.as_deref() else {
            return Ok(());
        };
        if !NODES.contains(&node) {
            return Ok(());
        }
        let status = pod.status.clone().unwrap_or_default();
        let phase = status.phase.as_deref().unwrap_or("Pending");
        if matches!(phase, "Succeeded" | "Failed") {
            return Ok(());
        }
        let uid = pod.uid().unwrap_or_default();
        let images: BTreeMap<String, String> = spec
            .containers
            .iter()
            .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
            .collect();
        let is_job = pod
            .owner_references()
            .iter()
            .any(|o| o.kind == "Job" && o.controller == Some(true));
        let (ready_after, unready, fail) = {
            let b = self.behaviour.lock().unwrap();
            (b.ready_after, (b.keep_unready)(pod), (b.fail_job)(pod))
        };
        let since = *self.running_since.entry(uid).or_insert_with(Instant::now);
        let now = Utc::now();
        let started = status.start_time.map_or_else(|| json!(now), |t| json!(t));

        if is_job {
            if since.elapsed() < ready_after {
                if phase != "Running" {
                    self.set_status(&name, pod_status("Running", false, &images, started, None))
                        .await?;
                }
                return Ok(());
            }
            let (phase, code) = if fail {
                ("Failed", 1)
            } else {
                ("Succeeded", 0)
            };
            self.set_status(
                &name,
                pod_status(phase, false, &images, started, Some(code)),
            )
            .await?;
            return Ok(());
        }

        let want_ready = !unready && since.elapsed() >= ready_after;
        let is_ready = status
            .conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        if phase != "Running" || want_ready != is_ready {
            self.set_status(
                &name,
                pod_status("Running", want_ready, &images, started, None),
            )
            .await?;
        }
        Ok(())
    }

    async fn set_status(&self, name: &str, status: serde_json::Value) -> Result<(), kube::Error> {
        self.pods
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": status })),
            )
            .await?;
        Ok(())
    }
}

/// A Pod's status as a kubelet reports it: `phase`, readiness, one status per container
/// (running, or terminated with `exit_code`).
fn pod_status(
    phase: &str,
    ready: bool,
    images: &BTreeMap<String, String>,
    started: serde_json::Value,
    exit_code: Option<i32>,
) -> serde_json::Value {
    let now = Utc::now();
    let flag = |b: bool| if b { "True" } else { "False" };
    let condition = |type_: &str, status: bool| json!({"type": type_, "status": flag(status), "lastTransitionTime": now});
    let containers: Vec<serde_json::Value> = images
        .iter()
        .map(|(name, image)| {
            let state = match exit_code {
                None => json!({"running": {"startedAt": started}}),
                Some(code) => json!({"terminated": {
                    "exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" },
                    "startedAt": started, "finishedAt": now}}),
            };
            json!({"name": name, "image": image, "imageID": format!("sim://{image}"),
                   "containerID": format!("sim://{name}"), "ready": ready,
                   "started": exit_code.is_none(), "restartCount": 0, "state": state})
        })
        .collect();
    json!({
        "phase": phase,
        "startTime": started,
        "hostIP": "10.250.0.1",
        "podIP": "10.244.0.10",
        "conditions": [
            condition("PodScheduled", true),
            condition("Initialized", true),
            condition("ContainersReady", ready),
            condition("Ready", ready),
        ],
        "containerStatuses": containers,
    })
}
