//! The eBPF backend: TC programs on the mesh interface
//! (`node-agent/bpf/meshguard.c`, compiled by `build.rs`) and the maps
//! they decide with, pinned under a bpffs so that they outlive the agent.
//!
//! ```text
//!  classes   pure: the addresses every rule treats alike, as LPM entries
//!  verdicts  pure: the rules as a first-match table over classes and ports
//!  ids       pure: class and counter-slot numbers that outlive a revision
//!  revision  pure: a generation's map entries, and the delta between two
//!  keys      pure: the programs' key and value layouts, byte for byte
//!  programs  load (aya), pin, attach, write a delta, switch, read counters
//!  bpffs     mount the BPF filesystem when missing
//!  events    the programs' event ring read and logged (Log rules, audit)
//!  apply     the backend's state: write aside, switch, release
//!  contract  behind backend::Backend
//! ```
//!
//! A packet costs at most eight map lookups whatever the rule count: the
//! live generation and its settings, the flow table (twice for an ICMP
//! error: its own flow, then the one it quotes), the remote and the local
//! address's classes (one LPM lookup each), the verdict of (generation,
//! direction, remote class, local class, protocol, port) (one LPM lookup)
//! and its counter slot; an allowed first packet then inserts its flow. A
//! packet of a known flow costs three; a known flow of an older revision is
//! decided again (classes and verdict), once.
//!
//! The leak guard (mesh addresses leaving by another interface) stays in
//! iptables (`MESHGUARD-GUARD`, see `iptables::render::render_guard`): the
//! programs only see the mesh interface.

mod apply;
pub mod bpffs;
pub mod classes;
mod contract;
pub mod events;
pub mod ids;
pub mod keys;
pub mod programs;
pub mod revision;
pub mod verdicts;

use std::path::PathBuf;

pub use apply::Ebpf;

use crate::command::CommandError;

#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    #[error(transparent)]
    Programs(#[from] programs::ProgramsError),
    #[error("the NodePolicy cannot be written to the eBPF maps: {0}")]
    Contents(#[from] revision::ContentsError),
    #[error("mounting the BPF filesystem: {0}")]
    Mount(CommandError),
    #[error("{path}: {source}")]
    Pins {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the leak guard (iptables): {0}")]
    Guard(#[from] CommandError),
    #[error("the eBPF programs were not loaded")]
    NotStarted,
}
