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
//! [`render`] is pure (NodePolicy in, rule text and set contents out, golden
//! tested); [`apply`] puts it into the kernel: sets filled aside and swapped
//! in, rules in one `iptables-restore --noflush` transaction per family.

pub mod apply;
pub mod render;
