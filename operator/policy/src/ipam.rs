//! Mesh IP allocation.
//!
//! - [`assign`] (the offline CLI): fixed addresses are honoured, the rest are
//!   handed out from the mesh CIDR in name order, so the same members always
//!   get the same addresses.
//! - [`Allocator`] (the operator): allocations are stable across changes
//!   and restarts. What a MeshNode's status records is its address for as
//!   long as the MeshNode lives; a new member gets the lowest free address;
//!   a fixed address another member already holds is a conflict, never a
//!   reassignment.

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

/// One MeshNode as IPAM sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub name: String,
    /// `spec.meshIP`.
    pub fixed: Option<IpAddr>,
    /// `status.meshIP`: what was allocated (and maybe already in use).
    pub recorded: Option<IpAddr>,
}

/// Stable allocations for the operator. Holds only what it handed out and
/// has not yet seen recorded in a status, so a restart (a new allocator)
/// rebuilds everything from the statuses.
#[derive(Debug)]
pub struct Allocator {
    cidr: Prefix,
    pending: BTreeMap<String, IpAddr>,
}

impl Allocator {
    pub fn new(cidr: Prefix) -> Allocator {
        Allocator {
            cidr,
            pending: BTreeMap::new(),
        }
    }

    pub fn cidr(&self) -> Prefix {
        self.cidr
    }

    /// Every claim's address, or why it has none. `claims` must be in the
    /// order ties are settled: the oldest MeshNode first.
    pub fn allocate(&mut self, claims: &[Claim]) -> BTreeMap<String, Result<IpAddr, IpamError>> {
        let mut holder: BTreeMap<IpAddr, &str> = BTreeMap::new();
        let mut out: BTreeMap<String, Result<IpAddr, IpamError>> = BTreeMap::new();
        // 1. Live addresses: recorded (or handed out earlier) and still wanted.
        for claim in claims {
            let live = claim
                .recorded
                .or_else(|| self.pending.get(&claim.name).copied());
            let Some(ip) = live else { continue };
            let wanted = match claim.fixed {
                Some(fixed) => fixed == ip,
                None => self.cidr.contains_ip(ip),
            };
            if wanted && !holder.contains_key(&ip) {
                holder.insert(ip, &claim.name);
                out.insert(claim.name.clone(), Ok(ip));
            }
        }
        // 2. Fixed addresses not yet held by their member.
        for claim in claims {
            let Some(fixed) = claim.fixed else { continue };
            if out.contains_key(&claim.name) {
                continue;
            }
            match holder.get(&fixed) {
                Some(first) => {
                    out.insert(
                        claim.name.clone(),
                        Err(IpamError::Conflict {
                            ip: fixed,
                            first: (*first).to_owned(),
                            second: claim.name.clone(),
                        }),
                    );
                }
                None => {
                    holder.insert(fixed, &claim.name);
                    out.insert(claim.name.clone(), Ok(fixed));
                }
            }
        }
        // 3. The rest, lowest free address first.
        let mut next = usable_first(self.cidr);
        for claim in claims {
            if out.contains_key(&claim.name) {
                continue;
            }
            let result = loop {
                if next > usable_last(self.cidr) {
                    break Err(IpamError::Exhausted {
                        cidr: self.cidr,
                        member: claim.name.clone(),
                    });
                }
                let candidate = address(self.cidr, next);
                next += 1;
                if let std::collections::btree_map::Entry::Vacant(free) = holder.entry(candidate) {
                    free.insert(&claim.name);
                    break Ok(candidate);
                }
            };
            out.insert(claim.name.clone(), result);
        }
        // Remember what no status records yet; forget members that went.
        self.pending = claims
            .iter()
            .filter_map(|c| match out.get(&c.name) {
                Some(Ok(ip)) if c.recorded != Some(*ip) => Some((c.name.clone(), *ip)),
                _ => None,
            })
            .collect();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(name: &str, fixed: Option<&str>, recorded: Option<&str>) -> Claim {
        Claim {
            name: name.into(),
            fixed: fixed.map(|i| i.parse().unwrap()),
            recorded: recorded.map(|i| i.parse().unwrap()),
        }
    }

    fn ips(got: &BTreeMap<String, Result<IpAddr, IpamError>>) -> Vec<(String, String)> {
        got.iter()
            .map(|(n, r)| {
                let text = match r {
                    Ok(ip) => ip.to_string(),
                    Err(e) => e.to_string(),
                };
                (n.clone(), text)
            })
            .collect()
    }

    #[test]
    fn recorded_addresses_survive_a_restart_and_new_members_fill_gaps() {
        let cidr: Prefix = "100.96.0.0/24".parse().unwrap();
        let mut first = Allocator::new(cidr);
        let got = first.allocate(&[claim("z", None, None), claim("a", None, None)]);
        assert_eq!(got["z"], Ok("100.96.0.1".parse().unwrap()), "oldest first");
        assert_eq!(got["a"], Ok("100.96.0.2".parse().unwrap()));
        // Not yet recorded: a second pass hands out the same addresses.
        assert_eq!(
            first.allocate(&[claim("z", None, None), claim("a", None, None)]),
            got
        );
        // A new allocator (operator restart) sees only statuses; z went away.
        let mut second = Allocator::new(cidr);
        let got = second.allocate(&[
            claim("a", None, Some("100.96.0.2")),
            claim("new", None, None),
        ]);
        assert_eq!(
            ips(&got),
            [
                ("a".into(), "100.96.0.2".into()),
                ("new".into(), "100.96.0.1".into())
            ]
        );
    }

    #[test]
    fn a_live_address_is_never_taken_by_a_fixed_claim() {
        let cidr: Prefix = "100.96.0.0/24".parse().unwrap();
        let mut ipam = Allocator::new(cidr);
        let got = ipam.allocate(&[
            claim("old", None, Some("100.96.0.9")),
            claim("fixed", Some("100.96.0.9"), None),
            claim("outside", Some("10.1.2.3"), None),
        ]);
        assert_eq!(got["old"], Ok("100.96.0.9".parse().unwrap()));
        assert_eq!(
            got["fixed"],
            Err(IpamError::Conflict {
                ip: "100.96.0.9".parse().unwrap(),
                first: "old".into(),
                second: "fixed".into()
            })
        );
        assert_eq!(
            got["outside"],
            Ok("10.1.2.3".parse().unwrap()),
            "a static address may lie outside the CIDR"
        );
    }

    #[test]
    fn a_changed_fixed_address_or_a_new_cidr_moves_the_member() {
        let mut ipam = Allocator::new("100.97.0.0/24".parse().unwrap());
        let got = ipam.allocate(&[
            claim("moved", Some("100.97.0.50"), Some("100.97.0.3")),
            claim("stale", None, Some("100.96.0.4")),
        ]);
        assert_eq!(got["moved"], Ok("100.97.0.50".parse().unwrap()));
        assert_eq!(got["stale"], Ok("100.97.0.1".parse().unwrap()));
        let got = ipam.allocate(&[claim("full", None, None)]);
        assert_eq!(got["full"], Ok("100.97.0.1".parse().unwrap()), "freed");
        let mut tiny = Allocator::new("100.96.0.0/30".parse().unwrap());
        let got = tiny.allocate(&[
            claim("a", None, None),
            claim("b", None, None),
            claim("c", None, None),
        ]);
        assert!(matches!(got["c"], Err(IpamError::Exhausted { .. })));
    }

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
