//! One member's NodePolicy: class results expanded with the member's own
//! interface, peers and chains, and a revision that changes exactly when the
//! spec's content does.
//!
//! The revision is computed from digests of the spec's parts rather than by
//! serializing the spec, which at thousands of peers per node would dominate
//! the compile: the lists and sets are digested once per class, chains once
//! each, and the peer list as a sum of per-peer digests (an order-independent
//! set hash — the list itself is always in name order), which a node gets in
//! one addition per peer class.

use meshguard_crds::node_policy::{InterfaceSpec, Peer};
use sha2::{Digest, Sha256};

use super::filters::{hex, to_json};
use crate::members::Member;

/// The `Peer` entry a member contributes to its peers' NodePolicies.
pub fn peer_entry(member: &Member) -> Peer {
    Peer {
        name: member.name.clone(),
        public_key: member.public_key.clone(),
        endpoint: member.endpoint.clone(),
        allowed_ips: member.routed().iter().map(ToString::to_string).collect(),
    }
}

/// `routed` are the prefixes the member owns besides its mesh IP.
pub fn interface(member: &Member, listen_port: u16, routed: &[String]) -> InterfaceSpec {
    InterfaceSpec {
        mesh_ip: member.mesh_ip.to_string(),
        listen_port: i32::from(listen_port),
        routed_ips: routed.to_vec(),
    }
}

/// A 256-bit sum, wrapping: adding digests of set members gives a set digest
/// that does not depend on the order of addition, and subtracting removes one.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Sum256([u64; 4]);

impl Sum256 {
    pub fn of(digest: &[u8; 32]) -> Sum256 {
        let mut limbs = [0u64; 4];
        for (limb, chunk) in limbs.iter_mut().zip(digest.chunks_exact(8)) {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(chunk);
            *limb = u64::from_le_bytes(bytes);
        }
        Sum256(limbs)
    }

    pub fn add(self, other: Sum256) -> Sum256 {
        let mut out = [0u64; 4];
        let mut carry = false;
        for (i, limb) in out.iter_mut().enumerate() {
            let (s1, c1) = self.0[i].overflowing_add(other.0[i]);
            let (s2, c2) = s1.overflowing_add(u64::from(carry));
            *limb = s2;
            carry = c1 || c2;
        }
        Sum256(out)
    }

    pub fn sub(self, other: Sum256) -> Sum256 {
        let mut out = [0u64; 4];
        let mut borrow = false;
        for (i, limb) in out.iter_mut().enumerate() {
            let (d1, b1) = self.0[i].overflowing_sub(other.0[i]);
            let (d2, b2) = d1.overflowing_sub(u64::from(borrow));
            *limb = d2;
            borrow = b1 || b2;
        }
        Sum256(out)
    }

    fn bytes(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (chunk, limb) in out.chunks_exact_mut(8).zip(self.0) {
            chunk.copy_from_slice(&limb.to_le_bytes());
        }
        out
    }
}

pub fn peer_digest(entry: &Peer) -> Sum256 {
    Sum256::of(&Sha256::digest(to_json(entry)).into())
}

/// 16 hex digits (64 bits) of a SHA-256 over the parts' digests.
pub fn revision(
    interface: &InterfaceSpec,
    peers: Sum256,
    audit_peers: Option<Sum256>,
    filters: &[u8; 32],
    chains: &[[u8; 32]],
) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"meshguard.io/v1alpha1 NodePolicy\n");
    hasher.update(Sha256::digest(to_json(interface)));
    hasher.update(peers.bytes());
    if let Some(audit) = audit_peers {
        hasher.update(b"audit");
        hasher.update(audit.bytes());
    }
    hasher.update(filters);
    hasher.update((chains.len() as u64).to_le_bytes());
    for chain in chains {
        hasher.update(chain);
    }
    hex(&hasher.finalize()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_are_order_free_and_invertible() {
        let d = |s: &str| Sum256::of(&Sha256::digest(s.as_bytes()).into());
        let (a, b, c) = (d("a"), d("b"), d("c"));
        assert_eq!(a.add(b).add(c), c.add(a).add(b));
        assert_eq!(a.add(b).add(c).sub(b), a.add(c));
        assert_ne!(a.add(b), a.add(c));
        let max = Sum256([u64::MAX; 4]);
        assert_eq!(
            max.add(Sum256([1, 0, 0, 0])),
            Sum256::default(),
            "wraps with carry"
        );
        assert_eq!(
            Sum256::default().sub(Sum256([1, 0, 0, 0])),
            max,
            "wraps with borrow"
        );
    }
}
