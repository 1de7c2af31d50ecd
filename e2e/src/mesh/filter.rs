//! The packet filter a mesh's agents run with, and what it keeps in a
//! node's kernel, read and broken as an administrator would: one dataplane
//! suite runs against both backends, and only these few functions know
//! which one runs.
//!
//! ```text
//!  iptables  MESHGUARD-* chains and their hooks, mg4-/mg6- ipsets
//!  ebpf      TCX links and maps pinned under /sys/fs/bpf/meshguard/meshguard0/
//!            (a bpffs the agent mounts in the node's own mount namespace),
//!            and the leak guard chain in iptables
//! ```

use super::Mesh;

/// `--backend` of the agents a mesh starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    #[default]
    Iptables,
    Ebpf,
}

/// Where the eBPF backend pins what it attaches, in a node's mount namespace.
pub const PINS: &str = "/sys/fs/bpf/meshguard/meshguard0/v1";

impl Backend {
    /// As `--backend` and the NodePolicy status name it.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Iptables => "iptables",
            Backend::Ebpf => "ebpf",
        }
    }
}

/// One `#[test]` per backend for each function `fn name(backend: Backend)`
/// named: `iptables::name` and `ebpf::name`.
#[macro_export]
macro_rules! for_each_backend {
    ($($name:ident),* $(,)?) => {
        mod iptables {
            $(#[test]
            fn $name() {
                super::$name($crate::mesh::Backend::Iptables)
            })*
        }
        mod ebpf {
            $(#[test]
            fn $name() {
                super::$name($crate::mesh::Backend::Ebpf)
            })*
        }
    };
}

impl Mesh {
    /// Agents started from now on run `backend`.
    pub fn use_backend(&mut self, backend: Backend) {
        self.backend = backend;
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// What the backend keeps in `node`'s kernel, as lines that change when
    /// any of it is replaced: our chains and sets (iptables); the pins, the
    /// links (by id: a restarted agent swaps its programs into the same
    /// links) and the guard chain (eBPF).
    pub fn filter_state(&self, node: &str) -> anyhow::Result<Vec<String>> {
        let chains = self
            .exec(node, "iptables-save", &["-t", "filter"])
            .unwrap_or_default();
        let mut lines: Vec<String> = chains
            .lines()
            .filter(|l| l.contains("MESHGUARD"))
            .map(str::to_owned)
            .collect();
        match self.backend {
            Backend::Iptables => {
                let sets = self
                    .exec(node, "ipset", &["list", "-n"])
                    .unwrap_or_default();
                lines.extend(sets.lines().map(|s| format!("set {s}")));
            }
            Backend::Ebpf => {
                let pins = self.exec(node, "ls", &[PINS]).unwrap_or_default();
                lines.extend(pins.lines().map(|p| format!("pin {p}")));
                for link in ["link-ingress", "link-egress"] {
                    let shown = self.exec(
                        node,
                        "bpftool",
                        &["-j", "link", "show", "pinned", &format!("{PINS}/{link}")],
                    )?;
                    let id = serde_json::from_str::<serde_json::Value>(&shown)?["id"]
                        .as_u64()
                        .ok_or_else(|| anyhow::anyhow!("{node}: {link}: no link id in {shown}"))?;
                    lines.push(format!("{link} id {id}"));
                }
            }
        }
        Ok(lines)
    }

    /// Breaks `node`'s filter as a careless administrator would; returns
    /// the drift kinds (`meshguard_agent_drift_repairs_total{kind}`) a
    /// resync must repair.
    pub fn break_filter(&self, node: &str) -> anyhow::Result<Vec<&'static str>> {
        match self.backend {
            Backend::Iptables => {
                let set = self
                    .exec(node, "ipset", &["list", "-n"])?
                    .lines()
                    .find(|s| s.starts_with("mg4-s-"))
                    .map(str::to_owned)
                    .ok_or_else(|| anyhow::anyhow!("{node} has no mg4-s- set"))?;
                self.exec(node, "iptables", &["-w", "-F", "MESHGUARD-IN"])?;
                self.exec(
                    node,
                    "iptables",
                    &[
                        "-w",
                        "-D",
                        "OUTPUT",
                        "-o",
                        "meshguard0",
                        "-j",
                        "MESHGUARD-OUT",
                    ],
                )?;
                self.exec(node, "ipset", &["flush", &set])?;
                Ok(vec!["rules", "hooks", "sets"])
            }
            Backend::Ebpf => {
                // Detached from the interface; the pin stays, holding a dead link.
                self.exec(
                    node,
                    "bpftool",
                    &["link", "detach", "pinned", &format!("{PINS}/link-ingress")],
                )?;
                self.exec(node, "iptables", &["-w", "-F", "MESHGUARD-GUARD"])?;
                Ok(vec!["programs", "rules"])
            }
        }
    }

    /// What the backend left in `node`'s kernel (nothing, after teardown).
    pub fn filter_leftovers(&self, node: &str) -> Vec<String> {
        let mut left: Vec<String> = self
            .exec(node, "iptables-save", &[])
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("MESHGUARD"))
            .map(str::to_owned)
            .collect();
        let sets = self
            .exec(node, "ipset", &["list", "-n"])
            .unwrap_or_default();
        left.extend(
            sets.lines()
                .filter(|s| s.starts_with("mg4-") || s.starts_with("mg6-"))
                .map(|s| format!("set {s}")),
        );
        if self.exec(node, "ls", &["/sys/fs/bpf/meshguard"]).is_ok() {
            left.push("/sys/fs/bpf/meshguard".to_owned());
        }
        left
    }
}
