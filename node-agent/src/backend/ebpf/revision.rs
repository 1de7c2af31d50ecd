//! What one generation of the maps holds for a NodePolicy, with the
//! numbers of [`ids`](super::ids), and what changes from one generation's
//! content to another's. Pure: the backend writes exactly the [`Delta`].
//!
//! ```text
//!  Desired ─table()─▶ Table ─Contents::of(ids)─▶ Contents ─delta(held)─▶ Delta ─▶ maps
//! ```
//!
//! A counter slot is the list of rule ids a packet of one verdict entry
//! counts for, in order: the Log and Audit-mode rules it passes, then the
//! rule that decides (or `meshguard:default-deny`). Packets are counted
//! once per slot by the programs; the backend adds each slot's count to
//! every rule in it, so a packet counts for each rule it reaches, as
//! iptables counts it.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;

use meshguard_crds::{Action, Protocol};

use super::{
    classes::Classes,
    ids::{Exhausted, Interner},
    keys::{
        FIRST_VERDICT_SLOT, Side, VerdictFor, port_prefixes, protocol_numbers, slot_of_value,
        verdict_value,
    },
    verdicts::{Table, Verdict},
};
use crate::desired::{Desired, verdict::Direction};

/// The id counters report for packets nothing decides.
pub const DEFAULT_DENY: &str = "meshguard:default-deny";
/// The id counters report for packets to or from an address the node does
/// not own.
pub const NOT_OURS: &str = "meshguard:not-ours";

/// What one generation may hold of each map: half its size, since a
/// revision is written beside the live one.
pub const CLASS_ENTRIES: usize = 65_536;
pub const LOCAL_ENTRIES: usize = 4_096;
pub const VERDICT_ENTRIES: usize = 524_288;
/// Counter slots (the `counters` map's size).
pub const SLOTS: u32 = 65_536;

/// The rules one counter slot counts for, and what each logs when a packet
/// reaches it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot {
    pub direction: Direction,
    pub rules: Vec<String>,
    /// One per rule of `rules`.
    pub marks: Vec<Mark>,
}

impl Slot {
    /// Whether a packet counted here is logged under enforcement.
    pub fn logs(&self) -> bool {
        self.marks.iter().any(|m| *m != Mark::Counted)
    }
}

/// What a rule logs, as the iptables backend's NFLOG prefixes say it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mark {
    /// Counted, not logged (the deciding rule under enforcement).
    Counted,
    /// A Log rule: `log`.
    Log,
    /// A rule of an Audit-mode policy: `would-allow` / `would-deny`.
    WouldAllow,
    WouldDeny,
}

/// The numbers that outlive a revision.
#[derive(Clone, Debug)]
pub struct Ids {
    /// Class numbers by the names of the sets their addresses are in.
    pub remote: Interner<BTreeSet<String>>,
    pub local: Interner<BTreeSet<String>>,
    pub slots: Interner<Slot>,
}

impl Default for Ids {
    fn default() -> Ids {
        Ids {
            remote: Interner::new("remote address classes", 0, u32::MAX),
            local: Interner::new("local address classes", 0, u32::MAX),
            slots: Interner::new("counter slots", FIRST_VERDICT_SLOT, SLOTS),
        }
    }
}

/// Why a NodePolicy cannot be written to the programs' maps.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ContentsError {
    #[error(transparent)]
    Ids(#[from] Exhausted),
    #[error("{what}: {count} entries, the eBPF maps hold {limit} per revision")]
    Entries {
        what: &'static str,
        count: usize,
        limit: usize,
    },
    /// A verdict table naming a class it does not define (a bug, refused).
    #[error("the verdict table names class {0}, which it does not define")]
    Inconsistent(u32),
}

/// Per (direction, remote class, local class, protocol with ports): its
/// port runs (inclusive) and the verdict value of each.
type PortRuns = BTreeMap<(Direction, u32, u32, Protocol), Vec<((u16, u16), u32)>>;

/// One generation's entries, without the generation byte.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Contents {
    pub classes: BTreeMap<(Side, IpNet), u32>,
    /// Values as [`verdict_value`] makes them.
    pub verdicts: BTreeMap<VerdictFor, u32>,
}

impl Contents {
    /// `table` (of `desired`) with lasting numbers from `ids`.
    pub fn of(desired: &Desired, table: &Table, ids: &mut Ids) -> Result<Contents, ContentsError> {
        let names = |members: &BTreeSet<usize>| -> BTreeSet<String> {
            members
                .iter()
                .filter_map(|&s| desired.sets.get(s).map(|set| set.name.clone()))
                .collect()
        };
        let mut contents = Contents::default();
        let numbers = |classes: &Classes, interner: &mut Interner<BTreeSet<String>>| {
            classes
                .members_of
                .iter()
                .map(|members| interner.id(&names(members)))
                .collect::<Result<Vec<u32>, Exhausted>>()
        };
        let remote = numbers(&table.remote, &mut ids.remote)?;
        let local = numbers(&table.local, &mut ids.local)?;
        // The table's positional class numbers, as lasting ones. The table
        // gives every class a `members_of` entry, so a miss is a broken
        // table: refused, never written under a made-up number.
        let number = |numbers: &[u32], class: u32| {
            numbers
                .get(class as usize)
                .copied()
                .ok_or(ContentsError::Inconsistent(class))
        };
        for (side, classes, numbers) in [
            (Side::Remote, &table.remote, &remote),
            (Side::Local, &table.local, &local),
        ] {
            for &(net, class) in &classes.entries {
                contents
                    .classes
                    .insert((side, net), number(numbers, class)?);
            }
        }
        // The port runs of each protocol a rule names, by what they answer.
        let mut runs: PortRuns = BTreeMap::new();
        for entry in &table.entries {
            let slot = slot_of(desired, entry.direction, &entry.verdict);
            let logs = slot.logs();
            let value = verdict_value(ids.slots.id(&slot)?, logs, entry.verdict.allow);
            let (remote, local) = (number(&remote, entry.remote)?, number(&local, entry.local)?);
            match (entry.protocol, entry.ports) {
                (Some(protocol), Some(ports)) => runs
                    .entry((entry.direction, remote, local, protocol))
                    .or_default()
                    .push((ports, value)),
                (protocol, _) => {
                    let numbers: Vec<Option<u8>> = match protocol {
                        None => vec![None],
                        Some(p) => protocol_numbers(p).iter().map(|&n| Some(n)).collect(),
                    };
                    for protocol in numbers {
                        let key = VerdictFor {
                            direction: entry.direction,
                            remote,
                            local,
                            protocol,
                            port: None,
                        };
                        contents.verdicts.insert(key, value);
                    }
                }
            }
        }
        // The answer covering the most ports becomes the protocol's
        // all-ports entry; only the runs answering otherwise are written,
        // as port prefixes, which the longest match prefers. (Every port
        // written would be 25,253 entries for the benchmark's 2,000 rules
        // instead of 4,418.)
        for ((direction, remote, local, protocol), list) in runs {
            let mut covered: BTreeMap<u32, u32> = BTreeMap::new();
            for &((first, last), value) in &list {
                *covered.entry(value).or_default() += u32::from(last - first) + 1;
            }
            let Some(base) = covered
                .iter()
                .max_by_key(|&(&value, &ports)| (ports, std::cmp::Reverse(value)))
                .map(|(&value, _)| value)
            else {
                continue; // no runs: nothing was pushed for this key
            };
            for &n in protocol_numbers(protocol) {
                let key = |port| VerdictFor {
                    direction,
                    remote,
                    local,
                    protocol: Some(n),
                    port,
                };
                contents.verdicts.insert(key(None), base);
                for &((first, last), value) in list.iter().filter(|(_, v)| *v != base) {
                    for prefix in port_prefixes(first, last) {
                        contents.verdicts.insert(key(Some(prefix)), value);
                    }
                }
            }
        }
        contents.check()?;
        Ok(contents)
    }

    fn check(&self) -> Result<(), ContentsError> {
        let count = |side| self.classes.keys().filter(|(s, _)| *s == side).count();
        for (what, count, limit) in [
            ("remote address classes", count(Side::Remote), CLASS_ENTRIES),
            ("local address classes", count(Side::Local), LOCAL_ENTRIES),
            ("verdict entries", self.verdicts.len(), VERDICT_ENTRIES),
        ] {
            if count > limit {
                return Err(ContentsError::Entries { what, count, limit });
            }
        }
        Ok(())
    }

    /// The counter slots this content's verdicts count in, sorted.
    pub fn slots(&self) -> Vec<u32> {
        sorted(self.verdicts.values().map(|&v| slot_of_value(v)))
    }

    /// The class numbers of one side in use, sorted.
    pub fn class_ids(&self, side: Side) -> Vec<u32> {
        sorted(
            self.classes
                .iter()
                .filter(|((s, _), _)| *s == side)
                .map(|(_, &id)| id),
        )
    }
}

fn sorted(values: impl Iterator<Item = u32>) -> Vec<u32> {
    let mut out: Vec<u32> = values.collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The counter slot of a verdict in one direction: the ids of the rules it
/// counts for.
fn slot_of(desired: &Desired, direction: Direction, verdict: &Verdict) -> Slot {
    let list = match direction {
        Direction::Ingress => &desired.ingress,
        Direction::Egress => &desired.egress,
    };
    let (mut rules, mut marks) = (Vec::new(), Vec::new());
    for rule in verdict.counted.iter().filter_map(|&i| list.get(i)) {
        rules.push(rule.id.clone());
        // Only Log rules and Audit-mode rules are counted before a decision.
        marks.push(match rule.action {
            Action::Log => Mark::Log,
            Action::Allow => Mark::WouldAllow,
            Action::Deny => Mark::WouldDeny,
        });
    }
    rules.push(
        verdict
            .rule
            .and_then(|i| list.get(i))
            .map_or_else(|| DEFAULT_DENY.to_owned(), |r| r.id.clone()),
    );
    marks.push(Mark::Counted);
    Slot {
        direction,
        rules,
        marks,
    }
}

/// The writes that turn one generation's content into another's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delta {
    pub classes_removed: Vec<(Side, IpNet)>,
    pub classes_set: Vec<((Side, IpNet), u32)>,
    pub verdicts_removed: Vec<VerdictFor>,
    pub verdicts_set: Vec<(VerdictFor, u32)>,
}

impl Delta {
    /// Map entries written or removed.
    pub fn len(&self) -> usize {
        self.classes_removed.len()
            + self.classes_set.len()
            + self.verdicts_removed.len()
            + self.verdicts_set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What turns `held` into `wanted`: entries that went or changed, and no
/// others.
pub fn delta(held: &Contents, wanted: &Contents) -> Delta {
    // Both maps are sorted by key: one merge walk, no lookups.
    fn changes<K: Ord + Copy>(
        held: &BTreeMap<K, u32>,
        wanted: &BTreeMap<K, u32>,
    ) -> (Vec<K>, Vec<(K, u32)>) {
        let (mut removed, mut set) = (Vec::new(), Vec::new());
        let (mut old, mut new) = (held.iter().peekable(), wanted.iter().peekable());
        loop {
            match (old.peek(), new.peek()) {
                (None, None) => break,
                (Some(&(&k, _)), None) => {
                    removed.push(k);
                    old.next();
                }
                (None, Some(&(&k, &v))) => {
                    set.push((k, v));
                    new.next();
                }
                (Some(&(&ko, &vo)), Some(&(&kn, &vn))) => match ko.cmp(&kn) {
                    std::cmp::Ordering::Less => {
                        removed.push(ko);
                        old.next();
                    }
                    std::cmp::Ordering::Greater => {
                        set.push((kn, vn));
                        new.next();
                    }
                    std::cmp::Ordering::Equal => {
                        if vo != vn {
                            set.push((kn, vn));
                        }
                        old.next();
                        new.next();
                    }
                },
            }
        }
        (removed, set)
    }
    let (classes_removed, classes_set) = changes(&held.classes, &wanted.classes);
    let (verdicts_removed, verdicts_set) = changes(&held.verdicts, &wanted.verdicts);
    Delta {
        classes_removed,
        classes_set,
        verdicts_removed,
        verdicts_set,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::{
        backend::ebpf::verdicts::table,
        desired::{AddressSet, Remote, Rule, Traffic},
    };

    fn rule(id: &str, action: Action, remote: usize, port: u16) -> Rule {
        Rule {
            id: id.to_owned(),
            action,
            audit: false,
            remote: Remote::Set(remote),
            local: None,
            traffic: Some(vec![Traffic {
                protocol: Protocol::TCP,
                ports: Some((port, port)),
            }]),
        }
    }

    fn desired(sets: &[(&str, &str)], ingress: Vec<Rule>) -> Desired {
        Desired {
            revision: "r".to_owned(),
            mesh_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            listen_port: 51820,
            routed: Vec::new(),
            peers: Vec::new(),
            audit_peers: Vec::new(),
            sets: sets
                .iter()
                .map(|(name, net)| AddressSet {
                    name: (*name).to_owned(),
                    nets: vec![net.parse().unwrap()],
                })
                .collect(),
            ingress,
            egress: Vec::new(),
        }
    }

    fn contents(desired: &Desired, ids: &mut Ids) -> Contents {
        Contents::of(desired, &table(desired), ids).unwrap()
    }

    #[test]
    fn a_one_rule_change_rewrites_only_what_it_changes() {
        let sets = [
            ("a", "10.0.1.0/24"),
            ("b", "10.0.2.0/24"),
            ("c", "10.0.3.0/24"),
        ];
        let before = desired(
            &sets,
            vec![
                rule("p/a", Action::Allow, 0, 80),
                rule("p/b", Action::Allow, 1, 80),
                rule("p/c", Action::Allow, 2, 80),
            ],
        );
        // A new first rule, for another set: every rule index shifts and
        // the table numbers the classes afresh.
        let mut after = before.clone();
        after.sets.insert(
            0,
            AddressSet {
                name: "new".to_owned(),
                nets: vec!["10.0.9.0/24".parse().unwrap()],
            },
        );
        for rule in &mut after.ingress {
            if let Remote::Set(s) = &mut rule.remote {
                *s += 1;
            }
        }
        after.ingress.insert(0, rule("p/new", Action::Deny, 0, 22));
        let mut ids = Ids::default();
        let old = contents(&before, &mut ids);
        let new = contents(&after, &mut ids);
        let delta = delta(&old, &new);
        // The new class's LPM entry, and its verdicts: TCP 22, TCP 80, the
        // ports around them and the unnamed protocols, for each local class.
        assert_eq!(delta.classes_set.len(), 1, "{delta:?}");
        assert!(delta.classes_removed.is_empty() && delta.verdicts_removed.is_empty());
        let class = new.classes[&(Side::Remote, "10.0.9.0/24".parse().unwrap())];
        assert!(!old.class_ids(Side::Remote).contains(&class));
        assert!(
            !delta.verdicts_set.is_empty()
                && delta.verdicts_set.iter().all(|(k, _)| k.remote == class),
            "only the new class's entries: {delta:?}"
        );
        assert!(
            delta.len() < old.verdicts.len() + old.classes.len(),
            "{delta:?}"
        );
        // The same NodePolicy again: nothing to write.
        assert!(super::delta(&new, &contents(&after, &mut ids)).is_empty());
    }

    /// What the programs' longest-prefix lookups find in `contents` for a
    /// flow: its classes, then its verdict entry's value.
    fn lookup(contents: &Contents, flow: &crate::desired::verdict::Flow) -> Option<u32> {
        let class = |side, address: std::net::IpAddr| {
            contents
                .classes
                .iter()
                .filter(|((s, net), _)| *s == side && net.contains(&address))
                .max_by_key(|((_, net), _)| net.prefix_len())
                .map(|(_, &id)| id)
        };
        let (remote, local) = (
            class(Side::Remote, flow.remote)?,
            class(Side::Local, flow.local)?,
        );
        let number = flow.protocol.map_or(47, |p| {
            protocol_numbers(p)[usize::from(p == Protocol::ICMP && flow.remote.is_ipv6())]
        });
        let port = flow.port.unwrap_or(0);
        contents
            .verdicts
            .iter()
            .filter(|(k, _)| {
                k.direction == flow.direction && k.remote == remote && k.local == local
            })
            .filter_map(|(k, &v)| match (k.protocol, k.port) {
                (None, _) => Some((80, v)),
                (Some(n), None) if n == number => Some((88, v)),
                (Some(n), Some(p))
                    if n == number && {
                        let (start, size) = (u32::from(p.port), 1u32 << (16 - p.bits));
                        (start..start + size).contains(&u32::from(port))
                    } =>
                {
                    Some((88 + p.bits, v))
                }
                _ => None,
            })
            .max_by_key(|&(bits, _)| bits)
            .map(|(_, v)| v)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]

        /// The map entries, all-ports entries and port prefixes as written,
        /// decide every flow as the verdict table does (itself checked
        /// against `Desired::allows` in `verdicts`).
        #[test]
        fn the_written_entries_decide_as_the_table(
            desired in crate::backend::ebpf::verdicts::tests::desired(),
            flows in proptest::collection::vec(crate::backend::ebpf::verdicts::tests::flow(), 40),
        ) {
            let table = table(&desired);
            let contents = Contents::of(&desired, &table, &mut Ids::default()).unwrap();
            for flow in flows {
                let found = lookup(&contents, &flow).is_some_and(|v| v & 1 == 1);
                proptest::prop_assert_eq!(
                    found,
                    table.allows(flow.direction, flow.remote, flow.local, flow.protocol, flow.port),
                    "{:?}", flow
                );
            }
        }

        /// Applying a delta to what was held gives what is wanted, and it
        /// names no entry that stays as it was.
        #[test]
        fn a_delta_turns_held_into_wanted_and_touches_nothing_else(
            held in proptest::collection::btree_map(0u32..40, 0u32..3, 0..30),
            wanted in proptest::collection::btree_map(0u32..40, 0u32..3, 0..30),
        ) {
            let as_contents = |m: &BTreeMap<u32, u32>| Contents {
                classes: BTreeMap::new(),
                verdicts: m
                    .iter()
                    .map(|(&k, &v)| {
                        (
                            VerdictFor {
                                direction: Direction::Ingress,
                                remote: k,
                                local: 0,
                                protocol: None,
                                port: None,
                            },
                            v,
                        )
                    })
                    .collect(),
            };
            let (h, w) = (as_contents(&held), as_contents(&wanted));
            let d = delta(&h, &w);
            let mut applied = h.verdicts.clone();
            for k in &d.verdicts_removed {
                proptest::prop_assert!(applied.remove(k).is_some());
            }
            for (k, v) in &d.verdicts_set {
                proptest::prop_assert_ne!(applied.insert(*k, *v), Some(*v));
            }
            proptest::prop_assert_eq!(applied, w.verdicts);
        }
    }

    #[test]
    fn slots_list_the_rules_a_packet_counts_for() {
        let mut log = rule("p/log", Action::Log, 0, 80);
        log.traffic = None;
        let mut audit = rule("q/would", Action::Deny, 0, 80);
        audit.audit = true;
        let d = desired(
            &[("a", "10.0.1.0/24")],
            vec![log, audit, rule("p/allow", Action::Allow, 0, 80)],
        );
        let mut ids = Ids::default();
        let c = contents(&d, &mut ids);
        let slots: BTreeSet<Vec<String>> = c
            .slots()
            .iter()
            .map(|&s| ids.slots.key(s).unwrap().rules.clone())
            .collect();
        let list = |ids: &[&str]| ids.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(
            slots.contains(&list(&["p/log", "q/would", "p/allow"])),
            "{slots:?}"
        );
        assert!(slots.contains(&list(&["p/log", DEFAULT_DENY])), "{slots:?}");
        assert!(
            slots.contains(&list(&[DEFAULT_DENY])),
            "addresses in no set: {slots:?}"
        );
        assert!(c.slots().iter().all(|&s| s >= FIRST_VERDICT_SLOT));
    }
}
