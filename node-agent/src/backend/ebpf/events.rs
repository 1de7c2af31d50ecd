//! The programs' events, logged: the first packet of a flow that reached a
//! Log rule or an Audit-mode policy's rule (and under agent-wide audit
//! every first packet), each rule's line reading as the iptables backend's
//! NFLOG prefix would: `log <policy>/<rule>`, `would-allow …`,
//! `would-deny …`.
//!
//! ```text
//!  programs ──ring buffer `events`──▶ PacketLog::run (every 200 ms) ──▶ tracing (target meshguard_agent::packets)
//!                                          ▲ slot -> rules: Slots, refreshed by each apply
//! ```
//!
//! [`Event::parse`] and [`says`] are pure; only [`PacketLog::run`] waits.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::{Arc, RwLock},
};

use aya::maps::{MapData, RingBuf};

use super::{
    keys::{SLOT_NOT_OURS_EGRESS, SLOT_NOT_OURS_INGRESS},
    revision::{Mark, NOT_OURS, Slot},
};
use crate::desired::verdict::Direction;

/// Counter slots by number, as the last apply left them.
pub type Slots = Arc<RwLock<BTreeMap<u32, Slot>>>;

/// `struct event` of `bpf/meshguard.c`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub slot: u32,
    pub direction: Direction,
    pub allowed: bool,
    pub protocol: u8,
    pub local: IpAddr,
    pub remote: IpAddr,
    /// Host order; 0 for protocols without ports.
    pub local_port: u16,
    pub remote_port: u16,
}

/// The size of `struct event`.
const EVENT_SIZE: usize = 44;

impl Event {
    /// One event as the programs wrote it; `None` for bytes that are not one.
    pub fn parse(bytes: &[u8]) -> Option<Event> {
        if bytes.len() < EVENT_SIZE {
            return None;
        }
        let address = |at: usize| -> Option<IpAddr> {
            let raw: [u8; 16] = bytes.get(at..at + 16)?.try_into().ok()?;
            match bytes[7] {
                4 => Some(IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))),
                6 => Some(IpAddr::V6(Ipv6Addr::from(raw))),
                _ => None,
            }
        };
        let protocol = bytes[6];
        let has_ports = matches!(protocol, 6 | 17 | 132);
        // Ports are in network order in the flow key.
        let port = |at: usize| {
            if has_ports {
                u16::from_be_bytes([bytes[at], bytes[at + 1]])
            } else {
                0
            }
        };
        Some(Event {
            slot: u32::from_ne_bytes(bytes[0..4].try_into().ok()?),
            direction: match bytes[4] {
                0 => Direction::Ingress,
                _ => Direction::Egress,
            },
            allowed: bytes[5] == 1,
            protocol,
            local: address(8)?,
            remote: address(24)?,
            local_port: port(40),
            remote_port: port(42),
        })
    }
}

/// What the event's rules say, one line per rule that logs: Log rules and
/// Audit-mode rules always, and under agent-wide `audit` the deciding rule
/// (or default deny, or the ownership check) with its would-be verdict.
pub fn says(event: &Event, slot: Option<&Slot>, audit: bool) -> Vec<String> {
    let would = if event.allowed {
        "would-allow"
    } else {
        "would-deny"
    };
    let Some(slot) = slot else {
        return match event.slot {
            SLOT_NOT_OURS_INGRESS | SLOT_NOT_OURS_EGRESS if audit => {
                vec![format!("would-deny {NOT_OURS}")]
            }
            // A slot released since the packet was counted: its rules are
            // no longer known, but the packet is still said.
            _ => vec![format!(
                "{} by rules of an earlier revision (slot {})",
                if event.allowed { "allowed" } else { "denied" },
                event.slot
            )],
        };
    };
    slot.rules
        .iter()
        .zip(&slot.marks)
        .filter_map(|(rule, mark)| match mark {
            Mark::Log => Some(format!("log {rule}")),
            Mark::WouldAllow => Some(format!("would-allow {rule}")),
            Mark::WouldDeny => Some(format!("would-deny {rule}")),
            Mark::Counted if audit => Some(format!("{would} {rule}")),
            Mark::Counted => None,
        })
        .collect()
}

/// The reader of the programs' ring buffer.
pub struct PacketLog {
    pub(super) ring: RingBuf<MapData>,
    pub(super) slots: Slots,
}

impl PacketLog {
    /// What the events waiting in the ring say, read without waiting (for
    /// tools and tests; the agent runs [`PacketLog::run`]).
    pub fn drain(&mut self, audit: bool) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(item) = self.ring.next() {
            if let Some(event) = Event::parse(&item) {
                let known = self
                    .slots
                    .read()
                    .ok()
                    .and_then(|s| s.get(&event.slot).cloned());
                out.extend(says(&event, known.as_ref(), audit));
            }
        }
        out
    }

    /// Logs the events every `DRAIN_EVERY`, for as long as the agent runs.
    /// (Waiting on the ring's descriptor would need `unsafe` to register it
    /// with tokio; a log line a fifth of a second late costs nothing.)
    pub async fn run(mut self, audit: bool) {
        let mut every = tokio::time::interval(DRAIN_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            while let Some(item) = self.ring.next() {
                let Some(event) = Event::parse(&item) else {
                    continue;
                };
                let known = self
                    .slots
                    .read()
                    .ok()
                    .and_then(|s| s.get(&event.slot).cloned());
                for said in says(&event, known.as_ref(), audit) {
                    log(&event, &said);
                }
            }
        }
    }
}

/// How often the agent reads the ring (256 KiB: about 5,000 events; more in
/// one interval are dropped by the programs, the counters still count them).
const DRAIN_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

fn log(event: &Event, said: &str) {
    let (source, destination) = match event.direction {
        Direction::Ingress => (
            (event.remote, event.remote_port),
            (event.local, event.local_port),
        ),
        Direction::Egress => (
            (event.local, event.local_port),
            (event.remote, event.remote_port),
        ),
    };
    tracing::info!(
        target: "meshguard_agent::packets",
        direction = ?event.direction,
        protocol = event.protocol,
        source = %source.0,
        source_port = source.1,
        destination = %destination.0,
        destination_port = destination.1,
        "{said}"
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn bytes(slot: u32, family: u8, protocol: u8) -> Vec<u8> {
        let mut b = vec![0u8; EVENT_SIZE];
        b[0..4].copy_from_slice(&slot.to_ne_bytes());
        b[4] = 1; // egress
        b[5] = 1; // allowed
        b[6] = protocol;
        b[7] = family;
        b[8..12].copy_from_slice(&[10, 0, 0, 1]);
        b[24..28].copy_from_slice(&[10, 0, 0, 2]);
        b[40..42].copy_from_slice(&40000u16.to_be_bytes());
        b[42..44].copy_from_slice(&5432u16.to_be_bytes());
        b
    }

    #[test]
    fn events_read_as_the_programs_write_them() {
        let event = Event::parse(&bytes(7, 4, 6)).unwrap();
        assert_eq!(
            event,
            Event {
                slot: 7,
                direction: Direction::Egress,
                allowed: true,
                protocol: 6,
                local: "10.0.0.1".parse().unwrap(),
                remote: "10.0.0.2".parse().unwrap(),
                local_port: 40000,
                remote_port: 5432,
            }
        );
        // ICMP carries an identifier where ports would be: none reported.
        assert_eq!(Event::parse(&bytes(7, 4, 1)).unwrap().remote_port, 0);
        assert!(Event::parse(&bytes(7, 5, 6)).is_none(), "no family 5");
        assert!(Event::parse(&bytes(7, 4, 6)[..40]).is_none(), "short");
    }

    #[test]
    fn each_rule_says_what_its_nflog_prefix_would() {
        let slot = Slot {
            direction: Direction::Egress,
            rules: vec!["p/log".into(), "q/audited".into(), "p/allow".into()],
            marks: vec![Mark::Log, Mark::WouldDeny, Mark::Counted],
        };
        let event = Event::parse(&bytes(7, 4, 6)).unwrap();
        assert_eq!(
            says(&event, Some(&slot), false),
            ["log p/log", "would-deny q/audited"]
        );
        assert_eq!(
            says(&event, Some(&slot), true),
            ["log p/log", "would-deny q/audited", "would-allow p/allow"]
        );
        let not_ours = Event {
            slot: SLOT_NOT_OURS_EGRESS,
            allowed: false,
            ..event
        };
        assert_eq!(
            says(&not_ours, None, true),
            ["would-deny meshguard:not-ours"]
        );
    }
}
