//! The eBPF test's helper (e2e/tests/ebpf.rs), run inside a namespace:
//! parses a NodePolicy spec as the agent does, loads meshguard's TC
//! programs, writes the spec's classes and verdict table into their maps,
//! attaches them to an interface, prints `ready`, and holds them until its
//! standard input closes (then detaches by exiting, printing the flows the
//! programs let through).
//!
//! ```text
//! bpf-attach IFACE NODEPOLICY-SPEC.json
//! ```

use std::io::Read;

use anyhow::Context;
use meshguard_agent::{
    backend::ebpf::{programs::Programs, verdicts::table},
    desired,
};
use meshguard_crds::NodePolicySpec;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(interface), Some(file)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: bpf-attach IFACE NODEPOLICY-SPEC.json");
    };
    let text = std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?;
    let spec: NodePolicySpec =
        serde_json::from_str(&text).with_context(|| format!("{file}: not a NodePolicy spec"))?;
    let desired = desired::parse(&spec).map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
    let mut programs = Programs::load()?;
    let entries = programs.write(&table(&desired))?;
    programs.attach(&interface)?;
    println!("ready {entries}");
    // Held until the test closes our standard input.
    std::io::stdin().read_to_end(&mut Vec::new())?;
    println!("flows {}", programs.flows()?);
    Ok(())
}
