//! Every CEL rule of the generated schemas, both ways: samples it accepts and
//! samples it refuses with its message, evaluated by kube-cel (a real CEL
//! implementation with the Kubernetes library) through the same `Validator`
//! the operator and CLI use.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

mod support;

use std::collections::BTreeSet;

use meshguard_crds::{
    Kind, manifests,
    validation::{Stage, Validator},
};
use serde_json::{Value, json};
use support::*;

struct Case {
    /// The rule's message, exactly as in the schema.
    message: &'static str,
    /// Where the error is reported.
    field: &'static str,
    accept: Vec<Value>,
    reject: Vec<Value>,
}

fn cases() -> Vec<Case> {
    vec![
        // --- peer selectors
        Case {
            message: "a peer selector needs exactly one of nodes, nodeSelector, cidrs or all",
            field: "spec.rules[0].from[0]",
            accept: vec![
                from_selector(json!({ "nodes": ["web-1"] })),
                from_selector(json!({ "nodeSelector": {} })),
                from_selector(json!({ "cidrs": [{ "cidr": "10.0.0.0/8" }] })),
                from_selector(json!({ "all": true })),
            ],
            reject: vec![
                from_selector(json!({})),
                from_selector(json!({ "nodes": ["web-1"], "all": true })),
                from_selector(json!({ "nodeSelector": {}, "cidrs": [{ "cidr": "10.0.0.0/8" }] })),
            ],
        },
        Case {
            message: "nodes must name at least one member",
            field: "spec.rules[0].from[0].nodes",
            accept: vec![from_selector(json!({ "nodes": ["a", "b.example"] }))],
            reject: vec![from_selector(json!({ "nodes": [] }))],
        },
        Case {
            message: "cidrs must list at least one block",
            field: "spec.rules[0].from[0].cidrs",
            accept: vec![from_selector(json!({ "cidrs": [{ "cidr": "fd00::/8" }] }))],
            reject: vec![from_selector(json!({ "cidrs": [] }))],
        },
        Case {
            message: "all must be true when set; leave it out otherwise",
            field: "spec.rules[0].from[0].all",
            accept: vec![from_selector(json!({ "all": true }))],
            reject: vec![from_selector(json!({ "all": false }))],
        },
        Case {
            message: "operators In and NotIn need at least one value",
            field: "spec.rules[0].from[0].nodeSelector.matchExpressions[0]",
            accept: vec![
                from_selector(
                    json!({ "nodeSelector": { "matchExpressions": [{ "key": "tier", "operator": "In", "values": ["web"] }] } }),
                ),
                from_selector(
                    json!({ "nodeSelector": { "matchExpressions": [{ "key": "tier", "operator": "NotIn", "values": ["db", "cache"] }] } }),
                ),
            ],
            reject: vec![
                from_selector(
                    json!({ "nodeSelector": { "matchExpressions": [{ "key": "tier", "operator": "In" }] } }),
                ),
                from_selector(
                    json!({ "nodeSelector": { "matchExpressions": [{ "key": "tier", "operator": "NotIn", "values": [] }] } }),
                ),
            ],
        },
        Case {
            message: "operators Exists and DoesNotExist take no values",
            field: "spec.rules[0].from[0].nodeSelector.matchExpressions[0]",
            accept: vec![
                from_selector(
                    json!({ "nodeSelector": { "matchExpressions": [{ "key": "gpu", "operator": "Exists" }] } }),
                ),
                from_selector(
                    json!({ "nodeSelector": { "matchExpressions": [{ "key": "gpu", "operator": "DoesNotExist", "values": [] }] } }),
                ),
            ],
            reject: vec![from_selector(
                json!({ "nodeSelector": { "matchExpressions": [{ "key": "gpu", "operator": "Exists", "values": ["yes"] }] } }),
            )],
        },
        Case {
            message: "cidr must be an IPv4 or IPv6 CIDR such as 10.0.0.0/8 or fd00::/8",
            field: "spec.rules[0].from[0].cidrs[0].cidr",
            accept: vec![
                from_selector(json!({ "cidrs": [{ "cidr": "192.168.0.0/16" }] })),
                from_selector(json!({ "cidrs": [{ "cidr": "2001:db8::/32" }] })),
                from_selector(json!({ "cidrs": [{ "cidr": "100.96.0.7/32" }] })),
            ],
            reject: vec![
                from_selector(json!({ "cidrs": [{ "cidr": "10.0.0.0/33" }] })),
                from_selector(json!({ "cidrs": [{ "cidr": "10.0.0.0" }] })),
                from_selector(json!({ "cidrs": [{ "cidr": "banana" }] })),
            ],
        },
        Case {
            message: "every except entry must be an IPv4 or IPv6 CIDR",
            field: "spec.rules[0].from[0].cidrs[0].except",
            accept: vec![from_selector(
                json!({ "cidrs": [{ "cidr": "10.0.0.0/8", "except": ["10.1.0.0/16", "10.2.3.4/32"] }] }),
            )],
            reject: vec![from_selector(
                json!({ "cidrs": [{ "cidr": "10.0.0.0/8", "except": ["10.1.0.0/16", "ten"] }] }),
            )],
        },
        Case {
            message: "every except block must lie inside cidr and be of the same IP family",
            field: "spec.rules[0].from[0].cidrs[0]",
            accept: vec![from_selector(
                json!({ "cidrs": [{ "cidr": "fd00::/8", "except": ["fd00:1::/32"] }] }),
            )],
            reject: vec![
                from_selector(
                    json!({ "cidrs": [{ "cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"] }] }),
                ),
                from_selector(
                    json!({ "cidrs": [{ "cidr": "10.0.0.0/16", "except": ["10.0.0.0/8"] }] }),
                ),
                from_selector(
                    json!({ "cidrs": [{ "cidr": "10.0.0.0/8", "except": ["fd00::/16"] }] }),
                ),
            ],
        },
        // --- ports
        Case {
            message: "ICMP takes no port: port and endPort apply to TCP, UDP and SCTP",
            field: "spec.rules[0].ports[0]",
            accept: vec![
                with_port(json!({ "protocol": "ICMP" })),
                with_port(json!({ "protocol": "TCP", "port": 443 })),
                with_port(json!({ "protocol": "UDP", "port": 53 })),
                with_port(json!({ "protocol": "SCTP", "port": 3868 })),
            ],
            reject: vec![
                with_port(json!({ "protocol": "ICMP", "port": 8 })),
                with_port(json!({ "protocol": "ICMP", "port": 1, "endPort": 2 })),
            ],
        },
        Case {
            message: "endPort needs port",
            field: "spec.rules[0].ports[0]",
            accept: vec![with_port(
                json!({ "protocol": "TCP", "port": 8000, "endPort": 8000 }),
            )],
            reject: vec![with_port(json!({ "protocol": "TCP", "endPort": 9000 }))],
        },
        Case {
            message: "endPort must be greater than or equal to port",
            field: "spec.rules[0].ports[0]",
            accept: vec![with_port(
                json!({ "protocol": "UDP", "port": 30000, "endPort": 32767 }),
            )],
            reject: vec![with_port(
                json!({ "protocol": "TCP", "port": 9000, "endPort": 8000 }),
            )],
        },
        // --- MeshPolicy
        Case {
            message: "rule names must be unique within a policy",
            field: "spec.rules",
            accept: vec![policy(json!([
                { "name": "a", "action": "Allow", "from": [{ "all": true }], "to": [{ "all": true }] },
                { "name": "b", "action": "Deny", "from": [{ "all": true }], "to": [{ "all": true }] },
                { "action": "Log", "from": [{ "all": true }], "to": [{ "all": true }] },
                { "action": "Log", "from": [{ "all": true }], "to": [{ "all": true }] },
            ]))],
            reject: vec![policy(json!([
                { "name": "a", "action": "Allow", "from": [{ "all": true }], "to": [{ "all": true }] },
                { "action": "Log", "from": [{ "all": true }], "to": [{ "all": true }] },
                { "name": "a", "action": "Deny", "from": [{ "all": true }], "to": [{ "all": true }] },
            ]))],
        },
        Case {
            message: "from must list at least one peer selector; use [{all: true}] for everyone",
            field: "spec.rules[0].from",
            accept: vec![policy(
                json!([{ "action": "Deny", "from": [{ "all": true }], "to": [{ "nodes": ["db-1"] }] }]),
            )],
            reject: vec![policy(
                json!([{ "action": "Deny", "from": [], "to": [{ "all": true }] }]),
            )],
        },
        Case {
            message: "to must list at least one peer selector; use [{all: true}] for everyone",
            field: "spec.rules[0].to",
            accept: vec![policy(
                json!([{ "action": "Deny", "from": [{ "nodes": ["db-1"] }], "to": [{ "all": true }] }]),
            )],
            reject: vec![policy(
                json!([{ "action": "Deny", "from": [{ "all": true }], "to": [] }]),
            )],
        },
        Case {
            message: "ports must not be empty; leave it out to match all traffic",
            field: "spec.rules[0].ports",
            accept: vec![policy(
                json!([{ "action": "Allow", "from": [{ "all": true }], "to": [{ "all": true }] }]),
            )],
            reject: vec![policy(
                json!([{ "action": "Allow", "from": [{ "all": true }], "to": [{ "all": true }], "ports": [] }]),
            )],
        },
        Case {
            message: "a TCP, UDP or SCTP test needs a port",
            field: "spec.tests[0]",
            accept: vec![with_test(
                json!({ "from": "web-1", "to": "db-1", "protocol": "TCP", "port": 5432, "expect": "Allow" }),
            )],
            reject: vec![
                with_test(
                    json!({ "from": "web-1", "to": "db-1", "protocol": "TCP", "expect": "Allow" }),
                ),
                with_test(
                    json!({ "from": "web-1", "to": "db-1", "protocol": "SCTP", "expect": "Deny" }),
                ),
            ],
        },
        Case {
            message: "an ICMP test takes no port",
            field: "spec.tests[0]",
            accept: vec![with_test(
                json!({ "from": "web-1", "to": "100.96.0.9", "protocol": "ICMP", "expect": "Deny" }),
            )],
            reject: vec![with_test(
                json!({ "from": "web-1", "to": "db-1", "protocol": "ICMP", "port": 8, "expect": "Deny" }),
            )],
        },
        // --- PolicyChain
        Case {
            message: "routes must name at least one Envoy route",
            field: "spec.routes",
            accept: vec![object(
                Kind::PolicyChain,
                json!({ "routes": ["orders-v1", "orders-v2"], "policies": [{ "apiKey": api_key() }] }),
            )],
            reject: vec![object(
                Kind::PolicyChain,
                json!({ "routes": [], "policies": [{ "apiKey": api_key() }] }),
            )],
        },
        Case {
            message: "policies must list at least one step",
            field: "spec.policies",
            accept: vec![chain(
                json!([{ "apiKey": api_key() }, { "rateLimit": { "requests": 5 } }]),
            )],
            reject: vec![chain(json!([]))],
        },
        Case {
            message: "a chain step needs exactly one of apiKey, jwt, anyOf, rateLimit, access or headers",
            field: "spec.policies[0]",
            accept: vec![
                step(json!({ "apiKey": api_key() })),
                step(json!({ "jwt": jwt(json!({ "uri": "https://issuer.example/jwks" })) })),
                step(json!({ "anyOf": [{ "apiKey": api_key() }] })),
                step(json!({ "rateLimit": { "requests": 1 } })),
                step(json!({ "access": { "deny": { "methods": ["DELETE"] } } })),
                step(
                    json!({ "headers": { "request": { "remove": ["x-internal"] } }, "when": { "methods": ["GET"] } }),
                ),
            ],
            reject: vec![
                step(json!({})),
                step(json!({ "when": { "methods": ["GET"] } })),
                step(json!({ "apiKey": api_key(), "rateLimit": { "requests": 1 } })),
            ],
        },
        Case {
            message: "anyOf must list at least one credential",
            field: "spec.policies[0].anyOf",
            accept: vec![step(
                json!({ "anyOf": [{ "apiKey": api_key() }, { "jwt": jwt(json!({ "uri": "https://i.example/k" })) }] }),
            )],
            reject: vec![step(json!({ "anyOf": [] }))],
        },
        Case {
            message: "an anyOf entry needs exactly one of apiKey or jwt",
            field: "spec.policies[0].anyOf[1]",
            accept: vec![step(
                json!({ "anyOf": [{ "apiKey": api_key() }, { "jwt": jwt(json!({ "uri": "https://i.example/k" })) }] }),
            )],
            reject: vec![
                step(json!({ "anyOf": [{ "apiKey": api_key() }, {}] })),
                step(
                    json!({ "anyOf": [{ "apiKey": api_key() }, { "apiKey": api_key(), "jwt": jwt(json!({ "uri": "https://i.example/k" })) }] }),
                ),
            ],
        },
        Case {
            message: "a JWT step must name its issuer",
            field: "spec.policies[0].jwt.issuer",
            accept: vec![step(
                json!({ "jwt": { "issuer": "https://login.example", "jwks": { "uri": "https://login.example/jwks" } } }),
            )],
            reject: vec![step(
                json!({ "jwt": { "issuer": "", "jwks": { "uri": "https://login.example/jwks" } } }),
            )],
        },
        Case {
            message: "jwks needs exactly one of inline, configMapRef, secretRef or uri",
            field: "spec.policies[0].jwt.jwks",
            accept: vec![
                step(
                    json!({ "jwt": jwt(json!({ "configMapRef": { "name": "issuer-jwks", "key": "jwks.json" } })) }),
                ),
                step(
                    json!({ "jwt": jwt(json!({ "secretRef": { "name": "issuer-jwks", "key": "jwks.json" } })) }),
                ),
                step(
                    json!({ "jwt": jwt(json!({ "inline": r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"# })) }),
                ),
            ],
            reject: vec![
                step(json!({ "jwt": jwt(json!({})) })),
                step(
                    json!({ "jwt": jwt(json!({ "uri": "https://i.example/k", "configMapRef": { "name": "a", "key": "b" } })) }),
                ),
            ],
        },
        Case {
            message: "jwks uri must be an https:// URL",
            field: "spec.policies[0].jwt.jwks.uri",
            accept: vec![step(
                json!({ "jwt": jwt(json!({ "uri": "https://issuer.example:8443/.well-known/jwks.json" })) }),
            )],
            reject: vec![
                step(json!({ "jwt": jwt(json!({ "uri": "http://issuer.example/jwks" })) })),
                step(json!({ "jwt": jwt(json!({ "uri": "issuer.example/jwks" })) })),
                step(json!({ "jwt": jwt(json!({ "uri": "https:///jwks" })) })),
            ],
        },
        Case {
            message: "a rate-limit key needs exactly one of claim, header, clientId, sourceIP or route",
            field: "spec.policies[0].rateLimit.key",
            accept: vec![
                rate_key(json!({ "claim": "sub" })),
                rate_key(json!({ "header": "x-tenant" })),
                rate_key(json!({ "clientId": true })),
                rate_key(json!({ "sourceIP": true })),
                rate_key(json!({ "route": true })),
            ],
            reject: vec![
                rate_key(json!({})),
                rate_key(json!({ "claim": "sub", "sourceIP": true })),
            ],
        },
        Case {
            message: "clientId, sourceIP and route take the value true",
            field: "spec.policies[0].rateLimit.key",
            accept: vec![rate_key(json!({ "sourceIP": true }))],
            reject: vec![
                rate_key(json!({ "sourceIP": false })),
                rate_key(json!({ "route": false })),
            ],
        },
        Case {
            message: "access needs allow, deny or both",
            field: "spec.policies[0].access",
            accept: vec![
                step(json!({ "access": { "allow": { "pathPrefixes": ["/orders"] } } })),
                step(
                    json!({ "access": { "allow": { "methods": ["GET"] }, "deny": { "clientIds": ["legacy"] } } }),
                ),
            ],
            reject: vec![step(json!({ "access": {} }))],
        },
        Case {
            message: "an access match needs at least one of methods, pathPrefixes, sourceCIDRs, clientIds or claims",
            field: "spec.policies[0].access.allow",
            accept: vec![step(
                json!({ "access": { "allow": { "claims": { "tier": "gold" } } } }),
            )],
            reject: vec![step(json!({ "access": { "allow": {} } }))],
        },
        Case {
            message: "every sourceCIDRs entry must be an IPv4 or IPv6 CIDR",
            field: "spec.policies[0].access.allow.sourceCIDRs",
            accept: vec![step(
                json!({ "access": { "allow": { "sourceCIDRs": ["10.0.0.0/8", "fd00::/8"] } } }),
            )],
            reject: vec![step(
                json!({ "access": { "allow": { "sourceCIDRs": ["10.0.0.0/8", "10.0.0.1"] } } }),
            )],
        },
        Case {
            message: "headers needs request, response or both",
            field: "spec.policies[0].headers",
            accept: vec![step(
                json!({ "headers": { "response": { "set": { "x-chain": "orders" } } } }),
            )],
            reject: vec![step(json!({ "headers": {} }))],
        },
        Case {
            message: "a header change needs set, remove or both",
            field: "spec.policies[0].headers.request",
            accept: vec![step(
                json!({ "headers": { "request": { "set": { "x-a": "1" }, "remove": ["x-b"] } } }),
            )],
            reject: vec![step(json!({ "headers": { "request": {} } }))],
        },
        Case {
            message: "when needs at least one of methods, pathPrefixes or headers",
            field: "spec.policies[0].when",
            accept: vec![step(
                json!({ "rateLimit": { "requests": 3 }, "when": { "headers": { "x-tier": "free" } } }),
            )],
            reject: vec![step(json!({ "rateLimit": { "requests": 3 }, "when": {} }))],
        },
        // --- MeshNode
        Case {
            message: "publicKey must be a WireGuard public key: 44 characters of base64 ending in =",
            field: "spec.publicKey",
            accept: vec![
                node(json!({})),
                object(
                    Kind::MeshNode,
                    json!({ "publicKey": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" }),
                ),
            ],
            reject: vec![
                object(Kind::MeshNode, json!({ "publicKey": "not-a-key" })),
                // 44 characters, but the last data character carries bits a 32-byte key cannot have.
                object(
                    Kind::MeshNode,
                    json!({ "publicKey": "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dh=" }),
                ),
                // 43 characters of base64 without padding.
                object(
                    Kind::MeshNode,
                    json!({ "publicKey": "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg" }),
                ),
            ],
        },
        Case {
            message: "endpoint must be host:port or [ipv6]:port, such as 10.0.0.7:51820",
            field: "spec.endpoint",
            accept: vec![
                node(json!({ "endpoint": "10.0.0.7:51820" })),
                node(json!({ "endpoint": "[fd00::7]:51820" })),
                node(json!({ "endpoint": "vpn.example.com:443" })),
            ],
            reject: vec![
                node(json!({ "endpoint": "10.0.0.7" })),
                node(json!({ "endpoint": "fd00::7:51820" })),
                node(json!({ "endpoint": "-bad-.example:1" })),
                // Brackets hold an IPv6 address, nothing else.
                node(json!({ "endpoint": "[1]:80" })),
                node(json!({ "endpoint": "[:]:80" })),
                node(json!({ "endpoint": "[10.0.0.7]:51820" })),
                // Digits and dots must make a real IPv4 address.
                node(json!({ "endpoint": "10.0.0.999:51820" })),
            ],
        },
        Case {
            message: "endpoint port must be between 1 and 65535",
            field: "spec.endpoint",
            accept: vec![
                node(json!({ "endpoint": "10.0.0.7:65535" })),
                node(json!({ "endpoint": "h:1" })),
            ],
            reject: vec![
                node(json!({ "endpoint": "10.0.0.7:65536" })),
                node(json!({ "endpoint": "10.0.0.7:0" })),
            ],
        },
        Case {
            message: "meshIP must be an IPv4 or IPv6 address",
            field: "spec.meshIP",
            accept: vec![
                node(json!({ "meshIP": "100.96.0.9" })),
                node(json!({ "meshIP": "fd00:96::9" })),
            ],
            reject: vec![
                node(json!({ "meshIP": "100.96.0.9/32" })),
                node(json!({ "meshIP": "100.96.0.300" })),
            ],
        },
        Case {
            message: "every allowedIPs entry must be an IPv4 or IPv6 CIDR",
            field: "spec.allowedIPs",
            accept: vec![node(
                json!({ "allowedIPs": ["192.168.10.0/24", "fd10::/64"] }),
            )],
            reject: vec![node(
                json!({ "allowedIPs": ["192.168.10.0/24", "192.168.11.1"] }),
            )],
        },
    ]
}

#[test]
fn every_rule_accepts_and_rejects_its_samples() {
    let validator = Validator::new();
    for case in cases() {
        assert!(
            !case.accept.is_empty() && !case.reject.is_empty(),
            "{}: needs both directions",
            case.message
        );
        for sample in &case.accept {
            assert_accepted(&validator, sample);
        }
        for sample in &case.reject {
            assert_rejected(&validator, sample, case.field, case.message, Stage::Cel);
        }
    }
}

/// Collects `(message, rule)` of every `x-kubernetes-validations` entry.
fn rules_in(schema: &Value, out: &mut Vec<(String, String)>) {
    match schema {
        Value::Object(map) => {
            for rule in map
                .get("x-kubernetes-validations")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let message = rule["message"].as_str().unwrap_or_default().to_owned();
                out.push((
                    message,
                    rule["rule"].as_str().unwrap_or_default().to_owned(),
                ));
            }
            map.values().for_each(|v| rules_in(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| rules_in(v, out)),
        _ => {}
    }
}

#[test]
fn every_rule_in_the_schemas_has_cases_and_a_message() {
    let tested: BTreeSet<&str> = cases().iter().map(|c| c.message).collect();
    let mut rules = Vec::new();
    for kind in Kind::ALL {
        rules_in(&manifests::schema(kind), &mut rules);
    }
    assert!(
        rules.len() >= tested.len(),
        "fewer rules than cases: {rules:?}"
    );
    for (message, rule) in &rules {
        assert!(!message.is_empty(), "rule without a message: {rule}");
        assert!(
            tested.contains(message.as_str()),
            "rule without test cases: {message} ({rule})"
        );
    }
    let in_schema: BTreeSet<&str> = rules.iter().map(|(m, _)| m.as_str()).collect();
    for message in tested {
        assert!(
            in_schema.contains(message),
            "case for a rule the schemas do not have: {message}"
        );
    }
}

/// Rules live on types, and a type can appear in several places; the table
/// above exercises each rule where it first appears, these where it reappears.
#[test]
fn rules_hold_wherever_their_type_appears() {
    let validator = Validator::new();
    let to_side = |selector: Value| {
        policy(json!([{ "action": "Allow", "from": [{ "all": true }], "to": [selector] }]))
    };
    assert_rejected(
        &validator,
        &to_side(json!({ "all": true, "nodes": ["a"] })),
        "spec.rules[0].to[0]",
        "a peer selector needs exactly one of nodes, nodeSelector, cidrs or all",
        Stage::Cel,
    );
    assert_rejected(
        &validator,
        &to_side(json!({ "cidrs": [{ "cidr": "10.0.0.0/8", "except": ["11.0.0.0/8"] }] })),
        "spec.rules[0].to[0].cidrs[0]",
        "every except block must lie inside cidr and be of the same IP family",
        Stage::Cel,
    );
    assert_rejected(
        &validator,
        &step(json!({ "access": { "deny": { "sourceCIDRs": ["nope"] } } })),
        "spec.policies[0].access.deny.sourceCIDRs",
        "every sourceCIDRs entry must be an IPv4 or IPv6 CIDR",
        Stage::Cel,
    );
    assert_rejected(
        &validator,
        &step(json!({ "headers": { "response": {} } })),
        "spec.policies[0].headers.response",
        "a header change needs set, remove or both",
        Stage::Cel,
    );

    // NodePolicy reuses the chain step types, rules included.
    let node_policy = |step: Value| {
        object(
            Kind::NodePolicy,
            json!({
                "revision": "r1",
                "interface": { "meshIP": "100.96.0.1", "listenPort": 51820 },
                "chains": [{ "name": "shop/orders", "routes": ["r"], "mode": "Enforce", "failureMode": "Closed", "steps": [step] }],
            }),
        )
    };
    assert_accepted(
        &validator,
        &node_policy(json!({ "rateLimit": { "requests": 5, "key": { "route": true } } })),
    );
    assert_rejected(
        &validator,
        &node_policy(json!({ "rateLimit": { "requests": 5, "key": {} } })),
        "spec.chains[0].steps[0].rateLimit.key",
        "a rate-limit key needs exactly one of claim, header, clientId, sourceIP or route",
        Stage::Cel,
    );
}
