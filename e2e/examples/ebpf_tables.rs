//! The eBPF backend's pure work for the dataplane benchmark's NodePolicy
//! (5,000 peers, 2,000 rules, 200 sets): the verdict table, the map
//! contents with lasting numbers, and the delta of a one-rule change,
//! timed apart (`cargo run --release -p meshguard-e2e --example ebpf_tables`).

use std::time::Instant;

use meshguard_agent::{
    backend::ebpf::{
        revision::{Contents, Ids, delta},
        verdicts::table,
    },
    desired,
};
use meshguard_e2e::workload;

fn main() -> anyhow::Result<()> {
    let mut policy = workload::large("bench-1", "100.96.0.1", 5000, 200, 2000)?;
    let mut ids = Ids::default();
    let time = |what: &str, policy: &meshguard_crds::NodePolicy, ids: &mut Ids| {
        let started = Instant::now();
        let desired = desired::parse(&policy.spec).map_err(|e| anyhow::anyhow!("{e}"))?;
        let parsed = started.elapsed();
        let t = table(&desired);
        let tabled = started.elapsed();
        let contents = Contents::of(&desired, &t, ids)?;
        let done = started.elapsed();
        println!(
            "{what}: parse {:.1} ms, table {:.1} ms ({} entries, {} x {} classes), contents {:.1} ms ({} map entries)",
            parsed.as_secs_f64() * 1e3,
            (tabled - parsed).as_secs_f64() * 1e3,
            t.entries.len(),
            t.remote.members_of.len(),
            t.local.members_of.len(),
            (done - tabled).as_secs_f64() * 1e3,
            contents.verdicts.len() + contents.classes.len()
        );
        anyhow::Ok(contents)
    };
    let before = time("first", &policy, &mut ids)?;
    let rule = &mut policy.spec.ingress[7];
    if let Some(ports) = rule.ports.as_mut() {
        ports[0].port = Some(60000);
    }
    let after = time("one rule changed", &policy, &mut ids)?;
    let started = Instant::now();
    let d = delta(&before, &after);
    println!(
        "delta: {:.1} ms, {} entries",
        started.elapsed().as_secs_f64() * 1e3,
        d.len()
    );
    Ok(())
}
