//! The real renderer over random NodePolicies: every rule appears exactly
//! once per port entry, in order, in each family it applies to and in no
//! other, with its verdict (`support::check`, which reads only the spec).
//! Random shapes cover what the compiler rarely writes: IPv6 and dual-stack
//! nodes, /0 networks, local sets, SCTP and ICMP, every action and mode,
//! nodes with and without IPv6. `PROPTEST_CASES` overrides the 2,000 cases.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

mod support;

use meshguard_agent::{
    backend::{
        Enforcement,
        iptables::render::{Family, Options, render},
    },
    desired,
};
use meshguard_crds::{
    Action, NodePolicySpec, Protocol,
    node_policy::{AddressSet, FilterRule, InterfaceSpec},
    ports::PortRange,
};
use proptest::prelude::*;

const ADDRESSES: [&str; 6] = [
    "100.96.0.2",
    "100.96.0.3",
    "10.1.2.3",
    "fd5a::2",
    "fd5a::3",
    "2001:db8::9",
];
const CIDRS: [&str; 6] = [
    "10.0.0.0/8",
    "192.168.4.0/24",
    "0.0.0.0/0",
    "fd5a:1::/64",
    "::/0",
    "2001:db8:1::/48",
];

fn set() -> impl Strategy<Value = (Vec<String>, Vec<String>)> {
    (
        proptest::sample::subsequence(ADDRESSES.to_vec(), 0..=3),
        proptest::sample::subsequence(CIDRS.to_vec(), 0..=2),
    )
        .prop_map(|(a, c)| {
            (
                a.into_iter().map(str::to_owned).collect(),
                c.into_iter().map(str::to_owned).collect(),
            )
        })
}

fn port() -> impl Strategy<Value = PortRange> {
    prop_oneof![
        Just(PortRange {
            protocol: Protocol::ICMP,
            port: None,
            end_port: None
        }),
        (
            prop_oneof![
                Just(Protocol::TCP),
                Just(Protocol::UDP),
                Just(Protocol::SCTP)
            ],
            proptest::option::of(1i32..=65000),
            0i32..=3,
        )
            .prop_map(|(protocol, port, width)| PortRange {
                protocol,
                port,
                end_port: port.filter(|_| width > 0).map(|p| p + width),
            }),
    ]
}

fn rule(sets: usize) -> impl Strategy<Value = FilterRule> {
    (
        prop_oneof![Just(Action::Allow), Just(Action::Deny), Just(Action::Log)],
        any::<bool>(),
        proptest::option::of(0..sets),
        proptest::option::weighted(0.2, 0..sets),
        proptest::option::of(proptest::collection::vec(port(), 1..=3)),
    )
        .prop_map(move |(action, audit, set, local, ports)| FilterRule {
            id: String::new(),
            action,
            audit,
            set: set.map_or("all".into(), |s| format!("s-{s}")),
            local: local.map(|s| format!("s-{s}")),
            ports,
        })
}

fn spec() -> impl Strategy<Value = NodePolicySpec> {
    (
        proptest::collection::vec(set(), 1..=4),
        prop_oneof![Just("100.96.0.1"), Just("fd5a::1")],
        proptest::sample::subsequence(vec!["192.168.9.0/24", "fd5a:9::/64"], 0..=2),
    )
        .prop_flat_map(|(sets, mesh_ip, routed)| {
            let count = sets.len();
            (
                Just(sets),
                Just(mesh_ip),
                Just(routed),
                proptest::collection::vec(rule(count), 0..=8),
                proptest::collection::vec(rule(count), 0..=8),
            )
        })
        .prop_map(|(sets, mesh_ip, routed, ingress, egress)| NodePolicySpec {
            revision: "r".into(),
            interface: InterfaceSpec {
                mesh_ip: mesh_ip.into(),
                listen_port: 51820,
                routed_ips: routed.into_iter().map(str::to_owned).collect(),
            },
            peers: vec![],
            audit_peers: vec![],
            address_sets: sets
                .into_iter()
                .enumerate()
                .map(|(i, (addresses, cidrs))| AddressSet {
                    name: format!("s-{i}"),
                    addresses,
                    cidrs,
                })
                .collect(),
            ingress: named(ingress),
            egress: named(egress),
            chains: vec![],
        })
}

/// Ids as the compiler writes them; a policy's rules may repeat an id (one
/// rule, several selectors).
fn named(rules: Vec<FilterRule>) -> Vec<FilterRule> {
    rules
        .into_iter()
        .enumerate()
        .map(|(n, r)| FilterRule {
            id: format!("policy-{}/rule-{}", n % 3, n / 2),
            ..r
        })
        .collect()
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(2_000)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn every_rule_once_per_family_it_applies_to(
        spec in spec(),
        audit in any::<bool>(),
        v6 in proptest::bool::weighted(0.8),
    ) {
        let desired = desired::parse(&spec).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let families: &[Family] = if v6 { &[Family::V4, Family::V6] } else { &[Family::V4] };
        let enforcement = if audit { Enforcement::Audit } else { Enforcement::Enforce };
        let cidrs = vec!["100.96.0.0/12".parse().unwrap()];
        let rendered = render(&desired, &Options {
            interface: "meshguard0",
            enforcement,
            nflog_group: 100,
            mesh_cidrs: &cidrs,
            families,
        });
        if let Err(e) = support::check(&spec, &rendered, families, enforcement) {
            return Err(TestCaseError::fail(e));
        }
    }
}
