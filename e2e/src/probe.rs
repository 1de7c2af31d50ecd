//! mesh-probe and ping as the harnesses run them: the traffic a flow
//! carries, the command line that sends it or serves it, and running many
//! such commands at once. The mesh harness runs these inside namespaces,
//! `meshguard-cluster-check` through `--exec` on real nodes.

use std::process::{Command, Stdio};

/// One flow's traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Traffic {
    Tcp(u16),
    Udp(u16),
    Icmp,
}

/// The program and arguments that send one flow to `ip` from wherever they
/// run, and succeed when it is answered (`probe` is mesh-probe's path there).
pub fn probe_invocation(probe: &str, ip: &str, traffic: Traffic) -> Vec<String> {
    // An IPv6 address goes in brackets before a port.
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_owned()
    };
    let words: Vec<String> = match traffic {
        Traffic::Tcp(port) => vec![probe.into(), "tcp".into(), format!("{host}:{port}")],
        Traffic::Udp(port) => vec![probe.into(), "udp".into(), format!("{host}:{port}")],
        Traffic::Icmp => ["ping", "-c", "1", "-W", "1", ip]
            .map(str::to_owned)
            .to_vec(),
    };
    words
}

/// The program and arguments of an echo server on these ports (`probe` is
/// mesh-probe's path where it runs); it prints "ready" once they are bound.
pub fn serve_invocation(probe: &str, tcp: &[u16], udp: &[u16]) -> Vec<String> {
    let mut words = vec![probe.to_owned(), "serve".to_owned()];
    for (flag, ports) in [("--tcp", tcp), ("--udp", udp)] {
        if !ports.is_empty() {
            let list: Vec<String> = ports.iter().map(u16::to_string).collect();
            words.extend([flag.to_owned(), list.join(",")]);
        }
    }
    words
}

/// Runs the commands, `parallel` at a time (a denied flow costs its whole
/// timeout, so one by one a matrix would take minutes); true for each that
/// exited 0.
pub fn run_all(
    commands: impl IntoIterator<Item = Command>,
    parallel: usize,
) -> std::io::Result<Vec<bool>> {
    Ok(run_collecting(commands, parallel)?
        .into_iter()
        .map(|o| o.status.success())
        .collect())
}

/// [`run_all`], keeping each command's exit status and standard output.
pub fn run_collecting(
    commands: impl IntoIterator<Item = Command>,
    parallel: usize,
) -> std::io::Result<Vec<std::process::Output>> {
    let mut results = Vec::new();
    let mut commands = commands.into_iter().peekable();
    while commands.peek().is_some() {
        let mut children = Vec::new();
        for mut command in commands.by_ref().take(parallel.max(1)) {
            children.push(
                command
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()?,
            );
        }
        for child in children {
            results.push(child.wait_with_output()?);
        }
    }
    Ok(results)
}
