//! Checks the API server cannot run: map keys (a structural schema has no way
//! to constrain them), JWKS documents (CEL cannot parse JSON), and names.
//!
//! These run on objects that already passed the schema and CEL stages, so they
//! work on the typed form.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{FieldError, Stage, jwks};
use crate::{
    Kind, MeshPolicy, PolicyChain, patterns,
    policy_chain::{ChainStep, JwtStep},
    selector::{LabelSelector, PeerSelector},
};

static DNS_SUBDOMAIN: LazyLock<Regex> = LazyLock::new(|| compile(patterns::DNS_SUBDOMAIN));
static DNS_LABEL: LazyLock<Regex> = LazyLock::new(|| compile(patterns::DNS_LABEL));
static LABEL_KEY: LazyLock<Regex> = LazyLock::new(|| compile(patterns::LABEL_KEY));
static HEADER_NAME: LazyLock<Regex> = LazyLock::new(|| compile(patterns::HTTP_HEADER_NAME));

/// The patterns are constants of this crate, and a test compiles each of them.
#[allow(clippy::expect_used)]
fn compile(pattern: &str) -> Regex {
    Regex::new(pattern).expect("patterns in crate::patterns compile")
}

/// `metadata.name` (and a PolicyChain's namespace) as the API server requires them.
pub fn check_metadata(kind: Kind, object: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    match object.pointer("/metadata/name").and_then(Value::as_str) {
        None | Some("") => errors.push(semantic("metadata.name", "Required value")),
        Some(name) if name.len() > 253 || !DNS_SUBDOMAIN.is_match(name) => errors.push(semantic(
            "metadata.name",
            format!("Invalid value: {name:?}: must be a lowercase RFC 1123 subdomain (a-z, 0-9, '-' and '.', at most 253 characters)"),
        )),
        Some(_) => {}
    }
    if kind.namespaced()
        && let Some(namespace) = object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
        && (namespace.len() > 63 || !DNS_LABEL.is_match(namespace))
    {
        errors.push(semantic(
            "metadata.namespace",
            format!("Invalid value: {namespace:?}: must be a lowercase RFC 1123 label"),
        ));
    }
    errors
}

/// The Rust-only checks of one kind.
pub fn check(kind: Kind, object: &Value) -> Vec<FieldError> {
    match kind {
        Kind::MeshPolicy => {
            typed::<MeshPolicy>(object).map_or_else(|e| vec![e], |p| mesh_policy(&p))
        }
        Kind::PolicyChain => {
            typed::<PolicyChain>(object).map_or_else(|e| vec![e], |c| policy_chain(&c))
        }
        // Everything about these is expressible in the schema and CEL.
        Kind::MeshNode | Kind::NodePolicy => Vec::new(),
    }
}

fn typed<T: DeserializeOwned>(object: &Value) -> Result<T, FieldError> {
    serde_json::from_value(object.clone()).map_err(|e| semantic("<root>", e.to_string()))
}

fn mesh_policy(policy: &MeshPolicy) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (r, rule) in policy.spec.rules.iter().enumerate() {
        for (side, selectors) in [("from", &rule.from), ("to", &rule.to)] {
            for (s, selector) in selectors.iter().enumerate() {
                let PeerSelector {
                    node_selector: Some(labels),
                    ..
                } = selector
                else {
                    continue;
                };
                let path = format!("spec.rules[{r}].{side}[{s}].nodeSelector");
                label_selector(labels, &path, &mut errors);
            }
        }
    }
    errors
}

fn policy_chain(chain: &PolicyChain) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Some(labels) = &chain.spec.node_selector {
        label_selector(labels, "spec.nodeSelector", &mut errors);
    }
    for (i, step) in chain.spec.policies.iter().enumerate() {
        chain_step(step, &format!("spec.policies[{i}]"), &mut errors);
    }
    errors
}

fn chain_step(step: &ChainStep, path: &str, errors: &mut Vec<FieldError>) {
    if let Some(headers) = step.when.as_ref().and_then(|w| w.headers.as_ref()) {
        header_names(headers, &format!("{path}.when.headers"), errors);
    }
    if let Some(step) = &step.headers {
        for (side, mutation) in [("request", &step.request), ("response", &step.response)] {
            if let Some(set) = mutation.as_ref().and_then(|m| m.set.as_ref()) {
                header_names(set, &format!("{path}.headers.{side}.set"), errors);
            }
        }
    }
    if let Some(jwt) = &step.jwt {
        inline_jwks(jwt, &format!("{path}.jwt"), errors);
    }
    for (i, credential) in step.any_of.iter().flatten().enumerate() {
        if let Some(jwt) = &credential.jwt {
            inline_jwks(jwt, &format!("{path}.anyOf[{i}].jwt"), errors);
        }
    }
}

fn label_selector(selector: &LabelSelector, path: &str, errors: &mut Vec<FieldError>) {
    for key in selector.match_labels.iter().flat_map(BTreeMap::keys) {
        if key.len() > patterns::LABEL_KEY_MAX || !LABEL_KEY.is_match(key) {
            errors.push(semantic(
                format!("{path}.matchLabels[{key}]"),
                "label key must be a qualified name: an optional DNS-subdomain prefix and '/', then at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
            ));
        }
    }
}

fn header_names(map: &BTreeMap<String, String>, path: &str, errors: &mut Vec<FieldError>) {
    for name in map.keys() {
        if name.len() > 256 || !HEADER_NAME.is_match(name) {
            errors.push(semantic(
                format!("{path}[{name}]"),
                "header name must be an HTTP token (letters, digits and !#$%&'*+.^_`|~-)",
            ));
        }
    }
}

fn inline_jwks(jwt: &JwtStep, path: &str, errors: &mut Vec<FieldError>) {
    if let Some(document) = &jwt.jwks.inline
        && let Err(e) = jwks::check(document)
    {
        errors.push(semantic(
            format!("{path}.jwks.inline"),
            format!("invalid JWKS: {e}"),
        ));
    }
}

fn semantic(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError::new(field, message, Stage::Semantic)
}
