//! Logging through `tracing`: human-readable text or one JSON object per line.

use tracing_subscriber::{fmt, prelude::*, EnvFilter};

use chat_domain::config::LogFormat;

/// Installs the global subscriber. `filter` uses `RUST_LOG` syntax; an invalid filter falls back
/// to `info` (and says so) rather than silencing the process.
pub fn init(format: LogFormat, filter: &str) {
    let (env_filter, bad_filter) = match EnvFilter::try_new(filter) {
        Ok(f) => (f, false),
        Err(_) => (EnvFilter::new("info"), true),
    };
    let registry = tracing_subscriber::registry().with(env_filter);
    let result = match format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
        LogFormat::Text => registry.with(fmt::layer().with_target(false)).try_init(),
    };
    if result.is_ok() && bad_filter {
        tracing::warn!("RUST_LOG is not a valid filter; logging at info");
    }
}
