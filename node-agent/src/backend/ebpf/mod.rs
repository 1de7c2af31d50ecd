//! The eBPF backend, being built (issue 14): TC programs on the mesh
//! interface (`node-agent/bpf/meshguard.c`, compiled by `build.rs`) and the
//! maps they decide with. Not selectable with `--backend` yet: the
//! NodePolicy -> maps compiler, counters, atomic revisions and pinning come
//! first.
//!
//! ```text
//!  classes   pure: the addresses every rule treats alike, as LPM entries
//!  verdicts  pure: the rules as a first-match table over classes and ports
//!  keys      pure: what an address class, a verdict and a port range
//!            become as LPM trie keys (the programs' layout, byte for byte)
//!  programs  load the object (aya), write a table into fresh maps, attach
//!            ingress and egress
//! ```
//!
//! A packet costs at most four map lookups whatever the rule count: the
//! remote and the local address's classes (one LPM lookup each), the flow
//! table, and the verdict of (direction, remote class, local class,
//! protocol, port) (one LPM lookup); an allowed first packet then inserts
//! its flow.

pub mod classes;
pub mod keys;
pub mod programs;
pub mod verdicts;
