//! `/metrics` of the operator: passes and their failures, writes by kind,
//! compile duration, and the size of the mesh it compiles.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// `MeshPolicy`, `PolicyChain`, `MeshNode`, `NodePolicy`, `Event`.
    pub kind: &'static str,
}

/// The kinds the operator writes.
pub const KINDS: [&str; 5] = [
    "MeshPolicy",
    "PolicyChain",
    "MeshNode",
    "NodePolicy",
    "Event",
];

pub struct Metrics {
    /// Reconcile passes (one per burst of changes), by the kind written.
    pub reconciles: Family<KindLabel, Counter>,
    /// Failed writes, by kind.
    pub errors: Family<KindLabel, Counter>,
    pub compile_seconds: Histogram,
    pub members: Gauge,
    pub policies: Gauge,
    pub rejected: Gauge,
    pub node_policy_writes: Counter,
    pub node_policy_deletes: Counter,
    /// 1 while this replica acts (holds the lease, or runs without election).
    pub leader: Gauge,
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Metrics {
        let metrics = Metrics {
            compile_seconds: Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            reconciles: Family::default(),
            errors: Family::default(),
            members: Gauge::default(),
            policies: Gauge::default(),
            rejected: Gauge::default(),
            node_policy_writes: Counter::default(),
            node_policy_deletes: Counter::default(),
            leader: Gauge::default(),
        };
        let r = registry.sub_registry_with_prefix("meshguard_operator");
        r.register(
            "reconciles",
            "Objects reconciled (a status or NodePolicy decided), by kind",
            metrics.reconciles.clone(),
        );
        r.register(
            "reconcile_errors",
            "Writes that failed, by kind; the pass is retried with backoff",
            metrics.errors.clone(),
        );
        r.register(
            "compile_duration_seconds",
            "Time to compile the mesh, per pass",
            metrics.compile_seconds.clone(),
        );
        r.register("members", "Mesh members compiled", metrics.members.clone());
        r.register(
            "policies",
            "MeshPolicies compiled in (accepted, or last accepted version)",
            metrics.policies.clone(),
        );
        r.register(
            "rejected_objects",
            "MeshPolicies and PolicyChains with Accepted=False",
            metrics.rejected.clone(),
        );
        r.register(
            "node_policy_writes",
            "NodePolicies written (server-side apply)",
            metrics.node_policy_writes.clone(),
        );
        r.register(
            "node_policy_deletes",
            "NodePolicies deleted because their MeshNode went",
            metrics.node_policy_deletes.clone(),
        );
        r.register(
            "leader",
            "1 while this replica acts: it holds the lease (or runs without --leader-elect); 0 on a standby, and on a leader that could not renew",
            metrics.leader.clone(),
        );
        // Every kind at 0 from the start, so that rate() and increase() —
        // and the alerts built on them — see the first write and the first
        // failure of each kind.
        for kind in KINDS {
            let _ = metrics.reconciles.get_or_create(&Metrics::kind(kind));
            let _ = metrics.errors.get_or_create(&Metrics::kind(kind));
        }
        metrics
    }

    pub fn kind(kind: &'static str) -> KindLabel {
        KindLabel { kind }
    }
}
