//! Atoms: the smallest pieces of the address space the policies can tell apart.
//!
//! Members whose mesh IP matches exactly the same selectors behave alike in
//! every rule, so they form one *class*, and the compiler computes peers and
//! rule lists once per class (semantics 6 and 7 at the scale of thousands of
//! members). A member that routes a subnet (`allowedIPs`) is a class of its own,
//! and its subnet is cut into *regions*, each matched by every CIDR selector
//! either entirely or not at all.
//!
//! ```text
//!   selectors ──match──▶ member bitsets ──transpose──▶ signatures ──group──▶ classes
//!   allowedIPs ──split by every CIDR boundary──▶ regions (with their own signatures)
//! ```

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use super::bitset::BitSet;
use crate::{
    addresses::{self, Prefix},
    members::Member,
    policy_set::{PolicySet, SelectorId},
    selectors::{LabelMatch, Selector},
};

pub struct Class {
    /// Member indices, in name order.
    pub members: Vec<usize>,
    /// The selectors the members' mesh IPs match.
    pub signature: Vec<SelectorId>,
    /// Region atoms this class's (single) member routes.
    pub regions: Vec<usize>,
}

pub struct Region {
    pub prefix: Prefix,
    pub class: usize,
    pub signature: Vec<SelectorId>,
}

/// Class atoms are numbered `0..classes.len()`, region atoms after them.
pub struct Atoms {
    pub classes: Vec<Class>,
    pub regions: Vec<Region>,
    pub member_class: Vec<usize>,
    /// Per selector, the members it matches.
    pub selector_members: Vec<Arc<BitSet>>,
    /// Per selector, the atoms it matches.
    pub selector_atoms: Vec<BitSet>,
}

impl Atoms {
    pub fn len(&self) -> usize {
        self.classes.len() + self.regions.len()
    }

    pub fn class_of(&self, atom: usize) -> usize {
        if atom < self.classes.len() {
            atom
        } else {
            self.regions[atom - self.classes.len()].class
        }
    }

    /// The atoms one class owns: its own, then its regions'.
    pub fn owned(&self, class: usize) -> impl Iterator<Item = usize> + '_ {
        std::iter::once(class).chain(
            self.classes[class]
                .regions
                .iter()
                .map(|r| self.classes.len() + r),
        )
    }

    /// `selector_members` comes from [`match_members`].
    pub fn build(set: &PolicySet, members: &[Member], selector_members: Vec<Arc<BitSet>>) -> Atoms {
        // Signatures: for each member, the selectors that match it.
        let mut signatures: Vec<Vec<SelectorId>> = vec![Vec::new(); members.len()];
        for (selector, matched) in selector_members.iter().enumerate() {
            for m in matched.ones() {
                signatures[m].push(selector);
            }
        }
        // A member with allowedIPs gets its own class: its rule lists depend on its subnet.
        let mut by_signature: HashMap<(Vec<SelectorId>, Option<usize>), usize> = HashMap::new();
        let mut classes: Vec<Class> = Vec::new();
        let mut member_class = Vec::with_capacity(members.len());
        for (m, signature) in signatures.into_iter().enumerate() {
            let own = (!members[m].allowed_ips.is_empty()).then_some(m);
            let next = classes.len();
            let class = *by_signature.entry((signature.clone(), own)).or_insert(next);
            if class == next {
                classes.push(Class {
                    members: Vec::new(),
                    signature,
                    regions: Vec::new(),
                });
            }
            classes[class].members.push(m);
            member_class.push(class);
        }

        let regions = build_regions(set, members, &member_class, &mut classes);
        let atom_count = classes.len() + regions.len();
        let mut selector_atoms = vec![BitSet::new(atom_count); set.selectors.len()];
        for (c, class) in classes.iter().enumerate() {
            for &s in &class.signature {
                selector_atoms[s].insert(c);
            }
        }
        for (r, region) in regions.iter().enumerate() {
            for &s in &region.signature {
                selector_atoms[s].insert(classes.len() + r);
            }
        }
        Atoms {
            classes,
            regions,
            member_class,
            selector_members,
            selector_atoms,
        }
    }
}

/// Per selector, the members it matches, reusing what `known` returns (the
/// compiler remembers matches between compiles while members stay the same).
/// Label selectors use an inverted index, so the cost follows the matches
/// rather than members × selectors.
pub fn match_members(
    set: &PolicySet,
    members: &[Member],
    known: impl Fn(usize) -> Option<Arc<BitSet>>,
) -> Vec<Arc<BitSet>> {
    let n = members.len();
    let by_name: HashMap<&str, usize> = members
        .iter()
        .enumerate()
        .map(|(i, m)| (m.name.as_str(), i))
        .collect();
    let mut labels: Option<LabelIndex> = None;
    let mut out = Vec::with_capacity(set.selectors.len());
    for (id, selector) in set.selectors.iter().enumerate() {
        if let Some(found) = known(id) {
            out.push(found);
            continue;
        }
        let matched = match selector {
            Selector::Names(names) => {
                let mut matched = BitSet::new(n);
                for i in names.iter().filter_map(|name| by_name.get(name.as_str())) {
                    matched.insert(*i);
                }
                matched
            }
            Selector::Labels(selector) => labels
                .get_or_insert_with(|| LabelIndex::new(members))
                .matching(selector),
            Selector::Cidrs(_) => {
                let mut matched = BitSet::new(n);
                for (i, member) in members.iter().enumerate() {
                    if selector.matches_member(member) {
                        matched.insert(i);
                    }
                }
                matched
            }
            Selector::All => BitSet::full(n),
        };
        out.push(Arc::new(matched));
    }
    out
}

/// Members by label: who has each key, and each key=value pair.
struct LabelIndex<'a> {
    n: usize,
    /// key -> value -> members.
    by_pair: HashMap<&'a str, HashMap<&'a str, BitSet>>,
    by_key: HashMap<&'a str, BitSet>,
    empty: BitSet,
}

impl<'a> LabelIndex<'a> {
    fn new(members: &'a [Member]) -> Self {
        let n = members.len();
        let mut by_pair: HashMap<&str, HashMap<&str, BitSet>> = HashMap::new();
        let mut by_key: HashMap<&str, BitSet> = HashMap::new();
        for (i, member) in members.iter().enumerate() {
            for (k, v) in &member.labels {
                by_pair
                    .entry(k)
                    .or_default()
                    .entry(v)
                    .or_insert_with(|| BitSet::new(n))
                    .insert(i);
                by_key.entry(k).or_insert_with(|| BitSet::new(n)).insert(i);
            }
        }
        LabelIndex {
            n,
            by_pair,
            by_key,
            empty: BitSet::new(n),
        }
    }

    fn pair(&self, key: &str, value: &str) -> &BitSet {
        self.by_pair
            .get(key)
            .and_then(|values| values.get(value))
            .unwrap_or(&self.empty)
    }

    fn key(&self, key: &str) -> &BitSet {
        self.by_key.get(key).unwrap_or(&self.empty)
    }

    fn matching(&self, selector: &LabelMatch) -> BitSet {
        use meshguard_crds::selector::LabelOperator;
        let mut matched = BitSet::full(self.n);
        for (k, v) in &selector.equals {
            matched.intersect_with(self.pair(k, v));
        }
        for e in &selector.expressions {
            let mut any = BitSet::new(self.n);
            for v in &e.values {
                any.union_with(self.pair(&e.key, v));
            }
            match e.operator {
                LabelOperator::In => matched.intersect_with(&any),
                LabelOperator::NotIn => matched.intersect_with(&any.complement(self.n)),
                LabelOperator::Exists => matched.intersect_with(self.key(&e.key)),
                LabelOperator::DoesNotExist => {
                    matched.intersect_with(&self.key(&e.key).complement(self.n))
                }
            }
        }
        matched
    }
}

/// Cuts every routed subnet into regions that no selector boundary, member
/// address or other routed subnet crosses. Where two members route overlapping
/// prefixes, the longer prefix wins, as in WireGuard's routing.
fn build_regions(
    set: &PolicySet,
    members: &[Member],
    member_class: &[usize],
    classes: &mut [Class],
) -> Vec<Region> {
    let routers: Vec<usize> = (0..members.len())
        .filter(|&m| !members[m].allowed_ips.is_empty())
        .collect();
    if routers.is_empty() {
        return Vec::new();
    }
    let mut boundaries: Vec<Prefix> = set
        .selectors
        .iter()
        .flat_map(Selector::boundaries)
        .collect();
    boundaries.extend(members.iter().map(|m| Prefix::host(m.mesh_ip)));
    boundaries.extend(
        routers
            .iter()
            .flat_map(|&m| members[m].allowed_ips.iter().copied()),
    );
    boundaries.sort();
    boundaries.dedup();
    let hosts: BTreeMap<Prefix, usize> = members
        .iter()
        .enumerate()
        .map(|(i, m)| (Prefix::host(m.mesh_ip), i))
        .collect();
    let address_selectors: Vec<SelectorId> = (0..set.selectors.len())
        .filter(|&s| matches!(set.selectors[s], Selector::Cidrs(_) | Selector::All))
        .collect();

    // The most specific route to a piece, ties to the first member by name
    // (members are in name order): the longest of the piece's own prefixes
    // (itself, its parent, ...) that some member routes. A lookup per
    // prefix length, not a scan of every route of the mesh per piece.
    let mut routes: HashMap<Prefix, usize> = HashMap::new();
    for &r in &routers {
        for &route in &members[r].allowed_ips {
            routes.entry(route).or_insert(r);
        }
    }
    let owner = |piece: Prefix| {
        std::iter::successors(Some(piece), |p| p.parent())
            .find_map(|p| routes.get(&p).map(|&r| (r, p)))
    };

    let mut regions = Vec::new();
    for &m in &routers {
        for &prefix in &members[m].allowed_ips {
            let mut pieces = Vec::new();
            addresses::split_by(prefix, &boundaries, &mut pieces);
            for piece in pieces {
                if hosts.contains_key(&piece) {
                    continue; // a member's own address belongs to that member
                }
                if owner(piece) != Some((m, prefix)) {
                    continue;
                }
                let signature = address_selectors
                    .iter()
                    .copied()
                    .filter(|&s| set.selectors[s].matches_region(piece))
                    .collect();
                let class = member_class[m];
                classes[class].regions.push(regions.len());
                regions.push(Region {
                    prefix: piece,
                    class,
                    signature,
                });
            }
        }
    }
    regions
}
