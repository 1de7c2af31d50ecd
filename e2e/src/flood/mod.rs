//! Raw packets for the fail-closed tests (`mesh-probe flood|count|pings`).
//!
//! A connect or a ping retries and waits; a stream of single raw packets
//! does neither, so a filter that lets even one packet through a window of
//! a few milliseconds (a rule swap, an agent restart) is counted. Counting
//! happens on a raw socket at the receiver, which the kernel feeds after
//! the filters (the eBPF program at TC ingress, iptables' INPUT): what it
//! sees is exactly what got through. IPv4: the mesh tests' addresses.
//!
//! ```text
//!  sender ns                                receiver ns
//!  flood ── SYN/UDP/echo + MARKER ──▶ filter ──▶ count (raw socket): received N
//!  pings ── echo + MARKER ──────────▶ filter ──▶ kernel answers ──▶ pings: lost [seq]
//! ```
//!
//! Each runs until its standard input closes (the test closes the pipe),
//! then prints one line of figures.

mod packet;
mod raw;

pub use packet::{MARKER, Protocol, SOURCE_PORT, Seen, checksum, echo_request, packet, recognise};
pub use raw::{Figures, count, flood, pings, stop_on_eof};
