//! `NodePolicy`: the desired state of one node, compiled by the operator.
//!
//! Written only by the operator (spec) and the node's agent (status), so it
//! carries no CEL of its own beyond what the chain step types bring, and its
//! lists are sized for thousands of peers and rules. It is compact by design:
//! rules point at named address sets instead of repeating member addresses,
//! so the rule count does not grow with the member count.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    mesh_policy::{Action, PolicyMode},
    policy_chain::{
        AccessStep, ClaimToHeader, FailureMode, HeadersStep, JwtAlgorithm, RateLimitStep,
        RequestMatch,
    },
    ports::PortRange,
};

/// The address-set name that stands for every address.
pub const ALL_ADDRESSES: &str = "all";

/// The compiled desired state of one mesh member.
// clippy reads the repeated `printcolumn(...)` entries as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[kube(
    group = "meshguard.io",
    version = "v1alpha1",
    kind = "NodePolicy",
    plural = "nodepolicies",
    shortname = "npol",
    category = "meshguard",
    status = "NodePolicyStatus",
    derive = "PartialEq",
    doc = "The compiled desired state of one mesh member: WireGuard peers, packet-filter rules and L7 chains. Written by the operator; its agent reports status.",
    printcolumn(
        name = "Peers",
        type_ = "integer",
        json_path = ".status.peers",
        description = "Peers on the WireGuard interface"
    ),
    printcolumn(
        name = "Rules",
        type_ = "integer",
        json_path = ".status.rules",
        description = "Packet-filter rules installed"
    ),
    printcolumn(name = "Backend", type_ = "string", json_path = ".status.backend"),
    printcolumn(
        name = "Revision",
        type_ = "string",
        json_path = ".spec.revision",
        description = "Revision the operator wants"
    ),
    printcolumn(
        name = "Applied",
        type_ = "string",
        json_path = ".status.observedRevision",
        description = "Revision the agent enforces"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Applied")].status"#,
        description = "Applied condition: the agent enforces the applied revision"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct NodePolicySpec {
    /// The node's own WireGuard interface.
    pub interface: InterfaceSpec,
    /// Exactly the members this node may exchange traffic with.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub peers: Vec<Peer>,
    /// Every other member, for agents in agent-wide audit mode, which install
    /// them as peers too so that flows the policies would deny can be counted.
    /// Only present when asked for (`meshguard compile --audit-peers`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub audit_peers: Vec<Peer>,
    /// Named address sets that rules refer to.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub address_sets: Vec<AddressSet>,
    /// Rules for traffic arriving at this node, in evaluation order.
    #[serde(default)]
    pub ingress: Vec<FilterRule>,
    /// Rules for traffic this node sends, in evaluation order.
    #[serde(default)]
    pub egress: Vec<FilterRule>,
    /// PolicyChains this node's agent serves, with secrets reduced to digests.
    #[serde(default)]
    #[schemars(length(max = 128))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub chains: Vec<CompiledChain>,
    // Serialized last on purpose: a state file cut short anywhere before
    // its end has no revision and is refused, instead of enforcing the
    // part of the lists that was written (a file cut after its peers
    // parses as a NodePolicy without rules).
    /// A content hash of this spec; agents report it back as `observedRevision`.
    pub revision: String,
}

/// The node's WireGuard interface.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct InterfaceSpec {
    #[serde(rename = "meshIP")]
    pub mesh_ip: String,
    pub listen_port: i32,
    /// The subnets this member routes (its `allowedIPs`), less what other
    /// members own (their mesh IPs, more specific subnets). With `meshIP`
    /// these are the only destinations the agent accepts from the mesh.
    #[serde(default, skip_serializing_if = "Vec::is_empty", rename = "routedIPs")]
    pub routed_ips: Vec<String>,
}

/// One WireGuard peer.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Peer {
    /// The peer's MeshNode name.
    pub name: String,
    pub public_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The peer's mesh IP as a host route, plus its extra `allowedIPs`.
    #[serde(rename = "allowedIPs")]
    pub allowed_ips: Vec<String>,
}

/// A named set of addresses: the union of `addresses` and `cidrs`. The
/// operator has already subtracted every selector's `except` blocks, so the
/// lists are exact (a union of several `cidr` minus `except` blocks and member
/// addresses has no `cidrs`/`except` form in general).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct AddressSet {
    pub name: String,
    /// Single addresses (member mesh IPs, mostly), IPv4 before IPv6. Kept
    /// apart from `cidrs` without a `/32` or `/128`: at thousands of members
    /// that is a tenth of a NodePolicy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// Networks, disjoint from each other and from `addresses`, IPv4 before IPv6.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cidrs: Vec<String>,
}

/// One packet-filter rule on a node.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FilterRule {
    /// `<policy>/<rule name or index>`: named in counters, logs and iptables comments.
    pub id: String,
    pub action: Action,
    /// The rule belongs to an Audit-mode policy: count it, never decide.
    #[serde(default, skip_serializing_if = "is_false")]
    pub audit: bool,
    /// The peer side (the source for ingress, the destination for egress):
    /// an address-set name, or `all`.
    pub set: String,
    /// The local side, for a member that routes a subnet (`allowedIPs`): the
    /// address set of the local addresses the rule covers. Absent: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<String>,
    /// Absent: all traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<PortRange>>,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// A PolicyChain as a node's agent runs it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CompiledChain {
    /// `<namespace>/<name>` of the PolicyChain.
    pub name: String,
    pub routes: Vec<String>,
    pub mode: PolicyMode,
    pub failure_mode: FailureMode,
    #[schemars(length(max = 16))]
    pub steps: Vec<CompiledStep>,
}

/// A chain step with its references resolved.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CompiledStep {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<RequestMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<CompiledApiKey>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<CompiledJwt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4))]
    pub any_of: Option<Vec<CompiledCredential>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitStep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<AccessStep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<HeadersStep>,
}

/// A credential inside a compiled `anyOf`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CompiledCredential {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<CompiledApiKey>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<CompiledJwt>,
}

/// API-key check by digest: the agent hashes the presented key and looks it up.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CompiledApiKey {
    pub header: String,
    /// Read when the header is absent; removed from the forwarded path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_parameter: Option<String>,
    pub keys: Vec<ApiKeyDigest>,
}

/// One client's key, as a digest.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyDigest {
    pub client_id: String,
    /// Lower-case hex SHA-256 of the key.
    pub sha256: String,
}

/// JWT verification with the key set resolved (or the URL to fetch it from).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CompiledJwt {
    pub issuer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audiences: Option<Vec<String>>,
    /// The JWKS document (public keys only), when it came from the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<String>,
    /// The URL the agent fetches the JWKS from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    pub algorithms: Vec<JwtAlgorithm>,
    pub clock_skew_seconds: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims_to_headers: Option<Vec<ClaimToHeader>>,
}

/// What a node's agent reports.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodePolicyStatus {
    /// The spec revision the agent enforces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_revision: Option<String>,
    /// `iptables` or `ebpf`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// Peers on the interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers: Option<i32>,
    /// Packet-filter rules installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<i32>,
    /// When the agent last applied a revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied: Option<Time>,
    /// `Applied` and `Degraded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}
