//! `chat-operator run` reconciles ChatDeployments; `chat-operator crd` prints the CRD.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use chat_operator::controller::{error_policy, reconcile, Context};
use chat_operator::crd::ChatDeployment;
use chat_operator::metrics::Metrics;
use chat_operator::{crd_yaml, http, leader};
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, Controller};
use kube::{Api, Client, ResourceExt};
use tracing::{error, info, warn};

const USAGE: &str = "usage: chat-operator <command>

commands:
  run   reconcile ChatDeployments (in-cluster, or the cluster KUBECONFIG points at)
  crd   print the ChatDeployment CustomResourceDefinition as YAML

environment (run):
  WATCH_NAMESPACE   only watch this namespace (default: all namespaces)
  HTTP_ADDR         address of /livez, /readyz, /health and /metrics (default 0.0.0.0:8080)
  POD_NAME, POD_NAMESPACE   leader-election identity and Lease namespace
  LOG_FORMAT=json   JSON logs;  RUST_LOG  log filter (default info)";

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("crd") => {
            print!("{}", crd_yaml());
            ExitCode::SUCCESS
        }
        Some("run") => {
            let runtime = tokio::runtime::Runtime::new().expect("the tokio runtime starts");
            match runtime.block_on(run()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    error!(error = %e, "chat-operator stopped");
                    ExitCode::FAILURE
                }
            }
        }
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// An Api for `K` in `namespace`, or in every namespace.
fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if std::env::var("LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    init_tracing();
    let client = Client::try_default().await?;
    let metrics = Arc::new(Metrics::default());

    let addr: SocketAddr = std::env::var("HTTP_ADDR")
        .unwrap_or_else(|_| "0.0.0.0:8080".into())
        .parse()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    info!(%addr, "serving health and metrics");
    let router = http::router(metrics.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            error!(error = %e, "health and metrics server stopped");
        }
    });

    let watch_namespace = std::env::var("WATCH_NAMESPACE")
        .ok()
        .filter(|ns| !ns.is_empty());
    let chat_deployments: Api<ChatDeployment> = scoped(&client, watch_namespace.as_deref());
    if let Err(e) = chat_deployments.list(&Default::default()).await {
        warn!(error = %e, "cannot list ChatDeployments; is the CRD installed? (chat-operator crd | kubectl apply -f -)");
        return Err(e.into());
    }

    // Every kind the operator owns is watched, so a deleted or hand-edited object is put
    // back at once rather than at the next periodic reconcile; workload status changes (and
    // the migration Job's completion) move an upgrade on.
    let owned = watcher::Config::default().labels("app.kubernetes.io/managed-by=chat-operator");
    let ns = watch_namespace.as_deref();
    let context = Arc::new(Context::new(client.clone(), metrics));
    let controller = Controller::new(chat_deployments, watcher::Config::default().any_semantic())
        .owns(scoped::<Deployment>(&client, ns), owned.clone())
        .owns(scoped::<StatefulSet>(&client, ns), owned.clone())
        .owns(scoped::<Job>(&client, ns), owned.clone())
        .owns(scoped::<Service>(&client, ns), owned.clone())
        .owns(scoped::<ConfigMap>(&client, ns), owned.clone())
        .owns(scoped::<PodDisruptionBudget>(&client, ns), owned.clone())
        .owns(
            scoped::<HorizontalPodAutoscaler>(&client, ns),
            owned.clone(),
        )
        .owns(scoped::<Ingress>(&client, ns), owned.clone())
        .owns(scoped::<NetworkPolicy>(&client, ns), owned.clone())
        // Generated Secrets are not owned (they outlive the ChatDeployment under
        // deletionPolicy Retain): they name theirs in the instance label. A deleted password
        // is then noticed at once.
        .watches(scoped::<Secret>(&client, ns), owned, |secret| {
            let name = secret.labels().get("app.kubernetes.io/instance")?;
            Some(ObjectRef::new(name).within(&secret.namespace()?))
        })
        .shutdown_on_signal()
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "reconcile error");
            }
        });

    let lease_namespace =
        std::env::var("POD_NAMESPACE").unwrap_or_else(|_| client.default_namespace().to_string());
    let holder = std::env::var("POD_NAME")
        .unwrap_or_else(|_| format!("chat-operator-{}", std::process::id()));
    match leader::run_as_leader(
        client,
        &lease_namespace,
        holder,
        controller,
        shutdown_signal(),
    )
    .await
    {
        Ok(()) => info!("controller stopped"),
        Err(leader::LeaderError::Stopped) => info!("stopped while following"),
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// SIGTERM (what the kubelet sends) or Ctrl-C.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler can be installed");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
