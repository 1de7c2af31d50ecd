//! In-place edits of our chains: from the applied rules to the new ones,
//! only the stretch that changed is deleted and inserted, so a one-rule
//! policy change touches one kernel rule and counters elsewhere keep
//! counting.

use std::collections::BTreeMap;

use super::render::CHAINS;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::iptables::render::{CHAIN_IN, CHAIN_OUT};

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
}
