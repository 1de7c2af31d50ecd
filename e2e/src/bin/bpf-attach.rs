//! The eBPF test's helper (e2e/tests/ebpf.rs), run inside a namespace:
//! loads meshguard's TC programs as the agent does, attaches them to an
//! interface, writes the map entries given, prints `ready`, and holds them
//! until its standard input closes (then detaches by exiting).
//!
//! ```text
//! bpf-attach IFACE ENTRY...
//!   class=CIDR=ID                          remote range -> address class
//!   allow|deny=DIRECTION=PROTO=CLASS=PORTS the verdict; PORTS `5000`, `8000-8080` or `*`
//! ```

use std::io::Read;

use anyhow::{Context, bail};
use ipnet::IpNet;
use meshguard_agent::backend::{
    Direction,
    ebpf::{
        keys::{VERDICT_ALLOW, VERDICT_DENY, port_prefixes},
        programs::Programs,
    },
};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let interface = args.next().context("usage: bpf-attach IFACE ENTRY...")?;
    let mut programs = Programs::load()?;
    for (rule, entry) in (1u32..).zip(args) {
        let fields: Vec<&str> = entry.split('=').collect();
        match fields.as_slice() {
            ["class", net, id] => {
                let net: IpNet = net.parse().with_context(|| format!("{entry}: CIDR"))?;
                programs.set_class(net, id.parse().with_context(|| format!("{entry}: id"))?)?;
            }
            [
                verdict @ ("allow" | "deny"),
                direction,
                protocol,
                class,
                ports,
            ] => {
                let direction = match *direction {
                    "ingress" => Direction::Ingress,
                    "egress" => Direction::Egress,
                    other => bail!("{entry}: direction {other}"),
                };
                let verdict = if *verdict == "allow" {
                    VERDICT_ALLOW
                } else {
                    VERDICT_DENY
                };
                let protocol: u8 = protocol
                    .parse()
                    .with_context(|| format!("{entry}: protocol"))?;
                let class: u32 = class.parse().with_context(|| format!("{entry}: class"))?;
                let prefixes = match *ports {
                    "*" => vec![None],
                    range => {
                        let (first, last) = range.split_once('-').unwrap_or((range, range));
                        let (first, last) = (
                            first.parse().with_context(|| format!("{entry}: port"))?,
                            last.parse().with_context(|| format!("{entry}: port"))?,
                        );
                        port_prefixes(first, last).into_iter().map(Some).collect()
                    }
                };
                for prefix in prefixes {
                    programs.set_verdict(direction, protocol, class, prefix, verdict, rule)?;
                }
            }
            _ => bail!("{entry}: not an entry (see --help in the source)"),
        }
    }
    programs.attach(&interface)?;
    println!("ready");
    // Held until the test closes our standard input.
    std::io::stdin().read_to_end(&mut Vec::new())?;
    println!("flows {}", programs.flows()?);
    Ok(())
}
