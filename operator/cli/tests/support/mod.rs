//! What the CLI's tests share: the binary, `check --flows` as the brute
//! force they are held to, and `examples/` copied with an edit (the
//! README's quarantine of web-2).

// Each test file uses part of it.
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use serde_json::Value;

pub fn meshguard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshguard"))
        .args(args)
        .output()
        .expect("run meshguard")
}

/// `meshguard compile -f inputs --out out`.
pub fn compile(inputs: &Path, out: &Path) -> Output {
    meshguard(&[
        "compile",
        "-f",
        inputs.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ])
}

/// `meshguard check -f inputs --flows FILE -o json` for `lines` (one flow
/// each, `FROM TO PROTOCOL [PORT]`): one answer per line, in order. The
/// flows file is written in `scratch` and removed after.
pub fn check_flows(inputs: &Path, lines: &str, scratch: &Path) -> Vec<Value> {
    let file = scratch.join("flows.txt");
    std::fs::write(&file, lines).unwrap();
    let run = meshguard(&[
        "check",
        "-f",
        inputs.to_str().unwrap(),
        "--flows",
        file.to_str().unwrap(),
        "-o",
        "json",
    ]);
    std::fs::remove_file(&file).unwrap();
    assert!(
        matches!(run.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let answers: Vec<Value> = String::from_utf8(run.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(answers.len(), lines.lines().count());
    answers
}

/// `examples/`'s manifests copied into `dir`, each file's text through
/// `edit(file name, text)`.
pub fn examples_with(dir: &Path, edit: impl Fn(&str, String) -> String) -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap();
    std::fs::create_dir_all(dir).unwrap();
    for entry in std::fs::read_dir(repo.join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            let text = edit(&name, std::fs::read_to_string(&path).unwrap());
            std::fs::write(dir.join(&name), text).unwrap();
        }
    }
    dir.to_path_buf()
}

/// The README's edit: web-2 labelled `meshguard.io/quarantine: "true"`
/// (`examples/quarantine.yaml` then denies all of its traffic).
pub fn quarantine_web_2(name: &str, text: String) -> String {
    if name != "mesh-nodes.yaml" {
        return text;
    }
    let quarantined = text.replace(
        "labels: { role: web, topology.kubernetes.io/zone: eu-2 }",
        "labels: { role: web, topology.kubernetes.io/zone: eu-2, meshguard.io/quarantine: \"true\" }",
    );
    assert_ne!(
        quarantined, text,
        "web-2's labels moved in examples/mesh-nodes.yaml"
    );
    quarantined
}
