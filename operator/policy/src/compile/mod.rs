//! The policy compiler: a pure function from MeshPolicies, PolicyChains and
//! members (with Secrets reduced to digests) to one NodePolicy per member. The
//! operator, the `meshguard` CLI and the demo all call it, so what
//! `meshguard check` predicts is what nodes enforce.
//!
//! ```text
//!  MeshPolicies ─▶ PolicySet (ordered rules, interned selectors)
//!                      │
//!  members ─▶ atoms (classes of alike members, routed-subnet regions)
//!                      │
//!          RuleIndex (rule ⇄ atom) ─▶ peers per class (semantics 6)
//!                      └────────────▶ ingress/egress lists per class + address sets (7)
//!  PolicyChains + Secrets/ConfigMaps ─▶ compiled chains, per node by selector
//!                      ▼
//!  per member: interface + peers + class lists + chains ─▶ NodePolicySpec, revision
//! ```
//!
//! Work is done per class, not per member: members whose mesh IP matches the
//! same selectors get the same rule lists and the same peer classes, so a
//! mesh of thousands costs what its distinct roles cost. A [`Compiler`] also
//! remembers per-class results between compiles, so a policy change
//! recomputes only the classes that meet a changed rule (the `memo` module). Members are expanded
//! only when a NodePolicy is asked for ([`Compiled::node_policy`]).

mod atoms;
mod bitset;
mod chains;
mod filters;
mod memo;
mod node;
mod peers;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use meshguard_crds::{
    MeshPolicy, NodePolicySpec, PolicyChain,
    node_policy::{CompiledChain, Peer},
};

use self::{
    atoms::{Atoms, match_members},
    bitset::BitSet,
    chains::{References, ServedChain, compile_chains},
    filters::{ClassFilters, Direction, RuleRef, RuleSets, class_filters},
    memo::{ClassKey, Memo},
    node::{Sum256, interface, peer_digest, peer_entry, revision},
    peers::{RuleIndex, peer_classes},
};
use crate::{
    diagnostics::{Diagnostic, ObjectRef},
    members::Member,
    policy_set::PolicySet,
    secrets::{ConfigMapData, SecretDigests},
    selectors::Selector,
};

/// Everything the compiler reads. Objects must have passed validation.
pub struct Inputs<'a> {
    pub members: &'a [Member],
    pub policies: &'a [MeshPolicy],
    pub chains: &'a [PolicyChain],
    pub secrets: &'a [SecretDigests],
    pub config_maps: &'a [ConfigMapData],
    /// The WireGuard port every member listens on.
    pub listen_port: u16,
}

/// The compiled mesh. NodePolicies are expanded on demand.
pub struct Compiled {
    members: Vec<Member>,
    index_of: BTreeMap<String, usize>,
    policy_set: PolicySet,
    atoms: Atoms,
    class_peers: Vec<BitSet>,
    class_filters: Vec<Arc<ClassFilters>>,
    rule_sets: RuleSets,
    /// Per persistent policy number, where its rules start in the policy set.
    policy_starts: Vec<Option<usize>>,
    /// Policy name -> persistent number.
    policy_numbers: BTreeMap<String, u32>,
    audit_peers: bool,
    reused_classes: usize,
    /// Each member's entry in its peers' NodePolicies.
    peer_entries: Vec<Peer>,
    /// Per member, the prefixes it owns besides its mesh IP.
    routed: Vec<Vec<String>>,
    chains: Vec<ServedChain>,
    member_chains: Vec<Vec<usize>>,
    revisions: Vec<String>,
    listen_port: u16,
    diagnostics: Vec<Diagnostic>,
}

/// Compiles once, remembering nothing. See [`Compiler`] for repeated compiles.
pub fn compile(inputs: &Inputs) -> Compiled {
    Compiler::default().compile(inputs)
}

/// A compiler that remembers per-class results between compiles, so after a
/// policy change only the classes that meet a changed rule are recomputed
/// (see the `memo` module). The output is the same as [`compile`]'s for the same inputs.
#[derive(Default)]
pub struct Compiler {
    memo: Memo,
    audit_peers: bool,
}

impl Compiler {
    /// Also list, in each NodePolicy's `auditPeers`, every member that is
    /// not a peer: agents in agent-wide audit mode install those too.
    pub fn audit_peers(mut self, on: bool) -> Compiler {
        self.audit_peers = on;
        self
    }

    pub fn compile(&mut self, inputs: &Inputs) -> Compiled {
        let memo = &mut self.memo;
        let mut members = inputs.members.to_vec();
        members.sort_by(|a, b| a.name.cmp(&b.name));
        let index_of = members
            .iter()
            .enumerate()
            .map(|(i, m)| (m.name.clone(), i))
            .collect();
        let mut diagnostics = deduplicate_routes(&mut members);

        let (policy_set, policy_diagnostics) = PolicySet::build(inputs.policies);
        diagnostics.extend(policy_diagnostics);
        diagnostics.extend(unknown_names(inputs.policies, &index_of));

        let selector_ids: Vec<u32> = policy_set
            .selectors
            .iter()
            .map(|s| memo.selector_id(s))
            .collect();
        memo.begin(
            &members,
            inputs.listen_port,
            inputs.policies,
            &policy_set,
            &selector_ids,
        );
        let refs: Vec<RuleRef> = policy_set
            .rules
            .iter()
            .map(|r| RuleRef {
                policy: memo.policy_id(&policy_set.policies[r.policy].name),
                index: r.index as u32,
            })
            .collect();
        let mut policy_starts = vec![None; memo.policy_count()];
        for (r, rule_ref) in refs.iter().enumerate() {
            policy_starts[rule_ref.policy as usize].get_or_insert(r - rule_ref.index as usize);
        }
        let policy_numbers = policy_set
            .policies
            .iter()
            .map(|p| (p.name.clone(), memo.policy_id(&p.name)))
            .collect();

        let selector_members = match_members(&policy_set, &members, |s| {
            memo.selector_members.get(&selector_ids[s]).cloned()
        });
        for (s, matched) in selector_members.iter().enumerate() {
            memo.selector_members
                .entry(selector_ids[s])
                .or_insert_with(|| matched.clone());
        }
        let atoms = Atoms::build(&policy_set, &members, selector_members);
        // Classes that route a subnet depend on their regions: never reused.
        let keys: Vec<Option<ClassKey>> = atoms
            .classes
            .iter()
            .map(|c| {
                c.regions.is_empty().then(|| {
                    let mut key: Vec<u32> = c.signature.iter().map(|&s| selector_ids[s]).collect();
                    key.sort_unstable();
                    key.into()
                })
            })
            .collect();

        let index = RuleIndex::build(&policy_set, &atoms);
        let class_peers = peer_classes(&policy_set, &atoms, &index, &keys, &mut memo.reach);
        let mut rule_sets = RuleSets::build(&policy_set, &atoms, &members, &mut memo.side_sets);
        let mut reused_classes = 0;
        let class_filters: Vec<Arc<ClassFilters>> = (0..atoms.classes.len())
            .map(|c| {
                if let Some(found) = keys[c].as_ref().and_then(|k| memo.filters.get(k)) {
                    reused_classes += 1;
                    return found.clone();
                }
                let filters = Arc::new(class_filters(
                    &policy_set,
                    &atoms,
                    &index,
                    &members,
                    &mut rule_sets,
                    &refs,
                    c,
                ));
                if let Some(key) = &keys[c] {
                    memo.filters.insert(key.clone(), filters.clone());
                }
                filters
            })
            .collect();

        let references = References {
            secrets: inputs.secrets,
            config_maps: inputs.config_maps,
        };
        let (chains, chain_diagnostics) = compile_chains(inputs.chains, &references);
        diagnostics.extend(chain_diagnostics);
        let member_chains: Vec<Vec<usize>> = members
            .iter()
            .map(|m| {
                (0..chains.len())
                    .filter(|&c| {
                        chains[c]
                            .selector
                            .as_ref()
                            .is_none_or(|s| s.matches(&m.labels))
                    })
                    .collect()
            })
            .collect();

        let routed: Vec<Vec<String>> = (0..members.len())
            .map(|m| {
                let class = &atoms.classes[atoms.member_class[m]];
                let prefixes = class
                    .regions
                    .iter()
                    .map(|&r| atoms.regions[r].prefix)
                    .collect();
                crate::addresses::normalize(prefixes)
                    .iter()
                    .map(ToString::to_string)
                    .collect()
            })
            .collect();

        // Revisions: the peer part of each member from its class's peer classes.
        let peer_entries: Vec<Peer> = members.iter().map(peer_entry).collect();
        let peer_digests: Vec<Sum256> = peer_entries.iter().map(peer_digest).collect();
        let class_sums: Vec<Sum256> = atoms
            .classes
            .iter()
            .map(|class| {
                class
                    .members
                    .iter()
                    .fold(Sum256::default(), |sum, &m| sum.add(peer_digests[m]))
            })
            .collect();
        let peer_sums: Vec<Sum256> = class_peers
            .iter()
            .map(|peers| {
                peers
                    .ones()
                    .fold(Sum256::default(), |sum, c| sum.add(class_sums[c]))
            })
            .collect();
        let all_sum = peer_digests
            .iter()
            .fold(Sum256::default(), |sum, d| sum.add(*d));
        let revisions = members
            .iter()
            .enumerate()
            .map(|(m, member)| {
                let class = atoms.member_class[m];
                let mut peers = peer_sums[class];
                if class_peers[class].contains(class) {
                    peers = peers.sub(peer_digests[m]); // never its own peer
                }
                let chain_digests: Vec<[u8; 32]> =
                    member_chains[m].iter().map(|&c| chains[c].digest).collect();
                // Everyone but its peers and itself.
                let audit = self
                    .audit_peers
                    .then(|| all_sum.sub(peers).sub(peer_digests[m]));
                revision(
                    &interface(member, inputs.listen_port, &routed[m]),
                    peers,
                    audit,
                    &class_filters[class].digest,
                    &chain_digests,
                )
            })
            .collect();

        diagnostics.sort();
        diagnostics.dedup();
        Compiled {
            members,
            index_of,
            policy_set,
            atoms,
            class_peers,
            class_filters,
            rule_sets,
            policy_starts,
            policy_numbers,
            audit_peers: self.audit_peers,
            reused_classes,
            peer_entries,
            routed,
            chains,
            member_chains,
            revisions,
            listen_port: inputs.listen_port,
            diagnostics,
        }
    }
}

/// WireGuard gives a prefix listed for two peers to whichever was configured
/// last, so a prefix is routed to one member only: the first by name. (A more
/// specific prefix inside another member's is fine: the longest match wins.)
fn deduplicate_routes(members: &mut [Member]) -> Vec<Diagnostic> {
    let mut claimed: BTreeMap<crate::addresses::Prefix, String> = members
        .iter()
        .map(|m| (crate::addresses::Prefix::host(m.mesh_ip), m.name.clone()))
        .collect();
    let mut out = Vec::new();
    for member in members.iter_mut() {
        let object = ObjectRef::new("MeshNode", None, &member.name);
        let mut kept = Vec::new();
        for (i, prefix) in member.allowed_ips.iter().enumerate() {
            match claimed.get(prefix) {
                Some(owner) if *owner != member.name => out.push(Diagnostic::warning(
                    object.clone(),
                    Some(format!("spec.allowedIPs[{i}]")),
                    format!("{prefix} is already routed to {owner}; it is left out here"),
                )),
                _ => {
                    claimed.insert(*prefix, member.name.clone());
                    kept.push(*prefix);
                }
            }
        }
        member.allowed_ips = kept;
    }
    out
}

/// Names in `nodes:` that no member has: they match nothing (semantics 9).
fn unknown_names(policies: &[MeshPolicy], known: &BTreeMap<String, usize>) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for policy in policies {
        let object = ObjectRef::new(
            "MeshPolicy",
            None,
            policy.metadata.name.as_deref().unwrap_or_default(),
        );
        for (r, rule) in policy.spec.rules.iter().enumerate() {
            for (side, selectors) in [("from", &rule.from), ("to", &rule.to)] {
                for (s, selector) in selectors.iter().enumerate() {
                    for name in selector
                        .nodes
                        .iter()
                        .flatten()
                        .filter(|n| !known.contains_key(*n))
                    {
                        out.push(Diagnostic::warning(
                            object.clone(),
                            Some(format!("spec.rules[{r}].{side}[{s}].nodes")),
                            format!("no member is named {name:?}; it matches nothing"),
                        ));
                    }
                }
            }
        }
    }
    out
}

impl Compiled {
    /// Members in name order.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    pub fn member(&self, name: &str) -> Option<&Member> {
        self.index_of.get(name).map(|&i| &self.members[i])
    }

    pub fn policy_set(&self) -> &PolicySet {
        &self.policy_set
    }

    /// Whether selector `selector` of [`Compiled::policy_set`] matches the
    /// member at `member` in [`Compiled::members`]: the compiler's own
    /// answer, kept (a bit test, where matching again compares labels and
    /// names).
    pub fn selector_matches(&self, selector: usize, member: usize) -> bool {
        self.atoms.selector_members[selector].contains(member)
    }

    /// Warnings and errors about the inputs, sorted.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }

    pub fn revision(&self, name: &str) -> Option<&str> {
        self.index_of.get(name).map(|&i| self.revisions[i].as_str())
    }

    /// Names of a member's peers, in name order.
    pub fn peers_of(&self, name: &str) -> Vec<&str> {
        let Some(&m) = self.index_of.get(name) else {
            return Vec::new();
        };
        let peers = &self.class_peers[self.atoms.member_class[m]];
        self.members
            .iter()
            .enumerate()
            .filter(|&(other, _)| other != m && peers.contains(self.atoms.member_class[other]))
            .map(|(_, member)| member.name.as_str())
            .collect()
    }

    pub fn are_peers(&self, a: &str, b: &str) -> bool {
        match (self.index_of.get(a), self.index_of.get(b)) {
            (Some(&x), Some(&y)) if x != y => {
                self.class_peers[self.atoms.member_class[x]].contains(self.atoms.member_class[y])
            }
            _ => false,
        }
    }

    /// Members at least one rule of the policy applies to (in their ingress or egress).
    pub fn targeted(&self, policy: &str) -> BTreeSet<&str> {
        let Some(&p) = self.policy_numbers.get(policy) else {
            return BTreeSet::new();
        };
        self.members
            .iter()
            .enumerate()
            .filter(|&(m, _)| {
                self.class_filters[self.atoms.member_class[m]]
                    .policies
                    .contains(&p)
            })
            .map(|(_, member)| member.name.as_str())
            .collect()
    }

    /// Members whose NodePolicy carries the chain `<namespace>/<name>`.
    /// Every compiled chain, by name (whatever nodes it goes to).
    pub fn chains(&self) -> impl Iterator<Item = &CompiledChain> {
        self.chains.iter().map(|c| &c.chain)
    }

    pub fn chain_members(&self, qualified: &str) -> Vec<&str> {
        let Some(c) = self.chains.iter().position(|c| c.chain.name == qualified) else {
            return Vec::new();
        };
        self.members
            .iter()
            .zip(&self.member_chains)
            .filter(|(_, chains)| chains.contains(&c))
            .map(|(member, _)| member.name.as_str())
            .collect()
    }

    /// The member's NodePolicy spec, built now.
    pub fn node_policy(&self, name: &str) -> Option<NodePolicySpec> {
        let &m = self.index_of.get(name)?;
        let member = &self.members[m];
        let class = self.atoms.member_class[m];
        let filters = &self.class_filters[class];
        let peer_classes = &self.class_peers[class];
        let peers: Vec<Peer> = (0..self.members.len())
            .filter(|&other| other != m && peer_classes.contains(self.atoms.member_class[other]))
            .map(|other| self.peer_entries[other].clone())
            .collect();
        let audit_peers: Vec<Peer> = if self.audit_peers {
            (0..self.members.len())
                .filter(|&other| {
                    other != m && !peer_classes.contains(self.atoms.member_class[other])
                })
                .map(|other| self.peer_entries[other].clone())
                .collect()
        } else {
            Vec::new()
        };
        Some(NodePolicySpec {
            revision: self.revisions[m].clone(),
            interface: interface(member, self.listen_port, &self.routed[m]),
            peers,
            audit_peers,
            address_sets: filters.sets.iter().map(|s| s.set.clone()).collect(),
            ingress: filters.rules(&self.policy_set, &self.rule_sets, Direction::Ingress, |r| {
                self.position(r)
            }),
            egress: filters.rules(&self.policy_set, &self.rule_sets, Direction::Egress, |r| {
                self.position(r)
            }),
            chains: self.member_chains[m]
                .iter()
                .map(|&c| self.chains[c].chain.clone())
                .collect(),
        })
    }

    /// How many classes the members fell into (for benchmarks and logs).
    pub fn class_count(&self) -> usize {
        self.atoms.classes.len()
    }

    /// How many classes' rule lists came from the previous compile.
    pub fn reused_classes(&self) -> usize {
        self.reused_classes
    }

    /// A selector of the policy set.
    pub fn selector(&self, id: usize) -> &Selector {
        &self.policy_set.selectors[id]
    }

    fn position(&self, rule: RuleRef) -> Option<usize> {
        self.policy_starts
            .get(rule.policy as usize)
            .copied()
            .flatten()
            .map(|start| start + rule.index as usize)
    }
}
