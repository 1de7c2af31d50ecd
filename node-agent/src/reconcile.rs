//! Making the node match its NodePolicy, and keeping it so.
//!
//! An apply goes in an order that never opens more than either state allows:
//! everything that can fail without touching the node first (parsing the
//! spec into [`Desired`], which refuses it whole if any part is unusable),
//! then the interface, the rules and sets (the [`Backend`], whichever runs:
//! rendered and applied as one transaction), the connections the new rules
//! deny ([`conntrack`]), the routes, and last the peers (a new peer
//! appears after the rules that govern it; a removed peer's rules are gone
//! before it is). If a step fails, the previous state is applied again and
//! the error reported: what was enforced stays enforced.
//!
//! Endpoint names arrive resolved ([`Endpoints`], from the async side): no
//! step here waits on DNS.
//!
//! A resync compares the kernel and the WireGuard device with what was
//! applied and repairs what drifted: a flushed chain, a deleted set, a removed
//! or extra peer, a missing route; an endpoint name that now resolves
//! elsewhere is updated too.

use std::{
    collections::{BTreeSet, HashSet},
    net::IpAddr,
    time::{Duration, Instant},
};

use ipnet::IpNet;
use meshguard_crds::NodePolicySpec;

use crate::{
    backend::{
        Backend, BackendError, Changes, Enforcement, Filter, RuleCounter,
        counted::{Counted, Counting},
    },
    command::CommandError,
    conntrack,
    desired::{self, Desired, Invalid},
    endpoints::Endpoints,
    keys::KeyPair,
    netdev::{Netdev, Route},
    wireguard::{Device, PeerConfig, WireGuardError, diff, handshake},
};

/// Agent-wide settings that shape how a NodePolicy is applied (the
/// interface is the device's, the netdev's and the backend's own).
pub struct Settings {
    pub enforcement: Enforcement,
    pub nflog_group: u16,
    pub mesh_cidrs: Vec<IpNet>,
    pub persistent_keepalive: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The NodePolicy cannot be enforced as written; nothing of it was applied.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error(transparent)]
    WireGuard(#[from] WireGuardError),
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// What an apply did.
#[derive(Clone, Debug)]
pub struct Report {
    pub peers: usize,
    pub peers_added: usize,
    pub peers_removed: usize,
    pub rules: usize,
    pub changes: Changes,
    pub routes_changed: usize,
    /// Peers whose endpoint could not be resolved (added without one).
    pub unresolved: Vec<String>,
    /// Groups of established connections cut because the new rules deny
    /// them, or why that could not be done.
    pub connections_cut: Result<usize, String>,
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
    backend: Box<dyn Backend>,
    /// The peers asked for last, and the state they came from.
    asked: Vec<PeerConfig>,
    /// The rest of what the last successful enforce left.
    enforced: Option<Enforced>,
    current: Option<Desired>,
}

struct Enforced {
    mesh_ip: IpAddr,
    listen_port: u16,
    routes: BTreeSet<Route>,
}

/// A NodePolicy turned into what the node needs, before touching anything
/// (the packet filter renders its part as it applies it).
struct Plan<'a> {
    desired: &'a Desired,
    mesh_ip: IpAddr,
    listen_port: u16,
    peers: Vec<PeerConfig>,
    routes: BTreeSet<Route>,
    unresolved: Vec<String>,
}

impl Reconciler {
    pub fn new(
        settings: Settings,
        keys: KeyPair,
        device: Box<dyn Device>,
        netdev: Netdev,
        backend: Box<dyn Backend>,
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

    /// The state last applied.
    pub fn current(&self) -> Option<&Desired> {
        self.current.as_ref()
    }

    /// The packet filter's name (NodePolicy status `backend`).
    pub fn backend(&self) -> &'static str {
        self.backend.name()
    }

    fn plan<'a>(&self, desired: &'a Desired, endpoints: &Endpoints) -> Plan<'a> {
        let mut peers = Vec::new();
        let mut unresolved = Vec::new();
        let mut routed: Vec<IpNet> = self.settings.mesh_cidrs.clone();
        // Agent-wide audit installs every member, so denied flows can be counted.
        let audit = self.settings.enforcement == Enforcement::Audit;
        let listed = desired
            .peers
            .iter()
            .chain(desired.audit_peers.iter().filter(|_| audit));
        for peer in listed {
            // Subnets beyond the mesh CIDR need routes (and blackholes) of their own.
            routed.extend(
                peer.allowed_ips
                    .iter()
                    .filter(|n| !self.settings.mesh_cidrs.iter().any(|m| m.contains(*n))),
            );
            let endpoint = match &peer.endpoint {
                None => None,
                Some(text) => match endpoints.get(text) {
                    Some(address) => Some(address),
                    None => {
                        unresolved.push(format!("{} ({text})", peer.name));
                        None
                    }
                },
            };
            peers.push(PeerConfig {
                public_key: peer.public_key,
                endpoint,
                allowed_ips: peer.allowed_ips.clone(),
                persistent_keepalive: self.settings.persistent_keepalive,
            });
        }
        Plan {
            desired,
            mesh_ip: desired.mesh_ip,
            listen_port: desired.listen_port,
            peers,
            routes: Netdev::wanted(&routed),
            unresolved,
        }
    }

    /// Applies `spec`, its endpoint names resolved in `endpoints`; on
    /// failure the previous state is applied again. A spec that cannot be
    /// enforced as written is refused before anything is touched.
    pub fn apply(
        &mut self,
        spec: &NodePolicySpec,
        endpoints: &Endpoints,
    ) -> Result<Report, ApplyError> {
        let started = Instant::now();
        let desired = desired::parse(spec)?;
        let plan = self.plan(&desired, endpoints);
        let planned = started.elapsed();
        match self.enforce(&plan) {
            Ok(mut report) => {
                report.steps.insert(0, ("plan", planned));
                report.audit_without_peers =
                    self.settings.enforcement == Enforcement::Audit && spec.audit_peers.is_empty();
                report.connections_cut = self.cut(&desired, &report.changes);
                self.current = Some(desired);
                Ok(report)
            }
            Err(error) => {
                if let Some(previous) = self.current.clone() {
                    let before = self.plan(&previous, endpoints);
                    if let Err(again) = self.enforce(&before) {
                        tracing::error!(%again, "putting the previous state back failed too");
                    }
                }
                Err(error)
            }
        }
    }

    /// Deletes the conntrack entries of connections `desired` no longer
    /// allows, when the rules may have tightened (the first apply, or any
    /// rule or set change). Agent-wide audit cuts nothing: it drops nothing.
    fn cut(&self, desired: &Desired, changes: &Changes) -> Result<usize, String> {
        let changed = self.current.is_none() || changes.rules_touched();
        if self.settings.enforcement == Enforcement::Audit
            || !changed
            || self.backend.cuts_denied_flows()
        {
            return Ok(0);
        }
        conntrack::cut(desired, &self.settings.mesh_cidrs).map_err(|e| e.to_string())
    }

    fn enforce(&mut self, plan: &Plan<'_>) -> Result<Report, ApplyError> {
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
        let filter = Filter {
            enforcement: self.settings.enforcement,
            nflog_group: self.settings.nflog_group,
            mesh_cidrs: &self.settings.mesh_cidrs,
        };
        let applied = self.backend.apply(plan.desired, &filter)?;
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
            rules: applied.rules,
            changes: applied.changes,
            routes_changed,
            unresolved: plan.unresolved.clone(),
            connections_cut: Ok(0),
            audit_without_peers: false,
            steps: steps.taken,
        })
    }

    /// Finds what drifted from the applied state and puts it back; returns
    /// the kinds repaired. Each part is checked on its own, so a dead
    /// WireGuard daemon does not keep the rules or the blackholes from repair.
    pub fn resync(&mut self, endpoints: &Endpoints) -> Result<Vec<&'static str>, ApplyError> {
        let Some(desired) = self.current.clone() else {
            return Ok(Vec::new());
        };
        let plan = self.plan(&desired, endpoints);
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
            // Against the plan, not only what was asked: an endpoint name
            // may resolve elsewhere now.
            let peers = diff::plan(&device_state.peers, &self.asked, &plan.peers);
            if !peers.is_empty() {
                if peers.drift > 0 {
                    tracing::warn!(
                        removed = peers.remove.len(),
                        added = peers.add.len(),
                        "WireGuard peers drifted; repairing"
                    );
                    repaired.push("peers");
                } else {
                    tracing::info!(
                        updated = peers.add.len(),
                        "peer endpoints resolve to new addresses; updating"
                    );
                }
                self.device.remove_peers(&peers.remove)?;
                self.device.add_peers(&peers.add)?;
                handshake::start(&hosts(&peers.add.iter().collect::<Vec<_>>()));
                self.asked = plan.peers.clone();
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

    /// The backend's per-rule counters, each with what its packets got
    /// under the state last applied.
    pub fn counters(&mut self) -> Result<Vec<(RuleCounter, Counted)>, BackendError> {
        let counters = self.backend.counters()?;
        let counting = Counting::new(self.current.as_ref(), self.settings.enforcement);
        Ok(counters
            .into_iter()
            .map(|c| {
                let got = counting.of(&c);
                (c, got)
            })
            .collect())
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
