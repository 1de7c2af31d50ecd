//! The fail-closed promise under faults, measured (docs/reliability.md,
//! rows 1 and 2): flows every revision denies are flooded with raw packets
//! (TCP SYNs, UDP datagrams, ICMP echo requests), counted at the receiver,
//! while the agents apply 100 revisions or are killed with SIGKILL in the
//! middle of an apply 50 times. Not one packet may arrive. Flows every
//! revision allows stay up: a held TCP connection and an echo stream.
//! Four nodes in namespaces, the real agent in file mode, both backends.
//! Needs root (CI runs as root).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use meshguard_e2e::{
    flood::Protocol,
    mesh::{Backend, Counted, Flooded, Flow, Mesh, SavedStates, Traffic::Tcp},
};

const NODES: &[(&str, &[(&str, &str)])] = &[
    ("app-1", &[("role", "app")]),
    ("db-1", &[("role", "db")]),
    ("ops-1", &[("role", "ops")]),
    ("web-1", &[("role", "web")]),
];

/// In every revision.
const BASE: &str = "apiVersion: meshguard.io/v1alpha1
kind: MeshPolicy
metadata: { name: base }
spec:
  priority: 100
  rules:
  - { name: web-to-app, action: Allow, from: [{ nodes: [web-1] }], to: [{ nodes: [app-1] }], ports: [{ protocol: TCP, port: 8080 }] }
  - { name: app-to-db, action: Allow, from: [{ nodes: [app-1] }], to: [{ nodes: [db-1] }], ports: [{ protocol: TCP, port: 5432 }, { protocol: UDP, port: 5353 }] }
  - { name: ping, action: Allow, from: [{ nodes: [web-1, app-1] }], to: [{ nodes: [web-1, app-1] }], ports: [{ protocol: ICMP }] }
";

/// What the second and third revisions add to [`BASE`]: peers come and go
/// (ops-1 with db-1, then with app-1), allowed port ranges end right next
/// to the denied ports, and the denied flows are decided by an explicit
/// Deny in one revision and by the default in the others.
const CHURN: [&str; 2] = [
    "---
apiVersion: meshguard.io/v1alpha1
kind: MeshPolicy
metadata: { name: churn-b }
spec:
  priority: 50
  rules:
  - { name: no-ssh, action: Deny, from: [{ nodes: [web-1] }], to: [{ nodes: [app-1] }], ports: [{ protocol: TCP, port: 22 }] }
  - { name: ops-to-db, action: Allow, from: [{ nodes: [ops-1] }], to: [{ nodes: [db-1] }], ports: [{ protocol: TCP, port: 5432 }] }
  - { name: near-ssh, action: Allow, from: [{ nodes: [web-1] }], to: [{ nodes: [app-1] }], ports: [{ protocol: TCP, port: 20, endPort: 21 }, { protocol: TCP, port: 23, endPort: 30 }] }
  - { name: dns-log, action: Log, from: [{ nodes: [app-1] }], to: [{ nodes: [db-1] }], ports: [{ protocol: UDP, port: 53 }] }
",
    "---
apiVersion: meshguard.io/v1alpha1
kind: MeshPolicy
metadata: { name: churn-c }
spec:
  priority: 60
  rules:
  - { name: near-udp, action: Allow, from: [{ nodes: [web-1] }], to: [{ nodes: [app-1] }], ports: [{ protocol: UDP, port: 9990, endPort: 9998 }, { protocol: UDP, port: 10000, endPort: 10010 }] }
  - { name: ops-ping, action: Allow, from: [{ nodes: [ops-1] }], to: [{ nodes: [app-1] }], ports: [{ protocol: ICMP }] }
  - { name: no-db-ping, action: Deny, from: [{ nodes: [app-1] }], to: [{ nodes: [db-1] }], ports: [{ protocol: ICMP }] }
  - { name: no-8081, action: Deny, from: [{ nodes: [web-1] }], to: [{ nodes: [app-1] }], ports: [{ protocol: TCP, port: 8081 }] }
",
];

/// Denied in every revision, between nodes that are peers in every one
/// (so the packets have a tunnel to take).
const DENIED: [Flow<'static>; 3] = [
    flow("web-1", "app-1", Protocol::Tcp, 22),
    flow("web-1", "app-1", Protocol::Udp, 9999),
    flow("app-1", "db-1", Protocol::Icmp, 0),
];

/// Allowed in every revision, over the same tunnels: flooded once before
/// the faults to show the counters count what passes.
const ALLOWED: [Flow<'static>; 3] = [
    flow("web-1", "app-1", Protocol::Tcp, 8080),
    flow("app-1", "db-1", Protocol::Udp, 5353),
    flow("web-1", "app-1", Protocol::Icmp, 0),
];

const fn flow(
    from: &'static str,
    to: &'static str,
    protocol: Protocol,
    port: u16,
) -> Flow<'static> {
    Flow {
        from,
        to,
        protocol,
        port,
    }
}

const APPLY: Duration = Duration::from_secs(20);
/// One raw packet per flow every 2 ms.
const FLOOD_EVERY_US: u64 = 2000;

/// A mesh enforcing the first of three compiled revisions (saved, so a
/// flip is a file replace, not a compile), warm, its counters checked.
fn prepared(backend: Backend) -> (Mesh, [SavedStates; 3]) {
    let mut mesh = Mesh::new(NODES).expect("mesh");
    mesh.use_backend(backend);
    let compile = |churn: &str| {
        mesh.set_policies(&format!("{BASE}{churn}")).unwrap();
        mesh.saved_states().unwrap()
    };
    let revisions = [compile(""), compile(CHURN[0]), compile(CHURN[1])];
    mesh.install_states(&revisions[0]).unwrap();
    mesh.start_agents(&[]).expect("agents");
    mesh.wait_applied(&revisions[0].revisions, APPLY)
        .expect("applied");
    for (name, _) in NODES {
        mesh.serve(name, &[5432, 8080], &[5353]).expect("servers");
    }
    mesh.warm_up(
        &[("web-1", "app-1", Tcp(8080)), ("app-1", "db-1", Tcp(5432))],
        APPLY,
    )
    .expect("warm");
    // The counters see what the filters let through: most of an allowed
    // flood arrives (a denied flood's 0 is not a deaf counter).
    let floods: Vec<Flooded> = ALLOWED
        .iter()
        .map(|f| mesh.flood(*f, FLOOD_EVERY_US).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(600));
    for flood in floods {
        let counted = flood.finish().unwrap();
        assert!(
            counted.sent >= 100 && counted.received * 10 >= counted.sent * 9,
            "an allowed flood was not counted: {counted:?}"
        );
    }
    (mesh, revisions)
}

fn start_denied_floods(mesh: &Mesh) -> Vec<Flooded<'static>> {
    DENIED
        .iter()
        .map(|f| mesh.flood(*f, FLOOD_EVERY_US).unwrap())
        .collect()
}

/// Every denied flood sent thousands of packets and none arrived.
fn assert_nothing_denied_arrived(floods: Vec<Flooded>) -> Vec<Counted> {
    let counted: Vec<Counted> = floods.into_iter().map(|f| f.finish().unwrap()).collect();
    for c in &counted {
        assert!(c.sent >= 1000, "the flood hardly ran: {c:?}");
        assert_eq!(c.received, 0, "denied packets arrived: {c:?}");
    }
    counted
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn policy_flips_let_no_denied_packet_through(backend: Backend) {
    let (mesh, revisions) = prepared(backend);
    // The echo stream's own loss on this tunnel with nothing changing.
    let idle = mesh.pings("web-1", "app-1", 10).unwrap();
    std::thread::sleep(Duration::from_secs(5));
    let idle = idle.finish().unwrap();

    let floods = start_denied_floods(&mesh);
    let mut held = mesh.hold("web-1", "app-1", 8080, 3600).unwrap();
    let pings = mesh.pings("web-1", "app-1", 10).unwrap();
    let started = Instant::now();
    let mut applies = Vec::new();
    for i in 0..100 {
        let next = &revisions[(i + 1) % 3];
        let flipped = Instant::now();
        mesh.install_states(next).unwrap();
        mesh.wait_applied(&next.revisions, APPLY).unwrap();
        applies.push(flipped.elapsed());
    }
    let flipping = started.elapsed();
    let pinged = pings.finish().unwrap();
    let counted = assert_nothing_denied_arrived(floods);
    let still_holding = held.try_wait().unwrap().is_none();
    let _ = held.kill();
    let output = held.wait_with_output().unwrap();
    eprintln!(
        "flips ({}): 100 revisions in {flipping:?} (median apply {:?}); denied floods {counted:?}; echo stream idle {idle}, while flipping {pinged}",
        backend.name(),
        median(applies)
    );
    assert!(
        still_holding,
        "the held connection broke: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        pinged.sent >= 200 && pinged.lost.is_empty(),
        "echo requests lost while flipping: {pinged} (idle: {idle})"
    );
}

/// What the agents left in each node's kernel: filter and peers.
fn kernel(mesh: &Mesh) -> BTreeMap<String, (Vec<String>, Vec<String>)> {
    NODES
        .iter()
        .map(|(name, _)| {
            let mut peers = mesh.wg_peers(name);
            peers.sort();
            (name.to_string(), (mesh.filter_state(name).unwrap(), peers))
        })
        .collect()
}

/// Lines one kernel has and the other lacks, per node (`+` extra, `-` missing).
fn differences(
    now: &BTreeMap<String, (Vec<String>, Vec<String>)>,
    clean: &BTreeMap<String, (Vec<String>, Vec<String>)>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (node, (filter, peers)) in now {
        let (clean_filter, clean_peers) = &clean[node];
        for (what, have, want) in [
            ("filter", filter, clean_filter),
            ("peer", peers, clean_peers),
        ] {
            out.extend(
                have.iter()
                    .filter(|l| !want.contains(l))
                    .map(|l| format!("{node} {what} + {l}")),
            );
            out.extend(
                want.iter()
                    .filter(|l| !have.contains(l))
                    .map(|l| format!("{node} {what} - {l}")),
            );
        }
    }
    out
}

fn random_below(bound: Duration) -> Duration {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).unwrap();
    let micros = bound.as_micros().max(1) as u64;
    Duration::from_micros(u64::from_le_bytes(bytes) % micros)
}

fn agent_killed_mid_apply_lets_no_denied_packet_through(backend: Backend) {
    let (mut mesh, revisions) = prepared(backend);
    // What each revision leaves in the kernels when nobody is killed, and
    // how long an apply takes (the window the kills land in).
    let mut clean = Vec::new();
    let mut applies = Vec::new();
    for next in revisions.iter().cycle().skip(1).take(6) {
        let flipped = Instant::now();
        mesh.install_states(next).unwrap();
        mesh.wait_revisions(&next.revisions, Duration::from_millis(2), APPLY)
            .unwrap();
        applies.push(flipped.elapsed());
        clean.push(kernel(&mesh));
    }
    // revisions[1], [2], [0], then the same again: the second round
    // re-applies each, and must leave the kernels exactly as the first.
    for round in 0..3 {
        let differences = differences(&clean[round + 3], &clean[round]);
        assert!(
            differences.is_empty(),
            "re-applying a revision changed the kernel: {differences:#?}"
        );
    }
    let clean: Vec<_> = [2, 0, 1].map(|i| clean[i].clone()).to_vec();
    let window = (median(applies) * 3).max(Duration::from_millis(30));

    let floods = start_denied_floods(&mesh);
    let (mut before, mut after) = (0, 0);
    let mut restarts = Vec::new();
    let mut next = 0;
    for i in 0..50 {
        let victim = NODES[i % NODES.len()].0;
        next = (next + 1) % 3;
        mesh.install_states(&revisions[next]).unwrap();
        std::thread::sleep(random_below(window));
        mesh.kill_agent(victim).unwrap();
        let applied = mesh.status(victim).and_then(|s| s.observed_revision)
            == revisions[next].revisions.get(victim).cloned();
        if applied {
            after += 1;
        } else {
            before += 1;
        }
        // What the dead agent last reported says nothing of its successor.
        mesh.forget_status(victim).unwrap();
        let restarted = Instant::now();
        mesh.start_agent(victim, &[]).unwrap();
        if i % 2 == 1 {
            // Every other time, the next revision lands while it starts.
            std::thread::sleep(random_below(Duration::from_millis(300)));
            next = (next + 1) % 3;
            mesh.install_states(&revisions[next]).unwrap();
        }
        mesh.wait_applied(&revisions[next].revisions, APPLY)
            .unwrap();
        restarts.push(restarted.elapsed());
        let differences = differences(&kernel(&mesh), &clean[next]);
        assert!(
            differences.is_empty(),
            "kill {i} ({victim}, {}): the kernels differ from a clean apply of the same revision: {differences:#?}",
            if applied {
                "after its apply"
            } else {
                "before or during its apply"
            }
        );
    }
    let counted = assert_nothing_denied_arrived(floods);
    eprintln!(
        "kills ({}): 50 SIGKILLs within {window:?} of a new revision ({before} before or during the apply, {after} after), 25 restarts met by another revision; restart to applied median {:?}; denied floods {counted:?}",
        backend.name(),
        median(restarts)
    );
    assert!(
        before > 0,
        "no kill landed before its apply finished: the window {window:?} is too short to test anything"
    );
}

meshguard_e2e::for_each_backend!(
    policy_flips_let_no_denied_packet_through,
    agent_killed_mid_apply_lets_no_denied_packet_through,
);
