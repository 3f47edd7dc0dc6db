//! The operator's own HTTP endpoints: health for its probes and metrics for Prometheus.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::metrics::Metrics;

/// `/livez`, `/readyz`, `/health` (the process serves) and `/metrics`.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/livez", get(ok))
        .route("/readyz", get(ok))
        .route("/health", get(ok))
        .route("/metrics", get(prometheus))
        .with_state(metrics)
}

async fn ok() -> &'static str {
    "ok"
}

async fn prometheus(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
}
