//! Peer selectors: how a rule names the members and addresses on one side of a flow.
//!
//! A selector names members by name, by labels, by mesh-IP range, or all of them.
//! Exactly one kind per selector keeps the meaning of each entry obvious; a rule
//! lists several selectors when it needs a union.

use std::collections::BTreeMap;

use kube::KubeSchema;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use crate::patterns;

/// Who is on one side of a rule. Exactly one of `nodes`, `nodeSelector`,
/// `cidrs` or `all`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "[has(self.nodes), has(self.nodeSelector), has(self.cidrs), has(self.all)].filter(x, x).size() == 1"
).message("a peer selector needs exactly one of nodes, nodeSelector, cidrs or all"))]
pub struct PeerSelector {
    /// Members by name. Unknown names match nothing and raise a warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128), inner(length(max = 253), regex(pattern = patterns::DNS_SUBDOMAIN)))]
    #[x_kube(validation = Rule::new("self.size() > 0").message("nodes must name at least one member"))]
    pub nodes: Option<Vec<String>>,

    /// Members whose labels match. `{}` selects every member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<LabelSelector>,

    /// Addresses by range. A member matches when its mesh IP is inside one
    /// block; addresses that are not members are matched as packet addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8))]
    #[x_kube(validation = Rule::new("self.size() > 0").message("cidrs must list at least one block"))]
    pub cidrs: Option<Vec<CidrBlock>>,

    /// Every member and every address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self").message("all must be true when set; leave it out otherwise"))]
    pub all: Option<bool>,
}

/// A label selector with the semantics of Kubernetes' `LabelSelector`: every
/// `matchLabels` pair and every expression must hold.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// Labels that must be present with exactly these values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "label_map")]
    pub match_labels: Option<BTreeMap<String, String>>,

    /// Set-based requirements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub match_expressions: Option<Vec<LabelSelectorRequirement>>,
}

/// One set-based label requirement.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "!(self.operator in ['In', 'NotIn']) || (has(self.values) && self.values.size() > 0)"
).message("operators In and NotIn need at least one value"))]
#[x_kube(validation = Rule::new(
    "!(self.operator in ['Exists', 'DoesNotExist']) || !has(self.values) || self.values.size() == 0"
).message("operators Exists and DoesNotExist take no values"))]
pub struct LabelSelectorRequirement {
    /// The label key.
    #[schemars(length(min = 1, max = 317), regex(pattern = patterns::LABEL_KEY))]
    pub key: String,
    /// How the key's value is compared with `values`.
    pub operator: LabelOperator,
    /// Values for `In` and `NotIn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), inner(length(max = 63), regex(pattern = patterns::LABEL_VALUE)))]
    pub values: Option<Vec<String>>,
}

/// A set-based label operator.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LabelOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// An address range with holes.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "!has(self.except) || !isCIDR(self.cidr) || self.except.all(e, !isCIDR(e) || (cidr(e).ip().family() == cidr(self.cidr).ip().family() && cidr(self.cidr).containsCIDR(e)))"
).message("every except block must lie inside cidr and be of the same IP family"))]
pub struct CidrBlock {
    /// An IPv4 or IPv6 block, such as `10.0.0.0/8` or `fd00::/8`.
    #[schemars(length(max = 43))]
    #[x_kube(validation = Rule::new("isCIDR(self)").message("cidr must be an IPv4 or IPv6 CIDR such as 10.0.0.0/8 or fd00::/8"))]
    pub cidr: String,

    /// Blocks inside `cidr` that do not match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8), inner(length(max = 43)))]
    #[x_kube(validation = Rule::new("self.all(e, isCIDR(e))").message("every except entry must be an IPv4 or IPv6 CIDR"))]
    pub except: Option<Vec<String>>,
}

/// `matchLabels`: label keys are checked in Rust (see `validation::semantic`):
/// a CEL regex over map keys would exceed the API server's cost budget, as its
/// estimator cannot bound the length of a key.
fn label_map(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "maxProperties": 16,
        "additionalProperties": {
            "type": "string",
            "maxLength": 63,
            "pattern": patterns::LABEL_VALUE,
        },
    })
}
