//! Putting a rendered ruleset into the kernel, and reading it back.
//!
//! - Sets first, each filled aside (`<name>-t`) and swapped in, in one
//!   `ipset restore -exist`; only sets whose content changed are touched.
//! - Rules per family in one `iptables-restore --noflush -w` transaction: a
//!   chain that changed is edited in place (only the changed stretch deleted
//!   and inserted, so a one-rule change touches one rule); the first apply, or
//!   an edit the kernel refuses, rewrites our chains whole.
//! - Hooks from the built-in chains: when our chains are written whole, the
//!   jumps `iptables-save` lacks are inserted in that same transaction
//!   (built-in chains are never flushed; they are not ours). A hook removed
//!   later is drift, repaired by a rewrite.
//! - Sets no rule uses any more are destroyed last.
//!
//! Every step is a transaction: a failure leaves what was there.

use std::collections::{BTreeMap, BTreeSet};

use super::render::{CHAIN_GUARD, CHAIN_IN, CHAIN_OUT, CHAINS, Family, IpSet, Rendered};
use crate::command::{self, CommandError};

fn restore_tool(family: Family) -> &'static str {
    match family {
        Family::V4 => "iptables-restore",
        Family::V6 => "ip6tables-restore",
    }
}

fn tool(family: Family) -> &'static str {
    match family {
        Family::V4 => "iptables",
        Family::V6 => "ip6tables",
    }
}

fn save_tool(family: Family) -> &'static str {
    match family {
        Family::V4 => "iptables-save",
        Family::V6 => "ip6tables-save",
    }
}

/// What changed in the kernel in one apply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub sets_written: usize,
    pub sets_destroyed: usize,
    /// Kernel rules deleted and inserted by in-place edits.
    pub rules_edited: usize,
    /// Families whose chains were rewritten whole.
    pub rewritten: Vec<Family>,
}

/// What drifted from the applied state (someone flushed a chain, deleted a set...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Drift {
    Rules(Family),
    Hooks(Family),
    Set(String),
}

impl Drift {
    pub fn kind(&self) -> &'static str {
        match self {
            Drift::Rules(_) => "rules",
            Drift::Hooks(_) => "hooks",
            Drift::Set(_) => "sets",
        }
    }
}

/// Packet and byte counts of one rule id in one chain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleCounter {
    pub chain: &'static str,
    pub id: String,
    pub packets: u64,
    pub bytes: u64,
}

pub struct Iptables {
    interface: String,
    families: Vec<Family>,
    applied: Option<Rendered>,
    /// Kernel counters last read, and what earlier rewrites reset, per (chain, id).
    last_read: BTreeMap<(&'static str, String), (u64, u64)>,
    carried: BTreeMap<(&'static str, String), (u64, u64)>,
}

impl Iptables {
    /// `families`: the address families to enforce (IPv6 only where the kernel has it).
    /// Every rendering applied must hold a ruleset for each.
    pub fn new(interface: &str, families: Vec<Family>) -> Iptables {
        Iptables {
            interface: interface.to_owned(),
            families,
            applied: None,
            last_read: BTreeMap::new(),
            carried: BTreeMap::new(),
        }
    }

    pub fn applied(&self) -> Option<&Rendered> {
        self.applied.as_ref()
    }

    pub fn families(&self) -> &[Family] {
        &self.families
    }

    /// A family's ruleset; a rendering without one is refused, never
    /// applied as an empty (open) chain.
    fn ruleset<'a>(
        &self,
        rendered: &'a Rendered,
        family: Family,
    ) -> Result<&'a super::render::Ruleset, CommandError> {
        rendered.ruleset(family).ok_or_else(|| CommandError {
            command: restore_tool(family).to_owned(),
            message: format!("no {family:?} ruleset was rendered; nothing applied"),
        })
    }

    pub fn apply(&mut self, rendered: &Rendered) -> Result<Changes, CommandError> {
        let mut changes = Changes::default();
        for &family in &self.families {
            self.ruleset(rendered, family)?;
        }
        let old_sets: BTreeMap<&str, &IpSet> = self
            .applied
            .iter()
            .flat_map(|a| a.sets.iter().map(|s| (s.name.as_str(), s)))
            .collect();
        let wanted: Vec<&IpSet> = rendered
            .sets
            .iter()
            .filter(|s| self.families.contains(&s.family))
            .collect();
        let changed: Vec<&IpSet> = wanted
            .iter()
            .copied()
            .filter(|s| old_sets.get(s.name.as_str()) != Some(s))
            .collect();
        if !changed.is_empty() {
            command::run("ipset", &["restore", "-exist"], Some(&set_script(&changed)))?;
            changes.sets_written = changed.len();
        }

        for &family in &self.families {
            let new = self.ruleset(rendered, family)?;
            let script = match self.applied.as_ref().and_then(|a| a.ruleset(family)) {
                Some(old) if old == new => continue,
                Some(old) => edit_script(&old.chains, &new.chains),
                None => None,
            };
            let edited = match &script {
                Some(script) => {
                    command::run(restore_tool(family), &["--noflush", "-w"], Some(script)).is_ok()
                }
                None => false,
            };
            if edited {
                changes.rules_edited += script.as_ref().map_or(0, |s| {
                    s.lines()
                        .filter(|l| l.starts_with("-D") || l.starts_with("-I"))
                        .count()
                });
            } else {
                self.rewrite(rendered, family)?;
                changes.rewritten.push(family);
            }
        }

        let wanted_names: BTreeSet<&str> = wanted.iter().map(|s| s.name.as_str()).collect();
        let stale: Vec<&str> = old_sets
            .keys()
            .copied()
            .filter(|n| !wanted_names.contains(n))
            .collect();
        if !stale.is_empty() {
            let script: String = stale.iter().map(|n| format!("destroy {n}\n")).collect();
            command::run("ipset", &["restore", "-exist"], Some(&script))?;
            changes.sets_destroyed = stale.len();
        }
        self.applied = Some(rendered.clone());
        Ok(changes)
    }

    /// Replaces our chains whole and adds the jumps into them that are
    /// missing, in one transaction. (One `iptables-save` to find the jumps:
    /// an `iptables -C` per jump costs about 10 ms each with nft.)
    fn rewrite(&self, rendered: &Rendered, family: Family) -> Result<(), CommandError> {
        let saved = command::run(save_tool(family), &["-t", "filter"], None)?;
        self.ruleset(rendered, family)?;
        let text = rendered.restore_text(family).unwrap_or_default();
        let hooks: String = missing_hooks(&saved, &self.interface)
            .iter()
            .map(|line| format!("{line}\n"))
            .collect();
        let text = match text.strip_suffix("COMMIT\n") {
            Some(body) => format!("{body}{hooks}COMMIT\n"),
            None => text,
        };
        command::run(restore_tool(family), &["--noflush", "-w"], Some(&text)).map(drop)
    }

    /// Compares the kernel with what was applied.
    pub fn drift(&self) -> Result<Vec<Drift>, CommandError> {
        let Some(applied) = &self.applied else {
            return Ok(Vec::new());
        };
        let mut drift = Vec::new();
        for &family in &self.families {
            let saved = command::run(save_tool(family), &["-t", "filter"], None)?;
            let kernel = chains_in(&saved);
            let ours = applied.ruleset(family);
            let same = CHAINS.iter().all(|chain| {
                let want: Vec<String> = ours
                    .and_then(|o| o.chains.get(chain))
                    .into_iter()
                    .flatten()
                    .map(|r| fingerprint(r))
                    .collect();
                let have: Vec<String> = kernel
                    .get(*chain)
                    .into_iter()
                    .flatten()
                    .map(|r| fingerprint(r))
                    .collect();
                kernel.contains_key(*chain) && want == have
            });
            if !same {
                drift.push(Drift::Rules(family));
            }
            if !missing_hooks(&saved, &self.interface).is_empty() {
                drift.push(Drift::Hooks(family));
            }
        }
        let saved = command::run("ipset", &["save"], None)?;
        let kernel_sets = sets_in(&saved);
        for set in applied
            .sets
            .iter()
            .filter(|s| self.families.contains(&s.family))
        {
            let want: BTreeSet<&str> = set.entries.iter().map(String::as_str).collect();
            let have: Option<BTreeSet<&str>> = kernel_sets
                .get(set.name.as_str())
                .map(|e| e.iter().map(String::as_str).collect());
            if have.as_ref() != Some(&want) {
                drift.push(Drift::Set(set.name.clone()));
            }
        }
        Ok(drift)
    }

    /// Puts the applied state back after drift: sets and chains rewritten, hooks added.
    pub fn repair(&mut self) -> Result<(), CommandError> {
        let Some(applied) = self.applied.take() else {
            return Ok(());
        };
        let result = (|| {
            let sets: Vec<&IpSet> = applied
                .sets
                .iter()
                .filter(|s| self.families.contains(&s.family))
                .collect();
            if !sets.is_empty() {
                command::run("ipset", &["restore", "-exist"], Some(&set_script(&sets)))?;
            }
            for &family in &self.families {
                self.rewrite(&applied, family)?;
            }
            Ok(())
        })();
        self.applied = Some(applied);
        result
    }

    /// Packet and byte counts per rule id (the full id, whatever short form
    /// the kernel holds), monotonic across rewrites: when a rewrite resets a
    /// kernel counter, what it had counted (as last read) is carried over.
    /// Increments between the last read and a rewrite are lost.
    pub fn counters(&mut self) -> Result<Vec<RuleCounter>, CommandError> {
        let mut now: BTreeMap<(&'static str, String), (u64, u64)> = BTreeMap::new();
        for &family in &self.families {
            let saved = command::run(save_tool(family), &["-c", "-t", "filter"], None)?;
            for (chain, comment, packets, bytes) in counted_rules(&saved) {
                let id = match &self.applied {
                    Some(applied) => applied.id_of(&comment).to_owned(),
                    None => comment,
                };
                let entry = now.entry((chain, id)).or_default();
                entry.0 += packets;
                entry.1 += bytes;
            }
        }
        for (key, &(packets, bytes)) in &now {
            if let Some(&(p, b)) = self.last_read.get(key) {
                let carried = self.carried.entry(key.clone()).or_default();
                carried.0 += p.saturating_sub(packets);
                carried.1 += b.saturating_sub(bytes);
            }
        }
        self.last_read = now.clone();
        Ok(now
            .into_iter()
            .map(|((chain, id), (packets, bytes))| {
                let (cp, cb) = self
                    .carried
                    .get(&(chain, id.clone()))
                    .copied()
                    .unwrap_or_default();
                RuleCounter {
                    chain,
                    id,
                    packets: packets + cp,
                    bytes: bytes + cb,
                }
            })
            .collect())
    }

    /// Removes hooks, chains and sets: everything this backend created.
    pub fn teardown(&mut self) -> Result<(), CommandError> {
        for &family in &self.families {
            for (chain, rule) in hooks(&self.interface) {
                let delete: Vec<&str> = ["-w", "-D", chain]
                    .into_iter()
                    .chain(rule.iter().copied())
                    .collect();
                while command::succeeds(tool(family), &delete) {}
            }
            for chain in CHAINS {
                if command::succeeds(tool(family), &["-w", "-F", chain]) {
                    command::run(tool(family), &["-w", "-X", chain], None)?;
                }
            }
        }
        let saved = command::run("ipset", &["save"], None)?;
        let ours: Vec<String> = sets_in(&saved)
            .into_keys()
            .filter(|n| n.starts_with("mg4-") || n.starts_with("mg6-"))
            .collect();
        if !ours.is_empty() {
            let script: String = ours.iter().map(|n| format!("destroy {n}\n")).collect();
            command::run("ipset", &["restore", "-exist"], Some(&script))?;
        }
        self.applied = None;
        Ok(())
    }
}

/// The jumps into our chains: (built-in chain, rule).
fn hooks(interface: &str) -> Vec<(&'static str, Vec<&str>)> {
    vec![
        ("INPUT", vec!["-i", interface, "-j", CHAIN_IN]),
        ("FORWARD", vec!["-i", interface, "-j", CHAIN_IN]),
        ("FORWARD", vec!["-o", interface, "-j", CHAIN_OUT]),
        ("OUTPUT", vec!["-o", interface, "-j", CHAIN_OUT]),
        // Only what leaves by another interface can leak: the mesh's own
        // packets skip the guard (one match fewer per packet).
        ("OUTPUT", vec!["!", "-o", interface, "-j", CHAIN_GUARD]),
        ("FORWARD", vec!["!", "-o", interface, "-j", CHAIN_GUARD]),
    ]
}

/// `-I` lines (for `iptables-restore`) adding the jumps into our chains that
/// `saved` (`iptables-save` output) lacks. Each goes first in its chain.
fn missing_hooks(saved: &str, interface: &str) -> Vec<String> {
    let present: BTreeSet<&str> = saved.lines().map(str::trim_end).collect();
    hooks(interface)
        .into_iter()
        .filter(|(chain, rule)| {
            !present.contains(format!("-A {chain} {}", rule.join(" ")).as_str())
        })
        .map(|(chain, rule)| format!("-I {chain} 1 {}", rule.join(" ")))
        .collect()
}

/// `ipset restore` input that fills each set aside and swaps it in.
pub fn set_script(sets: &[&IpSet]) -> String {
    let mut out = String::new();
    for set in sets {
        let (name, family) = (&set.name, set.family.ipset_family());
        let max = (set.entries.len() * 2).max(65536);
        out.push_str(&format!(
            "create {name} hash:net family {family} maxelem {max} -exist\n"
        ));
        out.push_str(&format!(
            "create {name}-t hash:net family {family} maxelem {max} -exist\nflush {name}-t\n"
        ));
        for entry in &set.entries {
            out.push_str(&format!("add {name}-t {entry}\n"));
        }
        out.push_str(&format!("swap {name}-t {name}\ndestroy {name}-t\n"));
    }
    out
}

/// In-place edits from `old` to `new`: per chain, the stretch between the
/// common beginning and end is deleted and the new stretch inserted. `None`
/// when a chain is new (a rewrite is needed).
pub fn edit_script(
    old: &BTreeMap<&'static str, Vec<String>>,
    new: &BTreeMap<&'static str, Vec<String>>,
) -> Option<String> {
    let mut out = String::from("*filter\n");
    for chain in CHAINS {
        let (Some(before), Some(after)) = (old.get(chain), new.get(chain)) else {
            if old.get(chain) == new.get(chain) {
                continue;
            }
            return None;
        };
        let prefix = before.iter().zip(after).take_while(|(a, b)| a == b).count();
        let suffix = before[prefix..]
            .iter()
            .rev()
            .zip(after[prefix..].iter().rev())
            .take_while(|(a, b)| a == b)
            .count();
        for _ in prefix..before.len() - suffix {
            out.push_str(&format!("-D {chain} {}\n", prefix + 1));
        }
        for (i, rule) in after[prefix..after.len() - suffix].iter().enumerate() {
            out.push_str(&format!("-I {chain} {} {rule}\n", prefix + 1 + i));
        }
    }
    out.push_str("COMMIT\n");
    Some(out)
}

/// Our chains' rules in `iptables-save` output.
fn chains_in(saved: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in saved.lines() {
        let line = line
            .strip_prefix('[')
            .and_then(|l| l.split_once("] "))
            .map_or(line, |(_, rest)| rest);
        if let Some(declared) = line.strip_prefix(':') {
            let name = declared.split_whitespace().next().unwrap_or_default();
            if CHAINS.contains(&name) {
                out.entry(name.to_owned()).or_default();
            }
        } else if let Some(rule) = line.strip_prefix("-A ") {
            let (chain, spec) = rule.split_once(' ').unwrap_or((rule, ""));
            if CHAINS.contains(&chain) {
                out.entry(chain.to_owned())
                    .or_default()
                    .push(spec.to_owned());
            }
        }
    }
    out
}

/// A rule in a form `iptables-save` preserves: its words, sorted, without the
/// implicit `-m tcp` style matches it adds and with conntrack states sorted.
/// Enough to tell a flushed, reordered or foreign rule from ours.
pub fn fingerprint(rule: &str) -> String {
    let words: Vec<&str> = rule.split_whitespace().collect();
    let mut kept: Vec<String> = Vec::new();
    let mut i = 0;
    while i < words.len() {
        if words[i] == "-m"
            && matches!(
                words.get(i + 1),
                Some(&("tcp" | "udp" | "sctp" | "icmp" | "icmp6"))
            )
        {
            i += 2;
            continue;
        }
        if words[i] == "--ctstate" {
            let mut states: Vec<&str> = words
                .get(i + 1)
                .map(|s| s.split(',').collect())
                .unwrap_or_default();
            states.sort_unstable();
            kept.push(format!("--ctstate {}", states.join(",")));
            i += 2;
            continue;
        }
        kept.push(words[i].trim_matches('"').to_owned());
        i += 1;
    }
    kept.sort();
    kept.join(" ")
}

/// (chain, rule id, packets, bytes) of every rule in our chains with a comment.
fn counted_rules(saved: &str) -> Vec<(&'static str, String, u64, u64)> {
    let mut out = Vec::new();
    for line in saved.lines() {
        let Some((counts, rule)) = line.strip_prefix('[').and_then(|l| l.split_once("] -A "))
        else {
            continue;
        };
        let Some((packets, bytes)) = counts.split_once(':') else {
            continue;
        };
        let chain = CHAINS
            .iter()
            .copied()
            .find(|c| rule.starts_with(&format!("{c} ")));
        let id = rule.split("--comment ").nth(1).map(|rest| {
            let rest = rest.trim_start_matches('"');
            rest.split(['"', ' ']).next().unwrap_or_default().to_owned()
        });
        if let (Some(chain), Some(id)) = (chain, id) {
            out.push((
                chain,
                id,
                packets.parse().unwrap_or(0),
                bytes.parse().unwrap_or(0),
            ));
        }
    }
    out
}

/// Every set's entries in `ipset save` output.
fn sets_in(saved: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in saved.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("create"), Some(name), _) => {
                out.entry(name.to_owned()).or_default();
            }
            (Some("add"), Some(name), Some(entry)) => out
                .entry(name.to_owned())
                .or_default()
                .push(entry.to_owned()),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_touch_only_what_changed() {
        let old = BTreeMap::from([
            (
                CHAIN_IN,
                vec!["a".to_owned(), "b".into(), "c".into(), "d".into()],
            ),
            (CHAIN_OUT, vec!["x".to_owned()]),
        ]);
        let new = BTreeMap::from([
            (
                CHAIN_IN,
                vec!["a".to_owned(), "B".into(), "c".into(), "d".into()],
            ),
            (CHAIN_OUT, vec!["x".to_owned()]),
        ]);
        assert_eq!(
            edit_script(&old, &new).unwrap(),
            "*filter\n-D MESHGUARD-IN 2\n-I MESHGUARD-IN 2 B\nCOMMIT\n"
        );
        let inserted = BTreeMap::from([
            (
                CHAIN_IN,
                vec![
                    "a".to_owned(),
                    "b".into(),
                    "new".into(),
                    "c".into(),
                    "d".into(),
                ],
            ),
            (CHAIN_OUT, vec!["x".to_owned()]),
        ]);
        assert_eq!(
            edit_script(&old, &inserted).unwrap(),
            "*filter\n-I MESHGUARD-IN 3 new\nCOMMIT\n"
        );
        let removed = BTreeMap::from([
            (CHAIN_IN, vec!["a".to_owned(), "d".into()]),
            (CHAIN_OUT, vec!["x".to_owned()]),
        ]);
        assert_eq!(
            edit_script(&old, &removed).unwrap(),
            "*filter\n-D MESHGUARD-IN 2\n-D MESHGUARD-IN 2\nCOMMIT\n"
        );
        let repeated = BTreeMap::from([(CHAIN_IN, vec!["a".to_owned(), "a".into()])]);
        let once = BTreeMap::from([(CHAIN_IN, vec!["a".to_owned()])]);
        assert_eq!(
            edit_script(&repeated, &once).unwrap(),
            "*filter\n-D MESHGUARD-IN 2\nCOMMIT\n"
        );
    }

    #[test]
    fn fingerprints_survive_iptables_save_normalization() {
        let ours = r#"-m set --match-set mg4-s-aaaa src -p tcp --dport 80:90 -m comment --comment "web/db" -j ACCEPT"#;
        let saved = r#"-p tcp -m set --match-set mg4-s-aaaa src -m tcp --dport 80:90 -m comment --comment "web/db" -j ACCEPT"#;
        assert_eq!(fingerprint(ours), fingerprint(saved));
        assert_eq!(
            fingerprint("-m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"),
            fingerprint("-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
        );
        assert_ne!(
            fingerprint(ours),
            fingerprint(&saved.replace("ACCEPT", "DROP"))
        );
    }

    #[test]
    fn saved_output_parses() {
        let saved = "*filter\n:MESHGUARD-IN - [0:0]\n:OTHER - [0:0]\n[4:320] -A MESHGUARD-IN -m comment --comment \"meshguard:replies\" -j ACCEPT\n[2:100] -A MESHGUARD-IN -p tcp -m comment --comment \"web/db\" -j ACCEPT\n[1:50] -A MESHGUARD-IN -p udp -m comment --comment \"web/db\" -j ACCEPT\n[9:9] -A OTHER -j ACCEPT\nCOMMIT\n";
        let counted = counted_rules(saved);
        assert_eq!(
            counted,
            vec![
                (CHAIN_IN, "meshguard:replies".to_owned(), 4, 320),
                (CHAIN_IN, "web/db".to_owned(), 2, 100),
                (CHAIN_IN, "web/db".to_owned(), 1, 50)
            ]
        );
        assert_eq!(
            chains_in(saved).keys().collect::<Vec<_>>(),
            vec!["MESHGUARD-IN"]
        );
        let sets = sets_in(
            "create mg4-s-a hash:net family inet hashsize 1024 maxelem 65536\nadd mg4-s-a 10.0.0.1\nadd mg4-s-a 10.1.0.0/16\ncreate other hash:ip\n",
        );
        assert_eq!(sets["mg4-s-a"], vec!["10.0.0.1", "10.1.0.0/16"]);
        assert!(sets["other"].is_empty());
    }
}
