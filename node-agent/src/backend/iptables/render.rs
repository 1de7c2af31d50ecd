//! NodePolicy -> ipsets and iptables rules, as text. Pure, so what the kernel
//! gets is pinned by golden tests.

use std::{collections::BTreeMap, net::IpAddr};

use ipnet::IpNet;
use meshguard_crds::{
    Action, NodePolicySpec, Protocol,
    node_policy::{ALL_ADDRESSES, AddressSet, FilterRule},
};

use crate::{backend::Enforcement, wireguard::handshake};

pub const CHAIN_IN: &str = "MESHGUARD-IN";
pub const CHAIN_OUT: &str = "MESHGUARD-OUT";
pub const CHAIN_GUARD: &str = "MESHGUARD-GUARD";
/// Our chains, in the order they are declared.
pub const CHAINS: [&str; 3] = [CHAIN_IN, CHAIN_OUT, CHAIN_GUARD];
/// Comments on rules that are not a policy's, so counters can tell them apart.
pub const REPLIES: &str = "meshguard:replies";
pub const NOT_OURS: &str = "meshguard:not-ours";
pub const DEFAULT_DENY: &str = "meshguard:default-deny";
pub const LEAK: &str = "meshguard:leak";
pub const LOCAL: &str = "meshguard:local";
pub const HANDSHAKE: &str = "meshguard:handshake";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(net: &IpNet) -> Family {
        match net {
            IpNet::V4(_) => Family::V4,
            IpNet::V6(_) => Family::V6,
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Family::V4 => "mg4",
            Family::V6 => "mg6",
        }
    }

    pub fn ipset_family(self) -> &'static str {
        match self {
            Family::V4 => "inet",
            Family::V6 => "inet6",
        }
    }

    fn icmp(self) -> &'static str {
        match self {
            Family::V4 => "icmp",
            Family::V6 => "ipv6-icmp",
        }
    }
}

pub struct Options<'a> {
    pub interface: &'a str,
    pub enforcement: Enforcement,
    pub nflog_group: u16,
    /// Address ranges that only ever travel through the mesh interface.
    pub mesh_cidrs: &'a [IpNet],
}

/// One ipset: its kernel name, family and entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpSet {
    pub name: String,
    pub family: Family,
    pub entries: Vec<String>,
}

/// Everything for one address family.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    /// Chain -> rule specifications (the part after `-A CHAIN`), in order.
    pub chains: BTreeMap<&'static str, Vec<String>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub sets: Vec<IpSet>,
    pub v4: Ruleset,
    pub v6: Ruleset,
}

impl Rendered {
    pub fn ruleset(&self, family: Family) -> &Ruleset {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }

    /// Policy rules installed (one FilterRule may need several kernel rules).
    pub fn rule_count(&self) -> usize {
        [&self.v4, &self.v6]
            .iter()
            .flat_map(|r| r.chains.values())
            .flatten()
            .filter(|r| !r.contains("meshguard:"))
            .count()
    }

    /// `iptables-restore --noflush` input that replaces our chains.
    pub fn restore_text(&self, family: Family) -> String {
        let ruleset = self.ruleset(family);
        let mut out = String::from("*filter\n");
        for chain in CHAINS {
            out.push_str(&format!(":{chain} - [0:0]\n"));
        }
        for chain in CHAINS {
            for rule in ruleset.chains.get(chain).into_iter().flatten() {
                out.push_str(&format!("-A {chain} {rule}\n"));
            }
        }
        out.push_str("COMMIT\n");
        out
    }
}

/// The kernel name of a NodePolicy address set in one family (ipset names
/// have at most 31 characters: `mg4-` and a 14-character set name fit).
pub fn set_name(family: Family, set: &str) -> String {
    format!("{}-{set}", family.prefix())
}

/// The set of this node's own addresses (mesh IP and routed subnets).
pub fn own_set(family: Family) -> String {
    format!("{}-own", family.prefix())
}

/// Splits a set's entries by family. `hash:net` cannot hold a /0, so a /0
/// becomes its two halves.
fn entries(set: &AddressSet) -> BTreeMap<Family, Vec<String>> {
    let mut out: BTreeMap<Family, Vec<String>> = BTreeMap::new();
    for address in &set.addresses {
        if let Ok(ip) = address.parse::<IpAddr>() {
            out.entry(if ip.is_ipv4() { Family::V4 } else { Family::V6 })
                .or_default()
                .push(address.clone());
        }
    }
    for cidr in &set.cidrs {
        let Ok(net) = cidr.parse::<IpNet>() else {
            continue;
        };
        let list = out.entry(Family::of(&net)).or_default();
        if net.prefix_len() == 0 {
            list.extend(net.subnets(1).into_iter().flatten().map(|n| n.to_string()));
        } else {
            list.push(net.to_string());
        }
    }
    out
}

pub fn render(spec: &NodePolicySpec, options: &Options) -> Rendered {
    let mut sets = Vec::new();
    // Which (family, NodePolicy set) pairs have entries: a rule over an empty
    // set can never match in that family and is left out of it.
    let mut present: BTreeMap<(Family, &str), String> = BTreeMap::new();
    for set in &spec.address_sets {
        for (family, list) in entries(set) {
            let name = set_name(family, &set.name);
            present.insert((family, set.name.as_str()), name.clone());
            sets.push(IpSet {
                name,
                family,
                entries: list,
            });
        }
    }
    let mut own: BTreeMap<Family, Vec<String>> = BTreeMap::new();
    if let Ok(ip) = spec.interface.mesh_ip.parse::<IpAddr>() {
        own.entry(if ip.is_ipv4() { Family::V4 } else { Family::V6 })
            .or_default()
            .push(ip.to_string());
    }
    for cidr in spec
        .interface
        .routed_ips
        .iter()
        .filter_map(|c| c.parse::<IpNet>().ok())
    {
        own.entry(Family::of(&cidr))
            .or_default()
            .push(cidr.to_string());
    }
    for (&family, list) in &own {
        sets.push(IpSet {
            name: own_set(family),
            family,
            entries: list.clone(),
        });
    }

    let mut rulesets = [Ruleset::default(), Ruleset::default()];
    for (slot, family) in [(0, Family::V4), (1, Family::V6)] {
        let ruleset = &mut rulesets[slot];
        let lists = [
            (CHAIN_IN, &spec.ingress, "src", "dst"),
            (CHAIN_OUT, &spec.egress, "dst", "src"),
        ];
        for (chain, list, remote_dir, local_dir) in lists {
            let mut rules = vec![format!(
                "-m conntrack --ctstate ESTABLISHED,RELATED -m comment --comment \"{REPLIES}\" -j ACCEPT"
            )];
            // The NodePolicy's contract: only our own addresses, in and out.
            let ownership = if own.contains_key(&family) {
                format!("-m set ! --match-set {} {local_dir}", own_set(family))
            } else {
                String::new()
            };
            push_verdict(
                &mut rules,
                &ownership,
                NOT_OURS,
                Action::Deny,
                false,
                options,
            );
            if chain == CHAIN_OUT {
                // The agent's own handshake starter; see wireguard::handshake.
                rules.push(format!(
                    "-p udp -m mark --mark {:#x} -m udp --dport {} -m comment --comment \"{HANDSHAKE}\" -j ACCEPT",
                    handshake::MARK,
                    handshake::PORT
                ));
            }
            for rule in list.iter() {
                let Some(matches) = rule_matches(rule, family, remote_dir, local_dir, &present)
                else {
                    continue;
                };
                for ports in port_matches(rule, family) {
                    let spec = [matches.as_str(), ports.as_str()]
                        .iter()
                        .filter(|s| !s.is_empty())
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(" ");
                    push_verdict(
                        &mut rules,
                        &spec,
                        &rule.id,
                        rule.action,
                        rule.audit,
                        options,
                    );
                }
            }
            push_verdict(&mut rules, "", DEFAULT_DENY, Action::Deny, false, options);
            if options.enforcement == Enforcement::Audit {
                // Under agent-wide audit the chain accepts what it would have dropped.
                rules.push(format!("-m comment --comment \"{DEFAULT_DENY}\" -j ACCEPT"));
            }
            ruleset.chains.insert(chain, rules);
        }
        let guard: Vec<String> = options
            .mesh_cidrs
            .iter()
            .chain(
                spec.peers
                    .iter()
                    .flat_map(|p| p.allowed_ips.iter())
                    .filter_map(|c| c.parse::<IpNet>().ok())
                    .filter(|n| n.prefix_len() < max_len(n))
                    .collect::<Vec<_>>()
                    .iter(),
            )
            .filter(|n| Family::of(n) == family)
            .map(|n| {
                format!(
                    "-d {n} ! -o {} -m comment --comment \"{LEAK}\" -j DROP",
                    options.interface
                )
            })
            .collect();
        let mut guard = guard;
        guard.dedup();
        // Traffic to this node's own mesh address leaves by loopback.
        guard.insert(
            0,
            format!("-o lo -m comment --comment \"{LOCAL}\" -j RETURN"),
        );
        ruleset.chains.insert(CHAIN_GUARD, guard);
    }
    let [v4, v6] = rulesets;
    Rendered { sets, v4, v6 }
}

fn max_len(net: &IpNet) -> u8 {
    match net {
        IpNet::V4(_) => 32,
        IpNet::V6(_) => 128,
    }
}

/// The address part of a rule; `None` when a set it needs is empty in this family.
fn rule_matches(
    rule: &FilterRule,
    family: Family,
    remote_dir: &str,
    local_dir: &str,
    present: &BTreeMap<(Family, &str), String>,
) -> Option<String> {
    let mut parts = Vec::new();
    if rule.set != ALL_ADDRESSES {
        parts.push(format!(
            "-m set --match-set {} {remote_dir}",
            present.get(&(family, rule.set.as_str()))?
        ));
    }
    if let Some(local) = &rule.local {
        parts.push(format!(
            "-m set --match-set {} {local_dir}",
            present.get(&(family, local.as_str()))?
        ));
    }
    Some(parts.join(" "))
}

/// The traffic part of a rule: one entry per port range, or one empty
/// entry for all traffic.
fn port_matches(rule: &FilterRule, family: Family) -> Vec<String> {
    let Some(ports) = &rule.ports else {
        return vec![String::new()];
    };
    ports
        .iter()
        .map(|p| {
            let protocol = match p.protocol {
                Protocol::TCP => "tcp",
                Protocol::UDP => "udp",
                Protocol::SCTP => "sctp",
                Protocol::ICMP => family.icmp(),
            };
            match (p.port, p.end_port) {
                (Some(first), Some(last)) if last != first => {
                    format!("-p {protocol} --dport {first}:{last}")
                }
                (Some(port), _) => format!("-p {protocol} --dport {port}"),
                (None, _) => format!("-p {protocol}"),
            }
        })
        .collect()
}

/// A rule with its comment (the rule id) and what it does: decide, or log
/// and go on (Log rules, Audit-mode rules, and everything under agent-wide audit).
fn push_verdict(
    rules: &mut Vec<String>,
    matches: &str,
    id: &str,
    action: Action,
    audit: bool,
    options: &Options,
) {
    let base = if matches.is_empty() {
        String::new()
    } else {
        format!("{matches} ")
    };
    let nflog = |what: &str| {
        // NFLOG prefixes hold 63 characters.
        let text: String = format!("{what} {id}").chars().take(63).collect();
        format!(
            "-j NFLOG --nflog-prefix \"{text}\" --nflog-group {}",
            options.nflog_group
        )
    };
    let target = match (action, audit || options.enforcement == Enforcement::Audit) {
        (Action::Log, _) => nflog("log"),
        (Action::Allow, false) => "-j ACCEPT".to_owned(),
        (Action::Deny, false) => "-j DROP".to_owned(),
        (Action::Allow, true) => nflog("would-allow"),
        (Action::Deny, true) => nflog("would-deny"),
    };
    rules.push(format!("{base}-m comment --comment \"{id}\" {target}"));
}
