//! Prometheus metrics of the reconciler, served on `/metrics`.

use std::time::Instant;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Counters and timings of reconciliations.
pub struct Metrics {
    registry: Registry,
    reconciliations: Counter,
    failures: Family<Vec<(String, String)>, Counter>,
    duration: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("chat_operator");
        let reconciliations = Counter::default();
        let failures = Family::<Vec<(String, String)>, Counter>::default();
        // 10 ms … ~20 s
        let duration = Histogram::new(exponential_buckets(0.01, 2.0, 12));
        registry.register(
            "reconciliations",
            "ChatDeployment reconciliations started",
            reconciliations.clone(),
        );
        registry.register(
            "reconciliation_errors",
            "ChatDeployment reconciliations that failed, by error kind",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time a ChatDeployment reconciliation took",
            duration.clone(),
        );
        Self {
            registry,
            reconciliations,
            failures,
            duration,
        }
    }
}

impl Metrics {
    /// Count a reconciliation; its duration is recorded when the returned timer drops.
    pub fn reconcile_started(&self) -> ReconcileTimer {
        self.reconciliations.inc();
        ReconcileTimer {
            start: Instant::now(),
            histogram: self.duration.clone(),
        }
    }

    /// Count a failed reconciliation of kind `error`.
    pub fn reconcile_failed(&self, error: &str) {
        self.failures
            .get_or_create(&vec![("error".to_string(), error.to_string())])
            .inc();
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// Records the elapsed time of one reconciliation when dropped.
pub struct ReconcileTimer {
    start: Instant,
    histogram: Histogram,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciliations_failures_and_durations_are_exported() {
        let metrics = Metrics::default();
        drop(metrics.reconcile_started());
        metrics.reconcile_failed("kube");
        let text = metrics.encode();
        assert!(text.contains("chat_operator_reconciliations_total 1"));
        assert!(text.contains("chat_operator_reconciliation_errors_total{error=\"kube\"} 1"));
        assert!(text.contains("chat_operator_reconcile_duration_seconds_count 1"));
    }
}
