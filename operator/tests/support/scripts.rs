//! The repository's Python checkers (`scripts/*.py`, run with the venv's
//! interpreter): JSON in on stdin, one JSON answer per line out. They hold
//! implementations that are not ours (Lua, JSONPath), so what our objects
//! mean to other systems is checked by those systems' code.

use std::{
    io::Write,
    path::Path,
    process::{Command, Stdio},
};

use meshguard_testkit::tokens::{repo, venv_tool};
use serde_json::Value;

/// Runs `scripts/<script> <args>` on `input`; its output lines, parsed.
/// Panics with its standard error when it fails.
pub fn json_lines(script: &str, args: &[&Path], input: &Value) -> Vec<Value> {
    let mut child = Command::new(venv_tool("python"))
        .arg(repo().join("scripts").join(script))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run scripts/{script}: {e}"));
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(input.to_string().as_bytes())
        .expect("write the input");
    let output = child.wait_with_output().expect("wait");
    assert!(
        output.status.success(),
        "scripts/{script}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("UTF-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}
