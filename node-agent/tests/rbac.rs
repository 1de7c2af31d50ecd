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

#[test]
fn the_daemonset_sets_only_run_flags() {
    let command = Cli::command();
    let run = command.find_subcommand("run").unwrap();
    let flags: Vec<String> = run
        .get_arguments()
        .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
        .collect();
    let set = env_names(&component("agent").unwrap(), "DaemonSet", "agent").unwrap();
    assert!(set.len() >= 10, "{set:?}");
    for name in &set {
        assert!(
            flags.contains(name),
            "{name} is not a `meshguard-agent run` flag"
        );
    }
}

/// The uninstall hook's teardown pods set only `meshguard-agent teardown`
/// flags, the uninstall Job only `meshguard-operator` ones (its log format).
#[test]
fn the_teardown_daemonset_sets_only_teardown_flags() {
    let command = Cli::command();
    let teardown = command.find_subcommand("teardown").unwrap();
    let flags: Vec<String> = teardown
        .get_arguments()
        .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
        .collect();
    let docs = uninstall_documents().unwrap();
    let set = env_names(&docs, "DaemonSet", "teardown").unwrap();
    assert!(set.contains("MESHGUARD_AGENT_LOCK"), "{set:?}");
    for name in &set {
        assert!(
            flags.contains(name),
            "{name} is not a `meshguard-agent teardown` flag"
        );
    }
}
