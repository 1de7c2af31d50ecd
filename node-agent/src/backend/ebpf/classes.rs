//! Address classes: the remote addresses every rule treats alike, and the
//! LPM entries that give each address its class. Pure.
//!
//! Every network of every set the rules name becomes an entry, with the
//! roots: `0.0.0.0/0` and `::/0` for remote addresses (rules for all
//! addresses match what no set holds), the node's own networks for local
//! ones (an address the node does not own gets no class: dropped, as the
//! iptables backend's ownership check drops it). Set networks outside every
//! root are left out.
//! An address's longest matching entry `P` tells its memberships exactly:
//! the networks that contain the address are `P` and the entries that
//! contain `P` (any other would be longer than `P`, or not contain it), so
//! the sets an address belongs to are those of `P`'s ancestors and `P`
//! itself. Entries with the same memberships share a class id; a packet
//! then costs one LPM lookup however many sets and rules there are.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;

/// The classes of one side (remote or local) of a NodePolicy's rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Classes {
    /// What the programs' LPM tries hold: network -> class id.
    pub entries: Vec<(IpNet, u32)>,
    /// Each class's memberships (indexes into the sets given), by class id.
    pub members_of: Vec<BTreeSet<usize>>,
}

impl Classes {
    /// The class of `address` as the programs' LPM lookup finds it.
    pub fn lookup(&self, address: std::net::IpAddr) -> Option<u32> {
        self.entries
            .iter()
            .filter(|(net, _)| net.contains(&address))
            .max_by_key(|(net, _)| net.prefix_len())
            .map(|&(_, class)| class)
    }
}

/// Every address: the roots of the remote side.
pub fn everything() -> [IpNet; 2] {
    [
        IpNet::V4(ipnet::Ipv4Net::default()),
        IpNet::V6(ipnet::Ipv6Net::default()),
    ]
}

/// Classes over `sets` (each a list of networks), of which only the indexes
/// in `used` matter to the rules, for the addresses within `roots`.
pub fn classes(sets: &[&[IpNet]], used: &BTreeSet<usize>, roots: &[IpNet]) -> Classes {
    let mut prefixes: BTreeSet<IpNet> = roots.iter().map(IpNet::trunc).collect();
    for &s in used {
        if let Some(nets) = sets.get(s) {
            prefixes.extend(
                nets.iter()
                    .map(IpNet::trunc)
                    .filter(|n| roots.iter().any(|r| r.contains(n))),
            );
        }
    }
    // The sets that list each network, and the prefix lengths listed per
    // family: the sets containing a prefix are those listing one of its
    // supernets, found by lookup at those lengths (not by testing every
    // network of every set against every prefix).
    let mut listing: BTreeMap<IpNet, BTreeSet<usize>> = BTreeMap::new();
    for &s in used {
        for net in sets.get(s).copied().unwrap_or_default() {
            listing.entry(net.trunc()).or_default().insert(s);
        }
    }
    let lengths: BTreeSet<(bool, u8)> = listing
        .keys()
        .map(|n| (matches!(n, IpNet::V4(_)), n.prefix_len()))
        .collect();
    let mut ids: BTreeMap<BTreeSet<usize>, u32> = BTreeMap::new();
    let mut out = Classes::default();
    for prefix in &prefixes {
        let v4 = matches!(prefix, IpNet::V4(_));
        let mut members: BTreeSet<usize> = BTreeSet::new();
        for &(_, len) in lengths
            .iter()
            .filter(|&&(f, len)| f == v4 && len <= prefix.prefix_len())
        {
            let Ok(supernet) = IpNet::new(prefix.addr(), len) else {
                // Unreachable: `len` is at most the prefix's own length.
                continue;
            };
            if let Some(listed) = listing.get(&supernet.trunc()) {
                members.extend(listed);
            }
        }
        let next = u32::try_from(ids.len()).unwrap_or(u32::MAX);
        let id = *ids.entry(members.clone()).or_insert_with(|| {
            out.members_of.push(members);
            next
        });
        out.entries.push((*prefix, id));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::net::{IpAddr, Ipv4Addr};

    use proptest::prelude::*;

    use super::*;

    /// Networks inside 10.0.0.0/16, so that random sets overlap.
    fn net() -> impl Strategy<Value = IpNet> {
        (any::<u16>(), 16u8..=32).prop_map(|(low, len)| {
            let [a, b] = low.to_be_bytes();
            IpNet::new(IpAddr::V4(Ipv4Addr::new(10, 0, a, b)), len)
                .unwrap()
                .trunc()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// The class an address's LPM lookup finds holds exactly the sets
        /// that contain the address, whatever the sets.
        #[test]
        fn an_address_class_holds_exactly_its_sets(
            sets in prop::collection::vec(prop::collection::vec(net(), 1..6), 1..6),
            used_mask in any::<u8>(),
            addresses in prop::collection::vec(any::<u16>(), 50),
        ) {
            let slices: Vec<&[IpNet]> = sets.iter().map(Vec::as_slice).collect();
            let used: BTreeSet<usize> = (0..sets.len()).filter(|i| used_mask & (1 << i) != 0).collect();
            let c = classes(&slices, &used, &everything());
            for low in addresses {
                let [a, b] = low.to_be_bytes();
                for address in [IpAddr::V4(Ipv4Addr::new(10, 0, a, b)), IpAddr::V4(Ipv4Addr::new(192, 0, 2, a))] {
                    let want: BTreeSet<usize> = used
                        .iter()
                        .copied()
                        .filter(|&s| sets[s].iter().any(|n| n.contains(&address)))
                        .collect();
                    let class = c.lookup(address).unwrap();
                    prop_assert_eq!(&c.members_of[class as usize], &want, "{}", address);
                }
            }
            // Distinct classes have distinct memberships.
            let distinct: BTreeSet<&BTreeSet<usize>> = c.members_of.iter().collect();
            prop_assert_eq!(distinct.len(), c.members_of.len());
        }
    }

    #[test]
    fn addresses_in_no_set_share_the_class_of_everything_else() {
        let lan: Vec<IpNet> = vec!["192.168.1.0/24".parse().unwrap()];
        let c = classes(&[&lan], &BTreeSet::from([0]), &everything());
        let outside = c.lookup("8.8.8.8".parse().unwrap()).unwrap();
        let inside = c.lookup("192.168.1.9".parse().unwrap()).unwrap();
        assert_ne!(outside, inside);
        assert_eq!(c.lookup("2001:db8::1".parse().unwrap()), Some(outside));
        assert_eq!(c.members_of[inside as usize], BTreeSet::from([0]));
        // A set no rule uses makes no class of its own.
        assert_eq!(
            classes(&[&lan], &BTreeSet::new(), &everything())
                .members_of
                .len(),
            1
        );
    }

    #[test]
    fn addresses_outside_the_roots_have_no_class() {
        let lan: Vec<IpNet> = vec![
            "192.168.0.0/16".parse().unwrap(),
            "10.9.0.0/16".parse().unwrap(),
        ];
        let own: Vec<IpNet> = vec![
            "192.168.1.0/24".parse().unwrap(),
            "100.96.0.1/32".parse().unwrap(),
        ];
        let c = classes(&[&lan], &BTreeSet::from([0]), &own);
        assert_eq!(c.lookup("192.168.2.1".parse().unwrap()), None);
        assert_eq!(
            c.lookup("10.9.0.1".parse().unwrap()),
            None,
            "a set network outside the roots"
        );
        assert_eq!(c.lookup("8.8.8.8".parse().unwrap()), None);
        let inside = c.lookup("192.168.1.7".parse().unwrap()).unwrap();
        assert_eq!(c.members_of[inside as usize], BTreeSet::from([0]));
        let mesh = c.lookup("100.96.0.1".parse().unwrap()).unwrap();
        assert!(c.members_of[mesh as usize].is_empty());
    }
}
