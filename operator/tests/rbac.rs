//! The operator's part of `deploy/meshguard.yaml` (the chart's default
//! rendering): its roles grant exactly the permissions its requests need,
//! with no wildcards, and its Deployment sets only variables that are flags.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use clap::CommandFactory;
use meshguard_operator::{
    controller::{cli::Flags, rbac::PERMISSIONS},
    uninstall,
};
use meshguard_testkit::deploy::{
    assert_no_wildcards, component, env_names, grants, needed, uninstall_documents,
};

#[test]
fn the_roles_grant_exactly_what_the_operator_requests() {
    let docs = component("operator").unwrap();
    let granted = grants(&docs);
    assert_no_wildcards(&granted);
    assert_eq!(granted, needed(PERMISSIONS));
    // The lease is the only namespaced grant, in the operator's namespace.
    let role = docs.iter().find(|d| d["kind"] == "Role").unwrap();
    assert_eq!(role["rules"][0]["resources"][0], "leases");
    assert_eq!(role["metadata"]["namespace"], "meshguard-system");
    let bound: Vec<_> = docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRoleBinding" || d["kind"] == "RoleBinding")
        .map(|d| &d["subjects"][0]["name"])
        .collect();
    assert_eq!(bound.len(), 2);
    assert!(bound.iter().all(|n| **n == "meshguard-operator"));
    let account = docs.iter().find(|d| d["kind"] == "ServiceAccount").unwrap();
    assert_eq!(account["metadata"]["name"], "meshguard-operator");
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    assert_eq!(
        deployment["spec"]["template"]["spec"]["serviceAccountName"],
        "meshguard-operator"
    );
}

#[test]
fn the_deployment_sets_only_flags() {
    let flags: Vec<String> = Flags::command()
        .get_arguments()
        .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
        .collect();
    let set = env_names(&component("operator").unwrap(), "Deployment", "operator").unwrap();
    assert!(set.len() >= 8, "{set:?}");
    for name in &set {
        assert!(
            flags.contains(name),
            "{name} is not a meshguard-operator flag"
        );
    }
}

/// The uninstall hook's Job (`meshguard-operator uninstall`): its Role
/// grants exactly what the command requests, in the release's namespace.
#[test]
fn the_uninstall_role_grants_exactly_what_the_command_requests() {
    let docs = uninstall_documents().unwrap();
    let granted = grants(&docs);
    assert_no_wildcards(&granted);
    assert_eq!(granted, needed(uninstall::PERMISSIONS));
    assert!(!docs.iter().any(|d| d["kind"] == "ClusterRole"));
    let role = docs.iter().find(|d| d["kind"] == "Role").unwrap();
    assert_eq!(role["metadata"]["namespace"], "meshguard-system");
}
