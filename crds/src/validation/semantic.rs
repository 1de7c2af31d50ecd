//! Checks beyond the schema and CEL, each for a stated reason:
//!
//! - map keys (`matchLabels` keys, header names): a CEL regex over map keys
//!   would exceed the API server's cost budget, whose estimator cannot bound
//!   a key's length;
//! - CIDRs: kube-cel's `isCIDR` accepts leading zeros (`010.0.0.0/8`,
//!   `10.0.0.0/08`) that the API server's (Go `netip`) refuses, so the CLI would
//!   pass what `kubectl apply` rejects (its `isIP` is already strict);
//! - JWKS documents: CEL cannot parse JSON;
//! - object names and labels: the API server checks them itself, outside the schema.
//!
//! These run on objects that already passed the schema and CEL stages, so they
//! work on the typed form.

use std::{collections::BTreeMap, net::IpAddr, sync::LazyLock};

use regex::Regex;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{
    error::{FieldError, Stage},
    jwks,
};
use crate::{
    Kind, MeshNode, MeshPolicy, PolicyChain, patterns,
    policy_chain::{ChainStep, JwtStep},
    selector::LabelSelector,
};

static DNS_SUBDOMAIN: LazyLock<Regex> = LazyLock::new(|| compile(patterns::DNS_SUBDOMAIN));
static DNS_LABEL: LazyLock<Regex> = LazyLock::new(|| compile(patterns::DNS_LABEL));
static LABEL_KEY: LazyLock<Regex> = LazyLock::new(|| compile(patterns::LABEL_KEY));
static LABEL_VALUE: LazyLock<Regex> = LazyLock::new(|| compile(patterns::LABEL_VALUE));
static HEADER_NAME: LazyLock<Regex> = LazyLock::new(|| compile(patterns::HTTP_HEADER_NAME));

const LABEL_KEY_MESSAGE: &str = "label key must be a qualified name: an optional DNS-subdomain prefix of at most 253 characters and '/', then at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit";
const LABEL_VALUE_MESSAGE: &str = "a label value is at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit";
const HEADER_MESSAGE: &str =
    "header name must be an HTTP token (letters, digits and !#$%&'*+.^_`|~-)";
const ADDRESS_MESSAGE: &str =
    "write the address without leading zeros, as the API server requires (such as 10.0.0.0/8)";

/// The patterns are constants of this crate, and a test compiles each of them.
#[allow(clippy::expect_used)]
fn compile(pattern: &str) -> Regex {
    Regex::new(pattern).expect("patterns in crate::patterns compile")
}

/// `metadata` as the API server requires it: a name, valid labels, and for a
/// PolicyChain a valid namespace.
pub fn check_metadata(kind: Kind, object: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    match object.pointer("/metadata/name").and_then(Value::as_str) {
        None | Some("") => errors.push(semantic("metadata.name", "Required value")),
        Some(name) if name.len() > patterns::DNS_SUBDOMAIN_MAX || !DNS_SUBDOMAIN.is_match(name) => errors.push(semantic(
            "metadata.name",
            format!("Invalid value: {name:?}: must be a lowercase RFC 1123 subdomain (a-z, 0-9, '-' and '.', at most 253 characters)"),
        )),
        Some(_) => {}
    }
    let labels = object
        .pointer("/metadata/labels")
        .and_then(Value::as_object);
    for (key, value) in labels.into_iter().flatten() {
        let field = format!("metadata.labels[{key}]");
        if !is_label_key(key) {
            errors.push(semantic(field.clone(), LABEL_KEY_MESSAGE));
        }
        if !value
            .as_str()
            .is_some_and(|v| v.len() <= 63 && LABEL_VALUE.is_match(v))
        {
            errors.push(semantic(
                field,
                format!("Invalid value: {value}: {LABEL_VALUE_MESSAGE}"),
            ));
        }
    }
    let namespace = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str);
    if kind.namespaced()
        && let Some(namespace) = namespace
        && (namespace.len() > 63 || !DNS_LABEL.is_match(namespace))
    {
        errors.push(semantic(
            "metadata.namespace",
            format!("Invalid value: {namespace:?}: must be a lowercase RFC 1123 label"),
        ));
    }
    errors
}

/// The Rust-only checks of one kind's spec.
pub fn check(kind: Kind, object: &Value) -> Vec<FieldError> {
    let result = match kind {
        Kind::MeshPolicy => typed::<MeshPolicy>(object).map(|p| mesh_policy(&p)),
        Kind::PolicyChain => typed::<PolicyChain>(object).map(|c| policy_chain(&c)),
        Kind::MeshNode => typed::<MeshNode>(object).map(|n| mesh_node(&n)),
        // Written by the operator from objects that passed these checks.
        Kind::NodePolicy => Ok(Vec::new()),
    };
    result.unwrap_or_else(|e| vec![e])
}

fn typed<T: DeserializeOwned>(object: &Value) -> Result<T, FieldError> {
    serde_json::from_value(object.clone()).map_err(|e| semantic("<root>", e.to_string()))
}

fn mesh_policy(policy: &MeshPolicy) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (r, rule) in policy.spec.rules.iter().enumerate() {
        for (side, selectors) in [("from", &rule.from), ("to", &rule.to)] {
            for (s, selector) in selectors.iter().enumerate() {
                let path = format!("spec.rules[{r}].{side}[{s}]");
                if let Some(labels) = &selector.node_selector {
                    label_selector(labels, &format!("{path}.nodeSelector"), &mut errors);
                }
                for (b, block) in selector.cidrs.iter().flatten().enumerate() {
                    strict_cidr(&block.cidr, &format!("{path}.cidrs[{b}].cidr"), &mut errors);
                    for (e, hole) in block.except.iter().flatten().enumerate() {
                        strict_cidr(hole, &format!("{path}.cidrs[{b}].except[{e}]"), &mut errors);
                    }
                }
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

fn mesh_node(node: &MeshNode) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (i, cidr) in node.spec.allowed_ips.iter().flatten().enumerate() {
        strict_cidr(cidr, &format!("spec.allowedIPs[{i}]"), &mut errors);
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
    if let Some(access) = &step.access {
        for (side, matcher) in [("allow", &access.allow), ("deny", &access.deny)] {
            let cidrs = matcher.iter().flat_map(|m| m.source_cidrs.iter().flatten());
            for (i, cidr) in cidrs.enumerate() {
                strict_cidr(
                    cidr,
                    &format!("{path}.access.{side}.sourceCIDRs[{i}]"),
                    errors,
                );
            }
        }
    }
}

/// The pattern bounds the name to 63 characters; a pattern cannot bound
/// the prefix (a DNS subdomain, at most 253), so this does, as Kubernetes'
/// own label validation does.
fn is_label_key(key: &str) -> bool {
    let prefix_fits = key
        .rsplit_once('/')
        .is_none_or(|(prefix, _)| prefix.len() <= patterns::DNS_SUBDOMAIN_MAX);
    key.len() <= patterns::LABEL_KEY_MAX && prefix_fits && LABEL_KEY.is_match(key)
}

fn label_selector(selector: &LabelSelector, path: &str, errors: &mut Vec<FieldError>) {
    for key in selector.match_labels.iter().flat_map(BTreeMap::keys) {
        if !is_label_key(key) {
            errors.push(semantic(
                format!("{path}.matchLabels[{key}]"),
                LABEL_KEY_MESSAGE,
            ));
        }
    }
    // The schema checked their shape; this adds the prefix's length.
    for (i, requirement) in selector.match_expressions.iter().flatten().enumerate() {
        if !is_label_key(&requirement.key) {
            errors.push(semantic(
                format!("{path}.matchExpressions[{i}].key"),
                LABEL_KEY_MESSAGE,
            ));
        }
    }
}

fn header_names(map: &BTreeMap<String, String>, path: &str, errors: &mut Vec<FieldError>) {
    for name in map.keys() {
        if name.len() > 256 || !HEADER_NAME.is_match(name) {
            errors.push(semantic(format!("{path}[{name}]"), HEADER_MESSAGE));
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

/// A CIDR as Go's `netip.ParsePrefix` reads it: a strict address, `/`, and a
/// prefix length without leading zeros that fits the family.
pub fn is_strict_cidr(text: &str) -> bool {
    let Some((address, length)) = text.split_once('/') else {
        return false;
    };
    let Ok(address) = address.parse::<IpAddr>() else {
        return false;
    };
    let width = if address.is_ipv4() { 32 } else { 128 };
    !length.is_empty()
        && length.bytes().all(|b| b.is_ascii_digit())
        && (length == "0" || !length.starts_with('0'))
        && length.parse::<u8>().is_ok_and(|l| l <= width)
}

/// Reports what CEL's `isCIDR` let through but the API server would refuse.
fn strict_cidr(text: &str, path: &str, errors: &mut Vec<FieldError>) {
    if !is_strict_cidr(text) {
        errors.push(semantic(
            path,
            format!("Invalid value: {text:?}: {ADDRESS_MESSAGE}"),
        ));
    }
}

fn semantic(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError::new(field, message, Stage::Semantic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_as_go_netip_does() {
        for ok in [
            "10.0.0.0/8",
            "0.0.0.0/0",
            "fd00::/8",
            "::/0",
            "10.0.0.1/32",
            "::ffff:10.0.0.1/128",
        ] {
            assert!(is_strict_cidr(ok), "{ok}");
        }
        for bad in [
            "010.0.0.0/8",
            "10.0.0.0/08",
            "10.0.0.0/33",
            "fd00::/129",
            "10.0.0.0/",
            "10.0.0.0",
            "fe80::1%eth0/64",
            "10.0.0.0/+8",
        ] {
            assert!(!is_strict_cidr(bad), "{bad}");
        }
    }
}
