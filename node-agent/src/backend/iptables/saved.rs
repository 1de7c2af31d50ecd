//! `iptables-save` output read back: our chains' rules, the counters of
//! rules with an id comment, and fingerprints that tell our rules from
//! flushed, reordered or foreign ones despite `iptables-save`'s rewriting.

use std::collections::BTreeMap;

use super::render::CHAINS;

/// Our chains' rules in `iptables-save` output.
pub fn chains_in(saved: &str) -> BTreeMap<String, Vec<String>> {
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
pub fn counted_rules(saved: &str) -> Vec<(&'static str, String, u64, u64)> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::iptables::render::CHAIN_IN;

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
    }
}
