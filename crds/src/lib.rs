//! The `meshguard.io/v1alpha1` API.
//!
//! ```text
//!   MeshPolicy ──┐  (cluster)   rules between members, by name/labels/CIDR/all
//!   PolicyChain ─┤  (namespace) L7 steps for Envoy routes ── Secret, ConfigMap
//!   MeshNode ────┤  (cluster)   one member: public key, endpoint, mesh IP
//!                ▼
//!        operator compiles (meshguard-operator::compile)
//!                ▼
//!   NodePolicy   (cluster, one per MeshNode, same name) ──▶ that node's agent
//! ```
//!
//! This crate holds the types, their OpenAPI schemas with CEL rules, the
//! generated CRD manifests ([`manifests`]) and the checks the API server would
//! run plus the ones it cannot ([`validation`]), so the operator and the
//! offline CLI reject exactly what `kubectl apply` rejects, and more.

#![forbid(unsafe_code)]

#[cfg(feature = "watch")]
pub mod api_client;
pub mod conditions;
pub mod manifests;
pub mod mesh_node;
pub mod mesh_policy;
pub mod node_policy;
pub mod patterns;
pub mod policy_chain;
pub mod ports;
pub mod selector;
pub mod size;
pub mod validation;
#[cfg(feature = "watch")]
pub mod watch;

pub use mesh_node::{MeshNode, MeshNodeSpec, MeshNodeStatus};
pub use mesh_policy::{
    Action, MeshPolicy, MeshPolicySpec, MeshPolicyStatus, PolicyMode, PolicyRule, PolicyTest,
    Verdict,
};
pub use node_policy::{NodePolicy, NodePolicySpec, NodePolicyStatus};
pub use policy_chain::{PolicyChain, PolicyChainSpec, PolicyChainStatus};
pub use ports::{PortRange, PortRule, Protocol};
pub use selector::{CidrBlock, LabelSelector, PeerSelector};

/// The API group of every kind here.
pub const GROUP: &str = "meshguard.io";
/// The API version of every kind here.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` as it appears in manifests.
pub const API_VERSION: &str = "meshguard.io/v1alpha1";

/// The four kinds of the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    MeshPolicy,
    PolicyChain,
    MeshNode,
    NodePolicy,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::MeshPolicy,
        Kind::PolicyChain,
        Kind::MeshNode,
        Kind::NodePolicy,
    ];

    /// The kind's name as written in `kind:`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::MeshPolicy => "MeshPolicy",
            Kind::PolicyChain => "PolicyChain",
            Kind::MeshNode => "MeshNode",
            Kind::NodePolicy => "NodePolicy",
        }
    }

    /// The kind named by `kind:`, if it is one of ours.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether objects of the kind live in a namespace.
    pub fn namespaced(self) -> bool {
        matches!(self, Kind::PolicyChain)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
