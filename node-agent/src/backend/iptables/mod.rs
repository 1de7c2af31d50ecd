//! The iptables + ipset backend.
//!
//! ```text
//!  INPUT   -i mesh ─▶ MESHGUARD-IN  ─┐ replies · ownership · rules in order · DROP
//!  FORWARD -i mesh ─▶ MESHGUARD-IN  ─┘
//!  OUTPUT  -o mesh ─▶ MESHGUARD-OUT ─┐ replies · ownership · rules in order · DROP
//!  FORWARD -o mesh ─▶ MESHGUARD-OUT ─┘
//!  OUTPUT, FORWARD ─▶ MESHGUARD-GUARD   mesh addresses leaving by another interface: DROP
//! ```
//!
//! [`render`] is pure (the parsed NodePolicy in, rule text and set contents
//! out, golden tested). The rest puts it into the kernel and reads it back:
//!
//! ```text
//!  render ──▶ apply (the transaction: sets, then rules per family, then stale sets)
//!               ├─ ipset   restore scripts (fill aside, swap), `ipset save` read back
//!               ├─ edit    in-place chain edits (only the changed stretch)
//!               ├─ hooks   jumps from INPUT/OUTPUT/FORWARD into our chains
//!               └─ tools   iptables or ip6tables, per family
//!  drift ◀── saved (iptables-save parsed, fingerprints) ──▶ counters (per rule id)
//! ```
//!
//! `contract` puts it behind [`crate::backend::Backend`]: render, then apply.

mod apply;
mod contract;
mod counters;
mod drift;
mod edit;
mod hooks;
pub mod ipset;
pub mod render;
mod saved;
mod tools;

pub use apply::Iptables;
