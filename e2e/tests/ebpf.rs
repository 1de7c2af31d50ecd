//! The eBPF backend (node-agent/bpf/meshguard.c and backend::ebpf), driven
//! through `bpf-attach` on one end of a veth pair between two namespaces of
//! this run, from NodePolicy specs parsed as the agent parses them, its
//! pins on a bpffs the backend mounts in a directory of this run. Real
//! sockets prove: the first deciding rule decides (a port Deny before an
//! Allow of its range), for IPv4 and IPv6; replies of allowed flows pass
//! and a connection the other way that no flow and no rule allows does
//! not; an address in no set is dropped, and so is a local address the
//! node does not own; per-rule counters count Log rules and drops; a
//! revision reaches packets whole while revisions flip, and cuts the
//! connections it denies; the programs keep enforcing after the driver
//! exits and a new one takes over from the pins; teardown detaches and
//! removes the pins. The dataplane suite (e2e/tests/dataplane.rs) runs the
//! real agent with `--backend ebpf` too. Needs root.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
};

use meshguard_e2e::{mesh::binary, netns::host};
use serde_json::{Value, json};

/// Two namespaces and a veth between them; removed when dropped, also when
/// the test fails.
struct Pair {
    server: String,
    client: String,
    link: String,
    /// Where the backend mounts its bpffs (a directory of this run).
    bpffs: std::path::PathBuf,
    listeners: Vec<Child>,
}

impl Pair {
    fn new() -> Pair {
        let mut id = [0u8; 3];
        getrandom::fill(&mut id).unwrap();
        let prefix = format!("mg{:02x}{:02x}{:02x}", id[0], id[1], id[2]);
        let pair = Pair {
            server: format!("{prefix}-s"),
            client: format!("{prefix}-c"),
            link: format!("{prefix}s"),
            bpffs: std::env::temp_dir().join(format!("{prefix}-bpffs")),
            listeners: Vec::new(),
        };
        let peer = format!("{prefix}c");
        host("ip", &["netns", "add", &pair.server]).unwrap();
        host("ip", &["netns", "add", &pair.client]).unwrap();
        host(
            "ip",
            &[
                "link",
                "add",
                &pair.link,
                "netns",
                &pair.server,
                "type",
                "veth",
                "peer",
                "name",
                &peer,
                "netns",
                &pair.client,
            ],
        )
        .unwrap();
        for (ns, dev, v4, v6) in [
            (&pair.server, &pair.link, "10.77.0.1/24", "fd77::1/64"),
            (&pair.client, &peer, "10.77.0.2/24", "fd77::2/64"),
        ] {
            pair.ip(ns, &["addr", "add", v4, "dev", dev]);
            pair.ip(ns, &["addr", "add", v6, "dev", dev, "nodad"]);
            pair.ip(ns, &["link", "set", dev, "up"]);
            pair.ip(ns, &["link", "set", "lo", "up"]);
        }
        // An address of the client that no class holds.
        pair.ip(&pair.client, &["addr", "add", "10.77.0.3/24", "dev", &peer]);
        pair
    }

    fn ip(&self, ns: &str, args: &[&str]) {
        let mut all = vec!["-n", ns];
        all.extend_from_slice(args);
        host("ip", &all).unwrap();
    }

    /// A command in `ns`'s network namespace, in this mount namespace (so
    /// that the bpffs the backend mounts outlives it).
    fn command(&self, ns: &str, program: &std::path::Path) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/var/run/netns/{ns}"))
            .arg("--")
            .arg(program);
        command
    }

    /// mesh-probe's echo servers on the server's TCP ports.
    fn serve(&mut self, ports: &str) {
        let child = self
            .command(&self.server, &binary("mesh-probe").unwrap())
            .args(["serve", "--tcp", ports])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.listeners
            .push(ready(child, "the servers did not bind"));
    }

    /// A TCP connection from the client held open `seconds`, a round trip
    /// every 100 ms; its exit status tells whether one failed.
    fn hold(&self, port: u16, seconds: u64) -> Child {
        let child = self
            .command(&self.client, &binary("mesh-probe").unwrap())
            .args([
                "hold",
                &format!("10.77.0.1:{port}"),
                "--seconds",
                &seconds.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        ready(child, "the held connection did not open")
    }

    fn listen(&mut self, ns: &str, address: &str, port: u16) {
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "nc", "-lk", address, &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.listeners.push(child);
    }

    fn connects(&self, ns: &str, from: &str, to: &str, port: u16) -> bool {
        connects(ns, from, to, port)
    }

    fn pings(&self, ns: &str, to: &str) -> bool {
        Command::new("ip")
            .args(["netns", "exec", ns, "ping", "-c", "1", "-W", "1", to])
            .stdin(Stdio::null())
            .output()
            .unwrap()
            .status
            .success()
    }

    /// Waits until the listeners answer (without programs attached).
    fn wait_for_listeners(&self) {
        for _ in 0..50 {
            if self.connects(&self.client, "10.77.0.2", "10.77.0.1", 5000)
                && self.connects(&self.client, "10.77.0.2", "10.77.0.1", 5001)
                && self.connects(&self.client, "10.77.0.2", "10.77.0.9", 5000)
            {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("the listeners never answered");
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for child in &mut self.listeners {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in [&self.server, &self.client] {
            let _ = host("ip", &["netns", "del", ns]);
        }
        // The bpffs the backend mounted (pins and all), then its directory.
        let dir = self.bpffs.display().to_string();
        let _ = host("umount", &["-l", &dir]);
        let _ = std::fs::remove_dir_all(&self.bpffs);
    }
}

/// `child` once mesh-probe printed "ready" (its first line).
fn ready(mut child: Child, otherwise: &str) -> Child {
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready", "{otherwise}");
    child
}

/// Whether a TCP connection from `ns` (bound to `from`) to `to`:`port`
/// opens within a second.
fn connects(ns: &str, from: &str, to: &str, port: u16) -> bool {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "nc",
            "-z",
            "-w",
            "1",
            "-s",
            from,
            to,
            &port.to_string(),
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap()
        .status
        .success()
}

/// `bpf-attach`: the backend in the server's namespace.
struct Driver {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    dir: std::path::PathBuf,
    applies: usize,
}

impl Driver {
    fn start(pair: &Pair) -> Driver {
        Driver::try_start(pair, &[]).unwrap()
    }

    /// Started behind `wrapper` (a command line that runs the rest); the
    /// driver's standard error when it did not start.
    fn try_start(pair: &Pair, wrapper: &[&str]) -> Result<Driver, String> {
        let program = binary("bpf-attach").unwrap();
        let mut command = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut command = pair.command(&pair.server, std::path::Path::new(first));
                command.args(rest).arg(&program);
                command
            }
            None => pair.command(&pair.server, &program),
        };
        let mut child = command
            .arg(&pair.link)
            .arg(&pair.bpffs)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut driver = Driver {
            child,
            stdin,
            stdout,
            dir: std::env::temp_dir().join(format!("{}-specs", pair.server)),
            applies: 0,
        };
        std::fs::create_dir_all(&driver.dir).unwrap();
        if driver.line() != "started" {
            let mut stderr = String::new();
            std::io::Read::read_to_string(&mut driver.child.stderr.take().unwrap(), &mut stderr)
                .unwrap();
            return Err(stderr);
        }
        Ok(driver)
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.trim().to_owned()
    }

    fn send(&mut self, command: &str) -> String {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{command}").unwrap();
        stdin.flush().unwrap();
        self.line()
    }

    /// Applies a spec; returns the map entries written.
    fn apply(&mut self, spec: &Value) -> usize {
        self.applies += 1;
        let file = self.dir.join(format!("{}.json", self.applies));
        std::fs::write(&file, spec.to_string()).unwrap();
        let answer = self.send(&format!("apply {}", file.display()));
        answer
            .strip_prefix("applied ")
            .unwrap_or_else(|| panic!("{answer}"))
            .parse()
            .unwrap()
    }

    /// (direction, rule id) -> packets.
    fn counters(&mut self) -> std::collections::BTreeMap<(String, String), u64> {
        let mut out = std::collections::BTreeMap::new();
        let mut line = self.send("counters");
        while line != "end" {
            let words: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(words[0], "counter", "{line}");
            out.insert(
                (words[1].to_owned(), words[2].to_owned()),
                words[3].parse().unwrap(),
            );
            line = self.line();
        }
        out
    }

    /// What the event ring said since the last call.
    fn events(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        let mut line = self.send("events");
        while line != "end" {
            out.push(line.strip_prefix("said ").unwrap().to_owned());
            line = self.line();
        }
        out
    }

    fn flows(&mut self) -> usize {
        let answer = self.send("flows");
        answer.strip_prefix("flows ").unwrap().parse().unwrap()
    }

    fn teardown(&mut self) {
        assert_eq!(self.send("teardown"), "done");
    }

    /// Ends the driver as an agent exits: nothing torn down.
    fn exit(mut self) {
        self.stdin.take();
        assert!(self.child.wait().unwrap().success());
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.stdin.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The test's NodePolicy: the server owns 10.77.0.1 and fd77::1; the
/// client (10.77.0.2, fd77::2) reaches TCP 4990-5001 but 5001 (a Deny
/// first) and pings; `extra` ingress rules go after a Log rule for all
/// traffic and before those.
fn spec(revision: &str, extra_sets: Value, extra: Value) -> Value {
    let mut sets = vec![
        json!({ "name": "client", "addresses": ["10.77.0.2", "fd77::2"] }),
        // Neighbour discovery on the veth (a WireGuard device has none):
        // solicitations to multicast, answers to the client.
        json!({ "name": "nd", "cidrs": ["fe80::/10", "ff02::/16"] }),
        json!({ "name": "client6", "addresses": ["fd77::2"] }),
    ];
    sets.extend(extra_sets.as_array().unwrap().iter().cloned());
    let mut ingress = vec![
        json!({ "id": "t/nd", "action": "Allow", "set": "nd", "ports": [{ "protocol": "ICMP" }] }),
        json!({ "id": "t/log", "action": "Log", "set": "client" }),
    ];
    ingress.extend(extra.as_array().unwrap().iter().cloned());
    ingress.extend([
        json!({ "id": "t/no-5001", "action": "Deny", "set": "client", "ports": [{ "protocol": "TCP", "port": 5001 }] }),
        json!({ "id": "t/web", "action": "Allow", "set": "client",
                "ports": [{ "protocol": "TCP", "port": 4990, "endPort": 5001 }, { "protocol": "ICMP" }] }),
    ]);
    json!({
        "revision": revision,
        // Neighbour discovery's addresses count as the server's own on
        // the veth.
        "interface": { "meshIP": "10.77.0.1", "listenPort": 51820,
                       "routedIPs": ["fd77::1/128", "fe80::/10", "ff02::/16"] },
        "addressSets": sets,
        "ingress": ingress,
        "egress": [
            { "id": "t/nd", "action": "Allow", "set": "nd", "ports": [{ "protocol": "ICMP" }] },
            { "id": "t/nd-client", "action": "Allow", "set": "client6", "ports": [{ "protocol": "ICMP" }] },
        ],
    })
}

fn prepared() -> Pair {
    let mut pair = Pair::new();
    let (server, client) = (pair.server.clone(), pair.client.clone());
    for port in [5000, 5001] {
        pair.listen(&server, "10.77.0.1", port);
        pair.listen(&server, "fd77::1", port);
    }
    pair.listen(&client, "10.77.0.2", 6000);
    // An address of the server's interface that the NodePolicy does not
    // give the node.
    pair.ip(&server, &["addr", "add", "10.77.0.9/24", "dev", &pair.link]);
    pair.listen(&server, "10.77.0.9", 5000);
    pair.wait_for_listeners();
    pair
}

#[test]
fn tc_programs_decide_by_class_protocol_port_and_flow() {
    let pair = prepared();
    let (server, client) = (pair.server.clone(), pair.client.clone());
    let mut driver = Driver::start(&pair);
    assert!(driver.apply(&spec("r1", json!([]), json!([]))) > 0);

    // The allowed port, both families: the SYN in by the verdict map, the
    // SYN-ACK out by the flow table.
    assert!(pair.connects(&client, "10.77.0.2", "10.77.0.1", 5000));
    assert!(pair.connects(&client, "fd77::2", "fd77::1", 5000));
    // 5001: in the Allow's range, but the Deny before it decides.
    assert!(!pair.connects(&client, "10.77.0.2", "10.77.0.1", 5001));
    assert!(!pair.connects(&client, "fd77::2", "fd77::1", 5001));
    // ICMP and ICMPv6 allowed for the class.
    assert!(pair.pings(&client, "10.77.0.1"));
    assert!(pair.pings(&client, "fd77::1"));
    // The client's echo flow carries no echo the server asks for: no
    // egress rule allows ICMP to 10.77.0.2.
    assert!(!pair.pings(&server, "10.77.0.2"));
    // An address in no set: dropped even to the allowed port.
    assert!(!pair.connects(&client, "10.77.0.3", "10.77.0.1", 5000));
    // An address the node does not own: dropped, whatever the rules.
    assert!(!pair.connects(&client, "10.77.0.2", "10.77.0.9", 5000));
    // The other way: the client has flows open to the server, but a
    // connection the server starts matches no flow and no egress rule.
    assert!(!pair.connects(&server, "10.77.0.1", "10.77.0.2", 6000));

    // Two TCP flows per family at least (5000 v4 and v6) and the pings.
    let flows = driver.flows();
    assert!(flows >= 4, "{flows} flows");
    // Counted per rule, as iptables counts: the Log rule sees every first
    // packet from the client, the Deny its SYNs to 5001, the Allow the
    // flows it opened; default deny and the ownership check theirs.
    let counters = driver.counters();
    let count = |d: &str, id: &str| {
        counters
            .get(&(d.to_owned(), id.to_owned()))
            .copied()
            .unwrap_or(0)
    };
    assert!(count("ingress", "t/web") >= 4, "{counters:?}");
    assert!(count("ingress", "t/no-5001") >= 2, "{counters:?}");
    assert!(
        count("ingress", "t/log") >= count("ingress", "t/web") + count("ingress", "t/no-5001"),
        "{counters:?}"
    );
    assert!(
        count("ingress", "meshguard:default-deny") >= 1,
        "10.77.0.3: {counters:?}"
    );
    assert!(
        count("ingress", "meshguard:not-ours") >= 1,
        "10.77.0.9: {counters:?}"
    );
    assert!(
        count("egress", "meshguard:default-deny") >= 1,
        "to 6000: {counters:?}"
    );

    // The Log rule's packets are logged (as NFLOG would prefix them), one
    // line per first packet it counted; decided packets are not.
    // (Read after the counters: a late retransmission may add to it.)
    let said = driver.events();
    assert!(said.iter().all(|l| l == "log t/log"), "{said:?}");
    assert!(said.len() as u64 >= count("ingress", "t/log"), "{said:?}");

    // Torn down: detached, the pins gone, the denied port answers again.
    driver.teardown();
    assert!(!pair.bpffs.join("meshguard").exists());
    assert!(pair.connects(&client, "10.77.0.2", "10.77.0.1", 5001));
    assert!(pair.connects(&server, "10.77.0.1", "10.77.0.2", 6000));
}

#[test]
fn revisions_switch_whole_and_cut_what_they_deny() {
    let mut pair = prepared();
    let client = pair.client.clone();
    pair.serve("4998,4999");
    // A: 4999 allowed by the range. B: 4999 denied first, and the client
    // split into a class of its own by a new set (every verdict entry of
    // the client's class changes number). All allow 4998 and 5000 and deny
    // 5001.
    let a = spec("a", json!([]), json!([]));
    let b = spec(
        "b",
        json!([{ "name": "one", "addresses": ["10.77.0.2"] }]),
        json!([
            { "id": "t/no-4999", "action": "Deny", "set": "client", "ports": [{ "protocol": "TCP", "port": 4999 }] },
            { "id": "t/one", "action": "Log", "set": "one", "ports": [{ "protocol": "UDP", "port": 53 }] },
        ]),
    );
    // C: 4999 allowed again; another set, other rules.
    let c = spec(
        "c",
        json!([{ "name": "two", "addresses": ["10.77.0.2", "10.77.0.3"] }]),
        json!([{ "id": "t/two", "action": "Deny", "set": "two", "ports": [{ "protocol": "UDP", "port": 9999 }] }]),
    );
    let mut driver = Driver::start(&pair);
    driver.apply(&a);
    // A connection C allows as A does lives on; B denies it: its next
    // packet is decided again, by B, and dropped.
    let mut cut = pair.hold(4999, 60);
    driver.apply(&c);
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert!(
        cut.try_wait().unwrap().is_none(),
        "C cut a connection it allows"
    );
    driver.apply(&b);
    let output = cut.wait_with_output().unwrap();
    assert!(
        !output.status.success(),
        "the connection B denies was not cut"
    );

    let held = pair.hold(4998, 8);

    // Probes while 100 revisions flip: new connections to 5000 always
    // open, to 5001 never.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probe = {
        let stop = stop.clone();
        let client = client.clone();
        std::thread::spawn(move || {
            let (mut opened, mut refused, mut wrong) = (0, 0, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if connects(&client, "10.77.0.2", "10.77.0.1", 5000) {
                    opened += 1;
                } else {
                    wrong.push("5000 refused");
                }
                if connects(&client, "10.77.0.2", "10.77.0.1", 5001) {
                    wrong.push("5001 opened");
                } else {
                    refused += 1;
                }
            }
            (opened, refused, wrong)
        })
    };
    let counted_before = driver.counters();
    let mut written = Vec::new();
    for i in 0..100 {
        written.push(driver.apply([&b, &c, &a][i % 3]));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (opened, refused, wrong) = probe.join().unwrap();
    assert!(
        wrong.is_empty(),
        "{wrong:?} ({opened} opened, {refused} refused)"
    );
    assert!(opened > 0 && refused > 0);
    // Counters stay monotonic while slots no generation uses are released
    // (B's and C's rules come and go 33 times each).
    let counted_after = driver.counters();
    for (key, before) in &counted_before {
        let after = counted_after.get(key).copied().unwrap_or(0);
        assert!(after >= *before, "{key:?}: {before} -> {after}");
    }
    assert!(
        counted_after[&("ingress".to_owned(), "t/web".to_owned())]
            > counted_before[&("ingress".to_owned(), "t/web".to_owned())]
    );
    // Each flip writes into the generation packets do not read what
    // differs between the spec it held (two revisions back) and the new.
    assert!(written.iter().all(|&n| n > 0), "{written:?}");

    // The connection held through the flips never missed a round trip.
    let output = held.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn pinned_programs_outlive_the_driver_and_a_new_one_takes_over() {
    let mut pair = prepared();
    let client = pair.client.clone();
    pair.serve("4999");
    let mut first = Driver::start(&pair);
    first.apply(&spec("r1", json!([]), json!([])));
    let held = pair.hold(4999, 6);
    first.exit();
    // No driver: the pinned programs still enforce.
    assert!(pair.bpffs.join("meshguard").exists());
    assert!(!pair.connects(&client, "10.77.0.2", "10.77.0.1", 5001));
    assert!(pair.connects(&client, "10.77.0.2", "10.77.0.1", 5000));
    // A new driver loads from the pins, takes the links over and applies a
    // revision that denies 5000 now: the link holds its program.
    let mut second = Driver::start(&pair);
    second.apply(&spec(
        "r2",
        json!([]),
        json!([{ "id": "t/no-5000", "action": "Deny", "set": "client", "ports": [{ "protocol": "TCP", "port": 5000 }] }]),
    ));
    assert!(!pair.connects(&client, "10.77.0.2", "10.77.0.1", 5000));
    assert!(!pair.connects(&client, "10.77.0.2", "10.77.0.1", 5001));
    // The connection held across both drivers never missed a round trip.
    assert!(held.wait_with_output().unwrap().status.success());
    second.teardown();
    assert!(pair.connects(&client, "10.77.0.2", "10.77.0.1", 5000));
}

/// What the chart grants an eBPF agent (NET_ADMIN, NET_RAW and BPF, the
/// node's bpffs mounted; crds/tests/chart.rs) is enough: loaded, attached,
/// enforcing, torn down. Without BPF, loading fails and says so.
#[test]
fn the_charts_capabilities_are_enough_and_bpf_is_needed() {
    let pair = prepared();
    let client = pair.client.clone();
    // The chart mounts the node's bpffs; without CAP_SYS_ADMIN the agent
    // could not mount one itself.
    std::fs::create_dir_all(&pair.bpffs).unwrap();
    host(
        "mount",
        &["-t", "bpf", "bpf", &pair.bpffs.display().to_string()],
    )
    .unwrap();
    let chart = "-all,+net_admin,+net_raw,+bpf";
    let mut driver = Driver::try_start(&pair, &["setpriv", "--bounding-set", chart, "--"]).unwrap();
    driver.apply(&spec("r1", json!([]), json!([])));
    assert!(pair.connects(&client, "10.77.0.2", "10.77.0.1", 5000));
    assert!(!pair.connects(&client, "10.77.0.2", "10.77.0.1", 5001));
    driver.teardown();
    drop(driver);

    let without_bpf = "-all,+net_admin,+net_raw";
    let refused = Driver::try_start(&pair, &["setpriv", "--bounding-set", without_bpf, "--"])
        .err()
        .expect("loaded without CAP_BPF");
    assert!(refused.contains("loading the eBPF object"), "{refused}");
}

/// An ICMP error about an allowed flow passes with it, as conntrack's
/// RELATED: a datagram to a UDP port the rules allow but nothing listens
/// on is answered by a port unreachable the egress rules alone would drop
/// (no egress rule allows ICMP to 10.77.0.2), and the client learns of it
/// at once instead of waiting out its timeout.
#[test]
fn icmp_errors_about_an_allowed_flow_pass_with_it() {
    let pair = prepared();
    let mut driver = Driver::start(&pair);
    driver.apply(&spec(
        "r1",
        json!([]),
        json!([{ "id": "t/udp", "action": "Allow", "set": "client", "ports": [{ "protocol": "UDP", "port": 7000 }] }]),
    ));
    let probe = |port: u16| {
        let script = format!(
            "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('10.77.0.2', 0))\ns.connect(('10.77.0.1', {port}))\ns.settimeout(2)\ns.send(b'x')\ntry:\n    s.recv(10)\n    print('answered')\nexcept ConnectionRefusedError:\n    print('refused')\nexcept socket.timeout:\n    print('timeout')\n"
        );
        let out = Command::new("ip")
            .args(["netns", "exec", &pair.client, "python3", "-c", &script])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    // Allowed, nothing listening: the port unreachable comes back.
    assert_eq!(probe(7000), "refused");
    // Not allowed: the datagram is dropped, so is any answer.
    assert_eq!(probe(7001), "timeout");
    // No ICMP flow was made for the error: another unreachable, for a flow
    // nothing allowed, would still be dropped.
    let counters = driver.counters();
    assert!(
        counters
            .get(&("egress".to_owned(), "meshguard:default-deny".to_owned()))
            .copied()
            .unwrap_or(0)
            == 0,
        "the error was let through by its flow, not decided as ICMP: {counters:?}"
    );
}
