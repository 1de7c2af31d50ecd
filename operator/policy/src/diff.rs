//! Every flow whose verdict differs between two compiled policy sets —
//! exact, not sampled: `meshguard diff`.
//!
//! ```text
//!  members (both sides, by name) ──signatures on both sides──▶ groups ─┐
//!  CIDR boundaries (both sides) ──regions minus member IPs──▶ groups ─┤
//!                                                                     ▼
//!   per pair of groups: the rules that can match it on each side,
//!   their port boundaries per protocol ─▶ segments ─▶ before / after
//!   decision per segment ─▶ merged runs whose verdict differs
//! ```
//!
//! Members whose mesh IPs match the same selectors on both sides behave
//! alike in every rule of both sides (semantics 2–4 read nothing else), so
//! one representative per group decides for all of them. The addresses that
//! are no member's (on either side) are cut by every CIDR boundary of both
//! sides into regions every CIDR selector matches entirely or not at all.
//! Within one pair and protocol, a decision can only change at a port where
//! some rule's range starts or ends. A member present on one side only has
//! no flows on the other: every flow of it there is a Deny with no rule.
//!
//! What keeps it fast when one policy of a thousand changes: a pair is
//! decided again only when one of its groups meets the rules both sides
//! share differently, or a rule one side has alone reaches it
//! ([`pairs_to_decide`]); and a pair's rule list stops at the rule after
//! which every port is decided. Members' selector matches are the
//! compiler's own (`Compiled::selector_matches`).

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    num::NonZero,
};

use meshguard_crds::{Protocol, Verdict};

pub use crate::pairs::{By, Decided};
use crate::{
    addresses::Prefix,
    compile::Compiled,
    pairs::{PROTOCOLS, Seen, Side, candidates, member_groups, port_runs, port_starts},
    policy_set::PolicySet,
};

/// One end of the flows of a change.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum End {
    Member(String),
    /// The addresses of `prefix` outside `except` that are no member's
    /// mesh IP (on either side).
    Addresses {
        prefix: Prefix,
        except: Vec<Prefix>,
    },
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Member(name) => f.write_str(name),
            End::Addresses { prefix, except } if except.is_empty() => write!(f, "{prefix}"),
            End::Addresses { prefix, except } => {
                let except: Vec<String> = except.iter().map(Prefix::to_string).collect();
                write!(f, "{prefix} except {}", except.join(", "))
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeerChange {
    Added,
    Removed,
}

/// Flows from every end of `from` to every end of `to` (a group each) over
/// `protocol` and `ports` (inclusive; `None`: ICMP) change verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupChange {
    pub from: usize,
    pub to: usize,
    pub protocol: Protocol,
    pub ports: Option<(u16, u16)>,
    pub before: Decided,
    pub after: Decided,
}

/// The answer: groups of ends that behave alike on both sides, and the
/// changes between groups.
#[derive(Clone, Debug, Default)]
pub struct Diff {
    pub groups: Vec<Vec<End>>,
    pub changes: Vec<GroupChange>,
    /// Members only the after side has, and only the before side has.
    pub added: Vec<String>,
    pub removed: Vec<String>,
    peers: HashMap<(String, String), PeerChange>,
}

impl Diff {
    /// How the WireGuard peer relation of two members changes (`None`: not
    /// at all, or not two members).
    pub fn peer_change(&self, a: &End, b: &End) -> Option<PeerChange> {
        match (a, b) {
            (End::Member(a), End::Member(b)) => {
                let key = if a < b {
                    (a.clone(), b.clone())
                } else {
                    (b.clone(), a.clone())
                };
                self.peers.get(&key).copied()
            }
            _ => None,
        }
    }

    /// Member pairs whose peer relation changes, each once.
    pub fn peer_changes(&self) -> impl Iterator<Item = (&(String, String), &PeerChange)> {
        self.peers.iter()
    }

    /// Every single change: one per (from, to) end pair of each group
    /// change, a member never with itself.
    pub fn flows(&self) -> impl Iterator<Item = (&End, &End, &GroupChange)> {
        self.changes.iter().flat_map(move |change| {
            self.groups[change.from].iter().flat_map(move |from| {
                self.groups[change.to]
                    .iter()
                    .filter(move |to| *to != from || matches!(from, End::Addresses { .. }))
                    .map(move |to| (from, to, change))
            })
        })
    }
}

pub fn diff(before: &Compiled, after: &Compiled) -> Diff {
    let sides = [Side::new(before), Side::new(after)];
    let (member_groups, mut seen) = member_groups(sides.each_ref());
    let mut groups: Vec<Vec<End>> = member_groups
        .iter()
        .map(|names| names.iter().map(|n| End::Member((*n).to_owned())).collect())
        .collect();
    let names: BTreeSet<&str> = member_groups.into_iter().flatten().collect();

    // Address regions, each a group of its own.
    let member_ips: HashSet<IpAddr> = sides
        .iter()
        .flat_map(|s| s.compiled.members().iter().map(|m| m.mesh_ip))
        .collect();
    for (prefix, except, ip) in regions(&sides, &member_ips) {
        let signatures = [0, 1].map(|i| Some(sides[i].address_signature(ip)));
        groups.push(vec![End::Addresses { prefix, except }]);
        seen.push([0, 1].map(|i| sides[i].view(signatures[i].as_deref())));
    }

    let (decided, same_rule) = pairs_to_decide(&sides, &seen);
    let decide = |pairs: &[(usize, usize)]| {
        let mut changes = Vec::new();
        for &(from, to) in pairs {
            let single_member =
                groups[from].len() == 1 && matches!(groups[from][0], End::Member(_));
            if from == to && single_member {
                continue; // a member with itself: no mesh flow
            }
            pair_changes(
                &sides,
                &same_rule,
                (&seen[from], &seen[to]),
                (from, to),
                &mut changes,
            );
        }
        changes
    };
    // Pairs are independent: decided on every core, in contiguous runs so
    // that the changes come out in the same order as one by one. (Also for
    // a few pairs, so that the tests' small cases go this way too.)
    let workers = std::thread::available_parallelism().map_or(1, NonZero::get);
    let changes: Vec<GroupChange> = if workers == 1 || decided.len() < 2 {
        decide(&decided)
    } else {
        let decide = &decide;
        std::thread::scope(|scope| {
            let runs: Vec<_> = decided
                .chunks(decided.len().div_ceil(workers))
                .map(|run| scope.spawn(move || decide(run)))
                .collect();
            runs.into_iter()
                .flat_map(|run| {
                    run.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        })
    };

    // Peering follows the decisions (semantics 6): only the members of
    // pairs decided again can change it.
    let mut peers = HashMap::new();
    let members_of = |g: usize| {
        groups[g].iter().filter_map(|e| match e {
            End::Member(name) => Some(name.as_str()),
            End::Addresses { .. } => None,
        })
    };
    for &(ga, gb) in &decided {
        for a in members_of(ga) {
            for b in members_of(gb).filter(|b| a < *b) {
                let peered = |compiled: &Compiled, side: &Side| {
                    side.members.contains_key(a)
                        && side.members.contains_key(b)
                        && compiled.are_peers(a, b)
                };
                match (peered(before, &sides[0]), peered(after, &sides[1])) {
                    (false, true) => {
                        peers.insert((a.to_owned(), b.to_owned()), PeerChange::Added);
                    }
                    (true, false) => {
                        peers.insert((a.to_owned(), b.to_owned()), PeerChange::Removed);
                    }
                    _ => {}
                }
            }
        }
    }

    Diff {
        groups,
        changes,
        added: names
            .iter()
            .filter(|n| !sides[0].members.contains_key(*n))
            .map(|n| (*n).to_owned())
            .collect(),
        removed: names
            .iter()
            .filter(|n| !sides[1].members.contains_key(*n))
            .map(|n| (*n).to_owned())
            .collect(),
        peers,
    }
}

/// What identifies a rule across the sides: everything a decision reads
/// (and reports).
fn rule_key(set: &PolicySet, r: usize) -> String {
    let rule = &set.rules[r];
    let policy = set.policy_of(r);
    format!(
        "{}\u{0}{}\u{0}{}\u{0}{:?}\u{0}{}\u{0}{}\u{0}{}\u{0}{:?}",
        policy.name,
        policy.priority,
        set.rule_label(r),
        rule.action,
        rule.audit,
        rule.from.key,
        rule.to.key,
        rule.port_ranges
    )
}

/// The pairs of groups whose decisions may differ, in order. A pair is
/// left out only when it cannot change: both of its groups meet the rules
/// both sides share exactly alike on both sides, those rules keep their
/// order, and neither side's rules for the pair include one the other side
/// lacks — then the rules that can decide its flows are the same list on
/// both sides. (One policy changed in a large set: a few pairs, not all.)
/// Also returns, per rule before, the same rule's index after (when the
/// after side has it).
fn pairs_to_decide(
    sides: &[Side; 2],
    seen: &[[Seen; 2]],
) -> (Vec<(usize, usize)>, Vec<Option<usize>>) {
    let everything = || {
        (0..seen.len())
            .flat_map(|a| (0..seen.len()).map(move |b| (a, b)))
            .collect()
    };
    let keys = [0, 1].map(|i| {
        (0..sides[i].set.rules.len())
            .map(|r| rule_key(sides[i].set, r))
            .collect::<Vec<String>>()
    });
    // shared[i][r]: the rule's index on the other side, when it has one.
    let shared: [Vec<Option<usize>>; 2] = [0, 1].map(|i| {
        let other: HashMap<&str, usize> = keys[1 - i]
            .iter()
            .enumerate()
            .map(|(r, k)| (k.as_str(), r))
            .collect();
        keys[i]
            .iter()
            .map(|k| other.get(k.as_str()).copied())
            .collect()
    });
    let twice = keys
        .iter()
        .any(|k| k.len() != k.iter().collect::<HashSet<_>>().len());
    let in_order = |i: usize| -> Vec<&String> {
        (0..keys[i].len())
            .filter(|&r| shared[i][r].is_some())
            .map(|r| &keys[i][r])
            .collect()
    };
    if twice || in_order(0) != in_order(1) {
        // One key twice, or the shared rules reordered (a priority
        // changed): decide every pair.
        return (everything(), shared[0].clone());
    }
    // A group is stable when present on both sides and meeting the shared
    // rules alike: its before lists, mapped to after indices, are its after
    // lists' shared part.
    let stable: Vec<bool> = seen
        .iter()
        .map(|[before, after]| {
            let mapped = |list: &[usize]| -> Vec<usize> {
                list.iter().filter_map(|&r| shared[0][r]).collect()
            };
            let shared_after = |list: &[usize]| -> Vec<usize> {
                list.iter()
                    .copied()
                    .filter(|&r| shared[1][r].is_some())
                    .collect()
            };
            before.present
                && after.present
                && mapped(&before.from) == shared_after(&after.from)
                && mapped(&before.to) == shared_after(&after.to)
        })
        .collect();
    let mut pairs: BTreeSet<(usize, usize)> = BTreeSet::new();
    for g in (0..seen.len()).filter(|&g| !stable[g]) {
        for other in 0..seen.len() {
            pairs.insert((g, other));
            pairs.insert((other, g));
        }
    }
    // The rules one side has alone: the pairs they can reach.
    for i in 0..2 {
        let mut sources: HashMap<usize, Vec<usize>> = HashMap::new();
        let mut targets: HashMap<usize, Vec<usize>> = HashMap::new();
        for (g, views) in seen.iter().enumerate() {
            for &r in views[i].from.iter().filter(|&&r| shared[i][r].is_none()) {
                sources.entry(r).or_default().push(g);
            }
            for &r in views[i].to.iter().filter(|&&r| shared[i][r].is_none()) {
                targets.entry(r).or_default().push(g);
            }
        }
        for (r, from) in &sources {
            for &a in from {
                for &b in targets.get(r).into_iter().flatten() {
                    pairs.insert((a, b));
                }
            }
        }
    }
    let [before_to_after, _] = shared;
    (pairs.into_iter().collect(), before_to_after)
}

fn pair_changes(
    sides: &[Side; 2],
    same_rule: &[Option<usize>],
    (src, dst): (&[Seen; 2], &[Seen; 2]),
    (from, to): (usize, usize),
    out: &mut Vec<GroupChange>,
) {
    let present = [0, 1].map(|i| src[i].present && dst[i].present);
    let rules = [0, 1].map(|i| candidates(sides[i].set, &src[i], &dst[i]));
    // The same rules in the same order on both sides: the same decisions.
    if present == [true, true]
        && rules[0].len() == rules[1].len()
        && rules[0]
            .iter()
            .zip(&rules[1])
            .all(|(&b, &a)| same_rule[b] == Some(a))
    {
        return;
    }
    let absent = Decided {
        verdict: Verdict::Deny,
        by: None,
    };
    let decide = |i: usize, protocol, port| {
        if present[i] {
            sides[i].decide(&rules[i], protocol, port)
        } else {
            absent.clone()
        }
    };
    for protocol in PROTOCOLS {
        if !protocol.has_ports() {
            let (before, after) = (decide(0, protocol, None), decide(1, protocol, None));
            if before.verdict != after.verdict {
                out.push(GroupChange {
                    from,
                    to,
                    protocol,
                    ports: None,
                    before,
                    after,
                });
            }
            continue;
        }
        // Where some rule of either side starts or stops covering ports.
        let mut starts = BTreeSet::from([1u32]);
        for (i, side) in sides.iter().enumerate() {
            port_starts(side.set, &rules[i], protocol, &mut starts);
        }
        let mut run: Option<(u16, u16, Decided, Decided)> = None;
        for (port, end) in port_runs(&starts) {
            let (before, after) = (
                decide(0, protocol, Some(port)),
                decide(1, protocol, Some(port)),
            );
            match &mut run {
                Some((_, hi, b, a)) if *b == before && *a == after => *hi = end,
                _ => {
                    if let Some(done) = run.take() {
                        push_run(done, from, to, protocol, out);
                    }
                    run = Some((port, end, before, after));
                }
            }
        }
        if let Some(done) = run {
            push_run(done, from, to, protocol, out);
        }
    }
}

fn push_run(
    (lo, hi, before, after): (u16, u16, Decided, Decided),
    from: usize,
    to: usize,
    protocol: Protocol,
    out: &mut Vec<GroupChange>,
) {
    if before.verdict != after.verdict {
        out.push(GroupChange {
            from,
            to,
            protocol,
            ports: Some((lo, hi)),
            before,
            after,
        });
    }
}

/// The address regions: each CIDR boundary of either side (and each
/// family's whole space) minus the boundaries right inside it, with an
/// address of it that is no member's; regions of member addresses only are
/// left out.
fn regions(sides: &[Side; 2], member_ips: &HashSet<IpAddr>) -> Vec<(Prefix, Vec<Prefix>, IpAddr)> {
    let mut boundaries: BTreeSet<Prefix> = sides
        .iter()
        .flat_map(|s| s.set.selectors.iter().flat_map(|sel| sel.boundaries()))
        .collect();
    boundaries.insert(Prefix::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0));
    boundaries.insert(Prefix::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0));
    let all: Vec<Prefix> = boundaries.into_iter().collect();
    let mut out = Vec::new();
    for &outer in &all {
        let inside: Vec<Prefix> = all
            .iter()
            .copied()
            .filter(|p| *p != outer && outer.contains(*p))
            .collect();
        // The maximal ones: inside no other boundary inside `outer`.
        let mut except: Vec<Prefix> = inside
            .iter()
            .copied()
            .filter(|p| !inside.iter().any(|q| q != p && q.contains(*p)))
            .collect();
        except.sort_by_key(|p| p.first());
        if let Some(ip) = free_address(outer, &except, member_ips) {
            out.push((outer, except, ip));
        }
    }
    out
}

/// The first address of `outer` outside `except` (sorted, disjoint) that is
/// no member's.
fn free_address(outer: Prefix, except: &[Prefix], member_ips: &HashSet<IpAddr>) -> Option<IpAddr> {
    let mut at = outer.first();
    let mut holes = except.iter().peekable();
    loop {
        if at > outer.last() {
            return None;
        }
        while holes.peek().is_some_and(|h| h.last() < at) {
            holes.next();
        }
        if let Some(hole) = holes.peek().filter(|h| h.first() <= at) {
            if hole.last() == outer.last() {
                return None;
            }
            at = hole.last() + 1;
            continue;
        }
        let ip = if outer.is_v6() {
            IpAddr::V6(Ipv6Addr::from(at))
        } else {
            IpAddr::V4(Ipv4Addr::from(at as u32))
        };
        if !member_ips.contains(&ip) {
            return Some(ip);
        }
        if at == outer.last() {
            return None;
        }
        at += 1;
    }
}
