//! A mesh of nodes in namespaces, with real daemons, agents and traffic.
//!
//! [`Mesh`] is the topology (namespaces, veths, the switch, cleanup); its
//! other methods are split by job:
//!
//! ```text
//!  mod.rs (topology, cleanup) ◀── processes (boringtun, agents, servers, logs)
//!                             ◀── inputs (members, policies compiled by the CLI, status)
//!                             ◀── probing (flows sent from inside nodes) ──▶ crate::probe
//!                             ◀── streams (raw floods and echo streams in the background) ──▶ crate::flood
//!                             ◀── filter (the backend the agents run, read and broken)
//!                             ◀── sweep (what runs killed before their cleanup left)
//!                             ◀── secrets (what it wrote, scanned for the keys it used)
//! ```
//!
//! `crate::matrix` builds on this module; nothing here depends on it.

mod cleaner;
mod filter;
mod inputs;
mod probing;
mod processes;
mod secrets;
mod streams;
mod sweep;

use std::{
    cell::RefCell,
    collections::BTreeMap,
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command},
};

use anyhow::{Context, bail};

pub use self::{
    cleaner::Cleaner,
    filter::{Backend, PINS as EBPF_PINS},
    inputs::SavedStates,
    probing::PASS_WITHIN,
    secrets::{Hit, Scan, scan as scan_for_secrets},
    streams::{Counted, Flooded, Flow, Stream},
    sweep::{Swept, sweep},
};
use crate::netns::{self, Namespaces, host};
pub use crate::probe::Traffic;

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
    mesh_ips: RefCell<BTreeMap<String, String>>,
    daemon_threads: Option<u16>,
    /// `--backend` of the agents started.
    backend: Backend,
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
        sweep();
        let mut id = [0u8; 3];
        getrandom::fill(&mut id).map_err(|e| anyhow::anyhow!("randomness: {e}"))?;
        let prefix = format!("mg{:02x}{:02x}{:02x}", id[0], id[1], id[2]);
        // Before anything is made: a run killed from here on is swept.
        sweep::claim(&prefix)?;
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
            backend: Backend::default(),
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

    pub(super) fn node(&self, name: &str) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    pub(super) fn node_mut(&mut self, name: &str) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    pub(super) fn log(&self, what: &str) -> anyhow::Result<File> {
        Ok(File::options()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{what}.log")))?)
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

    /// The `meshguard` CLI the mesh compiles with.
    pub fn meshguard_bin(&self) -> &Path {
        &self.meshguard_bin
    }

    pub fn agent_bin(&self) -> &Path {
        &self.agent_bin
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        // The agents' last scrape joins what the secrets scan reads.
        for name in self
            .nodes
            .iter()
            .filter(|n| n.agent.is_some())
            .map(|n| n.name.clone())
            .collect::<Vec<_>>()
        {
            let _ = std::fs::write(
                self.dir.join(format!("{name}.metrics")),
                self.metrics(&name),
            );
        }
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
        sweep::release(&self.prefix);
        let scan = secrets::scan(&self.dir);
        eprintln!(
            "mesh {}: {} files ({} bytes) scanned for its {} secrets: {} hits",
            self.prefix,
            scan.files,
            scan.bytes,
            scan.secrets,
            scan.hits.len()
        );
        let leaked = !scan.hits.is_empty() || !scan.unread.is_empty();
        // Logs stay for a failed test, a leak, or when asked (`MESHGUARD_E2E_KEEP=1`).
        if !std::thread::panicking() && !leaked && std::env::var_os("MESHGUARD_E2E_KEEP").is_none()
        {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        if leaked && !std::thread::panicking() {
            let hits: Vec<String> = scan
                .hits
                .iter()
                .map(|h| format!("{} in {}", h.what, h.file.display()))
                .chain(
                    scan.unread
                        .iter()
                        .map(|u| format!("cannot scan for secrets: {u}")),
                )
                .collect();
            panic!(
                "the secrets scan of {}: {}",
                self.dir.display(),
                hits.join("; ")
            );
        }
    }
}
