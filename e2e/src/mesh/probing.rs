//! Flows sent from inside one node to another's mesh IP, one at a time or
//! many at once, and the waits around them (warm-up, retries, held
//! connections, cleartext on the switch).

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use super::{Mesh, Traffic};
use crate::{netns::host, probe};

/// How long a flow that must pass may take: a lost handshake (retried
/// after WireGuard's 5 s rekey timeout) and a probe's own timeout.
pub const PASS_WITHIN: Duration = Duration::from_secs(8);

impl Mesh {
    /// Runs mesh-probe on a node; true when the traffic went through.
    pub fn tcp(&self, from: &str, to: &str, port: u16) -> bool {
        self.flow_passes(from, to, Traffic::Tcp(port))
    }

    pub fn udp(&self, from: &str, to: &str, port: u16) -> bool {
        self.flow_passes(from, to, Traffic::Udp(port))
    }

    pub fn ping(&self, from: &str, to: &str) -> bool {
        self.flow_passes(from, to, Traffic::Icmp)
    }

    /// For a flow that must pass: probes until it does or [`PASS_WITHIN`]
    /// runs out. One probe waits 1–1.5 s, and the first packet to a peer
    /// may wait on a handshake a loaded machine loses and WireGuard retries
    /// only after 5 s. A flow that must be refused is probed once
    /// ([`Mesh::tcp`] and friends): a refusal is never transient.
    pub fn passes(&self, from: &str, to: &str, traffic: Traffic) -> bool {
        let started = Instant::now();
        loop {
            if self.flow_passes(from, to, traffic) {
                return true;
            }
            if started.elapsed() > PASS_WITHIN {
                return false;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn flow_passes(&self, from: &str, to: &str, traffic: Traffic) -> bool {
        self.flow_command(from, to, traffic)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// The command that sends one flow from inside `from` to `to`'s mesh IP
    /// and succeeds when it is answered.
    fn flow_command(&self, from: &str, to: &str, traffic: Traffic) -> Command {
        let words = probe::probe_invocation(
            &self.probe_bin.display().to_string(),
            &self.mesh_ip(to),
            traffic,
        );
        let args: Vec<&str> = words[1..].iter().map(String::as_str).collect();
        self.node(from).ns.command(&words[0], &args)
    }

    /// Probes many flows at once, `parallel` at a time.
    pub fn probe_all(
        &self,
        flows: &[(&str, &str, Traffic)],
        parallel: usize,
    ) -> anyhow::Result<Vec<bool>> {
        let commands = flows
            .iter()
            .map(|(from, to, traffic)| self.flow_command(from, to, *traffic));
        Ok(probe::run_all(commands, parallel)?)
    }

    /// Sends the given allowed flows until each has passed once and every
    /// peer of every running agent has completed a WireGuard handshake.
    /// The first packet to a peer starts the handshake, and a handshake
    /// lost on a busy machine is retried only after WireGuard's 5 s rekey
    /// timeout: longer than one probe waits. A peer no flow here reaches
    /// waits for the agents' keepalive (25 s), so give one flow per peer.
    pub fn warm_up(
        &self,
        flows: &[(&str, &str, Traffic)],
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut cold: Vec<(&str, &str, Traffic)> = flows.to_vec();
        loop {
            // At once: a cold flow costs its whole probe timeout.
            let mut passed = self.probe_all(&cold, 16)?.into_iter();
            cold.retain(|_| !passed.next().unwrap_or(false));
            let pending: Vec<String> = self
                .nodes
                .iter()
                .filter(|n| n.agent.is_some())
                .flat_map(|n| {
                    let out = n.ns.run("wg", &["show", "meshguard0", "latest-handshakes"]);
                    let text = String::from_utf8_lossy(&out.stdout).into_owned();
                    text.lines()
                        .filter(|l| l.split_whitespace().nth(1) == Some("0"))
                        .map(|l| {
                            format!(
                                "{} -> {}",
                                n.name,
                                l.split_whitespace().next().unwrap_or_default()
                            )
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            if cold.is_empty() && pending.is_empty() {
                return Ok(());
            }
            if started.elapsed() > timeout {
                bail!(
                    "not warm within {timeout:?}: flows {cold:?} failing, no handshake for {pending:?}; logs in {}",
                    self.dir.display()
                );
            }
            // Leave the CPU to the tunnel daemons being waited on.
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    /// A TCP connection held open in the background, a round trip every 100 ms.
    pub fn hold(&self, from: &str, to: &str, port: u16, seconds: u64) -> anyhow::Result<Child> {
        let mut child = self
            .node(from)
            .ns
            .command(
                &self.probe_bin.display().to_string(),
                &[
                    "hold",
                    &format!("{}:{port}", self.mesh_ip(to)),
                    "--seconds",
                    &seconds.to_string(),
                ],
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        // Wait for "ready": the connection is up.
        let mut first = [0u8; 6];
        let stdout = child.stdout.as_mut().context("hold's stdout")?;
        std::io::Read::read_exact(stdout, &mut first)
            .context("the held connection did not open")?;
        Ok(child)
    }

    /// Packets addressed to the mesh that reached the switch in cleartext.
    pub fn cleartext_packets(&self) -> u64 {
        let out = host(
            "ip",
            &[
                "netns",
                "exec",
                &self.switch,
                "iptables",
                "-w",
                "-t",
                "raw",
                "-L",
                "PREROUTING",
                "-v",
                "-x",
                "-n",
            ],
        )
        .unwrap_or_default();
        out.lines()
            .filter(|l| l.contains("100.64.0.0/10"))
            .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    }
}
