//! Drift: how the kernel differs from what was applied (someone flushed a
//! chain, removed a hook, emptied a set). Found at every resync, repaired by
//! [`Iptables::repair`].

use std::collections::BTreeSet;

use super::{
    Iptables,
    hooks::missing_hooks,
    ipset::sets_in,
    render::CHAINS,
    saved::{chains_in, fingerprint},
    tools::save_tool,
};
use crate::{
    backend::contract::Drift,
    command::{self, CommandError},
};

impl Iptables {
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
}
