//! The traffic space a rule covers, as a set that can be intersected and
//! subtracted: TCP, UDP and SCTP port ranges, ICMP, and every other IP
//! protocol. Shadowing (an earlier Deny hiding part of a later Allow) is
//! subtraction in this space.

use meshguard_crds::{PortRule, Protocol};

/// Inclusive port ranges, sorted, disjoint and not adjacent.
#[derive(Clone, Default, PartialEq, Eq, Hash, Debug)]
pub struct Ranges(Vec<(u16, u16)>);

impl Ranges {
    pub fn all() -> Ranges {
        Ranges(vec![(1, u16::MAX)])
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, port: u16) -> bool {
        self.0.iter().any(|&(lo, hi)| lo <= port && port <= hi)
    }

    pub fn spans(&self) -> &[(u16, u16)] {
        &self.0
    }

    fn add(&mut self, lo: u16, hi: u16) {
        self.0.push((lo, hi));
        self.0.sort_unstable();
        let mut merged: Vec<(u16, u16)> = Vec::with_capacity(self.0.len());
        for &(lo, hi) in &self.0 {
            match merged.last_mut() {
                Some(last) if lo as u32 <= last.1 as u32 + 1 => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        self.0 = merged;
    }

    fn intersects(&self, other: &Ranges) -> bool {
        self.0
            .iter()
            .any(|&(a, b)| other.0.iter().any(|&(c, d)| a <= d && c <= b))
    }

    fn minus(&self, other: &Ranges) -> Ranges {
        let mut out = Vec::new();
        for &(lo, hi) in &self.0 {
            let mut start = lo as u32;
            for &(c, d) in &other.0 {
                if (d as u32) < start || c as u32 > hi as u32 {
                    continue;
                }
                if (c as u32) > start {
                    out.push((start as u16, c - 1));
                }
                start = d as u32 + 1;
            }
            if start <= hi as u32 {
                out.push((start as u16, hi));
            }
        }
        Ranges(out)
    }
}

/// A set of traffic.
#[derive(Clone, Default, PartialEq, Eq, Hash, Debug)]
pub struct PortSet {
    pub tcp: Ranges,
    pub udp: Ranges,
    pub sctp: Ranges,
    pub icmp: bool,
    /// Every IP protocol other than TCP, UDP, SCTP and ICMP.
    pub other: bool,
}

impl PortSet {
    /// All traffic: what a rule without `ports` covers.
    pub fn all() -> PortSet {
        PortSet {
            tcp: Ranges::all(),
            udp: Ranges::all(),
            sctp: Ranges::all(),
            icmp: true,
            other: true,
        }
    }

    /// The traffic of a rule's `ports` (absent: all traffic).
    pub fn from_rules(rules: Option<&[PortRule]>) -> PortSet {
        let Some(rules) = rules else {
            return PortSet::all();
        };
        let mut set = PortSet::default();
        for rule in rules {
            let (lo, hi) = match (rule.port, rule.end_port) {
                (Some(port), end) => (clamp(port), clamp(end.unwrap_or(port))),
                (None, _) => (1, u16::MAX),
            };
            match rule.protocol {
                Protocol::TCP => set.tcp.add(lo, hi),
                Protocol::UDP => set.udp.add(lo, hi),
                Protocol::SCTP => set.sctp.add(lo, hi),
                Protocol::ICMP => set.icmp = true,
            }
        }
        set
    }

    pub fn is_empty(&self) -> bool {
        self.tcp.is_empty()
            && self.udp.is_empty()
            && self.sctp.is_empty()
            && !self.icmp
            && !self.other
    }

    pub fn intersects(&self, other: &PortSet) -> bool {
        self.tcp.intersects(&other.tcp)
            || self.udp.intersects(&other.udp)
            || self.sctp.intersects(&other.sctp)
            || (self.icmp && other.icmp)
            || (self.other && other.other)
    }

    pub fn minus(&self, other: &PortSet) -> PortSet {
        PortSet {
            tcp: self.tcp.minus(&other.tcp),
            udp: self.udp.minus(&other.udp),
            sctp: self.sctp.minus(&other.sctp),
            icmp: self.icmp && !other.icmp,
            other: self.other && !other.other,
        }
    }

    /// Whether one flow's traffic is in the set. Ports only count for TCP, UDP and SCTP.
    pub fn contains(&self, protocol: Protocol, port: Option<u16>) -> bool {
        let ranges = match protocol {
            Protocol::TCP => &self.tcp,
            Protocol::UDP => &self.udp,
            Protocol::SCTP => &self.sctp,
            Protocol::ICMP => return self.icmp,
        };
        port.is_some_and(|p| ranges.contains(p))
    }
}

/// Validation keeps ports in 1..=65535; clamping keeps this total anyway.
fn clamp(port: i32) -> u16 {
    port.clamp(1, u16::MAX as i32) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(port: i32, end: Option<i32>) -> PortRule {
        PortRule {
            protocol: Protocol::TCP,
            port: Some(port),
            end_port: end,
        }
    }

    #[test]
    fn absent_ports_mean_all_traffic() {
        let all = PortSet::from_rules(None);
        assert!(all.contains(Protocol::TCP, Some(1)) && all.contains(Protocol::UDP, Some(65535)));
        assert!(all.contains(Protocol::ICMP, None) && all.other);
    }

    #[test]
    fn ranges_merge_and_subtract() {
        let a = PortSet::from_rules(Some(&[tcp(80, None), tcp(81, Some(90)), tcp(443, None)]));
        assert_eq!(a.tcp.spans(), &[(80, 90), (443, 443)]);
        let b = PortSet::from_rules(Some(&[tcp(85, Some(500))]));
        let rest = a.minus(&b);
        assert_eq!(rest.tcp.spans(), &[(80, 84)]);
        assert!(a.intersects(&b) && !rest.intersects(&b));
        let all_minus_tcp = PortSet::all().minus(&PortSet::from_rules(Some(&[PortRule {
            protocol: Protocol::TCP,
            port: None,
            end_port: None,
        }])));
        assert!(all_minus_tcp.tcp.is_empty() && all_minus_tcp.other && !all_minus_tcp.is_empty());
        assert!(PortSet::all().minus(&PortSet::all()).is_empty());
    }

    #[test]
    fn ports_only_match_their_protocol() {
        let set = PortSet::from_rules(Some(&[
            tcp(22, None),
            PortRule {
                protocol: Protocol::ICMP,
                port: None,
                end_port: None,
            },
        ]));
        assert!(set.contains(Protocol::TCP, Some(22)));
        assert!(!set.contains(Protocol::UDP, Some(22)));
        assert!(set.contains(Protocol::ICMP, None));
        assert!(!set.contains(Protocol::TCP, None));
    }
}
