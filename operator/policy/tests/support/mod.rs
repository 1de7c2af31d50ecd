//! Shared by the policy crate's tests: builders for members and policies,
//! the reference evaluator, the agent simulation, random scenarios.
#![allow(dead_code)]

pub mod agent;
pub mod reference;

use std::collections::BTreeMap;

use meshguard_crds::{
    Action, CidrBlock, LabelSelector, MeshPolicy, MeshPolicySpec, PeerSelector, PolicyMode,
    PolicyRule, PortRule, Protocol,
    selector::{LabelOperator, LabelSelectorRequirement},
};
use meshguard_policy::{
    compile::{Compiled, Inputs, compile},
    members::Member,
};
use proptest::prelude::*;

pub const KEY: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";

pub fn member(name: &str, labels: &[(&str, &str)], ip: &str) -> Member {
    Member {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        mesh_ip: ip.parse().unwrap(),
        public_key: KEY.into(),
        endpoint: Some(format!("{ip}:51820")),
        allowed_ips: vec![],
    }
}

pub fn router(mut m: Member, subnets: &[&str]) -> Member {
    m.allowed_ips = subnets.iter().map(|s| s.parse().unwrap()).collect();
    m
}

pub fn policy(name: &str, priority: i32, rules: Vec<PolicyRule>) -> MeshPolicy {
    MeshPolicy::new(
        name,
        MeshPolicySpec {
            priority,
            mode: PolicyMode::Enforce,
            rules,
            tests: vec![],
        },
    )
}

pub fn audit(mut p: MeshPolicy) -> MeshPolicy {
    p.spec.mode = PolicyMode::Audit;
    p
}

pub fn rule(
    action: Action,
    from: Vec<PeerSelector>,
    to: Vec<PeerSelector>,
    ports: Option<Vec<PortRule>>,
) -> PolicyRule {
    PolicyRule {
        name: None,
        action,
        from,
        to,
        ports,
    }
}

pub fn named(name: &str, mut r: PolicyRule) -> PolicyRule {
    r.name = Some(name.into());
    r
}

pub fn nodes(names: &[&str]) -> PeerSelector {
    PeerSelector {
        nodes: Some(names.iter().map(|n| n.to_string()).collect()),
        ..Default::default()
    }
}

pub fn labels(pairs: &[(&str, &str)]) -> PeerSelector {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    PeerSelector {
        node_selector: Some(LabelSelector {
            match_labels: Some(map),
            match_expressions: None,
        }),
        ..Default::default()
    }
}

pub fn expression(key: &str, operator: LabelOperator, values: &[&str]) -> PeerSelector {
    let values = (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect());
    let requirement = LabelSelectorRequirement {
        key: key.into(),
        operator,
        values,
    };
    PeerSelector {
        node_selector: Some(LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![requirement]),
        }),
        ..Default::default()
    }
}

pub fn cidr(block: &str, except: &[&str]) -> PeerSelector {
    let except = (!except.is_empty()).then(|| except.iter().map(|e| e.to_string()).collect());
    PeerSelector {
        cidrs: Some(vec![CidrBlock {
            cidr: block.into(),
            except,
        }]),
        ..Default::default()
    }
}

pub fn all() -> PeerSelector {
    PeerSelector {
        all: Some(true),
        ..Default::default()
    }
}

pub fn port(protocol: Protocol, port: Option<i32>, end: Option<i32>) -> PortRule {
    PortRule {
        protocol,
        port,
        end_port: end,
    }
}

pub fn tcp(p: i32) -> PortRule {
    port(Protocol::TCP, Some(p), None)
}

pub fn icmp() -> PortRule {
    port(Protocol::ICMP, None, None)
}

pub fn compiled(members: &[Member], policies: &[MeshPolicy]) -> Compiled {
    compile(&Inputs {
        members,
        policies,
        chains: &[],
        secrets: &[],
        config_maps: &[],
        listen_port: 51820,
    })
}

// ---- random scenarios

#[derive(Clone, Debug)]
pub struct Scenario {
    pub members: Vec<Member>,
    pub policies: Vec<MeshPolicy>,
}

const ROLES: [&str; 3] = ["a", "b", "c"];
const ZONES: [&str; 2] = ["x", "y"];
/// Routed subnets: some overlap (the longest prefix must win), one holds
/// member mesh IPs (those stay the members').
const SUBNETS: [&str; 6] = [
    "192.168.0.0/30",
    "192.168.0.2/31",
    "192.168.0.0/31",
    "fd10::/127",
    "10.9.0.0/31",
    "100.64.0.0/30",
];
/// CIDR selector blocks with their holes, over member and subnet addresses.
const BLOCKS: [(&str, &[&str]); 9] = [
    ("100.64.0.0/29", &["100.64.0.2/31"]),
    ("100.64.0.0/30", &[]),
    ("100.64.0.4/30", &["100.64.0.5/32"]),
    ("192.168.0.0/24", &["192.168.0.1/32"]),
    ("192.168.0.2/31", &[]),
    ("fd00::/120", &["fd00::2/127"]),
    ("fd10::/64", &[]),
    ("0.0.0.0/0", &["100.64.0.0/29"]),
    ("::/0", &[]),
];

#[derive(Clone, Debug)]
enum SelectorDesc {
    Nodes(Vec<usize>),
    Label(usize, usize),
    Expr(usize, usize),
    Everyone,
    Block(usize),
    All,
}

fn selector_desc() -> impl Strategy<Value = SelectorDesc> {
    prop_oneof![
        3 => prop::collection::vec(0usize..7, 1..3).prop_map(SelectorDesc::Nodes),
        3 => (0usize..2, 0usize..3).prop_map(|(k, v)| SelectorDesc::Label(k, v)),
        2 => (0usize..4, 0usize..3).prop_map(|(op, v)| SelectorDesc::Expr(op, v)),
        1 => Just(SelectorDesc::Everyone),
        3 => (0usize..BLOCKS.len()).prop_map(SelectorDesc::Block),
        1 => Just(SelectorDesc::All),
    ]
}

fn build_selector(desc: &SelectorDesc) -> PeerSelector {
    match desc {
        // Index 6 is a name no member has.
        SelectorDesc::Nodes(ids) => {
            let names: Vec<String> = ids
                .iter()
                .map(|&i| {
                    if i == 6 {
                        "ghost".to_owned()
                    } else {
                        format!("m{i}")
                    }
                })
                .collect();
            PeerSelector {
                nodes: Some(names),
                ..Default::default()
            }
        }
        SelectorDesc::Label(0, v) => labels(&[("role", ROLES[*v])]),
        SelectorDesc::Label(_, v) => labels(&[("zone", ZONES[*v % 2])]),
        SelectorDesc::Expr(op, v) => {
            let operator = [
                LabelOperator::In,
                LabelOperator::NotIn,
                LabelOperator::Exists,
                LabelOperator::DoesNotExist,
            ][*op];
            let values: &[&str] = if *op < 2 { &ROLES[*v..] } else { &[] };
            expression("role", operator, values)
        }
        SelectorDesc::Everyone => PeerSelector {
            node_selector: Some(LabelSelector::default()),
            ..Default::default()
        },
        SelectorDesc::Block(i) => cidr(BLOCKS[*i].0, BLOCKS[*i].1),
        SelectorDesc::All => all(),
    }
}

fn port_desc() -> impl Strategy<Value = PortRule> {
    prop_oneof![
        Just(tcp(22)),
        Just(port(Protocol::TCP, Some(80), Some(90))),
        Just(port(Protocol::UDP, Some(53), None)),
        Just(port(Protocol::SCTP, Some(3868), None)),
        Just(icmp()),
        Just(port(Protocol::TCP, None, None)),
        Just(port(Protocol::UDP, Some(1000), Some(2000))),
    ]
}

fn rule_desc() -> impl Strategy<Value = PolicyRule> {
    (
        prop_oneof![5 => Just(Action::Allow), 3 => Just(Action::Deny), 2 => Just(Action::Log)],
        prop::collection::vec(selector_desc(), 1..3),
        prop::collection::vec(selector_desc(), 1..3),
        prop::option::weighted(0.6, prop::collection::vec(port_desc(), 1..3)),
    )
        .prop_map(|(action, from, to, ports)| PolicyRule {
            name: None,
            action,
            from: from.iter().map(build_selector).collect(),
            to: to.iter().map(build_selector).collect(),
            ports,
        })
}

pub fn scenario() -> impl Strategy<Value = Scenario> {
    let member_desc = (
        prop::option::weighted(0.8, 0usize..3),
        prop::option::weighted(0.5, 0usize..2),
        prop::bool::weighted(0.25),
        prop_oneof![7 => Just(Vec::new()), 3 => prop::collection::vec(0usize..SUBNETS.len(), 1..3)],
    );
    let policy_desc = (
        0usize..5,
        prop::bool::weighted(0.2),
        prop::collection::vec(rule_desc(), 1..4),
        any::<bool>(),
    );
    (
        prop::collection::vec(member_desc, 2..7),
        prop::collection::vec(policy_desc, 1..5),
    )
        .prop_map(|(members, policies)| {
            let members = members
                .into_iter()
                .enumerate()
                .map(|(i, (role, zone, v6, subnet))| {
                    let mut pairs = Vec::new();
                    if let Some(r) = role {
                        pairs.push(("role", ROLES[r]));
                    }
                    if let Some(z) = zone {
                        pairs.push(("zone", ZONES[z]));
                    }
                    let ip = if v6 {
                        format!("fd00::{}", i + 1)
                    } else {
                        format!("100.64.0.{}", i + 1)
                    };
                    let m = member(&format!("m{i}"), &pairs, &ip);
                    let subnets: Vec<&str> = subnet.iter().map(|&s| SUBNETS[s]).collect();
                    router(m, &subnets)
                })
                .collect();
            let policies = policies
                .into_iter()
                .enumerate()
                .map(|(i, (priority, is_audit, mut rules, name_rules))| {
                    if name_rules {
                        for (j, r) in rules.iter_mut().enumerate() {
                            r.name = Some(format!("r{j}"));
                        }
                    }
                    let p = policy(&format!("p{i}"), [0, 10, 10, 100, 1000][priority], rules);
                    if is_audit { audit(p) } else { p }
                })
                .collect();
            Scenario { members, policies }
        })
}
