//! The processes of a mesh node: its boringtun daemon, its agent, echo
//! servers and other programs started in its namespaces, and what they
//! report (logs, metrics, WireGuard peers, memory).

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::bail;

use super::Mesh;
use crate::{netns::host, probe};

impl Mesh {
    /// Starts the node's boringtun daemon and waits for its socket.
    pub fn start_daemon(&mut self, name: &str) -> anyhow::Result<()> {
        let log = self.log(&format!("{name}-boringtun"))?;
        let ns = self.node(name).ns.clone();
        let threads = self.daemon_threads.map(|t| t.to_string());
        let mut args = vec!["--foreground", "--disable-drop-privileges"];
        if let Some(threads) = &threads {
            args.extend(["--threads", threads.as_str()]);
        }
        args.push("meshguard0");
        let child = ns
            .command(&self.daemon_bin.display().to_string(), &args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.node_mut(name).daemon = Some(child);
        let started = Instant::now();
        while !ns
            .run("test", &["-S", "/var/run/wireguard/meshguard0.sock"])
            .status
            .success()
        {
            if started.elapsed() > Duration::from_secs(10) {
                bail!("boringtun on {name} did not open its socket");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Kills the node's WireGuard daemon: its interface and routes go with it.
    pub fn stop_daemon(&mut self, name: &str) {
        if let Some(mut child) = self.node_mut(name).daemon.take() {
            // nsenter execs the daemon, so this is its pid; KILL, as boringtun
            // ignores SIGTERM in one of its threads.
            let _ = child.kill();
            let _ = child.wait();
        }
        let ns = self.node(name).ns.clone();
        let _ = ns.run(
            "sh",
            &[
                "-c",
                "ip link del meshguard0 2>/dev/null; rm -f /var/run/wireguard/meshguard0.sock",
            ],
        );
    }

    pub fn public_key(&self, name: &str) -> anyhow::Result<String> {
        let out = Command::new(&self.agent_bin)
            .args(["pubkey", "--private-key"])
            .arg(self.dir.join(format!("{name}.key")))
            .output()?;
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    }

    /// Starts the agent in file mode with `extra` flags.
    pub fn start_agent(&mut self, name: &str, extra: &[&str]) -> anyhow::Result<()> {
        let log = self.log(&format!("{name}-agent"))?;
        let ns = self.node(name).ns.clone();
        let (state, status, key) = (
            self.state_file(name),
            self.dir.join(format!("{name}.status")),
            self.dir.join(format!("{name}.key")),
        );
        let mut args: Vec<String> = [
            "run",
            "--node",
            name,
            "--wireguard",
            "uapi",
            "--metrics-listen",
            "127.0.0.1:9471",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if !extra.contains(&"--backend") {
            args.extend(["--backend".to_owned(), self.backend.name().to_owned()]);
        }
        // Tests want drift found fast; `extra` may choose otherwise.
        if !extra.contains(&"--resync-interval") {
            args.extend(["--resync-interval".to_owned(), "1s".to_owned()]);
        }
        // Every node of the mesh names its interface meshguard0 and shares
        // the machine's /var/lib: a lock of its own.
        let lock = self.agent_lock(name);
        for (flag, path) in [
            ("--state-file", &state),
            ("--status-file", &status),
            ("--private-key", &key),
            ("--agent-lock", &lock),
        ] {
            args.extend([flag.to_owned(), path.display().to_string()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let child = ns
            .command(&self.agent_bin.display().to_string(), &refs)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.node_mut(name).agent = Some(child);
        Ok(())
    }

    /// The node's agent lock (`--agent-lock`), for `teardown --wait-for-agent`.
    pub fn agent_lock(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.lock"))
    }

    pub fn start_agents(&mut self, extra: &[&str]) -> anyhow::Result<()> {
        let names: Vec<String> = self.nodes.iter().map(|n| n.name.clone()).collect();
        for name in names {
            self.start_agent(&name, extra)?;
        }
        Ok(())
    }

    /// Kills the agent with SIGKILL (no cleanup, no last status) and reaps it.
    pub fn kill_agent(&mut self, name: &str) -> anyhow::Result<()> {
        if let Some(mut child) = self.node_mut(name).agent.take() {
            // nsenter execs the agent: the child's pid is the agent's.
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Stops the agent as an orchestrator would (SIGTERM) and waits for it.
    pub fn stop_agent(&mut self, name: &str) -> anyhow::Result<()> {
        if let Some(mut child) = self.node_mut(name).agent.take() {
            let ns = self.node(name).ns.clone();
            // nsenter execs the agent: the child's pid is the agent's.
            host("kill", &["-TERM", &child.id().to_string()])?;
            let started = Instant::now();
            loop {
                if child.try_wait()?.is_some() {
                    break;
                }
                if started.elapsed() > Duration::from_secs(10) {
                    let _ = child.kill();
                    bail!("the agent on {name} ({}) did not stop on SIGTERM", ns.net);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// Starts echo servers on the node; returns once every port is bound.
    pub fn serve(&mut self, name: &str, tcp: &[u16], udp: &[u16]) -> anyhow::Result<()> {
        let words = probe::serve_invocation(&self.probe_bin.display().to_string(), tcp, udp);
        let args: Vec<&str> = words[1..].iter().map(String::as_str).collect();
        let mut child = self
            .node(name)
            .ns
            .command(&words[0], &args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut line = String::new();
        if let Some(stdout) = child.stdout.take() {
            std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)?;
        }
        self.node_mut(name).probes.push(child);
        if line.trim() != "ready" {
            bail!("mesh-probe serve on {name} did not start (ports {tcp:?} {udp:?} in use?)");
        }
        Ok(())
    }

    /// A program in the node's namespaces, for a caller that runs and
    /// reaps it itself.
    pub fn command(&self, name: &str, program: &str, args: &[&str]) -> Command {
        self.node(name).ns.command(program, args)
    }

    /// Starts a program in the node's namespaces, stopped with the mesh.
    pub fn spawn(&mut self, name: &str, program: &str, args: &[&str]) -> anyhow::Result<u32> {
        let child = self
            .node(name)
            .ns
            .command(program, args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        // nsenter execs the program: the child's pid is the program's.
        let pid = child.id();
        self.node_mut(name).probes.push(child);
        Ok(pid)
    }

    /// The node's agent's process id, while it runs.
    pub fn agent_pid(&self, name: &str) -> Option<u32> {
        self.node(name).agent.as_ref().map(|child| child.id())
    }

    /// The agent's peak resident memory (VmHWM), in KiB.
    pub fn agent_peak_kib(&self, name: &str) -> Option<u64> {
        let pid = self.node(name).agent.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    /// What the node's agent has logged so far.
    pub fn agent_log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}-agent.log"))).unwrap_or_default()
    }

    /// Runs a command in the node's namespaces.
    pub fn exec(&self, name: &str, program: &str, args: &[&str]) -> anyhow::Result<String> {
        self.node(name).ns.check(program, args)
    }

    /// The agent's metrics, scraped from inside the node.
    pub fn metrics(&self, name: &str) -> String {
        let out = self.node(name).ns.run(
            &self.probe_bin.display().to_string(),
            &["get", "127.0.0.1:9471", "/metrics"],
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Peers the node's WireGuard device has, by public key.
    pub fn wg_peers(&self, name: &str) -> Vec<String> {
        let out = self
            .node(name)
            .ns
            .run("wg", &["show", "meshguard0", "peers"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}
