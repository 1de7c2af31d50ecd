//! Criterion benchmarks of the compiler at 5,000 members (see
//! `benches/support/scale.rs` for the inputs, `docs/benchmarks.md` for figures):
//! a full compile, and a recompile after one policy changes with a
//! remembering `Compiler`; and a full compile where 2,000 members route 16
//! addresses each (32,000 routed prefixes). `make bench` runs these and `examples/compile_scale`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is a failure report

#[path = "support/scale.rs"]
mod scale;

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use meshguard_policy::compile::{Compiler, Inputs, compile};
use scale::Shape;

fn benches(c: &mut Criterion) {
    let members = scale::members();
    for shape in [Shape::Typical, Shape::Stress] {
        let policies = scale::policies(shape);
        let inputs = |policies| Inputs {
            members: &members,
            policies,
            chains: &[],
            secrets: &[],
            config_maps: &[],
            listen_port: 51820,
        };
        let mut group = c.benchmark_group(format!("{shape:?}"));
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(15));
        group.bench_function("full compile", |b| b.iter(|| compile(&inputs(&policies))));

        // Alternate between two policy sets that differ in one policy, so
        // every iteration is a recompile after one change.
        let changed = scale::with_one_changed(&policies, 500, 99, shape);
        let mut compiler = Compiler::default();
        compiler.compile(&inputs(&policies));
        let mut flip = false;
        group.bench_function("recompile after one policy change", |b| {
            b.iter(|| {
                flip = !flip;
                compiler.compile(&inputs(if flip { &changed } else { &policies }))
            })
        });
        group.finish();
    }

    let routed = scale::with_routes(2_000, 16);
    let policies = scale::policies(Shape::Typical);
    let mut group = c.benchmark_group("Routed");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(15));
    group.bench_function(
        "full compile, 2,000 members routing 16 addresses each",
        |b| {
            b.iter(|| {
                compile(&Inputs {
                    members: &routed,
                    policies: &policies,
                    chains: &[],
                    secrets: &[],
                    config_maps: &[],
                    listen_port: 51820,
                })
            })
        },
    );
    group.finish();
}

criterion_group!(compile_benches, benches);
criterion_main!(compile_benches);
