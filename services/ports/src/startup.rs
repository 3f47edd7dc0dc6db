//! Start-up: waiting for dependencies that may come up after us (as in Kubernetes, where pods
//! start in any order).

use std::future::IntoFuture;
use std::path::PathBuf;
use std::time::Duration;

/// Why a role could not start on its dependencies, its database file or its keys. Messages name
/// the setting at fault, never its value: a URI may hold a password.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A setting holds a value that cannot be used.
    #[error("{variable} is not valid: {why}")]
    InvalidSetting { variable: &'static str, why: String },
    /// A dependency did not answer before the start-up timeout.
    #[error("{what} at {location} did not answer within {waited:?}: {last_error}")]
    NotAnswering {
        what: String,
        location: String,
        waited: Duration,
        last_error: String,
    },
    /// A file or directory could not be created or opened.
    #[error("cannot open {}: {why}", path.display())]
    File { path: PathBuf, why: String },
    /// A start-up step on a reachable dependency failed (indexes, topics, the development key).
    #[error("{step}: {source}")]
    Step {
        step: &'static str,
        #[source]
        source: chat_domain::Error,
    },
}

impl StartupError {
    /// A failed start-up `step`.
    pub fn step(step: &'static str) -> impl Fn(chat_domain::Error) -> Self + Copy {
        move |source| StartupError::Step { step, source }
    }
}

/// Calls `attempt` every 500 ms until it succeeds or `timeout` passes. Each failure is logged
/// with `what` and `location` (a redacted URI: never pass a credential).
pub async fn wait_for<T, E, F, Fut>(
    what: &str,
    location: &str,
    timeout: Duration,
    mut attempt: F,
) -> Result<T, StartupError>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: IntoFuture<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(dependency = what, location, error = %e, "waiting for dependency");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => {
                return Err(StartupError::NotAnswering {
                    what: what.to_string(),
                    location: location.to_string(),
                    waited: timeout,
                    last_error: e.to_string(),
                })
            }
        }
    }
}
