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
        "addressSets": [
            { "name": "client", "addresses": ["10.77.0.2"] },
            { "name": "wide", "addresses": ["10.77.0.3"] },
        ],
        "ingress": [
            { "id": "t/log", "action": "Log", "set": "wide" },
            { "id": "t/no-5001", "action": "Deny", "set": "client", "ports": [{ "protocol": "TCP", "port": 5001 }] },
            { "id": "t/web", "action": "Allow", "set": "client", "ports": [{ "protocol": "TCP", "port": 5000, "endPort": 5001 }] },
            { "id": "t/high", "action": "Allow", "set": "wide", "ports": [{ "protocol": "TCP", "port": 1024, "endPort": 65535 }] },
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
    let wide = class_of(Side::Remote, "10.77.0.3/32");
    let rest = class_of(Side::Remote, "0.0.0.0/0");
    let own = class_of(Side::Local, "10.77.0.1/32");
    let name = |id: u32| match id {
        _ if id == client => "client",
        _ if id == wide => "wide",
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
            "remote 10.77.0.3/32 wide",
            // Every IPv6 address is in no set, as every IPv4 one outside the set.
            "remote ::/0 rest",
        ]
    );

    let mut verdicts: Vec<String> = contents
        .verdicts
        .iter()
        .map(|(key, value)| {
            assert_eq!(key.local, own);
            let slot = ids.slots.key(value >> 2).unwrap();
            let what = match (key.protocol, key.port) {
                (None, _) => "unnamed".to_owned(),
                (Some(p), None) => format!("{p} all"),
                (Some(p), Some(port)) => format!("{p} {}/{}", port.port, port.bits),
            };
            // The log bit: set exactly where a rule of the slot logs.
            assert_eq!(value & 2 == 2, slot.logs(), "{slot:?}");
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
    let logged = contents.verdicts.values().filter(|v| *v & 2 == 2).count();
    assert_eq!(
        logged, 3,
        "the entries of `wide`, where the Log rule is reached"
    );
    let dd = "meshguard:default-deny";
    let mut expected: Vec<String> = vec![
        // Egress: no rule at all, for any class.
        format!("Egress client unnamed deny {dd}"),
        format!("Egress rest unnamed deny {dd}"),
        format!("Egress wide unnamed deny {dd}"),
        // Ingress from addresses in no set: no rule can match.
        format!("Ingress rest unnamed deny {dd}"),
        // From the client: protocols no rule names; TCP's all-ports entry
        // answers what most ports get (default deny, 65,534 of them), and
        // the two ports answered otherwise are written apart: 5000 allowed,
        // 5001 denied by the Deny before the Allow.
        format!("Ingress client unnamed deny {dd}"),
        format!("Ingress client 6 all deny {dd}"),
        "Ingress client 6 5000/16 allow t/web".to_owned(),
        "Ingress client 6 5001/16 deny t/no-5001".to_owned(),
        // From `wide`: most TCP ports allowed (1024-65535), so the
        // all-ports entry allows and 0-1023 (2^10 ports from 0: a 6-bit
        // prefix) is default deny.
        // The Log rule before them counts (and logs) every packet from
        // `wide` on its way to the decision.
        format!("Ingress wide unnamed deny t/log,{dd}"),
        "Ingress wide 6 all allow t/log,t/high".to_owned(),
        format!("Ingress wide 6 0/6 deny t/log,{dd}"),
    ];
    expected.sort();
    assert_eq!(verdicts, expected);
}
