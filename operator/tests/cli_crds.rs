//! `meshguard crds` prints exactly the four CRDs, as `kubectl apply -f -` takes them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::process::Command;

use meshguard_crds::{Kind, manifests};
use serde_json::Value;

#[test]
fn crds_prints_the_four_crds_as_one_stream() {
    let output = Command::new(env!("CARGO_BIN_EXE_meshguard"))
        .arg("crds")
        .output()
        .expect("run meshguard crds");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("UTF-8");
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).expect("a YAML stream");
    let names: Vec<&str> = docs
        .iter()
        .filter_map(|d| d["metadata"]["name"].as_str())
        .collect();
    let expected: Vec<String> = Kind::ALL
        .into_iter()
        .map(|k| manifests::crd(k).metadata.name.unwrap_or_default())
        .collect();
    assert_eq!(names, expected);
    for (doc, kind) in docs.iter().zip(Kind::ALL) {
        let generated = serde_json::to_value(manifests::crd(kind)).expect("CRD to JSON");
        assert_eq!(doc, &generated, "{kind}");
    }
}

#[test]
fn unknown_subcommands_are_bad_input() {
    let output = Command::new(env!("CARGO_BIN_EXE_meshguard"))
        .arg("frobnicate")
        .output()
        .expect("run meshguard");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("frobnicate"));
}
