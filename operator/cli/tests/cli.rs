//! The `meshguard` CLI contract, through the real binary: flags, output
//! shapes, exit codes (0 ok, 1 failed check or test, 2 bad input), messages
//! that name the file, object and field, and nothing partial written.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use meshguard_crds::{Kind, NodePolicy, manifests, validation::Validator};
use serde_json::Value;

fn repo() -> PathBuf {
    // operator/cli -> the repository
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf()
}

fn examples() -> String {
    repo().join("examples").display().to_string()
}

fn meshguard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshguard"))
        .args(args)
        .output()
        .expect("run meshguard")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A fresh directory for one test, holding the examples plus `extra` files.
fn workspace(test: &str, extra: &[(&str, &str)]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{test}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("in")).unwrap();
    for entry in std::fs::read_dir(repo().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            std::fs::copy(&path, dir.join("in").join(path.file_name().unwrap())).unwrap();
        }
    }
    for (name, content) in extra {
        std::fs::write(dir.join("in").join(name), content).unwrap();
    }
    dir
}

#[test]
fn validate_passes_the_examples() {
    let out = meshguard(&["validate", "-f", &examples()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(
        text(&out.stdout).trim(),
        "ok: 5 files, 9 MeshPolicies, 1 PolicyChains, 9 MeshNodes; 16 of 16 tests passed"
    );
}

#[test]
fn a_failing_test_exits_1_and_says_why() {
    let wrong = "apiVersion: meshguard.io/v1alpha1\nkind: MeshPolicy\nmetadata: { name: wrong-expectation }\nspec:\n  tests:\n  - { from: web-1, to: db-1, protocol: TCP, port: 5432, expect: Allow }\n";
    let dir = workspace("failing-test", &[("wrong.yaml", wrong)]);
    let out = meshguard(&["validate", "-f", &dir.join("in").display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    let file = dir.join("in/wrong.yaml").display().to_string();
    assert!(
        text(&out.stdout).contains(&format!("FAIL {file}: MeshPolicy/wrong-expectation: spec.tests[0]: web-1 -> db-1 TCP/5432: expected Allow, got Deny (decided by db-isolation/no-web-to-db)")),
        "{}",
        text(&out.stdout)
    );
    assert!(text(&out.stdout).contains(
        "FAILED: 6 files, 10 MeshPolicies, 1 PolicyChains, 9 MeshNodes; 16 of 17 tests passed"
    ));
}

#[test]
fn a_malformed_document_exits_2_naming_file_object_and_field() {
    let bad = "apiVersion: meshguard.io/v1alpha1\nkind: MeshPolicy\nmetadata: { name: broken }\nspec:\n  rules:\n  - action: Allow\n    from: [{ all: true }]\n    to: [{ all: true }]\n    ports: [{ protocol: ICMP, port: 8 }]\n";
    let dir = workspace("malformed", &[("broken.yaml", bad)]);
    let out_dir = dir.join("out");
    for args in [
        vec!["validate"],
        vec!["compile", "--out", out_dir.to_str().unwrap()],
        vec![
            "check", "--from", "web-1", "--to", "app-1", "--port", "8080",
        ],
    ] {
        let mut args = args.clone();
        let input = dir.join("in").display().to_string();
        args.extend(["-f", &input]);
        let out = meshguard(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let file = dir.join("in/broken.yaml").display().to_string();
        assert!(
            text(&out.stderr).contains(&format!("error: {file}: MeshPolicy/broken: spec.rules[0].ports[0]: ICMP takes no port: port and endPort apply to TCP, UDP and SCTP")),
            "{}",
            text(&out.stderr)
        );
    }
    assert!(!out_dir.exists(), "compile wrote nothing");
}

#[test]
fn yaml_errors_duplicates_and_missing_references_are_bad_input() {
    let policy = |name: &str| {
        format!(
            "apiVersion: meshguard.io/v1alpha1\nkind: MeshPolicy\nmetadata: {{ name: {name} }}\nspec: {{}}\n"
        )
    };
    let dir = workspace(
        "bad-input",
        &[
            ("syntax.yaml", "kind: [unclosed"),
            ("one.yaml", &policy("twice")),
            ("two.yaml", &policy("twice")),
        ],
    );
    let out = meshguard(&["validate", "-f", &dir.join("in").display().to_string()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "error: {}: not valid YAML",
            dir.join("in/syntax.yaml").display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "error: {}: MeshPolicy/twice: a second MeshPolicy named twice; the first is in {}",
            dir.join("in/two.yaml").display(),
            dir.join("in/one.yaml").display()
        )),
        "{stderr}"
    );

    // A chain whose JWKS ConfigMap is gone.
    let dir = workspace("missing-ref", &[]);
    let chain = std::fs::read_to_string(dir.join("in/orders-chain.yaml"))
        .unwrap()
        .replace("name: issuer-jwks\n", "name: other-jwks\n");
    std::fs::write(dir.join("in/orders-chain.yaml"), chain).unwrap();
    let out = meshguard(&["validate", "-f", &dir.join("in").display().to_string()]);
    assert_eq!(out.status.code(), Some(2));
    let expected = format!(
        "error: {}: PolicyChain/orders-api: spec.policies[1].jwt.jwks.configMapRef: ConfigMap shop/issuer-jwks not found",
        dir.join("in/orders-chain.yaml").display()
    );
    assert!(
        text(&out.stderr).contains(&expected),
        "{}",
        text(&out.stderr)
    );

    let out = meshguard(&["validate", "-f", "/nonexistent/policies"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("error: /nonexistent/policies: no such file or directory"));
}

#[test]
fn unknown_node_names_warn_but_pass() {
    let ghost = "apiVersion: meshguard.io/v1alpha1\nkind: MeshPolicy\nmetadata: { name: ghostly }\nspec:\n  rules:\n  - { action: Allow, from: [{ nodes: [ghost-1] }], to: [{ all: true }] }\n";
    let dir = workspace("unknown-names", &[("ghost.yaml", ghost)]);
    let out = meshguard(&["validate", "-f", &dir.join("in").display().to_string()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("warning: ") && text(&out.stderr).contains("MeshPolicy/ghostly: spec.rules[0].from[0].nodes: no member is named \"ghost-1\"; it matches nothing"), "{}", text(&out.stderr));
}

fn check_json(args: &[&str]) -> (Option<i32>, Value) {
    let mut all = vec!["check", "-f", "EXAMPLES", "-o", "json"];
    all.extend_from_slice(args);
    let examples = examples();
    let all: Vec<&str> = all
        .iter()
        .map(|a| {
            if *a == "EXAMPLES" {
                examples.as_str()
            } else {
                a
            }
        })
        .collect();
    let out = meshguard(&all);
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&out.stdout), text(&out.stderr)));
    (out.status.code(), json)
}

#[test]
fn check_answers_in_the_contract_shape() {
    let (code, json) = check_json(&[
        "--from",
        "app-1",
        "--to",
        "db-2",
        "--protocol",
        "TCP",
        "--port",
        "5432",
    ]);
    assert_eq!(code, Some(0));
    assert_eq!(
        json,
        serde_json::json!({ "verdict": "Allow", "policy": "app-to-db", "rule": "postgres", "peerVisible": true })
    );
    // Field order is part of the shape.
    let out = meshguard(&[
        "check",
        "-f",
        &examples(),
        "--from",
        "app-1",
        "--to",
        "db-2",
        "--port",
        "5432",
        "-o",
        "json",
    ]);
    assert_eq!(
        text(&out.stdout).trim(),
        r#"{"verdict":"Allow","policy":"app-to-db","rule":"postgres","peerVisible":true}"#
    );

    let (code, json) = check_json(&[
        "--from",
        "web-1",
        "--to",
        "db-1",
        "--protocol",
        "TCP",
        "--port",
        "5432",
    ]);
    assert_eq!(code, Some(1), "a denied flow is a failed check");
    assert_eq!(
        json,
        serde_json::json!({ "verdict": "Deny", "policy": "db-isolation", "rule": "no-web-to-db", "peerVisible": true })
    );

    // Default deny, and a non-member address: nulls.
    let (code, json) = check_json(&["--from", "db-1", "--to", "192.168.50.200", "--port", "873"]);
    assert_eq!(code, Some(1));
    assert_eq!(
        json,
        serde_json::json!({ "verdict": "Deny", "policy": null, "rule": null, "peerVisible": null })
    );
    let (_, json) = check_json(&["--from", "monitor-1", "--to", "web-2", "--protocol", "icmp"]);
    assert_eq!(
        json,
        serde_json::json!({ "verdict": "Allow", "policy": "mesh-icmp", "rule": "ping", "peerVisible": true })
    );
    // A member's mesh IP is the member.
    let (_, json) = check_json(&["--from", "db-2", "--to", "100.96.10.1", "--port", "873"]);
    assert_eq!(json["verdict"], "Allow");
    assert_eq!(json["peerVisible"], true);
}

#[test]
fn check_names_an_unnamed_rule_by_its_index() {
    let unnamed = "apiVersion: meshguard.io/v1alpha1\nkind: MeshPolicy\nmetadata: { name: first }\nspec:\n  priority: 0\n  rules:\n  - { action: Log, from: [{ all: true }], to: [{ all: true }] }\n  - { action: Deny, from: [{ all: true }], to: [{ all: true }], ports: [{ protocol: UDP, port: 53 }] }\n";
    let dir = workspace("unnamed", &[("first.yaml", unnamed)]);
    let out = meshguard(&[
        "check",
        "-f",
        &dir.join("in").display().to_string(),
        "--from",
        "web-1",
        "--to",
        "app-1",
        "--protocol",
        "UDP",
        "--port",
        "53",
        "-o",
        "json",
    ]);
    assert_eq!(
        text(&out.stdout).trim(),
        r#"{"verdict":"Deny","policy":"first","rule":1,"peerVisible":true}"#
    );
}

#[test]
fn check_explain_walks_every_rule_consulted() {
    let out = meshguard(&[
        "check",
        "-f",
        &examples(),
        "--from",
        "web-1",
        "--to",
        "db-1",
        "--port",
        "5432",
        "--explain",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<String> = text(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        lines[0],
        "flow web-1 (100.96.0.7) -> db-1 (100.96.0.4) TCP/5432"
    );
    assert_eq!(
        lines[1],
        "quarantine/quarantined-out Deny priority 0 no match: from does not match the source"
    );
    assert_eq!(
        lines[3],
        "db-access-log/towards-db Log priority 10 match: logged, evaluation goes on"
    );
    assert_eq!(
        lines[4],
        "db-isolation/no-web-to-db Deny priority 50 match: Deny, decides"
    );
    assert_eq!(
        lines[5],
        "Deny: web-1 -> db-1 TCP/5432, decided by db-isolation/no-web-to-db"
    );
    assert_eq!(lines[6], "also matched db-access-log/towards-db (log)");

    let out = meshguard(&[
        "check",
        "-f",
        &examples(),
        "--from",
        "monitor-1",
        "--to",
        "web-1",
        "--port",
        "9100",
        "--explain",
    ]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("monitoring-scrape/node-exporter")
            && stdout.contains("(Audit)")
            && stdout.contains("would have allowed"),
        "{stdout}"
    );
    assert!(stdout.contains("no rule decided: default deny"), "{stdout}");
}

#[test]
fn check_refuses_incomplete_questions() {
    for (args, message) in [
        (
            vec!["--from", "web-1", "--to", "app-1"],
            "error: --port is required for TCP",
        ),
        (
            vec![
                "--from",
                "web-1",
                "--to",
                "app-1",
                "--protocol",
                "ICMP",
                "--port",
                "8",
            ],
            "error: ICMP takes no --port",
        ),
        (
            vec!["--from", "nobody", "--to", "app-1", "--port", "80"],
            "error: \"nobody\" is neither a member nor an IP address",
        ),
    ] {
        let mut all = vec!["check", "-f"];
        let examples = examples();
        all.push(&examples);
        all.extend(args);
        let out = meshguard(&all);
        assert_eq!(out.status.code(), Some(2), "{all:?}");
        assert!(text(&out.stderr).contains(message), "{}", text(&out.stderr));
    }
}

/// `meshguard check --flows FILE` with `text` as the file's contents.
fn check_flows(test: &str, text_in: &str, json: bool) -> Output {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("flows-{test}"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("flows.txt");
    std::fs::write(&file, text_in).unwrap();
    let examples = examples();
    let file = file.display().to_string();
    let mut args = vec!["check", "-f", &examples, "--flows", &file];
    if json {
        args.extend(["-o", "json"]);
    }
    meshguard(&args)
}

#[test]
fn check_flows_answers_every_line_as_a_single_check_would() {
    let members = ["web-1", "app-1", "db-1", "backup-vm"];
    let traffic: [&[&str]; 3] = [&["TCP", "5432"], &["tcp", "8080"], &["ICMP"]];
    let mut lines = String::from("# from to protocol [port]\n\n");
    let mut flows = Vec::new();
    for from in members {
        for to in members.iter().filter(|t| **t != from) {
            for t in traffic {
                lines.push_str(&format!("{from} {to} {}  # a comment\n", t.join(" ")));
                flows.push((from, *to, t));
            }
        }
    }
    let out = check_flows("matrix", &lines, true);
    // Some flows are denied: exit 1, as a denied single check.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let answers: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(answers.len(), flows.len());
    for ((from, to, t), mut batch) in flows.into_iter().zip(answers) {
        let mut args = vec!["--from", from, "--to", to, "--protocol", t[0]];
        if let Some(port) = t.get(1) {
            args.extend(["--port", port]);
        }
        let (_, single) = check_json(&args);
        assert_eq!(batch["from"], from);
        assert_eq!(batch["to"], to);
        assert_eq!(batch["protocol"], t[0].to_uppercase());
        assert_eq!(
            batch["port"],
            t.get(1)
                .map(|p| Value::from(p.parse::<u16>().unwrap()))
                .unwrap_or(Value::Null)
        );
        let object = batch.as_object_mut().unwrap();
        for echo in ["from", "to", "protocol", "port"] {
            object.remove(echo);
        }
        assert_eq!(batch, single, "{from} -> {to} {t:?}");
    }
    // Every flow allowed: exit 0; the text form answers each in turn.
    let out = check_flows(
        "allowed",
        "app-1 db-1 TCP 5432\nweb-1 app-1 TCP 8080\n",
        false,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let verdicts: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("Allow: "))
        .collect();
    assert_eq!(verdicts.len(), 2, "{stdout}");
}

#[test]
fn check_flows_refuses_a_bad_line_naming_it_and_answers_nothing() {
    for (lines, message) in [
        (
            "web-1 db-1 TCP 5432\nweb-1 db-1\n",
            "flows.txt:2: expected FROM TO PROTOCOL [PORT]",
        ),
        (
            "web-1 db-1 TCP\n",
            "flows.txt:1: --port is required for TCP",
        ),
        ("web-1 db-1 ICMP 8\n", "flows.txt:1: ICMP takes no --port"),
        (
            "web-1 db-1 GRE\n",
            "flows.txt:1: \"GRE\" is not TCP, UDP, SCTP or ICMP",
        ),
        (
            "web-1 db-1 TCP 70000\n",
            "flows.txt:1: \"70000\" is not a port",
        ),
        (
            "web-1 db-1 TCP 1\n# x\nnobody db-1 TCP 1\n",
            "flows.txt:3: \"nobody\" is neither a member",
        ),
    ] {
        let out = check_flows("bad", lines, true);
        assert_eq!(out.status.code(), Some(2), "{lines:?}");
        assert!(
            text(&out.stderr).contains(message),
            "{lines:?}: {}",
            text(&out.stderr)
        );
        assert!(out.stdout.is_empty(), "{lines:?}: {}", text(&out.stdout));
    }
    let examples = examples();
    let out = meshguard(&["check", "-f", &examples, "--flows", "-", "--from", "web-1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("cannot be used with"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn compile_writes_valid_node_policies_without_secrets() {
    let dir = workspace("compile", &[]);
    let out_dir = dir.join("out");
    let out = meshguard(&[
        "compile",
        "-f",
        &dir.join("in").display().to_string(),
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        format!("wrote 9 NodePolicies to {}", out_dir.display())
    );
    let validator = Validator::new();
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&out_dir).unwrap() {
        let path = entry.unwrap().path();
        let content = std::fs::read_to_string(&path).unwrap();
        assert!(
            !content.contains("mk_live_"),
            "{}: a raw API key leaked",
            path.display()
        );
        let value: Value = serde_saphyr::from_str(&content).unwrap();
        validator
            .validate(Kind::NodePolicy, &value)
            .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
        let policy: NodePolicy = serde_json::from_value(value).unwrap();
        names.push(policy.metadata.name.unwrap());
        if path.ends_with("web-1.yaml") {
            let chain = &policy.spec.chains[0];
            assert_eq!(chain.name, "shop/orders-api");
            let keys = &chain.steps[0].api_key.as_ref().unwrap().keys;
            assert_eq!(
                keys.iter()
                    .map(|k| k.client_id.as_str())
                    .collect::<Vec<_>>(),
                vec!["mobile-app", "partner-portal"]
            );
            assert!(keys.iter().all(|k| k.sha256.len() == 64));
        }
    }
    names.sort();
    assert_eq!(
        names,
        vec![
            "app-1",
            "app-2",
            "backup-vm",
            "bastion-1",
            "db-1",
            "db-2",
            "monitor-1",
            "web-1",
            "web-2"
        ]
    );
    // Only web members run the chain.
    let app: NodePolicy =
        serde_saphyr::from_str(&std::fs::read_to_string(out_dir.join("app-1.yaml")).unwrap())
            .unwrap();
    assert!(app.spec.chains.is_empty());
}

#[test]
fn crds_prints_the_four_crds_as_one_stream() {
    let out = meshguard(&["crds"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text(&out.stdout)).expect("a YAML stream");
    assert_eq!(docs.len(), 4);
    for (doc, kind) in docs.iter().zip(Kind::ALL) {
        assert_eq!(
            doc,
            &serde_json::to_value(manifests::crd(kind)).unwrap(),
            "{kind}"
        );
    }
}

#[test]
fn help_lists_every_command_and_flag() {
    let out = meshguard(&["--help"]);
    let help = text(&out.stdout);
    for command in ["validate", "check", "compile", "crds"] {
        assert!(help.contains(command), "{help}");
    }
    let out = meshguard(&["check", "--help"]);
    let help = text(&out.stdout);
    for flag in [
        "--filename",
        "--from",
        "--to",
        "--protocol",
        "--port",
        "--output",
        "--explain",
        "--flows",
        "--mesh-cidr",
        "--listen-port",
    ] {
        assert!(help.contains(flag), "{flag}: {help}");
    }
    let out = meshguard(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn secret_data_and_string_data_give_the_same_digests() {
    use base64::{Engine, engine::general_purpose::STANDARD};
    let encode = |bytes: &[u8]| STANDARD.encode(bytes);
    let plain = workspace("string-data", &[]);
    let encoded = workspace("data", &[]);
    let chain = std::fs::read_to_string(encoded.join("in/orders-chain.yaml")).unwrap();
    let chain = chain
        .replace("stringData:\n  mobile-app: mk_live_7Qy2vR9sLw4pXc1NbT6eHd3Z\n  partner-portal: mk_live_K8fJ2mW5qA9rUz4YgP1sVb7C",
            &format!("data:\n  mobile-app: {}\n  partner-portal: {}", encode(b"mk_live_7Qy2vR9sLw4pXc1NbT6eHd3Z"), encode(b"mk_live_K8fJ2mW5qA9rUz4YgP1sVb7C")));
    assert!(
        chain.contains("data:\n  mobile-app: "),
        "the example changed shape"
    );
    std::fs::write(encoded.join("in/orders-chain.yaml"), chain).unwrap();
    for dir in [&plain, &encoded] {
        let out = meshguard(&[
            "compile",
            "-f",
            &dir.join("in").display().to_string(),
            "--out",
            &dir.join("out").display().to_string(),
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    let read = |dir: &PathBuf| std::fs::read_to_string(dir.join("out/web-1.yaml")).unwrap();
    assert_eq!(read(&plain), read(&encoded));
}
