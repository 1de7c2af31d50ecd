//! The agent with real packets: four nodes in network namespaces, each with
//! its own boringtun daemon and the real `meshguard-agent` in file mode over
//! UAPI, fed NodePolicies by the real `meshguard compile`. TCP, UDP and ICMP
//! through real sockets. Needs root (CI runs as root).
//!
//! web-1 → app-1 TCP 8080; app-1 → db-1 TCP 5432 and UDP 5353; ICMP between
//! web-1 and app-1; ops-1 is in no policy at all. Every node serves every
//! port, so a failed connection means the filter, not a missing listener.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use meshguard_e2e::mesh::{
    Backend, Mesh, Traffic,
    Traffic::{Icmp, Tcp, Udp},
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
  - { name: ping, action: Allow, from: [{ nodes: [web-1, app-1] }], to: [{ nodes: [web-1, app-1] }], ports: [{ protocol: ICMP }] }
";

/// One allowed flow per pair of peers: they start every handshake.
const WARM: &[(&str, &str, Traffic)] =
    &[("web-1", "app-1", Tcp(8080)), ("app-1", "db-1", Tcp(5432))];

const APPLY: Duration = Duration::from_secs(20);

/// A mesh with TIERS applied and echo servers everywhere.
fn mesh(backend: Backend, extra_agent_flags: &[&str]) -> Mesh {
    let mut mesh = Mesh::new(NODES).expect("mesh");
    mesh.use_backend(backend);
    let revisions = mesh.set_policies(TIERS).expect("compile");
    mesh.start_agents(extra_agent_flags).expect("agents");
    mesh.wait_applied(&revisions, APPLY).expect("applied");
    for (name, _) in NODES {
        mesh.serve(name, &[22, 5432, 8080], &[5353])
            .expect("servers");
    }
    mesh.warm_up(WARM, APPLY).expect("warm");
    mesh
}

/// The behaviour TIERS promises, checked with real traffic.
fn assert_tiers(mesh: &Mesh) {
    assert!(
        mesh.passes("web-1", "app-1", Tcp(8080)),
        "web -> app TCP 8080 is allowed"
    );
    assert!(
        mesh.passes("app-1", "db-1", Tcp(5432)),
        "app -> db TCP 5432 is allowed"
    );
    assert!(
        mesh.passes("app-1", "db-1", Udp(5353)),
        "app -> db UDP 5353 is allowed, and its reply comes back"
    );
    assert!(
        mesh.passes("web-1", "app-1", Icmp) && mesh.passes("app-1", "web-1", Icmp),
        "ICMP between web and app"
    );
    assert!(
        !mesh.tcp("app-1", "web-1", 8080),
        "app -> web is denied: only web opens connections"
    );
    assert!(
        !mesh.tcp("web-1", "app-1", 22),
        "web -> app on another port is denied"
    );
    assert!(!mesh.tcp("web-1", "db-1", 5432), "web -> db is denied");
    assert!(!mesh.udp("db-1", "app-1", 5353), "db -> app UDP is denied");
    assert!(!mesh.ping("web-1", "db-1"), "ICMP web -> db is denied");
    assert!(
        !mesh.tcp("ops-1", "db-1", 5432) && !mesh.ping("ops-1", "app-1"),
        "ops-1 reaches nobody"
    );
}

fn policies_hold_for_real_traffic(backend: Backend) {
    let mesh = mesh(backend, &[]);
    assert_tiers(&mesh);

    // Peers: exactly who may talk; ops-1 is on no interface and has no peer.
    let key = |n: &str| mesh.public_key(n).unwrap();
    let mut app = mesh.wg_peers("app-1");
    app.sort();
    let mut expected = vec![key("db-1"), key("web-1")];
    expected.sort();
    assert_eq!(app, expected);
    assert_eq!(mesh.wg_peers("web-1"), vec![key("app-1")]);
    assert_eq!(mesh.wg_peers("db-1"), vec![key("app-1")]);
    assert!(mesh.wg_peers("ops-1").is_empty());

    // Every drop and accept names its policy and rule.
    let metrics = mesh.metrics("app-1");
    assert!(
        metrics.lines().any(|l| l.starts_with("meshguard_rule_packets_total{policy=\"tiers\",rule=\"web-to-app\",direction=\"ingress\",verdict=\"allowed\"}") && !l.ends_with(" 0")),
        "{metrics}"
    );
    assert!(
        metrics.contains("meshguard_agent_peers 2")
            && metrics.contains("meshguard_agent_applies_total{result=\"ok\"} 1")
            && metrics.contains("meshguard_agent_latest_applied 1"),
        "{metrics}"
    );
    let web = mesh.metrics("web-1");
    assert!(
        web.lines().any(|l| l
            .contains("rule=\"default-deny\",direction=\"egress\",verdict=\"dropped\"")
            && !l.ends_with(" 0")),
        "web's denied attempts are counted as drops: {web}"
    );
    let status = mesh.status("db-1").unwrap();
    assert_eq!(
        (status.backend.as_deref(), status.peers),
        (Some(backend.name()), Some(1))
    );

    // Several resyncs have run by now (every second): nothing drifted, so
    // nothing was "repaired". A resync that misreads the kernel would churn.
    for (name, _) in NODES {
        let metrics = mesh.metrics(name);
        let repairs: Vec<&str> = metrics
            .lines()
            .filter(|l| l.starts_with("meshguard_agent_drift_repairs_total{") && !l.ends_with(" 0"))
            .collect();
        assert!(repairs.is_empty(), "{name}: {repairs:?}");
    }
}

fn a_policy_change_keeps_established_connections(backend: Backend) {
    let mesh = mesh(backend, &[]);
    let held = mesh.hold("app-1", "db-1", 5432, 6).unwrap();
    let changed = TIERS.replace(
        "  - { name: ping,",
        "  - { name: web-to-db, action: Allow, from: [{ nodes: [web-1] }], to: [{ nodes: [db-1] }], ports: [{ protocol: TCP, port: 5432 }] }\n  - { name: ping-gone,",
    ).replace("ports: [{ protocol: ICMP }]", "ports: [{ protocol: ICMP, port: null }]").replace("name: ping-gone, action: Allow", "name: ping-gone, action: Deny");
    let revisions = mesh.set_policies(&changed).unwrap();
    let took = mesh.wait_applied(&revisions, APPLY).unwrap();
    assert!(
        mesh.passes("web-1", "db-1", Tcp(5432)),
        "the new rule is in force (applied in {took:?})"
    );
    assert!(
        !mesh.ping("web-1", "app-1"),
        "the rule that became a Deny is in force"
    );
    let output = held.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the established app -> db connection broke: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn a_stopped_agent_leaves_enforcement_in_place_and_a_restart_changes_nothing(backend: Backend) {
    let mut mesh = mesh(backend, &[]);
    let held = mesh.hold("web-1", "app-1", 8080, 8).unwrap();
    let snapshot = |mesh: &Mesh, node: &str| {
        let mut peers = mesh.wg_peers(node);
        peers.sort();
        (mesh.filter_state(node).unwrap(), peers)
    };
    let before: Vec<_> = NODES.iter().map(|(n, _)| snapshot(&mesh, n)).collect();
    for (name, _) in NODES {
        mesh.stop_agent(name).unwrap();
    }
    assert_tiers(&mesh);
    let stopped: Vec<_> = NODES.iter().map(|(n, _)| snapshot(&mesh, n)).collect();
    assert_eq!(stopped, before, "stopping the agents changed the kernel");

    mesh.start_agents(&[]).unwrap();
    mesh.wait_applied(&mesh.revisions().unwrap(), APPLY)
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500)); // a resync too
    let restarted: Vec<_> = NODES.iter().map(|(n, _)| snapshot(&mesh, n)).collect();
    assert_eq!(
        restarted, before,
        "restarting the agents changed the filter or the peers"
    );
    assert_tiers(&mesh);
    let output = held.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the connection broke across the restart: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn without_the_tunnel_daemon_nothing_leaves_in_cleartext(backend: Backend) {
    let mut mesh = mesh(backend, &[]);
    assert!(mesh.passes("web-1", "app-1", Tcp(8080)));
    let before = mesh.cleartext_packets();
    mesh.stop_daemon("web-1");
    for _ in 0..3 {
        assert!(
            !mesh.tcp("web-1", "app-1", 8080)
                && !mesh.udp("web-1", "app-1", 5353)
                && !mesh.ping("web-1", "app-1")
        );
    }
    let route = mesh
        .exec("web-1", "ip", &["route", "get", &mesh.mesh_ip("app-1")])
        .unwrap_or_else(|e| e.to_string());
    assert!(
        route.contains("blackhole")
            || route.contains("unreachable")
            || route.contains("Invalid argument"),
        "{route}"
    );
    assert_eq!(
        mesh.cleartext_packets(),
        before,
        "mesh traffic reached the switch in cleartext"
    );

    // The check can fail: with the blackholes and the leak guard gone, the
    // same traffic does leave in cleartext and is counted.
    // The agent is stopped first: its resync would put both back within a
    // second, possibly before the datagram is sent. SIGTERM leaves them.
    let blackholes = mesh
        .exec("web-1", "ip", &["-j", "route", "show", "proto", "109"])
        .unwrap();
    assert!(blackholes.contains("blackhole"), "{blackholes}");
    mesh.stop_agent("web-1").unwrap();
    mesh.exec("web-1", "sh", &["-c", "ip route del blackhole 100.96.0.0/12 proto 109 metric 4242; iptables -w -F MESHGUARD-GUARD"]).unwrap();
    mesh.udp("web-1", "app-1", 5353);
    assert!(
        mesh.cleartext_packets() > before,
        "the leak detector saw nothing even without the guards"
    );
}

fn a_resync_repairs_drift(backend: Backend) {
    let mesh = mesh(backend, &[]);
    let app_key = mesh.public_key("app-1").unwrap();
    let mut kinds = mesh.break_filter("db-1").unwrap();
    mesh.exec(
        "db-1",
        "wg",
        &["set", "meshguard0", "peer", &app_key, "remove"],
    )
    .unwrap();
    mesh.exec(
        "db-1",
        "ip",
        &[
            "route",
            "del",
            "blackhole",
            "100.96.0.0/12",
            "proto",
            "109",
            "metric",
            "4242",
        ],
    )
    .unwrap();
    kinds.extend(["peers", "routes"]);
    let started = std::time::Instant::now();
    loop {
        let metrics = mesh.metrics("db-1");
        let repaired = |kind: &str| {
            metrics.lines().any(|l| {
                l.starts_with(&format!(
                    "meshguard_agent_drift_repairs_total{{kind=\"{kind}\"}}"
                )) && !l.ends_with(" 0")
            })
        };
        if kinds.iter().all(|k| repaired(k)) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "not all drift repaired: {metrics}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(mesh.wg_peers("db-1").contains(&app_key));
    if backend == Backend::Iptables {
        let rules = mesh
            .exec("db-1", "iptables", &["-w", "-S", "MESHGUARD-IN"])
            .unwrap();
        assert!(
            rules.contains("tiers/app-to-db") && rules.contains("meshguard:default-deny"),
            "{rules}"
        );
        assert!(
            mesh.exec(
                "db-1",
                "iptables",
                &[
                    "-w",
                    "-C",
                    "OUTPUT",
                    "-o",
                    "meshguard0",
                    "-j",
                    "MESHGUARD-OUT"
                ]
            )
            .is_ok(),
            "the jump into MESHGUARD-OUT is back"
        );
    }
    // app-1 still holds the session db-1 forgot with the removed peer; db-1's
    // agent starts a new handshake right away (else: 15 s of silence).
    mesh.warm_up(WARM, APPLY).unwrap();
    assert_tiers(&mesh);
}

fn a_corrupt_or_foreign_state_is_refused_and_the_previous_stays(backend: Backend) {
    let mesh = mesh(backend, &[]);
    let good = std::fs::read_to_string(mesh.state_file("db-1")).unwrap();
    let revision = mesh.revisions().unwrap()["db-1"].clone();
    let refused = |reason: &str| {
        let started = std::time::Instant::now();
        loop {
            let status = mesh.status("db-1").unwrap();
            let degraded = status
                .conditions
                .iter()
                .find(|c| c.type_ == "Degraded")
                .cloned();
            if let Some(d) = degraded.filter(|d| d.status == "True" && d.message.contains(reason)) {
                assert_eq!(d.reason, "InvalidState");
                assert_eq!(
                    status.observed_revision.as_deref(),
                    Some(revision.as_str()),
                    "still enforcing the previous state"
                );
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "not refused for {reason:?}: {status:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let write = |text: &str| {
        let temporary = mesh.state_file("db-1").with_extension("tmp");
        std::fs::write(&temporary, text).unwrap();
        std::fs::rename(&temporary, mesh.state_file("db-1")).unwrap();
    };
    write("{ this is: [not yaml");
    refused("not valid YAML");
    assert_tiers(&mesh);
    write(&std::fs::read_to_string(mesh.state_file("web-1")).unwrap());
    refused("is for another node (this is db-1)");
    write(&good.replace("interface:", "interfaze:"));
    refused("spec.interface: Required value");
    assert_tiers(&mesh);
    let metrics = mesh.metrics("db-1");
    assert!(
        metrics.contains("meshguard_agent_rejected_states_total 3")
            && metrics.contains("meshguard_agent_latest_applied 0"),
        "{metrics}"
    );
    write(&good);
    let started = std::time::Instant::now();
    while mesh
        .status("db-1")
        .unwrap()
        .conditions
        .iter()
        .any(|c| c.type_ == "Degraded" && c.status == "True")
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the good state did not clear Degraded"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        mesh.metrics("db-1")
            .contains("meshguard_agent_latest_applied 1")
    );
}

fn teardown_waits_for_the_agent_then_removes_everything_it_made(backend: Backend) {
    let mut mesh = mesh(backend, &[]);
    assert!(
        !mesh.filter_leftovers("db-1").is_empty(),
        "enforcing before"
    );
    // As the chart's uninstall hook runs it: started beside the agent, it
    // waits for the agent to stop (its lock), removes everything, then
    // holds the lock until SIGTERM.
    let agent = mesh.agent_bin().display().to_string();
    let lock = format!("--agent-lock={}", mesh.agent_lock("db-1").display());
    let done = mesh.dir.join("db-1.torn-down");
    let done_flag = format!("--done-file={}", done.display());
    let args = [
        "teardown",
        "--wireguard",
        "uapi",
        "--wait-for-agent",
        "--hold",
        &done_flag,
        &lock,
    ];
    let mut teardown = Reaped(
        mesh.command("db-1", &agent, &args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        teardown.0.try_wait().unwrap().is_none() && !done.exists(),
        "the teardown waits while the agent runs"
    );
    assert!(
        !mesh.filter_leftovers("db-1").is_empty(),
        "and removes nothing meanwhile"
    );
    assert!(mesh.tcp("app-1", "db-1", 5432), "nor stops enforcement");
    mesh.stop_agent("db-1").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done.exists() {
        assert!(
            teardown.0.try_wait().unwrap().is_none(),
            "the teardown exited before it was done"
        );
        assert!(Instant::now() < deadline, "the teardown did not finish");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(mesh.filter_leftovers("db-1"), Vec::<String>::new());
    assert!(
        mesh.exec("db-1", "iptables", &["-w", "-S", "MESHGUARD-IN"])
            .is_err(),
        "chains gone"
    );
    assert!(
        !mesh
            .exec("db-1", "iptables-save", &[])
            .unwrap()
            .contains("MESHGUARD"),
        "hooks gone"
    );
    assert!(
        !mesh
            .exec("db-1", "ipset", &["list", "-n"])
            .unwrap()
            .contains("mg4-"),
        "sets gone"
    );
    assert!(
        mesh.exec("db-1", "ip", &["route", "show", "proto", "109"])
            .unwrap()
            .trim()
            .is_empty(),
        "routes gone"
    );
    assert!(mesh.wg_peers("db-1").is_empty(), "peers gone");

    // Held: an agent starting now (a restart, a node just added) waits
    // instead of enforcing again, until the teardown is stopped.
    mesh.start_agent("db-1", &[]).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        mesh.filter_leftovers("db-1"),
        Vec::<String>::new(),
        "an agent enforced while the teardown held its lock"
    );
    let pid = teardown.0.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = teardown.0.wait().unwrap();
    let mut log = String::new();
    std::io::Read::read_to_string(teardown.0.stderr.as_mut().unwrap(), &mut log).unwrap();
    assert!(status.success(), "{log}");
    assert!(
        log.contains("waiting for it to stop") && log.contains("holding the agent lock"),
        "{log}"
    );
    // (The status file still says the revision before the teardown.)
    let deadline = Instant::now() + APPLY;
    while mesh.filter_leftovers("db-1").is_empty() {
        assert!(
            Instant::now() < deadline,
            "the agent did not enforce once the lock was free"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A child process killed when the test ends, passed or not.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `--backend auto` where the eBPF programs cannot load (here: no usable
/// bpffs) enforces with iptables and says so in the status, the log and
/// the metric; `--backend ebpf` there exits naming the cause.
#[test]
fn auto_falls_back_to_iptables_and_says_why() {
    let mut mesh = Mesh::new(NODES).expect("mesh");
    let revisions = mesh.set_policies(TIERS).unwrap();
    mesh.start_agents(&["--backend", "auto", "--bpffs", "/dev/null/bpf"])
        .unwrap();
    mesh.wait_applied(&revisions, APPLY).unwrap();
    for (name, _) in NODES {
        mesh.serve(name, &[22, 5432, 8080], &[5353]).unwrap();
    }
    mesh.warm_up(WARM, APPLY).unwrap();
    assert_tiers(&mesh);
    let status = mesh.status("db-1").unwrap();
    assert_eq!(status.backend.as_deref(), Some("iptables"));
    let fallback = status
        .conditions
        .iter()
        .find(|c| c.type_ == "BackendFallback")
        .expect("a BackendFallback condition");
    assert_eq!(
        (fallback.status.as_str(), fallback.reason.as_str()),
        ("True", "EbpfUnavailable")
    );
    assert!(
        fallback.message.contains("/dev/null/bpf"),
        "{}",
        fallback.message
    );
    assert!(
        mesh.agent_log("db-1")
            .contains("--backend auto: iptables enforces")
    );
    let metrics = mesh.metrics("db-1");
    assert!(
        metrics.contains(
            "meshguard_agent_backend{backend=\"iptables\",requested=\"auto\",fallback=\"true\"} 1"
        ),
        "{metrics}"
    );

    mesh.stop_agent("web-1").unwrap();
    mesh.start_agent("web-1", &["--backend", "ebpf", "--bpffs", "/dev/null/bpf"])
        .unwrap();
    let started = std::time::Instant::now();
    while !mesh
        .agent_log("web-1")
        .contains("--backend ebpf: mounting the BPF filesystem")
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{}",
            mesh.agent_log("web-1")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

meshguard_e2e::for_each_backend!(
    policies_hold_for_real_traffic,
    a_policy_change_keeps_established_connections,
    a_stopped_agent_leaves_enforcement_in_place_and_a_restart_changes_nothing,
    without_the_tunnel_daemon_nothing_leaves_in_cleartext,
    a_resync_repairs_drift,
    a_corrupt_or_foreign_state_is_refused_and_the_previous_stays,
    teardown_waits_for_the_agent_then_removes_everything_it_made,
);
