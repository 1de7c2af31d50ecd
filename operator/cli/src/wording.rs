//! How reports word what they show: traffic, decisions, and groups of
//! ends named by what their members share. `diff` and `matrix` print the
//! same words for the same things.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use meshguard_crds::Protocol;
use meshguard_policy::{
    compile::Compiled,
    diff::{Decided, End},
};

/// A port range as a report prints it: `None` for ICMP or every port.
pub fn ports(ports: Option<(u16, u16)>) -> Option<String> {
    match ports {
        None | Some((1, u16::MAX)) => None,
        Some((lo, hi)) if lo == hi => Some(lo.to_string()),
        Some((lo, hi)) => Some(format!("{lo}-{hi}")),
    }
}

/// `TCP/5432`, `UDP/8000-8080`, `TCP (all ports)`, `ICMP`.
pub fn traffic(protocol: Protocol, range: Option<(u16, u16)>) -> String {
    match ports(range) {
        Some(ports) => format!("{protocol:?}/{ports}"),
        None if protocol.has_ports() => format!("{protocol:?} (all ports)"),
        None => format!("{protocol:?}"),
    }
}

/// `Allow (policy/rule)` or `Deny (default deny)`.
pub fn decided(d: &Decided) -> String {
    match &d.by {
        Some(by) => format!("{:?} ({}/{})", d.verdict, by.policy, by.rule),
        None => format!("{:?} (default deny)", d.verdict),
    }
}

/// Names for groups of ends, from the members of every set compared (a
/// later set's labels over an earlier one's), built once per report.
pub struct Names<'a> {
    labels: HashMap<&'a str, &'a BTreeMap<String, String>>,
}

impl<'a> Names<'a> {
    /// `sets` from the earliest to the latest.
    pub fn new(sets: &[&'a Compiled]) -> Names<'a> {
        let mut labels = HashMap::new();
        for m in sets.iter().flat_map(|c| c.members()) {
            labels.insert(m.name.as_str(), &m.labels);
        }
        Names { labels }
    }

    /// A group by what its members share: `role=web (12 members)`, `every
    /// member but web-2 (8)`, or their names; a lone end by itself.
    pub fn label(&self, ends: &[End]) -> String {
        if ends.len() == 1 {
            return ends[0].to_string();
        }
        let named: BTreeSet<&str> = ends
            .iter()
            .filter_map(|e| match e {
                End::Member(name) => Some(name.as_str()),
                End::Addresses { .. } => None,
            })
            .collect();
        if named.len() == ends.len()
            && named.len() > 3
            && self.labels.len().saturating_sub(named.len()) <= 2
        {
            let mut missing: Vec<&str> = self
                .labels
                .keys()
                .copied()
                .filter(|n| !named.contains(n))
                .collect();
            missing.sort_unstable();
            return match missing.as_slice() {
                [] => format!("every member ({})", named.len()),
                _ => format!("every member but {} ({})", missing.join(", "), named.len()),
            };
        }
        let labels_of = |name: &str| self.labels.get(name).copied();
        let common: Vec<(&String, &String)> = match (named.len() == ends.len(), named.first()) {
            (true, Some(first)) => labels_of(first)
                .into_iter()
                .flatten()
                .filter(|(k, v)| {
                    named
                        .iter()
                        .all(|n| labels_of(n).and_then(|l| l.get(*k)) == Some(*v))
                })
                .collect(),
            _ => Vec::new(),
        };
        if common.is_empty() {
            const SHOWN: usize = 8;
            let shown: Vec<String> = ends.iter().take(SHOWN).map(End::to_string).collect();
            match ends.len() {
                n if n > SHOWN => format!("{} (+{} more)", shown.join(", "), n - SHOWN),
                _ => shown.join(", "),
            }
        } else {
            let selector: Vec<String> = common.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("{} ({} members)", selector.join(","), ends.len())
        }
    }
}
