//! `/metrics`, `/healthz` (the process answers) and `/readyz` (every
//! watcher has listed its kind once, leadership is known, and every watch is
//! in step with the API now).
//!
//! While the API is out of reach the operator keeps its index and writes
//! nothing new (there is nothing new to know), and is not ready, naming
//! the watches that are out of step and why.

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
    /// Every kind listed once and leadership known.
    pub ready: AtomicBool,
    pub watches: Watches,
}

pub async fn serve(address: SocketAddr, shared: Arc<Shared>) -> std::io::Result<()> {
    serve_on(tokio::net::TcpListener::bind(address).await?, shared).await
}

pub async fn serve_on(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(shared);
    axum::serve(listener, app).await
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &shared.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                "content-type",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
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
    /// Whether the operator is ready, and the answer that says so or why not.
    pub fn readiness(&self) -> (bool, String) {
        let started = if self.ready.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err("caches not synced or leadership not yet known")
        };
        self.watches.readiness(
            started,
            "what was last seen stays in use, but changes cannot arrive",
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // test code

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::controller::metrics::Metrics;

    async fn get(address: SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test]
    async fn readiness_follows_the_flag_and_metrics_are_served() {
        let mut registry = Registry::default();
        let metrics = Metrics::new(&mut registry);
        metrics.members.set(42);
        let watches = Watches::new(["MeshPolicy"]);
        let shared = Arc::new(Shared {
            registry,
            ready: AtomicBool::new(false),
            watches: watches.clone(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(serve_on(listener, Arc::clone(&shared)));
        assert!(get(address, "/healthz").await.starts_with("HTTP/1.1 200"));
        assert!(get(address, "/readyz").await.starts_with("HTTP/1.1 503"));
        shared.ready.store(true, Ordering::Relaxed);
        let unsynced = get(address, "/readyz").await;
        assert!(
            unsynced.starts_with("HTTP/1.1 503") && unsynced.contains("MeshPolicy watch"),
            "a watch out of sync: {unsynced}"
        );
        watches.observe::<meshguard_crds::MeshPolicy>(
            "MeshPolicy",
            &Ok(kube::runtime::watcher::Event::InitDone),
        );
        assert!(get(address, "/readyz").await.starts_with("HTTP/1.1 200"));
        let body = get(address, "/metrics").await;
        assert!(body.contains("meshguard_operator_members 42"), "{body}");
    }
}
