//! `/metrics`, `/healthz` (the process answers), `/readyz` (a desired state
//! has been applied, and in a cluster the agent's watches are in step with
//! the API).
//!
//! While the API is out of reach the agent keeps enforcing what it last
//! applied, and is not ready: a NodePolicy changed meanwhile does not reach
//! this node, and the probe, `kubectl get pods` and the
//! `meshguard_agent_watch_synced` alert say so (Calico's and Cilium's
//! agents do the same). Liveness stays: a restart would not bring the API
//! back.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use meshguard_crds::watch::health::Watches;
use prometheus_client::registry::Registry;

pub struct Shared {
    pub registry: Registry,
    /// A desired state has been applied.
    pub ready: AtomicBool,
    /// The watches of the cluster mode (none with a state file).
    pub watches: Watches,
}

pub async fn serve(address: SocketAddr, shared: Arc<Shared>) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(shared);
    let listener = tokio::net::TcpListener::bind(address).await?;
    axum::serve(listener, app).await
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    // Reading kernel counters runs commands: keep it off the async threads.
    let encoded = tokio::task::spawn_blocking(move || {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &shared.registry).map(|()| text)
    })
    .await;
    match encoded {
        Ok(Ok(text)) => (
            StatusCode::OK,
            [(
                "content-type",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        _ => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn ready(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let (ready, why) = shared.readiness();
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, why)
}

impl Shared {
    /// Whether the agent is ready, and the answer that says so or why not.
    pub fn readiness(&self) -> (bool, String) {
        let applied = if self.ready.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err("no desired state applied yet")
        };
        self.watches.readiness(
            applied,
            "the last state applied stays enforced, but changes to it cannot arrive",
        )
    }
}

#[cfg(test)]
mod tests {
    use kube::runtime::watcher::Event;
    use meshguard_crds::NodePolicy;

    use super::*;

    #[test]
    fn ready_once_applied_and_while_every_watch_is_in_sync() {
        let file_mode = Shared {
            registry: Registry::default(),
            ready: false.into(),
            watches: Watches::default(),
        };
        assert!(!file_mode.readiness().0);
        file_mode.ready.store(true, Ordering::Relaxed);
        assert_eq!(file_mode.readiness(), (true, "ready\n".to_owned()));

        let cluster = Shared {
            registry: Registry::default(),
            ready: true.into(),
            watches: Watches::new(["NodePolicy"]),
        };
        let (ready, why) = cluster.readiness();
        assert!(
            !ready && why.contains("NodePolicy watch: not listed yet"),
            "{why}"
        );
        cluster
            .watches
            .observe::<NodePolicy>("NodePolicy", &Ok(Event::InitDone));
        assert!(cluster.readiness().0);
        cluster.watches.observe::<NodePolicy>(
            "NodePolicy",
            &Err(kube::runtime::watcher::Error::NoResourceVersion),
        );
        let (ready, why) = cluster.readiness();
        assert!(
            !ready && why.starts_with("the last state applied stays enforced"),
            "{why}"
        );
    }
}
