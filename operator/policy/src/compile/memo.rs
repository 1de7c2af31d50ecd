//! What a [`super::Compiler`] remembers between compiles, and when it forgets.
//!
//! While the members (and listen port) stay the same, a selector matches the
//! same members and a rule side the same addresses, so those are kept by
//! content. Per-class results (reach rows, rule lists) are kept by the class's
//! *key*, the persistent numbers of the selectors its members match: a class
//! whose key holds no selector of a changed policy meets no changed rule, on
//! either side, so its results are unchanged. When a policy changes, every
//! result whose key holds one of its selectors (before or after) is dropped.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use meshguard_crds::MeshPolicy;
use sha2::{Digest, Sha256};

use super::{
    bitset::BitSet,
    filters::{ClassFilters, SideMemo, to_json},
    peers::ReachMemo,
};
use crate::{members::Member, policy_set::PolicySet, selectors::Selector};

/// A class's key: the persistent numbers of its selectors, sorted.
pub type ClassKey = Arc<[u32]>;

#[derive(Default)]
pub struct Memo {
    members_key: Option<[u8; 32]>,
    selector_ids: HashMap<Selector, u32>,
    policy_ids: HashMap<String, u32>,
    /// Per policy name: its content digest and the selectors it used.
    policies: HashMap<String, ([u8; 32], Vec<u32>)>,
    pub selector_members: HashMap<u32, Arc<BitSet>>,
    pub side_sets: SideMemo,
    pub reach: ReachMemo,
    pub filters: HashMap<ClassKey, Arc<ClassFilters>>,
}

impl Memo {
    pub fn selector_id(&mut self, selector: &Selector) -> u32 {
        let next = self.selector_ids.len() as u32;
        *self.selector_ids.entry(selector.clone()).or_insert(next)
    }

    pub fn policy_id(&mut self, name: &str) -> u32 {
        let next = self.policy_ids.len() as u32;
        *self.policy_ids.entry(name.to_owned()).or_insert(next)
    }

    pub fn policy_count(&self) -> usize {
        self.policy_ids.len()
    }

    /// Starts a compile: forgets what the inputs invalidate. `selectors[s]`
    /// is the persistent number of the set's selector `s`.
    pub fn begin(
        &mut self,
        members: &[Member],
        listen_port: u16,
        policies: &[MeshPolicy],
        set: &PolicySet,
        selectors: &[u32],
    ) {
        let key = members_key(members, listen_port);
        if self.members_key != Some(key) {
            self.members_key = Some(key);
            self.selector_members.clear();
            self.side_sets.clear();
            self.reach.clear();
            self.filters.clear();
            self.policies.clear();
        }

        // The selectors each policy uses now.
        let mut used: HashMap<&str, Vec<u32>> = HashMap::new();
        for rule in &set.rules {
            let name = set.policies[rule.policy].name.as_str();
            let ids = used.entry(name).or_default();
            ids.extend(
                rule.from
                    .selectors
                    .iter()
                    .chain(&rule.to.selectors)
                    .map(|&s| selectors[s]),
            );
        }
        let mut changed: HashSet<u32> = HashSet::new();
        let mut seen = HashSet::new();
        for policy in policies {
            let name = policy.metadata.name.clone().unwrap_or_default();
            let digest: [u8; 32] = Sha256::new()
                .chain_update(name.as_bytes())
                .chain_update(to_json(&policy.spec))
                .finalize()
                .into();
            let now = used.remove(name.as_str()).unwrap_or_default();
            match self.policies.get(&name) {
                Some((before, _)) if *before == digest => {}
                Some((_, old)) => {
                    changed.extend(old.iter().copied());
                    changed.extend(now.iter().copied());
                }
                None => changed.extend(now.iter().copied()),
            }
            self.policies.insert(name.clone(), (digest, now));
            seen.insert(name);
        }
        // Policies that are gone.
        let gone: Vec<String> = self
            .policies
            .keys()
            .filter(|n| !seen.contains(*n))
            .cloned()
            .collect();
        for name in gone {
            if let Some((_, old)) = self.policies.remove(&name) {
                changed.extend(old);
            }
        }
        if !changed.is_empty() {
            self.reach
                .retain(|k, _| !k.iter().any(|s| changed.contains(s)));
            self.filters
                .retain(|k, _| !k.iter().any(|s| changed.contains(s)));
        }
    }
}

/// A digest of everything about the members the memo depends on.
fn members_key(members: &[Member], listen_port: u16) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(listen_port.to_le_bytes());
    for m in members {
        hasher.update(m.name.as_bytes());
        hasher.update([0]);
        hasher.update(m.mesh_ip.to_string().as_bytes());
        hasher.update([0]);
        for (k, v) in &m.labels {
            hasher.update(k.as_bytes());
            hasher.update([1]);
            hasher.update(v.as_bytes());
            hasher.update([2]);
        }
        for p in &m.allowed_ips {
            hasher.update(p.to_string().as_bytes());
            hasher.update([3]);
        }
        hasher.update(m.public_key.as_bytes());
        hasher.update(m.endpoint.as_deref().unwrap_or_default().as_bytes());
        hasher.update([4]);
    }
    hasher.finalize().into()
}
