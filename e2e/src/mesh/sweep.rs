//! What a dead run left behind, removed before a new mesh is made.
//!
//! A test killed by SIGKILL (a CI timeout, an impatient Ctrl-\) never runs
//! [`Drop`]: its namespaces, their daemons and agents, and its mounts stay.
//! So every mesh records its owner — the process that made it, with its
//! start time, since pids are reused — in `/run/meshguard-e2e/<prefix>`
//! before it creates anything, and removes the record after cleaning up.
//! [`sweep`] removes every mesh whose owner no longer runs; `Mesh::new`
//! calls it first, so a reused machine never accumulates them. Nothing is
//! chosen by pattern alone: only prefixes with a record, only owners that
//! are gone.

use std::path::{Path, PathBuf};

use super::cleaner::Cleaner;
use crate::netns::host;

/// Where owner records live: `/run` is a tmpfs, emptied at boot, as the
/// namespaces are.
const OWNERS: &str = "/run/meshguard-e2e";

/// A process, told apart from a later one with the same pid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Owner {
    pid: u32,
    /// Clock ticks after boot (`/proc/<pid>/stat`, field 22).
    started: u64,
}

impl Owner {
    fn this() -> Option<Owner> {
        let pid = std::process::id();
        Some(Owner {
            pid,
            started: started(pid)?,
        })
    }

    fn alive(&self) -> bool {
        started(self.pid) == Some(self.started)
    }
}

fn started(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count
    // fields from the last `)`; field 22 is the 20th after it.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn record(prefix: &str) -> PathBuf {
    Path::new(OWNERS).join(prefix)
}

/// Records this process as the owner of the mesh `prefix`.
pub(super) fn claim(prefix: &str) -> anyhow::Result<()> {
    let owner =
        Owner::this().ok_or_else(|| anyhow::anyhow!("cannot read this process's start time"))?;
    std::fs::create_dir_all(OWNERS)?;
    // Written aside, then renamed: a sweep in another process never reads
    // a half-written record (which it would take for a dead owner's).
    let aside = Path::new(OWNERS).join(format!(".{prefix}.new"));
    std::fs::write(&aside, format!("{} {}\n", owner.pid, owner.started))?;
    std::fs::rename(&aside, record(prefix))?;
    Ok(())
}

/// The mesh `prefix` is cleaned up: its record goes.
pub(super) fn release(prefix: &str) {
    let _ = std::fs::remove_file(record(prefix));
}

/// What [`sweep`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Prefixes of meshes whose owner was gone.
    pub meshes: Vec<String>,
    pub namespaces: usize,
    pub processes: usize,
}

/// Removes every mesh whose recorded owner no longer runs: the processes
/// in its namespaces, the namespaces, its mounts, the record.
pub fn sweep() -> Swept {
    let mut swept = Swept::default();
    let Ok(entries) = std::fs::read_dir(OWNERS) else {
        return swept;
    };
    let namespaces: Vec<String> = host("ip", &["netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect();
    for entry in entries.flatten() {
        let prefix = entry.file_name().to_string_lossy().into_owned();
        if prefix.starts_with('.') {
            continue; // a record being written
        }
        let owner = std::fs::read_to_string(entry.path()).ok().and_then(|text| {
            let mut fields = text.split_whitespace();
            Some(Owner {
                pid: fields.next()?.parse().ok()?,
                started: fields.next()?.parse().ok()?,
            })
        });
        if owner.is_some_and(|o| o.alive()) {
            continue;
        }
        let switch = format!("{prefix}-sw");
        let mounts = PathBuf::from("/run").join(&prefix);
        let nodes: Vec<(String, PathBuf)> = namespaces
            .iter()
            .filter(|n| n.starts_with(&format!("{prefix}-")) && **n != switch)
            .map(|net| {
                let node = &net[prefix.len() + 1..];
                (net.clone(), mounts.join(format!("{node}.mnt")))
            })
            .collect();
        swept.namespaces += nodes.len() + usize::from(namespaces.contains(&switch));
        for (net, _) in &nodes {
            swept.processes += host("ip", &["netns", "pids", net])
                .unwrap_or_default()
                .split_whitespace()
                .count();
        }
        Cleaner {
            namespaces: nodes,
            switch,
            mounts,
        }
        .run();
        release(&prefix);
        swept.meshes.push(prefix);
    }
    if !swept.meshes.is_empty() {
        eprintln!(
            "swept what dead test runs left: meshes {} ({} namespaces, {} processes)",
            swept.meshes.join(", "),
            swept.namespaces,
            swept.processes
        );
    }
    swept
}
