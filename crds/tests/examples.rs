//! `examples/`: every object is accepted by the schemas, their CEL rules and
//! meshguard's own checks; the built-in objects pass `kubernetes-validate
//! --strict`; the set shows what the examples promise, and hangs together
//! (every referenced node, Secret and ConfigMap exists).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    path::{Path, PathBuf},
};

use meshguard_crds::{
    API_VERSION, Action, Kind, MeshNode, MeshPolicy, PolicyChain, PolicyMode,
    validation::{Validator, jwks},
};
use serde_json::Value;
use support::{kubernetes_validate, repo_root};

const BUILT_IN: [&str; 3] = ["Namespace", "Secret", "ConfigMap"];

struct Doc {
    file: PathBuf,
    value: Value,
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read examples/") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

fn load() -> Vec<Doc> {
    let mut files = Vec::new();
    yaml_files(&repo_root().join("examples"), &mut files);
    files.sort();
    assert!(!files.is_empty(), "no examples");
    files
        .into_iter()
        .flat_map(|file| {
            let text = std::fs::read_to_string(&file).expect("read");
            let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            docs.into_iter().map(move |value| Doc {
                file: file.clone(),
                value,
            })
        })
        .collect()
}

fn typed<T: serde::de::DeserializeOwned>(docs: &[Doc], kind: Kind) -> Vec<T> {
    docs.iter()
        .filter(|d| d.value["kind"] == kind.name())
        .map(|d| {
            serde_json::from_value(d.value.clone())
                .unwrap_or_else(|e| panic!("{}: {e}", d.file.display()))
        })
        .collect()
}

#[test]
fn every_object_passes_validation() {
    let validator = Validator::new();
    let mut seen = BTreeSet::new();
    for doc in load() {
        let kind = doc.value["kind"].as_str().unwrap_or_default();
        let id = (
            kind.to_owned(),
            doc.value["metadata"]["namespace"].clone().to_string(),
            doc.value["metadata"]["name"].to_string(),
        );
        assert!(
            seen.insert(id.clone()),
            "{}: duplicate object {id:?}",
            doc.file.display()
        );
        if doc.value["apiVersion"] == API_VERSION {
            let kind = Kind::from_name(kind)
                .unwrap_or_else(|| panic!("{}: unknown kind {kind}", doc.file.display()));
            if let Err(errors) = validator.validate(kind, &doc.value) {
                panic!(
                    "{}: {kind}/{}: {errors:#?}",
                    doc.file.display(),
                    doc.value["metadata"]["name"]
                );
            }
        } else {
            assert!(
                BUILT_IN.contains(&kind),
                "{}: unexpected kind {kind}",
                doc.file.display()
            );
        }
    }
}

#[test]
fn the_set_shows_what_the_examples_promise() {
    let docs = load();
    let policies: Vec<MeshPolicy> = typed(&docs, Kind::MeshPolicy);
    let nodes: Vec<MeshNode> = typed(&docs, Kind::MeshNode);
    let chains: Vec<PolicyChain> = typed(&docs, Kind::PolicyChain);

    assert!(nodes.len() >= 4, "the demo needs at least four members");
    assert!(
        policies.iter().any(|p| p.spec.mode == PolicyMode::Audit),
        "an audit-mode policy"
    );
    assert!(
        policies
            .iter()
            .flat_map(|p| &p.spec.rules)
            .any(|r| r.action == Action::Log),
        "a Log rule"
    );
    assert!(
        policies.iter().flat_map(|p| &p.spec.tests).count() >= 10,
        "in-policy tests"
    );

    let quarantine = policies
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some("quarantine"))
        .expect("the quarantine policy");
    assert_eq!(quarantine.spec.priority, 0);
    let label = |s: &meshguard_crds::PeerSelector| {
        s.node_selector
            .as_ref()
            .and_then(|l| l.match_labels.as_ref())
            .and_then(|m| m.get("meshguard.io/quarantine"))
            .map(String::as_str)
            == Some("true")
    };
    assert!(
        quarantine
            .spec
            .rules
            .iter()
            .all(|r| r.action == Action::Deny)
    );
    assert!(
        quarantine
            .spec
            .rules
            .iter()
            .any(|r| r.from.iter().any(label)),
        "denies traffic from quarantined members"
    );
    assert!(
        quarantine.spec.rules.iter().any(|r| r.to.iter().any(label)),
        "denies traffic to quarantined members"
    );

    // One chain with an API key, a JWT and a rate limit.
    assert!(
        chains.iter().any(|c| {
            let steps = &c.spec.policies;
            steps.iter().any(|s| s.api_key.is_some())
                && steps.iter().any(|s| s.jwt.is_some())
                && steps.iter().any(|s| s.rate_limit.is_some())
        }),
        "a chain with API key, JWT and rate limit"
    );

    // A three-tier application: web -> app -> db.
    let allows = |from: &str, to: &str| {
        policies.iter().flat_map(|p| &p.spec.rules).any(|r| {
            let role = |side: &[meshguard_crds::PeerSelector], value: &str| {
                side.iter().any(|s| {
                    s.node_selector
                        .as_ref()
                        .and_then(|l| l.match_labels.as_ref())
                        .and_then(|m| m.get("role"))
                        .map(String::as_str)
                        == Some(value)
                })
            };
            r.action == Action::Allow && role(&r.from, from) && role(&r.to, to)
        })
    };
    assert!(
        allows("web", "app") && allows("app", "db"),
        "a three-tier application"
    );
}

#[test]
fn references_resolve() {
    let docs = load();
    let nodes: BTreeSet<String> = typed::<MeshNode>(&docs, Kind::MeshNode)
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    for policy in typed::<MeshPolicy>(&docs, Kind::MeshPolicy) {
        let name = policy.metadata.name.unwrap_or_default();
        for rule in &policy.spec.rules {
            for node in rule
                .from
                .iter()
                .chain(&rule.to)
                .flat_map(|s| s.nodes.iter().flatten())
            {
                assert!(nodes.contains(node), "{name}: unknown node {node}");
            }
        }
        for test in &policy.spec.tests {
            for end in [&test.from, &test.to] {
                assert!(
                    nodes.contains(end) || end.parse::<IpAddr>().is_ok(),
                    "{name}: test names unknown member {end}"
                );
            }
        }
    }

    let objects: BTreeMap<(String, String, String), &Value> = docs
        .iter()
        .filter(|d| BUILT_IN.contains(&d.value["kind"].as_str().unwrap_or_default()))
        .map(|d| {
            let key = |f: &str| {
                d.value["metadata"][f]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            };
            (
                (
                    d.value["kind"].as_str().unwrap_or_default().to_owned(),
                    key("namespace"),
                    key("name"),
                ),
                &d.value,
            )
        })
        .collect();
    for chain in typed::<PolicyChain>(&docs, Kind::PolicyChain) {
        let namespace = chain.metadata.namespace.clone().unwrap_or_default();
        assert!(
            objects.contains_key(&("Namespace".into(), String::new(), namespace.clone())),
            "namespace {namespace}"
        );
        for step in &chain.spec.policies {
            if let Some(api_key) = &step.api_key {
                let secret = objects
                    .get(&(
                        "Secret".into(),
                        namespace.clone(),
                        api_key.secret_ref.name.clone(),
                    ))
                    .expect("the API-key Secret");
                let entries = secret["stringData"].as_object().map_or(0, |m| m.len())
                    + secret["data"].as_object().map_or(0, |m| m.len());
                assert!(entries > 0, "the API-key Secret has clients");
            }
            if let Some(cm) = step
                .jwt
                .as_ref()
                .and_then(|j| j.jwks.config_map_ref.as_ref())
            {
                let map = objects
                    .get(&("ConfigMap".into(), namespace.clone(), cm.name.clone()))
                    .expect("the JWKS ConfigMap");
                let document = map["data"][&cm.key].as_str().expect("the JWKS key");
                assert_eq!(jwks::check(document), Ok(()));
            }
        }
    }
}

#[test]
fn built_in_objects_pass_kubernetes_validate() {
    let docs = load();
    let built_in = docs
        .iter()
        .filter(|d| d.value["apiVersion"] != API_VERSION)
        .count();
    let mut files: Vec<PathBuf> = docs.iter().map(|d| d.file.clone()).collect();
    files.dedup();
    let stdout = kubernetes_validate(&files);
    assert_eq!(
        stdout.matches(" passed for resource ").count(),
        built_in,
        "{stdout}"
    );
}
