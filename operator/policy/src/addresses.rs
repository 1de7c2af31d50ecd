//! IP prefixes as the compiler reasons about them: IPv4 and IPv6 in one type,
//! with the set operations selectors need (containment, overlap, subtraction,
//! and splitting a range until every boundary in sight is respected).

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

use ipnet::IpNet;

/// A network prefix. IPv4 keeps its 32 bits in the low end of `bits`; host
/// bits are always zero, so equal networks compare equal.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Prefix {
    v6: bool,
    bits: u128,
    len: u8,
}

/// A string that is not a CIDR or an IP address.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IPv4 or IPv6 CIDR")]
pub struct PrefixError(pub String);

impl Prefix {
    /// The single-address prefix of `ip` (/32 or /128).
    pub fn host(ip: IpAddr) -> Prefix {
        match ip {
            IpAddr::V4(v4) => Prefix {
                v6: false,
                bits: u32::from(v4) as u128,
                len: 32,
            },
            IpAddr::V6(v6) => Prefix {
                v6: true,
                bits: u128::from(v6),
                len: 128,
            },
        }
    }

    /// `ip/len`, with host bits cleared. `len` is capped at the family's width.
    pub fn new(ip: IpAddr, len: u8) -> Prefix {
        let host = Prefix::host(ip);
        let len = len.min(host.width());
        Prefix {
            bits: host.bits & mask(host.width(), len),
            len,
            ..host
        }
    }

    pub fn from_net(net: IpNet) -> Prefix {
        Prefix::new(net.addr(), net.prefix_len())
    }

    /// Whether the prefix is one address (/32 or /128).
    pub fn is_host(self) -> bool {
        self.len == self.width()
    }

    pub fn is_v6(self) -> bool {
        self.v6
    }

    /// The prefix length, in bits.
    pub fn bits(self) -> u8 {
        self.len
    }

    fn width(self) -> u8 {
        if self.v6 { 128 } else { 32 }
    }

    /// The number of the prefix's first address.
    pub fn first(self) -> u128 {
        self.bits
    }

    /// The number of the prefix's last address.
    pub fn last(self) -> u128 {
        self.bits | !mask(self.width(), self.len) & family_max(self.v6)
    }

    pub fn network(self) -> IpAddr {
        to_ip(self.v6, self.bits)
    }

    pub fn contains_ip(self, ip: IpAddr) -> bool {
        let host = Prefix::host(ip);
        host.v6 == self.v6 && host.bits & mask(self.width(), self.len) == self.bits
    }

    /// Whether `other` lies entirely inside `self`.
    pub fn contains(self, other: Prefix) -> bool {
        other.v6 == self.v6
            && other.len >= self.len
            && other.bits & mask(self.width(), self.len) == self.bits
    }

    pub fn overlaps(self, other: Prefix) -> bool {
        self.contains(other) || other.contains(self)
    }

    /// The prefix one bit shorter that contains this one; `None` for /0.
    pub fn parent(self) -> Option<Prefix> {
        (self.len > 0).then(|| Prefix::new(self.network(), self.len - 1))
    }

    /// The two halves, or `None` for a single address.
    pub fn halves(self) -> Option<(Prefix, Prefix)> {
        if self.len == self.width() {
            return None;
        }
        let len = self.len + 1;
        let high = 1u128 << (self.width() - len);
        Some((
            Prefix { len, ..self },
            Prefix {
                len,
                bits: self.bits | high,
                ..self
            },
        ))
    }
}

impl FromStr for Prefix {
    type Err = PrefixError;

    /// A CIDR, or a bare address meaning its host prefix. Host bits are cleared.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Ok(net) = text.parse::<IpNet>() {
            return Ok(Prefix::from_net(net));
        }
        text.parse::<IpAddr>()
            .map(Prefix::host)
            .map_err(|_| PrefixError(text.to_owned()))
    }
}

/// A mesh CIDR as the CLI's and the operator's `--mesh-cidr` take it: the
/// API's strict syntax (an address, `/`, a length within the family without
/// leading zeros). Host bits are cleared: `100.96.0.1/12` is `100.96.0.0/12`.
pub fn parse_mesh_cidr(text: &str) -> Result<Prefix, String> {
    if !meshguard_crds::validation::semantic::is_strict_cidr(text) {
        return Err(format!("{text:?} is not a CIDR such as 100.96.0.0/12"));
    }
    text.parse().map_err(|e: PrefixError| e.to_string())
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.len)
    }
}

fn family_max(v6: bool) -> u128 {
    if v6 { u128::MAX } else { u32::MAX as u128 }
}

fn mask(width: u8, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        (family_max(width == 128) >> (width - len)) << (width - len)
    }
}

fn to_ip(v6: bool, bits: u128) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(bits))
    } else {
        // IPv4 prefixes keep their bits below 2^32 (see `Prefix::host`).
        IpAddr::V4(Ipv4Addr::from(bits as u32))
    }
}

/// `base` without every address in `holes`, as disjoint prefixes in address order.
pub fn subtract(base: Prefix, holes: &[Prefix]) -> Vec<Prefix> {
    let mut out = Vec::new();
    subtract_into(base, holes, &mut out);
    out
}

fn subtract_into(base: Prefix, holes: &[Prefix], out: &mut Vec<Prefix>) {
    if holes.iter().any(|h| h.contains(base)) {
        return;
    }
    if !holes.iter().any(|h| base.contains(*h)) {
        out.push(base);
        return;
    }
    if let Some((low, high)) = base.halves() {
        subtract_into(low, holes, out);
        subtract_into(high, holes, out);
    }
}

/// Splits `base` into the fewest prefixes such that each one lies either
/// entirely inside or entirely outside every prefix of `boundaries`, which
/// must be sorted (`Prefix`'s order: family, first address, length).
///
/// Only the boundaries that start inside `base` can cut it, and sorted they
/// are one run, found by binary search and halved with `base`: a routed /32
/// costs a search, not a scan of every boundary of the mesh (with 2,100
/// members routing 32 subnets each, the scans made an operator pass take
/// 31 s in a debug build). The order is not checked here, per call: that
/// would be the same scan again in debug builds (the tests' and the e2e
/// binaries'); the caller sorts once.
pub fn split_by(base: Prefix, boundaries: &[Prefix], out: &mut Vec<Prefix>) {
    let start = boundaries.partition_point(|b| (b.v6, b.bits) < (base.v6, base.first()));
    let end =
        start + boundaries[start..].partition_point(|b| (b.v6, b.bits) <= (base.v6, base.last()));
    split_inside(base, &boundaries[start..end], out);
}

/// [`split_by`] over the boundaries that start inside `base`.
fn split_inside(base: Prefix, inside: &[Prefix], out: &mut Vec<Prefix>) {
    let cuts = inside.iter().any(|b| base.contains(*b) && *b != base);
    match base.halves() {
        Some((low, high)) if cuts => {
            let middle = inside.partition_point(|b| b.bits < high.first());
            split_inside(low, &inside[..middle], out);
            split_inside(high, &inside[middle..], out);
        }
        _ => out.push(base),
    }
}

/// The same addresses as the fewest prefixes: sorted, covered prefixes
/// dropped, sibling halves merged. (Member addresses are handed out in name
/// order, so a set of many members often collapses to a few prefixes.)
pub fn normalize(mut prefixes: Vec<Prefix>) -> Vec<Prefix> {
    prefixes.sort();
    prefixes.dedup();
    let mut out: Vec<Prefix> = Vec::with_capacity(prefixes.len());
    for p in prefixes {
        // Sorted by (family, first address, length): a covering prefix comes
        // before everything it covers, and after the previous kept one.
        if out.last().is_some_and(|last| last.contains(p)) {
            continue;
        }
        out.push(p);
        // Merge while the last two are the halves of one prefix.
        while out.len() >= 2 {
            let (a, b) = (out[out.len() - 2], out[out.len() - 1]);
            match a.parent() {
                Some(parent) if b.parent() == Some(parent) && a != b => {
                    out.truncate(out.len() - 2);
                    out.push(parent);
                }
                _ => break,
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Prefix {
        text.parse().unwrap()
    }

    #[test]
    fn parsing_clears_host_bits_and_accepts_addresses() {
        assert_eq!(p("10.1.2.3/16").to_string(), "10.1.0.0/16");
        assert_eq!(p("10.1.2.3").to_string(), "10.1.2.3/32");
        assert_eq!(p("fd00::1:2/64").to_string(), "fd00::/64");
        assert_eq!(p("::/0").to_string(), "::/0");
        assert_eq!(p("0.0.0.0/0").last(), u32::MAX as u128);
        assert!("10.0.0.0/33".parse::<Prefix>().is_err());
    }

    #[test]
    fn containment_respects_families() {
        assert!(p("10.0.0.0/8").contains(p("10.255.0.0/16")));
        assert!(!p("10.0.0.0/16").contains(p("10.0.0.0/8")));
        assert!(!p("0.0.0.0/0").contains(p("::/128")));
        assert!(p("::/0").contains_ip("fd00::1".parse().unwrap()));
        assert!(!p("::/0").contains_ip("10.0.0.1".parse().unwrap()));
        assert!(p("100.96.0.0/12").contains_ip("100.111.255.255".parse().unwrap()));
        assert!(!p("100.96.0.0/12").contains_ip("100.112.0.0".parse().unwrap()));
    }

    #[test]
    fn subtraction_is_exact() {
        let rest = subtract(p("10.0.0.0/8"), &[p("10.1.0.0/16")]);
        assert_eq!(rest.len(), 8);
        assert!(rest.iter().all(|r| !r.overlaps(p("10.1.0.0/16"))));
        let size: u128 = rest.iter().map(|r| r.last() - r.first() + 1).sum();
        assert_eq!(size, (1 << 24) - (1 << 16));
        assert!(subtract(p("10.0.0.0/16"), &[p("10.0.0.0/8")]).is_empty());
        assert_eq!(
            subtract(p("10.0.0.0/16"), &[p("fd00::/8")]),
            vec![p("10.0.0.0/16")]
        );
    }

    #[test]
    fn splitting_respects_every_boundary() {
        let mut out = Vec::new();
        split_by(
            p("192.168.50.0/24"),
            &[
                p("10.0.0.0/8"),
                p("192.168.50.7/32"),
                p("192.168.50.128/25"),
            ],
            &mut out,
        );
        for region in &out {
            for b in [p("192.168.50.128/25"), p("192.168.50.7/32")] {
                assert!(
                    b.contains(*region) || !b.overlaps(*region),
                    "{region} vs {b}"
                );
            }
        }
        let size: u128 = out.iter().map(|r| r.last() - r.first() + 1).sum();
        assert_eq!(size, 256);
    }

    #[test]
    fn normalize_drops_covered_prefixes() {
        let out = normalize(vec![
            p("10.0.0.5/32"),
            p("10.0.0.0/24"),
            p("fd00::1/128"),
            p("10.0.0.0/24"),
        ]);
        assert_eq!(out, vec![p("10.0.0.0/24"), p("fd00::1/128")]);
    }

    #[test]
    fn normalize_merges_siblings_exactly() {
        let hosts: Vec<Prefix> = (0..=255)
            .filter(|i| *i != 7)
            .map(|i| p(&format!("10.0.0.{i}")))
            .collect();
        let out = normalize(hosts);
        assert_eq!(out.len(), 8, "{out:?}");
        assert!(
            out.iter()
                .all(|r| !r.contains_ip("10.0.0.7".parse().unwrap()))
        );
        let size: u128 = out.iter().map(|r| r.last() - r.first() + 1).sum();
        assert_eq!(size, 255);
        assert_eq!(
            normalize(vec![p("10.0.0.0/25"), p("10.0.0.128/25"), p("10.0.1.0/24")]),
            vec![p("10.0.0.0/23")]
        );
        assert_eq!(
            normalize(vec![p("0.0.0.0/1"), p("128.0.0.0/1")]),
            vec![p("0.0.0.0/0")]
        );
    }

    /// The split by binary search gives what scanning every boundary gives
    /// (the definition, kept here as the reference): random bases and
    /// boundaries of both families, around them, inside, equal and covering.
    #[test]
    fn splitting_by_search_matches_the_scan_of_every_boundary() {
        fn by_scan(base: Prefix, boundaries: &[Prefix], out: &mut Vec<Prefix>) {
            let cuts = boundaries.iter().any(|b| base.contains(*b) && *b != base);
            match base.halves() {
                Some((low, high)) if cuts => {
                    by_scan(low, boundaries, out);
                    by_scan(high, boundaries, out);
                }
                _ => out.push(base),
            }
        }
        let mut rng = meshguard_testkit::rng::Rng::new(17);
        let mut random = |v6: bool| {
            // Addresses in a small window so that prefixes nest and overlap.
            let offset = rng.below(4096) as u128;
            let len = if v6 {
                104 + rng.below(25) as u8
            } else {
                8 + rng.below(25) as u8
            };
            let ip = if v6 {
                IpAddr::V6(Ipv6Addr::from((0xfd00u128 << 112) | offset))
            } else {
                IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | offset as u32))
            };
            Prefix::new(ip, len)
        };
        let mut pieces = 0;
        for round in 0..2_000 {
            let v6 = round % 3 == 0;
            let base = random(v6);
            let mut boundaries: Vec<Prefix> =
                (0..round % 40).map(|i| random(v6 ^ (i % 5 == 0))).collect();
            if round % 7 == 0 {
                boundaries.push(base);
            }
            boundaries.sort();
            let (mut searched, mut scanned) = (Vec::new(), Vec::new());
            split_by(base, &boundaries, &mut searched);
            by_scan(base, &boundaries, &mut scanned);
            assert_eq!(searched, scanned, "{base} by {boundaries:?}");
            pieces += searched.len();
        }
        assert!(
            pieces > 10_000,
            "the boundaries cut too little to compare: {pieces}"
        );
    }
}
