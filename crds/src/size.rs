//! How large a NodePolicy may be.
//!
//! A NodePolicy's lists (peers, address sets, rules) have no `maxItems`:
//! the operator writes them, and their lengths follow from the policies
//! (a member that is a peer of every other has one peer per member). What
//! bounds them is etcd, which keeps an object of at most 1.5 MiB
//! (1,572,864 bytes, its default `--max-request-bytes`); past it the API
//! server refuses the write with an error that names no policy. So the
//! operator and `meshguard compile` measure each NodePolicy before writing
//! it and refuse one past [`MAX_BYTES`], saying what made it large, while
//! the node keeps enforcing its previous NodePolicy.

use std::io::Write;

use crate::NodePolicy;

/// The largest NodePolicy written, in bytes of JSON: etcd's 1.5 MiB less
/// room for what the API server adds (metadata, managed fields, the
/// agent's status).
pub const MAX_BYTES: usize = 1_500_000;

/// A NodePolicy past [`MAX_BYTES`], with what made it large.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "NodePolicy/{name} would be {bytes} bytes of JSON ({peers} peers, {address_sets} address sets, {rules} rules), past the bound of {MAX_BYTES} bytes (etcd keeps at most 1.5 MiB per object); it is not written and the node keeps its previous NodePolicy. Rules that make a member a peer of every other member make it grow by one peer per member"
)]
pub struct TooLarge {
    pub name: String,
    pub bytes: usize,
    pub peers: usize,
    pub address_sets: usize,
    pub rules: usize,
}

/// Counts what is written without keeping it.
struct Counter(usize);

impl Write for Counter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0 += bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The object's size as the JSON the API server receives; refused past
/// [`MAX_BYTES`].
pub fn checked_size(policy: &NodePolicy) -> Result<usize, TooLarge> {
    let mut counter = Counter(0);
    // Serializing plain data into a writer that never fails cannot fail;
    // were it to, the size counted as unbounded refuses the object.
    let bytes = match serde_json::to_writer(&mut counter, policy) {
        Ok(()) => counter.0,
        Err(_) => usize::MAX,
    };
    if bytes <= MAX_BYTES {
        return Ok(bytes);
    }
    let spec = &policy.spec;
    Err(TooLarge {
        name: policy.metadata.name.clone().unwrap_or_default(),
        bytes,
        peers: spec.peers.len() + spec.audit_peers.len(),
        address_sets: spec.address_sets.len(),
        rules: spec.ingress.len() + spec.egress.len(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is a failure report

    use std::collections::BTreeMap;

    use super::*;
    use crate::{
        NodePolicySpec,
        node_policy::{InterfaceSpec, Peer},
    };

    fn policy(peers: usize, padding: usize) -> NodePolicy {
        let mut policy = NodePolicy::new(
            "hub",
            NodePolicySpec {
                interface: InterfaceSpec {
                    mesh_ip: "100.96.0.1".into(),
                    listen_port: 51820,
                    routed_ips: vec![],
                },
                peers: (0..peers)
                    .map(|i| Peer {
                        name: format!("member-{i}"),
                        public_key: "A".repeat(43) + "=",
                        endpoint: Some(format!("10.0.{}.{}:51820", i / 250, i % 250)),
                        allowed_ips: vec![format!("100.97.{}.{}/32", i / 250, i % 250)],
                    })
                    .collect(),
                audit_peers: vec![],
                address_sets: vec![],
                ingress: vec![],
                egress: vec![],
                chains: vec![],
                revision: "0123456789abcdef".into(),
            },
        );
        policy.metadata.labels = Some(BTreeMap::from([("pad".into(), "p".repeat(padding))]));
        policy
    }

    /// At the bound written, one byte past it refused, with the size
    /// counted exactly as `serde_json` writes it and the counts named.
    #[test]
    fn a_node_policy_fits_up_to_the_bound_and_not_a_byte_more() {
        let unpadded = serde_json::to_vec(&policy(10_000, 0)).unwrap().len();
        assert!(unpadded < MAX_BYTES, "{unpadded}");
        let at_bound = policy(10_000, MAX_BYTES - unpadded);
        assert_eq!(checked_size(&at_bound), Ok(MAX_BYTES));
        let past = checked_size(&policy(10_000, MAX_BYTES - unpadded + 1)).unwrap_err();
        assert_eq!(
            (past.bytes, past.peers, past.address_sets, past.rules),
            (MAX_BYTES + 1, 10_000, 0, 0)
        );
        let message = past.to_string();
        assert!(
            message.starts_with("NodePolicy/hub would be 1500001 bytes of JSON (10000 peers, 0 address sets, 0 rules), past the bound of 1500000 bytes"),
            "{message}"
        );
    }
}
