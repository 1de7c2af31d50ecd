//! `MeshPolicy`: who may talk to whom on the mesh.
//!
//! Policies are cluster-scoped because mesh members (nodes and machines outside
//! the cluster) are. The semantics every field obeys are in `docs/semantics.md`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{patterns, ports::PortRule, ports::Protocol, selector::PeerSelector};

/// Prioritized Allow, Deny and Log rules between mesh members.
// clippy reads the repeated `printcolumn(...)` entries as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[kube(
    group = "meshguard.io",
    version = "v1alpha1",
    kind = "MeshPolicy",
    plural = "meshpolicies",
    shortname = "mpol",
    category = "meshguard",
    status = "MeshPolicyStatus",
    derive = "PartialEq",
    doc = "Prioritized Allow, Deny and Log rules between mesh members. Lower priority values are evaluated first; the mesh is default-deny.",
    printcolumn(
        name = "Priority",
        type_ = "integer",
        json_path = ".spec.priority",
        description = "Lower is evaluated first"
    ),
    printcolumn(
        name = "Mode",
        type_ = "string",
        json_path = ".spec.mode",
        description = "Enforce or Audit"
    ),
    printcolumn(
        name = "Enforced",
        type_ = "integer",
        json_path = ".status.nodesEnforced",
        description = "Nodes whose agent enforces the current revision"
    ),
    printcolumn(
        name = "Targeted",
        type_ = "integer",
        json_path = ".status.nodesTargeted",
        description = "Nodes this policy applies to"
    ),
    printcolumn(
        name = "Accepted",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Accepted")].status"#,
        description = "Whether the policy is valid and compiled"
    ),
    printcolumn(
        name = "Tests",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="TestsPassed")].status"#,
        description = "Whether the in-policy tests pass"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct MeshPolicySpec {
    /// Evaluation order, 0 to 1000: lower values first, ties broken by name.
    #[serde(default = "default_priority")]
    #[schemars(range(min = 0, max = 1000))]
    pub priority: i32,

    /// `Enforce` decides traffic; `Audit` only counts and logs what its rules
    /// would have matched.
    #[serde(default)]
    pub mode: PolicyMode,

    /// Rules in evaluation order: the first Allow or Deny rule that matches a
    /// flow decides it; Log rules record the match and evaluation goes on.
    #[serde(default)]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new(
        "self.all(r, !has(r.name) || self.exists_one(o, has(o.name) && o.name == r.name))"
    ).message("rule names must be unique within a policy"))]
    pub rules: Vec<PolicyRule>,

    /// Assertions on the whole Enforce-mode policy set, run by
    /// `meshguard validate` and by the operator (condition `TestsPassed`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 128))]
    pub tests: Vec<PolicyTest>,
}

fn default_priority() -> i32 {
    1000
}

/// Whether a policy decides traffic or only reports what it would decide.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PolicyMode {
    #[default]
    Enforce,
    Audit,
}

/// What a matching rule does.
#[derive(
    JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
pub enum Action {
    Allow,
    Deny,
    Log,
}

/// One rule: traffic from `from` to `to` on `ports`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    /// Shown in counters, logs and `meshguard check`; the rule's index otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63), regex(pattern = patterns::DNS_LABEL))]
    pub name: Option<String>,

    /// Allow, Deny or Log.
    pub action: Action,

    /// Sources: a flow matches when its source matches any selector.
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("self.size() > 0").message("from must list at least one peer selector; use [{all: true}] for everyone"))]
    pub from: Vec<PeerSelector>,

    /// Destinations: a flow matches when its destination matches any selector.
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("self.size() > 0").message("to must list at least one peer selector; use [{all: true}] for everyone"))]
    pub to: Vec<PeerSelector>,

    /// Traffic the rule applies to; leave it out for all traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.size() > 0").message("ports must not be empty; leave it out to match all traffic"))]
    pub ports: Option<Vec<PortRule>>,
}

/// The expected verdict for one flow.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    Allow,
    Deny,
}

/// An assertion about one flow, checked against all Enforce-mode policies.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.protocol == 'ICMP' || has(self.port)").message("a TCP, UDP or SCTP test needs a port"))]
#[x_kube(validation = Rule::new("self.protocol != 'ICMP' || !has(self.port)").message("an ICMP test takes no port"))]
pub struct PolicyTest {
    /// Source member name or IP address.
    #[schemars(length(min = 1, max = 253))]
    pub from: String,
    /// Destination member name or IP address.
    #[schemars(length(min = 1, max = 253))]
    pub to: String,
    /// TCP, UDP, SCTP or ICMP.
    pub protocol: Protocol,
    /// Destination port, for TCP, UDP and SCTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// The verdict the policy set must reach.
    pub expect: Verdict,
}

/// What the operator observed about a policy.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MeshPolicyStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Accepted`, `TestsPassed` and `Enforced`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Nodes at least one rule of this policy applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes_targeted: Option<i32>,
    /// Targeted nodes whose agent reports the NodePolicy revision that includes this policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes_enforced: Option<i32>,
}
