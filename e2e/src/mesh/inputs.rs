//! What a mesh is given: its members (MeshNodes with labels), policies
//! compiled into state files by the real `meshguard compile`, NodePolicies
//! written directly; and what the agents report back (status files).

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use meshguard_crds::{NodePolicy, NodePolicyStatus};

use super::Mesh;

/// State files saved by [`Mesh::saved_states`].
#[derive(Clone, Debug)]
pub struct SavedStates {
    texts: BTreeMap<String, String>,
    pub revisions: BTreeMap<String, String>,
}

impl Mesh {
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

    pub(super) fn write_members(&self) -> anyhow::Result<()> {
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
        replace(&path, &serde_saphyr::to_string(policy)?)?;
        self.mesh_ips
            .borrow_mut()
            .insert(name.to_owned(), policy.spec.interface.mesh_ip.clone());
        Ok(())
    }

    /// Every node's state file as it is now, to put back later without
    /// compiling (a test flipping between revisions).
    pub fn saved_states(&self) -> anyhow::Result<SavedStates> {
        Ok(SavedStates {
            texts: self
                .nodes
                .iter()
                .map(|n| {
                    Ok((
                        n.name.clone(),
                        std::fs::read_to_string(self.state_file(&n.name))?,
                    ))
                })
                .collect::<anyhow::Result<_>>()?,
            revisions: self.revisions()?,
        })
    }

    /// Puts saved state files back, each replaced atomically.
    pub fn install_states(&self, saved: &SavedStates) -> anyhow::Result<()> {
        for (name, text) in &saved.texts {
            replace(&self.state_file(name), text)?;
        }
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

    /// Removes the node's status file: after a crash, to wait for what
    /// the restarted agent reports rather than what the dead one left.
    pub fn forget_status(&self, name: &str) -> std::io::Result<()> {
        match std::fs::remove_file(self.dir.join(format!("{name}.status"))) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    pub fn status(&self, name: &str) -> Option<NodePolicyStatus> {
        serde_saphyr::from_str(
            &std::fs::read_to_string(self.dir.join(format!("{name}.status"))).ok()?,
        )
        .ok()
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
}

/// Replaces a file atomically, as `meshguard compile` does: an agent never
/// reads half of it.
fn replace(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text)?;
    std::fs::rename(&temporary, path)
}
