//! Making the node match its NodePolicy, and keeping it so.
//!
//! An apply goes in an order that never opens more than either state allows:
//! everything that can fail without touching the node first (keys, endpoints,
//! rendering), then the interface, the rules and sets, the routes, and last
//! the peers (a new peer appears after the rules that govern it; a removed
//! peer's rules are gone before it is). If a step fails, the previous state is
//! applied again and the error reported: what was enforced stays enforced.
//!
//! A resync compares the kernel and the WireGuard device with what was
//! applied and repairs what drifted: a flushed chain, a deleted set, a removed
//! or extra peer, a missing route.

use std::{
    collections::{BTreeSet, HashSet},
    net::{IpAddr, SocketAddr, ToSocketAddrs},
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::STANDARD};
use ipnet::IpNet;
use meshguard_crds::NodePolicySpec;

use crate::{
    backend::{
        Enforcement,
        iptables::{
            apply::{Changes, Iptables, RuleCounter},
            render::{Options, Rendered, render},
        },
    },
    command::CommandError,
    keys::KeyPair,
    netdev::{Netdev, Route},
    wireguard::{Device, PeerConfig, WireGuardError, diff, handshake},
};

/// Agent-wide settings that shape how a NodePolicy is applied.
pub struct Settings {
    pub interface: String,
    pub enforcement: Enforcement,
    pub nflog_group: u16,
    pub mesh_cidrs: Vec<IpNet>,
    pub persistent_keepalive: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("spec.peers: {0}")]
    Peer(String),
    #[error("spec.interface: {0}")]
    Interface(String),
    #[error(transparent)]
    WireGuard(#[from] WireGuardError),
    #[error(transparent)]
    Command(#[from] CommandError),
}

/// What an apply did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub peers: usize,
    pub peers_added: usize,
    pub peers_removed: usize,
    pub rules: usize,
    pub changes: Changes,
    pub routes_changed: usize,
    /// Peers whose endpoint could not be resolved (added without one).
    pub unresolved: Vec<String>,
    /// Agent-wide audit mode, but the NodePolicy lists no `auditPeers`:
    /// flows to members that are not peers cannot be observed.
    pub audit_without_peers: bool,
    /// How long each step took, for the debug log.
    pub steps: Vec<(&'static str, Duration)>,
}

/// Times the steps of an apply.
struct Steps {
    last: Instant,
    taken: Vec<(&'static str, Duration)>,
}

impl Default for Steps {
    fn default() -> Steps {
        Steps {
            last: Instant::now(),
            taken: Vec::new(),
        }
    }
}

impl Steps {
    fn done(&mut self, step: &'static str) {
        let now = Instant::now();
        self.taken.push((step, now - self.last));
        self.last = now;
    }
}

pub struct Reconciler {
    settings: Settings,
    keys: KeyPair,
    device: Box<dyn Device>,
    netdev: Netdev,
    backend: Iptables,
    /// The peers asked for last, and the state they came from.
    asked: Vec<PeerConfig>,
    /// The rest of what the last successful enforce left.
    enforced: Option<Enforced>,
    current: Option<NodePolicySpec>,
}

struct Enforced {
    mesh_ip: IpAddr,
    listen_port: u16,
    routes: BTreeSet<Route>,
}

/// A NodePolicy turned into what the node needs, before touching anything.
struct Plan {
    mesh_ip: IpAddr,
    listen_port: u16,
    peers: Vec<PeerConfig>,
    rendered: Rendered,
    routes: BTreeSet<Route>,
    unresolved: Vec<String>,
}

impl Reconciler {
    pub fn new(
        settings: Settings,
        keys: KeyPair,
        device: Box<dyn Device>,
        netdev: Netdev,
        backend: Iptables,
    ) -> Reconciler {
        Reconciler {
            settings,
            keys,
            device,
            netdev,
            backend,
            asked: Vec::new(),
            enforced: None,
            current: None,
        }
    }

    pub fn current(&self) -> Option<&NodePolicySpec> {
        self.current.as_ref()
    }

    fn plan(&self, spec: &NodePolicySpec) -> Result<Plan, ApplyError> {
        let mesh_ip: IpAddr = spec.interface.mesh_ip.parse().map_err(|_| {
            ApplyError::Interface(format!(
                "meshIP {:?} is not an address",
                spec.interface.mesh_ip
            ))
        })?;
        let listen_port = u16::try_from(spec.interface.listen_port).map_err(|_| {
            ApplyError::Interface(format!(
                "listenPort {} is not a port",
                spec.interface.listen_port
            ))
        })?;
        let mut peers = Vec::new();
        let mut unresolved = Vec::new();
        let mut routed: Vec<IpNet> = self.settings.mesh_cidrs.clone();
        // Agent-wide audit installs every member, so denied flows can be counted.
        let audit = self.settings.enforcement == Enforcement::Audit;
        let listed = spec
            .peers
            .iter()
            .chain(spec.audit_peers.iter().filter(|_| audit));
        for (i, peer) in listed.enumerate() {
            let public_key: [u8; 32] = STANDARD
                .decode(&peer.public_key)
                .ok()
                .and_then(|k| k.try_into().ok())
                .ok_or_else(|| {
                    ApplyError::Peer(format!(
                        "[{i}] ({}): publicKey is not a WireGuard key",
                        peer.name
                    ))
                })?;
            let allowed_ips = peer
                .allowed_ips
                .iter()
                .map(|a| a.parse::<IpNet>().map(|n| n.trunc()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ApplyError::Peer(format!("[{i}] ({}): allowedIPs: {e}", peer.name)))?;
            // Subnets beyond the mesh CIDR need routes (and blackholes) of their own.
            routed.extend(
                allowed_ips
                    .iter()
                    .filter(|n| !self.settings.mesh_cidrs.iter().any(|m| m.contains(*n))),
            );
            let endpoint = match &peer.endpoint {
                None => None,
                Some(text) => match resolve(text) {
                    Some(address) => Some(address),
                    None => {
                        unresolved.push(format!("{} ({text})", peer.name));
                        None
                    }
                },
            };
            peers.push(PeerConfig {
                public_key,
                endpoint,
                allowed_ips,
                persistent_keepalive: self.settings.persistent_keepalive,
            });
        }
        let options = Options {
            interface: &self.settings.interface,
            enforcement: self.settings.enforcement,
            nflog_group: self.settings.nflog_group,
            mesh_cidrs: &self.settings.mesh_cidrs,
        };
        let rendered = render(spec, &options);
        Ok(Plan {
            mesh_ip,
            listen_port,
            peers,
            rendered,
            routes: Netdev::wanted(&routed),
            unresolved,
        })
    }

    /// Applies `spec`; on failure the previous state is applied again.
    pub fn apply(&mut self, spec: &NodePolicySpec) -> Result<Report, ApplyError> {
        let started = Instant::now();
        let plan = self.plan(spec)?;
        let planned = started.elapsed();
        match self.enforce(&plan) {
            Ok(report) => {
                let mut report = report;
                report.steps.insert(0, ("plan", planned));
                report.audit_without_peers =
                    self.settings.enforcement == Enforcement::Audit && spec.audit_peers.is_empty();
                self.current = Some(spec.clone());
                Ok(report)
            }
            Err(error) => {
                if let Some(previous) = self.current.clone()
                    && let Ok(before) = self.plan(&previous)
                    && let Err(again) = self.enforce(&before)
                {
                    tracing::error!(%again, "putting the previous state back failed too");
                }
                Err(error)
            }
        }
    }

    fn enforce(&mut self, plan: &Plan) -> Result<Report, ApplyError> {
        let mut steps = Steps::default();
        // Parts the last successful enforce left as this plan wants them are
        // not read or written again: a rule change costs only the rules. A
        // resync finds drift in them. Taken, so a failure below forgets it.
        let last = self.enforced.take();
        let interface_same = last
            .as_ref()
            .is_some_and(|l| (l.mesh_ip, l.listen_port) == (plan.mesh_ip, plan.listen_port));
        let peers_same = interface_same && self.asked == plan.peers;
        let routes_same = last.as_ref().is_some_and(|l| l.routes == plan.routes);
        let mut peer_plan = diff::Plan::default();
        if !peers_same {
            let device_state = self.device.get()?;
            if device_state.public_key != Some(self.keys.public())
                || device_state.listen_port != Some(plan.listen_port)
            {
                self.device
                    .configure(&self.keys.private_bytes(), plan.listen_port)?;
            }
            peer_plan = diff::plan(&device_state.peers, &self.asked, &plan.peers);
        }
        steps.done("device");
        if !interface_same {
            self.netdev.configure(plan.mesh_ip)?;
        }
        steps.done("address");
        let changes = self.backend.apply(&plan.rendered)?;
        steps.done("filter");
        let routes_changed = if routes_same {
            0
        } else {
            self.netdev.set_routes(&plan.routes)?
        };
        steps.done("routes");
        self.device.remove_peers(&peer_plan.remove)?;
        self.device.add_peers(&peer_plan.add)?;
        steps.done("peers");
        // Peers this side forgot (changed, or removed behind our back) and
        // the other side still has a session with.
        let before: HashSet<[u8; 32]> = self
            .asked
            .iter()
            .map(|p| p.public_key)
            .chain(peer_plan.remove.iter().copied())
            .collect();
        let readded: Vec<&PeerConfig> = peer_plan
            .add
            .iter()
            .filter(|p| before.contains(&p.public_key))
            .collect();
        handshake::start(&hosts(&readded));
        self.asked = plan.peers.clone();
        self.enforced = Some(Enforced {
            mesh_ip: plan.mesh_ip,
            listen_port: plan.listen_port,
            routes: plan.routes.clone(),
        });
        Ok(Report {
            peers: plan.peers.len(),
            peers_added: peer_plan.add.len(),
            peers_removed: peer_plan.remove.len(),
            rules: plan.rendered.rule_count(),
            changes,
            routes_changed,
            unresolved: plan.unresolved.clone(),
            audit_without_peers: false,
            steps: steps.taken,
        })
    }

    /// Finds what drifted from the applied state and puts it back; returns
    /// the kinds repaired. Each part is checked on its own, so a dead
    /// WireGuard daemon does not keep the rules or the blackholes from repair.
    pub fn resync(&mut self) -> Result<Vec<&'static str>, ApplyError> {
        let Some(spec) = self.current.clone() else {
            return Ok(Vec::new());
        };
        let plan = self.plan(&spec)?;
        let mut repaired = Vec::new();
        let mut first_error: Option<ApplyError> = None;
        let mut keep = |result: Result<(), ApplyError>| {
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        };

        keep((|| {
            let drift = self.backend.drift()?;
            if !drift.is_empty() {
                for d in &drift {
                    tracing::warn!(drift = ?d, "packet filter drifted; repairing");
                    repaired.push(d.kind());
                }
                self.backend.repair()?;
            }
            Ok(())
        })());
        keep((|| {
            // Blackholes stand even without the interface; routes through it need it.
            let have = self.netdev.routes()?;
            let missing: Vec<&Route> = plan.routes.difference(&have).collect();
            let blackholes_only: std::collections::BTreeSet<Route> = plan
                .routes
                .iter()
                .filter(|r| matches!(r, Route::Blackhole(_)))
                .cloned()
                .chain(
                    have.iter()
                        .filter(|r| matches!(r, Route::Through(_)))
                        .cloned(),
                )
                .collect();
            if !missing.is_empty() {
                let target = if self.netdev.exists() {
                    &plan.routes
                } else {
                    &blackholes_only
                };
                if self.netdev.set_routes(target)? > 0 {
                    tracing::warn!(missing = missing.len(), "routes drifted; repaired");
                    repaired.push("routes");
                }
            }
            Ok(())
        })());
        keep((|| {
            let device_state = self.device.get()?;
            if device_state.public_key != Some(self.keys.public())
                || device_state.listen_port != Some(plan.listen_port)
            {
                self.device
                    .configure(&self.keys.private_bytes(), plan.listen_port)?;
                repaired.push("interface");
            }
            let peers = diff::plan(&device_state.peers, &self.asked, &self.asked);
            if !peers.is_empty() {
                tracing::warn!(
                    removed = peers.remove.len(),
                    added = peers.add.len(),
                    "WireGuard peers drifted; repairing"
                );
                self.device.remove_peers(&peers.remove)?;
                self.device.add_peers(&peers.add)?;
                handshake::start(&hosts(&peers.add.iter().collect::<Vec<_>>()));
                repaired.push("peers");
            }
            Ok(())
        })());
        repaired.dedup();
        match first_error {
            Some(e) if repaired.is_empty() => Err(e),
            Some(e) => {
                tracing::error!(error = %e, "part of the resync failed");
                Ok(repaired)
            }
            None => Ok(repaired),
        }
    }

    pub fn counters(&mut self) -> Result<Vec<RuleCounter>, CommandError> {
        self.backend.counters()
    }

    /// Removes everything the agent created: peers, routes, rules, sets.
    pub fn teardown(&mut self) -> Result<(), ApplyError> {
        self.backend.teardown()?;
        self.netdev.teardown()?;
        if let Ok(state) = self.device.get() {
            let keys: Vec<[u8; 32]> = state.peers.iter().map(|p| p.public_key).collect();
            self.device.remove_peers(&keys)?;
        }
        self.current = None;
        self.enforced = None;
        self.asked.clear();
        Ok(())
    }
}

/// `host:port` or `[v6]:port` to an address; names go through the resolver.
fn resolve(endpoint: &str) -> Option<SocketAddr> {
    endpoint
        .parse()
        .ok()
        .or_else(|| endpoint.to_socket_addrs().ok()?.next())
}

/// Each peer's own address: the first host route among its allowed IPs.
fn hosts(peers: &[&PeerConfig]) -> Vec<IpAddr> {
    peers
        .iter()
        .filter_map(|p| {
            p.allowed_ips
                .iter()
                .find(|n| n.prefix_len() == n.max_prefix_len())
                .map(IpNet::addr)
        })
        .collect()
}
