//! The eBPF tests' driver (e2e/tests/ebpf.rs), run inside a network
//! namespace: the agent's eBPF backend on one interface, without WireGuard,
//! driven line by line from standard input.
//!
//! ```text
//! bpf-attach IFACE BPFFS [COMMAND]
//!   apply SPEC.json   -> "applied ENTRIES" (map entries written) | "error ..."
//!   attach            -> "attached" (the programs on the interface again,
//!                        reading the pinned maps as they are)
//!   counters          -> "counter DIRECTION ID PACKETS BYTES"... then "end"
//!   events            -> "said LINE"... then "end" (what the event ring says
//!                        of the packets logged since the last call)
//!   flows             -> "flows N" (flows the programs let through)
//!   teardown          -> "done" (programs detached, pins removed)
//! ```
//!
//! With a COMMAND on the command line it runs that one and exits. At the
//! end of its input it exits without tearing down: the pinned programs
//! keep enforcing, as after an agent restart.

use std::io::{BufRead, Write};

use anyhow::Context;
use meshguard_agent::{
    agent::families,
    backend::{Backend, Enforcement, Filter, ebpf::Ebpf, iptables::Iptables},
    desired,
};
use meshguard_crds::NodePolicySpec;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(interface), Some(bpffs)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: bpf-attach IFACE BPFFS");
    };
    let mut backend = Ebpf::new(
        &interface,
        bpffs.as_ref(),
        Iptables::new(&interface, families()),
    );
    backend.start()?;
    let mut events = backend.packet_log();
    let mut out = std::io::stdout().lock();
    writeln!(out, "started")?;
    out.flush()?;
    let given: Vec<String> = args.collect();
    let lines: Box<dyn Iterator<Item = std::io::Result<String>>> = if given.is_empty() {
        Box::new(std::io::stdin().lock().lines())
    } else {
        Box::new(std::iter::once(Ok(given.join(" "))))
    };
    for line in lines {
        let line = line?;
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("apply"), Some(file)) => match apply(&mut backend, file) {
                Ok(entries) => writeln!(out, "applied {entries}")?,
                Err(e) => writeln!(out, "error {e:#}")?,
            },
            (Some("counters"), None) => {
                for c in backend.counters()? {
                    let direction = c.direction.label();
                    writeln!(
                        out,
                        "counter {direction} {} {} {}",
                        c.id, c.packets, c.bytes
                    )?;
                }
                writeln!(out, "end")?;
            }
            (Some("flows"), None) => writeln!(out, "flows {}", backend.flows()?)?,
            (Some("events"), None) => {
                for said in events.iter_mut().flat_map(|e| e.drain(false)) {
                    writeln!(out, "said {said}")?;
                }
                writeln!(out, "end")?;
            }
            (Some("attach"), None) => {
                backend.attach()?;
                writeln!(out, "attached")?;
            }
            (Some("teardown"), None) => {
                backend.teardown()?;
                writeln!(out, "done")?;
            }
            _ => writeln!(out, "error unknown command {line:?}")?,
        }
        out.flush()?;
    }
    Ok(())
}

fn apply(backend: &mut Ebpf, file: &str) -> anyhow::Result<usize> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?;
    let spec: NodePolicySpec =
        serde_json::from_str(&text).with_context(|| format!("{file}: not a NodePolicy spec"))?;
    let desired = desired::parse(&spec).map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
    let applied = backend.apply(
        &desired,
        &Filter {
            enforcement: Enforcement::Enforce,
            nflog_group: 100,
            mesh_cidrs: &[],
        },
    )?;
    Ok(applied.changes.entries_written)
}
