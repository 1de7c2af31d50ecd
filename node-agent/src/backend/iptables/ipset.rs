//! ipset as the backend drives it: `ipset restore` scripts that fill a set
//! aside and swap it in (so a packet never meets a half-filled set) or
//! destroy sets, and `ipset save` / `ipset list -n` output read back.

use std::collections::BTreeMap;

use super::render::{Family, IpSet};

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

/// `ipset restore` input that destroys the named sets.
pub fn destroy_script<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    names
        .into_iter()
        .map(|n| format!("destroy {n}\n"))
        .collect()
}

/// The sets of ours, in the given families, among `ipset list -n` output
/// (their temporary `-t` copies included).
pub fn ours<'a>(listed: &'a str, families: &[Family]) -> Vec<&'a str> {
    listed
        .lines()
        .map(str::trim)
        .filter(|name| {
            families.iter().any(|f| {
                name.strip_prefix(f.prefix())
                    .is_some_and(|rest| rest.starts_with('-'))
            })
        })
        .collect()
}

/// Every set's entries in `ipset save` output.
pub fn sets_in(saved: &str) -> BTreeMap<String, Vec<String>> {
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
    fn ipset_save_output_parses() {
        let sets = sets_in(
            "create mg4-s-a hash:net family inet hashsize 1024 maxelem 65536\nadd mg4-s-a 10.0.0.1\nadd mg4-s-a 10.1.0.0/16\ncreate other hash:ip\n",
        );
        assert_eq!(sets["mg4-s-a"], vec!["10.0.0.1", "10.1.0.0/16"]);
        assert!(sets["other"].is_empty());
    }

    #[test]
    fn ours_are_the_managed_families_sets_and_their_copies() {
        let listed = "mg4-own\nmg4-s-a\nmg4-s-a-t\nmg6-s-b\nmg4x\nother\n  mg4-s-c  \n";
        assert_eq!(
            ours(listed, &[Family::V4]),
            vec!["mg4-own", "mg4-s-a", "mg4-s-a-t", "mg4-s-c"]
        );
        assert_eq!(
            ours(listed, &[Family::V4, Family::V6]).len(),
            5,
            "mg6-s-b too"
        );
        assert!(ours(listed, &[]).is_empty());
    }
}
