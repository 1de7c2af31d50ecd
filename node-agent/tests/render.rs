//! Golden tests for what the iptables backend gives the kernel, rendered from
//! the NodePolicies the compiler makes of `examples/` (the operator's golden
//! files), plus checks that hold whatever the golden text says.
//! `MESHGUARD_BLESS=1 cargo test -p meshguard-agent --test render` rewrites them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::path::{Path, PathBuf};

use meshguard_agent::backend::{
    Enforcement,
    iptables::{
        apply::set_script,
        render::{CHAIN_IN, CHAIN_OUT, Family, Options, Rendered, render},
    },
};
use meshguard_crds::{Action, NodePolicy};

fn inputs() -> Vec<(String, NodePolicy)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../operator/tests/golden/examples");
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

fn mesh() -> Vec<ipnet::IpNet> {
    vec!["100.96.0.0/12".parse().unwrap()]
}

fn rendered(policy: &NodePolicy, enforcement: Enforcement) -> Rendered {
    let cidrs = mesh();
    render(
        &policy.spec,
        &Options {
            interface: "meshguard0",
            enforcement,
            nflog_group: 100,
            mesh_cidrs: &cidrs,
        },
    )
}

fn text(r: &Rendered) -> String {
    let sets: Vec<_> = r.sets.iter().collect();
    format!(
        "# ipset restore\n{}# iptables-restore\n{}# ip6tables-restore\n{}",
        set_script(&sets),
        r.restore_text(Family::V4),
        r.restore_text(Family::V6)
    )
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

#[test]
fn rendered_rules_of_the_examples() {
    for (name, policy) in inputs() {
        compare(
            &format!("{name}.rules"),
            &text(&rendered(&policy, Enforcement::Enforce)),
        );
    }
    let (name, policy) = inputs().into_iter().find(|(n, _)| n == "db-1").unwrap();
    compare(
        &format!("{name}.audit.rules"),
        &text(&rendered(&policy, Enforcement::Audit)),
    );
}

#[test]
fn every_rule_is_in_its_chain_in_order_with_its_id() {
    for (name, policy) in inputs() {
        let r = rendered(&policy, Enforcement::Enforce);
        for (chain, list) in [
            (CHAIN_IN, &policy.spec.ingress),
            (CHAIN_OUT, &policy.spec.egress),
        ] {
            let rules = &r.v4.chains[chain];
            assert!(
                rules[0].contains("ESTABLISHED,RELATED") && rules[0].ends_with("-j ACCEPT"),
                "{name}: replies first"
            );
            assert!(
                rules.last().unwrap().contains("meshguard:default-deny")
                    && rules.last().unwrap().ends_with("-j DROP"),
                "{name}: DROP last"
            );
            // Every IPv4-bearing rule appears, in the NodePolicy's order, with its verdict.
            let mut position = 0;
            for rule in list.iter() {
                let comment = format!("--comment \"{}\"", rule.id);
                let Some(found) = rules[position..].iter().position(|r| r.contains(&comment))
                else {
                    continue;
                };
                position += found;
                let kernel = &rules[position];
                match (rule.action, rule.audit) {
                    (Action::Allow, false) => {
                        assert!(kernel.ends_with("-j ACCEPT"), "{name}: {kernel}")
                    }
                    (Action::Deny, false) => {
                        assert!(kernel.ends_with("-j DROP"), "{name}: {kernel}")
                    }
                    (Action::Log, _) => assert!(
                        kernel.contains("-j NFLOG --nflog-prefix \"log "),
                        "{name}: {kernel}"
                    ),
                    (_, true) => assert!(
                        kernel.contains("-j NFLOG --nflog-prefix \"would-"),
                        "{name}: {kernel}"
                    ),
                }
            }
        }
    }
}

#[test]
fn agent_wide_audit_drops_nothing() {
    for (name, policy) in inputs() {
        let r = rendered(&policy, Enforcement::Audit);
        for ruleset in [&r.v4, &r.v6] {
            for (chain, rules) in &ruleset.chains {
                if *chain == "MESHGUARD-GUARD" {
                    continue; // the leak guard stays: cleartext is never an audit question
                }
                assert!(
                    rules.iter().all(|r| !r.ends_with("-j DROP")),
                    "{name} {chain}: {rules:#?}"
                );
                assert!(
                    rules.last().unwrap().ends_with("-j ACCEPT"),
                    "{name} {chain}"
                );
            }
        }
    }
}
