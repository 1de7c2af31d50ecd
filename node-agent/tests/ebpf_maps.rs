//! The eBPF maps' contents for a small NodePolicy, against entries written
//! out by hand from the semantics and port arithmetic (not from the code's
//! output): which classes the addresses get, and for every (direction,
//! class, protocol, port prefix) the verdict and the rules it counts for.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use meshguard_agent::{
    backend::ebpf::{
        keys::Side,
        revision::{Contents, Ids},
        verdicts::table,
    },
    desired,
};
use meshguard_crds::NodePolicySpec;
use serde_json::json;

#[test]
fn a_small_policy_becomes_exactly_these_entries() {
    let spec: NodePolicySpec = serde_json::from_value(json!({
        "revision": "r1",
        "interface": { "meshIP": "10.77.0.1", "listenPort": 51820 },
        "addressSets": [{ "name": "client", "addresses": ["10.77.0.2"] }],
        "ingress": [
            { "id": "t/no-5001", "action": "Deny", "set": "client", "ports": [{ "protocol": "TCP", "port": 5001 }] },
            { "id": "t/web", "action": "Allow", "set": "client", "ports": [{ "protocol": "TCP", "port": 5000, "endPort": 5001 }] },
        ],
        "egress": [],
    }))
    .unwrap();
    let desired = desired::parse(&spec).unwrap();
    let mut ids = Ids::default();
    let contents = Contents::of(&desired, &table(&desired), &mut ids).unwrap();

    // Class numbers are the backend's to choose: name them by an address.
    let class_of = |side, net: &str| contents.classes[&(side, net.parse().unwrap())];
    let client = class_of(Side::Remote, "10.77.0.2/32");
    let rest = class_of(Side::Remote, "0.0.0.0/0");
    let own = class_of(Side::Local, "10.77.0.1/32");
    let name = |id: u32| match id {
        _ if id == client => "client",
        _ if id == rest => "rest",
        _ => "?",
    };
    let mut classes: Vec<String> = contents
        .classes
        .iter()
        .map(|((side, net), id)| match side {
            Side::Remote => format!("remote {net} {}", name(*id)),
            Side::Local => format!("local {net} {}", if *id == own { "own" } else { "?" }),
        })
        .collect();
    classes.sort();
    assert_eq!(
        classes,
        [
            "local 10.77.0.1/32 own",
            "remote 0.0.0.0/0 rest",
            "remote 10.77.0.2/32 client",
            // Every IPv6 address is in no set, as every IPv4 one outside the set.
            "remote ::/0 rest",
        ]
    );

    let mut verdicts: Vec<String> = contents
        .verdicts
        .iter()
        .map(|(key, value)| {
            assert_eq!(key.local, own);
            let slot = ids.slots.key(value >> 1).unwrap();
            let what = match (key.protocol, key.port) {
                (None, _) => "unnamed".to_owned(),
                (Some(p), None) => format!("{p} all"),
                (Some(p), Some(port)) => format!("{p} {}/{}", port.port, port.bits),
            };
            format!(
                "{:?} {} {what} {} {}",
                key.direction,
                name(key.remote),
                if value & 1 == 1 { "allow" } else { "deny" },
                slot.rules.join(",")
            )
        })
        .collect();
    verdicts.sort();
    let dd = "meshguard:default-deny";
    let mut expected: Vec<String> = vec![
        // Egress: no rule at all, for either class.
        format!("Egress client unnamed deny {dd}"),
        format!("Egress rest unnamed deny {dd}"),
        // Ingress from addresses in no set: no rule can match.
        format!("Ingress rest unnamed deny {dd}"),
        // From the client: protocols no rule names...
        format!("Ingress client unnamed deny {dd}"),
        // ...TCP 5000 allowed, 5001 denied by the Deny before the Allow...
        "Ingress client 6 5000/16 allow t/web".to_owned(),
        "Ingress client 6 5001/16 deny t/no-5001".to_owned(),
    ];
    // ...and the rest of TCP default deny, as the fewest aligned blocks:
    // 0-4999 = 0-4095, 4096-4607, 4608-4863, 4864-4991, 4992-4999;
    // 5002-65535 = 5002-5003, 5004-5007, 5008-5023, 5024-5055, 5056-5119,
    // 5120-6143, 6144-8191, 8192-16383, 16384-32767, 32768-65535.
    for (port, bits) in [
        (0, 4),
        (4096, 7),
        (4608, 8),
        (4864, 9),
        (4992, 13),
        (5002, 15),
        (5004, 14),
        (5008, 12),
        (5024, 11),
        (5056, 10),
        (5120, 6),
        (6144, 5),
        (8192, 3),
        (16384, 2),
        (32768, 1),
    ] {
        expected.push(format!("Ingress client 6 {port}/{bits} deny {dd}"));
    }
    expected.sort();
    assert_eq!(verdicts, expected);
}
