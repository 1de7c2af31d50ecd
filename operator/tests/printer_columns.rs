//! `kubectl get meshguard` at a glance: the CRDs' printer columns, rendered
//! by an independent JSONPath library (jsonpath-ng, scripts/printer_columns.py)
//! against the objects the operator's own reconcile writes (MeshPolicy,
//! PolicyChain and MeshNode statuses) and a NodePolicy as its agent reports
//! it: no column is empty where the status is set.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

mod support;

use std::collections::BTreeMap;

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};
use meshguard_crds::{NodePolicy, NodePolicyStatus};
use meshguard_testkit::tokens::repo;
use serde_json::{Value, json};
use support::{cluster::*, scripts};

fn now() -> Time {
    Time(Timestamp::now())
}

/// Each object's columns as `kubectl get` shows them, by column name.
fn columns(objects: &[Value]) -> Vec<BTreeMap<String, Option<String>>> {
    let crds: Vec<Value> = std::fs::read_dir(repo().join("crds"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| serde_saphyr::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
        .collect();
    scripts::json_lines(
        "printer_columns.py",
        &[],
        &json!({ "crds": crds, "objects": objects }),
    )
    .into_iter()
    .map(|row| serde_json::from_value(row["columns"].clone()).unwrap())
    .collect()
}

/// As the API server returns it: with a creation time.
fn served(mut object: Value) -> Value {
    if object["metadata"]["creationTimestamp"].is_null() {
        object["metadata"]["creationTimestamp"] = json!("2026-12-04T08:00:00Z");
    }
    object
}

#[test]
fn every_column_shows_what_the_status_says() {
    let mut index = with_chain();
    let mut reconciler = reconciler();
    let plan = reconciler.plan(&index, &now());
    written_back(&mut index, &plan, true);
    agents_serve_chains(&mut index);
    let enforced = reconciler.plan(&index, &now());
    written_back(&mut index, &enforced, true);

    let policy = &index.policies["web-to-db"];
    let chain = &index.chains[&("shop".to_owned(), "orders".to_owned())];
    let node = &index.mesh_nodes["web-1"];
    // The NodePolicy the operator wrote, with the status its agent writes.
    let mut node_policy: NodePolicy = plan
        .node_policies
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some("web-1"))
        .unwrap()
        .clone();
    node_policy.status = Some(NodePolicyStatus {
        observed_revision: Some(node_policy.spec.revision.clone()),
        backend: Some("ebpf".to_owned()),
        peers: Some(i32::try_from(node_policy.spec.peers.len()).unwrap()),
        rules: Some(
            i32::try_from(node_policy.spec.ingress.len() + node_policy.spec.egress.len()).unwrap(),
        ),
        last_applied: Some(now()),
        conditions: vec![Condition {
            type_: "Applied".to_owned(),
            status: "True".to_owned(),
            reason: "Applied".to_owned(),
            message: "revision applied".to_owned(),
            last_transition_time: now(),
            observed_generation: None,
        }],
    });
    let objects: Vec<Value> = [
        serde_json::to_value(policy).unwrap(),
        serde_json::to_value(chain).unwrap(),
        serde_json::to_value(node).unwrap(),
        serde_json::to_value(&node_policy).unwrap(),
    ]
    .into_iter()
    .map(served)
    .collect();
    let rows = columns(&objects);
    let value = |row: usize, column: &str| rows[row].get(column).cloned().flatten();

    // Every column of every kind shows something (the public key and the
    // age included), and what it shows is the status.
    for (row, object) in rows.iter().zip(&objects) {
        let empty: Vec<&String> = row
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k)
            .collect();
        assert!(
            empty.is_empty(),
            "{} {}: empty {empty:?} in {row:?}",
            object["kind"],
            object["metadata"]["name"]
        );
    }
    // MeshPolicy: priority, mode, accepted, tests, enforced n of m.
    assert_eq!(value(0, "Accepted").as_deref(), Some("True"));
    assert_eq!(value(0, "Tests").as_deref(), Some("True"));
    assert_eq!(
        (
            value(0, "Enforced").as_deref(),
            value(0, "Targeted").as_deref()
        ),
        (Some("3"), Some("3"))
    );
    // PolicyChain: routes, accepted, ready.
    assert_eq!(value(1, "Routes").as_deref(), Some(r#"["orders-v1"]"#));
    assert_eq!(value(1, "Accepted").as_deref(), Some("True"));
    assert_eq!(value(1, "Ready").as_deref(), Some("True"));
    // MeshNode: mesh IP, ready, endpoint.
    assert_eq!(value(2, "Mesh IP").as_deref(), Some("100.96.0.1"));
    assert_eq!(value(2, "Ready").as_deref(), Some("True"));
    // NodePolicy: revision, applied, backend, peers, rules.
    assert_eq!(value(3, "Revision"), value(3, "Applied"));
    assert_eq!(value(3, "Backend").as_deref(), Some("ebpf"));
    assert_eq!(value(3, "Ready").as_deref(), Some("True"));
    assert!(value(3, "Peers").is_some() && value(3, "Rules").is_some());
}
