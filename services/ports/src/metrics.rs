//! Prometheus metrics, one registry per process (all roles of `chat-server all` share it).

use std::sync::OnceLock;

use prometheus_client::encoding::{text::encode, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of HTTP request metrics. `route` is the matched route template, never the raw path, so
/// ids in paths do not explode cardinality.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

/// Labels of RPC metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    pub pattern: String,
    pub outcome: String,
}

/// Labels of per-pattern latency histograms.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PatternLabels {
    pub pattern: String,
}

/// Labels of the overload counter: where work was refused or dropped.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    pub stage: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The process's metrics.
pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: HistogramFamily<HttpLabels>,
    pub rpc_calls: Family<RpcLabels, Counter>,
    pub rpc_call_duration: HistogramFamily<PatternLabels>,
    pub rpc_handled: Family<RpcLabels, Counter>,
    pub shed: Family<StageLabels, Counter>,
}

fn latency_histogram() -> Histogram {
    // 0.1 ms .. ~6.5 s
    Histogram::new(exponential_buckets(0.0001, 3.0, 11))
}

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let mut registry = Registry::with_prefix("chat");
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_duration: HistogramFamily<HttpLabels> =
            Family::new_with_constructor(latency_histogram);
        let rpc_calls = Family::<RpcLabels, Counter>::default();
        let rpc_call_duration: HistogramFamily<PatternLabels> =
            Family::new_with_constructor(latency_histogram);
        let rpc_handled = Family::<RpcLabels, Counter>::default();
        let shed = Family::<StageLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests served",
            http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            http_duration.clone(),
        );
        registry.register("rpc_calls", "RPC calls made, by outcome", rpc_calls.clone());
        registry.register(
            "rpc_call_duration_seconds",
            "RPC round-trip latency",
            rpc_call_duration.clone(),
        );
        registry.register(
            "rpc_handled",
            "RPC requests handled, by outcome",
            rpc_handled.clone(),
        );
        registry.register(
            "shed",
            "Work refused at once or dropped past its deadline under overload, by stage \
             (http, chat_send, expired_command, expired_rpc, slow_socket)",
            shed.clone(),
        );
        Metrics {
            registry,
            http_requests,
            http_duration,
            rpc_calls,
            rpc_call_duration,
            rpc_handled,
            shed,
        }
    })
}

/// Counts one piece of work refused or dropped under overload at `stage`.
pub fn shed(stage: &'static str) {
    metrics()
        .shed
        .get_or_create(&StageLabels {
            stage: stage.into(),
        })
        .inc();
}

impl Metrics {
    /// The registry in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
