//! `make bench`'s dataplane figures, measured on the real agent in network
//! namespaces (root needed, as for the dataplane tests):
//!
//! 1. apply from empty of a NodePolicy with 5,000 peers and 2,000 rules;
//! 2. a one-rule change and a one-set change after it (what was touched);
//! 3. convergence: 10 nodes and a stream of policy changes, each changing
//!    every node's NodePolicy; the time from the last state file written to
//!    every agent reporting the new revision, p50 and p99;
//! 4. TCP throughput through one boringtun tunnel with 10,000 rules in each
//!    direction against the same tunnel with the jumps into meshguard's chains
//!    removed (agents still running), alternating, in one run.
//!
//! Apply times are the agent's own (`seconds` in its "applied" log line,
//! the same figure as `meshguard_agent_apply_seconds`).

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::Parser;
use meshguard_crds::NodePolicy;
use meshguard_e2e::{mesh::Mesh, workload};
use serde_json::Value;

#[derive(Parser)]
#[command(about = "Dataplane benchmarks of meshguard-agent (needs root)")]
struct Args {
    #[arg(long, default_value_t = 5000)]
    peers: usize,
    #[arg(long, default_value_t = 2000)]
    rules: usize,
    #[arg(long, default_value_t = 200)]
    sets: usize,
    /// Rule changes (and set changes) measured after the first apply.
    #[arg(long, default_value_t = 5)]
    changes: usize,
    /// Rules in each direction for the throughput run.
    #[arg(long, default_value_t = 10000)]
    filler: usize,
    /// Seconds per iperf3 run.
    #[arg(long, default_value_t = 4)]
    seconds: u32,
    /// Throughput rounds, each one run with rules and one without.
    #[arg(long, default_value_t = 12)]
    rounds: usize,
    /// boringtun worker threads in the throughput run (one per daemon keeps
    /// a 2-core machine from thrashing between two daemons and iperf3).
    #[arg(long, default_value_t = 1)]
    daemon_threads: u16,
    /// Policy changes in the convergence run.
    #[arg(long, default_value_t = 100)]
    stream: usize,
    /// Run only one part.
    #[arg(long, value_enum, default_value = "all")]
    part: Part,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Part {
    All,
    Apply,
    Convergence,
    Throughput,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if matches!(args.part, Part::All | Part::Apply) {
        apply(&args)?;
    }
    if matches!(args.part, Part::All | Part::Convergence) {
        convergence(&args)?;
    }
    if matches!(args.part, Part::All | Part::Throughput) {
        throughput(&args)?;
    }
    Ok(())
}

/// The fields of the agent's "applied" log line for `revision`.
fn applied(mesh: &Mesh, node: &str, revision: &str) -> anyhow::Result<Value> {
    mesh.agent_log(node)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|l| l["fields"].clone())
        .find(|f| f["message"] == "applied" && f["revision"] == revision)
        .with_context(|| format!("{node} logged no apply of {revision}"))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn revision_map(node: &str, policy: &NodePolicy) -> BTreeMap<String, String> {
    BTreeMap::from([(node.to_owned(), policy.spec.revision.clone())])
}

fn apply(args: &Args) -> anyhow::Result<()> {
    const NODE: &str = "bench-1";
    let mut mesh = Mesh::new(&[(NODE, &[])])?;
    let mut policy = workload::large(NODE, "100.96.0.1", args.peers, args.sets, args.rules)?;
    mesh.write_state(NODE, &policy)?;
    let started = Instant::now();
    mesh.start_agent(NODE, &["--log-format", "json", "--resync-interval", "1h"])?;
    mesh.wait_applied(&revision_map(NODE, &policy), Duration::from_secs(300))?;
    let wall = started.elapsed();
    let first = applied(&mesh, NODE, &policy.spec.revision)?;
    let peers = mesh.wg_peers(NODE).len();
    let kernel_rules = mesh
        .exec(NODE, "iptables-save", &["-t", "filter"])?
        .lines()
        .filter(|l| l.starts_with("-A MESHGUARD-"))
        .count();
    if peers != args.peers {
        bail!("the device has {peers} peers, not {}", args.peers);
    }
    println!(
        "apply from empty: {} peers, {} NodePolicy rules ({kernel_rules} iptables rules), {} address sets",
        args.peers, args.rules, args.sets
    );
    println!(
        "  agent apply: {:.3} s (target <= 1 s); from agent start to Applied: {:.3} s",
        first["seconds"].as_f64().unwrap_or(f64::NAN),
        wall.as_secs_f64()
    );
    println!(
        "  agent peak memory (VmHWM): {} MiB",
        mesh.agent_peak_kib(NODE).unwrap_or(0) / 1024
    );

    for (what, change) in [("one rule", 0), ("one set", 1)] {
        let mut seconds = Vec::new();
        let mut touched = Vec::new();
        for k in 0..args.changes {
            if change == 0 {
                let rule = &mut policy.spec.ingress[k * 7 % (args.rules / 2)];
                rule.ports.as_mut().context("bench rules have ports")?[0].port =
                    Some(60000 + k as i32);
            } else {
                let set = &mut policy.spec.address_sets[k * 7 % args.sets];
                set.addresses.push(format!("100.98.{k}.1"));
            }
            policy.spec.revision = format!("change-{change}-{k}");
            mesh.write_state(NODE, &policy)?;
            mesh.wait_applied(&revision_map(NODE, &policy), Duration::from_secs(60))?;
            let fields = applied(&mesh, NODE, &policy.spec.revision)?;
            seconds.push(fields["seconds"].as_f64().unwrap_or(f64::NAN));
            touched.push(format!(
                "{}r/{}s",
                fields["rules_edited"], fields["sets_written"]
            ));
        }
        println!(
            "{what} changed: median {:.1} ms over {} changes (target <= 100 ms); kernel rule edits (-D and -I) / sets written each time: {}",
            median(&mut seconds) * 1000.0,
            args.changes,
            touched.join(" ")
        );
    }
    Ok(())
}

/// One policy set of the stream: `role=a` may reach `role=b` on `port`,
/// and everyone pings everyone; every node's NodePolicy changes with `port`.
fn stream_policies(port: u16) -> String {
    format!(
        "apiVersion: meshguard.io/v1alpha1\nkind: MeshPolicy\nmetadata: {{ name: stream }}\nspec:\n  rules:\n  - name: a-to-b\n    action: Allow\n    from: [{{ nodeSelector: {{ matchLabels: {{ role: \"a\" }} }} }}]\n    to: [{{ nodeSelector: {{ matchLabels: {{ role: \"b\" }} }} }}]\n    ports: [{{ protocol: TCP, port: {port} }}]\n  - name: ping\n    action: Allow\n    from: [{{ nodeSelector: {{}} }}]\n    to: [{{ nodeSelector: {{}} }}]\n    ports: [{{ protocol: ICMP }}]\n"
    )
}

fn convergence(args: &Args) -> anyhow::Result<()> {
    let names: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
    let labels = [[("role", "a")], [("role", "b")]];
    let nodes: Vec<(&str, &[(&str, &str)])> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), &labels[i % 2][..]))
        .collect();
    let mut mesh = Mesh::new(&nodes)?;
    let revisions = mesh.set_policies(&stream_policies(10000))?;
    mesh.start_agents(&["--log-format", "json"])?;
    mesh.wait_applied(&revisions, Duration::from_secs(60))?;
    let mut times = Vec::with_capacity(args.stream);
    for change in 0..args.stream {
        let port = 10001 + u16::try_from(change % 1000)?;
        let revisions = mesh.set_policies(&stream_policies(port))?;
        // From the last state file written (compile writes all, then renames).
        let written = names
            .iter()
            .map(|n| std::fs::metadata(mesh.state_file(n)).and_then(|m| m.modified()))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .max()
            .context("no state file")?;
        // Polled every 2 ms (wait_applied's 20 ms would blur the figure).
        mesh.wait_revisions(
            &revisions,
            Duration::from_millis(2),
            Duration::from_secs(30),
        )
        .with_context(|| format!("change {change}"))?;
        let done = std::time::SystemTime::now();
        times.push(
            done.duration_since(written)
                .unwrap_or_default()
                .as_secs_f64()
                * 1000.0,
        );
    }
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "convergence, 10 nodes, {} policy changes each rewriting every NodePolicy: state file written -> every agent reports the revision: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        times.len(),
        at(0.5),
        at(0.99),
        times.last().copied().unwrap_or_default()
    );
    Ok(())
}

fn throughput(args: &Args) -> anyhow::Result<()> {
    let (a, b) = ("tp-a", "tp-b");
    let mut mesh = Mesh::with_daemon_threads(&[(a, &[]), (b, &[])], Some(args.daemon_threads))?;
    let (ip_a, ip_b) = ("100.96.0.1", "100.96.0.2");
    let endpoint = |name: &str| {
        mesh.nodes
            .iter()
            .find(|n| n.name == name)
            .map(|n| format!("{}:51820", n.underlay))
            .unwrap_or_default()
    };
    let (key_a, key_b, end_a, end_b) = (
        mesh.public_key(a)?,
        mesh.public_key(b)?,
        endpoint(a),
        endpoint(b),
    );
    let policy_a = workload::pair(a, ip_a, (b, &key_b, ip_b, &end_b), 5201, args.filler)?;
    let policy_b = workload::pair(b, ip_b, (a, &key_a, ip_a, &end_a), 5201, args.filler)?;
    mesh.write_state(a, &policy_a)?;
    mesh.write_state(b, &policy_b)?;
    let revisions = BTreeMap::from([
        (a.to_owned(), policy_a.spec.revision.clone()),
        (b.to_owned(), policy_b.spec.revision.clone()),
    ]);
    mesh.spawn(b, "iperf3", &["-s"])?;
    std::thread::sleep(Duration::from_millis(300));

    for node in [a, b] {
        let _ = std::fs::remove_file(mesh.dir.join(format!("{node}.status")));
    }
    // The agents stay up for the whole run (no resync to repair the hooks
    // while they are out), so both configurations share the same processes,
    // tunnel and sessions; only the jumps into meshguard's chains differ.
    mesh.start_agents(&["--log-format", "json", "--resync-interval", "1h"])?;
    mesh.wait_applied(&revisions, Duration::from_secs(120))?;
    let mut hooks = BTreeMap::new();
    for node in [a, b] {
        let rules = mesh
            .exec(node, "iptables", &["-S", "MESHGUARD-IN"])?
            .lines()
            .count();
        if rules < args.filler {
            bail!("only {rules} rules in {node}'s MESHGUARD-IN");
        }
        // The namespaces hold nothing else, so the hooks are the whole of
        // INPUT, OUTPUT and FORWARD and appending them again restores them
        // in their order.
        let listing = mesh.exec(node, "iptables", &["-S"])?;
        let node_hooks: Vec<String> = listing
            .lines()
            .filter(|l| l.starts_with("-A ") && !l.starts_with("-A MESHGUARD-"))
            .map(str::to_owned)
            .collect();
        if node_hooks.is_empty() || node_hooks.iter().any(|l| !l.contains("-j MESHGUARD-")) {
            bail!("{node}: unexpected base chains:\n{listing}");
        }
        hooks.insert(node, (node_hooks, listing));
    }
    let set_hooks = |mesh: &Mesh, on: bool| -> anyhow::Result<()> {
        for (node, (node_hooks, listing)) in &hooks {
            for rule in node_hooks {
                let rule = if on {
                    rule.clone()
                } else {
                    rule.replacen("-A", "-D", 1)
                };
                let words: Vec<&str> = rule.split_whitespace().collect();
                mesh.exec(node, "iptables", &words)?;
            }
            let now = mesh.exec(node, "iptables", &["-S"])?;
            let hooked = now.lines().any(|l| node_hooks.iter().any(|h| h == l));
            if hooked != on || (on && &now != listing) {
                bail!(
                    "{node}: hooks not {}:\n{now}",
                    if on { "restored" } else { "removed" }
                );
            }
        }
        Ok(())
    };
    let iperf = |mesh: &Mesh| -> anyhow::Result<f64> {
        let out = mesh.exec(
            a,
            "iperf3",
            &["-c", ip_b, "-t", &args.seconds.to_string(), "-J"],
        )?;
        let report: Value = serde_json::from_str(&out)?;
        report["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .context("iperf3 reported no throughput")
    };

    // Warm up: the handshake and TCP's ramp are not what is measured.
    let _ = mesh.exec(a, "iperf3", &["-c", ip_b, "-t", "2"]);
    // Rounds alternate which configuration goes first (ABBA), and each run
    // starts after a pause, so drift in the machine's speed hits both alike.
    let (mut with_rules, mut without, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let mut hooked = true;
    for round in 0..args.rounds {
        let mut pair = [0.0; 2];
        let order = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for filtered in order {
            if filtered != hooked {
                set_hooks(&mesh, filtered)?;
                hooked = filtered;
            }
            std::thread::sleep(Duration::from_secs(2));
            pair[usize::from(!filtered)] = iperf(&mesh)?;
        }
        with_rules.push(pair[0]);
        without.push(pair[1]);
        ratios.push(pair[0] / pair[1]);
    }
    let raw = |v: &[f64]| {
        v.iter()
            .map(|b| format!("{:.0}", b / 1e6))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "  Mbit/s by round, with rules: {}; without: {}",
        raw(&with_rules),
        raw(&without)
    );
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (filtered, bare) = (mean(&with_rules), mean(&without));
    let paired = median(&mut ratios);
    ratios.sort_by(f64::total_cmp);
    println!(
        "TCP through the tunnel (boringtun, {} thread(s) each), {} rounds of {} s: {:.0} Mbit/s with {} rules in each direction, {:.0} Mbit/s with no rules: ratio {:.3} (target >= 0.95); paired rounds median {:.3}, range {:.2}-{:.2}",
        args.daemon_threads,
        args.rounds,
        args.seconds,
        filtered / 1e6,
        args.filler,
        bare / 1e6,
        filtered / bare,
        paired,
        ratios.first().copied().unwrap_or(f64::NAN),
        ratios.last().copied().unwrap_or(f64::NAN),
    );
    Ok(())
}
