//! Peer visibility (semantics 6): two members are peers exactly when some
//! traffic between them, in either direction, is allowed — with shadowing, so
//! an Allow that earlier Denies hide completely grants nothing.
//!
//! For each source atom, the rules its addresses match on the `from` side are
//! walked in order over the traffic space, per destination: each Deny removes
//! its traffic, an Allow that still covers some makes the two peers.

use std::{collections::HashMap, sync::Arc};

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

/// Reach rows remembered between compiles: for a class key (its selectors),
/// the members its addresses can send some traffic to. Members, not classes,
/// so a row stays right when the classes are cut differently.
pub type ReachMemo = HashMap<Arc<[u32]>, Arc<BitSet>>;

/// Per class, the classes whose members are its members' peers. A class is
/// its own peer when traffic between two of its members is allowed; expanding
/// to members then leaves each member out of its own list.
///
/// `keys[c]` is class `c`'s memo key, `None` for a class that routes a subnet
/// (its reach depends on its regions and is always recomputed).
pub fn peer_classes(
    set: &PolicySet,
    atoms: &Atoms,
    index: &RuleIndex,
    keys: &[Option<Arc<[u32]>>],
    memo: &mut ReachMemo,
) -> Vec<BitSet> {
    let class_count = atoms.classes.len();
    let member_count = atoms.member_class.len();
    let mut peers = vec![BitSet::new(class_count); class_count];
    let mut sweeper = Sweeper::new(atoms.len());
    let add_row = |peers: &mut Vec<BitSet>, from: usize, reach: &BitSet| {
        for member in reach.ones() {
            let to = atoms.member_class[member];
            // Reaching a member of its own class means two members when the class has two.
            if to == from && atoms.classes[from].members.len() < 2 {
                continue;
            }
            peers[from].insert(to);
            peers[to].insert(from);
        }
    };
    for source in 0..atoms.len() {
        let class = atoms.class_of(source);
        let key = (source < class_count)
            .then(|| keys[class].clone())
            .flatten();
        if let Some(row) = key.as_ref().and_then(|k| memo.get(k)) {
            add_row(&mut peers, class, row);
            continue;
        }
        let reached = sweeper.sweep(set, index, source);
        let mut row = BitSet::new(member_count);
        for atom in reached.ones() {
            let target = atoms.class_of(atom);
            if atom < class_count {
                for &m in &atoms.classes[target].members {
                    row.insert(m);
                }
            } else if target != class {
                // A region: its router (a class of one member).
                row.insert(atoms.classes[target].members[0]);
            }
        }
        add_row(&mut peers, class, &row);
        if let Some(key) = key {
            memo.insert(key, Arc::new(row));
        }
    }
    peers
}

/// One sweep per source atom over the rules its addresses match, in order,
/// tracking every destination at once: untouched destinations (no Deny seen
/// yet) are settled by an Allow with one bitset operation; only destinations
/// a port-specific Deny has touched keep a traffic set of their own.
struct Sweeper {
    atom_count: usize,
    reached: BitSet,
    untouched: BitSet,
    partial: BitSet,
    remaining: HashMap<usize, PortSet>,
    scratch: Vec<usize>,
}

impl Sweeper {
    fn new(atom_count: usize) -> Sweeper {
        Sweeper {
            atom_count,
            reached: BitSet::new(atom_count),
            untouched: BitSet::new(atom_count),
            partial: BitSet::new(atom_count),
            remaining: HashMap::new(),
            scratch: Vec::new(),
        }
    }

    /// The atoms some traffic from `source` is allowed to.
    fn sweep(&mut self, set: &PolicySet, index: &RuleIndex, source: usize) -> &BitSet {
        let Sweeper {
            atom_count,
            reached,
            untouched,
            partial,
            remaining,
            scratch,
        } = self;
        reached.clear();
        untouched.fill(*atom_count);
        partial.clear();
        remaining.clear();
        for r in index.atom_from_rules[source].ones() {
            let rule = &set.rules[r];
            if !rule.decides() {
                continue;
            }
            let targets = &index.to_atoms[r];
            if rule.action == Action::Allow {
                reached.union_with_both(targets, untouched);
                scratch.clear();
                scratch.extend(BitSet::both(targets, partial));
                for &a in scratch.iter() {
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
            scratch.extend(BitSet::both(targets, partial));
            for &a in scratch.iter() {
                if let Some(left) = remaining.get_mut(&a) {
                    *left = left.minus(&rule.ports);
                    if left.is_empty() {
                        partial.remove(a);
                    }
                }
            }
            scratch.clear();
            scratch.extend(BitSet::both(targets, untouched).filter(|&a| !reached.contains(a)));
            untouched.difference_with(targets);
            let left_over = PortSet::all().minus(&rule.ports);
            if !left_over.is_empty() {
                for &a in scratch.iter() {
                    partial.insert(a);
                    remaining.insert(a, left_over.clone());
                }
            }
        }
        reached
    }
}
