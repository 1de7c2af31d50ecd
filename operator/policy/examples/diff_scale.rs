//! Prints `meshguard diff`'s figures at scale (recorded in
//! `docs/benchmarks.md`): the compiler benchmark's shapes (5,000 members,
//! 1,000 policies), one policy changed, the diff's time and the process's
//! peak memory. Target: ≤ 2 s and ≤ 1 GiB. `make bench` runs it; alone:
//! `cargo run --release -p meshguard-policy --example diff_scale`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark driver: a panic is a failure report

#[path = "../benches/support/figures.rs"]
mod figures;
#[path = "../benches/support/scale.rs"]
mod scale;

use std::time::Instant;

use figures::{inputs, peak_rss_mib};
use meshguard_policy::{compile::compile, diff::diff};
use scale::Shape;

fn main() {
    let members = scale::members();
    for shape in [Shape::Typical, Shape::Stress] {
        let before_policies = scale::policies(shape);
        let before = compile(&inputs(&members, &before_policies));
        let mut times = Vec::new();
        for (i, which) in [17usize, 333, 901].into_iter().enumerate() {
            let after_policies =
                scale::with_one_changed(&before_policies, which, 1000 + i as u64, shape);
            let after = compile(&inputs(&members, &after_policies));
            let start = Instant::now();
            let found = diff(&before, &after);
            let flows = found.flows().count();
            let seconds = start.elapsed().as_secs_f64();
            times.push(seconds);
            println!(
                "{shape:?}: {} members, {} policies, policy {which} changed: diff in {seconds:.3} s ({} groups, {} group changes, {flows} flows changed)",
                members.len(),
                before_policies.len(),
                found.groups.len(),
                found.changes.len(),
            );
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{shape:?}: diff median {:.3} s of 3 (target ≤ 2 s); peak RSS so far {:.0} MiB (target ≤ 1024, two compiled sides included)",
            times[1],
            peak_rss_mib()
        );
    }
}
