//! Per-rule packet and byte counts for metrics and audit: read from
//! `iptables-save -c`, keyed by the full rule id (the kernel may hold a short
//! form), kept monotonic across the rewrites that reset kernel counters.

use std::collections::BTreeMap;

use super::{
    Iptables,
    render::{CHAIN_IN, CHAIN_OUT},
    saved::counted_rules,
    tools::save_tool,
};
use crate::{
    backend::contract::{Direction, RuleCounter},
    command::{self, CommandError},
};

impl Iptables {
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
                    direction: match chain {
                        CHAIN_IN => Direction::Ingress,
                        CHAIN_OUT => Direction::Egress,
                        _ => Direction::Guard,
                    },
                    id,
                    packets: packets + cp,
                    bytes: bytes + cb,
                }
            })
            .collect())
    }
}
