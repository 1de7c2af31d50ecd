//! Mesh members as the compiler sees them: a MeshNode with its labels
//! resolved (MeshNode labels over the Kubernetes Node's) and its mesh IP known.

use std::{collections::BTreeMap, net::IpAddr};

use crate::addresses::Prefix;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub mesh_ip: IpAddr,
    pub public_key: String,
    pub endpoint: Option<String>,
    /// Extra prefixes routed to this member (a subnet behind it).
    pub allowed_ips: Vec<Prefix>,
}

/// The labels selectors see for a member: its MeshNode's labels over those
/// of the Kubernetes Node of the same name. One rule for the operator (Node
/// watch) and the CLI (`kind: Node` documents), so both give one answer.
pub fn labels(
    node_labels: Option<&BTreeMap<String, String>>,
    mesh_node_labels: Option<&BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let mut labels = node_labels.cloned().unwrap_or_default();
    labels.extend(mesh_node_labels.cloned().unwrap_or_default());
    labels
}

impl Member {
    /// The prefixes peers route to this member: its mesh IP, then its allowed IPs.
    pub fn routed(&self) -> Vec<Prefix> {
        let mut routed = vec![Prefix::host(self.mesh_ip)];
        routed.extend(self.allowed_ips.iter().copied());
        routed
    }
}

/// One end of a flow: a member, or an address that is not one.
#[derive(Clone, Copy, Debug)]
pub enum Endpoint<'a> {
    Member(&'a Member),
    Address(IpAddr),
}

impl Endpoint<'_> {
    pub fn ip(&self) -> IpAddr {
        match self {
            Endpoint::Member(m) => m.mesh_ip,
            Endpoint::Address(ip) => *ip,
        }
    }

    pub fn member(&self) -> Option<&Member> {
        match self {
            Endpoint::Member(m) => Some(m),
            Endpoint::Address(_) => None,
        }
    }
}

impl std::fmt::Display for Endpoint<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Member(m) => write!(f, "{} ({})", m.name, m.mesh_ip),
            Endpoint::Address(ip) => write!(f, "{ip}"),
        }
    }
}
