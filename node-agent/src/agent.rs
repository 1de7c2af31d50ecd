//! `meshguard-agent run`: the event loop around the [`Reconciler`].
//!
//! ```text
//!  state file ─(inotify)─▶ updates ─┐
//!  resync timer ────────────────────┼─▶ loop ─▶ endpoints (DNS, async, timeout)
//!  SIGTERM / Ctrl-C ────────────────┘            ─▶ Reconciler (blocking work) ─▶ status, metrics
//!                                            stop: enforcement stays in place
//! ```

use std::{
    path::Path,
    sync::{Arc, Mutex, atomic::Ordering},
    time::Instant,
};

use anyhow::Context;
use meshguard_crds::{NodePolicyStatus, watch::health::Watches};
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;

use crate::{
    backend::{Backend, Enforcement, Family, ebpf::Ebpf, iptables::Iptables},
    cli::{BackendKind, Common, RunArgs, TeardownArgs, UnmatchedRoute, WireGuardMode},
    endpoints::{self, Endpoints},
    http::{self, Shared},
    keys::KeyPair,
    l7::{
        chains::Current,
        jwks::{Fetched, Fetcher, Kept, RemoteJwks, Settings as JwksSettings},
        server::{self, Answered, Processor},
    },
    lock::AgentLock,
    metrics::{BackendLabels, KindLabel, Metrics, RequestLabels, ResultLabel, StepKindLabel},
    netdev::Netdev,
    reconcile::{ApplyError, Reconciler, Settings},
    state::{self, Update, kube::StatusWriter},
    status::{self, Sink, set_condition},
    wireguard::{Device, kernel, uapi::Uapi},
};

/// The address families to enforce: IPv6 only where the kernel has it.
pub fn families() -> Vec<Family> {
    if Path::new("/proc/net/if_inet6").exists() {
        vec![Family::V4, Family::V6]
    } else {
        vec![Family::V4]
    }
}

/// The WireGuard device for the chosen mode.
pub fn device(common: &Common) -> anyhow::Result<Box<dyn Device>> {
    let kernel = match common.wireguard {
        WireGuardMode::Kernel => true,
        WireGuardMode::Uapi => false,
        WireGuardMode::Auto => kernel::module_available(),
    };
    if kernel {
        let device = kernel::WgTool::new(&common.interface);
        device.ensure_interface()?;
        tracing::info!(interface = %common.interface, "WireGuard: kernel module");
        Ok(Box::new(device))
    } else {
        let socket = common.uapi_socket();
        tracing::info!(socket = %socket.display(), "WireGuard: userspace daemon");
        Ok(Box::new(Uapi::new(socket)))
    }
}

/// The packet filter `--backend` names, started (the eBPF backend's event
/// reader spawned); with `auto`, iptables when the eBPF programs cannot
/// load, and why.
fn backend(
    kind: BackendKind,
    enforcement: Enforcement,
    common: &Common,
) -> anyhow::Result<(Box<dyn Backend>, Option<String>)> {
    let iptables = || Iptables::new(&common.interface, families());
    let ebpf = || {
        let mut backend = Ebpf::new(&common.interface, &common.bpffs, iptables());
        backend.start()?;
        // Log rules and audit verdicts, logged as they happen.
        match backend.packet_log() {
            Some(log) => {
                tokio::spawn(log.run(enforcement == Enforcement::Audit));
            }
            None => tracing::error!(
                "the eBPF event ring cannot be read: Log rules and audit verdicts are counted, not logged"
            ),
        }
        Ok::<_, crate::backend::ebpf::EbpfError>(backend)
    };
    Ok(match kind {
        BackendKind::Iptables => (Box::new(iptables()), None),
        BackendKind::Ebpf => match ebpf() {
            Ok(backend) => (Box::new(backend), None),
            Err(e) => anyhow::bail!(
                "--backend ebpf: {e} (eBPF needs a kernel with BTF, CAP_BPF and CAP_NET_ADMIN, and a bpffs at --bpffs or CAP_SYS_ADMIN to mount one; --backend auto falls back to iptables)"
            ),
        },
        BackendKind::Auto => match ebpf() {
            Ok(backend) => (Box::new(backend), None),
            Err(e) => {
                let reason = format!("the eBPF programs could not load: {e}");
                tracing::warn!(%reason, "--backend auto: iptables enforces");
                (Box::new(iptables()), Some(reason))
            }
        },
    })
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    // Held for the agent's life: one agent per interface.
    let path = args.common.agent_lock();
    let _lock = tokio::task::spawn_blocking(move || {
        AgentLock::acquire(&path, || {
            tracing::warn!(lock = %path.display(), "another agent runs for this interface; waiting for it to stop");
        })
    })
    .await??;
    let keys = KeyPair::load_or_create(&args.private_key)?;
    let public_key = keys.public_base64();
    tracing::info!(node = %args.node, public_key = %keys.public_base64(), "starting");
    let device = device(&args.common)?;
    let settings = Settings {
        enforcement: args.enforcement,
        nflog_group: args.nflog_group,
        mesh_cidrs: args.common.mesh_cidrs.clone(),
        persistent_keepalive: args.persistent_keepalive,
    };
    let netdev = Netdev {
        interface: args.common.interface.clone(),
        mtu: args.mtu,
    };
    let (backend, fallback) = backend(args.backend, args.enforcement, &args.common)?;
    let backend_name = backend.name();
    tracing::info!(backend = backend_name, requested = ?args.backend, "packet filter");
    let reconciler = Arc::new(Mutex::new(Reconciler::new(
        settings, keys, device, netdev, backend,
    )));

    let mut registry = Registry::default();
    let for_counters = reconciler.clone();
    let metrics = Metrics::new(
        &mut registry,
        Arc::new(move || {
            for_counters
                .lock()
                .map_err(|_| "the reconciler's lock is poisoned".to_owned())?
                .counters()
                .map_err(|e| e.to_string())
        }),
    );
    metrics
        .backend
        .get_or_create(&BackendLabels {
            backend: backend_name,
            requested: match args.backend {
                BackendKind::Iptables => "iptables",
                BackendKind::Ebpf => "ebpf",
                BackendKind::Auto => "auto",
            },
            fallback: if fallback.is_some() { "true" } else { "false" },
        })
        .set(1);
    // In a cluster the desired state arrives by watch; with a state file
    // there is none, and nothing to be out of step with.
    let watches = if args.state_file.is_some() {
        Watches::default()
    } else {
        Watches::new(state::kube::WATCHES)
    };
    registry.register_collector(watches.collector("meshguard_agent"));
    let shared = Arc::new(Shared {
        registry,
        ready: false.into(),
        watches: watches.clone(),
    });
    let address = args.metrics_listen;
    let server = shared.clone();
    tokio::spawn(async move {
        if let Err(e) = http::serve(address, server).await {
            tracing::error!(%address, error = %e, "metrics and health server stopped");
        }
    });

    // PolicyChains: served only with --ext-proc-listen; the server runs
    // beside the reconciler and shares nothing with it but the chain set.
    let chains = Current::default();
    let jwks = RemoteJwks::new(JwksSettings {
        refresh: args.jwks_refresh,
        refetch: args.jwks_refetch_interval,
    });
    // Why the ext_proc server is not serving (could not bind, or stopped).
    let ext_proc_down: Arc<Mutex<Option<String>>> = Arc::default();
    if let Some(listen) = args.ext_proc_listen.clone() {
        let fetcher = Fetcher::new(args.jwks_ca_file.as_deref(), args.jwks_timeout)?;
        if fetcher.roots() == 0 {
            tracing::warn!(
                "no certificate authority trusted (the system has none, no --jwks-ca-file): fetches of a jwt step's jwks uri will fail"
            );
        }
        tokio::spawn(jwks.clone().run(fetcher, {
            let metrics = metrics.clone();
            let jwks = jwks.clone();
            move |fetched| observe_fetch(&metrics, &jwks, fetched)
        }));
        let processor = Processor {
            current: chains.clone(),
            jwks: jwks.clone(),
            unmatched: match args.unmatched_route {
                UnmatchedRoute::Deny => meshguard_policy::l7::Unmatched::Deny,
                UnmatchedRoute::Allow => meshguard_policy::l7::Unmatched::Allow,
            },
            observe: {
                let metrics = metrics.clone();
                Arc::new(move |answered: Answered<'_>| observe_request(&metrics, answered))
            },
            streams: metrics.l7_streams.clone(),
        };
        // Bound now, so that a port in use is reported in the status
        // (ChainsServed=False) while the packet filter is enforced as usual.
        match server::bind(&listen).await {
            Ok(bound) => {
                tracing::info!(%listen, "serving PolicyChains over ext_proc");
                let stopped = ext_proc_down.clone();
                tokio::spawn(async move {
                    if let Err(e) = server::serve(bound, processor).await {
                        tracing::error!(%listen, error = %e, "ext_proc server stopped; chains are not served");
                    }
                    *stopped.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(format!("the ext_proc server at {listen} stopped"));
                });
            }
            Err(e) => {
                let message = format!("cannot listen on {listen}: {e}");
                tracing::error!(%message, "chains are not served; the packet filter is enforced as usual");
                *ext_proc_down.lock().unwrap_or_else(|p| p.into_inner()) = Some(message);
            }
        }
    }

    let (updates, mut incoming) = mpsc::channel(16);
    let (sink, _watcher) = start_source(&args, public_key, updates, watches).await?;

    let mut status = NodePolicyStatus {
        backend: Some(backend_name.into()),
        ..Default::default()
    };
    if let Some(reason) = &fallback {
        set_condition(
            &mut status.conditions,
            "BackendFallback",
            true,
            "EbpfUnavailable",
            &format!("--backend auto: {reason}; iptables enforces"),
        );
    }
    let mut status_written = true;
    // Endpoint names of the state last applied, and what they resolved to.
    let audit_peers = args.enforcement == Enforcement::Audit;
    let mut names: Vec<String> = Vec::new();
    let mut resolved = Endpoints::default();
    let mut resync = tokio::time::interval(args.resync_interval);
    resync.tick().await;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            Some(update) = incoming.recv() => match update {
                Update::State(spec) => {
                    if status.observed_revision.as_deref() == Some(spec.revision.as_str())
                        && status::condition(&status, "Applied").is_some_and(|c| c.status == "True")
                    {
                        // Already enforced; a refused file before it is no longer the state.
                        metrics.latest_applied.set(1);
                        if status::condition(&status, "Degraded").is_some_and(|c| c.reason == "InvalidState") {
                            set_condition(&mut status.conditions, "Degraded", false, "AsExpected", "");
                            status_written = write_status(&sink, &status).await;
                        }
                        continue;
                    }
                    if args.state_file.is_none() && spec.interface.listen_port != i32::from(args.listen_port) {
                        tracing::warn!(
                            listen_port = spec.interface.listen_port, registered = args.listen_port,
                            "the NodePolicy's listen port differs from the one registered in the MeshNode (--listen-port): peers will miss"
                        );
                    }
                    // PolicyChains, independent of the packet filter: a chain
                    // that cannot run keeps the previous chains, not the
                    // previous rules. `ChainsServed` tells the operator.
                    let chains_served = match &args.ext_proc_listen {
                        None if spec.chains.is_empty() => (true, "NoChains", String::new()),
                        None => (false, "NotListening", format!(
                            "revision {}: {} PolicyChains, but the agent runs without --ext-proc-listen", spec.revision, spec.chains.len()
                        )),
                        Some(listen) => match (ext_proc_down.lock().unwrap_or_else(|p| p.into_inner()).clone(), chains.replace(&spec.chains)) {
                            (Some(why), Ok(_)) => {
                                (false, "ListenFailed", format!("revision {}: {why}; chains are not served", spec.revision))
                            }
                            (None, Ok(served)) => {
                                metrics.l7_chains.set(served as i64);
                                let set = chains.get();
                                jwks.want(set.chains.iter().flat_map(|c| c.remote_jwks()));
                                tracing::info!(revision = %spec.revision, chains = served, "PolicyChains served");
                                (true, "Served", format!("revision {}: {served} PolicyChains served at {listen}", spec.revision))
                            }
                            (_, Err(e)) => {
                                let message = format!("revision {}: {e}; the previous chains stay served", spec.revision);
                                tracing::error!(%message);
                                (false, "ChainsInvalid", message)
                            }
                        },
                    };
                    set_condition(&mut status.conditions, "ChainsServed", chains_served.0, chains_served.1, &chains_served.2);
                    let started = Instant::now();
                    let worker = reconciler.clone();
                    let revision = spec.revision.clone();
                    let wanted = endpoints::names(&spec, audit_peers);
                    let now = endpoints::resolve(wanted.clone(), &resolved, endpoints::TIMEOUT).await;
                    let given = now.clone();
                    let result = tokio::task::spawn_blocking(move || {
                        let mut reconciler = worker.lock().map_err(|_| anyhow::anyhow!("reconciler poisoned"))?;
                        anyhow::Ok(reconciler.apply(&spec, &given))
                    }).await??;
                    metrics.apply_seconds.observe(started.elapsed().as_secs_f64());
                    match result {
                        Ok(report) => {
                            (names, resolved) = (wanted, now);
                            metrics.applies.get_or_create(&ResultLabel { result: "ok" }).inc();
                            metrics.latest_applied.set(1);
                            metrics.peers.set(report.peers as i64);
                            metrics.rules.set(report.rules as i64);
                            tracing::info!(
                                %revision, peers = report.peers, added = report.peers_added, removed = report.peers_removed,
                                rules = report.rules, sets_written = report.changes.sets_written, rules_edited = report.changes.rules_edited, entries_written = report.changes.entries_written,
                                seconds = started.elapsed().as_secs_f64(), "applied"
                            );
                            tracing::debug!(%revision, steps = ?report.steps, "apply steps");
                            status.observed_revision = Some(revision.clone());
                            status.peers = Some(report.peers as i32);
                            status.rules = Some(report.rules as i32);
                            status.last_applied = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()));
                            let message = format!("revision {revision}: {} peers, {} rules", report.peers, report.rules);
                            set_condition(&mut status.conditions, "Applied", true, "Applied", &message);
                            let cut = match &report.connections_cut {
                                Ok(groups) => {
                                    metrics.connections_cut.inc_by(*groups as u64);
                                    None
                                }
                                Err(e) => Some(format!("established connections the new rules deny could not be cut (they pass until they close): {e}")),
                            };
                            if let Some(message) = &cut {
                                tracing::error!(%message);
                                set_condition(&mut status.conditions, "Degraded", true, "ConnectionsNotCut", message);
                            } else if report.audit_without_peers {
                                let message = "agent-wide audit, but the NodePolicy has no auditPeers (compile with --audit-peers): flows to members that are not peers are not observed";
                                tracing::warn!(message);
                                set_condition(&mut status.conditions, "Degraded", true, "AuditWithoutPeers", message);
                            } else if report.unresolved.is_empty() {
                                set_condition(&mut status.conditions, "Degraded", false, "AsExpected", "");
                            } else {
                                let message = format!("endpoints not resolved (peers added without one): {}", report.unresolved.join(", "));
                                tracing::warn!(%message);
                                set_condition(&mut status.conditions, "Degraded", true, "EndpointsUnresolved", &message);
                            }
                            shared.ready.store(true, Ordering::Relaxed);
                        }
                        Err(e) => {
                            metrics.applies.get_or_create(&ResultLabel { result: "error" }).inc();
                            metrics.latest_applied.set(0);
                            let reason = match &e {
                                ApplyError::Invalid(_) => "InvalidSpec",
                                _ => "ApplyFailed",
                            };
                            tracing::error!(%revision, error = %e, "apply failed; the previous state stays enforced");
                            set_condition(&mut status.conditions, "Applied", false, reason, &format!("revision {revision}: {e}; the previous state stays enforced"));
                        }
                    }
                    status_written = write_status(&sink, &status).await;
                }
                Update::Rejected { reason, uid } => {
                    metrics.rejected_states.inc();
                    metrics.latest_applied.set(0);
                    tracing::error!(%reason, "desired state refused; the previous state stays enforced");
                    let message = format!("{reason}; the previous state stays enforced");
                    set_condition(&mut status.conditions, "Degraded", true, "InvalidState", &message);
                    status_written = write_status(&sink, &status).await;
                    if let Err(e) = sink.refused(&message, uid.as_deref()).await {
                        tracing::warn!(error = %e, "the refusal's Event was not recorded; the status says it");
                    }
                }
            },
            _ = resync.tick() => {
                let now = std::time::SystemTime::now().duration_since(std::time::SystemTime::UNIX_EPOCH).unwrap_or_default();
                let (keys, tokens) = chains.forget_idle(now);
                metrics.l7_rate_limit_keys.set(keys as i64);
                metrics.l7_verified_tokens.set(tokens as i64);
                if !status_written {
                    status_written = write_status(&sink, &status).await;
                }
                resolved = endpoints::resolve(names.clone(), &resolved, endpoints::TIMEOUT).await;
                let worker = reconciler.clone();
                let given = resolved.clone();
                let result = tokio::task::spawn_blocking(move || worker.lock().map_err(|_| anyhow::anyhow!("reconciler poisoned"))?.resync(&given).map_err(anyhow::Error::from)).await?;
                match result {
                    Ok(repaired) => {
                        for kind in repaired {
                            metrics.drift_repairs.get_or_create(&KindLabel { kind }).inc();
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "resync failed"),
                }
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
        }
    }
    tracing::info!("stopping; WireGuard peers and rules stay in place");
    Ok(())
}

/// One answered request, counted and logged: the chain, the deciding
/// step, the status and Envoy's request id (never a credential).
fn observe_request(metrics: &Metrics, answered: Answered<'_>) {
    let Answered {
        outcome,
        seconds,
        steps,
        request_id,
    } = answered;
    for (step, seconds) in steps {
        metrics
            .l7_step_seconds
            .get_or_create(&StepKindLabel { kind: step.kind })
            .observe(*seconds);
    }
    let decided = outcome.refusal.as_ref().or(outcome.audited.as_ref());
    let label = RequestLabels {
        chain: outcome.chain.clone().unwrap_or_else(|| "-".to_owned()),
        step: decided
            .and_then(|r| r.step)
            .map(|s| s.to_string())
            .unwrap_or_default(),
        outcome: match (&outcome.chain, &outcome.refusal, &outcome.audited) {
            (None, _, _) => "unmatched",
            (_, Some(_), _) => "refused",
            (_, None, Some(_)) => "audited",
            (_, None, None) => "passed",
        },
    };
    metrics.l7_requests.get_or_create(&label).inc();
    metrics.l7_seconds.observe(seconds);
    let step = outcome
        .refusal
        .as_ref()
        .and_then(|r| r.step)
        .map(|s| s.to_string());
    let reason = outcome.refusal.as_ref().map(|r| r.reason.as_str());
    let audited = outcome.audited.as_ref().map(|r| r.reason.as_str());
    let chain = outcome.chain.as_deref().unwrap_or("-");
    let status = outcome.status();
    // Refusals (and what Audit mode would have refused) at info, so that
    // "why was this refused" is in the log by default; passes at debug.
    if reason.is_some() || audited.is_some() {
        tracing::info!(
            chain,
            status,
            step,
            reason,
            audited,
            request_id,
            seconds,
            "request refused"
        );
    } else {
        tracing::debug!(chain, status, request_id, seconds, "request passed");
    }
}

fn observe_fetch(metrics: &Metrics, jwks: &RemoteJwks, fetched: Fetched<'_>) {
    let Fetched {
        uri,
        result,
        kept,
        seconds,
    } = fetched;
    let label = match &result {
        Ok(_) => "ok",
        Err(e) => e.label(),
    };
    metrics
        .jwks_fetches
        .get_or_create(&ResultLabel { result: label })
        .inc();
    metrics.jwks_fetch_seconds.observe(seconds);
    let (wanted, held) = jwks.counts();
    metrics.jwks_sets.set(held as i64);
    metrics.jwks_missing.set((wanted - held) as i64);
    match (result, kept) {
        (Ok(keys), _) => tracing::debug!(uri, keys, seconds, "JWKS fetched"),
        (Err(error), Kept::Previous { held: true }) => {
            tracing::warn!(uri, %error, "JWKS fetch failed; the last good set stays in use")
        }
        (Err(error), _) => {
            tracing::error!(uri, %error, "JWKS fetch failed and no set is held: its jwt steps cannot verify tokens")
        }
    }
}

/// Starts the state source: the state file, or the Kubernetes API (the
/// NodePolicy watch and the MeshNode registration). Returns where the status
/// goes and, in file mode, the watcher to keep alive.
async fn start_source(
    args: &RunArgs,
    public_key: String,
    updates: mpsc::Sender<Update>,
    watches: Watches,
) -> anyhow::Result<(Sink, Option<notify::RecommendedWatcher>)> {
    if let Some(path) = &args.state_file {
        let watcher = state::file::watch(path.clone(), args.node.clone(), updates)
            .context("watching the state file")?;
        let sink = args.status_file.clone().map_or(Sink::Log, Sink::File);
        return Ok((sink, Some(watcher)));
    }
    let client = meshguard_crds::api_client::client(args.api_read_timeout)
        .await
        .context("outside a cluster, use --state-file")?;
    let registration = state::kube::Registration {
        node: args.node.clone(),
        public_key,
        endpoint: args.endpoint(),
    };
    if registration.endpoint.is_none() {
        tracing::warn!(
            "no --node-ip: MeshNode/{} gets no endpoint, so peers cannot start connections to it",
            args.node
        );
    }
    tokio::spawn(state::kube::keep_registered(
        client.clone(),
        registration,
        watches.clone(),
    ));
    tokio::spawn(state::kube::watch_policy(
        client.clone(),
        args.node.clone(),
        updates,
        watches,
    ));
    Ok((
        Sink::Kube(Box::new(StatusWriter::new(&client, &args.node))),
        None,
    ))
}

/// Writes the status; false when it could not (the next resync tries again).
async fn write_status(sink: &Sink, status: &NodePolicyStatus) -> bool {
    match sink.write(status).await {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(error = %e, "status not written; retrying at the next resync");
            false
        }
    }
}

/// `meshguard-agent teardown`.
pub fn teardown(args: &TeardownArgs) -> anyhow::Result<()> {
    let common = &args.common;
    // Held until everything is removed: no agent starts meanwhile.
    let _lock = if args.wait_for_agent {
        let path = common.agent_lock();
        let lock = AgentLock::acquire(&path, || {
            tracing::info!(lock = %path.display(), "an agent runs for this interface; waiting for it to stop");
        })?;
        tracing::info!(interface = %common.interface, "no agent runs; tearing down");
        Some(lock)
    } else {
        None
    };
    // Whichever backend ran: each removes only what is its own (the eBPF
    // backend's pins and the leak guard it keeps in iptables included).
    Iptables::new(&common.interface, families()).teardown()?;
    Ebpf::new(
        &common.interface,
        &common.bpffs,
        Iptables::new(&common.interface, families()),
    )
    .teardown()?;
    Netdev {
        interface: common.interface.clone(),
        mtu: 0,
    }
    .teardown()?;
    let kernel = common.wireguard == WireGuardMode::Kernel
        || (common.wireguard == WireGuardMode::Auto && kernel::module_available());
    if kernel {
        crate::command::run("ip", &["link", "del", "dev", &common.interface], None)?;
    } else {
        let mut device = Uapi::new(common.uapi_socket());
        if let Ok(state) = device.get() {
            let keys: Vec<[u8; 32]> = state.peers.iter().map(|p| p.public_key).collect();
            device.remove_peers(&keys)?;
        }
        // The daemon owns the interface; its address is ours.
        let _ = crate::command::run("ip", &["addr", "flush", "dev", &common.interface], None);
    }
    tracing::info!(interface = %common.interface, "torn down");
    if let Some(done) = &args.done_file {
        std::fs::write(done, b"torn down\n")
            .with_context(|| format!("writing {}", done.display()))?;
    }
    if args.hold {
        tracing::info!("holding the agent lock until stopped");
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(stopped())?;
    }
    Ok(())
}

/// SIGTERM or Ctrl-C.
async fn stopped() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => Ok(()),
        result = tokio::signal::ctrl_c() => result,
    }
}
