//! Mesh IP allocation: fixed addresses are honoured, the rest are handed out
//! from the mesh CIDR in name order, so the same members always get the same
//! addresses. (The operator's IPAM builds on this and keeps allocations
//! stable across changes; the offline CLI needs only this.)

use std::{collections::BTreeMap, net::IpAddr};

use crate::addresses::Prefix;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    #[error("{second} asks for mesh IP {ip}, which {first} already has")]
    Conflict {
        ip: IpAddr,
        first: String,
        second: String,
    },
    #[error("mesh CIDR {cidr} has no free address left for {member}")]
    Exhausted { cidr: Prefix, member: String },
}

/// Every member's mesh IP. `members` pairs a name with its fixed IP, if any.
pub fn assign(
    members: &[(String, Option<IpAddr>)],
    cidr: Prefix,
) -> Result<BTreeMap<String, IpAddr>, IpamError> {
    let mut sorted: Vec<&(String, Option<IpAddr>)> = members.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut taken: BTreeMap<IpAddr, &str> = BTreeMap::new();
    let mut assigned = BTreeMap::new();
    for (name, fixed) in &sorted {
        if let Some(ip) = fixed {
            if let Some(first) = taken.insert(*ip, name) {
                return Err(IpamError::Conflict {
                    ip: *ip,
                    first: first.to_owned(),
                    second: name.clone(),
                });
            }
            assigned.insert(name.clone(), *ip);
        }
    }
    let mut next = usable_first(cidr);
    for (name, fixed) in &sorted {
        if fixed.is_some() {
            continue;
        }
        let ip = loop {
            if next > usable_last(cidr) {
                return Err(IpamError::Exhausted {
                    cidr,
                    member: name.clone(),
                });
            }
            let candidate = address(cidr, next);
            next += 1;
            if !taken.contains_key(&candidate) {
                break candidate;
            }
        };
        taken.insert(ip, name);
        assigned.insert(name.clone(), ip);
    }
    Ok(assigned)
}

/// The first host address: the network address is skipped unless the prefix
/// is a single address or a /31 (/127).
fn usable_first(cidr: Prefix) -> u128 {
    let size = cidr.last() - cidr.first();
    if size <= 1 {
        cidr.first()
    } else {
        cidr.first() + 1
    }
}

/// The last host address: IPv4 broadcast is skipped.
fn usable_last(cidr: Prefix) -> u128 {
    let size = cidr.last() - cidr.first();
    if size > 1 && !cidr.is_v6() {
        cidr.last() - 1
    } else {
        cidr.last()
    }
}

fn address(cidr: Prefix, number: u128) -> IpAddr {
    if cidr.is_v6() {
        IpAddr::V6(number.into())
    } else {
        // IPv4 prefixes keep their numbers below 2^32.
        IpAddr::V4((number as u32).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(list: &[(&str, Option<&str>)]) -> Vec<(String, Option<IpAddr>)> {
        list.iter()
            .map(|(n, ip)| (n.to_string(), ip.map(|i| i.parse().unwrap())))
            .collect()
    }

    #[test]
    fn name_order_skips_fixed_and_reserved_addresses() {
        let cidr: Prefix = "100.96.0.0/30".parse().unwrap();
        let got = assign(
            &named(&[("b", None), ("a", Some("100.96.0.1")), ("c", None)]),
            cidr,
        );
        assert_eq!(
            got,
            Err(IpamError::Exhausted {
                cidr,
                member: "c".into()
            }),
            "only .1 and .2 are hosts"
        );
        let got = assign(&named(&[("b", None), ("a", Some("100.96.0.1"))]), cidr).unwrap();
        assert_eq!(got["b"].to_string(), "100.96.0.2");
        let six = assign(
            &named(&[("x", None), ("y", None)]),
            "fd00::/126".parse().unwrap(),
        )
        .unwrap();
        assert_eq!(
            (six["x"].to_string().as_str(), six["y"].to_string().as_str()),
            ("fd00::1", "fd00::2")
        );
    }

    #[test]
    fn the_same_fixed_address_twice_is_a_conflict() {
        let got = assign(
            &named(&[("b", Some("10.0.0.5")), ("a", Some("10.0.0.5"))]),
            "10.0.0.0/24".parse().unwrap(),
        );
        assert_eq!(
            got,
            Err(IpamError::Conflict {
                ip: "10.0.0.5".parse().unwrap(),
                first: "a".into(),
                second: "b".into()
            })
        );
    }
}
