//! What one pass decides, as values: the NodePolicies to apply or delete,
//! the statuses to write, the Events to record, and the pass's figures. The
//! controller carries a [`Plan`] out; the reconcile tests assert on it.

use std::{collections::BTreeMap, net::IpAddr, time::Duration};

use meshguard_crds::{
    Kind, MeshNodeStatus, MeshPolicyStatus, NodePolicy, PolicyChainStatus, size::TooLarge,
};
use meshguard_policy::ipam::IpamError;

use crate::index::Namespaced;

/// A status the controller should write (server-side apply on `/status`).
#[derive(Clone, Debug, PartialEq)]
pub enum StatusWrite {
    MeshPolicy(String, MeshPolicyStatus),
    PolicyChain(Namespaced, PolicyChainStatus),
    MeshNode(String, MeshNodeStatus),
}

/// An Event to record about an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub kind: Kind,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: Option<String>,
    pub warning: bool,
    pub reason: String,
    pub message: String,
}

/// A NodePolicy to delete: its MeshNode is gone. The uid is a precondition,
/// so a NodePolicy recreated meanwhile is left alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deletion {
    pub name: String,
    pub uid: Option<String>,
}

#[derive(Debug, Default)]
pub struct Plan {
    /// Complete objects for server-side apply (spec and owner reference).
    pub node_policies: Vec<NodePolicy>,
    /// NodePolicies not written because they are past the size bound, by
    /// node: the node keeps its previous one, its MeshNode says why.
    pub oversized: BTreeMap<String, TooLarge>,
    pub deletions: Vec<Deletion>,
    pub statuses: Vec<StatusWrite>,
    pub notes: Vec<Note>,
    pub summary: Summary,
}

/// Figures for metrics and the log line of a pass.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub members: usize,
    pub policies: usize,
    pub rejected: usize,
    pub compile: Duration,
    pub compiles: usize,
}

/// What became of a MeshNode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Registration {
    Member { ip: IpAddr, fixed: bool },
    NoAddress(IpamError),
    Invalid(Vec<String>),
}
