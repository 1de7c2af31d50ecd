//! `meshguard-cluster-check` — what `e2e/kind/` runs against a real
//! cluster through `kubectl exec` — run here against a mesh in network
//! namespaces through `ip netns exec`: with inputs that describe what the
//! mesh enforces it measures every cell and finds no disagreement; with a
//! policy the mesh does not enforce it counts exactly the cells that policy
//! would change, and fails.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use meshguard_e2e::{matrix::summary, mesh::Mesh};

const NODES: [(&str, &[(&str, &str)]); 3] = [
    ("web", &[("role", "web")]),
    ("app", &[("role", "app")]),
    ("db", &[("role", "db")]),
];

const POLICIES: &str = "\
apiVersion: meshguard.io/v1alpha1
kind: MeshPolicy
metadata: { name: tiers }
spec:
  rules:
  - name: web-to-app
    action: Allow
    from: [{ nodeSelector: { matchLabels: { role: web } } }]
    to: [{ nodeSelector: { matchLabels: { role: app } } }]
    ports: [{ protocol: TCP, port: 8080 }]
  - name: app-to-db
    action: Allow
    from: [{ nodeSelector: { matchLabels: { role: app } } }]
    to: [{ nodeSelector: { matchLabels: { role: db } } }]
    ports: [{ protocol: TCP, port: 5432 }, { protocol: ICMP }]
";

/// Not enforced by the mesh: predicts tcp/9100 allowed everywhere.
const UNENFORCED: &str = "\
---
apiVersion: meshguard.io/v1alpha1
kind: MeshPolicy
metadata: { name: scrape }
spec:
  rules:
  - { name: node-exporter, action: Allow, from: [{ all: true }], to: [{ all: true }], ports: [{ protocol: TCP, port: 9100 }] }
";

/// The members as `kubectl get meshnodes -o yaml` lists them: a List,
/// the mesh IP in status, the fields a server adds.
fn members_list(mesh: &Mesh, with_ips: bool) -> String {
    let mut text = String::from("apiVersion: v1\nkind: List\nitems:\n");
    for (name, labels) in NODES {
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        let status = if with_ips {
            format!(
                "  status: {{ meshIP: {}, conditions: [] }}\n",
                mesh.mesh_ip(name)
            )
        } else {
            String::new()
        };
        text.push_str(&format!(
            "- apiVersion: meshguard.io/v1alpha1\n  kind: MeshNode\n  metadata: {{ name: {name}, labels: {{ {} }}, resourceVersion: \"42\", uid: 00000000-0000-0000-0000-00000000000{} }}\n  spec: {{ publicKey: {} }}\n{status}",
            labels.join(", "),
            name.len(),
            mesh.public_key(name).unwrap(),
        ));
    }
    text
}

fn inputs(mesh: &Mesh, name: &str, policies: &str, with_ips: bool) -> PathBuf {
    let dir = mesh.dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("meshnodes.yaml"), members_list(mesh, with_ips)).unwrap();
    std::fs::write(dir.join("policies.yaml"), policies).unwrap();
    dir
}

/// Runs the tool; `warm_up` bounds how long it waits for predicted-allowed
/// flows to pass once (flows the mesh refuses never do).
fn check(mesh: &Mesh, inputs: &Path, warm_up: u64) -> Output {
    check_with(mesh, inputs, warm_up, env!("CARGO_BIN_EXE_mesh-probe"))
}

fn check_with(mesh: &Mesh, inputs: &Path, warm_up: u64, probe: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshguard-cluster-check"))
        .arg("--inputs")
        .arg(inputs)
        .args(["--exec", &format!("ip netns exec {}-{{node}}", mesh.prefix)])
        .args(["--probe", probe])
        .arg("--meshguard")
        .arg(mesh.meshguard_bin())
        .args(["--warm-up-seconds", &warm_up.to_string()])
        .output()
        .unwrap()
}

#[test]
fn the_cluster_check_measures_a_running_mesh_against_meshguard_check() {
    let mut mesh = Mesh::new(&NODES).unwrap();
    let revisions = mesh.set_policies(POLICIES).unwrap();
    mesh.start_agents(&[]).unwrap();
    mesh.wait_applied(&revisions, Duration::from_secs(30))
        .unwrap();

    let agreeing = check(&mesh, &inputs(&mesh, "agreeing", POLICIES, true), 30);
    let stdout = String::from_utf8_lossy(&agreeing.stdout);
    let report = format!("{stdout}{}", String::from_utf8_lossy(&agreeing.stderr));
    assert_eq!(agreeing.status.code(), Some(0), "{report}");
    // 6 ordered pairs x (tcp/5432, tcp/8080, icmp); 3 of them allowed.
    assert!(stdout.contains("18 cells, 3 allowed"), "{report}");
    assert!(stdout.contains("tiers/app-to-db"), "{report}");
    assert!(
        stdout.lines().last() == Some(summary(0).as_str()),
        "{report}"
    );

    let wrong = format!("{POLICIES}{UNENFORCED}");
    let disagreeing = check(&mesh, &inputs(&mesh, "disagreeing", &wrong, true), 3);
    let stdout = String::from_utf8_lossy(&disagreeing.stdout);
    let report = format!("{stdout}{}", String::from_utf8_lossy(&disagreeing.stderr));
    assert_eq!(disagreeing.status.code(), Some(1), "{report}");
    // Every ordered pair on tcp/9100: predicted allowed, refused by the mesh.
    assert_eq!(
        stdout
            .lines()
            .filter(
                |l| l.contains("!! tcp/9100 predicted allow (scrape/node-exporter), measured deny")
            )
            .count(),
        6,
        "{report}"
    );
    assert!(
        stdout.lines().last() == Some(summary(6).as_str()),
        "{report}"
    );

    // A probe that cannot run is an error, never a refused flow.
    let agreeing_inputs = mesh.dir.join("agreeing");
    let missing = check_with(&mesh, &agreeing_inputs, 3, "/nonexistent/mesh-probe");
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(missing.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("mesh-probe serve on ")
            && stderr.contains(" failed: ")
            && stderr.contains("/nonexistent/mesh-probe"),
        "{stderr}"
    );

    let no_ips = check(&mesh, &inputs(&mesh, "no-ips", POLICIES, false), 3);
    let stderr = String::from_utf8_lossy(&no_ips.stderr);
    assert_eq!(no_ips.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("meshnodes.yaml: MeshNode/web: no status.meshIP or spec.meshIP"),
        "{stderr}"
    );
}

/// A server started through `kubectl exec -i` outlives a killed exec; it
/// must stop when its standard input closes. It runs in a network namespace
/// of its own (`unshare --net`, gone with the process) so that no socket of
/// a test running alongside can hold its port.
#[test]
fn a_probe_server_stops_when_its_input_closes() {
    use std::io::BufRead;
    let mut server = Command::new("unshare")
        .arg("--net")
        .arg(env!("CARGO_BIN_EXE_mesh-probe"))
        .args(["serve", "--tcp", "9000", "--udp", "9000", "--stop-on-eof"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    std::io::BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), "ready", "the server never bound its ports");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        server.try_wait().unwrap().is_none(),
        "running while its input is open"
    );
    drop(server.stdin.take());
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = server.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still serving after its input closed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
