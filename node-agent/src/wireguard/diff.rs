//! Which peers to remove and which to add, so the interface ends up with
//! exactly the desired peers while untouched peers keep their sessions.
//!
//! A peer whose settings changed is removed and added again: boringtun cannot
//! modify a peer in place (it panics a worker and freezes the interface).
//! Endpoints and keepalives are compared with what was asked last time, not
//! with what the device reports: the daemon updates a peer's endpoint when
//! the peer roams, and that is not drift.

use std::collections::BTreeMap;

use super::{PeerConfig, PeerState};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Keys to remove: gone, or changed (these are also in `add`).
    pub remove: Vec<[u8; 32]>,
    /// Peers to add: new, or changed.
    pub add: Vec<PeerConfig>,
    /// Peers present that should not be, or missing: drift (not a policy change).
    pub drift: usize,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.add.is_empty()
    }
}

/// `actual` is what the device has, `asked` what was applied last time (empty
/// on the first apply), `desired` what the NodePolicy wants now.
pub fn plan(actual: &[PeerState], asked: &[PeerConfig], desired: &[PeerConfig]) -> Plan {
    let actual: BTreeMap<[u8; 32], &PeerState> = actual.iter().map(|p| (p.public_key, p)).collect();
    let asked: BTreeMap<[u8; 32], &PeerConfig> = asked.iter().map(|p| (p.public_key, p)).collect();
    let desired_keys: BTreeMap<[u8; 32], &PeerConfig> =
        desired.iter().map(|p| (p.public_key, p)).collect();
    let mut plan = Plan::default();
    for key in actual.keys().filter(|k| !desired_keys.contains_key(*k)) {
        plan.remove.push(*key);
        if !asked.contains_key(key) {
            plan.drift += 1;
        }
    }
    for peer in desired {
        match actual.get(&peer.public_key) {
            None => {
                if asked.contains_key(&peer.public_key) {
                    plan.drift += 1;
                }
                plan.add.push(peer.clone());
            }
            Some(have) => {
                let sorted = |ips: &[ipnet::IpNet]| {
                    let mut ips = ips.to_vec();
                    ips.sort();
                    ips
                };
                let (want_ips, have_ips) = (sorted(&peer.allowed_ips), sorted(&have.allowed_ips));
                let before = asked.get(&peer.public_key);
                let changed_config = before.is_some_and(|b| {
                    b.endpoint != peer.endpoint
                        || b.persistent_keepalive != peer.persistent_keepalive
                });
                // First apply after a restart: the daemon's view is all there is.
                let unknown = before.is_none()
                    && (have.persistent_keepalive != peer.persistent_keepalive
                        || (peer.endpoint.is_some() && have.endpoint.is_none()));
                if want_ips != have_ips || changed_config || unknown {
                    plan.remove.push(peer.public_key);
                    plan.add.push(peer.clone());
                }
                // Drift: the device no longer has what we asked for.
                if before.is_some_and(|b| sorted(&b.allowed_ips) != have_ips) {
                    plan.drift += 1;
                }
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(k: u8, ips: &[&str], endpoint: Option<&str>) -> PeerConfig {
        PeerConfig {
            public_key: [k; 32],
            endpoint: endpoint.map(|e| e.parse().unwrap()),
            allowed_ips: ips.iter().map(|i| i.parse().unwrap()).collect(),
            persistent_keepalive: 0,
        }
    }

    fn state(p: &PeerConfig) -> PeerState {
        PeerState {
            public_key: p.public_key,
            endpoint: p.endpoint,
            allowed_ips: p.allowed_ips.clone(),
            persistent_keepalive: p.persistent_keepalive,
            ..Default::default()
        }
    }

    #[test]
    fn untouched_peers_stay_and_changes_are_remove_then_add() {
        let (a, b, c) = (
            peer(1, &["100.96.0.1/32"], Some("10.0.0.1:51820")),
            peer(2, &["100.96.0.2/32"], None),
            peer(3, &["100.96.0.3/32"], None),
        );
        let actual = vec![state(&a), state(&b)];
        let asked = vec![a.clone(), b.clone()];
        let mut b2 = b.clone();
        b2.allowed_ips.push("192.168.1.0/24".parse().unwrap());
        let plan = plan(&actual, &asked, &[a.clone(), b2.clone(), c.clone()]);
        assert_eq!(plan.remove, vec![[2; 32]]);
        assert_eq!(plan.add, vec![b2, c]);
        assert_eq!(plan.drift, 0);
    }

    #[test]
    fn roaming_endpoints_are_not_drift_but_asked_changes_are_applied() {
        let a = peer(1, &["100.96.0.1/32"], Some("10.0.0.1:51820"));
        let mut roamed = state(&a);
        roamed.endpoint = Some("192.0.2.7:40000".parse().unwrap());
        assert!(
            plan(
                &[roamed.clone()],
                std::slice::from_ref(&a),
                std::slice::from_ref(&a)
            )
            .is_empty()
        );
        let moved = peer(1, &["100.96.0.1/32"], Some("10.0.0.9:51820"));
        let p = plan(&[roamed], &[a], std::slice::from_ref(&moved));
        assert_eq!((p.remove, p.add), (vec![[1; 32]], vec![moved]));
    }

    #[test]
    fn drift_is_counted() {
        let (a, b) = (
            peer(1, &["100.96.0.1/32"], None),
            peer(2, &["100.96.0.2/32"], None),
        );
        let stranger = state(&peer(9, &["100.96.0.9/32"], None));
        // b was removed behind our back, a stranger appeared.
        let p = plan(
            &[state(&a), stranger],
            &[a.clone(), b.clone()],
            &[a, b.clone()],
        );
        assert_eq!(p.remove, vec![[9; 32]]);
        assert_eq!(p.add, vec![b]);
        assert_eq!(p.drift, 2);
    }
}
