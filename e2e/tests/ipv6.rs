//! An IPv6 mesh: mesh IPs from an IPv6 CIDR, the same tiers as the IPv4
//! dataplane test, enforced by either backend (iptables: its ip6tables half). TCP, UDP
//! and ICMPv6 through real sockets. Needs root.
//!
//! SCTP is rendered and matched by the kernel here (xt_sctp and conntrack's
//! SCTP support are built in), but SCTP sockets need the `sctp` module
//! (CONFIG_IP_SCTP), which these machines' kernel lacks, so no SCTP flow is
//! sent; `node-agent/tests/render.rs` covers the SCTP rules.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::time::Duration;

use meshguard_e2e::mesh::{
    Backend, Mesh,
    Traffic::{Icmp, Tcp, Udp},
};

const NODES: &[(&str, &[(&str, &str)])] = &[
    ("app-1", &[("role", "app")]),
    ("db-1", &[("role", "db")]),
    ("web-1", &[("role", "web")]),
];

const TIERS: &str = "apiVersion: meshguard.io/v1alpha1
kind: MeshPolicy
metadata: { name: tiers }
spec:
  rules:
  - { name: web-to-app, action: Allow, from: [{ nodeSelector: { matchLabels: { role: web } } }], to: [{ nodeSelector: { matchLabels: { role: app } } }], ports: [{ protocol: TCP, port: 8080 }, { protocol: ICMP }] }
  - { name: app-to-db, action: Allow, from: [{ nodeSelector: { matchLabels: { role: app } } }], to: [{ nodeSelector: { matchLabels: { role: db } } }], ports: [{ protocol: TCP, port: 5432 }, { protocol: UDP, port: 5353 }] }
";

const MESH: &str = "fd5a:6d67::/112";

fn an_ipv6_mesh_is_enforced(backend: Backend) {
    let mut mesh = Mesh::new(NODES).unwrap();
    mesh.use_backend(backend);
    let revisions = mesh
        .set_policies_with(TIERS, &["--mesh-cidr", MESH])
        .unwrap();
    assert!(
        mesh.mesh_ip("db-1").starts_with("fd5a:6d67::"),
        "{}",
        mesh.mesh_ip("db-1")
    );
    mesh.start_agents(&["--mesh-cidr", MESH]).unwrap();
    mesh.wait_applied(&revisions, Duration::from_secs(20))
        .unwrap();
    for (name, _) in NODES {
        mesh.serve(name, &[22, 5432, 8080], &[5353]).unwrap();
    }
    mesh.warm_up(
        &[("web-1", "app-1", Tcp(8080)), ("app-1", "db-1", Tcp(5432))],
        Duration::from_secs(20),
    )
    .unwrap();

    assert!(mesh.passes("web-1", "app-1", Tcp(8080)));
    assert!(
        mesh.passes("web-1", "app-1", Icmp),
        "ICMPv6 is ICMP's IPv6 half"
    );
    assert!(mesh.passes("app-1", "db-1", Tcp(5432)));
    assert!(
        mesh.passes("app-1", "db-1", Udp(5353)),
        "and its reply comes back"
    );
    assert!(
        !mesh.tcp("app-1", "web-1", 8080),
        "only web opens connections"
    );
    assert!(!mesh.tcp("web-1", "app-1", 22), "another port");
    assert!(!mesh.ping("app-1", "db-1"), "ICMP is not allowed app -> db");
    assert!(!mesh.tcp("web-1", "db-1", 5432), "web -> db");

    if backend == Backend::Iptables {
        let rules = mesh
            .exec("db-1", "ip6tables", &["-w", "-S", "MESHGUARD-IN"])
            .unwrap();
        assert!(
            rules.contains("tiers/app-to-db") && rules.contains("-p udp"),
            "{rules}"
        );
    }
    let metrics = mesh.metrics("db-1");
    assert!(
        metrics.lines().any(|l| l.starts_with("meshguard_rule_packets_total{policy=\"tiers\",rule=\"app-to-db\",direction=\"ingress\",verdict=\"allowed\"}") && !l.ends_with(" 0")),
        "{metrics}"
    );
    if backend == Backend::Iptables {
        // On an IPv6 mesh the IPv4 chains hold no policy rules: only the ones
        // that drop everything. The status counts the IPv6 rules alone.
        let v4 = mesh
            .exec("db-1", "iptables", &["-w", "-S", "MESHGUARD-IN"])
            .unwrap();
        assert!(!v4.contains("tiers/"), "{v4}");
        let status = mesh.status("db-1").unwrap();
        assert_eq!(status.rules, Some(2), "{status:?}");
    }
}

meshguard_e2e::for_each_backend!(an_ipv6_mesh_is_enforced,);
