//! NodePolicySpec → [`Desired`], refusing the whole spec at the first sign
//! that enforcing it as written is impossible. Every problem names its field
//! (`spec.ingress[3] (web/db): ...`), and all of them are reported at once.

use std::{collections::BTreeMap, net::IpAddr};

use base64::{Engine, engine::general_purpose::STANDARD};
use ipnet::IpNet;
use meshguard_crds::{
    NodePolicySpec,
    node_policy::{self, ALL_ADDRESSES, FilterRule},
    ports::PortRange,
};

use super::{AddressSet, Desired, Peer, Remote, Rule, Traffic};

/// Kernel set names are `mg4-<name>` and, while filled, `mg4-<name>-t`:
/// ipset keeps 31 characters.
const MAX_SET_NAME: usize = 25;
/// How many problems a refusal lists (a status message stays readable).
const LISTED: usize = 8;

/// Why a NodePolicy cannot be enforced as written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", listing(.0))]
pub struct Invalid(pub Vec<String>);

fn listing(problems: &[String]) -> String {
    let mut text = problems
        .iter()
        .take(LISTED)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if problems.len() > LISTED {
        text.push_str(&format!("; and {} more", problems.len() - LISTED));
    }
    text
}

/// Parses and checks `spec`; on any problem, nothing of it is usable.
pub fn parse(spec: &NodePolicySpec) -> Result<Desired, Invalid> {
    let mut problems = Vec::new();
    let mesh_ip = spec
        .interface
        .mesh_ip
        .parse::<IpAddr>()
        .map_err(|_| {
            problems.push(format!(
                "spec.interface.meshIP: {:?} is not an address",
                spec.interface.mesh_ip
            ))
        })
        .ok();
    let listen_port = u16::try_from(spec.interface.listen_port)
        .ok()
        .filter(|p| *p > 0);
    if listen_port.is_none() {
        problems.push(format!(
            "spec.interface.listenPort: {} is not a port",
            spec.interface.listen_port
        ));
    }
    let routed = spec
        .interface
        .routed_ips
        .iter()
        .enumerate()
        .filter_map(|(i, text)| {
            network(text)
                .map_err(|e| problems.push(format!("spec.interface.routedIPs[{i}]: {e}")))
                .ok()
        })
        .collect();
    let peers = parse_peers("spec.peers", &spec.peers, &mut problems);
    let audit_peers = parse_peers("spec.auditPeers", &spec.audit_peers, &mut problems);

    let mut sets = Vec::new();
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, set) in spec.address_sets.iter().enumerate() {
        let at = format!("spec.addressSets[{i}] ({})", set.name);
        if let Err(e) = set_name(&set.name) {
            problems.push(format!("{at}: name: {e}"));
        }
        if index.insert(set.name.as_str(), sets.len()).is_some() {
            problems.push(format!("{at}: a second set of this name"));
        }
        let mut nets = Vec::new();
        for (field, list) in [("addresses", &set.addresses), ("cidrs", &set.cidrs)] {
            for (j, text) in list.iter().enumerate() {
                match network(text) {
                    Ok(net) => nets.push(net),
                    Err(e) => problems.push(format!("{at}: {field}[{j}]: {e}")),
                }
            }
        }
        sets.push(AddressSet {
            name: set.name.clone(),
            nets,
        });
    }
    let ingress = rules("spec.ingress", &spec.ingress, &index, &mut problems);
    let egress = rules("spec.egress", &spec.egress, &index, &mut problems);
    match (mesh_ip, listen_port) {
        (Some(mesh_ip), Some(listen_port)) if problems.is_empty() => Ok(Desired {
            revision: spec.revision.clone(),
            mesh_ip,
            listen_port,
            routed,
            peers,
            audit_peers,
            sets,
            ingress,
            egress,
        }),
        _ => Err(Invalid(problems)),
    }
}

fn parse_peers(field: &str, list: &[node_policy::Peer], problems: &mut Vec<String>) -> Vec<Peer> {
    let mut out = Vec::new();
    for (i, peer) in list.iter().enumerate() {
        let at = format!("{field}[{i}] ({})", peer.name);
        let key: Option<[u8; 32]> = STANDARD
            .decode(&peer.public_key)
            .ok()
            .and_then(|k| k.try_into().ok());
        if key.is_none() {
            problems.push(format!("{at}: publicKey is not a WireGuard key"));
        }
        let mut allowed_ips = Vec::new();
        for (j, text) in peer.allowed_ips.iter().enumerate() {
            match network(text) {
                Ok(net) => allowed_ips.push(net),
                Err(e) => problems.push(format!("{at}: allowedIPs[{j}]: {e}")),
            }
        }
        if let Some(public_key) = key {
            out.push(Peer {
                name: peer.name.clone(),
                public_key,
                endpoint: peer.endpoint.clone(),
                allowed_ips,
            });
        }
    }
    out
}

fn rules(
    field: &str,
    list: &[FilterRule],
    sets: &BTreeMap<&str, usize>,
    problems: &mut Vec<String>,
) -> Vec<Rule> {
    let mut out = Vec::new();
    for (i, rule) in list.iter().enumerate() {
        let at = format!("{field}[{i}] ({})", rule.id);
        let before = problems.len();
        if let Err(e) = rule_id(&rule.id) {
            problems.push(format!("{field}[{i}]: id: {e}"));
        }
        let remote = if rule.set == ALL_ADDRESSES {
            Some(Remote::All)
        } else {
            sets.get(rule.set.as_str()).map(|&s| Remote::Set(s))
        };
        if remote.is_none() {
            problems.push(format!(
                "{at}: set {:?} is not defined in spec.addressSets",
                rule.set
            ));
        }
        let local = match rule.local.as_deref() {
            None | Some(ALL_ADDRESSES) => None,
            Some(name) => {
                let found = sets.get(name).copied();
                if found.is_none() {
                    problems.push(format!(
                        "{at}: local {name:?} is not defined in spec.addressSets"
                    ));
                }
                found
            }
        };
        let traffic = rule.ports.as_ref().map(|ports| {
            ports
                .iter()
                .enumerate()
                .filter_map(|(j, p)| {
                    traffic(p)
                        .map_err(|e| problems.push(format!("{at}: ports[{j}]: {e}")))
                        .ok()
                })
                .collect()
        });
        if let (Some(remote), true) = (remote, problems.len() == before) {
            out.push(Rule {
                id: rule.id.clone(),
                action: rule.action,
                audit: rule.audit,
                remote,
                local,
                traffic,
            });
        }
    }
    out
}

/// A network, or a single address as its host network.
fn network(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>()
        .map(|n| n.trunc())
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text:?} is not an address or CIDR"))
}

fn traffic(p: &PortRange) -> Result<Traffic, String> {
    let port = |n: i32| {
        u16::try_from(n)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{n} is not a port (1 to 65535)"))
    };
    let ports = match (p.port, p.end_port) {
        (None, None) => None,
        (None, Some(_)) => return Err("endPort needs port".into()),
        (Some(first), last) => {
            let first = port(first)?;
            let last = last.map(port).transpose()?.unwrap_or(first);
            if last < first {
                return Err(format!("endPort {last} is below port {first}"));
            }
            Some((first, last))
        }
    };
    if ports.is_some() && !p.protocol.has_ports() {
        return Err("ICMP takes no port".into());
    }
    Ok(Traffic {
        protocol: p.protocol,
        ports,
    })
}

fn set_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.len() > MAX_SET_NAME || !name.chars().all(allowed) {
        return Err(format!(
            "{name:?} must be 1 to {MAX_SET_NAME} letters, digits, '-', '_' or '.'"
        ));
    }
    if name == ALL_ADDRESSES {
        return Err(format!("{ALL_ADDRESSES:?} stands for every address"));
    }
    Ok(())
}

/// Ids go into iptables comments and NFLOG prefixes, between quotes.
fn rule_id(id: &str) -> Result<(), String> {
    let printable = |c: char| c.is_ascii_graphic() && !matches!(c, '"' | '\\' | '\'');
    if id.is_empty() || !id.chars().all(printable) {
        return Err(format!(
            "{id:?} must be printable ASCII without spaces, quotes or backslashes"
        ));
    }
    if id.starts_with("meshguard:") {
        return Err(format!(
            "{id:?}: ids starting meshguard: are the agent's own"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use meshguard_crds::{
        Action, Protocol,
        node_policy::{AddressSet as SpecSet, InterfaceSpec},
    };

    use super::*;
    use crate::desired::canonical;

    fn spec() -> NodePolicySpec {
        NodePolicySpec {
            revision: "r1".into(),
            interface: InterfaceSpec {
                mesh_ip: "100.96.0.1".into(),
                listen_port: 51820,
                routed_ips: vec![],
            },
            peers: vec![],
            audit_peers: vec![],
            address_sets: vec![SpecSet {
                name: "s-a".into(),
                addresses: vec!["100.96.0.2".into()],
                cidrs: vec![],
            }],
            ingress: vec![FilterRule {
                id: "p/r".into(),
                action: Action::Deny,
                audit: false,
                set: "s-a".into(),
                local: None,
                ports: None,
            }],
            egress: vec![],
            chains: vec![],
        }
    }

    #[test]
    fn addresses_come_out_as_the_kernel_prints_them() {
        let mut s = spec();
        s.address_sets[0].addresses = vec!["::FFFF:10.8.0.1".into(), "FD00::ABCD".into()];
        s.address_sets[0].cidrs = vec![
            "10.7.0.1/24".into(),
            "10.6.0.9/32".into(),
            "fd00:0:0:1::1/64".into(),
        ];
        let desired = parse(&s).unwrap();
        let texts: Vec<String> = desired.sets[0].nets.iter().map(canonical).collect();
        assert_eq!(
            texts,
            [
                "::ffff:10.8.0.1",
                "fd00::abcd",
                "10.7.0.0/24",
                "10.6.0.9",
                "fd00:0:0:1::/64"
            ]
        );
    }

    #[test]
    fn every_problem_is_named_and_nothing_is_skipped() {
        let mut s = spec();
        s.ingress[0].set = "s-missing".into();
        s.ingress.push(FilterRule {
            ports: Some(vec![
                PortRange {
                    protocol: Protocol::TCP,
                    port: Some(70000),
                    end_port: None,
                },
                PortRange {
                    protocol: Protocol::UDP,
                    port: None,
                    end_port: Some(80),
                },
                PortRange {
                    protocol: Protocol::ICMP,
                    port: Some(1),
                    end_port: None,
                },
                PortRange {
                    protocol: Protocol::TCP,
                    port: Some(90),
                    end_port: Some(80),
                },
            ]),
            ..s.ingress[0].clone()
        });
        s.address_sets[0].cidrs.push("10.0.0.0/33".into());
        s.egress.push(FilterRule {
            id: "has \"quotes\"".into(),
            local: Some("nowhere".into()),
            set: "all".into(),
            ..s.ingress[0].clone()
        });
        let Invalid(problems) = parse(&s).unwrap_err();
        assert_eq!(
            problems,
            [
                "spec.addressSets[0] (s-a): cidrs[0]: \"10.0.0.0/33\" is not an address or CIDR",
                "spec.ingress[0] (p/r): set \"s-missing\" is not defined in spec.addressSets",
                "spec.ingress[1] (p/r): set \"s-missing\" is not defined in spec.addressSets",
                "spec.ingress[1] (p/r): ports[0]: 70000 is not a port (1 to 65535)",
                "spec.ingress[1] (p/r): ports[1]: endPort needs port",
                "spec.ingress[1] (p/r): ports[2]: ICMP takes no port",
                "spec.ingress[1] (p/r): ports[3]: endPort 80 is below port 90",
                "spec.egress[0]: id: \"has \\\"quotes\\\"\" must be printable ASCII without spaces, quotes or backslashes",
                "spec.egress[0] (has \"quotes\"): local \"nowhere\" is not defined in spec.addressSets",
            ]
        );
    }

    #[test]
    fn set_names_fit_the_kernel_and_are_unique() {
        let mut s = spec();
        s.address_sets.push(s.address_sets[0].clone());
        s.address_sets.push(SpecSet {
            name: "a-name-longer-than-ipset-allows".into(),
            ..s.address_sets[0].clone()
        });
        let Invalid(problems) = parse(&s).unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("a second set"));
        assert!(problems[1].contains("1 to 25 letters"));
    }

    #[test]
    fn a_listing_stays_short() {
        let problems: Vec<String> = (0..20).map(|i| format!("p{i}")).collect();
        assert!(Invalid(problems).to_string().ends_with("; and 12 more"));
    }
}
