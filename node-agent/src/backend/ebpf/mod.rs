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
//!  programs  load the object (aya), attach ingress and egress, write maps
//! ```
//!
//! A packet costs at most four map lookups whatever the rule count: the
//! flow table, the remote address's class (one LPM lookup), the verdict of
//! (direction, protocol, class, port) (one LPM lookup), and on an allowed
//! first packet the flow's insertion.

pub mod classes;
pub mod keys;
pub mod programs;
pub mod verdicts;
