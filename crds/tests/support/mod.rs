//! Sample objects for the validation tests: valid bases that a case changes
//! in one place, so each case shows only what it is about.
#![allow(dead_code)]

use meshguard_crds::{
    API_VERSION, Kind,
    validation::{FieldError, Stage, Validator},
};
use serde_json::{Value, json};

/// A valid WireGuard public key (32 bytes of base64).
pub const KEY: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";

pub fn object(kind: Kind, spec: Value) -> Value {
    let mut metadata = json!({ "name": "sample" });
    if kind.namespaced() {
        metadata["namespace"] = json!("shop");
    }
    json!({ "apiVersion": API_VERSION, "kind": kind.name(), "metadata": metadata, "spec": spec })
}

/// A MeshPolicy with these rules.
pub fn policy(rules: Value) -> Value {
    object(Kind::MeshPolicy, json!({ "rules": rules }))
}

/// A MeshPolicy with one Allow rule from `selector` to everyone.
pub fn from_selector(selector: Value) -> Value {
    policy(json!([{ "action": "Allow", "from": [selector], "to": [{ "all": true }] }]))
}

/// A MeshPolicy with one Allow rule on these ports.
pub fn with_port(port: Value) -> Value {
    policy(
        json!([{ "action": "Allow", "from": [{ "all": true }], "to": [{ "all": true }], "ports": [port] }]),
    )
}

/// A MeshPolicy with no rules and one test.
pub fn with_test(test: Value) -> Value {
    object(Kind::MeshPolicy, json!({ "tests": [test] }))
}

/// A PolicyChain for route `r` with these steps.
pub fn chain(steps: Value) -> Value {
    object(
        Kind::PolicyChain,
        json!({ "routes": ["r"], "policies": steps }),
    )
}

/// A PolicyChain with one step.
pub fn step(step: Value) -> Value {
    chain(json!([step]))
}

/// A JWT step with this JWKS source.
pub fn jwt(jwks: Value) -> Value {
    json!({ "issuer": "https://issuer.example", "jwks": jwks })
}

pub fn api_key() -> Value {
    json!({ "secretRef": { "name": "clients" } })
}

/// A PolicyChain with one rate-limit step keyed by `key`.
pub fn rate_key(key: Value) -> Value {
    step(json!({ "rateLimit": { "requests": 10, "key": key } }))
}

/// A MeshNode with `publicKey` set and these extra spec fields.
pub fn node(extra: Value) -> Value {
    let mut spec = json!({ "publicKey": KEY });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    object(Kind::MeshNode, spec)
}

pub fn kind_of(object: &Value) -> Kind {
    object["kind"]
        .as_str()
        .and_then(Kind::from_name)
        .unwrap_or_else(|| panic!("sample without a known kind: {object}"))
}

pub fn validate(validator: &Validator, object: &Value) -> Result<(), Vec<FieldError>> {
    validator.validate(kind_of(object), object)
}

/// Asserts the object is refused with exactly this error (field, message, stage) among its errors.
pub fn assert_rejected(
    validator: &Validator,
    object: &Value,
    field: &str,
    message: &str,
    stage: Stage,
) {
    let errors = validate(validator, object).expect_err(&format!(
        "accepted but should be refused ({message}): {object}"
    ));
    assert!(
        errors
            .iter()
            .any(|e| e.field == field && e.message == message && e.stage == stage),
        "expected {stage:?} error `{field}: {message}`, got {errors:#?}\nfor {object}"
    );
}

pub fn assert_accepted(validator: &Validator, object: &Value) {
    if let Err(errors) = validate(validator, object) {
        panic!("refused but should be accepted: {errors:#?}\nfor {object}");
    }
}

pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crates live one level below the repository root")
        .to_path_buf()
}

/// A tool from the Python venv `make deps` builds (`MESHGUARD_VENV` overrides it).
pub fn venv_tool(name: &str) -> std::path::PathBuf {
    // A relative path means relative to the repository, not to the crate
    // directory cargo runs tests in.
    let venv =
        repo_root().join(std::env::var_os("MESHGUARD_VENV").unwrap_or_else(|| ".venv".into()));
    let tool = venv.join("bin").join(name);
    assert!(
        tool.exists(),
        "{} is missing: run `make deps` (or set MESHGUARD_VENV)",
        tool.display()
    );
    tool
}

/// Runs `kubernetes-validate -k 1.32.0 --strict` on `files`, asserts it
/// succeeded, and returns its report (one line per object).
pub fn kubernetes_validate(files: &[std::path::PathBuf]) -> String {
    let output = std::process::Command::new(venv_tool("kubernetes-validate"))
        .args(["-k", "1.32.0", "--strict"])
        .args(files)
        .output()
        .expect("run kubernetes-validate");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "kubernetes-validate failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}
