//! `MeshNode`: one member of the mesh.
//!
//! The agent creates and keeps its own node's MeshNode (owned by the Kubernetes
//! Node); a machine outside the cluster gets one by hand. Labels that selectors
//! see are the MeshNode's labels overlaid on its Kubernetes Node's labels.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A WireGuard public key: 32 bytes in standard base64, so 43 characters and
/// one `=`, and the last character before `=` carries only four bits.
pub const WIREGUARD_KEY_RULE: &str = "self.matches('^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$')";

/// `host:port` with a DNS name or IPv4 address, or `[ipv6]:port`; a host made
/// of digits and dots must be a real IPv4 address.
const ENDPOINT_RULE: &str = r"self.startsWith('[') ? (self.matches('^\\[[0-9a-fA-F:.]+\\]:[0-9]{1,5}$') && isIP(self.substring(1, self.indexOf(']'))) && ip(self.substring(1, self.indexOf(']'))).family() == 6) : (self.matches('^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?:[0-9]{1,5}$') && (!self.matches('^[0-9.]+:') || isIP(self.substring(0, self.lastIndexOf(':')))))";

/// One mesh member: a Kubernetes node or a machine outside the cluster.
// clippy reads the repeated `printcolumn(...)` entries as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[kube(
    group = "meshguard.io",
    version = "v1alpha1",
    kind = "MeshNode",
    plural = "meshnodes",
    shortname = "mnode",
    category = "meshguard",
    status = "MeshNodeStatus",
    derive = "PartialEq",
    doc = "A mesh member: its WireGuard public key, endpoint and mesh IP.",
    printcolumn(name = "Mesh IP", type_ = "string", json_path = ".status.meshIP"),
    printcolumn(name = "Endpoint", type_ = "string", json_path = ".spec.endpoint"),
    printcolumn(
        name = "Public Key",
        type_ = "string",
        json_path = ".spec.publicKey",
        priority = 1
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct MeshNodeSpec {
    /// The WireGuard public key, 44 characters of base64.
    #[schemars(length(max = 44))]
    #[x_kube(validation = Rule::new(WIREGUARD_KEY_RULE).message("publicKey must be a WireGuard public key: 44 characters of base64 ending in ="))]
    pub public_key: String,

    /// Where peers send WireGuard packets: `host:port` or `[ipv6]:port`.
    /// Absent for a member behind NAT that only connects out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 261))]
    #[x_kube(validation = Rule::new(ENDPOINT_RULE).message("endpoint must be host:port or [ipv6]:port, such as 10.0.0.7:51820"))]
    #[x_kube(validation = Rule::new(
        r"!self.matches(':[0-9]{1,5}$') || (int(self.substring(self.lastIndexOf(':') + 1)) >= 1 && int(self.substring(self.lastIndexOf(':') + 1)) <= 65535)"
    ).message("endpoint port must be between 1 and 65535"))]
    pub endpoint: Option<String>,

    /// A fixed mesh IP; the operator allocates one from its mesh CIDR otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "meshIP")]
    #[schemars(length(max = 39))]
    #[x_kube(validation = Rule::new("isIP(self)").message("meshIP must be an IPv4 or IPv6 address"))]
    pub mesh_ip: Option<String>,

    /// Extra CIDRs routed to this member (a subnet behind it).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "allowedIPs"
    )]
    #[schemars(length(max = 32), inner(length(max = 43)))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    #[x_kube(validation = Rule::new("self.all(c, isCIDR(c))").message("every allowedIPs entry must be an IPv4 or IPv6 CIDR"))]
    pub allowed_ips: Option<Vec<String>>,
}

/// What the operator observed about a member.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MeshNodeStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The member's mesh IP: `spec.meshIP`, or the operator's allocation.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "meshIP")]
    pub mesh_ip: Option<String>,
    /// `Registered` and `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}
