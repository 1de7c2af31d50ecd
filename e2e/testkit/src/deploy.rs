//! `deploy/meshguard.yaml` — the chart rendered with its default values —
//! read the way the operator's and the agent's tests check it: the objects
//! of one component, the permissions their roles grant, the environment
//! their containers get. (That the file equals the chart's rendering is
//! checked in `crds/tests/chart.rs`.)

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

use anyhow::Context;
use serde_json::Value;

/// `(API group, resource) -> verbs`.
pub type Grants = BTreeMap<(String, String), BTreeSet<String>>;

/// Every object in `deploy/meshguard.yaml`.
pub fn documents() -> anyhow::Result<Vec<Value>> {
    documents_of("meshguard.yaml")
}

/// Every object of the chart's uninstall hook (`deploy/uninstall.yaml`).
pub fn uninstall_documents() -> anyhow::Result<Vec<Value>> {
    documents_of("uninstall.yaml")
}

fn documents_of(file: &str) -> anyhow::Result<Vec<Value>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(file);
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    serde_saphyr::from_multiple(&text).with_context(|| format!("{}: not YAML", path.display()))
}

/// The containers (init containers included) of a workload's pod template.
pub fn containers(workload: &Value) -> impl Iterator<Item = &Value> {
    let spec = &workload["spec"]["template"]["spec"];
    ["containers", "initContainers"]
        .into_iter()
        .flat_map(move |f| spec[f].as_array().into_iter().flatten())
}

/// The objects labelled `app.kubernetes.io/component: <component>`.
pub fn component(component: &str) -> anyhow::Result<Vec<Value>> {
    Ok(documents()?
        .into_iter()
        .filter(|d| d["metadata"]["labels"]["app.kubernetes.io/component"] == component)
        .collect())
}

/// What the Roles and ClusterRoles among `docs` grant.
pub fn grants(docs: &[Value]) -> Grants {
    let strings = |rule: &Value, field: &str| -> Vec<String> {
        rule[field]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    let mut out = Grants::new();
    let roles = docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role");
    for rule in roles.flat_map(|r| r["rules"].as_array().into_iter().flatten()) {
        for group in strings(rule, "apiGroups") {
            for resource in strings(rule, "resources") {
                out.entry((group.clone(), resource))
                    .or_default()
                    .extend(strings(rule, "verbs"));
            }
        }
    }
    out
}

/// Panics naming the grant that uses a wildcard (`*`) anywhere.
pub fn assert_no_wildcards(grants: &Grants) {
    for ((group, resource), verbs) in grants {
        assert!(
            !group.contains('*')
                && !resource.contains('*')
                && !verbs.iter().any(|v| v.contains('*')),
            "wildcard in {group:?} {resource:?} {verbs:?}"
        );
    }
}

/// A code-side permission list (`(group, resource, verbs)`) as [`Grants`].
pub fn needed(permissions: &[(&str, &str, &[&str])]) -> Grants {
    let mut out = Grants::new();
    for (group, resource, verbs) in permissions {
        out.entry((group.to_string(), resource.to_string()))
            .or_default()
            .extend(verbs.iter().map(|v| v.to_string()));
    }
    out
}

/// The environment variable names a workload's container is given.
pub fn env_names(docs: &[Value], kind: &str, container: &str) -> anyhow::Result<BTreeSet<String>> {
    let workload = docs
        .iter()
        .find(|d| d["kind"] == kind)
        .with_context(|| format!("no {kind}"))?;
    let found = containers(workload)
        .find(|c| c["name"] == container)
        .with_context(|| format!("no container {container} in the {kind}"))?;
    Ok(found["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["name"].as_str().map(str::to_owned))
        .collect())
}
