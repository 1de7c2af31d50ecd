//! What every packet-filter backend provides: all that reconcile, resync,
//! the metrics and teardown know of one. A backend turns a parsed NodePolicy
//! ([`Desired`]) into kernel state and reads that state back; it never
//! touches peers, addresses or routes (the reconciler orders those around
//! it).
//!
//! ```text
//!  Reconciler ──apply(desired, filter)──▶ dyn Backend ──▶ kernel
//!             ──drift / repair─────────▶      │  iptables+ipset (backend::iptables)
//!  Metrics    ──counters───────────────▶      │  TC programs + maps (backend::ebpf)
//!  teardown   ──teardown───────────────▶      ┘
//! ```

use ipnet::IpNet;

use crate::{backend::ebpf::EbpfError, command::CommandError, desired::Desired};

/// Why a backend could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    Ebpf(#[from] EbpfError),
}

/// Whether rules decide or only count (agent-wide `--enforcement`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Enforcement {
    /// Rules decide: allowed flows pass, everything else is dropped.
    Enforce,
    /// Every rule counts and logs its would-be verdict; nothing is dropped.
    /// The safe first rollout on a live cluster.
    Audit,
}

/// An address family the node enforces (IPv6 only where the kernel has it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(net: &IpNet) -> Family {
        match net {
            IpNet::V4(_) => Family::V4,
            IpNet::V6(_) => Family::V6,
        }
    }
}

/// The agent-wide settings a backend renders a NodePolicy with.
pub struct Filter<'a> {
    pub enforcement: Enforcement,
    /// Where Log rules and audit verdicts are sent (NFLOG group).
    pub nflog_group: u16,
    /// Address ranges that only ever travel through the mesh interface.
    pub mesh_cidrs: &'a [IpNet],
}

/// What one apply put in force.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Kernel rules the NodePolicy's rules became, in the families
    /// enforced (the backend's own guards and default deny not counted).
    pub rules: usize,
    pub changes: Changes,
}

/// What changed in the kernel in one apply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Address sets written (new or changed content).
    pub sets_written: usize,
    pub sets_destroyed: usize,
    /// Kernel rules deleted and inserted by in-place edits.
    pub rules_edited: usize,
    /// Families whose rules were rewritten whole.
    pub rewritten: Vec<Family>,
    /// eBPF map entries written or removed.
    pub entries_written: usize,
}

impl Changes {
    /// Whether what is allowed may have narrowed, so that established
    /// connections must be checked against the new rules.
    pub fn rules_touched(&self) -> bool {
        self.sets_written > 0
            || self.rules_edited > 0
            || !self.rewritten.is_empty()
            || self.entries_written > 0
    }
}

/// What drifted from the applied state (someone flushed a chain, deleted a
/// set...); a resync repairs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Drift {
    Rules(Family),
    Hooks(Family),
    Set(String),
    /// The TC programs are no longer attached to the interface (detached,
    /// or the device was created again).
    Programs,
}

impl Drift {
    /// The `kind` label of `meshguard_agent_drift_repairs_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            Drift::Rules(_) => "rules",
            Drift::Hooks(_) => "hooks",
            Drift::Set(_) => "sets",
            Drift::Programs => "programs",
        }
    }
}

/// Which traffic a rule counter counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    Ingress,
    Egress,
    /// Mesh addresses leaving by another interface (the fail-closed guard).
    Guard,
}

impl Direction {
    /// The `direction` label of the per-rule metrics.
    pub fn label(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
            Direction::Guard => "guard",
        }
    }
}

/// Packet and byte counts of one rule id in one direction, monotonic for
/// as long as the agent runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleCounter {
    pub direction: Direction,
    pub id: String,
    pub packets: u64,
    pub bytes: u64,
}

/// A packet filter. When `apply` fails, the reconciler applies the state
/// before it again; that second apply must put it back whole, whatever the
/// failed one had already written (iptables: each kernel step is a
/// transaction, and after a failure it forgets what it applied, so the next
/// apply rewrites everything).
pub trait Backend: Send {
    /// As the NodePolicy status (`backend`), the logs and the metrics say it.
    fn name(&self) -> &'static str;

    /// Puts in force the rules `desired` asks for, all at once.
    fn apply(&mut self, desired: &Desired, filter: &Filter<'_>) -> Result<Applied, BackendError>;

    /// Whether connections a new revision denies are cut by the backend
    /// itself (eBPF: each flow is decided again by the revision that
    /// follows the one that allowed it), so the kernel's conntrack table
    /// need not be searched for them (iptables).
    fn cuts_denied_flows(&self) -> bool {
        false
    }

    /// How the kernel differs from what was applied last.
    fn drift(&mut self) -> Result<Vec<Drift>, BackendError>;

    /// Puts what was applied last back.
    fn repair(&mut self) -> Result<(), BackendError>;

    /// Per-rule counters of what was applied.
    fn counters(&mut self) -> Result<Vec<RuleCounter>, BackendError>;

    /// Removes everything the backend put in the kernel.
    fn teardown(&mut self) -> Result<(), BackendError>;
}
