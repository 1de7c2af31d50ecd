//! A NodePolicy's rules as the verdict table the programs read: for each
//! direction, remote class, local class and protocol, the port intervals
//! with the verdict of the first rule that decides them. Pure.
//!
//! First-match order is resolved here, once per revision, so that the
//! programs' longest-prefix lookup never has to know it: every protocol a
//! rule names gets a verdict for each of its ports (an interval per change
//! of deciding rule), and one more entry answers the protocols no rule
//! names. Log rules and Audit-mode rules never decide (semantics rules
//! 2–4), but the packets that reach them are counted: each entry carries
//! the rules a packet passes on its way to the decision, which the backend
//! turns into a counter slot. What nothing decides is denied, and so is
//! every packet whose local address the node does not own (it has no local
//! class).

use std::collections::BTreeSet;

use meshguard_crds::{Action, Protocol};

use super::classes::{Classes, classes, everything};
use crate::desired::{Desired, Remote, Rule, verdict::Direction};

/// How a packet is decided, by indexes into its direction's rule list.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Verdict {
    pub allow: bool,
    /// The rule that decides; `None`: nothing decides (default deny).
    pub rule: Option<usize>,
    /// The Log and Audit-mode rules that match before the decision, in
    /// order: they count the packet and let it go on.
    pub counted: Vec<usize>,
}

/// One stretch of the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub direction: Direction,
    pub remote: u32,
    pub local: u32,
    /// `None`: every protocol no rule of this (remote, local) names.
    pub protocol: Option<Protocol>,
    /// Inclusive; `None` for protocols without ports and for the entry of
    /// unnamed protocols.
    pub ports: Option<(u16, u16)>,
    pub verdict: Verdict,
}

/// The classes both sides need and the table over them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    pub remote: Classes,
    pub local: Classes,
    pub entries: Vec<Entry>,
}

impl Table {
    /// What the programs decide for one packet's flow, by the same lookups.
    pub fn allows(
        &self,
        direction: Direction,
        remote: std::net::IpAddr,
        local: std::net::IpAddr,
        protocol: Option<Protocol>,
        port: Option<u16>,
    ) -> bool {
        let (Some(rc), Some(lc)) = (self.remote.lookup(remote), self.local.lookup(local)) else {
            return false;
        };
        let here = |e: &&Entry| e.direction == direction && e.remote == rc && e.local == lc;
        let named = self
            .entries
            .iter()
            .filter(here)
            .any(|e| e.protocol.is_some() && e.protocol == protocol);
        let entry = self.entries.iter().filter(here).find(|e| {
            if named {
                e.protocol == protocol
                    && e.ports.is_none_or(|(first, last)| {
                        port.is_some_and(|p| (first..=last).contains(&p))
                    })
            } else {
                e.protocol.is_none()
            }
        });
        entry.is_some_and(|e| e.verdict.allow)
    }
}

/// The table of `desired`.
pub fn table(desired: &Desired) -> Table {
    let rules = || desired.ingress.iter().chain(&desired.egress);
    let remote_sets: BTreeSet<usize> = rules()
        .filter_map(|r| match r.remote {
            Remote::Set(s) => Some(s),
            Remote::All => None,
        })
        .collect();
    let local_sets: BTreeSet<usize> = rules().filter_map(|r| r.local).collect();
    let nets: Vec<&[ipnet::IpNet]> = desired.sets.iter().map(|s| s.nets.as_slice()).collect();
    let own: Vec<ipnet::IpNet> = desired.own().collect();
    let mut table = Table {
        remote: classes(&nets, &remote_sets, &everything()),
        local: classes(&nets, &local_sets, &own),
        entries: Vec::new(),
    };
    for (direction, list) in [
        (Direction::Ingress, &desired.ingress),
        (Direction::Egress, &desired.egress),
    ] {
        for (rc, remote_members) in (0u32..).zip(&table.remote.members_of) {
            for (lc, local_members) in (0u32..).zip(&table.local.members_of) {
                // The rules whose addresses match here, in order, with
                // their index.
                let deciding: Vec<(usize, &Rule)> = list
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| match r.remote {
                        Remote::All => true,
                        Remote::Set(s) => remote_members.contains(&s),
                    })
                    .filter(|(_, r)| r.local.is_none_or(|s| local_members.contains(&s)))
                    .collect();
                let mut push = |protocol, ports, verdict| {
                    table.entries.push(Entry {
                        direction,
                        remote: rc,
                        local: lc,
                        protocol,
                        ports,
                        verdict,
                    });
                };
                push(None, None, first(&deciding, |r| r.traffic.is_none()));
                let named: BTreeSet<Protocol> = deciding
                    .iter()
                    .flat_map(|(_, r)| r.traffic.iter().flatten().map(|t| t.protocol))
                    .collect();
                for protocol in named {
                    if !protocol.has_ports() {
                        let verdict = first(&deciding, |r| covers(r, protocol, None));
                        push(Some(protocol), None, verdict);
                        continue;
                    }
                    for (ports, verdict) in intervals(&deciding, protocol) {
                        push(Some(protocol), Some(ports), verdict);
                    }
                }
            }
        }
    }
    table
}

/// The verdict of the first of `rules` that `matches` and decides, with
/// the counting rules that match before it.
fn first(rules: &[(usize, &Rule)], matches: impl Fn(&Rule) -> bool) -> Verdict {
    let mut counted = Vec::new();
    for (i, rule) in rules.iter().filter(|(_, r)| matches(r)) {
        if rule.audit || rule.action == Action::Log {
            counted.push(*i);
            continue;
        }
        return Verdict {
            allow: rule.action == Action::Allow,
            rule: Some(*i),
            counted,
        };
    }
    Verdict {
        allow: false,
        rule: None,
        counted,
    }
}

/// Whether `rule` matches `protocol` on every port of `ports` (`None`: a
/// protocol without ports).
fn covers(rule: &Rule, protocol: Protocol, ports: Option<(u16, u16)>) -> bool {
    rule.traffic.as_ref().is_none_or(|list| {
        list.iter().any(|t| {
            t.protocol == protocol
                && t.ports
                    .is_none_or(|(first, last)| ports.is_some_and(|(a, b)| first <= a && b <= last))
        })
    })
}

/// Every port of `protocol` in intervals over which the deciding rule does
/// not change, adjacent intervals with the same verdict merged.
fn intervals(rules: &[(usize, &Rule)], protocol: Protocol) -> Vec<((u16, u16), Verdict)> {
    // Where a rule's range starts, or ends + 1: the deciding rule can only
    // change there.
    let mut starts: BTreeSet<u32> = BTreeSet::from([0]);
    for (_, rule) in rules {
        for t in rule
            .traffic
            .iter()
            .flatten()
            .filter(|t| t.protocol == protocol)
        {
            if let Some((first, last)) = t.ports {
                starts.insert(u32::from(first));
                starts.insert(u32::from(last) + 1);
            }
        }
    }
    starts.retain(|&s| s <= u32::from(u16::MAX));
    let bounds: Vec<u32> = starts
        .iter()
        .copied()
        .chain([u32::from(u16::MAX) + 1])
        .collect();
    let mut out: Vec<((u16, u16), Verdict)> = Vec::new();
    for pair in bounds.windows(2) {
        // Both below 2^16: starts were filtered, ends are a start - 1.
        let (a, b) = (
            u16::try_from(pair[0]).unwrap_or(u16::MAX),
            u16::try_from(pair[1] - 1).unwrap_or(u16::MAX),
        );
        let verdict = first(rules, |r| covers(r, protocol, Some((a, b))));
        match out.last_mut() {
            Some((range, last)) if *last == verdict => range.1 = b,
            _ => out.push(((a, b), verdict)),
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]

    use std::net::{IpAddr, Ipv4Addr};

    use ipnet::IpNet;
    use proptest::prelude::*;

    use super::*;
    use crate::desired::{AddressSet, Traffic, verdict::Flow};

    fn net() -> impl Strategy<Value = IpNet> {
        (0u8..8, 29u8..=32).prop_map(|(host, len)| {
            IpNet::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, host)), len)
                .unwrap()
                .trunc()
        })
    }

    fn protocol() -> impl Strategy<Value = Protocol> {
        prop_oneof![
            Just(Protocol::TCP),
            Just(Protocol::UDP),
            Just(Protocol::SCTP),
            Just(Protocol::ICMP)
        ]
    }

    fn traffic() -> impl Strategy<Value = Traffic> {
        (protocol(), prop::option::of((0u16..12, 0u16..4))).prop_map(|(protocol, ports)| Traffic {
            protocol,
            ports: ports
                .filter(|_| protocol.has_ports())
                .map(|(first, extra)| (first, first + extra)),
        })
    }

    fn rule(sets: usize) -> impl Strategy<Value = Rule> {
        (
            prop_oneof![Just(Action::Allow), Just(Action::Deny), Just(Action::Log)],
            prop::bool::weighted(0.15),
            prop::option::of(0..sets),
            prop::option::of(0..sets),
            prop::option::of(prop::collection::vec(traffic(), 1..3)),
        )
            .prop_map(|(action, audit, remote, local, traffic)| Rule {
                id: "p/r".to_owned(),
                action,
                audit,
                remote: remote.map_or(Remote::All, Remote::Set),
                local,
                traffic,
            })
    }

    pub(crate) fn desired() -> impl Strategy<Value = Desired> {
        prop::collection::vec(prop::collection::vec(net(), 1..3), 1..4).prop_flat_map(|sets| {
            let n = sets.len();
            (
                Just(sets),
                prop::collection::vec(rule(n), 0..6),
                prop::collection::vec(rule(n), 0..6),
                prop::collection::vec(net(), 0..3),
            )
                .prop_map(|(sets, ingress, egress, routed)| Desired {
                    revision: "r".to_owned(),
                    mesh_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                    listen_port: 51820,
                    routed,
                    peers: Vec::new(),
                    audit_peers: Vec::new(),
                    sets: sets
                        .into_iter()
                        .enumerate()
                        .map(|(i, nets)| AddressSet {
                            name: format!("s{i}"),
                            nets,
                        })
                        .collect(),
                    ingress,
                    egress,
                })
        })
    }

    pub(crate) fn flow() -> impl Strategy<Value = Flow> {
        (
            prop::bool::ANY,
            0u8..10,
            0u8..10,
            prop::option::of(protocol()),
            0u16..18,
        )
            .prop_map(|(ingress, remote, local, protocol, port)| Flow {
                direction: if ingress {
                    Direction::Ingress
                } else {
                    Direction::Egress
                },
                remote: IpAddr::V4(Ipv4Addr::new(10, 0, 0, remote)),
                local: IpAddr::V4(Ipv4Addr::new(10, 0, 0, local)),
                protocol,
                port: protocol.filter(|p| p.has_ports()).map(|_| port),
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The table decides every flow as the rules do (`Desired::allows`,
        /// the function the iptables backend's conntrack cut trusts), for
        /// the node's own local addresses, and drops every other.
        #[test]
        fn the_table_decides_as_the_rules_do(
            desired in desired(),
            flows in prop::collection::vec(flow(), 40),
        ) {
            let table = table(&desired);
            for flow in flows {
                let owned = desired.own().any(|n| n.contains(&flow.local));
                prop_assert_eq!(
                    table.allows(flow.direction, flow.remote, flow.local, flow.protocol, flow.port),
                    owned && desired.allows(&flow),
                    "{:?}", flow
                );
            }
        }
    }

    #[test]
    fn port_intervals_follow_the_first_rule_and_merge() {
        let rule = |action, ports| Rule {
            id: "p/r".to_owned(),
            action,
            audit: false,
            remote: Remote::All,
            local: None,
            traffic: Some(vec![Traffic {
                protocol: Protocol::TCP,
                ports,
            }]),
        };
        let deny = rule(Action::Deny, Some((5433, 5433)));
        let allow = rule(Action::Allow, Some((5432, 5440)));
        let log = rule(Action::Log, Some((5440, 5441)));
        let list = [(0, &deny), (1, &allow), (2, &log)];
        let got = intervals(&list, Protocol::TCP);
        let allowed = |rule| Verdict {
            allow: true,
            rule: Some(rule),
            counted: vec![],
        };
        let denied = |rule, counted| Verdict {
            allow: false,
            rule,
            counted,
        };
        assert_eq!(
            got,
            [
                ((0, 5431), denied(None, vec![])),
                ((5432, 5432), allowed(1)),
                ((5433, 5433), denied(Some(0), vec![])),
                ((5434, 5440), allowed(1)),
                // The Log rule is reached only where nothing decided first.
                ((5441, 5441), denied(None, vec![2])),
                ((5442, 65535), denied(None, vec![])),
            ]
        );
    }
}
