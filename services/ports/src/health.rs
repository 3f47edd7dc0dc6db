//! The readiness port: each adapter reports whether its dependency answers.

/// A dependency check used by readiness.
#[async_trait::async_trait]
pub trait Probe: Send + Sync {
    /// Name shown in the readiness report, for example `mongodb`.
    fn name(&self) -> &'static str;
    /// `Ok` when the dependency answers; otherwise a short reason (never a credential).
    async fn check(&self) -> Result<(), String>;
}

/// Something this process must have done before it takes traffic, and keep doing while it does
/// (the chat role's facts tail, for instance): readiness is false while any gate is closed.
/// Unlike a [`Probe`], a gate belongs to the process itself, so an outage of a dependency never
/// closes it.
#[derive(Clone)]
pub struct Gate {
    name: &'static str,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Gate {
    /// A closed gate, shown as `name` in the readiness report.
    pub fn new(name: &'static str) -> Self {
        Gate {
            name,
            open: Default::default(),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn open(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn close(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn is_open(&self) -> bool {
        self.open.load(std::sync::atomic::Ordering::SeqCst)
    }
}
