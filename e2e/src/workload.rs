//! NodePolicies of a chosen size for the dataplane benchmarks, built
//! directly (not compiled from MeshPolicies) so that peer, set and rule
//! counts are exactly what the benchmark says.

use meshguard_crds::{NodePolicy, NodePolicySpec};
use serde_json::{Value, json};

/// A mesh IP for the `i`th synthetic peer: 100.97.0.1 onwards.
pub fn peer_ip(i: usize) -> String {
    let n = i + 1;
    format!("100.97.{}.{}", n / 256, n % 256)
}

/// A random WireGuard public key (any 32 bytes are a key to the daemon).
pub fn random_key() -> anyhow::Result<String> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("randomness: {e}"))?;
    Ok(base64(&key))
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `peers` peers, `sets` address sets of 25 peers each, and `rules` rules
/// split between ingress and egress: Allow mostly, every tenth a Deny and
/// every tenth a Log, each on its own TCP port.
pub fn large(
    node: &str,
    mesh_ip: &str,
    peers: usize,
    sets: usize,
    rules: usize,
) -> anyhow::Result<NodePolicy> {
    let peer_list = (0..peers)
        .map(|i| {
            Ok(json!({
                "name": format!("peer-{i}"),
                "publicKey": random_key()?,
                "endpoint": format!("10.98.{}.{}:51820", i / 250, i % 250 + 1),
                "allowedIPs": [format!("{}/32", peer_ip(i))],
            }))
        })
        .collect::<anyhow::Result<Vec<Value>>>()?;
    let set_list: Vec<Value> = (0..sets)
        .map(|s| json!({ "name": format!("s{s}"), "addresses": (0..25).map(|k| peer_ip((s * 25 + k) % peers.max(1))).collect::<Vec<_>>() }))
        .collect();
    let rule = |i: usize| {
        let action = match i % 10 {
            0 => "Deny",
            1 => "Log",
            _ => "Allow",
        };
        json!({ "id": format!("bench/r{i}"), "action": action, "set": format!("s{}", i % sets.max(1)), "ports": [{ "protocol": "TCP", "port": 1000 + i }] })
    };
    let ingress: Vec<Value> = (0..rules / 2).map(rule).collect();
    let egress: Vec<Value> = (rules / 2..rules).map(rule).collect();
    document(
        node,
        mesh_ip,
        "large-0",
        json!(peer_list),
        json!(set_list),
        json!(ingress),
        json!(egress),
    )
}

/// Two nodes that may talk TCP `port` (server to client), behind `filler`
/// rules in each direction that never match the flow: the rules a new
/// connection walks past.
pub fn pair(
    node: &str,
    mesh_ip: &str,
    peer: (&str, &str, &str, &str),
    port: u16,
    filler: usize,
) -> anyhow::Result<NodePolicy> {
    let (peer_name, peer_key, peer_ip, peer_endpoint) = peer;
    let peers = json!([{ "name": peer_name, "publicKey": peer_key, "endpoint": peer_endpoint, "allowedIPs": [format!("{peer_ip}/32")] }]);
    let sets = json!([{ "name": "peer", "addresses": [peer_ip] }, { "name": "elsewhere", "cidrs": ["100.98.0.0/16"] }]);
    let list = || -> Vec<Value> {
        (0..filler)
            .map(|i| json!({ "id": format!("filler/r{i}"), "action": "Allow", "set": "elsewhere", "ports": [{ "protocol": "TCP", "port": 10000 + i % 50000 }] }))
            .chain([json!({ "id": "bench/iperf", "action": "Allow", "set": "peer", "ports": [{ "protocol": "TCP", "port": port }] })])
            .collect()
    };
    document(
        node,
        mesh_ip,
        &format!("pair-{filler}"),
        peers,
        sets,
        json!(list()),
        json!(list()),
    )
}

fn document(
    node: &str,
    mesh_ip: &str,
    revision: &str,
    peers: Value,
    sets: Value,
    ingress: Value,
    egress: Value,
) -> anyhow::Result<NodePolicy> {
    let spec: NodePolicySpec = serde_json::from_value(json!({
        "revision": revision,
        "interface": { "meshIP": mesh_ip, "listenPort": 51820 },
        "peers": peers,
        "addressSets": sets,
        "ingress": ingress,
        "egress": egress,
    }))?;
    Ok(NodePolicy::new(node, spec))
}
