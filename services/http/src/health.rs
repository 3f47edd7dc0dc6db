//! Health endpoints every role serves: `/livez` (the process is alive), `/readyz` (its
//! dependencies answer), `/health` (the seed's health check: readiness plus role and version) and
//! `/metrics` (Prometheus).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use chat_ports::health::Probe;
use serde_json::{json, Map, Value};

/// The health state of one process.
#[derive(Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

struct Inner {
    role: String,
    probes: Vec<Arc<dyn Probe>>,
    draining: AtomicBool,
}

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

impl Health {
    /// Health for `role` with the given dependency probes.
    pub fn new(role: impl Into<String>, probes: Vec<Arc<dyn Probe>>) -> Self {
        Health {
            inner: Arc::new(Inner {
                role: role.into(),
                probes,
                draining: AtomicBool::new(false),
            }),
        }
    }

    /// From now on readiness fails, so load balancers stop sending new work while in-flight work
    /// finishes.
    pub fn set_draining(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
    }

    /// Runs every probe concurrently; returns overall readiness and the per-check report.
    pub async fn readiness(&self) -> (bool, Map<String, Value>) {
        let checks = futures_util::future::join_all(self.inner.probes.iter().map(|p| async move {
            let result = match tokio::time::timeout(PROBE_TIMEOUT, p.check()).await {
                Ok(r) => r,
                Err(_) => Err("no answer within 2s".to_string()),
            };
            (p.name(), result)
        }))
        .await;
        let mut report = Map::new();
        let mut ready = !self.inner.draining.load(Ordering::SeqCst);
        if !ready {
            report.insert("shutdown".into(), json!("draining"));
        }
        for (name, result) in checks {
            match result {
                Ok(()) => report.insert(name.into(), json!("ok")),
                Err(reason) => {
                    ready = false;
                    report.insert(name.into(), json!(reason))
                }
            };
        }
        (ready, report)
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

async fn readyz(State(health): State<Health>) -> impl IntoResponse {
    let (ready, checks) = health.readiness().await;
    let (status, word) = status_of(ready);
    (status, Json(json!({"status": word, "checks": checks})))
}

async fn health(State(health): State<Health>) -> impl IntoResponse {
    let (ready, checks) = health.readiness().await;
    let (status, word) = status_of(ready);
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
