//! The meshguard operator: watches MeshPolicy, PolicyChain, MeshNode, Nodes and
//! the Secrets and ConfigMaps chains reference; compiles them (a pure function,
//! shared with the offline `meshguard` CLI) into one NodePolicy per member.
//!
//! ```text
//!  watchers ──▶ index ──▶ compile (pure) ──▶ NodePolicy writer
//!                  └────▶ IPAM, statuses, Events, metrics
//! ```
//!
//! Today the crate holds the CLI's manifest commands ([`cli`]); the compiler and
//! the controllers land with their issues.

#![forbid(unsafe_code)]

pub mod cli;
