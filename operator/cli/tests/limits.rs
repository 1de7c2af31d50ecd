//! The bounds the manifest reader enforces (docs/reliability.md, "Limits"),
//! each refused fast with exit 2 and a message naming the file and the
//! bound, and each with a document just inside it that loads: the bound is
//! where the docs say, not lower.
//!
//! | bound | value |
//! |---|---|
//! | YAML nodes per file (aliases expanded: a billion-laughs document counts what it expands to) | 250,000 |
//! | YAML nesting depth | 64 |
//! | bytes per file | 16 MiB |
//! | documents per file | 1,024 |
//! | bytes of JSON per compiled NodePolicy (`compile`) | 1,500,000 |

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

mod support;

use std::{path::Path, time::Instant};

use support::meshguard;

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("limits-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `meshguard validate` of one file holding `text`: exit code and stderr,
/// with the time it took (printed: a figure, not an assertion).
fn validate(dir: &Path, name: &str, text: &str) -> (Option<i32>, String) {
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    let started = Instant::now();
    let run = meshguard(&["validate", "-f", file.to_str().unwrap()]);
    eprintln!(
        "{name}: {} bytes, exit {:?} in {:.2} s",
        text.len(),
        run.status.code(),
        started.elapsed().as_secs_f64()
    );
    (
        run.status.code(),
        String::from_utf8_lossy(&run.stderr).into_owned(),
    )
}

/// A kind meshguard ignores, carrying `value` (so that only the YAML
/// reader's bounds can refuse it).
fn ignored(value: &str) -> String {
    format!("apiVersion: apps/v1\nkind: Deployment\nmetadata: {{ name: big }}\nspec: {value}\n")
}

#[test]
fn a_billion_laughs_is_refused_by_what_it_expands_to() {
    let dir = scratch("laughs");
    let mut text = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    let (code, err) = validate(&dir, "laughs.yaml", &text);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("laughs.yaml: not valid YAML"), "{err}");
    assert!(err.contains("budget breached: Nodes"), "{err}");
    // Ten aliases of ten aliases, four deep: 11,111 nodes, well inside
    // (a document of no kind: ignored, exit 0).
    let small: String = text.lines().take(4).map(|l| format!("{l}\n")).collect();
    let (code, err) = validate(&dir, "laughs-small.yaml", &small);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn a_file_of_more_than_250000_nodes_is_refused() {
    let dir = scratch("nodes");
    let list = |n: usize| format!("[{}]", vec!["1"; n].join(","));
    let (code, err) = validate(&dir, "wide.yaml", &ignored(&list(250_000)));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("wide.yaml: not valid YAML"), "{err}");
    assert!(err.contains("budget breached: Nodes"), "{err}");
    let (code, err) = validate(&dir, "inside.yaml", &ignored(&list(240_000)));
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn nesting_deeper_than_64_is_refused() {
    let dir = scratch("deep");
    let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    // The document mapping is depth 1: 64 lists under `spec` reach 65.
    let (code, err) = validate(&dir, "deep.yaml", &ignored(&nested(64)));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("deep.yaml: not valid YAML"), "{err}");
    assert!(err.contains("budget breached: Depth"), "{err}");
    // Far deeper is refused as fast, by the parser's recursion limit.
    let (code, err) = validate(&dir, "deeper.yaml", &ignored(&nested(100_000)));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("deeper.yaml: not valid YAML"), "{err}");
    let (code, err) = validate(&dir, "inside.yaml", &ignored(&nested(63)));
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn a_file_of_more_than_16_mib_is_refused_before_it_is_read() {
    let dir = scratch("bytes");
    // One long comment: no YAML node bound applies, only the size.
    let big = format!("# {}\n{}", "x".repeat(16 << 20), ignored("{}"));
    let (code, err) = validate(&dir, "big.yaml", &big);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("big.yaml: more than 16 MiB"), "{err}");
    let inside = format!("# {}\n{}", "x".repeat((16 << 20) - 200), ignored("{}"));
    let (code, err) = validate(&dir, "inside.yaml", &inside);
    assert_eq!(code, Some(0), "{err}");
    // A file that never ends is cut off at the bound, not read whole.
    let run = meshguard(&["validate", "-f", "/dev/zero"]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{err}");
    assert!(err.contains("/dev/zero: "), "{err}");
}

/// `meshguard compile` refuses a NodePolicy past the size bound (1,500,000
/// bytes of JSON, under etcd's 1.5 MiB), as the operator does, naming the
/// member and what made it large, and writes nothing; a mesh just under it
/// compiles. A hub that is a peer of every member, each member with a long
/// name its endpoint repeats (514 bytes per peer).
#[test]
fn compile_refuses_a_node_policy_past_the_size_bound() {
    let dir = scratch("node-policy-size");
    // Files of at most 1,000 documents (the reader's bound is 1,024).
    let members = |from: usize, to: usize| -> String {
        (from..to)
            .map(|i| {
                let (role, name) = match i {
                    0 => ("hub", "hub-0".to_owned()),
                    _ => (
                        "spoke",
                        format!("spoke-{i}.{}.{}.{}", "x".repeat(60), "y".repeat(60), "z".repeat(55)),
                    ),
                };
                format!(
                    "---\napiVersion: meshguard.io/v1alpha1\nkind: MeshNode\nmetadata: {{ name: {name}, labels: {{ role: {role} }} }}\nspec: {{ publicKey: \"{}\", endpoint: \"{name}.example.net:51820\" }}\n",
                    public_key(i),
                )
            })
            .collect()
    };
    let policy = "---\napiVersion: meshguard.io/v1alpha1\nkind: MeshPolicy\nmetadata: { name: hub }\nspec:\n  priority: 100\n  rules:\n  - { name: ping, action: Allow, from: [{ nodeSelector: { matchLabels: { role: hub } } }], to: [{ nodeSelector: { matchLabels: { role: spoke } } }], ports: [{ protocol: ICMP }] }\n";
    for (spokes, fits) in [(2_800, true), (3_100, false)] {
        let inputs = dir.join(format!("in-{spokes}"));
        let out = dir.join(format!("out-{spokes}"));
        std::fs::create_dir_all(&inputs).unwrap();
        for start in (0..=spokes).step_by(1_000) {
            let end = (start + 1_000).min(spokes + 1);
            std::fs::write(
                inputs.join(format!("members-{start}.yaml")),
                members(start, end),
            )
            .unwrap();
        }
        std::fs::write(inputs.join("policy.yaml"), policy).unwrap();
        let run = support::compile(&inputs, &out);
        let stderr = String::from_utf8_lossy(&run.stderr);
        if fits {
            assert_eq!(run.status.code(), Some(0), "{stderr}");
            let hub = std::fs::metadata(out.join("hub-0.yaml")).unwrap().len();
            eprintln!("{spokes} spokes: the hub's state file is {hub} bytes of YAML");
            continue;
        }
        assert_eq!(run.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("error: NodePolicy/hub-0 would be ")
                && stderr.contains(" bytes of JSON (3100 peers, ")
                && stderr.contains("past the bound of 1500000 bytes"),
            "{stderr}"
        );
        assert!(stderr.contains("nothing was written"), "{stderr}");
        assert!(
            std::fs::read_dir(&out).map_or(true, |mut d| d.next().is_none()),
            "files were written"
        );
    }
}

/// A distinct valid WireGuard public key per member.
fn public_key(i: usize) -> String {
    const BASE64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let digits: String = [i / 4096, (i / 64) % 64, i % 64]
        .iter()
        .map(|&d| BASE64[d] as char)
        .collect();
    format!("{}{digits}A=", "B".repeat(39))
}

/// At most 1,024 documents per file (the YAML reader's budget): 1,024
/// load, 1,025 are refused naming the file and the budget.
#[test]
fn documents_per_file_are_bounded() {
    let dir = scratch("documents");
    let documents = |n: usize| -> String {
        (0..n)
            .map(|i| format!("---\n{}", ignored(&format!("{{ replicas: {i} }}"))))
            .collect()
    };
    let (code, stderr) = validate(&dir, "at-bound.yaml", &documents(1_024));
    assert_eq!(code, Some(0), "{stderr}");
    let (code, stderr) = validate(&dir, "past.yaml", &documents(1_025));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("past.yaml") && stderr.contains("budget breached: Documents"),
        "{stderr}"
    );
}
