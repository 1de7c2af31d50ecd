//! Prints the compiler's figures at scale (see `docs/benchmarks.md`): full
//! compile time and peak memory, recompile after one policy changes, the
//! largest NodePolicy, and how many NodePolicies the change touches.
//! Run with `cargo run --release -p meshguard-operator --example compile_scale`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark driver: a panic is a failure report

#[path = "../benches/support/scale.rs"]
mod scale;

use std::time::Instant;

use meshguard_operator::compile::{Compiled, Inputs, compile};

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn run(
    members: &[meshguard_operator::members::Member],
    policies: &[meshguard_crds::MeshPolicy],
) -> Compiled {
    compile(&Inputs {
        members,
        policies,
        chains: &[],
        secrets: &[],
        config_maps: &[],
        listen_port: 51820,
    })
}

fn main() {
    let members = scale::members();
    let policies = scale::policies();
    let rules: usize = policies.iter().map(|p| p.spec.rules.len()).sum();
    let before = peak_rss_mib();
    let start = Instant::now();
    let compiled = run(&members, &policies);
    let full = start.elapsed();
    let peak = peak_rss_mib();
    println!(
        "inputs: {} members, {} policies, {rules} rules; {} classes",
        members.len(),
        policies.len(),
        compiled.class_count()
    );
    println!(
        "full compile: {:.3} s; peak RSS {peak:.0} MiB ({before:.0} MiB before compiling)",
        full.as_secs_f64()
    );

    let mut largest = (0usize, String::new(), 0usize);
    let start = Instant::now();
    for m in &members {
        let spec = compiled.node_policy(&m.name).unwrap();
        let bytes = serde_json::to_vec(&spec).unwrap().len();
        if bytes > largest.0 {
            largest = (bytes, m.name.clone(), spec.peers.len());
        }
    }
    let expand = start.elapsed();
    println!("  {}", sections(&compiled.node_policy(&largest.1).unwrap()));
    let object =
        meshguard_crds::NodePolicy::new(&largest.1, compiled.node_policy(&largest.1).unwrap());
    let yaml = serde_saphyr::to_string(&object).unwrap().len();
    println!(
        "largest NodePolicy: {} ({} peers): {:.0} KiB as JSON, {:.0} KiB as YAML (limit 1024 KiB); expanding all {} took {:.2} s",
        largest.1,
        largest.2,
        largest.0 as f64 / 1024.0,
        yaml as f64 / 1024.0,
        members.len(),
        expand.as_secs_f64()
    );

    let mut times = Vec::new();
    let mut touched = Vec::new();
    for (i, which) in [17usize, 333, 500, 901, 42].into_iter().enumerate() {
        let changed = scale::with_one_changed(&policies, which, 1000 + i as u64);
        let start = Instant::now();
        let again = run(&members, &changed);
        times.push(start.elapsed().as_secs_f64());
        touched.push(
            members
                .iter()
                .filter(|m| again.revision(&m.name) != compiled.revision(&m.name))
                .count(),
        );
    }
    times.sort_by(f64::total_cmp);
    println!(
        "recompile after one policy changes: median {:.3} s (min {:.3}, max {:.3}); NodePolicies whose revision changed: {:?} of {}",
        times[times.len() / 2],
        times[0],
        times[times.len() - 1],
        touched,
        members.len()
    );
    println!("peak RSS at the end: {:.0} MiB", peak_rss_mib());
}

fn json_len<T: serde::Serialize>(value: &T) -> usize {
    serde_json::to_vec(value).unwrap().len()
}

/// Bytes of each part of a NodePolicy spec, as JSON.
fn sections(spec: &meshguard_crds::NodePolicySpec) -> String {
    format!(
        "peers {} KiB ({}), sets {} KiB ({} sets, {} prefixes), ingress {} KiB ({}), egress {} KiB ({})",
        json_len(&spec.peers) / 1024,
        spec.peers.len(),
        json_len(&spec.address_sets) / 1024,
        spec.address_sets.len(),
        spec.address_sets
            .iter()
            .map(|s| s.cidrs.len())
            .sum::<usize>(),
        json_len(&spec.ingress) / 1024,
        spec.ingress.len(),
        json_len(&spec.egress) / 1024,
        spec.egress.len()
    )
}
