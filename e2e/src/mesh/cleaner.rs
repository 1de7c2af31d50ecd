//! Removing a mesh: what `Drop`, a Ctrl-C handler and the sweep of dead
//! runs share.

use std::path::PathBuf;

use crate::netns::host;

/// Removes a mesh's namespaces and mounts, killing what still runs in them.
#[derive(Clone, Debug)]
pub struct Cleaner {
    /// Each node's network namespace and the file of its mount namespace.
    pub(super) namespaces: Vec<(String, PathBuf)>,
    pub(super) switch: String,
    pub(super) mounts: PathBuf,
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
