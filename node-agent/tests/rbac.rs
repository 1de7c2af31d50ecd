//! The agent's part of `deploy/meshguard.yaml` (the chart's default
//! rendering): its ClusterRole grants exactly the permissions its requests
//! need, with no wildcards, and its DaemonSet sets only variables that are
//! `meshguard-agent run` flags.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use clap::CommandFactory;
use meshguard_agent::{cli::Cli, state::kube::PERMISSIONS};
use meshguard_testkit::deploy::{
    assert_no_wildcards, component, env_names, grants, needed, uninstall_documents,
};

#[test]
fn the_cluster_role_grants_exactly_what_the_agent_requests() {
    let docs = component("agent").unwrap();
    let granted = grants(&docs);
    assert_no_wildcards(&granted);
    assert_eq!(granted, needed(PERMISSIONS));
    assert!(
        !docs.iter().any(|d| d["kind"] == "Role"),
        "the agent needs nothing namespaced"
    );
    let binding = docs
        .iter()
        .find(|d| d["kind"] == "ClusterRoleBinding")
        .unwrap();
    assert_eq!(binding["subjects"][0]["name"], "meshguard-agent");
    let daemonset = docs.iter().find(|d| d["kind"] == "DaemonSet").unwrap();
    assert_eq!(
        daemonset["spec"]["template"]["spec"]["serviceAccountName"],
        "meshguard-agent"
    );
}

/// Panics naming a variable of `set` that is no flag of `meshguard-agent <subcommand>`.
fn assert_only_flags(subcommand: &str, set: &std::collections::BTreeSet<String>) {
    let command = Cli::command();
    let flags: Vec<String> = command
        .find_subcommand(subcommand)
        .unwrap()
        .get_arguments()
        .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
        .collect();
    for name in set {
        assert!(
            flags.contains(name),
            "{name} is not a `meshguard-agent {subcommand}` flag"
        );
    }
}

#[test]
fn the_daemonset_sets_only_run_flags() {
    let set = env_names(&component("agent").unwrap(), "DaemonSet", "agent").unwrap();
    assert!(set.len() >= 10, "{set:?}");
    assert_only_flags("run", &set);
}

/// The uninstall hook's teardown pods set only `meshguard-agent teardown`
/// flags.
#[test]
fn the_teardown_daemonset_sets_only_teardown_flags() {
    let set = env_names(&uninstall_documents().unwrap(), "DaemonSet", "teardown").unwrap();
    assert!(set.contains("MESHGUARD_AGENT_LOCK"), "{set:?}");
    assert_only_flags("teardown", &set);
}
