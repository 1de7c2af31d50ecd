//! The operator's main loop: watch into the index, wait for a burst to end,
//! reconcile once if leading, retry failed passes per [`error_policy`].

use std::{
    collections::BTreeSet,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use anyhow::Context;
use meshguard_crds::api_client;
use prometheus_client::registry::Registry;
use tokio::{
    sync::mpsc,
    time::{Instant, sleep_until, timeout},
};

use super::{
    Operator,
    cli::Flags,
    error_policy,
    http::{self, Shared},
    leader::Leadership,
    metrics::Metrics,
    watch::{self, Message},
};
use crate::{
    index::Watched,
    reconcile::{Reconciler, Settings},
};

/// A burst of changes is over after `debounce` of quiet, or after this long
/// at most, so a steady stream of changes still gets reconciled.
const LONGEST_BURST: Duration = Duration::from_secs(2);

pub async fn run(flags: Flags) -> anyhow::Result<()> {
    let api = api_client::client(flags.api_read_timeout).await?;
    let lease = api_client::client(flags.lease_settings().request_timeout()).await?;
    let reports = Reports::new();
    let listener = Arc::clone(&reports.shared);
    let address = flags.metrics_listen;
    tokio::spawn(async move {
        if let Err(e) = http::serve(address, listener).await {
            tracing::error!(%address, error = %e, "metrics server stopped");
        }
    });
    run_with(Clients { api, lease }, &flags, &reports, shutdown_signal()).await
}

/// The clients of the loop: one for everything but the Lease, and one for
/// the Lease whose reads are bounded by the renewal grace (a renewal must
/// fail before the lease runs out, not after the API read timeout).
pub struct Clients {
    pub api: kube::Client,
    pub lease: kube::Client,
}

/// What the loop reports, for `/readyz` and `/metrics`.
pub struct Reports {
    pub shared: Arc<Shared>,
    pub metrics: Arc<Metrics>,
}

impl Reports {
    pub fn new() -> Reports {
        let mut registry = Registry::default();
        let metrics = Arc::new(Metrics::new(&mut registry));
        let watches = watch::watches();
        registry.register_collector(watches.collector("meshguard_operator"));
        Reports {
            shared: Arc::new(Shared {
                registry,
                ready: false.into(),
                watches,
            }),
            metrics,
        }
    }
}

impl Default for Reports {
    fn default() -> Reports {
        Reports::new()
    }
}

/// The operator until `shutdown` completes: what [`run`] runs, and what
/// the tests drive against a mocked API server.
pub async fn run_with(
    Clients { api: client, lease }: Clients,
    flags: &Flags,
    reports: &Reports,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let shared = &reports.shared;
    let (tx, mut rx) = mpsc::channel(4096);
    watch::spawn_all(&client, &tx, &shared.watches);
    drop(tx);
    let identity = flags.identity();
    let mut leadership = if flags.leader_elect {
        let settings = flags.lease_settings();
        let lease = Leadership::start(lease, &settings).await.with_context(|| {
            format!(
                "leader election (Lease {}/{})",
                settings.namespace, settings.name
            )
        })?;
        Some(lease)
    } else {
        None
    };
    let settings = Settings {
        mesh_cidr: flags.mesh_cidr,
        listen_port: flags.listen_port,
        audit_peers: flags.audit_peers,
    };
    let mut operator = Operator::new(
        client,
        Reconciler::new(settings),
        Arc::clone(&reports.metrics),
        Some(identity.clone()),
    );
    tracing::info!(%identity, mesh_cidr = %flags.mesh_cidr, leader_elect = flags.leader_elect, "operator started");

    let mut synced = BTreeSet::new();
    let mut leader = leadership.is_none();
    reports.metrics.leader.set(i64::from(leader));
    // A standby never hears "false" turn into "false": after one lease
    // duration without news it knows it is not the leader.
    let known_by = Instant::now() + flags.lease_duration;
    let mut leadership_known = leadership.is_none();
    let (mut dirty, mut failures, mut retry_at) = (true, 0u32, None::<Instant>);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let wake = retry_at.unwrap_or(if leadership_known {
            far_future()
        } else {
            known_by
        });
        tokio::select! {
            message = rx.recv() => {
                let Some(message) = message else { anyhow::bail!("every watcher stopped") };
                dirty |= take(&mut operator, &mut synced, message);
                // Let the burst end before one recompute.
                for message in burst(&mut rx, flags.debounce, LONGEST_BURST).await {
                    dirty |= take(&mut operator, &mut synced, message);
                }
            }
            changed = async {
                match &mut leadership {
                    Some(l) => l.leader.changed().await.map(|()| *l.leader.borrow_and_update()),
                    None => std::future::pending().await,
                }
            } => {
                let now_leader = changed.context("the leader-election task ended")?;
                leadership_known = true;
                if now_leader != leader {
                    tracing::info!(leader = now_leader, "leadership changed");
                }
                leader = now_leader;
                reports.metrics.leader.set(i64::from(leader));
                dirty |= leader;
            }
            () = sleep_until(wake) => {}
            () = &mut shutdown => break,
        }
        if !leadership_known && Instant::now() >= known_by {
            leadership_known = true;
        }
        let caches = synced.len() == Watched::ALL.len();
        shared
            .ready
            .store(caches && leadership_known, Ordering::Relaxed);
        if !(caches && leader && dirty) || retry_at.is_some_and(|t| Instant::now() < t) {
            continue;
        }
        match operator.pass().await {
            Ok(_) => (dirty, failures, retry_at) = (false, 0, None),
            Err(e) => {
                failures += 1;
                let delay = error_policy(&e, failures);
                tracing::warn!(error = %e, failures, retry_in_ms = delay.as_millis() as u64, "reconcile pass failed");
                retry_at = Some(Instant::now() + delay);
            }
        }
    }
    tracing::info!("shutting down; NodePolicies stay as written");
    if let Some(lease) = leadership {
        lease.release().await;
    }
    Ok(())
}

/// The rest of a burst that has begun: whatever arrives until `quiet`
/// passes without a message, or `longest` since the call.
pub async fn burst<T>(rx: &mut mpsc::Receiver<T>, quiet: Duration, longest: Duration) -> Vec<T> {
    let end = Instant::now() + longest;
    let mut out = Vec::new();
    loop {
        let wait = quiet.min(end.saturating_duration_since(Instant::now()));
        match timeout(wait, rx.recv()).await {
            Ok(Some(message)) => out.push(message),
            Ok(None) | Err(_) => return out,
        }
        if Instant::now() >= end {
            return out;
        }
    }
}

/// Applies one watcher message; true when the index changed.
fn take(operator: &mut Operator, synced: &mut BTreeSet<Watched>, message: Message) -> bool {
    match message {
        Message::Update(update) => operator.index.apply(update),
        Message::Synced(kind) => {
            tracing::debug!(?kind, "watch cache synced");
            synced.insert(kind);
            true
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(3600)
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_changes_is_taken_whole_and_a_stream_in_slices() {
        let (tx, mut rx) = mpsc::channel(1024);
        // 100 changes 10 ms apart (a rollout touching 100 MeshNodes).
        let sender = tokio::spawn(async move {
            for i in 0..100 {
                tx.send(i).await.unwrap();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            tokio::time::sleep(Duration::from_secs(10)).await;
            tx.send(100).await.unwrap();
        });
        let first = rx.recv().await.unwrap();
        let rest = burst(&mut rx, Duration::from_millis(200), Duration::from_secs(2)).await;
        assert_eq!(
            (first, rest.len()),
            (0, 99),
            "one recompute for the whole burst"
        );

        let (tx, mut rx) = mpsc::channel(1024);
        let stream = tokio::spawn(async move {
            for i in 0..1000 {
                if tx.send(i).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let started = Instant::now();
        let taken = burst(&mut rx, Duration::from_millis(200), Duration::from_secs(2)).await;
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(2),
            "a steady stream is cut"
        );
        assert!((39..=41).contains(&taken.len()), "{}", taken.len());
        sender.abort();
        stream.abort();
    }
}
