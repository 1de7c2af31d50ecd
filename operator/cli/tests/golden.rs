//! Golden files for `examples/`: the NodePolicy of every member and the
//! verdict of a matrix of flows. A change in compiler output shows up here as
//! a diff to review; `MESHGUARD_BLESS=1 cargo test -p meshguard-cli --test golden`
//! rewrites the files. The matrix is also checked against the reference
//! evaluator every run, so a blessed file cannot be wrong about a verdict.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

// The reference evaluator of the policy crate's tests, shared rather than copied.
#[path = "../../policy/tests/support/reference.rs"]
#[allow(dead_code)] // golden uses its verdicts only
mod reference;

use std::path::{Path, PathBuf};

use meshguard_cli::{InputArgs, prepare};
use meshguard_crds::{NodePolicy, Protocol};
use meshguard_policy::{
    evaluate::{Flow, evaluate},
    members::Endpoint,
};
use reference::Traffic;

fn repo() -> PathBuf {
    // operator/cli -> the repository
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf()
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/examples")
}

fn bless() -> bool {
    std::env::var_os("MESHGUARD_BLESS").is_some()
}

fn compare(name: &str, actual: &str) {
    let path = golden_dir().join(name);
    if bless() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        expected == actual,
        "{} differs from the compiler's output; review and rerun with MESHGUARD_BLESS=1\n--- actual\n{actual}",
        path.display()
    );
}

fn prepared() -> meshguard_cli::Prepared {
    let args = InputArgs {
        files: vec![repo().join("examples")],
        mesh_cidr: "100.96.0.0/12".parse().unwrap(),
        listen_port: 51820,
    };
    let mut err = Vec::new();
    match prepare(&args, &mut err).unwrap() {
        Ok(prepared) => prepared,
        Err(code) => panic!(
            "examples do not compile ({code}): {}",
            String::from_utf8_lossy(&err)
        ),
    }
}

#[test]
fn node_policies_of_the_examples() {
    let prepared = prepared();
    let compiled = &prepared.compiled;
    let mut names = Vec::new();
    for member in compiled.members() {
        let object = NodePolicy::new(&member.name, compiled.node_policy(&member.name).unwrap());
        let name = format!("{}.yaml", member.name);
        compare(&name, &serde_saphyr::to_string(&object).unwrap());
        names.push(name);
    }
    names.push("matrix.txt".into());
    let mut on_disk: Vec<String> = std::fs::read_dir(golden_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    names.sort();
    assert_eq!(on_disk, names, "stale golden files");
}

#[test]
fn verdict_matrix_of_the_examples() {
    let prepared = prepared();
    let compiled = &prepared.compiled;
    let set = compiled.policy_set();
    let traffic = [
        (Protocol::TCP, Some(22)),
        (Protocol::TCP, Some(873)),
        (Protocol::TCP, Some(5432)),
        (Protocol::TCP, Some(8080)),
        (Protocol::TCP, Some(9100)),
        (Protocol::ICMP, None),
    ];
    let mut matrix = String::new();
    let mut allowed = 0;
    for src in compiled.members() {
        for dst in compiled.members().iter().filter(|d| d.name != src.name) {
            for (protocol, port) in traffic {
                let d = evaluate(
                    set,
                    &Flow {
                        src: Endpoint::Member(src),
                        dst: Endpoint::Member(dst),
                        protocol,
                        port,
                    },
                );
                let sample = match port {
                    Some(p) => Traffic::Port(protocol, p),
                    None => Traffic::Icmp,
                };
                let expected = reference::allowed(
                    &prepared.loaded.policies,
                    compiled.members(),
                    src.mesh_ip,
                    dst.mesh_ip,
                    sample,
                );
                assert_eq!(
                    d.verdict == meshguard_crds::Verdict::Allow,
                    expected,
                    "{} -> {} {protocol:?} {port:?}",
                    src.name,
                    dst.name
                );
                allowed += usize::from(expected);
                let what = port.map_or(format!("{protocol:?}"), |p| format!("{protocol:?}/{p}"));
                let by = d.rule.map_or("default deny".to_owned(), |r| set.rule_id(r));
                let peers = if compiled.are_peers(&src.name, &dst.name) {
                    "peers"
                } else {
                    "not peers"
                };
                matrix.push_str(&format!(
                    "{:<10} -> {:<10} {what:<9} {:?} by {by} ({peers})\n",
                    src.name, dst.name, d.verdict
                ));
            }
        }
    }
    assert!(allowed > 20, "the examples allow a good part of the matrix");
    compare("matrix.txt", &matrix);
}
