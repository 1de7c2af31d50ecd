//! Traffic that runs in the background while a test changes the mesh:
//! raw-packet floods counted at their receiver and echo streams that report
//! each request lost ([`crate::flood`]). Each stream stops when its
//! standard input closes and prints its figures; dropped unfinished (a
//! failed test), it is killed.

use std::{
    io::{BufRead, BufReader},
    net::Ipv4Addr,
    process::{Child, ChildStdout, Stdio},
};

use anyhow::{Context, bail};

use super::Mesh;
use crate::flood::{Figures, Protocol};

/// A `mesh-probe flood|count|pings` running in a node.
pub struct Stream {
    child: Child,
    stdout: BufReader<ChildStdout>,
    what: String,
}

impl Stream {
    /// Closes its input and reads its figures.
    pub fn finish(mut self) -> anyhow::Result<Figures> {
        drop(self.child.stdin.take());
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        let status = self.child.wait()?;
        if !status.success() {
            bail!("{} failed ({status})", self.what);
        }
        line.trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.what))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One flow of raw packets: sent from `from` to `to`'s mesh IP, counted at `to`.
#[derive(Clone, Copy, Debug)]
pub struct Flow<'a> {
    pub from: &'a str,
    pub to: &'a str,
    pub protocol: Protocol,
    /// TCP and UDP; ignored for ICMP.
    pub port: u16,
}

impl std::fmt::Display for Flow<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.protocol {
            Protocol::Icmp => write!(f, "{} -> {} ICMP", self.from, self.to),
            protocol => write!(f, "{} -> {} {protocol:?}/{}", self.from, self.to, self.port),
        }
    }
}

/// A flood and its counter.
pub struct Flooded<'a> {
    pub flow: Flow<'a>,
    counter: Stream,
    sender: Stream,
}

/// What a flood sent and what its receiver counted.
#[derive(Clone, Debug)]
pub struct Counted {
    pub flow: String,
    pub sent: u64,
    pub received: u64,
}

impl Flooded<'_> {
    /// Stops the sender first, then the counter (so late packets are counted).
    pub fn finish(self) -> anyhow::Result<Counted> {
        let sent = self.sender.finish()?.sent;
        // What is still in the tunnel arrives within a few milliseconds.
        std::thread::sleep(std::time::Duration::from_millis(300));
        let received = self.counter.finish()?.received;
        Ok(Counted {
            flow: self.flow.to_string(),
            sent,
            received,
        })
    }
}

impl Mesh {
    fn stream(&self, node: &str, args: &[&str]) -> anyhow::Result<Stream> {
        let mut child = self
            .node(node)
            .ns
            .command(&self.probe_bin.display().to_string(), args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = BufReader::new(child.stdout.take().context("stream's stdout")?);
        Ok(Stream {
            child,
            stdout,
            what: format!("mesh-probe {} on {node}", args.join(" ")),
        })
    }

    fn ipv4(&self, node: &str) -> anyhow::Result<Ipv4Addr> {
        self.mesh_ip(node)
            .parse()
            .with_context(|| format!("{node}'s mesh IP is not IPv4"))
    }

    /// Starts counting `flow` at its receiver, then flooding it every
    /// `every_us` microseconds.
    pub fn flood<'a>(&self, flow: Flow<'a>, every_us: u64) -> anyhow::Result<Flooded<'a>> {
        let protocol = format!("{:?}", flow.protocol).to_lowercase();
        let port = flow.port.to_string();
        let from = self.ipv4(flow.from)?.to_string();
        let mut counter = self.stream(
            flow.to,
            &[
                "count",
                "--protocol",
                &protocol,
                "--from",
                &from,
                "--port",
                &port,
            ],
        )?;
        let mut ready = String::new();
        counter.stdout.read_line(&mut ready)?;
        if ready.trim() != "ready" {
            bail!("{} did not start: {ready:?}", counter.what);
        }
        let to = self.ipv4(flow.to)?.to_string();
        let sender = self.stream(
            flow.from,
            &[
                "flood",
                "--protocol",
                &protocol,
                "--to",
                &to,
                "--port",
                &port,
                "--every-us",
                &every_us.to_string(),
            ],
        )?;
        Ok(Flooded {
            flow,
            counter,
            sender,
        })
    }

    /// An echo request from `from` to `to` every `every_ms`; [`Stream::finish`]
    /// lists each one never answered.
    pub fn pings(&self, from: &str, to: &str, every_ms: u64) -> anyhow::Result<Stream> {
        let to = self.ipv4(to)?.to_string();
        self.stream(from, &["pings", &to, "--every-ms", &every_ms.to_string()])
    }
}
