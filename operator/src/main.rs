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
use k8s_openapi::api::batch::v1::Job;
use kube::runtime::{watcher, Controller};
use kube::{Api, Client};
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

    let (chat_deployments, deployments, stateful_sets, jobs) =
        match std::env::var("WATCH_NAMESPACE") {
            Ok(ns) if !ns.is_empty() => (
                Api::<ChatDeployment>::namespaced(client.clone(), &ns),
                Api::<Deployment>::namespaced(client.clone(), &ns),
                Api::<StatefulSet>::namespaced(client.clone(), &ns),
                Api::<Job>::namespaced(client.clone(), &ns),
            ),
            _ => (
                Api::all(client.clone()),
                Api::all(client.clone()),
                Api::all(client.clone()),
                Api::all(client.clone()),
            ),
        };
    if let Err(e) = chat_deployments.list(&Default::default()).await {
        warn!(error = %e, "cannot list ChatDeployments; is the CRD installed? (chat-operator crd | kubectl apply -f -)");
        return Err(e.into());
    }

    let owned = watcher::Config::default().labels("app.kubernetes.io/managed-by=chat-operator");
    let context = Arc::new(Context::new(client.clone(), metrics));
    let controller = Controller::new(chat_deployments, watcher::Config::default().any_semantic())
        .owns(deployments, owned.clone())
        .owns(stateful_sets, owned.clone())
        // The migration Job's completion moves an upgrade on.
        .owns(jobs, owned)
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
    leader::run_as_leader(client, &lease_namespace, holder, controller).await?;
    info!("controller stopped");
    Ok(())
}
