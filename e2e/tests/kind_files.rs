//! The cluster path's files, checked where no cluster or Docker exists:
//! the scripts parse, the workflow runs them, the chart's containers run
//! programs the image installs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::{os::unix::fs::PermissionsExt, path::PathBuf, process::Command};

use meshguard_testkit::deploy;
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn the_scripts_parse_and_are_executable() {
    for script in ["e2e/kind/run.sh", "e2e/kind/on-node.sh"] {
        let path = repo().join(script);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert!(mode & 0o111 != 0, "{script} is not executable");
        let output = Command::new("bash").arg("-n").arg(&path).output().unwrap();
        assert!(
            output.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn the_workflow_runs_the_cluster_script() {
    let text = std::fs::read_to_string(repo().join(".github/workflows/kind.yaml")).unwrap();
    let workflow: Value = serde_saphyr::from_str(&text).unwrap();
    let steps = workflow["jobs"]["kind"]["steps"].as_array().unwrap();
    let runs: Vec<&str> = steps.iter().filter_map(|s| s["run"].as_str()).collect();
    assert!(runs.contains(&"e2e/kind/run.sh"), "{runs:?}");
    let uses: Vec<&str> = steps.iter().filter_map(|s| s["uses"].as_str()).collect();
    for tool in [
        "helm/kind-action",
        "azure/setup-helm",
        "dtolnay/rust-toolchain",
    ] {
        assert!(
            uses.iter().any(|u| u.starts_with(tool)),
            "{tool} in {uses:?}"
        );
    }
}

/// `make test` (the README's test command, which `.ci/run` calls) runs on
/// every push and pull request, as root with what network namespaces, iptables
/// and BPF need.
#[test]
fn the_test_workflow_runs_the_readme_test_command() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    assert!(readme.contains("\nmake test "), "the README's test command");
    let ci = std::fs::read_to_string(repo().join(".ci/run")).unwrap();
    assert!(
        ci.lines().any(|l| l.trim() == "make test"),
        ".ci/run calls it"
    );
    let text = std::fs::read_to_string(repo().join(".github/workflows/test.yaml")).unwrap();
    let workflow: Value = serde_saphyr::from_str(&text).unwrap();
    let on = workflow["on"].as_object().unwrap();
    assert!(
        on.contains_key("push") && on.contains_key("pull_request"),
        "{on:?}"
    );
    let job = &workflow["jobs"]["test"];
    assert_eq!(job["container"]["image"], "debian:bookworm");
    assert!(
        job["container"]["options"]
            .as_str()
            .unwrap()
            .contains("--privileged"),
        "namespaces, iptables and BPF need it"
    );
    let runs: Vec<&str> = job["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["run"].as_str())
        .collect();
    assert_eq!(runs.last(), Some(&"make test"), "{runs:?}");
    assert!(
        runs.iter().any(|r| r.contains("--default-toolchain 1.95")),
        "{runs:?}"
    );
}

/// Every program a container of the chart or run.sh starts in the image
/// is one the Dockerfile puts there.
#[test]
fn the_image_holds_every_program_the_chart_and_the_run_start() {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let docs = deploy::documents().unwrap();
    let mut programs: Vec<String> = docs
        .iter()
        .flat_map(deploy::containers)
        .map(|c| c["command"][0].as_str().unwrap().to_owned())
        .collect();
    programs.sort();
    assert_eq!(
        programs,
        ["boringtun-cli", "meshguard-agent", "meshguard-operator"]
    );
    // The uninstall hook: the Job runs the operator's binary, the teardown
    // pods the agent's, with a `test -f` readiness probe (Debian's
    // coreutils).
    let hook = deploy::uninstall_documents().unwrap();
    let mut hook_programs: Vec<&str> = hook
        .iter()
        .flat_map(deploy::containers)
        .map(|c| c["command"][0].as_str().unwrap())
        .collect();
    hook_programs.sort();
    assert_eq!(hook_programs, ["meshguard-agent", "meshguard-operator"]);
    assert!(
        dockerfile.contains("FROM debian:${DEBIAN}-slim AS runtime"),
        "test comes with Debian"
    );
    // run.sh probes through `mesh-probe` and `ping` (the e2e target).
    programs.extend(["mesh-probe".to_owned(), "meshguard".to_owned()]);
    for program in &programs {
        assert!(
            dockerfile.contains(&format!("/{program} "))
                || dockerfile.contains(&format!("/{program}\n")),
            "the Dockerfile does not install {program}"
        );
    }
    assert!(dockerfile.contains("iputils-ping"), "ping for ICMP probes");
}
