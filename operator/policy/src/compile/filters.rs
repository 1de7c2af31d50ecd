//! Per-class ingress and egress rule lists (semantics 7) and the address sets
//! they refer to.
//!
//! A class's ingress list holds, in evaluation order, every rule whose `to`
//! can match one of its addresses; each entry names the address set of the
//! rule's `from`. The agent walks the list for each packet as the global
//! evaluation would, since the rules it leaves out cannot match the packet's
//! destination. Egress is the mirror image.
//!
//! Address sets are named after the selectors that define them, not after
//! their content: when members come and go, a set's content changes but its
//! name, and every rule that refers to it, stays.
//!
//! Lists hold rules by policy and position ([`RuleRef`]) and become
//! `FilterRule`s only when a NodePolicy is expanded; every rule entry and set
//! is digested once per compile, and a class's digest is built from those.

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
};

use meshguard_crds::node_policy::{ALL_ADDRESSES, AddressSet, FilterRule};
use sha2::{Digest, Sha256};

use super::{atoms::Atoms, bitset::BitSet, peers::RuleIndex};
use crate::{
    addresses::{self, Prefix},
    members::Member,
    policy_set::{PolicySet, Side},
    selectors::Selector,
};

/// An address set with the digest of its serialized form.
#[derive(Debug)]
pub struct NamedSet {
    pub set: AddressSet,
    pub digest: [u8; 32],
}

impl NamedSet {
    fn new(set: AddressSet) -> Arc<NamedSet> {
        let digest = Sha256::digest(to_json(&set)).into();
        Arc::new(NamedSet { set, digest })
    }
}

/// The addresses one rule side matches.
#[derive(Clone, Debug)]
pub enum SideSet {
    All,
    /// Matches nothing (unknown names, say): its rules are left out.
    Empty,
    Named(Arc<NamedSet>),
}

impl SideSet {
    fn name(&self) -> Option<&str> {
        match self {
            SideSet::All => Some(ALL_ADDRESSES),
            SideSet::Empty => None,
            SideSet::Named(named) => Some(&named.set.name),
        }
    }
}

/// Side sets remembered between compiles while the members stay the same,
/// by side key (equal selectors, equal addresses).
pub type SideMemo = HashMap<String, SideSet>;

/// A rule by its policy and position there: it stays the same when other
/// policies move in the evaluation order. `policy` is the compiler's
/// persistent number for the policy's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RuleRef {
    pub policy: u32,
    pub index: u32,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Ingress,
    Egress,
}

/// Every rule's two sides as address sets, and each rule's list entry digested.
pub struct RuleSets {
    from: Vec<SideSet>,
    to: Vec<SideSet>,
    /// Per rule, by direction (ingress, egress), the number of its remote set in `named`.
    remote_ids: Vec<[Option<u32>; 2]>,
    /// Per rule, the digest of its ingress and egress entry without `local`.
    entry_digests: Vec<[[u8; 32]; 2]>,
    /// The named sets the rules use, numbered for this compile.
    named: Vec<Arc<NamedSet>>,
    /// Set name -> the key it was made for, to detect a hash collision.
    names: HashMap<String, String>,
}

impl RuleSets {
    pub fn build(
        set: &PolicySet,
        atoms: &Atoms,
        members: &[Member],
        memo: &mut SideMemo,
    ) -> RuleSets {
        let mut names = HashMap::new();
        let mut side = |s: &Side| -> SideSet {
            if let Some(found) = memo.get(&s.key) {
                if let SideSet::Named(named) = found {
                    names.insert(named.set.name.clone(), s.key.clone());
                }
                return found.clone();
            }
            let result = side_set(set, atoms, members, s, &mut names);
            memo.insert(s.key.clone(), result.clone());
            result
        };
        let from: Vec<SideSet> = set.rules.iter().map(|r| side(&r.from)).collect();
        let to: Vec<SideSet> = set.rules.iter().map(|r| side(&r.to)).collect();

        let mut named: Vec<Arc<NamedSet>> = Vec::new();
        let mut ids: HashMap<*const NamedSet, u32> = HashMap::new();
        let mut id_of = |side: &SideSet| match side {
            SideSet::Named(set) => Some(*ids.entry(Arc::as_ptr(set)).or_insert_with(|| {
                named.push(set.clone());
                // At most two sets per rule: far below u32::MAX.
                (named.len() - 1) as u32
            })),
            _ => None,
        };
        let remote_ids = from
            .iter()
            .zip(&to)
            .map(|(f, t)| [id_of(f), id_of(t)])
            .collect();
        let mut sets = RuleSets {
            from,
            to,
            remote_ids,
            entry_digests: Vec::new(),
            named,
            names,
        };
        sets.entry_digests = (0..set.rules.len())
            .map(|r| {
                let digest = |direction| {
                    sets.entry(set, r, direction, None)
                        .map(|e| Sha256::digest(to_json(&e)).into())
                        .unwrap_or_default()
                };
                [digest(Direction::Ingress), digest(Direction::Egress)]
            })
            .collect();
        sets
    }

    /// The remote side of a rule in a list: `from` for ingress, `to` for egress.
    fn remote(&self, rule: usize, direction: Direction) -> &SideSet {
        match direction {
            Direction::Ingress => &self.from[rule],
            Direction::Egress => &self.to[rule],
        }
    }

    /// The list entry for a rule; `None` when its remote side matches nothing.
    pub fn entry(
        &self,
        set: &PolicySet,
        rule: usize,
        direction: Direction,
        local: Option<&NamedSet>,
    ) -> Option<FilterRule> {
        let r = &set.rules[rule];
        Some(FilterRule {
            id: set.rule_id(rule),
            action: r.action,
            audit: r.audit,
            set: self.remote(rule, direction).name()?.to_owned(),
            local: local.map(|l| l.set.name.clone()),
            ports: r.port_ranges.clone(),
        })
    }
}

/// `<prefix>-<12 hex digits of the key's SHA-256>`, longer on the rare collision.
fn unique_name(names: &mut HashMap<String, String>, prefix: &str, key: &str) -> String {
    let digest = hex(&Sha256::digest(key.as_bytes()));
    for len in [12, 24] {
        let name = format!("{prefix}-{}", &digest[..len]);
        match names.get(&name) {
            Some(owner) if owner != key => continue,
            _ => {
                names.insert(name.clone(), key.to_owned());
                return name;
            }
        }
    }
    format!("{prefix}-{digest}")
}

fn side_set(
    set: &PolicySet,
    atoms: &Atoms,
    members: &[Member],
    side: &Side,
    names: &mut HashMap<String, String>,
) -> SideSet {
    if side
        .selectors
        .iter()
        .any(|&s| set.selectors[s] == Selector::All)
    {
        return SideSet::All;
    }
    let mut prefixes = Vec::new();
    for &s in &side.selectors {
        match &set.selectors[s] {
            Selector::Cidrs(blocks) => {
                for block in blocks {
                    prefixes.extend(addresses::subtract(block.cidr, &block.except));
                }
            }
            _ => prefixes.extend(
                atoms.selector_members[s]
                    .ones()
                    .map(|m| Prefix::host(members[m].mesh_ip)),
            ),
        }
    }
    let prefixes = addresses::normalize(prefixes);
    if prefixes.is_empty() {
        return SideSet::Empty;
    }
    let name = unique_name(names, "s", &side.key);
    SideSet::Named(NamedSet::new(address_set(name, &prefixes)))
}

/// One entry of a class's list: a rule, and for a member that routes a subnet
/// the local addresses it covers when that is not all of them.
pub struct Entry {
    pub rule: RuleRef,
    pub local: Option<Arc<NamedSet>>,
}

/// What one class's members enforce.
pub struct ClassFilters {
    pub ingress: Vec<Entry>,
    pub egress: Vec<Entry>,
    /// Every set the lists refer to, by name.
    pub sets: Vec<Arc<NamedSet>>,
    /// Policies (persistent numbers) with at least one rule in the lists.
    pub policies: BTreeSet<u32>,
    /// SHA-256 over the entries' and sets' digests: part of each member's revision.
    pub digest: [u8; 32],
}

impl ClassFilters {
    /// The entries as the NodePolicy carries them. `position` finds a rule's
    /// place in this compile's policy set.
    pub fn rules(
        &self,
        set: &PolicySet,
        sets: &RuleSets,
        direction: Direction,
        position: impl Fn(RuleRef) -> Option<usize>,
    ) -> Vec<FilterRule> {
        let entries = match direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        };
        entries
            .iter()
            .filter_map(|e| sets.entry(set, position(e.rule)?, direction, e.local.as_deref()))
            .collect()
    }
}

/// Computes one class's lists. `refs[r]` is global rule `r` as a [`RuleRef`].
pub fn class_filters(
    set: &PolicySet,
    atoms: &Atoms,
    index: &RuleIndex,
    members: &[Member],
    sets: &mut RuleSets,
    refs: &[RuleRef],
    class: usize,
) -> ClassFilters {
    let owned: Vec<usize> = atoms.owned(class).collect();
    let mut referenced = BitSet::new(sets.named.len());
    let mut locals: Vec<Arc<NamedSet>> = Vec::new();
    let mut policies = BTreeSet::new();
    let mut hasher = Sha256::new();
    let mut lists = [Vec::new(), Vec::new()];
    for (slot, direction) in [(0, Direction::Ingress), (1, Direction::Egress)] {
        let (local_rules, local_atoms) = match direction {
            Direction::Ingress => (&index.atom_to_rules, &index.to_atoms),
            Direction::Egress => (&index.atom_from_rules, &index.from_atoms),
        };
        let mut candidates = BitSet::new(set.rules.len());
        for &a in &owned {
            candidates.union_with(&local_rules[a]);
        }
        for r in candidates.ones() {
            if matches!(sets.remote(r, direction), SideSet::Empty) {
                continue;
            }
            if let Some(id) = sets.remote_ids[r][slot] {
                referenced.insert(id as usize);
            }
            let local = local_set(
                atoms,
                members,
                &mut sets.names,
                class,
                &owned,
                &local_atoms[r],
            );
            match &local {
                Some(l) => {
                    locals.push(l.clone());
                    let entry = sets.entry(set, r, direction, Some(l));
                    hasher.update(Sha256::digest(to_json(&entry)));
                }
                None => hasher.update(sets.entry_digests[r][slot]),
            }
            policies.insert(refs[r].policy);
            lists[slot].push(Entry {
                rule: refs[r],
                local,
            });
        }
        hasher.update(b"|");
    }
    let mut referenced: Vec<Arc<NamedSet>> = referenced
        .ones()
        .map(|id| sets.named[id].clone())
        .chain(locals)
        .collect();
    referenced.sort_by(|a, b| a.set.name.cmp(&b.set.name));
    referenced.dedup_by(|a, b| a.set.name == b.set.name);
    for named in &referenced {
        hasher.update(named.digest);
    }
    let [ingress, egress] = lists;
    ClassFilters {
        ingress,
        egress,
        sets: referenced,
        policies,
        digest: hasher.finalize().into(),
    }
}

/// For a member that routes a subnet, the local addresses a rule's local side
/// covers, when that is not all of them.
fn local_set(
    atoms: &Atoms,
    members: &[Member],
    names: &mut HashMap<String, String>,
    class: usize,
    owned: &[usize],
    matched: &BitSet,
) -> Option<Arc<NamedSet>> {
    if owned.iter().all(|&a| matched.contains(a)) {
        return None;
    }
    let prefixes: Vec<Prefix> = owned
        .iter()
        .filter(|&&a| matched.contains(a))
        .map(|&a| match a.checked_sub(atoms.classes.len()) {
            Some(region) => atoms.regions[region].prefix,
            // A class with regions has exactly one member.
            None => Prefix::host(members[atoms.classes[class].members[0]].mesh_ip),
        })
        .collect();
    let prefixes = addresses::normalize(prefixes);
    let key: Vec<String> = prefixes.iter().map(Prefix::to_string).collect();
    let name = unique_name(names, "l", &key.join(","));
    Some(NamedSet::new(address_set(name, &prefixes)))
}

/// Single addresses apart, without a prefix length; networks as CIDRs.
fn address_set(name: String, prefixes: &[Prefix]) -> AddressSet {
    let (hosts, networks): (Vec<&Prefix>, Vec<&Prefix>) =
        prefixes.iter().partition(|p| p.is_host());
    AddressSet {
        name,
        addresses: hosts.iter().map(|p| p.network().to_string()).collect(),
        cidrs: networks.iter().map(|p| p.to_string()).collect(),
    }
}

/// Serializing these types cannot fail: no maps with non-string keys, no
/// failing `Serialize` impls.
#[allow(clippy::expect_used)]
pub fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("NodePolicy parts serialize")
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
