//! What the kernel counts and cuts, checked with real packets: agent-wide
//! audit counts each new flow once, under the rule `meshguard check` names;
//! rule ids too long for an iptables comment stay apart; a tightened rule
//! cuts the established connections it no longer allows. Needs root.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::{collections::BTreeMap, time::Duration};

use meshguard_e2e::{
    matrix,
    mesh::{
        Backend, Mesh, Traffic,
        Traffic::{Tcp, Udp},
    },
};

const NODES: &[(&str, &[(&str, &str)])] = &[
    ("app-1", &[("role", "app")]),
    ("db-1", &[("role", "db")]),
    ("ops-1", &[("role", "ops")]),
    ("web-1", &[("role", "web")]),
];

const TIERS: &str = "apiVersion: meshguard.io/v1alpha1
kind: MeshPolicy
metadata: { name: tiers }
spec:
  priority: 100
  rules:
  - { name: web-to-app, action: Allow, from: [{ nodeSelector: { matchLabels: { role: web } } }], to: [{ nodeSelector: { matchLabels: { role: app } } }], ports: [{ protocol: TCP, port: 8080 }] }
  - { name: app-to-db, action: Allow, from: [{ nodeSelector: { matchLabels: { role: app } } }], to: [{ nodeSelector: { matchLabels: { role: db } } }], ports: [{ protocol: TCP, port: 5432 }, { protocol: UDP, port: 5353 }] }
  - { name: no-ssh, action: Deny, from: [{ all: true }], to: [{ all: true }], ports: [{ protocol: TCP, port: 22 }] }
";

const APPLY: Duration = Duration::from_secs(20);

/// `meshguard_rule_packets_total` per (policy, rule, direction), as scraped.
fn rule_packets(metrics: &str) -> BTreeMap<(String, String, String), u64> {
    let mut out = BTreeMap::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("meshguard_rule_packets_total{") else {
            continue;
        };
        let (labels, value) = rest.rsplit_once("} ").unwrap();
        let label = |name: &str| {
            let start = labels.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
            labels[start..].split('"').next().unwrap().to_owned()
        };
        out.insert(
            (label("policy"), label("rule"), label("direction")),
            value.trim().parse().unwrap(),
        );
    }
    out
}

/// The counter key of what `meshguard check` says decides a flow: its
/// policy and rule, or the agent's own default-deny line.
fn deciding(mesh: &Mesh, flows: &[(&str, &str, Traffic)]) -> Vec<(String, String)> {
    let answers = matrix::predict(mesh.meshguard_bin(), &mesh.dir.join("in"), flows).unwrap();
    answers
        .into_iter()
        .map(|(_, by)| match by.split_once('/') {
            Some((policy, rule)) => (policy.to_owned(), rule.to_owned()),
            None => ("meshguard".to_owned(), "default-deny".to_owned()),
        })
        .collect()
}

fn delta(
    before: &BTreeMap<(String, String, String), u64>,
    after: &BTreeMap<(String, String, String), u64>,
) -> BTreeMap<(String, String, String), u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

/// Agent-wide audit reports what enforcement would do: each new flow is
/// counted once, by the rule that would decide it, on both ends, and no
/// rule after it counts it again (default deny included). Nothing is dropped.
fn agent_wide_audit_counts_each_flow_once_under_its_deciding_rule(backend: Backend) {
    let mut mesh = Mesh::new(NODES).unwrap();
    mesh.use_backend(backend);
    let revisions = mesh.set_policies_audit(TIERS).unwrap();
    mesh.start_agents(&["--enforcement", "audit"]).unwrap();
    mesh.wait_applied(&revisions, APPLY).unwrap();
    for (name, _) in NODES {
        mesh.serve(name, &[22, 5432, 8080], &[]).unwrap();
    }
    // Probes of every pair used below, so that the counted ones are not
    // slowed by a first handshake (a retransmitted SYN counts twice).
    let probes = [
        ("web-1", "app-1", Tcp(8080)),
        ("web-1", "db-1", Tcp(5432)),
        ("ops-1", "db-1", Tcp(22)),
    ];
    // Under audit every member is a peer: a flow per pair starts each handshake.
    let mut warm = probes.to_vec();
    warm.extend([
        ("ops-1", "web-1", Tcp(8080)),
        ("ops-1", "app-1", Tcp(8080)),
        ("app-1", "db-1", Tcp(5432)),
    ]);
    mesh.warm_up(&warm, APPLY).unwrap();
    let decided = deciding(&mesh, &probes);
    assert_eq!(
        decided,
        [
            ("tiers".to_owned(), "web-to-app".to_owned()),
            ("meshguard".to_owned(), "default-deny".to_owned()),
            ("tiers".to_owned(), "no-ssh".to_owned()),
        ],
        "meshguard check's view of the flows this test counts"
    );

    let nodes = ["web-1", "app-1", "db-1", "ops-1"];
    let scrape = || -> Vec<_> {
        nodes
            .iter()
            .map(|n| rule_packets(&mesh.metrics(n)))
            .collect()
    };
    let before = scrape();
    const ROUNDS: u64 = 3;
    for _ in 0..ROUNDS {
        for (from, to, traffic) in probes {
            assert!(
                mesh.passes(from, to, traffic),
                "{from} -> {to} {traffic:?} passes under audit"
            );
        }
    }
    let after = scrape();
    let counted: BTreeMap<&str, _> = nodes
        .iter()
        .zip(before.iter().zip(&after))
        .map(|(n, (b, a))| (*n, delta(b, a)))
        .collect();
    let key = |(policy, rule): &(String, String), direction: &str| {
        (policy.clone(), rule.clone(), direction.to_owned())
    };
    // Each flow once at its source (egress) and once at its destination
    // (ingress), under its deciding rule; nothing else counts.
    let mut expected: BTreeMap<&str, BTreeMap<(String, String, String), u64>> = BTreeMap::new();
    // iptables: the ACCEPT after each would-be verdict counts every audited
    // flow (the eBPF programs pass them without a rule of their own).
    let accepted = ("meshguard".to_owned(), "audit-accept".to_owned());
    for ((from, to, _), rule) in probes.iter().zip(&decided) {
        for (node, direction) in [(from, "egress"), (to, "ingress")] {
            let counts = expected.entry(node).or_default();
            *counts.entry(key(rule, direction)).or_default() += ROUNDS;
            if backend == Backend::Iptables {
                *counts.entry(key(&accepted, direction)).or_default() += ROUNDS;
            }
        }
    }
    if backend == Backend::Ebpf {
        // Each audited flow is logged with its would-be verdict, as NFLOG
        // prefixes it under iptables.
        for (node, line) in [
            ("web-1", "would-allow tiers/web-to-app"),
            ("web-1", "would-deny meshguard:default-deny"),
            ("db-1", "would-deny tiers/no-ssh"),
        ] {
            assert!(mesh.agent_log(node).contains(line), "{node}: {line}");
        }
    }
    for node in nodes {
        // Replies (established packets) and the leak guard are not flows.
        let got: BTreeMap<_, _> = counted[node]
            .iter()
            .filter(|((_, r, d), _)| r != "replies" && d != "guard")
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        assert_eq!(
            got,
            expected.get(node).cloned().unwrap_or_default(),
            "{node}: packets counted per rule for {ROUNDS} rounds of {probes:?}"
        );
    }
}

/// A 253-character policy name with two 63-character rule names that share
/// their first 62 letters: ids of 317 characters. Each rule keeps its own
/// kernel rule, comment and counter, and metrics name the full policy and rule.
fn rule_ids_longer_than_a_comment_stay_apart_in_the_kernel(backend: Backend) {
    let policy = format!(
        "{}.{}.{}.{}",
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(61)
    );
    assert_eq!(policy.len(), 253);
    let (first, second) = (
        format!("{}a", "r".repeat(62)),
        format!("{}b", "r".repeat(62)),
    );
    let yaml = format!(
        "apiVersion: meshguard.io/v1alpha1
kind: MeshPolicy
metadata: {{ name: {policy} }}
spec:
  rules:
  - {{ name: {first}, action: Allow, from: [{{ nodes: [web-1] }}], to: [{{ nodes: [db-1] }}], ports: [{{ protocol: TCP, port: 5432 }}] }}
  - {{ name: {second}, action: Allow, from: [{{ nodes: [web-1] }}], to: [{{ nodes: [db-1] }}], ports: [{{ protocol: TCP, port: 8080 }}] }}
"
    );
    let mut mesh = Mesh::new(NODES).unwrap();
    mesh.use_backend(backend);
    let revisions = mesh.set_policies(&yaml).unwrap();
    mesh.start_agents(&[]).unwrap();
    mesh.wait_applied(&revisions, APPLY).unwrap();
    mesh.serve("db-1", &[5432, 8080], &[]).unwrap();
    mesh.warm_up(&[("web-1", "db-1", Tcp(5432))], APPLY)
        .unwrap();

    let before = rule_packets(&mesh.metrics("db-1"));
    for _ in 0..2 {
        assert!(mesh.passes("web-1", "db-1", Tcp(5432)));
    }
    for _ in 0..3 {
        assert!(mesh.passes("web-1", "db-1", Tcp(8080)));
    }
    let counted = delta(&before, &rule_packets(&mesh.metrics("db-1")));
    let ingress = |rule: &str| (policy.clone(), rule.to_owned(), "ingress".to_owned());
    assert_eq!(
        counted.get(&ingress(&first)).copied(),
        Some(2),
        "{counted:#?}"
    );
    assert_eq!(
        counted.get(&ingress(&second)).copied(),
        Some(3),
        "{counted:#?}"
    );

    // The eBPF backend keeps no ids in the kernel (counter slots are
    // numbers); iptables keeps them in comments.
    if backend == Backend::Ebpf {
        return;
    }
    // In the kernel: two rules with two comments, each within the 255
    // characters iptables keeps.
    let saved = mesh
        .exec("db-1", "iptables-save", &["-t", "filter"])
        .unwrap();
    let comments: Vec<&str> = saved
        .lines()
        .filter(|l| l.starts_with("-A MESHGUARD-IN") && l.contains("aaaa"))
        .map(|l| {
            l.split("--comment ")
                .nth(1)
                .unwrap()
                .split(" -j")
                .next()
                .unwrap()
        })
        .collect();
    assert_eq!(comments.len(), 2, "{saved}");
    assert_ne!(comments[0], comments[1], "{saved}");
    assert!(comments.iter().all(|c| c.trim_matches('"').len() <= 255));
}

/// A connection the new revision no longer allows stops when the revision is
/// applied, while the two members stay peers (UDP 5353 is still allowed).
fn a_tightened_rule_cuts_the_established_connections_it_no_longer_allows(backend: Backend) {
    let mut mesh = Mesh::new(NODES).unwrap();
    mesh.use_backend(backend);
    let revisions = mesh.set_policies(TIERS).unwrap();
    mesh.start_agents(&[]).unwrap();
    mesh.wait_applied(&revisions, APPLY).unwrap();
    mesh.serve("db-1", &[5432], &[5353]).unwrap();
    mesh.serve("app-1", &[8080], &[]).unwrap();
    mesh.warm_up(
        &[("app-1", "db-1", Tcp(5432)), ("web-1", "app-1", Tcp(8080))],
        APPLY,
    )
    .unwrap();
    let cut = mesh.hold("app-1", "db-1", 5432, 30).unwrap();
    let kept = mesh.hold("web-1", "app-1", 8080, 8).unwrap();

    let tightened = TIERS.replace(
        "ports: [{ protocol: TCP, port: 5432 }, { protocol: UDP, port: 5353 }]",
        "ports: [{ protocol: UDP, port: 5353 }]",
    );
    assert_ne!(tightened, TIERS);
    let revisions = mesh.set_policies(&tightened).unwrap();
    mesh.wait_applied(&revisions, APPLY).unwrap();
    assert!(
        mesh.passes("app-1", "db-1", Udp(5353)),
        "app-1 and db-1 are still peers"
    );
    assert!(
        !mesh.tcp("app-1", "db-1", 5432),
        "new connections are refused"
    );
    let output = cut.wait_with_output().unwrap();
    assert!(
        !output.status.success(),
        "the held app -> db connection outlived the rule that allowed it"
    );
    let output = kept.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "a connection the new revision still allows broke: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

meshguard_e2e::for_each_backend!(
    agent_wide_audit_counts_each_flow_once_under_its_deciding_rule,
    rule_ids_longer_than_a_comment_stay_apart_in_the_kernel,
    a_tightened_rule_cuts_the_established_connections_it_no_longer_allows,
);
