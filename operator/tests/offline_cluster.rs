//! The offline CLI and the operator give one answer for one cluster: the
//! same MeshNodes, Kubernetes Nodes (labels as `kubectl get nodes -o yaml`
//! exports them) and MeshPolicies, through `meshguard compile` (the CLI's
//! entry point) and through the operator's index and reconciler, make identical
//! NodePolicies. The policy selects by a label only the Kubernetes Node
//! carries, and one the MeshNode overrides.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

mod support;

use std::{collections::BTreeMap, ffi::OsString, path::Path};

use clap::Parser;

use k8s_openapi::api::core::v1::Node;
use meshguard_cli::Cli;
use meshguard_crds::{MeshNode, MeshPolicy, NodePolicy};
use meshguard_operator::index::{Index, Update};
use serde_json::Value;
use support::cluster::{key, settings};

fn inputs() -> String {
    let mesh_node = |name: &str, ip: &str, letter: char, labels: &str| {
        format!(
            "---\napiVersion: meshguard.io/v1alpha1\nkind: MeshNode\nmetadata: {{ name: {name}, labels: {{ {labels} }}, uid: uid-{name}, creationTimestamp: \"2026-11-23T10:00:00Z\" }}\nspec: {{ publicKey: \"{}\", endpoint: \"10.0.0.1:51820\", meshIP: \"{ip}\" }}\n",
            key(letter)
        )
    };
    let mut text = String::new();
    text.push_str(&mesh_node("db-1", "100.96.0.3", 'D', "tier: \"db\""));
    text.push_str(&mesh_node("web-1", "100.96.0.1", 'W', ""));
    text.push_str(&mesh_node("web-2", "100.96.0.2", 'X', "zone: \"b\""));
    // As `kubectl get nodes -o yaml` prints them: a List of v1 Nodes.
    text.push_str(
        r#"---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Node
  metadata: { name: web-1, labels: { role: "web", zone: "a", kubernetes.io/os: "linux" } }
  status: { nodeInfo: { kubeletVersion: v1.32.0, architecture: amd64, bootID: x, containerRuntimeVersion: c, kernelVersion: k, kubeProxyVersion: p, machineID: m, operatingSystem: linux, osImage: o, systemUUID: s } }
- apiVersion: v1
  kind: Node
  metadata: { name: web-2, labels: { role: "web", zone: "a" } }
- apiVersion: v1
  kind: Node
  metadata: { name: db-1, labels: { role: "db" } }
---
apiVersion: meshguard.io/v1alpha1
kind: MeshPolicy
metadata: { name: web-to-db, uid: uid-p, generation: 1 }
spec:
  rules:
  - { name: zone-a, action: Allow, from: [{ nodeSelector: { matchLabels: { role: web, zone: a } } }], to: [{ nodeSelector: { matchLabels: { tier: db } } }], ports: [{ protocol: TCP, port: 5432 }] }
"#,
    );
    text
}

#[test]
fn cli_and_operator_give_identical_node_policies_with_node_labels() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("offline-cluster");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("in")).unwrap();
    std::fs::write(dir.join("in/cluster.yaml"), inputs()).unwrap();
    // `meshguard compile`, through the CLI's own entry point (its binary's
    // `main` only parses the arguments and calls it).
    let args: [OsString; 8] = [
        "meshguard".into(),
        "compile".into(),
        "-f".into(),
        dir.join("in").into_os_string(),
        "--out".into(),
        dir.join("out").into_os_string(),
        "--mesh-cidr".into(),
        "100.96.0.0/24".into(),
    ];
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = meshguard_cli::run(Cli::parse_from(args), &mut out, &mut err).unwrap();
    assert_eq!(
        code,
        meshguard_cli::exit::OK,
        "{}",
        String::from_utf8_lossy(&err)
    );
    let offline: BTreeMap<String, NodePolicy> = ["db-1", "web-1", "web-2"]
        .iter()
        .map(|n| {
            let text = std::fs::read_to_string(dir.join(format!("out/{n}.yaml"))).unwrap();
            (n.to_string(), serde_saphyr::from_str(&text).unwrap())
        })
        .collect();

    // The same documents, as the operator's watches deliver them.
    let mut index = Index::default();
    let docs: Vec<Value> = serde_saphyr::from_multiple(&inputs()).unwrap();
    for doc in docs.iter().flat_map(|d| match d["kind"].as_str() {
        Some("List") => d["items"].as_array().unwrap().clone(),
        _ => vec![d.clone()],
    }) {
        match doc["kind"].as_str().unwrap() {
            "MeshNode" => index.apply(Update::MeshNode(Box::new(
                serde_json::from_value::<MeshNode>(doc).unwrap(),
            ))),
            "Node" => {
                let node: Node = serde_json::from_value(doc).unwrap();
                index.apply(Update::NodeLabels(
                    node.metadata.name.unwrap(),
                    node.metadata.labels.unwrap_or_default(),
                ))
            }
            "MeshPolicy" => index.apply(Update::Policy(Box::new(
                serde_json::from_value::<MeshPolicy>(doc).unwrap(),
            ))),
            other => panic!("{other}"),
        };
    }
    let plan = meshguard_operator::reconcile::Reconciler::new(settings()).plan(
        &index,
        &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()),
    );
    let cluster: BTreeMap<String, NodePolicy> = plan
        .node_policies
        .into_iter()
        .map(|p| (p.metadata.name.clone().unwrap(), p))
        .collect();
    assert_eq!(cluster.len(), 3);
    for (name, policy) in &offline {
        assert_eq!(&policy.spec, &cluster[name].spec, "NodePolicy/{name}");
    }
    // And the answer is the one the labels give: web-1 (Node zone a) reaches
    // db-1; web-2's MeshNode says zone b, which wins over its Node's a.
    let peers = |n: &str| -> Vec<String> {
        offline[n]
            .spec
            .peers
            .iter()
            .map(|p| p.name.clone())
            .collect()
    };
    assert_eq!(peers("db-1"), ["web-1"]);
    assert!(peers("web-2").is_empty());
}
