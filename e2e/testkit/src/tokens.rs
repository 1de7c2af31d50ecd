//! JWTs and key sets made by PyJWT (`python/mint.py`), so the tests of our
//! verifier never trust tokens our own code signed. Needs `.venv/` from
//! `make deps` (or `$MESHGUARD_VENV`); without it a test fails saying so.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a panic is a failure report

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use serde_json::Value;

/// The repository (this crate is `e2e/testkit`).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("e2e/testkit lies two levels below the repository")
        .to_path_buf()
}

/// A program of the Python venv `make deps` builds.
pub fn venv_tool(name: &str) -> PathBuf {
    let venv = repo().join(std::env::var_os("MESHGUARD_VENV").unwrap_or_else(|| ".venv".into()));
    let tool = venv.join("bin").join(name);
    assert!(
        tool.exists(),
        "{} is missing: run `make deps` (or set MESHGUARD_VENV)",
        tool.display()
    );
    tool
}

/// Runs `mint.py` on `request` (see its docstring); returns
/// `{"jwks": …, "tokens": […]}`.
pub fn mint(request: &Value) -> Value {
    let mut child = Command::new(venv_tool("python"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("python/mint.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "mint.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
