//! Leader election on a `coordination.k8s.io` Lease, with client-go's semantics, so two
//! operator replicas never reconcile at once:
//!
//! - every write of the Lease is a compare-and-swap: created with `create` (a second creator
//!   gets 409), taken over and renewed with `replace` carrying the `resourceVersion` read (a
//!   concurrent writer makes it fail with 409), so two candidates can never both win;
//! - a Lease held by another is taken over only when its record has not changed for a whole
//!   lease duration *as observed by this replica's own clock*, so clock skew between nodes does
//!   not matter;
//! - the leader renews every [`RETRY_PERIOD`]; one failed renewal is retried, and leadership is
//!   given up only when no renewal succeeded for [`RENEW_DEADLINE`] (shorter than the lease
//!   duration, so it stops before anyone else may start);
//! - on SIGTERM a follower exits at once, and a leader finishes its work and releases the
//!   Lease, so the next replica takes over without waiting for expiry.
//!
//! Losing the lease ends the process: the pod restarts as a follower, which is simpler and
//! safer than trying to stop in-flight reconciles.

use std::future::Future;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::Client;
use tokio::time::Instant;
use tracing::{info, warn};

/// Name of the Lease the replicas compete for.
pub const LEASE_NAME: &str = "chat-operator-leader";
/// How long a Lease record stays valid without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How long the leader keeps trying to renew before it gives up leading.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// How often candidates try to acquire and the leader renews.
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);

/// Why leading stopped.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("lost the leader lease {LEASE_NAME}: no renewal succeeded for {RENEW_DEADLINE:?}")]
    Lost,
    #[error("stopped by a signal before becoming leader")]
    Stopped,
}

/// The Lease as this replica last saw it, and when it saw it change.
struct Observed {
    lease: Lease,
    since: Instant,
}

struct Elector {
    api: Api<Lease>,
    holder: String,
    observed: Option<Observed>,
}

impl Elector {
    /// One attempt to acquire or renew. `Ok(true)` when this replica holds the Lease now.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = MicroTime(Utc::now());
        let Some(current) = self.api.get_opt(LEASE_NAME).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(LEASE_NAME.into()),
                    ..Default::default()
                },
                spec: Some(self.spec(now.clone(), now, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.observe(created);
                    Ok(true)
                }
                // Another candidate created it first.
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        self.observe(current.clone());
        let ours = holder == self.holder;
        if !ours && !holder.is_empty() && !self.expired(&spec) {
            return Ok(false);
        }
        let acquired = if ours {
            spec.acquire_time.clone().unwrap_or_else(|| now.clone())
        } else {
            now.clone()
        };
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!ours);
        let mut next = current;
        next.spec = Some(self.spec(acquired, now, transitions));
        // `replace` sends the resourceVersion read above: a concurrent writer makes it fail.
        match self
            .api
            .replace(LEASE_NAME, &PostParams::default(), &next)
            .await
        {
            Ok(written) => {
                self.observe(written);
                Ok(true)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn spec(&self, acquire: MicroTime, renew: MicroTime, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.holder.clone()),
            lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
            acquire_time: Some(acquire),
            renew_time: Some(renew),
            lease_transitions: Some(transitions),
        }
    }

    /// Remember `lease`, and when its record last changed by this replica's clock.
    fn observe(&mut self, lease: Lease) {
        let changed = self
            .observed
            .as_ref()
            .is_none_or(|o| o.lease.spec != lease.spec);
        let since = match &self.observed {
            Some(o) if !changed => o.since,
            _ => Instant::now(),
        };
        self.observed = Some(Observed { lease, since });
    }

    /// Whether the record has stood still for its whole duration since this replica saw it.
    fn expired(&self, spec: &LeaseSpec) -> bool {
        let duration = spec
            .lease_duration_seconds
            .map_or(LEASE_DURATION, |s| Duration::from_secs(s.max(0) as u64));
        self.observed
            .as_ref()
            .is_some_and(|o| o.since.elapsed() > duration)
    }

    /// Give the Lease up so the next replica need not wait for it to expire.
    async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(LEASE_NAME).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.holder.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Utc::now()));
        match self
            .api
            .replace(LEASE_NAME, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => info!(lease = LEASE_NAME, "released the leader lease"),
            Err(e) => warn!(error = %e, "releasing the leader lease failed"),
        }
    }
}

/// Wait until this replica holds the lease, then run `work` while renewing it. Returns when
/// `work` finishes (the lease is released), when the lease is lost, or — before leading —
/// when `stop` completes (SIGTERM to a follower).
pub async fn run_as_leader<F, S>(
    client: Client,
    namespace: &str,
    holder: String,
    work: F,
    stop: S,
) -> Result<(), LeaderError>
where
    F: Future<Output = ()>,
    S: Future<Output = ()>,
{
    let mut elector = Elector {
        api: Api::namespaced(client, namespace),
        holder: holder.clone(),
        observed: None,
    };
    let acquire = async {
        loop {
            match elector.try_acquire_or_renew().await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => warn!(error = %e, "leader election attempt failed"),
            }
            tokio::time::sleep(RETRY_PERIOD).await;
        }
    };
    tokio::select! {
        () = acquire => {}
        () = stop => return Err(LeaderError::Stopped),
    }
    info!(%holder, lease = LEASE_NAME, "became leader");

    let renew = async {
        let mut last_renewal = Instant::now();
        loop {
            tokio::time::sleep(RETRY_PERIOD).await;
            match elector.try_acquire_or_renew().await {
                Ok(true) => last_renewal = Instant::now(),
                Ok(false) => return LeaderError::Lost,
                Err(e) => warn!(error = %e, "renewing the leader lease failed; retrying"),
            }
            if last_renewal.elapsed() >= RENEW_DEADLINE {
                return LeaderError::Lost;
            }
        }
    };
    let result = tokio::select! {
        () = work => Ok(()),
        lost = renew => Err(lost),
    };
    if result.is_ok() {
        elector.release().await;
    }
    result
}
