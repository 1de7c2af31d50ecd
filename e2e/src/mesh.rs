//! A mesh of nodes in namespaces, with real daemons, agents and traffic.

use std::{
    collections::BTreeMap,
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use meshguard_crds::{NodePolicy, NodePolicyStatus};

use crate::{
    matrix,
    netns::{self, Namespaces, host},
};

/// How long a flow that must pass may take: a lost handshake (retried
/// after WireGuard's 5 s rekey timeout) and a probe's own timeout.
pub const PASS_WITHIN: Duration = Duration::from_secs(8);

/// Where the workspace's binaries are: next to the running program, or a
/// test's, up to three folders up.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    for dir in exe.ancestors().skip(1).take(3) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "{name} is not built next to {}: run `cargo build --workspace` (make test does)",
        exe.display()
    )
}

fn program(name: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let home_bin = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin"));
    std::env::split_paths(&path)
        .chain(home_bin)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .with_context(|| format!("{name} is not installed: run `make deps`"))
}

pub struct Node {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub ns: Namespaces,
    pub underlay: String,
    daemon: Option<Child>,
    agent: Option<Child>,
    probes: Vec<Child>,
}

pub struct Mesh {
    pub prefix: String,
    pub dir: PathBuf,
    mounts: PathBuf,
    switch: String,
    pub nodes: Vec<Node>,
    agent_bin: PathBuf,
    meshguard_bin: PathBuf,
    probe_bin: PathBuf,
    daemon_bin: PathBuf,
    /// Mesh IPs from the last compile: tests overwrite state files with junk.
    mesh_ips: std::cell::RefCell<BTreeMap<String, String>>,
    daemon_threads: Option<u16>,
}

impl Mesh {
    /// Nodes by name and labels, each with its namespaces and WireGuard daemon.
    pub fn new(nodes: &[(&str, &[(&str, &str)])]) -> anyhow::Result<Mesh> {
        Mesh::with_daemon_threads(nodes, None)
    }

    /// [`Mesh::new`] with boringtun's worker threads set (its default is 4;
    /// on a 2-core machine one per daemon makes throughput steadier).
    pub fn with_daemon_threads(
        nodes: &[(&str, &[(&str, &str)])],
        daemon_threads: Option<u16>,
    ) -> anyhow::Result<Mesh> {
        if host("id", &["-u"]).map(|u| u.trim() != "0").unwrap_or(true) {
            bail!("the dataplane tests need root and network namespaces (CI runs them as root)");
        }
        let mut id = [0u8; 3];
        getrandom::fill(&mut id).map_err(|e| anyhow::anyhow!("randomness: {e}"))?;
        let prefix = format!("mg{:02x}{:02x}{:02x}", id[0], id[1], id[2]);
        let dir = std::env::temp_dir().join("meshguard-e2e").join(&prefix);
        std::fs::create_dir_all(dir.join("in"))?;
        let mounts = PathBuf::from("/run").join(&prefix);
        let mut mesh = Mesh {
            switch: format!("{prefix}-sw"),
            prefix,
            dir,
            mounts,
            nodes: Vec::new(),
            agent_bin: binary("meshguard-agent")?,
            meshguard_bin: binary("meshguard")?,
            probe_bin: binary("mesh-probe")?,
            daemon_bin: program("boringtun-cli")?,
            mesh_ips: Default::default(),
            daemon_threads,
        };
        // From here on, Drop cleans up whatever was made.
        netns::private_mount_dir(&mesh.mounts)?;
        host("ip", &["netns", "add", &mesh.switch])?;
        let sw = |args: &[&str]| host("ip", &[&["-n", mesh.switch.as_str()], args].concat());
        sw(&["link", "add", "br0", "type", "bridge"])?;
        sw(&["addr", "add", "10.99.0.254/24", "dev", "br0"])?;
        sw(&["link", "set", "br0", "up"])?;
        // Count anything addressed to the mesh that reaches the switch: cleartext.
        host(
            "ip",
            &[
                "netns",
                "exec",
                &mesh.switch,
                "iptables",
                "-w",
                "-t",
                "raw",
                "-A",
                "PREROUTING",
                "-d",
                "100.64.0.0/10",
                "-j",
                "ACCEPT",
            ],
        )?;
        for (i, (name, labels)) in nodes.iter().enumerate() {
            mesh.add_node(i, name, labels)?;
        }
        mesh.write_members()?;
        Ok(mesh)
    }

    fn add_node(&mut self, i: usize, name: &str, labels: &[(&str, &str)]) -> anyhow::Result<()> {
        let net = format!("{}-{name}", self.prefix);
        let underlay = format!("10.99.0.{}", i + 1);
        host("ip", &["netns", "add", &net])?;
        let ns = Namespaces {
            net: net.clone(),
            mount: self.mounts.join(format!("{name}.mnt")),
        };
        self.nodes.push(Node {
            name: name.to_owned(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ns: ns.clone(),
            underlay: underlay.clone(),
            daemon: None,
            agent: None,
            probes: Vec::new(),
        });
        netns::mount_namespace(&ns.mount)?;
        let (inner, outer) = (
            format!("{}{i}a", self.prefix),
            format!("{}{i}b", self.prefix),
        );
        host(
            "ip",
            &[
                "link", "add", &inner, "type", "veth", "peer", "name", &outer,
            ],
        )?;
        host("ip", &["link", "set", &inner, "netns", &net])?;
        host("ip", &["link", "set", &outer, "netns", &self.switch])?;
        host(
            "ip",
            &[
                "-n",
                &self.switch,
                "link",
                "set",
                &outer,
                "master",
                "br0",
                "up",
            ],
        )?;
        let n = |args: &[&str]| host("ip", &[&["-n", net.as_str()], args].concat());
        n(&["link", "set", &inner, "name", "eth0"])?;
        n(&["addr", "add", &format!("{underlay}/24"), "dev", "eth0"])?;
        n(&["link", "set", "eth0", "up"])?;
        n(&["link", "set", "lo", "up"])?;
        // A default route: without the agent's blackholes, mesh traffic would take it in cleartext.
        n(&["route", "add", "default", "via", "10.99.0.254"])?;
        self.start_daemon(name)?;
        let key = self.dir.join(format!("{name}.key"));
        Command::new(&self.agent_bin)
            .args(["pubkey", "--private-key"])
            .arg(&key)
            .output()?;
        Ok(())
    }

    fn node(&self, name: &str) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    fn node_mut(&mut self, name: &str) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    fn log(&self, what: &str) -> anyhow::Result<File> {
        Ok(File::options()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{what}.log")))?)
    }

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

    /// Sets (or, with `None`, removes) a label on a member; the next
    /// `set_policies` compiles with it.
    pub fn set_label(&mut self, name: &str, key: &str, value: Option<&str>) -> anyhow::Result<()> {
        let node = self.node_mut(name);
        match value {
            Some(value) => node.labels.insert(key.to_owned(), value.to_owned()),
            None => node.labels.remove(key),
        };
        self.write_members()
    }

    fn write_members(&self) -> anyhow::Result<()> {
        let mut text = String::new();
        for node in &self.nodes {
            let labels: Vec<String> = node
                .labels
                .iter()
                // JSON strings are YAML strings: `true` or `1` stay text.
                .map(|(k, v)| {
                    format!(
                        "{}: {}",
                        serde_json::Value::from(k.as_str()),
                        serde_json::Value::from(v.as_str())
                    )
                })
                .collect();
            text.push_str(&format!(
                "---\napiVersion: meshguard.io/v1alpha1\nkind: MeshNode\nmetadata: {{ name: {}, labels: {{ {} }} }}\nspec: {{ publicKey: {}, endpoint: \"{}:51820\" }}\n",
                node.name,
                labels.join(", "),
                self.public_key(&node.name)?,
                node.underlay
            ));
        }
        std::fs::write(self.dir.join("in/members.yaml"), text)?;
        Ok(())
    }

    /// Replaces the MeshPolicies and compiles NodePolicies into the state
    /// files the agents watch; returns each node's revision.
    pub fn set_policies(&self, yaml: &str) -> anyhow::Result<BTreeMap<String, String>> {
        self.compile(yaml, &[])
    }

    /// [`Mesh::set_policies`] with `auditPeers`, for agents in audit mode.
    pub fn set_policies_audit(&self, yaml: &str) -> anyhow::Result<BTreeMap<String, String>> {
        self.compile(yaml, &["--audit-peers"])
    }

    /// [`Mesh::set_policies`] with more `meshguard compile` flags (`--mesh-cidr`).
    pub fn set_policies_with(
        &self,
        yaml: &str,
        flags: &[&str],
    ) -> anyhow::Result<BTreeMap<String, String>> {
        self.compile(yaml, flags)
    }

    fn compile(&self, yaml: &str, flags: &[&str]) -> anyhow::Result<BTreeMap<String, String>> {
        std::fs::write(self.dir.join("in/policies.yaml"), yaml)?;
        let out = Command::new(&self.meshguard_bin)
            .arg("compile")
            .args(flags)
            .arg("-f")
            .arg(self.dir.join("in"))
            .arg("--out")
            .arg(self.dir.join("state"))
            .output()?;
        if !out.status.success() {
            bail!(
                "meshguard compile: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        for node in &self.nodes {
            let ip = self.policy(&node.name)?.spec.interface.mesh_ip;
            self.mesh_ips.borrow_mut().insert(node.name.clone(), ip);
        }
        self.revisions()
    }

    /// Writes a NodePolicy straight into the node's state file (atomically,
    /// as `meshguard compile` would): for workloads no MeshPolicy describes.
    pub fn write_state(&self, name: &str, policy: &NodePolicy) -> anyhow::Result<()> {
        let path = self.state_file(name);
        std::fs::create_dir_all(path.parent().context("state dir")?)?;
        let temporary = path.with_extension("tmp");
        std::fs::write(&temporary, serde_saphyr::to_string(policy)?)?;
        std::fs::rename(&temporary, &path)?;
        self.mesh_ips
            .borrow_mut()
            .insert(name.to_owned(), policy.spec.interface.mesh_ip.clone());
        Ok(())
    }

    pub fn revisions(&self) -> anyhow::Result<BTreeMap<String, String>> {
        self.nodes
            .iter()
            .map(|n| Ok((n.name.clone(), self.policy(&n.name)?.spec.revision)))
            .collect()
    }

    pub fn state_file(&self, name: &str) -> PathBuf {
        self.dir.join("state").join(format!("{name}.yaml"))
    }

    pub fn policy(&self, name: &str) -> anyhow::Result<NodePolicy> {
        Ok(serde_saphyr::from_str(&std::fs::read_to_string(
            self.state_file(name),
        )?)?)
    }

    pub fn mesh_ip(&self, name: &str) -> String {
        self.mesh_ips
            .borrow()
            .get(name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} has no mesh IP: compile first"))
    }

    pub fn status(&self, name: &str) -> Option<NodePolicyStatus> {
        serde_saphyr::from_str(
            &std::fs::read_to_string(self.dir.join(format!("{name}.status"))).ok()?,
        )
        .ok()
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
        // Tests want drift found fast; `extra` may choose otherwise.
        if !extra.contains(&"--resync-interval") {
            args.extend(["--resync-interval".to_owned(), "1s".to_owned()]);
        }
        for (flag, path) in [
            ("--state-file", &state),
            ("--status-file", &status),
            ("--private-key", &key),
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

    pub fn start_agents(&mut self, extra: &[&str]) -> anyhow::Result<()> {
        let names: Vec<String> = self.nodes.iter().map(|n| n.name.clone()).collect();
        for name in names {
            self.start_agent(&name, extra)?;
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

    /// Waits until every node with a running agent reports `Applied` at
    /// the revision in `revisions`; returns how long that took.
    pub fn wait_applied(
        &self,
        revisions: &BTreeMap<String, String>,
        timeout: Duration,
    ) -> anyhow::Result<Duration> {
        let started = Instant::now();
        self.wait_revisions(revisions, Duration::from_millis(20), timeout)?;
        Ok(started.elapsed())
    }

    /// [`Mesh::wait_applied`], polling every `poll`; returns when each node
    /// was first seen applying its revision (for per-node convergence times).
    pub fn wait_revisions(
        &self,
        revisions: &BTreeMap<String, String>,
        poll: Duration,
        timeout: Duration,
    ) -> anyhow::Result<BTreeMap<String, Instant>> {
        let started = Instant::now();
        let mut done = BTreeMap::new();
        loop {
            let now = Instant::now();
            let mut pending = Vec::new();
            for node in self.nodes.iter().filter(|n| n.agent.is_some()) {
                if done.contains_key(&node.name) {
                    continue;
                }
                let status = self.status(&node.name);
                let applied = status
                    .as_ref()
                    .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Applied"))
                    .is_some_and(|c| c.status == "True");
                if applied
                    && status.and_then(|s| s.observed_revision).as_ref()
                        == revisions.get(&node.name)
                {
                    done.insert(node.name.clone(), now);
                } else {
                    pending.push(node.name.as_str());
                }
            }
            if pending.is_empty() {
                return Ok(done);
            }
            if started.elapsed() > timeout {
                bail!(
                    "not applied within {timeout:?}: {pending:?}; logs in {}",
                    self.dir.display()
                );
            }
            std::thread::sleep(poll);
        }
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

    /// Starts echo servers on the node; returns once every port is bound.
    pub fn serve(&mut self, name: &str, tcp: &[u16], udp: &[u16]) -> anyhow::Result<()> {
        let words = matrix::serve_invocation(&self.probe_bin.display().to_string(), tcp, udp);
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

    /// Starts a program in the node's namespaces, stopped with the mesh.
    pub fn spawn(&mut self, name: &str, program: &str, args: &[&str]) -> anyhow::Result<()> {
        let child = self
            .node(name)
            .ns
            .command(program, args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.node_mut(name).probes.push(child);
        Ok(())
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
        let words = matrix::probe_invocation(
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
        Ok(matrix::run_all(commands, parallel)?)
    }

    /// What removes this mesh's namespaces and mounts; it can run on
    /// another thread (a Ctrl-C handler) while this mesh is in use.
    pub fn cleaner(&self) -> Cleaner {
        Cleaner {
            namespaces: self
                .nodes
                .iter()
                .map(|n| (n.ns.net.clone(), n.ns.mount.clone()))
                .collect(),
            switch: self.switch.clone(),
            mounts: self.mounts.clone(),
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

    /// The `meshguard` CLI the mesh compiles with.
    pub fn meshguard_bin(&self) -> &Path {
        &self.meshguard_bin
    }

    pub fn agent_bin(&self) -> &Path {
        &self.agent_bin
    }
}

/// One flow's traffic, for [`Mesh::probe_all`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Traffic {
    Tcp(u16),
    Udp(u16),
    Icmp,
}

/// Removes a mesh's namespaces and mounts, killing what still runs in them.
#[derive(Clone, Debug)]
pub struct Cleaner {
    namespaces: Vec<(String, PathBuf)>,
    switch: String,
    mounts: PathBuf,
}

impl Cleaner {
    pub fn run(&self) {
        for (net, _) in &self.namespaces {
            // Everything in the node's network namespace, by pid (never a
            // pattern match: parallel tests run daemons of the same name).
            let pids = host("ip", &["netns", "pids", net]).unwrap_or_default();
            for pid in pids.split_whitespace() {
                let _ = host("kill", &["-KILL", pid]);
            }
        }
        for (net, mount) in &self.namespaces {
            let _ = host("ip", &["netns", "del", net]);
            let _ = host("umount", &[&mount.display().to_string()]);
        }
        let _ = host("ip", &["netns", "del", &self.switch]);
        let _ = host("umount", &[&self.mounts.display().to_string()]);
        let _ = std::fs::remove_dir_all(&self.mounts);
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            for child in node
                .agent
                .iter_mut()
                .chain(node.daemon.iter_mut())
                .chain(node.probes.iter_mut())
            {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        self.cleaner().run();
        // Logs stay for a failed test, or when asked (`MESHGUARD_E2E_KEEP=1`).
        if !std::thread::panicking() && std::env::var_os("MESHGUARD_E2E_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
