//! The OpenAPI half of validation (ranges, enums, required fields, patterns,
//! lengths, list uniqueness, unknown fields) and the Rust-only checks, each
//! with samples it accepts and refuses, through the same `Validator`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

mod support;

use meshguard_crds::{
    Kind, MeshPolicy, PolicyChain,
    validation::{Stage, Validator},
};
use serde_json::{Value, json};
use support::*;

fn with_priority(priority: Value) -> Value {
    object(
        Kind::MeshPolicy,
        json!({ "priority": priority, "rules": [] }),
    )
}

fn rule(fields: Value) -> Value {
    let mut rule = json!({ "action": "Allow", "from": [{ "all": true }], "to": [{ "all": true }] });
    if let (Some(rule), Some(fields)) = (rule.as_object_mut(), fields.as_object()) {
        rule.extend(fields.clone());
    }
    policy(json!([rule]))
}

#[test]
fn priority_is_between_0_and_1000() {
    let v = Validator::new();
    assert_accepted(&v, &with_priority(json!(0)));
    assert_accepted(&v, &with_priority(json!(1000)));
    assert_rejected(
        &v,
        &with_priority(json!(-1)),
        "spec.priority",
        "Invalid value: -1: should be greater than or equal to 0",
        Stage::Schema,
    );
    assert_rejected(
        &v,
        &with_priority(json!(1001)),
        "spec.priority",
        "Invalid value: 1001: should be less than or equal to 1000",
        Stage::Schema,
    );
    assert_rejected(
        &v,
        &with_priority(json!("high")),
        "spec.priority",
        "Invalid value: \"high\": must be of type integer",
        Stage::Schema,
    );
    assert_rejected(
        &v,
        &with_priority(json!(1.5)),
        "spec.priority",
        "Invalid value: 1.5: must be of type integer",
        Stage::Schema,
    );
}

#[test]
fn ports_are_between_1_and_65535() {
    let v = Validator::new();
    assert_accepted(
        &v,
        &with_port(json!({ "protocol": "TCP", "port": 1, "endPort": 65535 })),
    );
    assert_rejected(
        &v,
        &with_port(json!({ "protocol": "TCP", "port": 0 })),
        "spec.rules[0].ports[0].port",
        "Invalid value: 0: should be greater than or equal to 1",
        Stage::Schema,
    );
    assert_rejected(
        &v,
        &with_port(json!({ "protocol": "UDP", "port": 65536 })),
        "spec.rules[0].ports[0].port",
        "Invalid value: 65536: should be less than or equal to 65535",
        Stage::Schema,
    );
    assert_rejected(
        &v,
        &with_port(json!({ "protocol": "TCP", "port": 80, "endPort": 70000 })),
        "spec.rules[0].ports[0].endPort",
        "Invalid value: 70000: should be less than or equal to 65535",
        Stage::Schema,
    );
    assert_rejected(
        &v,
        &with_test(
            json!({ "from": "a", "to": "b", "protocol": "TCP", "port": 0, "expect": "Allow" }),
        ),
        "spec.tests[0].port",
        "Invalid value: 0: should be greater than or equal to 1",
        Stage::Schema,
    );
}

#[test]
fn a_port_needs_a_protocol_from_the_list() {
    let v = Validator::new();
    assert_rejected(
        &v,
        &with_port(json!({ "port": 22 })),
        "spec.rules[0].ports[0].protocol",
        "Required value",
        Stage::Schema,
    );
    assert_rejected(
        &v,
        &with_port(json!({ "protocol": "HTTP", "port": 80 })),
        "spec.rules[0].ports[0].protocol",
        r#"Unsupported value: "HTTP": supported values: "TCP", "UDP", "SCTP", "ICMP""#,
        Stage::Schema,
    );
}

#[test]
fn enums_and_required_fields() {
    let v = Validator::new();
    assert_accepted(&v, &object(Kind::MeshPolicy, json!({ "mode": "Audit" })));
    assert_rejected(
        &v,
        &object(Kind::MeshPolicy, json!({ "mode": "enforce" })),
        "spec.mode",
        r#"Unsupported value: "enforce": supported values: "Enforce", "Audit""#,
        Stage::Schema,
    );
    assert_rejected(
        &v,
        &policy(json!([{ "from": [{ "all": true }], "to": [{ "all": true }] }])),
        "spec.rules[0].action",
        "Required value",
        Stage::Schema,
    );
    assert_rejected(
        &v,
        &rule(json!({ "action": "Reject" })),
        "spec.rules[0].action",
        r#"Unsupported value: "Reject": supported values: "Allow", "Deny", "Log""#,
        Stage::Schema,
    );
    let mut no_spec = object(Kind::MeshNode, json!({}));
    no_spec.as_object_mut().map(|o| o.remove("spec"));
    assert_rejected(&v, &no_spec, "spec", "Required value", Stage::Schema);
    assert_rejected(
        &v,
        &object(Kind::MeshNode, json!({})),
        "spec.publicKey",
        "Required value",
        Stage::Schema,
    );
}

#[test]
fn unknown_fields_are_refused_rather_than_dropped() {
    // A misspelled selector would otherwise be pruned and widen or narrow a rule silently.
    let v = Validator::new();
    assert_rejected(
        &v,
        &object(Kind::MeshPolicy, json!({ "rulez": [] })),
        "spec.rulez",
        "unknown field",
        Stage::Schema,
    );
    assert_rejected(
        &v,
        &from_selector(json!({ "nodeselector": {} })),
        "spec.rules[0].from[0].nodeselector",
        "unknown field",
        Stage::Schema,
    );
}

#[test]
fn null_means_absent() {
    let v = Validator::new();
    assert_accepted(&v, &rule(json!({ "ports": null, "name": null })));
}

#[test]
fn names_and_labels_have_kubernetes_shapes() {
    let v = Validator::new();
    assert_accepted(&v, &rule(json!({ "name": "web-to-db" })));
    assert_rejected(
        &v,
        &rule(json!({ "name": "Web_To_DB" })),
        "spec.rules[0].name",
        &format!(
            "Invalid value: \"Web_To_DB\": should match '{}'",
            meshguard_crds::patterns::DNS_LABEL
        ),
        Stage::Schema,
    );
    assert_rejected(
        &v,
        &from_selector(json!({ "nodes": ["web_1"] })),
        "spec.rules[0].from[0].nodes[0]",
        &format!(
            "Invalid value: \"web_1\": should match '{}'",
            meshguard_crds::patterns::DNS_SUBDOMAIN
        ),
        Stage::Schema,
    );
    assert_accepted(
        &v,
        &from_selector(
            json!({ "nodeSelector": { "matchLabels": { "topology.kubernetes.io/zone": "eu-1", "role": "" } } }),
        ),
    );
    assert_rejected(
        &v,
        &from_selector(json!({ "nodeSelector": { "matchLabels": { "role": "web server" } } })),
        "spec.rules[0].from[0].nodeSelector.matchLabels[role]",
        &format!(
            "Invalid value: \"web server\": should match '{}'",
            meshguard_crds::patterns::LABEL_VALUE
        ),
        Stage::Schema,
    );
    assert_rejected(
        &v,
        &from_selector(
            json!({ "nodeSelector": { "matchExpressions": [{ "key": "-role", "operator": "Exists" }] } }),
        ),
        "spec.rules[0].from[0].nodeSelector.matchExpressions[0].key",
        &format!(
            "Invalid value: \"-role\": should match '{}'",
            meshguard_crds::patterns::LABEL_KEY
        ),
        Stage::Schema,
    );
}

#[test]
fn label_keys_in_match_labels_are_checked_in_rust() {
    let v = Validator::new();
    let message = "label key must be a qualified name: an optional DNS-subdomain prefix of at most 253 characters and '/', then at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit";
    for key in [
        "bad key",
        "example.com/",
        "Example.com/role",
        &"k".repeat(64),
    ] {
        assert_rejected(
            &v,
            &from_selector(json!({ "nodeSelector": { "matchLabels": { key: "x" } } })),
            &format!("spec.rules[0].from[0].nodeSelector.matchLabels[{key}]"),
            message,
            Stage::Semantic,
        );
    }
    let chain = object(
        Kind::PolicyChain,
        json!({ "routes": ["r"], "nodeSelector": { "matchLabels": { "a b": "c" } }, "policies": [{ "apiKey": api_key() }] }),
    );
    assert_rejected(
        &v,
        &chain,
        "spec.nodeSelector.matchLabels[a b]",
        message,
        Stage::Semantic,
    );
}

#[test]
fn lists_are_bounded_and_sets_unique() {
    let v = Validator::new();
    let selectors: Vec<Value> = (0..17)
        .map(|i| json!({ "nodes": [format!("n{i}")] }))
        .collect();
    assert_rejected(
        &v,
        &policy(json!([{ "action": "Allow", "from": selectors, "to": [{ "all": true }] }])),
        "spec.rules[0].from",
        "Too many: 17: must have at most 16 items",
        Stage::Schema,
    );
    assert_rejected(
        &v,
        &object(
            Kind::PolicyChain,
            json!({ "routes": ["a", "b", "a"], "policies": [{ "apiKey": api_key() }] }),
        ),
        "spec.routes[2]",
        "Duplicate value: \"a\"",
        Stage::Schema,
    );
    assert_rejected(
        &v,
        &node(json!({ "publicKey": format!("{KEY}=") })),
        "spec.publicKey",
        "Too long: may not be longer than 44",
        Stage::Schema,
    );
}

#[test]
fn rate_limits_are_positive() {
    let v = Validator::new();
    assert_accepted(
        &v,
        &step(json!({ "rateLimit": { "requests": 1, "burst": 1, "per": "Minute" } })),
    );
    assert_rejected(
        &v,
        &step(json!({ "rateLimit": { "requests": 0 } })),
        "spec.policies[0].rateLimit.requests",
        "Invalid value: 0: should be greater than or equal to 1",
        Stage::Schema,
    );
    assert_rejected(
        &v,
        &step(json!({ "rateLimit": { "requests": -5 } })),
        "spec.policies[0].rateLimit.requests",
        "Invalid value: -5: should be greater than or equal to 1",
        Stage::Schema,
    );
    assert_rejected(
        &v,
        &step(json!({ "rateLimit": { "requests": 5, "burst": 0 } })),
        "spec.policies[0].rateLimit.burst",
        "Invalid value: 0: should be greater than or equal to 1",
        Stage::Schema,
    );
    assert_rejected(
        &v,
        &step(json!({ "rateLimit": { "requests": 5, "per": "Day" } })),
        "spec.policies[0].rateLimit.per",
        r#"Unsupported value: "Day": supported values: "Second", "Minute", "Hour""#,
        Stage::Schema,
    );
}

#[test]
fn jwt_steps_refuse_symmetric_algorithms_and_private_keys() {
    let v = Validator::new();
    let mut hs = jwt(json!({ "uri": "https://i.example/k" }));
    hs["algorithms"] = json!(["HS256"]);
    assert_rejected(
        &v,
        &step(json!({ "jwt": hs })),
        "spec.policies[0].jwt.algorithms[0]",
        r#"Unsupported value: "HS256": supported values: "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA""#,
        Stage::Schema,
    );
    let private = r#"{"keys":[{"kty":"RSA","n":"sXch","e":"AQAB","d":"c2VjcmV0"}]}"#;
    assert_rejected(
        &v,
        &step(
            json!({ "anyOf": [{ "apiKey": api_key() }, { "jwt": jwt(json!({ "inline": private })) }] }),
        ),
        "spec.policies[0].anyOf[1].jwt.jwks.inline",
        "invalid JWKS: key 0: holds private key material (\"d\"); publish public keys only",
        Stage::Semantic,
    );
    assert_rejected(
        &v,
        &step(json!({ "jwt": jwt(json!({ "inline": "{not json" })) })),
        "spec.policies[0].jwt.jwks.inline",
        "invalid JWKS: not JSON: key must be a string at line 1 column 2",
        Stage::Semantic,
    );
    let mut skew = jwt(json!({ "uri": "https://i.example/k" }));
    skew["clockSkewSeconds"] = json!(301);
    assert_rejected(
        &v,
        &step(json!({ "jwt": skew })),
        "spec.policies[0].jwt.clockSkewSeconds",
        "Invalid value: 301: should be less than or equal to 300",
        Stage::Schema,
    );
}

#[test]
fn header_names_are_http_tokens() {
    let v = Validator::new();
    let message = "header name must be an HTTP token (letters, digits and !#$%&'*+.^_`|~-)";
    assert_accepted(
        &v,
        &step(json!({ "headers": { "request": { "set": { "x-user": "a" } } } })),
    );
    assert_rejected(
        &v,
        &step(json!({ "headers": { "response": { "set": { "x user": "a" } } } })),
        "spec.policies[0].headers.response.set[x user]",
        message,
        Stage::Semantic,
    );
    assert_rejected(
        &v,
        &step(json!({ "rateLimit": { "requests": 1 }, "when": { "headers": { "x:y": "1" } } })),
        "spec.policies[0].when.headers[x:y]",
        message,
        Stage::Semantic,
    );
    assert_rejected(
        &v,
        &step(json!({ "headers": { "request": { "remove": ["x y"] } } })),
        "spec.policies[0].headers.request.remove[0]",
        &format!(
            "Invalid value: \"x y\": should match '{}'",
            meshguard_crds::patterns::HTTP_HEADER_NAME
        ),
        Stage::Schema,
    );
}

#[test]
fn object_names_are_dns_subdomains() {
    let v = Validator::new();
    let mut policy = object(Kind::MeshPolicy, json!({}));
    policy["metadata"]["name"] = json!("Web_To_DB");
    assert_rejected(
        &v,
        &policy,
        "metadata.name",
        "Invalid value: \"Web_To_DB\": must be a lowercase RFC 1123 subdomain (a-z, 0-9, '-' and '.', at most 253 characters)",
        Stage::Semantic,
    );
    policy["metadata"] = json!({});
    assert_rejected(
        &v,
        &policy,
        "metadata.name",
        "Required value",
        Stage::Semantic,
    );
    let mut chain = step(json!({ "apiKey": api_key() }));
    chain["metadata"]["namespace"] = json!("Shop");
    assert_rejected(
        &v,
        &chain,
        "metadata.namespace",
        "Invalid value: \"Shop\": must be a lowercase RFC 1123 label",
        Stage::Semantic,
    );
}

#[test]
fn defaults_fill_what_users_leave_out() {
    let policy: MeshPolicy =
        serde_json::from_value(object(Kind::MeshPolicy, json!({}))).expect("minimal policy");
    assert_eq!(policy.spec.priority, 1000);
    assert_eq!(policy.spec.mode, meshguard_crds::PolicyMode::Enforce);
    let chain: PolicyChain =
        serde_json::from_value(step(json!({ "apiKey": api_key() }))).expect("minimal chain");
    assert_eq!(
        chain.spec.failure_mode,
        meshguard_crds::policy_chain::FailureMode::Closed
    );
    assert_eq!(
        chain.spec.policies[0]
            .api_key
            .as_ref()
            .map(|k| k.header.as_str()),
        Some("x-api-key")
    );
    // The schema carries the same defaults, so the API server fills them in too.
    let schema = meshguard_crds::manifests::schema(Kind::MeshPolicy);
    assert_eq!(
        schema["properties"]["spec"]["properties"]["priority"]["default"],
        json!(1000)
    );
    assert_eq!(
        schema["properties"]["spec"]["properties"]["mode"]["default"],
        json!("Enforce")
    );
}

#[test]
fn addresses_with_leading_zeros_are_refused_as_the_api_server_does() {
    // kube-cel's isCIDR/isIP accept these; Go's netip (the API server) does not.
    let v = Validator::new();
    let message = |text: &str| {
        format!(
            "Invalid value: {text:?}: write the address without leading zeros, as the API server requires (such as 10.0.0.0/8)"
        )
    };
    assert_rejected(
        &v,
        &from_selector(json!({ "cidrs": [{ "cidr": "010.0.0.0/8" }] })),
        "spec.rules[0].from[0].cidrs[0].cidr",
        &message("010.0.0.0/8"),
        Stage::Semantic,
    );
    assert_rejected(
        &v,
        &from_selector(json!({ "cidrs": [{ "cidr": "10.0.0.0/8", "except": ["010.1.0.0/16"] }] })),
        "spec.rules[0].from[0].cidrs[0].except[0]",
        &message("010.1.0.0/16"),
        Stage::Semantic,
    );
    // isIP is strict already, so CEL refuses this one.
    assert_rejected(
        &v,
        &node(json!({ "meshIP": "100.096.0.9" })),
        "spec.meshIP",
        "meshIP must be an IPv4 or IPv6 address",
        Stage::Cel,
    );
    assert_rejected(
        &v,
        &node(json!({ "allowedIPs": ["192.168.010.0/24"] })),
        "spec.allowedIPs[0]",
        &message("192.168.010.0/24"),
        Stage::Semantic,
    );
    assert_rejected(
        &v,
        &step(json!({ "access": { "allow": { "sourceCIDRs": ["10.0.0.0/08"] } } })),
        "spec.policies[0].access.allow.sourceCIDRs[0]",
        &message("10.0.0.0/08"),
        Stage::Semantic,
    );
    assert_accepted(
        &v,
        &from_selector(json!({ "cidrs": [{ "cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"] }] })),
    );
}

#[test]
fn metadata_labels_are_checked() {
    let v = Validator::new();
    let mut member = node(json!({}));
    member["metadata"]["labels"] = json!({ "role": "web", "topology.kubernetes.io/zone": "eu-1" });
    assert_accepted(&v, &member);
    member["metadata"]["labels"] = json!({ "bad key": "x", "role": "not ok" });
    assert_rejected(
        &v,
        &member,
        "metadata.labels[bad key]",
        "label key must be a qualified name: an optional DNS-subdomain prefix of at most 253 characters and '/', then at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
        Stage::Semantic,
    );
    assert_rejected(
        &v,
        &member,
        "metadata.labels[role]",
        "Invalid value: \"not ok\": a label value is at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
        Stage::Semantic,
    );
}

#[test]
fn whole_numbers_written_as_floats_are_integers() {
    // go-openapi accepts them; the typed form and CEL then see integers.
    let v = Validator::new();
    assert_accepted(
        &v,
        &with_port(json!({ "protocol": "TCP", "port": 5432.0, "endPort": 5433.0 })),
    );
    assert_rejected(
        &v,
        &with_port(json!({ "protocol": "TCP", "port": 5432.5 })),
        "spec.rules[0].ports[0].port",
        "Invalid value: 5432.5: must be of type integer",
        Stage::Schema,
    );
}

#[test]
fn map_lists_compare_whole_keys() {
    let v = Validator::new();
    let long = "n".repeat(90);
    let peer =
        |name: String| json!({ "name": name, "publicKey": KEY, "allowedIPs": ["100.96.0.2/32"] });
    let node_policy = |peers: Value| {
        object(
            Kind::NodePolicy,
            json!({ "revision": "r", "interface": { "meshIP": "100.96.0.1", "listenPort": 51820 }, "peers": peers }),
        )
    };
    assert_accepted(
        &v,
        &node_policy(json!([peer(format!("{long}a")), peer(format!("{long}b"))])),
    );
    assert_rejected(
        &v,
        &node_policy(json!([peer(long.clone()), peer(long.clone())])),
        "spec.peers[1]",
        &format!("Duplicate value: map[name:\"{long}\"]"),
        Stage::Schema,
    );
}

#[test]
fn path_prefixes_refuse_ascii_whitespace_only_as_re2_does() {
    let v = Validator::new();
    assert_accepted(
        &v,
        &step(json!({ "access": { "allow": { "pathPrefixes": ["/caf\u{a0}e"] } } })),
    );
    assert_rejected(
        &v,
        &step(json!({ "access": { "allow": { "pathPrefixes": ["/a b"] } } })),
        "spec.policies[0].access.allow.pathPrefixes[0]",
        &format!(
            "Invalid value: \"/a b\": should match '{}'",
            meshguard_crds::patterns::PATH_PREFIX
        ),
        Stage::Schema,
    );
}

/// Label sizes, each bound at Kubernetes' own (a key's name 63 characters,
/// its DNS-subdomain prefix 253, a value 63), held where labels are written
/// (MeshNode `metadata.labels`, which the offline CLI checks the way the API
/// server would) and where selectors name them (`matchLabels` keys and
/// values, `matchExpressions` keys and values): at the bound accepted, one
/// past it refused naming the field.
#[test]
fn label_sizes_are_bounded_where_labels_are_written_and_selected() {
    let v = Validator::new();
    let name = |n: usize| "n".repeat(n);
    // A DNS subdomain of exactly `n` characters: labels of 62 joined by dots.
    let prefix = |n: usize| -> String {
        (0..n)
            .map(|i| if i % 63 == 62 && i != n - 1 { '.' } else { 'p' })
            .collect()
    };
    let keys = [
        (name(63), true),
        (name(64), false),
        (format!("{}/{}", prefix(253), name(63)), true),
        (format!("{}/k", prefix(254)), false),
        (format!("{}/{}", prefix(253), name(64)), false),
    ];
    let values = [(name(63), true), (name(64), false), (String::new(), true)];
    let mut checked = 0;
    let mut check = |object: Value, field: &str, fits: bool| {
        match validate(&v, &object) {
            Ok(()) => assert!(fits, "{field} accepted past its bound"),
            Err(errors) => {
                assert!(!fits, "{field} refused at the bound: {errors:#?}");
                assert!(
                    errors.iter().any(|e| e.field == field),
                    "refused without naming {field}: {errors:#?}"
                );
            }
        }
        checked += 1;
    };
    for (key, fits) in &keys {
        let mut member = node(json!({}));
        member["metadata"]["labels"] = json!({ key.as_str(): "x" });
        check(member, &format!("metadata.labels[{key}]"), *fits);
        check(
            from_selector(json!({ "nodeSelector": { "matchLabels": { key.as_str(): "x" } } })),
            &format!("spec.rules[0].from[0].nodeSelector.matchLabels[{key}]"),
            *fits,
        );
        check(
            from_selector(
                json!({ "nodeSelector": { "matchExpressions": [{ "key": key, "operator": "Exists" }] } }),
            ),
            "spec.rules[0].from[0].nodeSelector.matchExpressions[0].key",
            *fits,
        );
    }
    for (value, fits) in &values {
        let mut member = node(json!({}));
        member["metadata"]["labels"] = json!({ "role": value });
        check(member, "metadata.labels[role]", *fits);
        check(
            from_selector(json!({ "nodeSelector": { "matchLabels": { "role": value } } })),
            "spec.rules[0].from[0].nodeSelector.matchLabels[role]",
            *fits,
        );
        if !value.is_empty() {
            check(
                from_selector(
                    json!({ "nodeSelector": { "matchExpressions": [{ "key": "role", "operator": "In", "values": [value] }] } }),
                ),
                "spec.rules[0].from[0].nodeSelector.matchExpressions[0].values[0]",
                *fits,
            );
        }
    }
    assert_eq!(checked, 23);
}
