//! What `e2e/kind/run.sh` applies to a real cluster, checked here where no
//! cluster exists: `policies.yaml` is valid and its in-policy tests pass
//! with the roles `roles.txt` gives the kind nodes, before and after the
//! run's live quarantine — so a policy edit cannot break the cluster run
//! unnoticed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// Valid WireGuard public keys for the four members.
const KEYS: [&str; 4] = [
    "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=",
    "3x2OkuhBcRyX00pvzMvUShHZOt9zFWPDaxf4c0sQksU=",
    "OZB3tS3pGgNfHxP8rpVhwRazm/jkV8MqmVxyouKlLVA=",
    "fKsODqzo3qsW3lBIzTr3fWDS1vnIF7bqD6Fxr+vS6Uo=",
];

fn kind_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../e2e/kind")
}

/// `(node, role)` from roles.txt.
fn roles() -> Vec<(String, String)> {
    std::fs::read_to_string(kind_dir().join("roles.txt"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (node, role) = l.split_once(' ').unwrap();
            (node.to_owned(), role.trim().to_owned())
        })
        .collect()
}

fn validate(case: &str, quarantined: Option<&str>) -> (bool, String) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("kind-inputs-{case}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut members = String::new();
    for ((node, role), key) in roles().iter().zip(KEYS) {
        let quarantine = if quarantined == Some(node.as_str()) {
            ", meshguard.io/quarantine: \"true\""
        } else {
            ""
        };
        members.push_str(&format!(
            "---\napiVersion: meshguard.io/v1alpha1\nkind: MeshNode\nmetadata: {{ name: {node}, labels: {{ role: {role}{quarantine} }} }}\nspec: {{ publicKey: {key} }}\n"
        ));
    }
    std::fs::write(dir.join("members.yaml"), members).unwrap();
    std::fs::copy(kind_dir().join("policies.yaml"), dir.join("policies.yaml")).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_meshguard"))
        .arg("validate")
        .arg("-f")
        .arg(&dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn the_kind_policies_are_valid_and_their_tests_pass() {
    assert_eq!(roles().len(), 4, "cluster.yaml makes four nodes");
    let (ok, text) = validate("before", None);
    assert!(ok, "{text}");
    assert!(text.contains("3 of 3 tests passed"), "{text}");
    assert!(!text.contains("warning"), "{text}");
}

#[test]
fn the_tests_still_pass_with_the_db_node_quarantined() {
    // run.sh's live change: the operator runs the tests against the whole
    // policy set, labels included, so none may depend on the db node.
    let (ok, text) = validate("quarantined", Some("meshguard-e2e-worker3"));
    assert!(ok, "{text}");
    assert!(text.contains("3 of 3 tests passed"), "{text}");
}

#[test]
fn quarantining_a_node_the_tests_name_would_fail_them() {
    // The counter-case: the same check catches a test that names the node.
    let (ok, text) = validate("quarantined-app", Some("meshguard-e2e-worker2"));
    assert!(!ok, "{text}");
    assert!(text.contains("quarantine/quarantined-in"), "{text}");
}
