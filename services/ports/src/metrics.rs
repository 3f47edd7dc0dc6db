//! Prometheus metrics, one registry per process (all roles of `chat-server all` share it).

use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, Utc};

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

/// Labels of the per-hop time of a chat message.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HopLabels {
    pub hop: String,
}

/// The hops of a chat message from `chat.message.send` to `chat.message.incoming`, in order
/// (`chat_message_hop_seconds`; its help text says where each starts and ends).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hop {
    CommandQueued,
    CommandLog,
    StoreQueued,
    Store,
    FactLog,
    Emit,
}

impl Hop {
    pub const ALL: [Hop; 6] = [
        Hop::CommandQueued,
        Hop::CommandLog,
        Hop::StoreQueued,
        Hop::Store,
        Hop::FactLog,
        Hop::Emit,
    ];

    /// Its `hop` label.
    pub fn name(self) -> &'static str {
        match self {
            Hop::CommandQueued => "command_queued",
            Hop::CommandLog => "command_log",
            Hop::StoreQueued => "store_queued",
            Hop::Store => "store",
            Hop::FactLog => "fact_log",
            Hop::Emit => "emit",
        }
    }
}

const HOP_HELP: &str = "Time a chat message (chat.message.send) spends in each hop until it is \
     emitted as chat.message.incoming. command_queued: the chat role received the send on its \
     socket until its command is stamped and handed to the event log (the socket's send queue, \
     the membership check). command_log: the command's stamp until the message role's consumer \
     reads it off the log (produce, broker, fetch, and a backlog the consumer has not read yet \
     while its lanes are full). store_queued: read off the log until its handling starts \
     (behind earlier commands of its consumer lane: one group's commands are handled in order). store: checking and \
     storing the message, until its fact is stamped. fact_log: the fact's stamp until a chat \
     replica's facts tail takes it (produce, broker, fetch, earlier facts). emit: taken until \
     emitted to the room's sockets on that replica and the sender's ack answered. command_log \
     and fact_log span two processes and compare their wall clocks, which on different \
     machines may disagree (a negative difference counts as 0). Sends only; fact_log and emit \
     are counted once per chat replica";

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
    pub message_hops: HistogramFamily<HopLabels>,
    pub resubscribed: Counter,
    /// `message_hops` of each [`Hop`], in [`Hop::ALL`]'s order: observed without a label lookup.
    hops: Vec<Histogram>,
}

fn latency_histogram() -> Histogram {
    // 0.1 ms .. ~6.5 s
    Histogram::new(exponential_buckets(0.0001, 3.0, 11))
}

fn hop_histogram() -> Histogram {
    // 10 µs .. ~10 s: an emit takes tens of microseconds, a saturated hop seconds.
    Histogram::new(exponential_buckets(0.000_01, 2.0, 21))
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
        let message_hops: HistogramFamily<HopLabels> = Family::new_with_constructor(hop_histogram);
        let hops = Hop::ALL
            .iter()
            .map(|hop| {
                message_hops
                    .get_or_create(&HopLabels {
                        hop: hop.name().into(),
                    })
                    .clone()
            })
            .collect();
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
        registry.register("message_hop_seconds", HOP_HELP, message_hops.clone());
        let resubscribed = Counter::default();
        registry.register(
            "facts_resubscribed",
            "Times the facts tail subscribed again after losing its subscription (the Redis \
             relay): facts published meanwhile were not relayed to this process, and a chat \
             replica resynchronises its sockets",
            resubscribed.clone(),
        );
        Metrics {
            registry,
            http_requests,
            http_duration,
            rpc_calls,
            rpc_call_duration,
            rpc_handled,
            shed,
            message_hops,
            resubscribed,
            hops,
        }
    })
}

/// Counts `elapsed` as one chat message's time in `hop`.
pub fn hop(hop: Hop, elapsed: Duration) {
    metrics().hops[hop as usize].observe(elapsed.as_secs_f64());
}

/// Counts the time from `stamped` to `until`, wall-clock times possibly of two processes, as
/// one chat message's time in `hop`; a negative difference (clocks apart) counts as 0.
pub fn hop_between(hop: Hop, stamped: DateTime<Utc>, until: DateTime<Utc>) {
    let elapsed = (until - stamped).to_std().unwrap_or_default();
    self::hop(hop, elapsed);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the exposition line that starts with `series`.
    fn value(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    }

    #[test]
    fn every_hop_is_exposed_and_a_clock_behind_counts_as_zero() {
        let series = |kind: &str, hop: Hop| {
            format!("chat_message_hop_seconds_{kind}{{hop=\"{}\"}}", hop.name())
        };
        let text = metrics().render();
        for hop in Hop::ALL {
            value(&text, &series("count", hop));
        }
        let before = value(&text, &series("count", Hop::FactLog));
        let sum = value(&text, &series("sum", Hop::FactLog));
        let now = Utc::now();
        hop_between(Hop::FactLog, now, now - chrono::Duration::seconds(1));
        let text = metrics().render();
        assert_eq!(value(&text, &series("count", Hop::FactLog)), before + 1.0);
        assert_eq!(value(&text, &series("sum", Hop::FactLog)), sum);
    }
}
