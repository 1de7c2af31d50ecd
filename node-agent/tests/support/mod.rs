//! What any rendering of a NodePolicy must hold, worked out from the spec
//! alone (its text, parsed here with `ipnet`, not with the agent's code):
//! every rule appears in its chain once per port entry, in order, in every
//! family it applies to and no other, with the verdict its action, its
//! policy's mode and the agent's enforcement give it.

#![allow(dead_code, clippy::unwrap_used)] // each test binary uses part of it

use std::net::IpAddr;

use ipnet::IpNet;
use meshguard_agent::backend::{
    Enforcement,
    iptables::render::{CHAIN_GUARD, CHAIN_IN, CHAIN_OUT, Family, Rendered},
};
use meshguard_crds::{Action, NodePolicySpec, Protocol, node_policy::FilterRule};

pub fn family_of(text: &str) -> Family {
    let net = text
        .parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .unwrap();
    Family::of(&net)
}

/// Whether the node owns an address of `family` (mesh IP, routed subnets).
pub fn owns(spec: &NodePolicySpec, family: Family) -> bool {
    std::iter::once(&spec.interface.mesh_ip)
        .chain(&spec.interface.routed_ips)
        .any(|a| family_of(a) == family)
}

/// Whether a named set (or `all`) has an address of `family`.
pub fn set_has(spec: &NodePolicySpec, name: &str, family: Family) -> bool {
    name == "all"
        || spec
            .address_sets
            .iter()
            .find(|s| s.name == name)
            .unwrap()
            .addresses
            .iter()
            .chain(
                &spec
                    .address_sets
                    .iter()
                    .find(|s| s.name == name)
                    .unwrap()
                    .cidrs,
            )
            .any(|a| family_of(a) == family)
}

/// Whether a rule can match anything in `family` on this node.
pub fn applies(spec: &NodePolicySpec, rule: &FilterRule, family: Family) -> bool {
    owns(spec, family)
        && set_has(spec, &rule.set, family)
        && rule
            .local
            .as_deref()
            .is_none_or(|l| set_has(spec, l, family))
}

fn comment(line: &str) -> &str {
    line.split("--comment \"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
}

/// Checks every invariant; the error says which line or rule broke it.
pub fn check(
    spec: &NodePolicySpec,
    rendered: &Rendered,
    families: &[Family],
    enforcement: Enforcement,
) -> Result<(), String> {
    for family in [Family::V4, Family::V6] {
        let wanted = families.contains(&family);
        let Some(ruleset) = rendered.ruleset(family) else {
            if wanted {
                return Err(format!("no {family:?} ruleset"));
            }
            continue;
        };
        if !wanted {
            return Err(format!("a {family:?} ruleset on a node without {family:?}"));
        }
        let prefix = if family == Family::V4 { "mg4-" } else { "mg6-" };
        for (chain, list, remote) in [
            (CHAIN_IN, &spec.ingress, "src"),
            (CHAIN_OUT, &spec.egress, "dst"),
        ] {
            let lines = &ruleset.chains[chain];
            let at = |i: usize| format!("{family:?} {chain}[{i}]: {}", lines[i]);
            if !lines[0].contains("ESTABLISHED,RELATED") || !lines[0].ends_with("-j ACCEPT") {
                return Err(format!("replies first: {}", at(0)));
            }
            if enforcement == Enforcement::Audit {
                if let Some(i) = lines.iter().position(|l| l.ends_with("-j DROP")) {
                    return Err(format!("a DROP under agent-wide audit: {}", at(i)));
                }
            } else if !lines.last().unwrap().contains("\"meshguard:default-deny\"")
                || !lines.last().unwrap().ends_with("-j DROP")
            {
                return Err(format!("default deny last: {}", at(lines.len() - 1)));
            }
            let mut expected: Vec<(&FilterRule, usize)> = Vec::new();
            for rule in list.iter().filter(|r| applies(spec, r, family)) {
                let entries = rule.ports.as_ref().map_or(1, Vec::len);
                expected.extend((0..entries).map(|k| (rule, k)));
            }
            let policy: Vec<usize> = (0..lines.len())
                .filter(|&i| !comment(&lines[i]).starts_with("meshguard:"))
                .collect();
            if policy.len() != expected.len() {
                return Err(format!(
                    "{family:?} {chain}: {} policy lines for {} expected ({:?}):\n{lines:#?}",
                    policy.len(),
                    expected.len(),
                    expected
                        .iter()
                        .map(|(r, k)| format!("{}#{k}", r.id))
                        .collect::<Vec<_>>()
                ));
            }
            for (&i, (rule, k)) in policy.iter().zip(&expected) {
                let line = &lines[i];
                if rendered.id_of(comment(line)) != rule.id {
                    return Err(format!("{} is not {}", at(i), rule.id));
                }
                if comment(line).len() > 255 {
                    return Err(format!("comment too long: {}", at(i)));
                }
                if rule.set != "all"
                    && !line.contains(&format!("--match-set {prefix}{} {remote} ", rule.set))
                {
                    return Err(format!("{} lacks its set {}", at(i), rule.set));
                }
                if let Some(port) = rule.ports.as_ref().map(|p| p[*k]) {
                    let protocol = match (port.protocol, family) {
                        (Protocol::TCP, _) => "tcp",
                        (Protocol::UDP, _) => "udp",
                        (Protocol::SCTP, _) => "sctp",
                        (Protocol::ICMP, Family::V4) => "icmp",
                        (Protocol::ICMP, Family::V6) => "ipv6-icmp",
                    };
                    let ports = match (port.port, port.end_port) {
                        (Some(a), Some(b)) if a != b => format!(" --dport {a}:{b}"),
                        (Some(a), _) => format!(" --dport {a}"),
                        _ => String::new(),
                    };
                    if !line.contains(&format!("-p {protocol}{ports} ")) {
                        return Err(format!("{} is not -p {protocol}{ports}", at(i)));
                    }
                }
                let audit = enforcement == Enforcement::Audit;
                let ok = match (rule.action, rule.audit) {
                    (Action::Log, _) => line.contains("-j NFLOG --nflog-prefix \"log "),
                    (Action::Allow, true) => {
                        line.contains("-j NFLOG --nflog-prefix \"would-allow ")
                    }
                    (Action::Deny, true) => line.contains("-j NFLOG --nflog-prefix \"would-deny "),
                    (Action::Allow, false) if audit => {
                        line.contains("-j NFLOG --nflog-prefix \"would-allow ")
                            && next_accepts(lines, i)
                    }
                    (Action::Deny, false) if audit => {
                        line.contains("-j NFLOG --nflog-prefix \"would-deny ")
                            && next_accepts(lines, i)
                    }
                    (Action::Allow, false) => line.ends_with("-j ACCEPT"),
                    (Action::Deny, false) => line.ends_with("-j DROP"),
                };
                if !ok {
                    return Err(format!(
                        "{} does not do {:?} (audit-mode policy: {}, agent: {enforcement:?})",
                        at(i),
                        rule.action,
                        rule.audit
                    ));
                }
            }
        }
        if ruleset.chains[CHAIN_GUARD]
            .iter()
            .any(|l| l.ends_with("-j ACCEPT"))
        {
            return Err(format!("{family:?}: the leak guard accepts"));
        }
    }
    Ok(())
}

/// Under agent-wide audit a deciding rule's NFLOG line is followed by the
/// ACCEPT for the same matches, which ends evaluation.
fn next_accepts(lines: &[String], i: usize) -> bool {
    let matches = |l: &str| l.split("-m comment").next().unwrap_or_default().to_owned();
    lines.get(i + 1).is_some_and(|next| {
        next.ends_with("-j ACCEPT")
            && comment(next) == "meshguard:audit-accept"
            && matches(next) == matches(&lines[i])
    })
}
