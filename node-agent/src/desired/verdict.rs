//! What a NodePolicy decides for one flow at this node, as the packet filter
//! decides it (semantics rules 2–4, from one end): the first Allow or Deny
//! whose sets and traffic match, in list order; Log rules and Audit-mode
//! rules never decide; nothing matching is a Deny. Used to find the
//! established connections a new revision no longer allows.

use std::net::IpAddr;

use meshguard_crds::{Action, Protocol};

use super::{Desired, Remote, Rule};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// `remote` sent the flow to a local address.
    Ingress,
    /// A local address sent the flow to `remote`.
    Egress,
}

/// One flow as the rules see it: the destination port for TCP, UDP and SCTP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    pub direction: Direction,
    pub remote: IpAddr,
    pub local: IpAddr,
    /// `None`: a protocol no rule can name (GRE, ESP...): only rules for
    /// all traffic match it.
    pub protocol: Option<Protocol>,
    pub port: Option<u16>,
}

impl Desired {
    /// Whether the node's rules allow the flow.
    pub fn allows(&self, flow: &Flow) -> bool {
        let rules = match flow.direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        };
        rules
            .iter()
            .filter(|r| !r.audit && r.action != Action::Log)
            .find(|r| self.matches(r, flow))
            .is_some_and(|r| r.action == Action::Allow)
    }

    fn matches(&self, rule: &Rule, flow: &Flow) -> bool {
        let within = |set: usize, ip: IpAddr| self.sets[set].nets.iter().any(|n| n.contains(&ip));
        let remote = match rule.remote {
            Remote::All => true,
            Remote::Set(s) => within(s, flow.remote),
        };
        let local = rule.local.is_none_or(|s| within(s, flow.local));
        let traffic = rule.traffic.as_ref().is_none_or(|list| {
            list.iter().any(|t| {
                Some(t.protocol) == flow.protocol
                    && t.ports.is_none_or(|(first, last)| {
                        flow.port.is_some_and(|p| (first..=last).contains(&p))
                    })
            })
        });
        remote && local && traffic
    }
}

#[cfg(test)]
mod tests {
    use meshguard_crds::NodePolicySpec;

    use super::*;
    use crate::desired::parse;

    fn desired() -> Desired {
        let spec: NodePolicySpec = serde_json::from_value(serde_json::json!({
            "revision": "r",
            "interface": { "meshIP": "100.96.0.1", "listenPort": 51820 },
            "addressSets": [
                { "name": "web", "addresses": ["100.96.0.2"] },
                { "name": "lan", "cidrs": ["192.168.1.0/24"] },
            ],
            "ingress": [
                { "id": "log/all", "action": "Log", "set": "all" },
                { "id": "audit/deny", "action": "Deny", "audit": true, "set": "web" },
                { "id": "p/ssh", "action": "Deny", "set": "all", "ports": [{ "protocol": "TCP", "port": 22 }] },
                { "id": "p/web", "action": "Allow", "set": "web", "ports": [{ "protocol": "TCP", "port": 8000, "endPort": 8080 }, { "protocol": "ICMP" }] },
                { "id": "p/lan", "action": "Allow", "set": "all", "local": "lan" },
            ],
        }))
        .unwrap();
        parse(&spec).unwrap()
    }

    fn flow(remote: &str, local: &str, protocol: Protocol, port: Option<u16>) -> Flow {
        Flow {
            direction: Direction::Ingress,
            remote: remote.parse().unwrap(),
            local: local.parse().unwrap(),
            protocol: Some(protocol),
            port,
        }
    }

    #[test]
    fn the_first_deciding_rule_decides() {
        let d = desired();
        let me = "100.96.0.1";
        assert!(d.allows(&flow("100.96.0.2", me, Protocol::TCP, Some(8080))));
        assert!(d.allows(&flow("100.96.0.2", me, Protocol::ICMP, None)));
        assert!(
            !d.allows(&flow("100.96.0.2", me, Protocol::TCP, Some(8081))),
            "out of range"
        );
        assert!(
            !d.allows(&flow("100.96.0.2", me, Protocol::UDP, Some(8080))),
            "other protocol"
        );
        assert!(
            !d.allows(&flow("100.96.0.3", me, Protocol::TCP, Some(8080))),
            "not in the set"
        );
        assert!(
            d.allows(&flow("100.96.0.3", "192.168.1.7", Protocol::UDP, Some(53))),
            "local set"
        );
        assert!(
            !d.allows(&flow("100.96.0.2", "192.168.1.7", Protocol::TCP, Some(22))),
            "an earlier Deny"
        );
        let egress = Flow {
            direction: Direction::Egress,
            ..flow("100.96.0.2", me, Protocol::TCP, Some(8080))
        };
        assert!(!d.allows(&egress), "no egress rules: default deny");
    }
}
