//! What the iptables backend gives the kernel. The invariants of
//! `support::check` (every rule once per port entry, in order, in each
//! family it applies to, with its verdict) hold for the NodePolicies the
//! compiler makes of `examples/`, in both enforcement modes, and for
//! hand-written ones covering IPv6, SCTP, long ids and audit peers. Golden
//! files pin the exact text on top, for review of any change:
//! `MESHGUARD_BLESS=1 cargo test -p meshguard-agent --test render` rewrites them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

mod support;

use std::path::{Path, PathBuf};

use meshguard_agent::{
    backend::{
        Enforcement,
        iptables::{
            ipset::set_script,
            render::{CHAIN_GUARD, CHAIN_IN, CHAIN_OUT, Family, Options, Rendered, render},
        },
    },
    desired,
};
use meshguard_crds::{NodePolicy, NodePolicySpec};

const BOTH: &[Family] = &[Family::V4, Family::V6];

fn inputs() -> Vec<(String, NodePolicy)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../operator/cli/tests/golden/examples");
    let mut out: Vec<(String, NodePolicy)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| {
            (
                p.file_stem().unwrap().to_string_lossy().into_owned(),
                serde_saphyr::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        out.len() >= 9,
        "the operator's golden NodePolicies are the inputs"
    );
    out
}

fn rendered(spec: &NodePolicySpec, enforcement: Enforcement, families: &[Family]) -> Rendered {
    let cidrs = vec!["100.96.0.0/12".parse().unwrap()];
    render(
        &desired::parse(spec).unwrap(),
        &Options {
            interface: "meshguard0",
            enforcement,
            nflog_group: 100,
            mesh_cidrs: &cidrs,
            families,
        },
    )
}

fn text(r: &Rendered) -> String {
    let sets: Vec<_> = r.sets.iter().collect();
    let mut out = format!("# ipset restore\n{}", set_script(&sets));
    for (family, tool) in [(Family::V4, "iptables"), (Family::V6, "ip6tables")] {
        if let Some(text) = r.restore_text(family) {
            out.push_str(&format!("# {tool}-restore\n{text}"));
        }
    }
    out
}

fn compare(name: &str, actual: &str) {
    let path: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("MESHGUARD_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        expected == actual,
        "{} differs; review and rerun with MESHGUARD_BLESS=1\n--- actual\n{actual}",
        path.display()
    );
}

fn spec(yaml: &str) -> NodePolicySpec {
    serde_saphyr::from_str(yaml).unwrap()
}

#[test]
fn rendered_rules_of_the_examples() {
    for (name, policy) in inputs() {
        compare(
            &format!("{name}.rules"),
            &text(&rendered(&policy.spec, Enforcement::Enforce, BOTH)),
        );
    }
    let (name, policy) = inputs().into_iter().find(|(n, _)| n == "db-1").unwrap();
    compare(
        &format!("{name}.audit.rules"),
        &text(&rendered(&policy.spec, Enforcement::Audit, BOTH)),
    );
}

#[test]
fn every_rule_of_the_examples_is_in_its_chain_once_per_family_it_applies_to() {
    for (name, policy) in inputs() {
        for enforcement in [Enforcement::Enforce, Enforcement::Audit] {
            for families in [BOTH, &[Family::V4][..]] {
                let r = rendered(&policy.spec, enforcement, families);
                support::check(&policy.spec, &r, families, enforcement)
                    .unwrap_or_else(|e| panic!("{name} ({enforcement:?}, {families:?}): {e}"));
            }
        }
    }
}

/// The check cannot pass a rendering that lost a rule, or one that put a
/// rule in a family it does not apply to.
#[test]
fn the_check_fails_on_a_dropped_or_a_misplaced_rule() {
    let (_, policy) = inputs().into_iter().find(|(n, _)| n == "db-1").unwrap();
    let good = rendered(&policy.spec, Enforcement::Enforce, BOTH);
    let mut dropped = good.clone();
    let chain = dropped
        .rulesets
        .get_mut(&Family::V4)
        .unwrap()
        .chains
        .get_mut(CHAIN_IN)
        .unwrap();
    let at = chain
        .iter()
        .position(|l| !l.contains("\"meshguard:"))
        .unwrap();
    chain.remove(at);
    assert!(support::check(&policy.spec, &dropped, BOTH, Enforcement::Enforce).is_err());
    let mut misplaced = good.clone();
    let line = good.ruleset(Family::V4).unwrap().chains[CHAIN_IN][at].clone();
    misplaced
        .rulesets
        .get_mut(&Family::V6)
        .unwrap()
        .chains
        .get_mut(CHAIN_IN)
        .unwrap()
        .insert(2, line);
    assert!(support::check(&policy.spec, &misplaced, BOTH, Enforcement::Enforce).is_err());
}

/// Agent-wide audit: each deciding line logs and then accepts, with its own
/// comment on the ACCEPT, so no counter counts one rule twice; Audit-mode
/// and Log rules log and go on.
#[test]
fn agent_wide_audit_counts_at_the_deciding_rule_and_drops_nothing() {
    let (_, policy) = inputs().into_iter().find(|(n, _)| n == "db-1").unwrap();
    let r = rendered(&policy.spec, Enforcement::Audit, BOTH);
    for ruleset in r.rulesets.values() {
        for chain in [CHAIN_IN, CHAIN_OUT] {
            let lines = &ruleset.chains[chain];
            let deny = lines
                .iter()
                .filter(|l| l.contains("--comment \"meshguard:default-deny\""))
                .collect::<Vec<_>>();
            assert_eq!(deny.len(), 1, "one default-deny line: {lines:#?}");
            assert!(
                deny[0].contains("-j NFLOG --nflog-prefix \"would-deny meshguard:default-deny\"")
            );
            assert!(
                lines
                    .last()
                    .unwrap()
                    .ends_with("--comment \"meshguard:audit-accept\" -j ACCEPT")
            );
        }
        assert!(
            ruleset.chains[CHAIN_GUARD]
                .iter()
                .skip(1)
                .all(|l| l.ends_with("-j DROP")),
            "the leak guard stays"
        );
    }
}

/// A node whose kernel has no IPv6 gets no IPv6 rules or sets, and counts
/// only the rules it has; a family the node owns no address in keeps only
/// what drops everything.
#[test]
fn rules_and_counts_per_family_that_exists() {
    let s = spec(DUAL_STACK);
    let both = rendered(&s, Enforcement::Enforce, BOTH);
    let v4 = rendered(&s, Enforcement::Enforce, &[Family::V4]);
    assert!(v4.ruleset(Family::V6).is_none());
    assert!(v4.sets.iter().all(|set| set.family == Family::V4));
    let count = |r: &Rendered, f: Family| {
        r.ruleset(f)
            .unwrap()
            .chains
            .values()
            .flatten()
            .filter(|l| !l.contains("\"meshguard:"))
            .count()
    };
    assert_eq!(v4.rule_count(), count(&v4, Family::V4));
    assert_eq!(
        both.rule_count(),
        count(&both, Family::V4) + count(&both, Family::V6)
    );
    assert!(count(&both, Family::V6) > 0);
    let mut v4_only_mesh = s.clone();
    v4_only_mesh.interface.routed_ips.clear();
    let r = rendered(&v4_only_mesh, Enforcement::Enforce, BOTH);
    assert_eq!(
        count(&r, Family::V6),
        0,
        "no own IPv6 address: no IPv6 policy rules"
    );
    let inbound = &r.ruleset(Family::V6).unwrap().chains[CHAIN_IN];
    assert!(
        inbound[1].starts_with("-m comment --comment \"meshguard:not-ours\" -j DROP"),
        "{inbound:#?}"
    );
    for families in [BOTH, &[Family::V4][..]] {
        support::check(
            &s,
            &rendered(&s, Enforcement::Enforce, families),
            families,
            Enforcement::Enforce,
        )
        .unwrap();
    }
}

/// A member routing an IPv6 subnet, rules over IPv6 sets, SCTP and ICMP:
/// the lines written from the semantics (ICMP is ipv6-icmp in IPv6; SCTP
/// ranges use --dport a:b; a set only in IPv6 gives no IPv4 line).
const DUAL_STACK: &str = r#"
revision: r1
interface: { meshIP: "100.96.0.1", listenPort: 51820, routedIPs: ["fd5a:1::/64"] }
addressSets:
- { name: s-both, addresses: ["100.96.0.2", "fd5a:2::2"] }
- { name: s-v6, cidrs: ["fd5a:3::/64"] }
ingress:
- { id: p/sctp, action: Allow, set: s-both, ports: [{ protocol: SCTP, port: 9000, endPort: 9010 }] }
- { id: p/ping, action: Allow, set: s-v6, ports: [{ protocol: ICMP }] }
- { id: p/deny, action: Deny, set: all, ports: [{ protocol: UDP, port: 53 }] }
egress:
- { id: p/out, action: Allow, set: s-v6, ports: [{ protocol: TCP, port: 443 }] }
"#;

#[test]
fn ipv6_and_sctp_rules_are_rendered_as_the_semantics_say() {
    let s = spec(DUAL_STACK);
    let r = rendered(&s, Enforcement::Enforce, BOTH);
    let v4 = &r.ruleset(Family::V4).unwrap().chains;
    let v6 = &r.ruleset(Family::V6).unwrap().chains;
    let has = |lines: &Vec<String>, line: &str| lines.iter().any(|l| l == line);
    assert!(
        has(
            &v4[CHAIN_IN],
            "-m set --match-set mg4-s-both src -p sctp --dport 9000:9010 -m comment --comment \"p/sctp\" -j ACCEPT"
        ),
        "{v4:#?}"
    );
    assert!(
        has(
            &v6[CHAIN_IN],
            "-m set --match-set mg6-s-both src -p sctp --dport 9000:9010 -m comment --comment \"p/sctp\" -j ACCEPT"
        ),
        "{v6:#?}"
    );
    assert!(
        has(
            &v6[CHAIN_IN],
            "-m set --match-set mg6-s-v6 src -p ipv6-icmp -m comment --comment \"p/ping\" -j ACCEPT"
        ),
        "{v6:#?}"
    );
    assert!(
        !v4[CHAIN_IN].iter().any(|l| l.contains("p/ping")),
        "s-v6 has no IPv4 address"
    );
    assert!(has(
        &v6[CHAIN_IN],
        "-p udp --dport 53 -m comment --comment \"p/deny\" -j DROP"
    ));
    assert!(has(
        &v6[CHAIN_OUT],
        "-m set --match-set mg6-s-v6 dst -p tcp --dport 443 -m comment --comment \"p/out\" -j ACCEPT"
    ));
    assert!(has(
        &v6[CHAIN_IN],
        "-m set ! --match-set mg6-own dst -m comment --comment \"meshguard:not-ours\" -j DROP"
    ));
    let own6 = r.sets.iter().find(|s| s.name == "mg6-own").unwrap();
    assert_eq!(own6.entries, ["fd5a:1::/64"]);
    support::check(&s, &r, BOTH, Enforcement::Enforce).unwrap();
    support::check(
        &s,
        &rendered(&s, Enforcement::Audit, BOTH),
        BOTH,
        Enforcement::Audit,
    )
    .unwrap();
}

/// Audit peers are routed through the mesh under agent-wide audit, so
/// their subnets are guarded against leaving by another interface too.
#[test]
fn audit_peers_subnets_are_in_the_leak_guard() {
    let (_, mut policy) = inputs().into_iter().find(|(n, _)| n == "db-1").unwrap();
    let mut extra = policy.spec.peers[0].clone();
    extra.name = "outside".into();
    extra.allowed_ips = vec!["100.96.20.1/32".into(), "192.168.60.0/24".into()];
    policy.spec.audit_peers.push(extra);
    let guard = |enforcement| {
        rendered(&policy.spec, enforcement, BOTH)
            .ruleset(Family::V4)
            .unwrap()
            .chains[CHAIN_GUARD]
            .clone()
    };
    let line = "-d 192.168.60.0/24 ! -o meshguard0 -m comment --comment \"meshguard:leak\" -j DROP";
    assert!(
        guard(Enforcement::Audit).iter().any(|g| g == line),
        "{:#?}",
        guard(Enforcement::Audit)
    );
    assert!(
        !guard(Enforcement::Enforce).iter().any(|g| g == line),
        "enforcing, audit peers are not installed or routed"
    );
}

/// Two 317-character ids that share their first 316: two kernel comments
/// within 255 characters, each mapped back to its id.
#[test]
fn long_ids_stay_apart_and_map_back() {
    let policy = "p".repeat(253);
    let (a, b) = (
        format!("{policy}/{}a", "r".repeat(62)),
        format!("{policy}/{}b", "r".repeat(62)),
    );
    let s = spec(&format!(
        r#"
revision: r1
interface: {{ meshIP: "100.96.0.1", listenPort: 51820 }}
ingress:
- {{ id: "{a}", action: Allow, set: all, ports: [{{ protocol: TCP, port: 1 }}] }}
- {{ id: "{b}", action: Log, set: all, ports: [{{ protocol: TCP, port: 2 }}] }}
"#
    ));
    let r = rendered(&s, Enforcement::Enforce, BOTH);
    let lines = &r.ruleset(Family::V4).unwrap().chains[CHAIN_IN];
    let comments: Vec<&str> = lines
        .iter()
        .map(|l| {
            l.split("--comment \"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
        })
        .filter(|c| c.starts_with("ppp"))
        .collect();
    assert_eq!(comments.len(), 2);
    assert_ne!(comments[0], comments[1]);
    assert_eq!(
        (r.id_of(comments[0]), r.id_of(comments[1])),
        (a.as_str(), b.as_str())
    );
    let prefix = lines.iter().find(|l| l.contains("NFLOG")).unwrap();
    let prefix = prefix
        .split("--nflog-prefix \"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert!(
        prefix.len() <= 63 && prefix.starts_with("log ppp"),
        "{prefix}"
    );
    support::check(&s, &r, BOTH, Enforcement::Enforce).unwrap();
}
