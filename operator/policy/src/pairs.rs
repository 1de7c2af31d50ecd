//! The rules that can decide the flows between two groups of ends, on one
//! side of a comparison: what `diff` and `matrix` both stand on.
//!
//! Members whose mesh IPs match the same selectors behave alike in every
//! rule (semantics 2–4 read nothing else), so a group of them is seen
//! through one signature: the rules whose `from` it meets and those whose
//! `to` it meets. Between two groups, only the rules both lists share can
//! decide, in order, and after the rule that leaves no port undecided
//! nothing else can ([`candidates`]). Within one protocol a decision can
//! only change at a port where one of those rules' ranges starts or ends
//! ([`port_starts`]).

use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
};

use meshguard_crds::{Action, Protocol, Verdict};

use crate::{compile::Compiled, policy_set::PolicySet, ports::PortSet};

/// The rule that decided, as `policy` and `rule` (its name or index).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct By {
    pub policy: String,
    pub rule: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Decided {
    pub verdict: Verdict,
    /// `None`: the default deny (or, for a member absent on that side, no flow at all).
    pub by: Option<By>,
}

/// Every protocol a flow can have, in the order reports list them.
pub(crate) const PROTOCOLS: [Protocol; 4] =
    [Protocol::TCP, Protocol::UDP, Protocol::SCTP, Protocol::ICMP];

/// One compiled policy set, indexed for grouping and deciding.
pub(crate) struct Side<'a> {
    pub compiled: &'a Compiled,
    pub set: &'a PolicySet,
    /// Name -> index in `compiled.members()`.
    pub members: HashMap<&'a str, usize>,
}

impl<'a> Side<'a> {
    pub fn new(compiled: &'a Compiled) -> Side<'a> {
        Side {
            compiled,
            set: compiled.policy_set(),
            members: compiled
                .members()
                .iter()
                .enumerate()
                .map(|(i, m)| (m.name.as_str(), i))
                .collect(),
        }
    }

    pub fn member_signature(&self, member: usize) -> Vec<bool> {
        (0..self.set.selectors.len())
            .map(|s| self.compiled.selector_matches(s, member))
            .collect()
    }

    pub fn address_signature(&self, ip: IpAddr) -> Vec<bool> {
        self.set
            .selectors
            .iter()
            .map(|s| s.matches_address(ip))
            .collect()
    }

    /// The rules whose `from` (and whose `to`) the signature matches.
    fn rules(&self, signature: &[bool]) -> (Vec<usize>, Vec<usize>) {
        let matches = |selectors: &[usize]| selectors.iter().any(|&s| signature[s]);
        let from = (0..self.set.rules.len())
            .filter(|&r| matches(&self.set.rules[r].from.selectors))
            .collect();
        let to = (0..self.set.rules.len())
            .filter(|&r| matches(&self.set.rules[r].to.selectors))
            .collect();
        (from, to)
    }

    /// The first of `candidates` that decides `protocol`/`port`, or the
    /// default deny.
    pub fn decide(&self, candidates: &[usize], protocol: Protocol, port: Option<u16>) -> Decided {
        for &r in candidates {
            let rule = &self.set.rules[r];
            if rule.decides() && rule.ports.contains(protocol, port) {
                return Decided {
                    verdict: if rule.action == Action::Allow {
                        Verdict::Allow
                    } else {
                        Verdict::Deny
                    },
                    by: Some(By {
                        policy: self.set.policy_of(r).name.clone(),
                        rule: self.set.rule_label(r),
                    }),
                };
            }
        }
        Decided {
            verdict: Verdict::Deny,
            by: None,
        }
    }

    /// How a group with this signature (`None`: absent from this side)
    /// meets the rules.
    pub fn view(&self, signature: Option<&[bool]>) -> Seen {
        match signature {
            Some(signature) => {
                let (from, to) = self.rules(signature);
                let mut to_bits = vec![0u64; self.set.rules.len().div_ceil(64)];
                for &r in &to {
                    to_bits[r / 64] |= 1 << (r % 64);
                }
                Seen {
                    present: true,
                    from,
                    to,
                    to_bits,
                }
            }
            None => Seen {
                present: false,
                from: Vec::new(),
                to: Vec::new(),
                to_bits: Vec::new(),
            },
        }
    }
}

/// A group as one side sees it: absent, or the rules its ends meet.
pub(crate) struct Seen {
    pub present: bool,
    pub from: Vec<usize>,
    pub to: Vec<usize>,
    /// `to` as bits, for membership.
    to_bits: Vec<u64>,
}

impl Seen {
    fn meets_to(&self, rule: usize) -> bool {
        self.to_bits
            .get(rule / 64)
            .is_some_and(|word| word & (1 << (rule % 64)) != 0)
    }
}

/// The members of every side, grouped by their signatures on all sides
/// (absent counts), in name order of each group's first member; with each
/// group's view on each side.
pub(crate) fn member_groups<'a, const N: usize>(
    sides: [&Side<'a>; N],
) -> (Vec<Vec<&'a str>>, Vec<[Seen; N]>) {
    let names: BTreeSet<&str> = sides
        .iter()
        .flat_map(|s| s.members.keys().copied())
        .collect();
    let mut groups: Vec<Vec<&str>> = Vec::new();
    let mut seen: Vec<[Seen; N]> = Vec::new();
    let mut by_signature: HashMap<[Option<Vec<bool>>; N], usize> = HashMap::new();
    for name in names {
        let signatures: [Option<Vec<bool>>; N] = std::array::from_fn(|i| {
            sides[i]
                .members
                .get(name)
                .map(|&m| sides[i].member_signature(m))
        });
        let next = groups.len();
        let group = *by_signature.entry(signatures.clone()).or_insert(next);
        if group == next {
            groups.push(Vec::new());
            seen.push(std::array::from_fn(|i| {
                sides[i].view(signatures[i].as_deref())
            }));
        }
        groups[group].push(name);
    }
    (groups, seen)
}

/// The rules that can decide flows from `src` to `dst`, in order, up to
/// the one after which every port of every protocol `check` decides is
/// decided (the rest can change nothing).
pub(crate) fn candidates(set: &PolicySet, src: &Seen, dst: &Seen) -> Vec<usize> {
    let mut open = PortSet {
        other: false,
        ..PortSet::all()
    };
    let mut out = Vec::new();
    for &r in src.from.iter().filter(|&&r| dst.meets_to(r)) {
        out.push(r);
        let rule = &set.rules[r];
        if rule.decides() {
            open = open.minus(&rule.ports);
            if open.is_empty() {
                break;
            }
        }
    }
    out
}

/// Adds to `starts` every port where one of `rules` starts or stops
/// covering `protocol` (which has ports).
pub(crate) fn port_starts(
    set: &PolicySet,
    rules: &[usize],
    protocol: Protocol,
    starts: &mut BTreeSet<u32>,
) {
    for &r in rules {
        let ranges = match protocol {
            Protocol::TCP => &set.rules[r].ports.tcp,
            Protocol::UDP => &set.rules[r].ports.udp,
            _ => &set.rules[r].ports.sctp,
        };
        for &(lo, hi) in ranges.spans() {
            starts.insert(lo as u32);
            starts.insert(hi as u32 + 1);
        }
    }
}

/// The port runs between `starts` (which hold 1): `(first, last)` each,
/// covering 1–65535 once.
pub(crate) fn port_runs(starts: &BTreeSet<u32>) -> Vec<(u16, u16)> {
    let starts: Vec<u32> = starts
        .iter()
        .copied()
        .filter(|&p| (1..=u16::MAX as u32).contains(&p))
        .collect();
    starts
        .iter()
        .enumerate()
        .map(|(k, &start)| {
            let end = starts.get(k + 1).map_or(u16::MAX as u32, |next| next - 1);
            (start as u16, end as u16)
        })
        .collect()
}
