//! Leader election over a coordination.k8s.io Lease (kube-lease-manager):
//! every replica watches, one acts. The lease is renewed well before it
//! expires; a graceful shutdown releases it, so a standby takes over at
//! once rather than after the lease duration.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::{sync::watch, task::JoinHandle};

pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub duration: Duration,
}

/// Leadership as it changes; [`Leadership::release`] gives the lease back.
pub struct Leadership {
    pub leader: watch::Receiver<bool>,
    task: JoinHandle<kube_lease_manager::Result<LeaseManager>>,
}

impl Leadership {
    pub async fn start(
        client: Client,
        settings: &LeaseSettings,
    ) -> kube_lease_manager::Result<Leadership> {
        let seconds = settings.duration.as_secs().max(2);
        // Renew a third of the duration before expiry.
        let grace = (seconds / 3).max(1);
        let manager = LeaseManagerBuilder::new(client, settings.name.clone())
            .with_namespace(settings.namespace.clone())
            .with_identity(settings.identity.clone())
            .with_field_manager(format!("meshguard-operator-lease-{}", settings.identity))
            .with_duration(seconds)
            .with_grace(grace)
            .build()
            .await?;
        let (leader, task) = manager.watch().await;
        Ok(Leadership { leader, task })
    }

    /// Releases the lease (the background task does it when the receiver goes).
    pub async fn release(self) {
        drop(self.leader);
        match self.task.await {
            Ok(Ok(_)) => tracing::info!("lease released"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "releasing the lease failed; it expires by itself")
            }
            Err(e) => tracing::warn!(error = %e, "lease task ended abnormally"),
        }
    }
}
