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
    state: std::sync::Arc<GateState>,
}

#[derive(Default)]
struct GateState {
    open: std::sync::atomic::AtomicBool,
    /// Times [`Gate::open`] was called: a transport that opens its gate again after it lost and
    /// regained its source (Redis pub/sub) tells its users that they may have missed something.
    openings: std::sync::atomic::AtomicU64,
    /// Woken on each opening, for [`Gate::opened_after`].
    opened: tokio::sync::Notify,
}

impl Gate {
    /// A closed gate, shown as `name` in the readiness report.
    pub fn new(name: &'static str) -> Self {
        Gate {
            name,
            state: Default::default(),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Opens the gate, or says again that it is open: each call counts as an opening.
    pub fn open(&self) {
        self.state
            .openings
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.state
            .open
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.state.opened.notify_waiters();
    }

    pub fn close(&self) {
        self.state
            .open
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// How many times the gate was opened: what was learned while it was open before may be
    /// out of date once this number moves.
    pub fn openings(&self) -> u64 {
        self.state
            .openings
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until the gate has been opened more than `seen` times; the number it has been.
    pub async fn opened_after(&self, seen: u64) -> u64 {
        loop {
            let opened = self.state.opened.notified();
            tokio::pin!(opened);
            // Registered before the count is read: an opening between the two still wakes us.
            opened.as_mut().enable();
            let now = self.openings();
            if now > seen {
                return now;
            }
            opened.await;
        }
    }

    pub fn is_open(&self) -> bool {
        self.state.open.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::Gate;

    #[tokio::test]
    async fn opened_after_waits_for_an_opening_past_the_one_seen() {
        let gate = Gate::new("facts");
        let waiting = tokio::spawn({
            let gate = gate.clone();
            async move { gate.opened_after(1).await }
        });
        gate.open();
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "the first opening was already seen");
        gate.close();
        gate.open();
        assert_eq!(waiting.await.unwrap(), 2);
        // An opening already made is not waited for.
        assert_eq!(gate.opened_after(0).await, 2);
    }
}
