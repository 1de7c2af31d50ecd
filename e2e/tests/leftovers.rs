//! A test run killed by SIGKILL runs none of its cleanup; the next mesh
//! sweeps what it left. `mesh-hold` makes a two-node mesh (namespaces,
//! mounts, a boringtun daemon per node) and is killed with SIGKILL; its
//! namespaces and daemons are then still there, and after a sweep — the
//! one `Mesh::new` runs first, and `sweep` called directly — none is.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
};

use meshguard_e2e::mesh::{Mesh, binary, sweep};

/// Starts `mesh-hold`, waits for its mesh, kills it with SIGKILL; returns
/// the mesh's prefix and the pids of the processes left in its namespaces.
fn killed_mesh() -> (String, Vec<String>) {
    let mut hold = Command::new(binary("mesh-hold").unwrap())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(hold.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let prefix = line.trim().to_owned();
    assert!(prefix.starts_with("mg"), "mesh-hold said {line:?}");
    hold.kill().unwrap(); // SIGKILL: no Drop runs
    hold.wait().unwrap();
    let namespaces = ours(&prefix);
    assert_eq!(
        namespaces.len(),
        3,
        "two nodes and the switch: {namespaces:?}"
    );
    let pids: Vec<String> = namespaces.iter().flat_map(|ns| pids(ns)).collect();
    assert_eq!(
        pids.len(),
        2,
        "a boringtun daemon per node left running: {pids:?}"
    );
    (prefix, pids)
}

fn ours(prefix: &str) -> Vec<String> {
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("{prefix}-")))
        .map(str::to_owned)
        .collect()
}

fn pids(namespace: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "pids", namespace])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Whether `pid` still runs: a zombie (killed, not yet reaped by whoever
/// inherited it) holds nothing and does not count. SIGKILL takes effect
/// asynchronously, so this waits up to 2 s for it.
fn runs(pid: &str) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                let (_, rest) = stat.rsplit_once(')')?;
                rest.split_whitespace().next().map(str::to_owned)
            });
        match state.as_deref() {
            None | Some("Z" | "X") => return false,
            Some(_) if std::time::Instant::now() > deadline => return true,
            Some(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
}

fn assert_gone(prefix: &str, pids: &[String]) {
    assert_eq!(ours(prefix), Vec::<String>::new(), "namespaces left");
    for pid in pids {
        assert!(!runs(pid), "process {pid} still runs");
    }
    assert!(!Path::new("/run").join(prefix).exists(), "mounts left");
    assert!(
        !Path::new("/run/meshguard-e2e").join(prefix).exists(),
        "the owner record stays"
    );
    // The dead run's logs are kept by design (a killed run may need a
    // look); these two runs' are of no interest.
    let _ = std::fs::remove_dir_all(std::env::temp_dir().join("meshguard-e2e").join(prefix));
}

#[test]
fn what_a_killed_run_left_is_swept_before_the_next_mesh() {
    // Through Mesh::new, as every test starts.
    let (prefix, left) = killed_mesh();
    let next = Mesh::new(&[("c", &[])]).unwrap();
    assert_gone(&prefix, &left);
    // A live mesh is never swept: its owner (this process) runs.
    let swept = sweep();
    assert!(!swept.meshes.contains(&next.prefix), "{swept:?}");
    assert_eq!(ours(&next.prefix).len(), 2, "the live mesh was touched");
    drop(next);

    // Directly, with what it counted.
    let (prefix, left) = killed_mesh();
    let swept = sweep();
    assert!(swept.meshes.contains(&prefix), "{swept:?}");
    assert!(swept.namespaces >= 3 && swept.processes >= 2, "{swept:?}");
    assert_gone(&prefix, &left);
    eprintln!(
        "swept a SIGKILLed run: {} namespaces, {} processes",
        swept.namespaces, swept.processes
    );
}
