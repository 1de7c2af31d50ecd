//! `meshguard-cluster-check`: the demo's connectivity matrix on a mesh this
//! tool did not build — a real cluster (`e2e/kind/`), or any members a
//! command can reach. It reads the members and policies the way `meshguard
//! check` does, starts `mesh-probe serve` on every member on the ports the
//! policies name, predicts every cell with `meshguard check`, measures it
//! with a real connection from the member to the other's mesh IP, prints the
//! matrix and ends with the number of disagreements. Exit 0 only at zero.
//!
//! ```text
//!  --inputs DIR (MeshNodes with their mesh IPs, MeshPolicies, ...)
//!      │                    │
//!  meshguard check      --exec "<prefix> {node}" mesh-probe tcp <meshIP>:<port>
//!      └──── prediction ═══ measurement ────┘
//! ```
//!
//! `--exec` is the command prefix that runs a program on a member, `{node}`
//! standing for its name: `e2e/kind/on-node.sh {node}` in a cluster (an
//! exec into the agent pod, which shares the node's network), `ip netns exec
//! <prefix>-{node}` for the namespaces the tests build.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, Command, ExitCode, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::Parser;
use meshguard_e2e::{
    manifests,
    matrix::{self, all_pairs, predict, traffic_of},
    probe::{self, Traffic, probe_invocation},
};

#[derive(Parser)]
#[command(
    about = "Measure a running mesh's connectivity matrix against `meshguard check` (exit 0: no disagreement)"
)]
struct Args {
    /// Manifests as `meshguard check -f` reads them: the MeshNodes (mesh IP
    /// in status.meshIP or spec.meshIP; `kubectl get -o yaml` Lists work)
    /// and the policies they enforce.
    #[arg(long, value_name = "DIR")]
    inputs: PathBuf,
    /// Command prefix that runs a program on a member; `{node}` becomes the
    /// member's name. Split on whitespace.
    #[arg(long, value_name = "TEMPLATE")]
    exec: String,
    /// mesh-probe's path on the members.
    #[arg(long, default_value = "mesh-probe")]
    probe: String,
    /// The meshguard CLI (default: next to this program, else on PATH).
    #[arg(long)]
    meshguard: Option<PathBuf>,
    /// Probes run at once.
    #[arg(long, default_value_t = 16)]
    parallel: usize,
    /// How long predicted-allowed TCP flows may take to pass once (the
    /// first packet to a peer starts a WireGuard handshake).
    #[arg(long, default_value_t = 60)]
    warm_up_seconds: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("meshguard-cluster-check: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The members' mesh IPs, and the traffic the policies name.
fn read_inputs(dir: &Path) -> anyhow::Result<(BTreeMap<String, String>, Vec<Traffic>)> {
    let docs = manifests::read_dir(dir)?;
    let mut members = BTreeMap::new();
    for (file, name, doc) in manifests::mesh_nodes(dir, &docs)? {
        let ip = doc["status"]["meshIP"]
            .as_str()
            .or(doc["spec"]["meshIP"].as_str())
            .with_context(|| {
                format!(
                    "{}: MeshNode/{name}: no status.meshIP or spec.meshIP (is the operator running?)",
                    file.display()
                )
            })?;
        members.insert(name.to_owned(), ip.to_owned());
    }
    let traffic = traffic_of(docs.iter().map(|(_, d)| d))?;
    Ok((members, traffic))
}

/// `--exec` with `{node}` filled in, then the program and its arguments.
fn on_node(template: &str, node: &str, words: &[String]) -> Command {
    let mut all: Vec<String> = template
        .split_whitespace()
        .map(|w| w.replace("{node}", node))
        .collect();
    all.extend(words.iter().cloned());
    let mut command = Command::new(&all[0]);
    command.args(&all[1..]);
    command
}

/// `mesh-probe serve` on every member, on every port the policies name.
/// Dropping this closes each server's standard input, which stops it also
/// on a remote node (a killed `kubectl exec` does not stop the remote
/// process, a closed stdin does); `--lifetime` is the backstop.
struct Servers(Vec<Child>);

impl Servers {
    fn start(args: &Args, members: &[String], traffic: &[Traffic]) -> anyhow::Result<Servers> {
        let (tcp, udp) = matrix::ports(traffic);
        let mut words = probe::serve_invocation(&args.probe, &tcp, &udp);
        let lifetime = args.warm_up_seconds + 600;
        words.extend([
            "--stop-on-eof".into(),
            "--lifetime".into(),
            lifetime.to_string(),
        ]);
        let mut servers = Servers(Vec::new());
        let (ready, readiness) = std::sync::mpsc::channel();
        for member in members {
            let mut child = on_node(&args.exec, member, &words)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .with_context(|| format!("starting mesh-probe serve on {member}"))?;
            // The server prints "ready" once every port is bound; end of
            // output first means it failed (a port in use, no such program).
            let stdout = child.stdout.take().context("the server's stdout")?;
            let ready = ready.clone();
            let member = member.clone();
            std::thread::spawn(move || {
                let mut line = String::new();
                let _ = BufReader::new(stdout).read_line(&mut line);
                let _ = ready.send((member, line.trim() == "ready"));
            });
            servers.0.push(child);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        for _ in members {
            let wait = deadline.saturating_duration_since(Instant::now());
            let (member, is_ready) = readiness
                .recv_timeout(wait)
                .map_err(|_| anyhow::anyhow!("mesh-probe serve not ready within 60 s"))?;
            if !is_ready {
                let i = members
                    .iter()
                    .position(|m| *m == member)
                    .unwrap_or_default();
                let child = &mut servers.0[i];
                let _ = child.kill();
                let mut reason = String::new();
                if let Some(mut stderr) = child.stderr.take() {
                    stderr.read_to_string(&mut reason)?;
                }
                bail!("mesh-probe serve on {member} failed: {}", reason.trim());
            }
        }
        Ok(servers)
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            drop(child.stdin.take());
        }
        // Give remote servers a moment to see the end of their input before
        // the local exec processes go.
        std::thread::sleep(Duration::from_millis(500));
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What each probe's output says: `Some(passed)` when it ran, `None` when
/// the exec itself failed (kubectl's own errors exit 1, like a refused
/// flow), so a refusal is never confused with a probe that did not run.
const EXIT_MARK: &str = "mesh-probe-exit:";

/// The probe wrapped so that it reports its own exit code on stdout.
fn marked(words: &[String]) -> Vec<String> {
    let quoted: Vec<String> = words
        .iter()
        .map(|w| format!("'{}'", w.replace('\'', r"'\''")))
        .collect();
    vec![
        "sh".into(),
        "-c".into(),
        format!("{} >/dev/null 2>&1; echo {EXIT_MARK}$?", quoted.join(" ")),
    ]
}

/// Runs the marked probes, `parallel` at a time: `Some(passed)` for each
/// that ran (126 and 127 — the program is missing — count as not run).
fn run_marked(commands: Vec<Command>, parallel: usize) -> anyhow::Result<Vec<Option<bool>>> {
    Ok(probe::run_collecting(commands, parallel)?
        .into_iter()
        .map(|output| {
            let text = String::from_utf8_lossy(&output.stdout);
            let code = text
                .lines()
                .find_map(|l| l.strip_prefix(EXIT_MARK))
                .and_then(|c| c.trim().parse::<i32>().ok());
            match code {
                Some(126 | 127) | None => None,
                Some(code) => Some(code == 0),
            }
        })
        .collect())
}

/// [`run_marked`], running again (up to twice) the probes that did not run;
/// an error names a flow whose probe never ran.
fn measure_flows(
    flows: &[&(&str, &str, Traffic)],
    command: &dyn Fn(&(&str, &str, Traffic)) -> Command,
    parallel: usize,
) -> anyhow::Result<Vec<bool>> {
    let mut results: Vec<Option<bool>> = vec![None; flows.len()];
    for _ in 0..3 {
        let pending: Vec<usize> = (0..flows.len()).filter(|i| results[*i].is_none()).collect();
        if pending.is_empty() {
            break;
        }
        let outcomes = run_marked(
            pending.iter().map(|i| command(flows[*i])).collect(),
            parallel,
        )?;
        for (i, outcome) in pending.into_iter().zip(outcomes) {
            results[i] = outcome;
        }
    }
    results
        .into_iter()
        .zip(flows)
        .map(|(result, (from, to, traffic))| {
            result.with_context(|| {
                format!(
                    "the probe {from} -> {to} {} did not run (three tries): check --exec and --probe",
                    matrix::label(*traffic)
                )
            })
        })
        .collect()
}

/// `--meshguard`, else the one built alongside, else `meshguard` on PATH.
fn meshguard_cli(args: &Args) -> PathBuf {
    args.meshguard.clone().unwrap_or_else(|| {
        meshguard_e2e::mesh::binary("meshguard").unwrap_or_else(|_| "meshguard".into())
    })
}

fn run(args: &Args) -> anyhow::Result<usize> {
    let (ips, traffic) = read_inputs(&args.inputs)?;
    let names: Vec<String> = ips.keys().cloned().collect();
    println!("Members");
    for (name, ip) in &ips {
        println!("  {name:<24} {ip}");
    }
    let _servers = Servers::start(args, &names, &traffic)?;
    let flows = all_pairs(&names, &traffic);
    let predictions = predict(&meshguard_cli(args), &args.inputs, &flows)?;
    let flow_command = |(from, to, traffic): &(&str, &str, Traffic)| {
        on_node(
            &args.exec,
            from,
            &marked(&probe_invocation(&args.probe, &ips[*to], *traffic)),
        )
    };

    // Every predicted-allowed flow passes once before measuring: the first
    // packet between two nodes waits on their WireGuard handshake.
    let mut cold: Vec<&(&str, &str, Traffic)> = flows
        .iter()
        .zip(&predictions)
        .filter(|(_, (allowed, _))| *allowed)
        .map(|(flow, _)| flow)
        .collect();
    let started = Instant::now();
    while !cold.is_empty() && started.elapsed() < Duration::from_secs(args.warm_up_seconds) {
        let passed = measure_flows(&cold, &flow_command, args.parallel)?;
        let mut passed = passed.into_iter();
        cold.retain(|_| !passed.next().unwrap_or(false));
    }
    if !cold.is_empty() {
        println!(
            "  ({} predicted-allowed flows did not pass within {} s: see the matrix)",
            cold.len(),
            args.warm_up_seconds
        );
    }

    let mut measured = measure_flows(
        &flows.iter().collect::<Vec<_>>(),
        &flow_command,
        args.parallel,
    )?;
    matrix::confirm_refusals(&predictions, &mut measured, |again| {
        let retried: Vec<&(&str, &str, Traffic)> = again.iter().map(|&i| &flows[i]).collect();
        measure_flows(&retried, &flow_command, args.parallel)
    })?;
    let cells = matrix::cells(&flows, predictions, measured);
    println!(
        "\nConnectivity, measured (✓ passed, ✗ refused), grouped by the rule `meshguard check` says decides"
    );
    let disagreements = matrix::print(&cells, None);
    println!(
        "  {} cells, {} allowed",
        cells.len(),
        cells.iter().filter(|c| c.measured).count()
    );
    println!("{}", matrix::summary(disagreements));
    Ok(disagreements)
}
