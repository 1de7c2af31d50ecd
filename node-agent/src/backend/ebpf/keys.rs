//! LPM trie keys as `bpf/meshguard.c` lays them out. Pure: what the agent
//! writes is pinned by unit tests, the programs' reading of it by the
//! namespace test (e2e/tests/ebpf.rs).

use std::net::IpAddr;

use aya::maps::lpm_trie::Key;
use ipnet::IpNet;
use meshguard_crds::Protocol;

use super::verdicts::Verdict;
use crate::desired::verdict::Direction;

/// A verdict map value: the verdict in the low byte (1 allows), the
/// deciding rule's index + 1 above it (0: the default deny).
pub fn verdict_value(verdict: Verdict) -> u32 {
    let rule = verdict
        .rule
        .map_or(0, |r| u32::try_from(r).map_or(u32::MAX >> 8, |r| r + 1));
    (rule << 8) | u32::from(verdict.allow)
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

/// A verdict key: direction, remote and local class, and a protocol
/// number with a port prefix (`None`, `None`: the protocols no rule names;
/// a protocol with `None`: all its ports, the only form for ICMP).
pub fn verdict_key(
    direction: Direction,
    remote: u32,
    local: u32,
    protocol: Option<u8>,
    port: Option<PortPrefix>,
) -> Key<[u8; 12]> {
    let mut data = [0u8; 12];
    data[0] = match direction {
        Direction::Ingress => 0,
        Direction::Egress => 1,
    };
    data[1..5].copy_from_slice(&remote.to_be_bytes());
    data[5..9].copy_from_slice(&local.to_be_bytes());
    let Some(protocol) = protocol else {
        return Key::new(72, data);
    };
    data[9] = protocol;
    let bits = match port {
        None => 0,
        Some(p) => {
            data[10..12].copy_from_slice(&p.port.to_be_bytes());
            p.bits
        }
    };
    Key::new(80 + bits, data)
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
            0x0102_0304,
            9,
            Some(6),
            Some(PortPrefix {
                port: 5432,
                bits: 16,
            }),
        );
        assert_eq!(key.prefix_len(), 96);
        assert_eq!(key.data(), [1, 1, 2, 3, 4, 0, 0, 0, 9, 6, 0x15, 0x38]);
        let every_port = verdict_key(Direction::Ingress, 7, 0, Some(1), None);
        assert_eq!((every_port.prefix_len(), every_port.data()[9]), (80, 1));
        let unnamed = verdict_key(Direction::Ingress, 7, 0, None, None);
        assert_eq!((unnamed.prefix_len(), unnamed.data()[9]), (72, 0));
        assert_eq!(
            verdict_value(Verdict {
                allow: true,
                rule: Some(2)
            }),
            0x301
        );
        assert_eq!(
            verdict_value(Verdict {
                allow: false,
                rule: None
            }),
            0
        );
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
