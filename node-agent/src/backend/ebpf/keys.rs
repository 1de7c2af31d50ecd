//! LPM trie keys as `bpf/meshguard.c` lays them out. Pure: what the agent
//! writes is pinned by unit tests, the programs' reading of it by the
//! namespace test (e2e/tests/ebpf.rs).

use std::net::IpAddr;

use aya::maps::lpm_trie::Key;
use ipnet::IpNet;

use crate::backend::contract::Direction;

/// The verdict byte of a verdict map value (its low byte; the rule's index
/// is above it).
pub const VERDICT_ALLOW: u32 = 1;
pub const VERDICT_DENY: u32 = 0;

/// A remote address range's key in `classes_v4` or `classes_v6`.
#[derive(Clone, Copy)]
pub enum ClassKey {
    V4(Key<[u8; 4]>),
    V6(Key<[u8; 16]>),
}

impl ClassKey {
    pub fn of(net: IpNet) -> ClassKey {
        let prefix = u32::from(net.prefix_len());
        match net.network() {
            IpAddr::V4(a) => ClassKey::V4(Key::new(prefix, a.octets())),
            IpAddr::V6(a) => ClassKey::V6(Key::new(prefix, a.octets())),
        }
    }
}

/// The direction byte the programs use.
fn direction_byte(direction: Direction) -> Option<u8> {
    match direction {
        Direction::Ingress => Some(0),
        Direction::Egress => Some(1),
        Direction::Guard => None,
    }
}

/// A verdict key: direction, protocol (IANA number), class, and a port
/// prefix (`None`: every port, and the only form for ICMP).
pub fn verdict_key(
    direction: Direction,
    protocol: u8,
    class: u32,
    port: Option<PortPrefix>,
) -> Option<Key<[u8; 8]>> {
    let mut data = [0u8; 8];
    data[0] = direction_byte(direction)?;
    data[1] = protocol;
    data[2..6].copy_from_slice(&class.to_be_bytes());
    let bits = match port {
        None => 0,
        Some(p) => {
            data[6..8].copy_from_slice(&p.port.to_be_bytes());
            p.bits
        }
    };
    Some(Key::new(48 + bits, data))
}

/// Ports sharing their first `bits` bits with `port`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
        let key = verdict_key(
            Direction::Egress,
            6,
            0x0102_0304,
            Some(PortPrefix {
                port: 5432,
                bits: 16,
            }),
        )
        .unwrap_or_else(|| panic!("egress has a key"));
        assert_eq!(key.prefix_len(), 64);
        assert_eq!(key.data(), [1, 6, 1, 2, 3, 4, 0x15, 0x38]);
        let every_port = verdict_key(Direction::Ingress, 1, 7, None);
        assert_eq!(
            every_port.map(|k| (k.prefix_len(), k.data())),
            Some((48, [0, 1, 0, 0, 0, 7, 0, 0]))
        );
        assert!(verdict_key(Direction::Guard, 6, 1, None).is_none());
    }

    #[test]
    fn class_keys_hold_the_network_address() {
        let ClassKey::V4(key) =
            ClassKey::of("10.1.2.3/24".parse().unwrap_or_else(|e| panic!("{e}")))
        else {
            panic!("an IPv4 key");
        };
        assert_eq!((key.prefix_len(), key.data()), (24, [10, 1, 2, 0]));
    }
}
