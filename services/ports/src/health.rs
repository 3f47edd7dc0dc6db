//! The readiness port: each adapter reports whether its dependency answers.

/// A dependency check used by readiness.
#[async_trait::async_trait]
pub trait Probe: Send + Sync {
    /// Name shown in the readiness report, for example `mongodb`.
    fn name(&self) -> &'static str;
    /// `Ok` when the dependency answers; otherwise a short reason (never a credential).
    async fn check(&self) -> Result<(), String>;
}
