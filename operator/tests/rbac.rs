//! `deploy/rbac/operator.yaml`: valid for Kubernetes, no wildcards, and
//! exactly the permissions the operator's requests need.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
};

use meshguard_operator::controller::rbac::PERMISSIONS;
use serde_json::Value;

fn manifest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/rbac/operator.yaml")
}

fn documents() -> Vec<Value> {
    serde_saphyr::from_multiple(&std::fs::read_to_string(manifest()).unwrap()).unwrap()
}

type Grants = BTreeMap<(String, String), BTreeSet<String>>;

/// Every (group, resource) -> verbs the Roles and ClusterRoles grant.
fn granted(docs: &[Value]) -> Grants {
    let mut out = Grants::new();
    for doc in docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role")
    {
        for rule in doc["rules"].as_array().unwrap() {
            let strings = |field: &str| -> Vec<String> {
                rule[field]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_owned())
                    .collect()
            };
            for group in strings("apiGroups") {
                for resource in strings("resources") {
                    out.entry((group.clone(), resource))
                        .or_default()
                        .extend(strings("verbs"));
                }
            }
        }
    }
    out
}

#[test]
fn the_roles_grant_exactly_what_the_operator_requests() {
    let docs = documents();
    let granted = granted(&docs);
    for ((group, resource), verbs) in &granted {
        assert!(
            !group.contains('*')
                && !resource.contains('*')
                && !verbs.iter().any(|v| v.contains('*')),
            "wildcard in {group:?} {resource:?} {verbs:?}"
        );
    }
    let needed: Grants = PERMISSIONS
        .iter()
        .map(|(group, resource, verbs)| {
            (
                (group.to_string(), resource.to_string()),
                verbs.iter().map(|v| v.to_string()).collect(),
            )
        })
        .collect();
    assert_eq!(granted, needed);
    // The lease is the only namespaced grant, in the operator's namespace.
    let role = docs.iter().find(|d| d["kind"] == "Role").unwrap();
    assert_eq!(role["rules"][0]["resources"][0], "leases");
    assert_eq!(role["metadata"]["namespace"], "meshguard-system");
    let bound: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRoleBinding" || d["kind"] == "RoleBinding")
        .map(|d| &d["subjects"][0]["name"])
        .collect();
    assert_eq!(bound.len(), 2);
    assert!(bound.iter().all(|n| *n == "meshguard-operator"));
}

#[test]
fn kubernetes_validate_accepts_the_rbac_manifest() {
    let venv = std::env::var_os("MESHGUARD_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv"));
    let tool = venv.join("bin/kubernetes-validate");
    assert!(
        tool.exists(),
        "{} is missing: run `make deps`",
        tool.display()
    );
    let output = Command::new(tool)
        .args(["-k", "1.32.0", "--strict"])
        .arg(manifest())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.contains(" passed for resource "))
            .count(),
        5,
        "{stdout}"
    );
}
