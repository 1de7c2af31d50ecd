//! What the agent does with the NodePolicy it is given, in a real mesh: a
//! state it cannot enforce as written is refused whole (nothing skipped, so
//! no Deny disappears); addresses written in any valid form are enforced
//! without perpetual "drift"; endpoint names are resolved outside the
//! reconciler, with a timeout, and again at every resync. Needs root.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::time::{Duration, Instant};

use meshguard_crds::{
    Action, NodePolicyStatus,
    node_policy::{AddressSet, FilterRule, Peer},
};
use meshguard_e2e::mesh::{Mesh, Traffic::Tcp};

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
  - { name: web-to-app, action: Allow, from: [{ nodeSelector: { matchLabels: { role: web } } }], to: [{ nodeSelector: { matchLabels: { role: app } } }], ports: [{ protocol: TCP, port: 8080 }] }
  - { name: app-to-db, action: Allow, from: [{ nodeSelector: { matchLabels: { role: app } } }], to: [{ nodeSelector: { matchLabels: { role: db } } }], ports: [{ protocol: TCP, port: 5432 }] }
";

const APPLY: Duration = Duration::from_secs(20);

fn mesh() -> Mesh {
    let mut mesh = Mesh::new(NODES).unwrap();
    let revisions = mesh.set_policies(TIERS).unwrap();
    mesh.start_agents(&[]).unwrap();
    mesh.wait_applied(&revisions, APPLY).unwrap();
    mesh.serve("db-1", &[5432], &[]).unwrap();
    mesh.serve("app-1", &[8080], &[]).unwrap();
    mesh.warm_up(
        &[("app-1", "db-1", Tcp(5432)), ("web-1", "app-1", Tcp(8080))],
        APPLY,
    )
    .unwrap();
    mesh
}

/// Waits until the node's status satisfies `wanted`; returns it.
fn wait_status(
    mesh: &Mesh,
    node: &str,
    what: &str,
    wanted: impl Fn(&NodePolicyStatus) -> bool,
) -> NodePolicyStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = mesh.status(node).filter(|s| wanted(s)) {
            return status;
        }
        assert!(
            started.elapsed() < APPLY,
            "{node}: {what} not reported: {:#?}\n{}",
            mesh.status(node),
            mesh.agent_log(node)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn condition<'a>(status: &'a NodePolicyStatus, type_: &str) -> Option<(&'a str, &'a str, &'a str)> {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.as_str(), c.reason.as_str(), c.message.as_str()))
}

/// Drift repairs the node's agent has counted, by kind (non-zero only).
fn repairs(mesh: &Mesh, node: &str) -> Vec<String> {
    mesh.metrics(node)
        .lines()
        .filter(|l| l.starts_with("meshguard_agent_drift_repairs_total{") && !l.ends_with(" 0"))
        .map(str::to_owned)
        .collect()
}

/// A Deny over an undefined set, an address that does not parse, a rule
/// over an undefined local set: each state is refused as a whole, Applied
/// turns False naming the rule or set and its field, the previous revision
/// stays enforced (app -> db still passes; nothing of the new state is in
/// the kernel).
#[test]
fn a_state_with_a_dangling_reference_or_a_bad_address_is_refused_whole() {
    let mesh = mesh();
    let good = mesh.policy("db-1").unwrap();
    let previous = good.spec.revision.clone();
    let first_set = good.spec.address_sets[0].name.clone();
    let deny = |set: &str, local: Option<&str>| FilterRule {
        id: "broken/deny-everything".into(),
        action: Action::Deny,
        audit: false,
        set: set.into(),
        local: local.map(str::to_owned),
        ports: None,
    };
    let mut cases = Vec::new();
    let mut undefined = good.clone();
    undefined.spec.ingress.insert(0, deny("s-undefined", None));
    cases.push((undefined, "spec.ingress[0]", "s-undefined"));
    let mut unparsable = good.clone();
    unparsable.spec.address_sets.push(AddressSet {
        name: "s-bad".into(),
        addresses: vec!["100.96.0.300".into()],
        cidrs: vec![],
    });
    unparsable.spec.ingress.insert(0, deny("s-bad", None));
    let at = unparsable.spec.address_sets.len() - 1;
    cases.push((
        unparsable,
        &*format!("spec.addressSets[{at}]").leak(),
        "100.96.0.300",
    ));
    let mut bad_cidr = good.clone();
    bad_cidr.spec.address_sets[0]
        .cidrs
        .push("10.0.0.0/33".into());
    cases.push((bad_cidr, "spec.addressSets[0]", "10.0.0.0/33"));
    let mut local = good.clone();
    local
        .spec
        .egress
        .insert(0, deny(&first_set, Some("s-no-such-local")));
    cases.push((local, "spec.egress[0]", "s-no-such-local"));

    for (i, (mut policy, field, named)) in cases.into_iter().enumerate() {
        policy.spec.revision = format!("refused-{i}");
        mesh.write_state("db-1", &policy).unwrap();
        let status = wait_status(&mesh, "db-1", "the refusal", |s| {
            condition(s, "Applied").is_some_and(|(status, _, m)| {
                status == "False" && m.contains(&format!("refused-{i}"))
            })
        });
        let (_, _, message) = condition(&status, "Applied").unwrap();
        assert!(
            message.contains(field) && message.contains(named),
            "case {i}: the message names {field} and {named:?}: {message}"
        );
        assert_eq!(status.observed_revision.as_deref(), Some(previous.as_str()));
        let rules = mesh
            .exec("db-1", "iptables-save", &["-t", "filter"])
            .unwrap();
        assert!(
            !rules.contains("broken/"),
            "case {i}: part of the refused state is in the kernel:\n{rules}"
        );
        assert!(
            mesh.passes("app-1", "db-1", Tcp(5432)),
            "case {i}: the previous state stays enforced"
        );
    }
    mesh.write_state("db-1", &good).unwrap();
    wait_status(&mesh, "db-1", "the good state applied again", |s| {
        condition(s, "Applied").is_some_and(|(status, _, _)| status == "True")
    });
}

/// Addresses in forms the kernel prints differently (host bits set, a /32,
/// upper-case IPv6, IPv4-mapped IPv6) are enforced and then left alone:
/// every 1 s resync finds nothing to repair.
#[test]
fn addresses_in_any_valid_form_cause_no_perpetual_drift() {
    let mesh = mesh();
    let mut policy = mesh.policy("db-1").unwrap();
    policy.spec.revision = "non-canonical".into();
    policy.spec.address_sets.push(AddressSet {
        name: "s-forms".into(),
        addresses: vec!["::FFFF:10.8.0.1".into(), "FD00::ABCD".into()],
        cidrs: vec![
            "10.7.0.1/24".into(),
            "10.6.0.9/32".into(),
            "FD00:0:0:1::1/64".into(),
        ],
    });
    policy.spec.egress.insert(
        0,
        FilterRule {
            id: "forms/deny".into(),
            action: Action::Deny,
            audit: false,
            set: "s-forms".into(),
            local: None,
            ports: None,
        },
    );
    policy.spec.interface.routed_ips = vec!["10.9.0.1/24".into()];
    policy.spec.peers[0]
        .allowed_ips
        .push("192.168.77.1/24".into());
    mesh.write_state("db-1", &policy).unwrap();
    wait_status(&mesh, "db-1", "the state applied", |s| {
        s.observed_revision.as_deref() == Some("non-canonical")
            && condition(s, "Applied").is_some_and(|(status, _, _)| status == "True")
    });
    // Several resyncs (one a second).
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        repairs(&mesh, "db-1"),
        Vec::<String>::new(),
        "{}",
        mesh.agent_log("db-1")
    );
    assert!(mesh.passes("app-1", "db-1", Tcp(5432)));
}

/// Puts `file` over `target` in db-1's mount namespace (its agent's view).
fn bind_over(mesh: &Mesh, file: &std::path::Path, target: &str) {
    mesh.exec(
        "db-1",
        "mount",
        &["--bind", &file.display().to_string(), target],
    )
    .unwrap();
}

/// Gives db-1 a peer that is no real node, its endpoint `endpoint`, under a
/// new revision; returns the peer's key.
fn with_ghost(mesh: &Mesh, revision: &str, endpoint: &str) -> &'static str {
    let key = "R2hvc3RHaG9zdEdob3N0R2hvc3RHaG9zdEdob3N0R2g=";
    let mut policy = mesh.policy("db-1").unwrap();
    policy.spec.revision = revision.into();
    policy.spec.peers.push(Peer {
        name: "ghost".into(),
        public_key: key.into(),
        endpoint: Some(endpoint.into()),
        allowed_ips: vec!["100.96.9.9/32".into()],
    });
    mesh.write_state("db-1", &policy).unwrap();
    key
}

/// A peer whose endpoint is a name: resolved when applied, and again at every
/// resync, so a changed DNS answer reaches the device without a new revision.
/// (The peer is not a real node, so no handshake moves its endpoint instead.)
#[test]
fn endpoint_names_are_resolved_again_at_every_resync() {
    let mesh = mesh();
    let hosts = mesh.dir.join("db-1.hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost\n10.99.0.200 ghost.mesh.test\n").unwrap();
    bind_over(&mesh, &hosts, "/etc/hosts");
    let key = with_ghost(&mesh, "with-a-name", "ghost.mesh.test:51820");
    let endpoint = || {
        mesh.exec("db-1", "wg", &["show", "meshguard0", "endpoints"])
            .unwrap()
            .lines()
            .find(|l| l.starts_with(key))
            .map(|l| l.split_whitespace().nth(1).unwrap_or_default().to_owned())
    };
    wait_status(&mesh, "db-1", "the state applied", |s| {
        s.observed_revision.as_deref() == Some("with-a-name")
    });
    assert_eq!(endpoint().as_deref(), Some("10.99.0.200:51820"));

    // The name moves; written in place (a bind-mounted file keeps its inode).
    std::fs::write(&hosts, "127.0.0.1 localhost\n10.99.0.201 ghost.mesh.test\n").unwrap();
    let started = Instant::now();
    while endpoint().as_deref() != Some("10.99.0.201:51820") {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the new address never reached the device: {:?}\n{}",
            endpoint(),
            mesh.agent_log("db-1")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        mesh.passes("app-1", "db-1", Tcp(5432)),
        "other peers untouched"
    );
}

/// A name whose DNS server never answers: the apply goes on without that
/// endpoint after the agent's timeout (status says which), and /metrics
/// answers meanwhile (resolution holds no lock the scrape needs).
#[test]
fn a_hanging_dns_server_delays_neither_metrics_nor_the_apply_for_long() {
    let mesh = mesh();
    // 192.0.2.53 is routed to the switch, which forwards nothing: queries
    // vanish, and each of 3 attempts waits its 3 s timeout.
    let resolv = mesh.dir.join("db-1.resolv.conf");
    std::fs::write(
        &resolv,
        "nameserver 192.0.2.53\noptions timeout:3 attempts:3\n",
    )
    .unwrap();
    bind_over(&mesh, &resolv, "/etc/resolv.conf");
    with_ghost(&mesh, "with-a-hanging-name", "ghost.invalid.test:51820");
    std::thread::sleep(Duration::from_millis(700));
    let metrics = mesh.metrics("db-1");
    assert!(
        metrics.contains("meshguard_agent_applies_total"),
        "/metrics did not answer while a name was being resolved: {metrics:?}"
    );
    let status = wait_status(&mesh, "db-1", "the state applied", |s| {
        s.observed_revision.as_deref() == Some("with-a-hanging-name")
    });
    let (degraded, reason, message) = condition(&status, "Degraded").unwrap();
    assert_eq!(
        (degraded, reason),
        ("True", "EndpointsUnresolved"),
        "{message}"
    );
    assert!(message.contains("ghost"), "{message}");
    assert!(mesh.passes("app-1", "db-1", Tcp(5432)));
}
