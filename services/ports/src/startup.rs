//! Start-up: waiting for dependencies that may come up after us (as in Kubernetes, where pods
//! start in any order).

use std::future::IntoFuture;
use std::time::Duration;

/// Calls `attempt` every 500 ms until it succeeds or `timeout` passes. Each failure is logged
/// with `what` and `location` (a redacted URI: never pass a credential).
pub async fn wait_for<T, E, F, Fut>(
    what: &str,
    location: &str,
    timeout: Duration,
    mut attempt: F,
) -> Result<T, String>
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
            Err(e) => return Err(format!("{what} at {location} did not answer: {e}")),
        }
    }
}
