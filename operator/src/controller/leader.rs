//! Leader election over a coordination.k8s.io Lease (kube-lease-manager):
//! every replica watches, one acts. The lease is renewed well before it
//! expires; a graceful shutdown releases it, so a standby takes over when
//! it next looks (at most a lease duration less the renewal grace) rather
//! than after the abandoned lease expires.
//!
//! A leader that cannot renew stops acting at once. kube-lease-manager's
//! own loop logs a failed renewal and keeps reporting the replica as the
//! leader for as long as the API stays out of reach, while its lease runs
//! out and a standby that still reaches the API takes over: two replicas
//! acting once it heals. Here a failed request ends that manager's turn:
//! the replica reports itself a standby and starts a new manager (backing
//! off from 1 s to 30 s), which reports leadership again as soon as the
//! API shows the lease still held by this replica, or won. Each lease
//! request is bounded by [`LeaseSettings::request_timeout`] (half the
//! renewal grace), so a renewal the API never answers fails before the
//! lease expires.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::{sync::watch, task::JoinHandle};

#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub duration: Duration,
}

impl LeaseSettings {
    fn seconds(&self) -> u64 {
        self.duration.as_secs().max(2)
    }

    /// How long before expiry the lease is renewed: a third of its duration.
    fn grace(&self) -> u64 {
        (self.seconds() / 3).max(1)
    }

    /// The read timeout of the lease's requests: half the renewal grace, so
    /// a renewal that is never answered fails while the lease still holds.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.grace() * 500)
    }
}

/// Leadership as it changes; [`Leadership::release`] gives the lease back.
pub struct Leadership {
    pub leader: watch::Receiver<bool>,
    task: JoinHandle<kube_lease_manager::Result<()>>,
}

/// How long a replica waits before a new manager after a failed request.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LAST_RETRY: Duration = Duration::from_secs(30);

impl Leadership {
    /// Fails when the lease cannot be read or created (RBAC, a missing
    /// namespace): at start-up that is a configuration error.
    pub async fn start(
        client: Client,
        settings: &LeaseSettings,
    ) -> kube_lease_manager::Result<Leadership> {
        let manager = new_manager(&client, settings).await?;
        let (tx, leader) = watch::channel(false);
        let task = tokio::spawn(lead(client, settings.clone(), manager, tx));
        Ok(Leadership { leader, task })
    }

    /// Releases the lease (the background task does it when the receiver goes).
    pub async fn release(self) {
        drop(self.leader);
        match self.task.await {
            Ok(Ok(())) => tracing::info!("lease released"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "releasing the lease failed; it expires by itself")
            }
            Err(e) => tracing::warn!(error = %e, "lease task ended abnormally"),
        }
    }
}

async fn new_manager(
    client: &Client,
    settings: &LeaseSettings,
) -> kube_lease_manager::Result<LeaseManager> {
    LeaseManagerBuilder::new(client.clone(), settings.name.clone())
        .with_namespace(settings.namespace.clone())
        .with_identity(settings.identity.clone())
        .with_field_manager(format!("meshguard-operator-lease-{}", settings.identity))
        .with_duration(settings.seconds())
        .with_grace(settings.grace())
        .build()
        .await
}

/// Reports leadership on `tx` until every receiver is gone, then releases.
async fn lead(
    client: Client,
    settings: LeaseSettings,
    mut manager: LeaseManager,
    tx: watch::Sender<bool>,
) -> kube_lease_manager::Result<()> {
    let mut wait = FIRST_RETRY;
    loop {
        let failed = tokio::select! {
            biased;
            () = tx.closed() => return manager.release().await,
            changed = manager.changed() => match changed {
                Ok(leading) => {
                    wait = FIRST_RETRY;
                    tx.send_replace(leading);
                    continue;
                }
                Err(e) => e,
            },
        };
        if tx.send_replace(false) {
            tracing::warn!(error = %failed, "the lease could not be renewed: acting no more until it is held again");
        } else {
            tracing::warn!(error = %failed, "reading the lease failed");
        }
        // A new manager until one starts; it reports the lease held again.
        manager = loop {
            tokio::select! {
                biased;
                () = tx.closed() => return Ok(()),
                () = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(LAST_RETRY);
            match new_manager(&client, &settings).await {
                Ok(manager) => break manager,
                Err(e) => tracing::warn!(error = %e, retry_in = ?wait, "reading the lease failed"),
            }
        };
    }
}

#[cfg(test)]
mod tests {
    //! Two replicas against one fake API server that keeps a Lease the way
    //! the API server does for this purpose (`meshguard_testkit::lease`).

    #![allow(clippy::unwrap_used, clippy::expect_used)] // test code

    use std::sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    };

    use http::StatusCode;
    use meshguard_testkit::{
        api_server::{ApiServer, failure, mock_client, next, not_found},
        lease::Lease,
    };

    use super::*;

    /// Serves one replica's client from the shared Lease; every request
    /// answered 500 while `down`.
    fn serve(mut server: ApiServer, lease: Arc<Mutex<Lease>>, down: Arc<AtomicBool>) {
        tokio::spawn(async move {
            loop {
                let seen = next(&mut server).await;
                let (status, body) = if down.load(Ordering::Relaxed) {
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        failure(500, "InternalError", "etcdserver: request timed out"),
                    )
                } else if Lease::is_for(&seen) {
                    lease.lock().unwrap().answer(&seen)
                } else {
                    (StatusCode::NOT_FOUND, not_found(seen.path()))
                };
                seen.answer(status, &body);
            }
        });
    }

    async fn replica(identity: &str, lease: &Arc<Mutex<Lease>>) -> Leadership {
        replica_of(identity, lease, Arc::default()).await
    }

    async fn replica_of(
        identity: &str,
        lease: &Arc<Mutex<Lease>>,
        down: Arc<AtomicBool>,
    ) -> Leadership {
        let (client, server) = mock_client();
        serve(server, Arc::clone(lease), down);
        let settings = LeaseSettings {
            namespace: "meshguard-system".into(),
            name: "meshguard-operator".into(),
            identity: identity.into(),
            // Renewed 2 s before expiry: a renewal may stall that long on a
            // loaded machine before the standby takes over.
            duration: Duration::from_secs(6),
        };
        Leadership::start(client, &settings).await.unwrap()
    }

    /// Waits until `replica` reports `leader`; how long it took.
    async fn until(replica: &mut Leadership, leader: bool, within: Duration) -> Duration {
        let started = tokio::time::Instant::now();
        tokio::time::timeout(within, replica.leader.wait_for(|l| *l == leader))
            .await
            .unwrap_or_else(|_| panic!("not leader={leader} within {within:?}"))
            .unwrap();
        started.elapsed()
    }

    #[tokio::test]
    async fn one_replica_acts_and_the_other_takes_over_on_release_or_crash() {
        let lease = Arc::new(Mutex::new(Lease::default()));
        let mut a = replica("replica-a", &lease).await;
        until(&mut a, true, Duration::from_secs(5)).await;
        let mut b = replica("replica-b", &lease).await;
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(
            *a.leader.borrow() && !*b.leader.borrow(),
            "exactly one acts"
        );
        assert_eq!(lease.lock().unwrap().holder().as_deref(), Some("replica-a"));

        // A graceful shutdown gives the lease back before the process goes:
        // the standby takes it when it next looks (at the expiry it last
        // read), without waiting for a lease that nobody renews to expire.
        a.release().await;
        assert_eq!(lease.lock().unwrap().holder(), None, "released");
        until(&mut b, true, Duration::from_secs(10)).await;
        assert_eq!(lease.lock().unwrap().holder().as_deref(), Some("replica-b"));

        // A crashed leader (no release) is replaced once its lease expires.
        let mut c = replica("replica-c", &lease).await;
        b.task.abort();
        until(&mut c, true, Duration::from_secs(20)).await;
        assert_eq!(lease.lock().unwrap().holder().as_deref(), Some("replica-c"));
    }

    /// A leader whose renewals fail stops acting before its lease runs
    /// out (kube-lease-manager alone kept reporting it the leader for as
    /// long as the API was away), and acts again once the API shows the
    /// lease still its own.
    #[tokio::test]
    async fn a_leader_that_cannot_renew_stops_acting_and_resumes_when_it_can() {
        let lease = Arc::new(Mutex::new(Lease::default()));
        let down = Arc::new(AtomicBool::new(false));
        let mut a = replica_of("replica-a", &lease, Arc::clone(&down)).await;
        until(&mut a, true, Duration::from_secs(5)).await;
        down.store(true, Ordering::Relaxed);
        // The next renewal is due 2 s before the 6-s lease expires.
        let stepped_down = until(&mut a, false, Duration::from_secs(6)).await;
        eprintln!(
            "stepped down {:.1} s into the outage",
            stepped_down.as_secs_f64()
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!*a.leader.borrow(), "acting while the API is away");
        down.store(false, Ordering::Relaxed);
        let back = until(&mut a, true, Duration::from_secs(40)).await;
        eprintln!(
            "acting again {:.1} s after the API came back",
            back.as_secs_f64()
        );
        assert_eq!(lease.lock().unwrap().holder().as_deref(), Some("replica-a"));
        a.release().await;
    }
}
