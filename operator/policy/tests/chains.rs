//! PolicyChain compilation: references resolved in the chain's namespace,
//! API keys as SHA-256 digests only, JWKS documents checked, each route given
//! to one chain (the oldest, then the first by name), chains given to the
//! nodes their selector picks, and a missing reference an error that names
//! the object and field.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

mod support;

use std::collections::BTreeMap;

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use meshguard_crds::{
    LabelSelector, PolicyChain, PolicyChainSpec,
    policy_chain::{
        ApiKeyStep, ChainStep, JwksSource, JwtStep, KeyRef, LocalObjectRef, RateLimitStep,
        RatePeriod,
    },
};
use meshguard_policy::{
    compile::{Compiled, Inputs, compile},
    diagnostics::Severity,
    secrets::{ConfigMapData, SecretDigests},
};
use sha2::{Digest, Sha256};
use support::member;

const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;

fn api_key(secret: &str) -> ChainStep {
    ChainStep {
        api_key: Some(ApiKeyStep {
            header: "x-api-key".into(),
            query_parameter: None,
            secret_ref: LocalObjectRef {
                name: secret.into(),
            },
        }),
        ..Default::default()
    }
}

fn jwt(jwks: JwksSource) -> ChainStep {
    ChainStep {
        jwt: Some(JwtStep {
            issuer: "https://issuer.example".into(),
            audiences: None,
            jwks,
            algorithms: vec![meshguard_crds::policy_chain::JwtAlgorithm::ES256],
            clock_skew_seconds: 60,
            claims_to_headers: None,
        }),
        ..Default::default()
    }
}

fn rate() -> ChainStep {
    ChainStep {
        rate_limit: Some(RateLimitStep {
            requests: 10,
            per: RatePeriod::Second,
            burst: None,
            key: None,
            rate_limit_headers: false,
        }),
        ..Default::default()
    }
}

fn chain(
    namespace: &str,
    name: &str,
    routes: &[&str],
    steps: Vec<ChainStep>,
    created: Option<&str>,
) -> PolicyChain {
    let mut c = PolicyChain::new(
        name,
        PolicyChainSpec {
            routes: routes.iter().map(|r| r.to_string()).collect(),
            node_selector: None,
            mode: Default::default(),
            failure_mode: Default::default(),
            policies: steps,
        },
    );
    c.metadata.namespace = Some(namespace.into());
    c.metadata.creation_timestamp = created.map(|t| Time(t.parse::<Timestamp>().unwrap()));
    c
}

fn secret(namespace: &str, name: &str, entries: &[(&str, &str)]) -> SecretDigests {
    let data: BTreeMap<String, Vec<u8>> = entries
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
    SecretDigests::reduce(namespace, name, &data)
}

fn run(
    chains: &[PolicyChain],
    secrets: &[SecretDigests],
    config_maps: &[ConfigMapData],
) -> Compiled {
    let members = vec![
        member("web-1", &[("role", "web")], "100.64.0.1"),
        member("db-1", &[("role", "db")], "100.64.0.2"),
    ];
    compile(&Inputs {
        members: &members,
        policies: &[],
        chains,
        secrets,
        config_maps,
        listen_port: 51820,
    })
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn api_keys_become_digests_keyed_by_client() {
    let c = run(
        &[chain(
            "shop",
            "orders",
            &["orders-v1"],
            vec![api_key("clients"), rate()],
            None,
        )],
        &[secret(
            "shop",
            "clients",
            &[("mobile", "k-mobile-123"), ("partner", "k-partner-456")],
        )],
        &[],
    );
    assert!(c.diagnostics().is_empty(), "{:?}", c.diagnostics());
    let spec = c.node_policy("web-1").unwrap();
    let keys = &spec.chains[0].steps[0].api_key.as_ref().unwrap().keys;
    let got: Vec<(&str, &str)> = keys
        .iter()
        .map(|k| (k.client_id.as_str(), k.sha256.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("mobile", sha256_hex("k-mobile-123").as_str()),
            ("partner", sha256_hex("k-partner-456").as_str())
        ]
    );
    let serialized = serde_json::to_string(&spec).unwrap();
    assert!(
        !serialized.contains("k-mobile-123") && !serialized.contains("k-partner-456"),
        "raw keys never reach a NodePolicy"
    );
    assert_eq!(spec.chains[0].name, "shop/orders");
    assert!(spec.chains[0].steps[1].rate_limit.is_some());
}

#[test]
fn references_resolve_in_the_chains_namespace_only() {
    let chains = [chain(
        "shop",
        "orders",
        &["orders-v1"],
        vec![api_key("clients")],
        None,
    )];
    let c = run(&chains, &[secret("other", "clients", &[("a", "b")])], &[]);
    let errors: Vec<String> = c
        .diagnostics()
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        errors,
        vec![
            "error: PolicyChain/shop/orders: spec.policies[0].apiKey.secretRef: Secret shop/clients not found"
        ]
    );
    assert!(
        c.node_policy("web-1").unwrap().chains.is_empty(),
        "a chain with a missing reference is left out"
    );
}

#[test]
fn jwks_come_from_configmaps_and_secrets_public_keys_only() {
    let from_map = chain(
        "shop",
        "a",
        &["r1"],
        vec![jwt(JwksSource {
            config_map_ref: Some(KeyRef {
                name: "jwks".into(),
                key: "jwks.json".into(),
            }),
            ..Default::default()
        })],
        None,
    );
    let from_secret = chain(
        "shop",
        "b",
        &["r2"],
        vec![jwt(JwksSource {
            secret_ref: Some(KeyRef {
                name: "jwks".into(),
                key: "keys".into(),
            }),
            ..Default::default()
        })],
        None,
    );
    let map = ConfigMapData {
        namespace: "shop".into(),
        name: "jwks".into(),
        data: BTreeMap::from([("jwks.json".to_owned(), JWKS.to_owned())]),
    };
    let c = run(
        &[from_map.clone(), from_secret.clone()],
        &[secret("shop", "jwks", &[("keys", JWKS)])],
        std::slice::from_ref(&map),
    );
    assert!(c.diagnostics().is_empty(), "{:?}", c.diagnostics());
    let spec = c.node_policy("db-1").unwrap();
    assert_eq!(
        spec.chains
            .iter()
            .map(|ch| ch.steps[0].jwt.as_ref().unwrap().jwks.as_deref())
            .collect::<Vec<_>>(),
        vec![Some(JWKS), Some(JWKS)]
    );

    // A Secret holding private key material is refused, naming where.
    let private = r#"{"keys":[{"kty":"EC","crv":"P-256","x":"a","y":"b","d":"c2VjcmV0"}]}"#;
    let c = run(
        &[from_secret],
        &[secret("shop", "jwks", &[("keys", private)])],
        &[],
    );
    let errors: Vec<String> = c.diagnostics().iter().map(ToString::to_string).collect();
    assert_eq!(
        errors,
        vec![
            "error: PolicyChain/shop/b: spec.policies[0].jwt.jwks.secretRef: Secret shop/jwks key \"keys\": invalid JWKS: key 0: holds private key material (\"d\"); publish public keys only"
        ]
    );
    // A missing key in a present ConfigMap.
    let mut other = map.clone();
    other.data.clear();
    let c = run(&[from_map], &[], &[other]);
    assert!(c.diagnostics().iter().any(|d| d.to_string() == "error: PolicyChain/shop/a: spec.policies[0].jwt.jwks.configMapRef: ConfigMap shop/jwks has no key \"jwks.json\""));
}

#[test]
fn a_contested_route_goes_to_the_oldest_then_the_first_by_name() {
    let secrets = [secret("shop", "k", &[("c", "v")])];
    let older = chain(
        "shop",
        "zeta",
        &["shared", "own-z"],
        vec![api_key("k")],
        Some("2026-01-01T00:00:00Z"),
    );
    let newer = chain(
        "shop",
        "alpha",
        &["shared", "own-a"],
        vec![api_key("k")],
        Some("2026-06-01T00:00:00Z"),
    );
    let c = run(&[newer.clone(), older.clone()], &secrets, &[]);
    let spec = c.node_policy("web-1").unwrap();
    let routes: Vec<(&str, Vec<&str>)> = spec
        .chains
        .iter()
        .map(|ch| {
            (
                ch.name.as_str(),
                ch.routes.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        routes,
        vec![
            ("shop/alpha", vec!["own-a"]),
            ("shop/zeta", vec!["shared", "own-z"])
        ]
    );
    let warnings: Vec<String> = c.diagnostics().iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        vec![
            "warning: PolicyChain/shop/alpha: spec.routes[0]: route \"shared\" is served by shop/zeta, which claimed it first"
        ]
    );

    // Same age (or none, as in files): the first by namespace/name wins.
    let (a, z) = (
        chain("shop", "alpha", &["shared"], vec![api_key("k")], None),
        chain("shop", "zeta", &["shared"], vec![api_key("k")], None),
    );
    let c = run(&[z, a], &secrets, &[]);
    let served: Vec<String> = c
        .node_policy("web-1")
        .unwrap()
        .chains
        .into_iter()
        .map(|ch| ch.name)
        .collect();
    assert_eq!(
        served,
        vec!["shop/alpha"],
        "zeta serves no route and is left out"
    );
    assert!(c.diagnostics().iter().any(|d| d.to_string() == "warning: PolicyChain/shop/zeta: serves no route: every route it names belongs to another chain"));
}

#[test]
fn chains_go_to_the_nodes_their_selector_picks() {
    let mut web_only = chain("shop", "orders", &["orders-v1"], vec![rate()], None);
    web_only.spec.node_selector = Some(LabelSelector {
        match_labels: Some(BTreeMap::from([("role".to_owned(), "web".to_owned())])),
        match_expressions: None,
    });
    let everywhere = chain("shop", "health", &["health"], vec![rate()], None);
    let c = run(&[web_only, everywhere], &[], &[]);
    let names = |node: &str| {
        c.node_policy(node)
            .unwrap()
            .chains
            .into_iter()
            .map(|ch| ch.name)
            .collect::<Vec<_>>()
    };
    assert_eq!(names("web-1"), vec!["shop/health", "shop/orders"]);
    assert_eq!(names("db-1"), vec!["shop/health"]);
    // A chain change changes the revision of the nodes that run it, and only theirs.
    let before = (
        c.revision("web-1").unwrap().to_owned(),
        c.revision("db-1").unwrap().to_owned(),
    );
    let mut changed = chain(
        "shop",
        "orders",
        &["orders-v1", "orders-v2"],
        vec![rate()],
        None,
    );
    changed.spec.node_selector = Some(LabelSelector {
        match_labels: Some(BTreeMap::from([("role".to_owned(), "web".to_owned())])),
        match_expressions: None,
    });
    let c = run(
        &[
            changed,
            chain("shop", "health", &["health"], vec![rate()], None),
        ],
        &[],
        &[],
    );
    assert_ne!(c.revision("web-1").unwrap(), before.0);
    assert_eq!(c.revision("db-1").unwrap(), before.1);
}
