//! Health endpoints every role serves: `/livez` (the process is alive), `/readyz` (it can take
//! traffic), `/health` (the seed's health check: its dependencies answer, with role and version)
//! and `/metrics` (Prometheus).
//!
//! Readiness is about the process, not its dependencies: a MongoDB or RabbitMQ restart would
//! otherwise take every replica of every role out of the load balancer at once, and the
//! Ingress would answer 503 for everything, including what needs no such dependency. While a
//! dependency is down, the requests that need it are answered `503 unavailable`; `/readyz?verbose`
//! and `/health` report each dependency.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use chat_ports::health::{Gate, Probe};
use serde_json::{json, Map, Value};

/// The health state of one process.
#[derive(Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

struct Inner {
    role: String,
    probes: Vec<Arc<dyn Probe>>,
    gates: Vec<Gate>,
    draining: AtomicBool,
}

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

impl Health {
    /// Health for `role`: ready once every gate is open (and until it drains); `probes` check
    /// the dependencies for `/health` and `/readyz?verbose`.
    pub fn new(role: impl Into<String>, probes: Vec<Arc<dyn Probe>>, gates: Vec<Gate>) -> Self {
        Health {
            inner: Arc::new(Inner {
                role: role.into(),
                probes,
                gates,
                draining: AtomicBool::new(false),
            }),
        }
    }

    /// From now on readiness fails, so load balancers stop sending new work while in-flight work
    /// finishes.
    pub fn set_draining(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
    }

    /// Whether this process takes traffic: not draining and every gate open; with the report.
    pub fn readiness(&self) -> (bool, Map<String, Value>) {
        let mut report = Map::new();
        let mut ready = !self.inner.draining.load(Ordering::SeqCst);
        if !ready {
            report.insert("shutdown".into(), json!("draining"));
        }
        for gate in &self.inner.gates {
            let open = gate.is_open();
            ready &= open;
            report.insert(
                gate.name().into(),
                json!(if open { "ok" } else { "waiting" }),
            );
        }
        (ready, report)
    }

    /// Runs every dependency probe concurrently; returns whether all answer, and the report.
    pub async fn dependencies(&self) -> (bool, Map<String, Value>) {
        let checks = futures_util::future::join_all(self.inner.probes.iter().map(|p| async move {
            let result = match tokio::time::timeout(PROBE_TIMEOUT, p.check()).await {
                Ok(r) => r,
                Err(_) => Err("no answer within 2s".to_string()),
            };
            (p.name(), result)
        }))
        .await;
        let mut report = Map::new();
        let mut all = true;
        for (name, result) in checks {
            match result {
                Ok(()) => report.insert(name.into(), json!("ok")),
                Err(reason) => {
                    all = false;
                    report.insert(name.into(), json!(reason))
                }
            };
        }
        (all, report)
    }

    /// The health routes.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/livez", get(|| async { Json(json!({"status": "ok"})) }))
            .route("/readyz", get(readyz))
            .route("/health", get(health))
            .route("/metrics", get(metrics))
            .with_state(self.clone())
    }
}

fn status_of(ready: bool) -> (StatusCode, &'static str) {
    if ready {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    }
}

#[derive(serde::Deserialize)]
struct ReadyQuery {
    verbose: Option<String>,
}

/// 200 while this process takes traffic; `?verbose` adds each dependency's state, which never
/// changes the answer.
async fn readyz(State(health): State<Health>, query: Query<ReadyQuery>) -> impl IntoResponse {
    let (ready, checks) = health.readiness();
    let (status, word) = status_of(ready);
    let mut body = json!({"status": word, "checks": checks});
    if query.verbose.is_some() {
        body["dependencies"] = Value::Object(health.dependencies().await.1);
    }
    (status, Json(body))
}

/// The seed's health check: 200 when this process is ready and every dependency answers, 503
/// with the failing ones otherwise. For monitoring, not for probes.
async fn health(State(health): State<Health>) -> impl IntoResponse {
    let (ready, mut checks) = health.readiness();
    let (dependencies_ok, dependencies) = health.dependencies().await;
    checks.extend(dependencies);
    let (status, word) = status_of(ready && dependencies_ok);
    let body = json!({"status": word, "role": health.inner.role, "version": chat_domain::VERSION, "checks": checks});
    (status, Json(body))
}

async fn metrics() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        chat_ports::metrics::metrics().render(),
    )
}
