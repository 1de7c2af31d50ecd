//! [`Desired`] -> ipsets and iptables rules, as text. Pure, so what the
//! kernel gets is pinned by tests.
//!
//! Per family the kernel has (no IPv6 chains on a node without IPv6), each
//! chain reads: replies, the ownership check, (egress) the handshake
//! starter, the policy rules in order, default deny. A family in which the
//! node owns no address keeps only what drops everything (its policy rules
//! could never match). How a rule ends:
//!
//! | rule | enforce | agent-wide audit |
//! |---|---|---|
//! | Allow / Deny | ACCEPT / DROP | NFLOG `would-allow`/`would-deny`, then ACCEPT |
//! | Audit-mode policy | NFLOG, go on | NFLOG, go on |
//! | Log | NFLOG, go on | NFLOG, go on |
//!
//! So under agent-wide audit, as under enforcement, the first deciding rule
//! (default deny included) counts a new flow once and evaluation stops; the
//! ACCEPT that follows carries its own comment (`meshguard:audit-accept`),
//! so no counter sums a rule twice.
//!
//! Rule ids go into `--comment` (iptables keeps 255 characters) and NFLOG
//! prefixes (63): an id that does not fit is written in a stable short form
//! (its head, `~`, 12 hex digits of its SHA-256), unique where truncation
//! would not be; [`Rendered::ids`] maps each kernel form back to the id.

use std::collections::BTreeMap;

use ipnet::IpNet;
use meshguard_crds::{Action, Protocol};
use sha2::{Digest, Sha256};

pub use crate::backend::contract::Family;
use crate::{
    backend::contract::Enforcement,
    desired::{Desired, Remote, Rule, canonical},
    wireguard::handshake,
};

pub const CHAIN_IN: &str = "MESHGUARD-IN";
pub const CHAIN_OUT: &str = "MESHGUARD-OUT";
pub const CHAIN_GUARD: &str = "MESHGUARD-GUARD";
/// Our chains, in the order they are declared.
pub const CHAINS: [&str; 3] = [CHAIN_IN, CHAIN_OUT, CHAIN_GUARD];
/// Comments on rules that are not a policy's, so counters can tell them apart.
pub const REPLIES: &str = "meshguard:replies";
pub const NOT_OURS: &str = "meshguard:not-ours";
pub const DEFAULT_DENY: &str = "meshguard:default-deny";
pub const AUDIT_ACCEPT: &str = "meshguard:audit-accept";
pub const LEAK: &str = "meshguard:leak";
pub const LOCAL: &str = "meshguard:local";
pub const HANDSHAKE: &str = "meshguard:handshake";

/// What iptables keeps of a `--comment`.
pub const COMMENT_MAX: usize = 255;
/// What NFLOG keeps of a prefix.
pub const NFLOG_PREFIX_MAX: usize = 63;

/// What a family is called in rule text, set names and ipset.
impl Family {
    pub fn prefix(self) -> &'static str {
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
    /// The address families the node has: rules and sets for these only.
    pub families: &'a [Family],
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
    /// One ruleset per family of [`Options::families`].
    pub rulesets: BTreeMap<Family, Ruleset>,
    /// Kernel form of a rule id (comment) -> the id, for every policy rule.
    pub ids: BTreeMap<String, String>,
}

impl Rendered {
    pub fn ruleset(&self, family: Family) -> Option<&Ruleset> {
        self.rulesets.get(&family)
    }

    /// Policy rules installed (one FilterRule may need several kernel rules),
    /// in the families rendered.
    pub fn rule_count(&self) -> usize {
        self.rulesets
            .values()
            .flat_map(|r| r.chains.values())
            .flatten()
            .filter(|r| !r.contains("\"meshguard:"))
            .count()
    }

    /// The id a kernel comment stands for.
    pub fn id_of<'a>(&'a self, comment: &'a str) -> &'a str {
        self.ids.get(comment).map_or(comment, String::as_str)
    }

    /// `iptables-restore --noflush` input that replaces our chains; `None`
    /// for a family not rendered.
    pub fn restore_text(&self, family: Family) -> Option<String> {
        let ruleset = self.ruleset(family)?;
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
        Some(out)
    }
}

/// The kernel name of a NodePolicy address set in one family (ipset names
/// have at most 31 characters: `mg4-`, a set name of up to 25, `-t`).
pub fn set_name(family: Family, set: &str) -> String {
    format!("{}-{set}", family.prefix())
}

/// The set of this node's own addresses (mesh IP and routed subnets).
pub fn own_set(family: Family) -> String {
    format!("{}-own", family.prefix())
}

/// `id` within `max` characters: itself when it fits, else a stable short
/// form that keeps its head readable and tells ids apart by their hash.
pub fn kernel_id(id: &str, max: usize) -> String {
    if id.len() <= max {
        return id.to_owned();
    }
    let digest = Sha256::digest(id.as_bytes());
    let hash: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    // Ids are ASCII (checked when parsed), so any byte index is a char boundary.
    let head: String = id
        .chars()
        .take(max.saturating_sub(hash.len() + 1))
        .collect();
    format!("{head}~{hash}")
}

/// A set's entries by family, canonical. `hash:net` cannot hold a /0, so a
/// /0 becomes its two halves.
fn entries(nets: &[IpNet]) -> BTreeMap<Family, Vec<String>> {
    let mut out: BTreeMap<Family, Vec<String>> = BTreeMap::new();
    for net in nets {
        let list = out.entry(Family::of(net)).or_default();
        if net.prefix_len() == 0 {
            list.extend(net.subnets(1).into_iter().flatten().map(|n| canonical(&n)));
        } else {
            list.push(canonical(net));
        }
    }
    out
}

pub fn render(desired: &Desired, options: &Options) -> Rendered {
    let families = options.families;
    let mut sets = Vec::new();
    // Which (family, set index) pairs have entries: a rule over an empty
    // set can never match in that family and is left out of it.
    let mut present: BTreeMap<(Family, usize), String> = BTreeMap::new();
    for (index, set) in desired.sets.iter().enumerate() {
        for (family, list) in entries(&set.nets) {
            if !families.contains(&family) {
                continue;
            }
            let name = set_name(family, &set.name);
            present.insert((family, index), name.clone());
            sets.push(IpSet {
                name,
                family,
                entries: list,
            });
        }
    }
    let own: Vec<IpNet> = desired.own().collect();
    let own_entries = entries(&own);
    for (&family, list) in own_entries.iter().filter(|(f, _)| families.contains(f)) {
        sets.push(IpSet {
            name: own_set(family),
            family,
            entries: list.clone(),
        });
    }
    let routed_peers = routed_peers(desired, options);

    let mut ids = BTreeMap::new();
    let mut rulesets = BTreeMap::new();
    for &family in families {
        let mut writer = Writer {
            options,
            ids: &mut ids,
            rules: Vec::new(),
        };
        let mut ruleset = Ruleset::default();
        let lists = [
            (CHAIN_IN, &desired.ingress, "src", "dst"),
            (CHAIN_OUT, &desired.egress, "dst", "src"),
        ];
        for (chain, list, remote_dir, local_dir) in lists {
            writer.rules.push(format!(
                "-m conntrack --ctstate ESTABLISHED,RELATED -m comment --comment \"{REPLIES}\" -j ACCEPT"
            ));
            // The NodePolicy's contract: only our own addresses, in and out.
            let ownership = if own_entries.contains_key(&family) {
                format!("-m set ! --match-set {} {local_dir}", own_set(family))
            } else {
                String::new()
            };
            writer.verdict(&ownership, NOT_OURS, Action::Deny, false);
            if chain == CHAIN_OUT {
                // The agent's own handshake starter; see wireguard::handshake.
                writer.rules.push(format!(
                    "-p udp -m mark --mark {:#x} -m udp --dport {} -m comment --comment \"{HANDSHAKE}\" -j ACCEPT",
                    handshake::MARK,
                    handshake::PORT
                ));
            }
            // Without an own address in this family, the ownership check
            // above drops everything: policy rules there would be dead.
            let live = own_entries.contains_key(&family);
            for rule in list.iter().filter(|_| live) {
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
                    writer.verdict(&spec, &rule.id, rule.action, rule.audit);
                }
            }
            writer.verdict("", DEFAULT_DENY, Action::Deny, false);
            ruleset
                .chains
                .insert(chain, std::mem::take(&mut writer.rules));
        }
        ruleset
            .chains
            .insert(CHAIN_GUARD, guard(family, options, &routed_peers));
        rulesets.insert(family, ruleset);
    }
    Rendered {
        sets,
        rulesets,
        ids,
    }
}

/// Only the fail-closed guard, for a backend that filters the mesh
/// interface itself (eBPF) but cannot see packets leaving by other
/// interfaces: MESHGUARD-IN and MESHGUARD-OUT stay empty (their hooks
/// return at once), no sets.
pub fn render_guard(desired: &Desired, options: &Options) -> Rendered {
    let routed_peers = routed_peers(desired, options);
    let rulesets = options
        .families
        .iter()
        .map(|&family| {
            let mut ruleset = Ruleset::default();
            ruleset.chains.insert(CHAIN_IN, Vec::new());
            ruleset.chains.insert(CHAIN_OUT, Vec::new());
            ruleset
                .chains
                .insert(CHAIN_GUARD, guard(family, options, &routed_peers));
            (family, ruleset)
        })
        .collect();
    Rendered {
        sets: Vec::new(),
        rulesets,
        ids: BTreeMap::new(),
    }
}

/// The peers' routed subnets (under agent-wide audit the audit peers are
/// installed too, with routes).
fn routed_peers(desired: &Desired, options: &Options) -> Vec<IpNet> {
    let audit = options.enforcement == Enforcement::Audit;
    desired
        .peers
        .iter()
        .chain(desired.audit_peers.iter().filter(|_| audit))
        .flat_map(|p| p.allowed_ips.iter().copied())
        .filter(|n| n.prefix_len() < n.max_prefix_len())
        .collect()
}

/// The guard chain of one family: mesh addresses (the mesh CIDRs and the
/// peers' routed subnets) leaving by another interface are dropped.
fn guard(family: Family, options: &Options, routed_peers: &[IpNet]) -> Vec<String> {
    let mut guard: Vec<String> = Vec::new();
    for net in options
        .mesh_cidrs
        .iter()
        .chain(routed_peers)
        .filter(|n| Family::of(n) == family)
    {
        let rule = format!(
            "-d {} ! -o {} -m comment --comment \"{LEAK}\" -j DROP",
            canonical(net),
            options.interface
        );
        if !guard.contains(&rule) {
            guard.push(rule);
        }
    }
    // Traffic to this node's own mesh address leaves by loopback.
    guard.insert(
        0,
        format!("-o lo -m comment --comment \"{LOCAL}\" -j RETURN"),
    );
    guard
}

/// The address part of a rule; `None` when a set it needs is empty in this
/// family (the rule matches nothing there).
fn rule_matches(
    rule: &Rule,
    family: Family,
    remote_dir: &str,
    local_dir: &str,
    present: &BTreeMap<(Family, usize), String>,
) -> Option<String> {
    let mut parts = Vec::new();
    if let Remote::Set(set) = rule.remote {
        parts.push(format!(
            "-m set --match-set {} {remote_dir}",
            present.get(&(family, set))?
        ));
    }
    if let Some(local) = rule.local {
        parts.push(format!(
            "-m set --match-set {} {local_dir}",
            present.get(&(family, local))?
        ));
    }
    Some(parts.join(" "))
}

/// The traffic part of a rule: one entry per port range, or one empty
/// entry for all traffic.
fn port_matches(rule: &Rule, family: Family) -> Vec<String> {
    let Some(traffic) = &rule.traffic else {
        return vec![String::new()];
    };
    traffic
        .iter()
        .map(|t| {
            let protocol = match t.protocol {
                Protocol::TCP => "tcp",
                Protocol::UDP => "udp",
                Protocol::SCTP => "sctp",
                Protocol::ICMP => family.icmp(),
            };
            match t.ports {
                Some((first, last)) if last != first => {
                    format!("-p {protocol} --dport {first}:{last}")
                }
                Some((port, _)) => format!("-p {protocol} --dport {port}"),
                None => format!("-p {protocol}"),
            }
        })
        .collect()
}

/// Writes a chain's rules, recording the kernel form of each id.
struct Writer<'a> {
    options: &'a Options<'a>,
    ids: &'a mut BTreeMap<String, String>,
    rules: Vec<String>,
}

impl Writer<'_> {
    /// A rule with its comment (the rule id's kernel form) and what it
    /// does: decide, or log and go on (Log rules, Audit-mode rules).
    fn verdict(&mut self, matches: &str, id: &str, action: Action, audit: bool) {
        let base = if matches.is_empty() {
            String::new()
        } else {
            format!("{matches} ")
        };
        let comment = kernel_id(id, COMMENT_MAX);
        if !id.starts_with("meshguard:") {
            self.ids.insert(comment.clone(), id.to_owned());
        }
        let group = self.options.nflog_group;
        let nflog = |what: &str| {
            let text = format!(
                "{what} {}",
                kernel_id(id, NFLOG_PREFIX_MAX - what.len() - 1)
            );
            format!("-j NFLOG --nflog-prefix \"{text}\" --nflog-group {group}")
        };
        let agent_audit = self.options.enforcement == Enforcement::Audit;
        let target = match (action, audit) {
            (Action::Log, _) => nflog("log"),
            (Action::Allow, true) => nflog("would-allow"),
            (Action::Deny, true) => nflog("would-deny"),
            (Action::Allow, false) if agent_audit => nflog("would-allow"),
            (Action::Deny, false) if agent_audit => nflog("would-deny"),
            (Action::Allow, false) => "-j ACCEPT".to_owned(),
            (Action::Deny, false) => "-j DROP".to_owned(),
        };
        self.rules
            .push(format!("{base}-m comment --comment \"{comment}\" {target}"));
        if agent_audit && !audit && action != Action::Log {
            // What enforcement would decide is counted above; the flow
            // goes no further, as under enforcement, and passes.
            self.rules.push(format!(
                "{base}-m comment --comment \"{AUDIT_ACCEPT}\" -j ACCEPT"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_ids_get_a_short_form_that_fits_and_stays_unique() {
        let policy = "p".repeat(253);
        let a = format!("{policy}/{}a", "r".repeat(62));
        let b = format!("{policy}/{}b", "r".repeat(62));
        let (ka, kb) = (kernel_id(&a, COMMENT_MAX), kernel_id(&b, COMMENT_MAX));
        assert_ne!(ka, kb);
        assert_eq!((ka.len(), kb.len()), (COMMENT_MAX, COMMENT_MAX));
        assert!(ka.starts_with("ppp") && ka.contains('~'));
        assert_eq!(ka, kernel_id(&a, COMMENT_MAX), "stable");
        assert_eq!(kernel_id("web/db", COMMENT_MAX), "web/db");
        let short = kernel_id(&a, NFLOG_PREFIX_MAX - "would-allow ".len());
        assert_eq!(short.len(), NFLOG_PREFIX_MAX - "would-allow ".len());
    }
}
