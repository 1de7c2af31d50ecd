//! `make bench`'s dataplane figures, measured on the real agent in network
//! namespaces (root needed, as for the dataplane tests):
//!
//! 1. apply from empty of a NodePolicy with 5,000 peers and 2,000 rules;
//! 2. a one-rule change and a one-set change after it (what was touched);
//! 3. convergence: 10 nodes and a stream of policy changes, each changing
//!    every node's NodePolicy; the time from the last state file written to
//!    every agent reporting the new revision, p50 and p99;
//! 4. TCP throughput through one boringtun tunnel with 10,000 rules in each
//!    direction against the same tunnel with no filter on it (iptables: the
//!    jumps into meshguard's chains removed; eBPF: the programs' links
//!    detached), alternating, in one run; for eBPF also the programs' own
//!    cost per packet (`kernel.bpf_stats_enabled`: run_time_ns / run_cnt)
//!    at 10,000 rules and at 10.
//!
//! Each part runs once per backend (`--backend iptables|ebpf|both`), so the
//! figures of both come from the same run. Apply times are the agent's own
//! (`seconds` in its "applied" log line, the same figure as
//! `meshguard_agent_apply_seconds`).

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::Parser;
use meshguard_crds::NodePolicy;
use meshguard_e2e::{
    mesh::{Backend, EBPF_PINS as PINS, Mesh},
    workload,
};
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
    /// The backends measured, one after the other.
    #[arg(long, default_value = "both", value_parser = ["iptables", "ebpf", "both"])]
    backend: String,
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
    let backends: &[Backend] = match args.backend.as_str() {
        "iptables" => &[Backend::Iptables],
        "ebpf" => &[Backend::Ebpf],
        _ => &[Backend::Iptables, Backend::Ebpf],
    };
    for &backend in backends {
        println!("== backend {} ==", backend.name());
        if matches!(args.part, Part::All | Part::Apply) {
            apply(&args, backend)?;
        }
        if matches!(args.part, Part::All | Part::Convergence) {
            convergence(&args, backend)?;
        }
        if matches!(args.part, Part::All | Part::Throughput) {
            throughput(&args, backend)?;
        }
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

fn apply(args: &Args, backend: Backend) -> anyhow::Result<()> {
    const NODE: &str = "bench-1";
    let mut mesh = Mesh::new(&[(NODE, &[])])?;
    mesh.use_backend(backend);
    let mut policy = workload::large(NODE, "100.96.0.1", args.peers, args.sets, args.rules)?;
    mesh.write_state(NODE, &policy)?;
    let started = Instant::now();
    mesh.start_agent(NODE, &["--log-format", "json", "--resync-interval", "1h"])?;
    mesh.wait_applied(&revision_map(NODE, &policy), Duration::from_secs(300))?;
    let wall = started.elapsed();
    let first = applied(&mesh, NODE, &policy.spec.revision)?;
    let peers = mesh.wg_peers(NODE).len();
    let kernel = match backend {
        Backend::Iptables => {
            let rules = mesh
                .exec(NODE, "iptables-save", &["-t", "filter"])?
                .lines()
                .filter(|l| l.starts_with("-A MESHGUARD-"))
                .count();
            format!("{rules} iptables rules")
        }
        Backend::Ebpf => format!("{} eBPF map entries", first["entries_written"]),
    };
    if peers != args.peers {
        bail!("the device has {peers} peers, not {}", args.peers);
    }
    println!(
        "apply from empty: {} peers, {} NodePolicy rules ({kernel}), {} address sets",
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
            touched.push(match backend {
                Backend::Iptables => {
                    format!("{}r/{}s", fields["rules_edited"], fields["sets_written"])
                }
                Backend::Ebpf => format!("{}e", fields["entries_written"]),
            });
        }
        let touched_what = match backend {
            Backend::Iptables => "kernel rule edits (-D and -I) / sets written",
            Backend::Ebpf => "map entries written or removed",
        };
        println!(
            "{what} changed: median {:.1} ms over {} changes (target <= 100 ms); {touched_what} each time: {}",
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

fn convergence(args: &Args, backend: Backend) -> anyhow::Result<()> {
    let names: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
    let labels = [[("role", "a")], [("role", "b")]];
    let nodes: Vec<(&str, &[(&str, &str)])> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), &labels[i % 2][..]))
        .collect();
    let mut mesh = Mesh::new(&nodes)?;
    mesh.use_backend(backend);
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

fn throughput(args: &Args, backend: Backend) -> anyhow::Result<()> {
    let (a, b) = ("tp-a", "tp-b");
    let mut mesh = Mesh::with_daemon_threads(&[(a, &[]), (b, &[])], Some(args.daemon_threads))?;
    mesh.use_backend(backend);
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
    let policies = |filler: usize| -> anyhow::Result<[NodePolicy; 2]> {
        Ok([
            workload::pair(a, ip_a, (b, &key_b, ip_b, &end_b), 5201, filler)?,
            workload::pair(b, ip_b, (a, &key_a, ip_a, &end_a), 5201, filler)?,
        ])
    };
    let [policy_a, policy_b] = policies(args.filler)?;
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
    // The agents stay up for the whole run (no resync to put the filter
    // back while it is out), so both configurations share the same
    // processes, tunnel and sessions; only whether packets meet the filter
    // differs.
    mesh.start_agents(&["--log-format", "json", "--resync-interval", "1h"])?;
    mesh.wait_applied(&revisions, Duration::from_secs(120))?;
    let filter = Filter::new(&mesh, backend, [a, b], args.filler, &revisions)?;
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
    // eBPF: (run_time_ns, run_cnt) of both programs over the runs with rules.
    let mut cost_full = (0u64, 0u64);
    for round in 0..args.rounds {
        let mut pair = [0.0; 2];
        let order = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for filtered in order {
            if filtered != hooked {
                filter.set(&mesh, filtered)?;
                hooked = filtered;
            }
            std::thread::sleep(Duration::from_secs(2));
            let before = filter.cost(&mesh)?;
            pair[usize::from(!filtered)] = iperf(&mesh)?;
            if let (Some(before), Some(after)) = (before, filter.cost(&mesh)?) {
                // The programs ran exactly when they were attached.
                let ran = after.1 - before.1;
                if (ran > 0) != filtered {
                    bail!(
                        "eBPF programs ran {ran} times in a run {} them",
                        if filtered { "with" } else { "without" }
                    );
                }
                if filtered {
                    cost_full.0 += after.0 - before.0;
                    cost_full.1 += ran;
                }
            }
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
        "TCP through the tunnel ({} backend, boringtun, {} thread(s) each), {} rounds of {} s: {:.0} Mbit/s with {} rules in each direction, {:.0} Mbit/s with no filter: ratio {:.3} (target >= 0.95); paired rounds median {:.3}, range {:.2}-{:.2}",
        backend.name(),
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
    if backend == Backend::Ebpf {
        if !hooked {
            filter.set(&mesh, true)?;
        }
        // The same tunnel and agents with 10 rules in each direction.
        let [small_a, small_b] = policies(10)?;
        mesh.write_state(a, &small_a)?;
        mesh.write_state(b, &small_b)?;
        mesh.wait_applied(
            &BTreeMap::from([
                (a.to_owned(), small_a.spec.revision.clone()),
                (b.to_owned(), small_b.spec.revision.clone()),
            ]),
            Duration::from_secs(60),
        )?;
        let mut cost_small = (0u64, 0u64);
        for _ in 0..3 {
            let before = filter.cost(&mesh)?.context("no program statistics")?;
            iperf(&mesh)?;
            let after = filter.cost(&mesh)?.context("no program statistics")?;
            cost_small.0 += after.0 - before.0;
            cost_small.1 += after.1 - before.1;
        }
        let per = |(ns, n): (u64, u64)| ns as f64 / n.max(1) as f64;
        println!(
            "eBPF programs' cost per packet (kernel.bpf_stats_enabled, both programs on both nodes): {:.0} ns at {} rules ({} packets), {:.0} ns at 10 rules ({} packets): ratio {:.2} (must not grow with the rules)",
            per(cost_full),
            args.filler,
            cost_full.1,
            per(cost_small),
            cost_small.1,
            per(cost_full) / per(cost_small)
        );
        filter.restore_stats()?;
    }
    Ok(())
}

/// What takes a backend's filter off the tunnel and puts it back, with the
/// agents running: iptables' jumps into our chains; the eBPF programs'
/// links (detached, then attached again from the pins by `bpf-attach`,
/// reading the maps the agent wrote).
struct Filter<'a> {
    backend: Backend,
    nodes: [&'a str; 2],
    /// iptables: each node's hooks and its whole listing with them.
    hooks: BTreeMap<&'a str, (Vec<String>, String)>,
    /// eBPF: `kernel.bpf_stats_enabled` before the run.
    stats_were: String,
}

impl<'a> Filter<'a> {
    fn new(
        mesh: &Mesh,
        backend: Backend,
        nodes: [&'a str; 2],
        filler: usize,
        revisions: &BTreeMap<String, String>,
    ) -> anyhow::Result<Filter<'a>> {
        let mut hooks = BTreeMap::new();
        let mut stats_were = String::new();
        match backend {
            Backend::Iptables => {
                for node in nodes {
                    let rules = mesh
                        .exec(node, "iptables", &["-S", "MESHGUARD-IN"])?
                        .lines()
                        .count();
                    if rules < filler {
                        bail!("only {rules} rules in {node}'s MESHGUARD-IN");
                    }
                    // The namespaces hold nothing else, so the hooks are the
                    // whole of INPUT, OUTPUT and FORWARD and appending them
                    // again restores them in their order.
                    let listing = mesh.exec(node, "iptables", &["-S"])?;
                    let node_hooks: Vec<String> = listing
                        .lines()
                        .filter(|l| l.starts_with("-A ") && !l.starts_with("-A MESHGUARD-"))
                        .map(str::to_owned)
                        .collect();
                    if node_hooks.is_empty()
                        || node_hooks.iter().any(|l| !l.contains("-j MESHGUARD-"))
                    {
                        bail!("{node}: unexpected base chains:\n{listing}");
                    }
                    hooks.insert(node, (node_hooks, listing));
                }
            }
            Backend::Ebpf => {
                for node in nodes {
                    let entries = applied(mesh, node, &revisions[node])?["entries_written"]
                        .as_u64()
                        .unwrap_or(0);
                    if entries < filler as u64 {
                        bail!("only {entries} verdict entries written on {node}");
                    }
                }
                stats_were = std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled")?;
                std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "1")?;
            }
        }
        Ok(Filter {
            backend,
            nodes,
            hooks,
            stats_were,
        })
    }

    fn set(&self, mesh: &Mesh, on: bool) -> anyhow::Result<()> {
        match self.backend {
            Backend::Iptables => {
                for (node, (node_hooks, listing)) in &self.hooks {
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
            }
            Backend::Ebpf => {
                let attach = meshguard_e2e::mesh::binary("bpf-attach")?;
                for node in self.nodes {
                    if on {
                        let out = mesh.exec(
                            node,
                            &attach.display().to_string(),
                            &["meshguard0", "/sys/fs/bpf", "attach"],
                        )?;
                        if !out.contains("attached") {
                            bail!("{node}: bpf-attach: {out}");
                        }
                    } else {
                        for link in ["link-ingress", "link-egress"] {
                            mesh.exec(
                                node,
                                "bpftool",
                                &["link", "detach", "pinned", &format!("{PINS}/{link}")],
                            )?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// eBPF: (run_time_ns, run_cnt) summed over both nodes' programs.
    fn cost(&self, mesh: &Mesh) -> anyhow::Result<Option<(u64, u64)>> {
        if self.backend != Backend::Ebpf {
            return Ok(None);
        }
        let mut sum = (0, 0);
        for node in self.nodes {
            let Some((ns, n)) = self.cost_of(mesh, node)? else {
                return Ok(None);
            };
            sum = (sum.0 + ns, sum.1 + n);
        }
        Ok(Some(sum))
    }

    /// One node's programs' statistics (of the programs in the pinned
    /// links, attached or not: a detached one counts nothing).
    fn cost_of(&self, mesh: &Mesh, node: &str) -> anyhow::Result<Option<(u64, u64)>> {
        let mut sum = (0, 0);
        for link in ["link-ingress", "link-egress"] {
            let shown = mesh.exec(
                node,
                "bpftool",
                &["-j", "link", "show", "pinned", &format!("{PINS}/{link}")],
            )?;
            let link: Value = serde_json::from_str(&shown)?;
            let prog = mesh.exec(
                node,
                "bpftool",
                &["-j", "prog", "show", "id", &link["prog_id"].to_string()],
            )?;
            let prog: Value = serde_json::from_str(&prog)?;
            sum.0 += prog["run_time_ns"].as_u64().unwrap_or(0);
            sum.1 += prog["run_cnt"].as_u64().unwrap_or(0);
        }
        Ok(Some(sum))
    }

    fn restore_stats(&self) -> anyhow::Result<()> {
        if self.backend == Backend::Ebpf {
            std::fs::write("/proc/sys/kernel/bpf_stats_enabled", self.stats_were.trim())?;
        }
        Ok(())
    }
}
