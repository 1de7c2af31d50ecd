//! Peer visibility (semantics 6): two members are peers exactly when some
//! traffic between them, in either direction, is allowed — with shadowing, so
//! an Allow that earlier Denies hide completely grants nothing.
//!
//! For each source atom, the rules its addresses match on the `from` side are
//! walked in order over the traffic space, per destination: each Deny removes
//! its traffic, an Allow that still covers some makes the two peers.

use std::collections::HashMap;

use meshguard_crds::Action;

use super::{atoms::Atoms, bitset::BitSet};
use crate::{policy_set::PolicySet, ports::PortSet};

/// Which atoms each rule's sides match, and which rules each atom meets.
pub struct RuleIndex {
    pub from_atoms: Vec<BitSet>,
    pub to_atoms: Vec<BitSet>,
    /// Per atom, the rules whose `from` matches it.
    pub atom_from_rules: Vec<BitSet>,
    /// Per atom, the rules whose `to` matches it.
    pub atom_to_rules: Vec<BitSet>,
}

impl RuleIndex {
    pub fn build(set: &PolicySet, atoms: &Atoms) -> RuleIndex {
        let atom_count = atoms.len();
        let side_atoms = |selectors: &[usize]| {
            let mut matched = BitSet::new(atom_count);
            for &s in selectors {
                matched.union_with(&atoms.selector_atoms[s]);
            }
            matched
        };
        let from_atoms: Vec<BitSet> = set
            .rules
            .iter()
            .map(|r| side_atoms(&r.from.selectors))
            .collect();
        let to_atoms: Vec<BitSet> = set
            .rules
            .iter()
            .map(|r| side_atoms(&r.to.selectors))
            .collect();
        let transpose = |per_rule: &[BitSet]| {
            let mut per_atom = vec![BitSet::new(set.rules.len()); atom_count];
            for (rule, matched) in per_rule.iter().enumerate() {
                for atom in matched.ones() {
                    per_atom[atom].insert(rule);
                }
            }
            per_atom
        };
        let atom_from_rules = transpose(&from_atoms);
        let atom_to_rules = transpose(&to_atoms);
        RuleIndex {
            from_atoms,
            to_atoms,
            atom_from_rules,
            atom_to_rules,
        }
    }
}

/// Per class, the classes whose members are its members' peers. A class is
/// its own peer when traffic between two of its members is allowed; expanding
/// to members then leaves each member out of its own list.
///
/// One sweep per source atom over the rules its members' addresses match, in
/// order, tracking every destination at once: untouched destinations (no Deny
/// seen yet) are settled by an Allow with one bitset operation; only
/// destinations a port-specific Deny has touched keep a traffic set of their own.
pub fn peer_classes(set: &PolicySet, atoms: &Atoms, index: &RuleIndex) -> Vec<BitSet> {
    let atom_count = atoms.len();
    let class_count = atoms.classes.len();
    let mut peers = vec![BitSet::new(class_count); class_count];

    let mut reached = BitSet::new(atom_count); // some traffic allowed
    let mut untouched = BitSet::new(atom_count); // all traffic still undecided
    let mut partial = BitSet::new(atom_count); // some traffic still undecided
    let mut remaining: HashMap<usize, PortSet> = HashMap::new();
    let mut scratch: Vec<usize> = Vec::new();
    for source in 0..atom_count {
        reached.clear();
        untouched.fill(atom_count);
        partial.clear();
        remaining.clear();
        for r in index.atom_from_rules[source].ones() {
            let rule = &set.rules[r];
            if !rule.decides() {
                continue;
            }
            let targets = &index.to_atoms[r];
            if rule.action == Action::Allow {
                reached.union_with_both(targets, &untouched);
                scratch.clear();
                scratch.extend(BitSet::both(targets, &partial));
                for &a in &scratch {
                    if remaining
                        .get(&a)
                        .is_some_and(|left| left.intersects(&rule.ports))
                    {
                        reached.insert(a);
                        partial.remove(a);
                    }
                }
                continue;
            }
            // A Deny: what it covers is decided for these targets.
            scratch.clear();
            scratch.extend(BitSet::both(targets, &partial));
            for &a in &scratch {
                if let Some(left) = remaining.get_mut(&a) {
                    *left = left.minus(&rule.ports);
                    if left.is_empty() {
                        partial.remove(a);
                    }
                }
            }
            scratch.clear();
            scratch.extend(BitSet::both(targets, &untouched).filter(|&a| !reached.contains(a)));
            untouched.difference_with(targets);
            let left_over = PortSet::all().minus(&rule.ports);
            if !left_over.is_empty() {
                for &a in &scratch {
                    partial.insert(a);
                    remaining.insert(a, left_over.clone());
                }
            }
        }
        let from = atoms.class_of(source);
        for target in reached.ones() {
            if distinct_members(atoms, source, target) {
                let to = atoms.class_of(target);
                peers[from].insert(to);
                peers[to].insert(from);
            }
        }
    }
    peers
}

/// Whether atoms `a` and `b` can stand for two different members: atoms of
/// one class only can when both are the class's own atom and it has two members.
fn distinct_members(atoms: &Atoms, a: usize, b: usize) -> bool {
    let (ca, cb) = (atoms.class_of(a), atoms.class_of(b));
    ca != cb || (a == b && a < atoms.classes.len() && atoms.classes[a].members.len() > 1)
}
