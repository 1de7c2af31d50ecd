//! What the CLI's randomized tests share: the binary, and `check --flows`
//! as the brute force they are held to.

use std::{
    path::Path,
    process::{Command, Output},
};

use serde_json::Value;

pub fn meshguard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshguard"))
        .args(args)
        .output()
        .expect("run meshguard")
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
