//! Putting a rendered ruleset into the kernel: the transaction.
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
//! Every step is a transaction: a failed step leaves what was there. When a
//! step fails after others went in, what was applied is forgotten, so the
//! next apply (the reconciler's rollback) rewrites everything and destroys
//! every set of ours it does not use, read from the kernel: the failed
//! revision's, or a killed agent's.
//!
//! The steps' parts are next door: [`super::ipset`] (set scripts),
//! [`super::edit`] (in-place chain edits), [`super::hooks`] (jumps from the
//! built-in chains), [`super::saved`] (reading `iptables-save`); reading the
//! kernel back is [`super::drift`] and [`super::counters`].

use std::collections::{BTreeMap, BTreeSet};

use super::{
    edit::edit_script,
    hooks::{hooks, missing_hooks},
    ipset::{destroy_script, ours, set_script, sets_in},
    render::{CHAINS, Family, IpSet, Rendered, Ruleset},
    tools::{restore_tool, save_tool, tool},
};
use crate::{
    backend::contract::Changes,
    command::{self, CommandError},
};

pub struct Iptables {
    pub(super) interface: String,
    pub(super) families: Vec<Family>,
    pub(super) applied: Option<Rendered>,
    /// Kernel counters last read, and what earlier rewrites reset, per (chain, id).
    pub(super) last_read: BTreeMap<(&'static str, String), (u64, u64)>,
    pub(super) carried: BTreeMap<(&'static str, String), (u64, u64)>,
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
    ) -> Result<&'a Ruleset, CommandError> {
        rendered.ruleset(family).ok_or_else(|| CommandError {
            command: restore_tool(family).to_owned(),
            message: format!("no {family:?} ruleset was rendered; nothing applied"),
        })
    }

    /// Applies `rendered`. Each kernel step is a transaction, the whole is
    /// not: when a later step fails (the IPv6 rules after the sets and the
    /// IPv4 rules went in), what was applied is forgotten, so the next
    /// apply (the reconciler's rollback) rewrites everything rather than
    /// diffing against a state the kernel no longer holds.
    pub fn apply_rendered(&mut self, rendered: &Rendered) -> Result<Changes, CommandError> {
        let result = self.transaction(rendered);
        if result.is_err() {
            self.applied = None;
        }
        result
    }

    fn transaction(&mut self, rendered: &Rendered) -> Result<Changes, CommandError> {
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
        let stale: Vec<String> = if self.applied.is_some() {
            old_sets
                .keys()
                .filter(|n| !wanted_names.contains(*n))
                .map(|n| n.to_string())
                .collect()
        } else {
            // After a start or a failed step, memory does not say what is
            // in the kernel: the previous run's sets (an agent killed
            // mid-apply) or a failed revision's. Our chains were just
            // written whole, so no rule refers to any set not wanted.
            let listed = command::run("ipset", &["list", "-n"], None)?;
            ours(&listed, &self.families)
                .into_iter()
                .filter(|n| !wanted_names.contains(n))
                .map(str::to_owned)
                .collect()
        };
        if !stale.is_empty() {
            let script = destroy_script(stale.iter().map(String::as_str));
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
            let script = destroy_script(ours.iter().map(String::as_str));
            command::run("ipset", &["restore", "-exist"], Some(&script))?;
        }
        self.applied = None;
        Ok(())
    }
}
