//! Leader election with `kube-leader-election` (a Lease), so two operator replicas never
//! reconcile at once. Losing the lease ends the process: the pod restarts as a follower,
//! which is simpler and safer than trying to stop in-flight reconciles.

use std::future::Future;
use std::time::Duration;

use kube::Client;
use kube_leader_election::{LeaseLock, LeaseLockParams};
use tracing::{error, info};

/// Name of the Lease the replicas compete for.
pub const LEASE_NAME: &str = "chat-operator-leader";
const LEASE_TTL: Duration = Duration::from_secs(15);

/// Why leading stopped.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("lost the leader lease {LEASE_NAME}")]
    Lost,
    #[error("leader election failed: {0}")]
    Election(#[from] kube_leader_election::Error),
}

/// Wait until this replica holds the lease, then run `work` while renewing it. Returns when
/// `work` finishes (the lease is released) or when the lease is lost.
pub async fn run_as_leader<F: Future<Output = ()>>(
    client: Client,
    namespace: &str,
    holder_id: String,
    work: F,
) -> Result<(), LeaderError> {
    let lock = LeaseLock::new(
        client,
        namespace,
        LeaseLockParams {
            lease_name: LEASE_NAME.into(),
            holder_id: holder_id.clone(),
            lease_ttl: LEASE_TTL,
        },
    );
    let renew_every = LEASE_TTL / 3;
    loop {
        match lock.try_acquire_or_renew().await {
            Ok(result) if result.acquired_lease => break,
            Ok(_) => {}
            Err(e) => error!(error = %e, "leader election attempt failed"),
        }
        tokio::time::sleep(renew_every).await;
    }
    info!(%holder_id, lease = LEASE_NAME, "became leader");

    let renew = async {
        loop {
            tokio::time::sleep(renew_every).await;
            match lock.try_acquire_or_renew().await {
                Ok(result) if result.acquired_lease => {}
                Ok(_) => return LeaderError::Lost,
                Err(e) => return LeaderError::Election(e),
            }
        }
    };
    tokio::select! {
        () = work => {
            if let Err(e) = lock.step_down().await {
                error!(error = %e, "releasing the leader lease failed");
            }
            Ok(())
        }
        lost = renew => Err(lost),
    }
}
