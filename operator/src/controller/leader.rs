//! Leader election over a coordination.k8s.io Lease (kube-lease-manager):
//! every replica watches, one acts. The lease is renewed well before it
//! expires; a graceful shutdown releases it, so a standby takes over when
//! it next looks (at most a lease duration less the renewal grace) rather
//! than after the abandoned lease expires.

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

#[cfg(test)]
mod tests {
    //! Two replicas against one fake API server that keeps a Lease the way
    //! the API server does for this purpose: server-side apply refuses to
    //! take a field another field manager set to a different value (409),
    //! strategic merge patches always land and `null` removes a field.

    #![allow(clippy::unwrap_used, clippy::expect_used)] // test code

    use std::{
        collections::BTreeMap,
        sync::{Arc, Mutex},
    };

    use http::StatusCode;
    use meshguard_testkit::api_server::{ApiServer, failure, mock_client, next, not_found};
    use serde_json::{Value, json};

    use super::*;

    const PATH: &str =
        "/apis/coordination.k8s.io/v1/namespaces/meshguard-system/leases/meshguard-operator";

    /// The Lease's spec fields, each with the field manager that set it.
    #[derive(Default)]
    struct Lease {
        exists: bool,
        fields: BTreeMap<String, (Value, String)>,
    }

    impl Lease {
        fn object(&self) -> Value {
            let spec: serde_json::Map<String, Value> = self
                .fields
                .iter()
                .map(|(k, (v, _))| (k.clone(), v.clone()))
                .collect();
            json!({ "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": { "name": "meshguard-operator", "namespace": "meshguard-system" },
                    "spec": spec })
        }

        fn holder(&self) -> Option<String> {
            self.fields
                .get("holderIdentity")
                .and_then(|(v, _)| v.as_str().map(str::to_owned))
        }
    }

    /// Serves one replica's client from the shared Lease.
    fn serve(mut server: ApiServer, lease: Arc<Mutex<Lease>>) {
        tokio::spawn(async move {
            loop {
                let seen = next(&mut server).await;
                let mut lease = lease.lock().unwrap();
                let manager = seen.param("fieldManager").unwrap_or_default().to_owned();
                let (status, body) = match (seen.method(), seen.path()) {
                    (_, path) if !path.starts_with(PATH.rsplit_once('/').unwrap().0) => {
                        (StatusCode::NOT_FOUND, not_found(path))
                    }
                    ("POST", _) if lease.exists => (
                        StatusCode::CONFLICT,
                        json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure",
                                "reason": "AlreadyExists", "code": 409 }),
                    ),
                    ("POST", _) => {
                        lease.exists = true;
                        (StatusCode::CREATED, lease.object())
                    }
                    (_, _) if !lease.exists => (StatusCode::NOT_FOUND, not_found("lease")),
                    ("GET", _) => (StatusCode::OK, lease.object()),
                    ("PATCH", _) => {
                        let apply = seen.content_type() == Some("application/apply-patch+yaml");
                        let spec = seen.body["spec"].as_object().cloned().unwrap_or_default();
                        let conflict = apply
                            && spec.iter().any(|(k, v)| {
                                lease
                                    .fields
                                    .get(k)
                                    .is_some_and(|(old, owner)| *owner != manager && old != v)
                            });
                        if conflict {
                            (
                                StatusCode::CONFLICT,
                                failure(409, "Conflict", "Apply failed with 1 conflict"),
                            )
                        } else {
                            for (k, v) in spec {
                                if v.is_null() {
                                    lease.fields.remove(&k);
                                } else {
                                    lease.fields.insert(k, (v, manager.clone()));
                                }
                            }
                            (StatusCode::OK, lease.object())
                        }
                    }
                    (method, path) => panic!("unexpected {method} {path}"),
                };
                drop(lease);
                seen.answer(status, &body);
            }
        });
    }

    async fn replica(identity: &str, lease: &Arc<Mutex<Lease>>) -> Leadership {
        let (client, server) = mock_client();
        serve(server, Arc::clone(lease));
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
}
