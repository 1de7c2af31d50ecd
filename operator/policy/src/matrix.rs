//! The member × member matrix of a policy set: for every ordered pair of
//! members, what their flows get and which rule decides — `meshguard
//! matrix`. Against a second (earlier) set, also which cells change.
//!
//! ```text
//!  members ──signatures (each side)──▶ groups ──per pair of groups──▶
//!    candidates (pairs) ─▶ runs of traffic alike ─▶ Segment { protocol, ports, decided }
//!  diff(before, after) ─▶ the pairs of groups with some change ─▶ Cell::changed
//! ```
//!
//! Members alike on every side form one group and share every cell, so a
//! large mesh is computed (and drawn, when the caller groups it) per group.

use std::collections::{BTreeSet, HashMap};

use meshguard_crds::{Protocol, Verdict};

use crate::{
    compile::Compiled,
    diff::{Decided, diff},
    pairs::{PROTOCOLS, Seen, Side, candidates, member_groups, port_runs, port_starts},
};

/// The traffic a cell speaks of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Traffic {
    /// Every protocol and port.
    All,
    /// These flows only: a protocol with a port (`None` for ICMP).
    Only(Vec<(Protocol, Option<u16>)>),
}

impl Traffic {
    /// Whether some flow of `protocol` over `ports` (`None`: ICMP) is one
    /// of these.
    fn meets(&self, protocol: Protocol, ports: Option<(u16, u16)>) -> bool {
        match self {
            Traffic::All => true,
            Traffic::Only(flows) => flows.iter().any(|&(p, port)| {
                p == protocol
                    && match (port, ports) {
                        (Some(port), Some((lo, hi))) => (lo..=hi).contains(&port),
                        (None, None) => true,
                        _ => false,
                    }
            }),
        }
    }
}

/// A run of traffic decided alike: `ports` inclusive, `None` for ICMP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub protocol: Protocol,
    pub ports: Option<(u16, u16)>,
    pub decided: Decided,
}

/// What a cell's flows get, in one word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reach {
    /// Every flow allowed.
    Allow,
    /// Some allowed, some denied.
    Partial,
    /// Every flow denied.
    Deny,
}

/// The flows from one group to another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cell {
    /// Per run of traffic; `None` when a member of the pair is absent from
    /// the set (it is only in the other one): it has no flows there.
    pub after: Option<Vec<Segment>>,
    /// The same in the earlier set, when there is one.
    pub before: Option<Vec<Segment>>,
    /// Some flow of the cell's traffic changes verdict between the sets.
    pub changed: bool,
}

impl Cell {
    pub fn reach(&self) -> Reach {
        reach(self.after.as_deref())
    }
}

/// `None` (absent) reaches nothing.
pub fn reach(segments: Option<&[Segment]>) -> Reach {
    let segments = segments.unwrap_or_default();
    let allowed = segments
        .iter()
        .filter(|s| s.decided.verdict == Verdict::Allow)
        .count();
    match allowed {
        0 => Reach::Deny,
        n if n == segments.len() => Reach::Allow,
        _ => Reach::Partial,
    }
}

pub struct Matrix {
    /// Members alike in every set, by name; groups in name order of their
    /// first member.
    pub groups: Vec<Vec<String>>,
    /// `groups.len()²`, row (from) by row; `None` for a lone member with
    /// itself (no mesh flow).
    pub cells: Vec<Option<Cell>>,
}

impl Matrix {
    pub fn cell(&self, from: usize, to: usize) -> Option<&Cell> {
        self.cells[from * self.groups.len() + to].as_ref()
    }
}

/// The matrix of `after` over `traffic`; with `before`, each cell also
/// says what it was and whether it changes (exactly as `diff` finds).
pub fn matrix(after: &Compiled, before: Option<&Compiled>, traffic: &Traffic) -> Matrix {
    let after_side = Side::new(after);
    let before_side = before.map(Side::new);
    let (groups, seen): (Vec<Vec<&str>>, Vec<[Option<Seen>; 2]>) = match &before_side {
        None => {
            let (groups, seen) = member_groups([&after_side]);
            let seen = seen.into_iter().map(|[a]| [Some(a), None]).collect();
            (groups, seen)
        }
        Some(before_side) => {
            let (groups, seen) = member_groups([&after_side, before_side]);
            let seen = seen.into_iter().map(|[a, b]| [Some(a), Some(b)]).collect();
            (groups, seen)
        }
    };
    let sides = [Some(&after_side), before_side.as_ref()];
    let changed = before.map(|before| changed_pairs(before, after, &groups, traffic));
    let n = groups.len();
    let mut cells = Vec::with_capacity(n * n);
    for from in 0..n {
        for to in 0..n {
            if from == to && groups[from].len() == 1 {
                cells.push(None);
                continue;
            }
            let on = |i: usize| -> Option<Vec<Segment>> {
                let side = sides[i]?;
                let (src, dst) = (seen[from][i].as_ref()?, seen[to][i].as_ref()?);
                (src.present && dst.present).then(|| segments(side, src, dst, traffic))
            };
            cells.push(Some(Cell {
                after: on(0),
                before: on(1),
                changed: changed
                    .as_ref()
                    .is_some_and(|pairs| pairs.contains(&(from, to))),
            }));
        }
    }
    Matrix {
        groups: groups
            .into_iter()
            .map(|g| g.into_iter().map(str::to_owned).collect())
            .collect(),
        cells,
    }
}

/// The pairs of `groups` with a change of `traffic` in `diff`. Its member
/// groups are the same partition (the same signatures on both sides), so
/// any member names its group.
fn changed_pairs(
    before: &Compiled,
    after: &Compiled,
    groups: &[Vec<&str>],
    traffic: &Traffic,
) -> BTreeSet<(usize, usize)> {
    let group_of: HashMap<&str, usize> = groups
        .iter()
        .enumerate()
        .flat_map(|(g, names)| names.iter().map(move |n| (*n, g)))
        .collect();
    let diff = diff(before, after);
    let group = |g: usize| match diff.groups[g].first() {
        Some(crate::diff::End::Member(name)) => group_of.get(name.as_str()).copied(),
        _ => None,
    };
    diff.changes
        .iter()
        .filter(|c| traffic.meets(c.protocol, c.ports))
        .filter_map(|c| Some((group(c.from)?, group(c.to)?)))
        .collect()
}

/// What the flows from `src` to `dst` get, in runs decided alike.
fn segments(side: &Side, src: &Seen, dst: &Seen, traffic: &Traffic) -> Vec<Segment> {
    let rules = candidates(side.set, src, dst);
    let segment = |protocol, ports: Option<(u16, u16)>| Segment {
        protocol,
        ports,
        decided: side.decide(&rules, protocol, ports.map(|(lo, _)| lo)),
    };
    let mut out: Vec<Segment> = Vec::new();
    match traffic {
        Traffic::Only(flows) => {
            for &(protocol, port) in flows {
                out.push(segment(protocol, port.map(|p| (p, p))));
            }
        }
        Traffic::All => {
            for protocol in PROTOCOLS {
                if !protocol.has_ports() {
                    out.push(segment(protocol, None));
                    continue;
                }
                let mut starts = BTreeSet::from([1u32]);
                port_starts(side.set, &rules, protocol, &mut starts);
                for (lo, hi) in port_runs(&starts) {
                    let next = segment(protocol, Some((lo, hi)));
                    match out.last_mut() {
                        Some(last) if last.protocol == protocol && last.decided == next.decided => {
                            if let Some((_, end)) = &mut last.ports {
                                *end = hi;
                            }
                        }
                        _ => out.push(next),
                    }
                }
            }
        }
    }
    out
}
