//! Prints the compiler's figures at scale (recorded in `docs/benchmarks.md`):
//! full compile time and peak memory, recompile after one policy changes with
//! a remembering [`Compiler`], the largest NodePolicy, and how many
//! NodePolicies a change touches — for the typical shape and the stress shape.
//! `make bench` runs it; alone: `cargo run --release -p meshguard-policy --example compile_scale`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark driver: a panic is a failure report

#[path = "../benches/support/figures.rs"]
mod figures;
#[path = "../benches/support/scale.rs"]
mod scale;

use std::time::Instant;

use figures::{inputs, peak_rss_mib};
use meshguard_policy::{
    compile::{Compiled, Compiler, compile},
    members::Member,
};
use scale::Shape;

fn json_len<T: serde::Serialize>(value: &T) -> usize {
    serde_json::to_vec(value).unwrap().len()
}

fn measure(shape: Shape, members: &[Member]) {
    let policies = scale::policies(shape);
    let rules: usize = policies.iter().map(|p| p.spec.rules.len()).sum();
    println!(
        "== {shape:?}: {} members, {} policies, {rules} rules",
        members.len(),
        policies.len()
    );

    let mut full = Vec::new();
    let mut compiled: Option<Compiled> = None;
    for _ in 0..3 {
        let start = Instant::now();
        compiled = Some(compile(&inputs(members, &policies)));
        full.push(start.elapsed().as_secs_f64());
    }
    let compiled = compiled.unwrap();
    full.sort_by(f64::total_cmp);
    println!(
        "full compile: median {:.3} s of 3 (min {:.3}); {} classes; peak RSS so far {:.0} MiB",
        full[1],
        full[0],
        compiled.class_count(),
        peak_rss_mib()
    );

    // The largest NodePolicy: the candidates with the most peers, serialized.
    let start = Instant::now();
    let mut by_peers: Vec<(usize, &str)> = members
        .iter()
        .map(|m| (compiled.peers_of(&m.name).len(), m.name.as_str()))
        .collect();
    by_peers.sort_unstable_by(|a, b| b.cmp(a));
    let mut largest = (0, String::new(), String::new());
    for (_, name) in by_peers.iter().take(25) {
        let spec = compiled.node_policy(name).unwrap();
        let bytes = json_len(&meshguard_crds::NodePolicy::new(name, spec.clone()));
        if bytes > largest.0 {
            let detail = format!(
                "{} peers in {} KiB, {} sets ({} prefixes) in {} KiB, {}+{} rules in {} KiB",
                spec.peers.len(),
                json_len(&spec.peers) / 1024,
                spec.address_sets.len(),
                spec.address_sets
                    .iter()
                    .map(|s| s.cidrs.len())
                    .sum::<usize>(),
                json_len(&spec.address_sets) / 1024,
                spec.ingress.len(),
                spec.egress.len(),
                (json_len(&spec.ingress) + json_len(&spec.egress)) / 1024
            );
            largest = (bytes, name.to_string(), detail);
        }
    }
    println!(
        "largest NodePolicy: {} at {:.0} KiB as JSON (limit 1024 KiB): {}",
        largest.1,
        largest.0 as f64 / 1024.0,
        largest.2
    );
    let expand: f64 = {
        let start = Instant::now();
        for m in members.iter().step_by(10) {
            compiled.node_policy(&m.name).unwrap();
        }
        start.elapsed().as_secs_f64() * 10.0 / members.len() as f64
    };
    println!(
        "expanding one NodePolicy: {:.2} ms on average; looking for the largest took {:.1} s",
        expand * 1000.0,
        start.elapsed().as_secs_f64()
    );

    // A remembering compiler, then one policy changed at a time.
    let mut compiler = Compiler::default();
    let mut current = policies.clone();
    let mut before = compiler.compile(&inputs(members, &current));
    let (mut times, mut reused, mut touched) = (Vec::new(), Vec::new(), Vec::new());
    for (i, which) in [17usize, 333, 500, 901, 42].into_iter().enumerate() {
        current = scale::with_one_changed(&current, which, 1000 + i as u64, shape);
        let start = Instant::now();
        let after = compiler.compile(&inputs(members, &current));
        times.push(start.elapsed().as_secs_f64());
        reused.push(after.reused_classes() * 100 / after.class_count());
        touched.push(
            members
                .iter()
                .filter(|m| after.revision(&m.name) != before.revision(&m.name))
                .count(),
        );
        let fresh = compile(&inputs(members, &current));
        assert!(
            members
                .iter()
                .all(|m| fresh.revision(&m.name) == after.revision(&m.name)),
            "remembering changed the output"
        );
        before = after;
    }
    times.sort_by(f64::total_cmp);
    println!(
        "recompile after one policy changes: median {:.3} s of 5 (min {:.3}, max {:.3}); classes reused {reused:?} %; NodePolicies changed {touched:?} of {}",
        times[2],
        times[0],
        times[4],
        members.len()
    );
    println!("peak RSS: {:.0} MiB", peak_rss_mib());
}

fn main() {
    let members = scale::members();
    let shapes: Vec<Shape> = match std::env::args().nth(1).as_deref() {
        Some("typical") => vec![Shape::Typical],
        Some("stress") => vec![Shape::Stress],
        _ => vec![Shape::Typical, Shape::Stress],
    };
    for shape in shapes {
        measure(shape, &members);
    }
}
