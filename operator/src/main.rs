//! `chat-operator run` reconciles ChatDeployments; `chat-operator crd` prints the CRD.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use chat_operator::build::owned_kinds;
use chat_operator::cache::OwnedCache;
use chat_operator::controller::{error_policy, reconcile, Context};
use chat_operator::crd::ChatDeployment;
use chat_operator::metrics::Metrics;
use chat_operator::{crd_yaml, http, leader};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{controller, watcher, Controller};
use kube::{Api, Client, ResourceExt};
use tracing::{error, info, warn};

const USAGE: &str = "usage: chat-operator <command>

commands:
  run   reconcile ChatDeployments (in-cluster, or the cluster KUBECONFIG points at)
  crd   print the ChatDeployment CustomResourceDefinition as YAML

environment (run):
  WATCH_NAMESPACE   only watch these namespaces, comma-separated (default: all namespaces)
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

    // All namespaces (one watch each per kind), or one controller per listed namespace: a
    // Role in each is then all the operator needs, nothing cluster-wide.
    let namespaces: Vec<Option<String>> = match std::env::var("WATCH_NAMESPACE") {
        Ok(list) if !list.trim().is_empty() => {
            let mut listed: Vec<String> = list
                .split(',')
                .map(|ns| ns.trim().to_string())
                .filter(|ns| !ns.is_empty())
                .collect();
            listed.sort();
            listed.dedup();
            listed.into_iter().map(Some).collect()
        }
        _ => vec![None],
    };
    let mut cache = OwnedCache::default();
    let mut controllers = Vec::new();
    for namespace in &namespaces {
        let chat_deployments: Api<ChatDeployment> = scoped(&client, namespace.as_deref());
        if let Err(e) = chat_deployments.list(&Default::default()).await {
            warn!(error = %e, namespace = namespace.as_deref().unwrap_or("*"), "cannot list ChatDeployments; is the CRD installed (chat-operator crd | kubectl apply -f -) and the operator granted its Role there?");
            return Err(e.into());
        }
        controllers.push(controller(
            &client,
            chat_deployments,
            namespace.as_deref(),
            &mut cache,
        ));
    }
    info!(namespaces = ?namespaces, "watching");
    let context = Arc::new(Context::new(client.clone(), metrics, cache));
    let runs = controllers.into_iter().map(|controller| {
        controller
            .shutdown_on_signal()
            .run(reconcile, error_policy, context.clone())
            .for_each(|result| async move {
                if let Err(e) = result {
                    warn!(error = %e, "reconcile error");
                }
            })
    });
    let controller = futures_util::future::join_all(runs);
    let controller = async move {
        controller.await;
    };

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

/// The controller of the ChatDeployments `chat_deployments` lists, watching what they own in
/// `ns` (every namespace when `None`) into `cache`.
fn controller(
    client: &Client,
    chat_deployments: Api<ChatDeployment>,
    ns: Option<&str>,
    cache: &mut OwnedCache,
) -> Controller<ChatDeployment> {
    // Every kind the operator owns is watched, so a deleted or hand-edited object is put
    // back at once rather than at the next periodic reconcile; workload status changes (and
    // the migration Job's completion) move an upgrade on. The same watches fill the cache
    // the reconciles read owned objects from.
    let owned = watcher::Config::default().labels("app.kubernetes.io/managed-by=chat-operator");
    // A burst of events (a rollout moves several pods' worth of status) becomes one
    // reconcile.
    let config = controller::Config::default().debounce(Duration::from_millis(500));
    let mut controller =
        Controller::new(chat_deployments, watcher::Config::default().any_semantic())
            .with_config(config);
    for kind in owned_kinds() {
        let changes = cache.watch(client, &kind, ns, owned.clone());
        controller = controller.owns_stream_with(changes, kind);
    }
    controller
        // Generated Secrets are not owned (they outlive the ChatDeployment under
        // deletionPolicy Retain): they name theirs in the instance label. A deleted password
        // is then noticed at once.
        .watches(scoped::<Secret>(client, ns), owned, |secret| {
            let name = secret.labels().get("app.kubernetes.io/instance")?;
            Some(ObjectRef::new(name).within(&secret.namespace()?))
        })
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
