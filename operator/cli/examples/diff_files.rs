//! `meshguard diff` end to end at the compiler benchmark's scale: the
//! shapes of `operator/policy/benches/support/scale.rs` (5,000 members,
//! 1,000 policies) written out as manifests, one policy changed, then the
//! CLI's own `run` — loading, validating and compiling both sides, diffing,
//! printing JSON — timed, with the process's peak memory. `make bench` runs
//! it; alone: `cargo run --release -p meshguard-cli --example diff_files`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark driver: a panic is a failure report

// Only its peak-memory reader is used here.
#[allow(dead_code)]
#[path = "../../policy/benches/support/figures.rs"]
mod figures;
#[path = "../../policy/benches/support/scale.rs"]
mod scale;

use std::{path::Path, time::Instant};

use clap::Parser;
use meshguard_crds::MeshPolicy;
use meshguard_policy::members::Member;
use scale::Shape;
use serde_json::{Value, json};

/// Members and policies as YAML files of JSON documents.
fn write(dir: &Path, members: &[Member], policies: &[MeshPolicy]) {
    std::fs::create_dir_all(dir).unwrap();
    let nodes: Vec<Value> = members
        .iter()
        .map(|m| {
            json!({
                "apiVersion": "meshguard.io/v1alpha1", "kind": "MeshNode",
                "metadata": { "name": m.name, "labels": m.labels },
                "spec": {
                    "publicKey": m.public_key,
                    "endpoint": m.endpoint,
                    "meshIP": m.mesh_ip.to_string(),
                    "allowedIPs": m.allowed_ips.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                },
            })
        })
        .collect();
    let mut items = nodes;
    items.extend(policies.iter().map(|p| serde_json::to_value(p).unwrap()));
    // The loader's per-file YAML budget (docs/api.md) keeps files small:
    // 200 documents each.
    for (i, chunk) in items.chunks(200).enumerate() {
        let text: String = chunk.iter().map(|doc| format!("---\n{doc}\n")).collect();
        std::fs::write(dir.join(format!("mesh-{i:03}.yaml")), text).unwrap();
    }
}

fn main() {
    let members = scale::members();
    let root = std::env::temp_dir().join(format!("meshguard-diff-files-{}", std::process::id()));
    for shape in [Shape::Typical, Shape::Stress] {
        let before = scale::policies(shape);
        let after = scale::with_one_changed(&before, 333, 1000, shape);
        let (b, a) = (
            root.join(format!("{shape:?}/before")),
            root.join(format!("{shape:?}/after")),
        );
        write(&b, &members, &before);
        write(&a, &members, &after);
        let mut times = Vec::new();
        let mut printed = 0;
        for _ in 0..3 {
            let cli = meshguard_cli::Cli::try_parse_from([
                "meshguard",
                "diff",
                "--before",
                b.to_str().unwrap(),
                "--after",
                a.to_str().unwrap(),
                "-o",
                "json",
            ])
            .unwrap();
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let start = Instant::now();
            let code = meshguard_cli::run(cli, &mut out, &mut err).unwrap();
            times.push(start.elapsed().as_secs_f64());
            assert!(code <= 1, "{}", String::from_utf8_lossy(&err));
            printed = out.len();
        }
        times.sort_by(f64::total_cmp);
        // One side's share: `validate` loads, checks and compiles it too.
        let cli = meshguard_cli::Cli::try_parse_from([
            "meshguard",
            "validate",
            "-f",
            b.to_str().unwrap(),
        ])
        .unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let start = Instant::now();
        meshguard_cli::run(cli, &mut out, &mut err).unwrap();
        let one_side = start.elapsed().as_secs_f64();
        println!("{shape:?}: meshguard validate of one side: {one_side:.3} s");
        println!(
            "{shape:?}: meshguard diff end to end (load, validate and compile both sides, diff, JSON): median {:.3} s of 3 (min {:.3}); {} KiB of JSON; peak RSS so far {:.0} MiB",
            times[1],
            times[0],
            printed / 1024,
            figures::peak_rss_mib()
        );
    }
    std::fs::remove_dir_all(&root).unwrap();
}
