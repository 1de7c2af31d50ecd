//! The programs' map layouts (`bpf/meshguard.c`), byte for byte. Pure:
//! what the agent writes is pinned by unit tests, the programs' reading of
//! it by the namespace tests (e2e/tests/ebpf.rs).
//!
//! Every class and verdict key starts with the generation it belongs to
//! (0 or 1): the agent writes a revision into the generation that is not
//! live and then flips the `state` word, so both revisions sit in the same
//! maps side by side and a packet reads one of them whole.

use std::net::IpAddr;

use aya::maps::lpm_trie::Key;
use ipnet::IpNet;
use meshguard_crds::Protocol;

use crate::desired::verdict::Direction;

/// Counter slots the programs use for packets whose local address the node
/// does not own (`SLOT_NOT_OURS_*`); verdict slots start after them.
pub const SLOT_NOT_OURS_INGRESS: u32 = 0;
pub const SLOT_NOT_OURS_EGRESS: u32 = 1;
pub const FIRST_VERDICT_SLOT: u32 = 2;

/// A verdict map value: the counter slot of the rules that count the
/// packet, whether one of them logs it, and whether it is allowed.
pub fn verdict_value(slot: u32, logs: bool, allow: bool) -> u32 {
    (slot << 2) | (u32::from(logs) << 1) | u32::from(allow)
}

/// The counter slot of a verdict map value.
pub fn slot_of_value(value: u32) -> u32 {
    value >> 2
}

/// The IP protocol numbers of a rule's protocol (ICMP is ICMPv6 for IPv6).
pub fn protocol_numbers(protocol: Protocol) -> &'static [u8] {
    match protocol {
        Protocol::TCP => &[6],
        Protocol::UDP => &[17],
        Protocol::SCTP => &[132],
        Protocol::ICMP => &[1, 58],
    }
}

/// Which address of a packet a class is of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    Remote,
    Local,
}

/// An address range's key in `classes_v4`/`locals_v4` or their v6 twins.
#[derive(Clone, Copy)]
pub enum ClassKey {
    V4(Key<[u8; 5]>),
    V6(Key<[u8; 17]>),
}

impl ClassKey {
    pub fn of(generation: u8, net: IpNet) -> ClassKey {
        let prefix = 8 + u32::from(net.prefix_len());
        match net.network() {
            IpAddr::V4(a) => {
                let mut data = [generation; 5];
                data[1..].copy_from_slice(&a.octets());
                ClassKey::V4(Key::new(prefix, data))
            }
            IpAddr::V6(a) => {
                let mut data = [generation; 17];
                data[1..].copy_from_slice(&a.octets());
                ClassKey::V6(Key::new(prefix, data))
            }
        }
    }
}

/// What one verdict entry is for, without its generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VerdictFor {
    pub direction: Direction,
    pub remote: u32,
    pub local: u32,
    /// `None`: the protocols no rule names.
    pub protocol: Option<u8>,
    /// `None`: every port (and the only form for protocols without ports).
    pub port: Option<PortPrefix>,
}

/// A verdict key: generation, direction, remote and local class, and a
/// protocol number with a port prefix.
pub fn verdict_key(generation: u8, entry: &VerdictFor) -> Key<[u8; 13]> {
    let mut data = [0u8; 13];
    data[0] = generation;
    data[1] = match entry.direction {
        Direction::Ingress => 0,
        Direction::Egress => 1,
    };
    data[2..6].copy_from_slice(&entry.remote.to_be_bytes());
    data[6..10].copy_from_slice(&entry.local.to_be_bytes());
    let Some(protocol) = entry.protocol else {
        return Key::new(80, data);
    };
    data[10] = protocol;
    let bits = match entry.port {
        None => 0,
        Some(p) => {
            data[11..13].copy_from_slice(&p.port.to_be_bytes());
            p.bits
        }
    };
    Key::new(88 + bits, data)
}

/// The `settings` map's value for one generation (`struct settings`:
/// revision, audit, handshake mark, handshake port in network order and
/// two bytes of padding), as four native-endian words (a `u32` array is
/// what aya copies without `unsafe`). `revision` is never 0 once written:
/// 0 tells the programs that nothing is allowed yet.
pub fn settings_value(
    revision: u32,
    audit: bool,
    handshake_mark: u32,
    handshake_port: u16,
) -> [u32; 4] {
    let port = handshake_port.to_be_bytes();
    [
        revision,
        u32::from(audit),
        handshake_mark,
        u32::from_ne_bytes([port[0], port[1], 0, 0]),
    ]
}

/// Ports sharing their first `bits` bits with `port`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortPrefix {
    pub port: u16,
    pub bits: u32,
}

/// The fewest port prefixes that cover `first..=last` exactly (at most 30
/// for any range of 16-bit ports).
pub fn port_prefixes(first: u16, last: u16) -> Vec<PortPrefix> {
    let mut out = Vec::new();
    let (mut low, high) = (u32::from(first), u32::from(last));
    while low <= high {
        // The largest aligned block starting at `low` that stays in range.
        let mut size = if low == 0 {
            1 << 16
        } else {
            1 << low.trailing_zeros()
        };
        while low + size - 1 > high {
            size >>= 1;
        }
        out.push(PortPrefix {
            // low < 2^16 inside the loop: high is a u16.
            port: u16::try_from(low).unwrap_or(u16::MAX),
            bits: 16 - size.trailing_zeros(),
        });
        low += size;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn covered(prefixes: &[PortPrefix]) -> Vec<u32> {
        let mut ports: Vec<u32> = prefixes
            .iter()
            .flat_map(|p| {
                let size = 1u32 << (16 - p.bits);
                let start = u32::from(p.port);
                assert_eq!(start % size, 0, "{p:?} is not aligned");
                start..start + size
            })
            .collect();
        ports.sort_unstable();
        ports
    }

    #[test]
    fn port_ranges_become_exact_prefix_covers() {
        for (first, last) in [
            (0, 65535),
            (5432, 5432),
            (8000, 8080),
            (1, 65535),
            (0, 0),
            (65535, 65535),
            (1024, 2047),
            (1023, 2048),
        ] {
            let prefixes = port_prefixes(first, last);
            assert_eq!(
                covered(&prefixes),
                (u32::from(first)..=u32::from(last)).collect::<Vec<_>>(),
                "{first}-{last}"
            );
            assert!(prefixes.len() <= 30, "{first}-{last}: {}", prefixes.len());
        }
        assert_eq!(port_prefixes(0, 65535), [PortPrefix { port: 0, bits: 0 }]);
        assert_eq!(
            port_prefixes(5432, 5432),
            [PortPrefix {
                port: 5432,
                bits: 16
            }]
        );
        assert_eq!(port_prefixes(1, 65535).len(), 16);
    }

    #[test]
    fn verdict_keys_follow_the_programs_layout() {
        let entry = VerdictFor {
            direction: Direction::Egress,
            remote: 0x0102_0304,
            local: 9,
            protocol: Some(6),
            port: Some(PortPrefix {
                port: 5432,
                bits: 16,
            }),
        };
        let key = verdict_key(1, &entry);
        assert_eq!(key.prefix_len(), 104);
        assert_eq!(key.data(), [1, 1, 1, 2, 3, 4, 0, 0, 0, 9, 6, 0x15, 0x38]);
        let every_port = verdict_key(
            0,
            &VerdictFor {
                direction: Direction::Ingress,
                port: None,
                protocol: Some(1),
                ..entry
            },
        );
        assert_eq!(
            (
                every_port.prefix_len(),
                every_port.data()[..2].to_vec(),
                every_port.data()[10]
            ),
            (88, vec![0, 0], 1)
        );
        let unnamed = verdict_key(
            0,
            &VerdictFor {
                protocol: None,
                port: None,
                ..entry
            },
        );
        assert_eq!((unnamed.prefix_len(), unnamed.data()[10]), (80, 0));
        assert_eq!(verdict_value(5, false, true), 21);
        assert_eq!(verdict_value(5, true, false), 22);
        assert_eq!(slot_of_value(verdict_value(5, true, true)), 5);
    }

    #[test]
    fn class_keys_hold_the_generation_and_the_network_address() {
        let ClassKey::V4(key) =
            ClassKey::of(1, "10.1.2.3/24".parse().unwrap_or_else(|e| panic!("{e}")))
        else {
            panic!("an IPv4 key");
        };
        assert_eq!((key.prefix_len(), key.data()), (32, [1, 10, 1, 2, 0]));
        let settings = settings_value(3, true, 0x4d47_0001, 9);
        let bytes: Vec<u8> = settings.iter().flat_map(|w| w.to_ne_bytes()).collect();
        assert_eq!(bytes.len(), 16, "as struct settings");
        assert_eq!(&bytes[12..], [0, 9, 0, 0], "the port in network order");
    }
}
