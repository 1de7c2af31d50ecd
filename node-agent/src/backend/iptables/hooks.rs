//! The jumps from the built-in chains into ours. They live in chains that
//! are not ours, so they are added (never by flushing a built-in chain) and
//! removed one by one.

use std::collections::BTreeSet;

use super::render::{CHAIN_GUARD, CHAIN_IN, CHAIN_OUT};

/// The jumps into our chains: (built-in chain, rule).
pub fn hooks(interface: &str) -> Vec<(&'static str, Vec<&str>)> {
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
pub fn missing_hooks(saved: &str, interface: &str) -> Vec<String> {
    let present: BTreeSet<&str> = saved.lines().map(str::trim_end).collect();
    hooks(interface)
        .into_iter()
        .filter(|(chain, rule)| {
            !present.contains(format!("-A {chain} {}", rule.join(" ")).as_str())
        })
        .map(|(chain, rule)| format!("-I {chain} 1 {}", rule.join(" ")))
        .collect()
}
