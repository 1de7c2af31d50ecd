//! The generated CRD manifests: identical to the Rust types everywhere they
//! are checked in, structural, accepted by `kubernetes-validate --strict`, and
//! with CEL rules that compile and fit the API server's cost budget.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

mod support;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use kube::core::cel::{CompiledSchema, ScopeContext, WarningKind, analyze_rule, compile_schema};
use meshguard_crds::{Kind, manifests, validation::openapi};
use serde_json::Value;
use support::{kubernetes_validate, repo_root};

fn manifest_files(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            entry
                .expect("directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| {
            [".yaml", ".yml", ".json"]
                .iter()
                .any(|ext| name.ends_with(ext))
        })
        .collect()
}

#[test]
fn checked_in_manifests_match_the_rust_types() {
    let root = repo_root();
    for dir in manifests::TARGET_DIRS {
        for (name, expected) in manifests::render_all().expect("render") {
            let path = root.join(dir).join(&name);
            let actual = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                actual == expected,
                "{} differs from the Rust types: run `make crds` and commit the result",
                path.display()
            );
        }
    }
}

#[test]
fn crd_folders_hold_exactly_the_four_crds() {
    // `kubectl apply -f crds/` reads every .yaml/.yml/.json directly in crds/.
    let expected: BTreeSet<String> = Kind::ALL.into_iter().map(manifests::file_name).collect();
    assert_eq!(expected.len(), 4);
    for dir in manifests::TARGET_DIRS {
        let dir = repo_root().join(dir);
        assert_eq!(manifest_files(&dir), expected, "{}", dir.display());
        for name in &expected {
            let text = std::fs::read_to_string(dir.join(name)).expect("read");
            let docs: Vec<Value> = serde_saphyr::from_multiple(&text).expect("YAML");
            assert_eq!(docs.len(), 1, "{name}: one document per file");
            assert_eq!(docs[0]["apiVersion"], "apiextensions.k8s.io/v1");
            assert_eq!(docs[0]["kind"], "CustomResourceDefinition");
        }
    }
}

#[test]
fn kustomization_installs_the_crds() {
    let text = std::fs::read_to_string(repo_root().join("deploy/kustomization.yaml"))
        .expect("deploy/kustomization.yaml");
    let doc: Value = serde_saphyr::from_str(&text).expect("YAML");
    let listed: BTreeSet<String> = doc["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(Value::as_str)
        .filter(|r| r.starts_with("crds/"))
        .map(str::to_owned)
        .collect();
    let expected: BTreeSet<String> = Kind::ALL
        .into_iter()
        .map(|k| format!("crds/{}", manifests::file_name(k)))
        .collect();
    assert_eq!(listed, expected);
}

#[test]
fn names_scope_and_columns_are_what_people_type() {
    for kind in Kind::ALL {
        let crd = manifests::crd(kind);
        let names = &crd.spec.names;
        assert_eq!(crd.spec.group, "meshguard.io");
        assert_eq!(names.kind, kind.name());
        assert_eq!(
            names.categories.as_deref(),
            Some(&["meshguard".to_owned()][..]),
            "{kind}"
        );
        assert_eq!(names.short_names.as_ref().map(Vec::len), Some(1), "{kind}");
        let scope = if kind.namespaced() {
            "Namespaced"
        } else {
            "Cluster"
        };
        assert_eq!(crd.spec.scope, scope, "{kind}");
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            "{kind}: status subresource"
        );
        let columns: Vec<&str> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .filter(|c| c.priority.unwrap_or(0) == 0)
            .map(|c| c.name.as_str())
            .collect();
        let expected: &[&str] = match kind {
            // At a glance (issue 15): MeshPolicy priority, mode, enforced
            // n of m, accepted, tests; NodePolicy revision, applied,
            // backend, peers, rules; MeshNode mesh IP, ready, endpoint;
            // PolicyChain routes, accepted, ready. What they show is
            // checked in operator/tests/printer_columns.rs.
            Kind::MeshPolicy => &[
                "Priority", "Mode", "Enforced", "Targeted", "Accepted", "Tests", "Age",
            ],
            Kind::NodePolicy => &[
                "Peers", "Rules", "Backend", "Revision", "Applied", "Ready", "Age",
            ],
            Kind::MeshNode => &["Mesh IP", "Endpoint", "Ready", "Age"],
            Kind::PolicyChain => &["Routes", "Accepted", "Ready", "Age"],
        };
        assert_eq!(columns, expected, "{kind}");
        // Every column points at a field the schema has.
        let schema = manifests::schema(kind);
        for column in version.additional_printer_columns.iter().flatten() {
            let path = column.json_path.trim_start_matches('.');
            let first = path.split(['.', '[']).take(2).collect::<Vec<_>>();
            if first[0] == "metadata" {
                continue;
            }
            let node = &schema["properties"][first[0]]["properties"][first[1]];
            assert!(
                node.is_object(),
                "{kind}: column {} points at a missing field",
                column.name
            );
        }
    }
}

// ---- structural schemas

const TYPES: [&str; 6] = ["object", "array", "string", "integer", "number", "boolean"];
const FORBIDDEN: [&str; 12] = [
    "$ref",
    "$schema",
    "definitions",
    "dependencies",
    "patternProperties",
    "additionalItems",
    "uniqueItems",
    "oneOf",
    "anyOf",
    "allOf",
    "not",
    "nullable",
];

fn structural_errors(schema: &Value, path: &str, errors: &mut Vec<String>) {
    let Some(node) = schema.as_object() else {
        errors.push(format!("{path}: not a schema object"));
        return;
    };
    let escape = node.contains_key("x-kubernetes-int-or-string")
        || node.contains_key("x-kubernetes-preserve-unknown-fields");
    match node.get("type").and_then(Value::as_str) {
        Some(t) if TYPES.contains(&t) => {}
        Some(t) => errors.push(format!("{path}: unknown type {t}")),
        None if escape => {}
        None => errors.push(format!("{path}: no type")),
    }
    for key in FORBIDDEN {
        if node.contains_key(key) {
            errors.push(format!(
                "{path}: `{key}` (not allowed or not supported here)"
            ));
        }
    }
    if node.contains_key("properties") && node.contains_key("additionalProperties") {
        errors.push(format!(
            "{path}: properties and additionalProperties together"
        ));
    }
    if node.get("additionalProperties") == Some(&Value::Bool(false)) {
        errors.push(format!("{path}: additionalProperties: false"));
    }
    if let Some(default) = node.get("default") {
        let problems = openapi::check_value(schema, default);
        if !problems.is_empty() {
            errors.push(format!(
                "{path}: default {default} is invalid: {problems:?}"
            ));
        }
    }
    match node.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => {
            let item_type = node["items"]["type"].as_str().unwrap_or("");
            if item_type == "object" || item_type == "array" {
                errors.push(format!("{path}: a set list needs scalar items"));
            }
        }
        Some("map") => {
            let items = &node["items"];
            let required: Vec<&str> = items["required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            for key in node["x-kubernetes-list-map-keys"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                let defaulted = items["properties"][key].get("default").is_some();
                if !required.contains(&key) && !defaulted {
                    errors.push(format!(
                        "{path}: map key {key} is neither required nor defaulted"
                    ));
                }
            }
        }
        Some("atomic") | None => {}
        Some(other) => errors.push(format!("{path}: unknown list type {other}")),
    }
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        for (name, child) in props {
            structural_errors(child, &format!("{path}.{name}"), errors);
        }
    }
    if let Some(items) = node.get("items") {
        structural_errors(items, &format!("{path}[]"), errors);
    }
    if let Some(additional) = node.get("additionalProperties").filter(|a| a.is_object()) {
        structural_errors(additional, &format!("{path}{{}}"), errors);
    }
}

#[test]
fn schemas_are_structural() {
    for kind in Kind::ALL {
        let schema = manifests::schema(kind);
        let mut errors = Vec::new();
        structural_errors(&schema, kind.name(), &mut errors);
        assert!(errors.is_empty(), "{kind}: {errors:#?}");
        assert_eq!(schema["type"], "object");
        assert!(
            schema["properties"].get("metadata").is_none(),
            "{kind}: metadata must stay unconstrained"
        );
    }
}

#[test]
fn the_structural_check_catches_what_it_claims() {
    let bad = serde_json::json!({
        "type": "object",
        "properties": {
            "a": { "type": "strin" },
            "b": { "description": "no type" },
            "c": { "type": "array", "items": { "type": "string" }, "uniqueItems": true },
            "d": { "type": "integer", "minimum": 1, "default": 0 },
        },
    });
    let mut errors = Vec::new();
    structural_errors(&bad, "t", &mut errors);
    assert_eq!(errors.len(), 4, "{errors:#?}");
}

// ---- CEL rules: compile, bounds, cost

fn compile_errors(node: &CompiledSchema, path: &str, out: &mut Vec<String>) {
    for error in node.compilation_errors() {
        out.push(format!("{path}: {error}"));
    }
    for (name, child) in &node.properties {
        compile_errors(child, &format!("{path}.{name}"), out);
    }
    if let Some(items) = &node.items {
        compile_errors(items, &format!("{path}[]"), out);
    }
    if let Some(additional) = &node.additional_properties {
        compile_errors(additional, &format!("{path}{{}}"), out);
    }
}

#[test]
fn every_cel_rule_compiles() {
    for kind in Kind::ALL {
        let mut errors = Vec::new();
        compile_errors(
            &compile_schema(&manifests::schema(kind)),
            kind.name(),
            &mut errors,
        );
        assert!(errors.is_empty(), "{errors:#?}");
    }
}

/// The API server's limits (k8s.io/apiextensions-apiserver): one rule's
/// estimated cost times the number of places it can be evaluated, and the sum
/// over a whole CRD.
const RULE_BUDGET: u64 = 10_000_000;
const CRD_BUDGET: u64 = 100_000_000;

/// How many elements a list or map node can hold; `None` when unbounded.
fn bound(node: &Value) -> Option<u64> {
    match node["type"].as_str() {
        Some("array") => node["maxItems"].as_u64(),
        Some("object")
            if node
                .get("additionalProperties")
                .is_some_and(Value::is_object) =>
        {
            node["maxProperties"].as_u64()
        }
        _ => Some(1),
    }
}

/// The largest per-character factor of any string in the subtree, as cel-go
/// charges string traversal at 0.1 per character; `None` if a string is unbounded.
fn string_factor(node: &Value) -> Option<u64> {
    let own = match node["type"].as_str() {
        Some("string") if node.get("enum").is_some() => 1,
        Some("string") => node["maxLength"].as_u64()? / 10 + 1,
        _ => 1,
    };
    let mut factor = own;
    let children = node["properties"]
        .as_object()
        .into_iter()
        .flat_map(|p| p.values())
        .chain(node.get("items"))
        .chain(node.get("additionalProperties").filter(|a| a.is_object()));
    for child in children {
        factor = factor.max(string_factor(child)?);
    }
    Some(factor)
}

/// The string factor of what a rule reads: `self.<field>` or `self` itself.
/// `has(...)` only tests presence, so it reads nothing.
fn read_string_factor(rule: &str, node: &Value) -> Option<u64> {
    let presence = regex::Regex::new(r"has\([^)]*\)").expect("regex");
    let reads = regex::Regex::new(r"\bself(\.([A-Za-z_][A-Za-z0-9_]*))?").expect("regex");
    let rule = presence.replace_all(rule, "");
    let mut factor = 1;
    for read in reads.captures_iter(&rule) {
        let target = match read.get(2) {
            Some(field) => &node["properties"][field.as_str()],
            None => node,
        };
        factor = factor.max(string_factor(target)?);
    }
    Some(factor)
}

/// The product of the bounds of the lists a rule iterates (`X.all(`, `X.exists_one(`, ...),
/// where X is `self`, `self.<field>` or a list literal.
fn iterations(rule: &str, node: &Value) -> Option<u64> {
    let mut product = 1u64;
    for macro_name in [".all(", ".exists(", ".exists_one(", ".filter(", ".map("] {
        for (at, _) in rule.match_indices(macro_name) {
            let receiver = &rule[..at];
            let count = if receiver.ends_with(']') {
                // A list literal: count its elements.
                let open = receiver.rfind('[')?;
                receiver[open..].matches(',').count() as u64 + 1
            } else if receiver.ends_with("self") {
                bound(node)?
            } else {
                let field = receiver.rsplit("self.").next()?;
                bound(&node["properties"][field])?
            };
            product = product.checked_mul(count)?;
        }
    }
    Some(product)
}

struct RuleCost {
    location: String,
    rule: String,
    cost: u64,
}

/// A deliberately pessimistic estimate: every call and operator in the rule
/// pays the worst string factor of what the rule reads, on every iteration,
/// times the rule's cardinality (the product of the bounds of every enclosing list).
fn rule_costs(node: &Value, path: &str, cardinality: u64, out: &mut Vec<RuleCost>) {
    for rule in node["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let text = rule["rule"].as_str().unwrap_or_default();
        let operations = 1
            + text.matches('(').count() as u64
            + text.matches("&&").count() as u64
            + text.matches("||").count() as u64
            + text.matches("==").count() as u64;
        let cost = read_string_factor(text, node)
            .zip(iterations(text, node))
            .map(|(s, i)| operations * s * i * cardinality)
            .unwrap_or(u64::MAX);
        out.push(RuleCost {
            location: path.to_owned(),
            rule: text.to_owned(),
            cost,
        });
    }
    let inner = cardinality.saturating_mul(bound(node).unwrap_or(u64::MAX));
    for (name, child) in node["properties"].as_object().into_iter().flatten() {
        rule_costs(child, &format!("{path}.{name}"), cardinality, out);
    }
    if let Some(items) = node.get("items") {
        rule_costs(items, &format!("{path}[]"), inner, out);
    }
    if let Some(additional) = node.get("additionalProperties").filter(|a| a.is_object()) {
        rule_costs(additional, &format!("{path}{{}}"), inner, out);
    }
}

#[test]
fn cel_rules_fit_the_api_server_cost_budget() {
    for kind in Kind::ALL {
        let mut costs = Vec::new();
        rule_costs(&manifests::schema(kind), kind.name(), 1, &mut costs);
        for c in &costs {
            assert!(
                c.cost <= RULE_BUDGET,
                "{}: rule `{}` estimated at {} > {RULE_BUDGET}",
                c.location,
                c.rule,
                c.cost
            );
        }
        let total: u64 = costs.iter().map(|c| c.cost).fold(0, u64::saturating_add);
        assert!(
            total <= CRD_BUDGET,
            "{kind}: rules estimated at {total} in all > {CRD_BUDGET}"
        );
        println!(
            "{kind}: {} rules, estimated total cost {total}, largest {}",
            costs.len(),
            costs.iter().map(|c| c.cost).max().unwrap_or(0)
        );
    }
}

#[test]
fn the_cost_estimate_refuses_unbounded_and_oversized_lists() {
    let unbounded = serde_json::json!({ "type": "object", "properties": { "xs": {
        "type": "array", "items": { "type": "string", "maxLength": 10 },
        "x-kubernetes-validations": [{ "rule": "self.all(x, x.size() > 0)" }] } } });
    let mut costs = Vec::new();
    rule_costs(&unbounded, "t", 1, &mut costs);
    assert_eq!(costs[0].cost, u64::MAX);

    let nested = serde_json::json!({ "type": "array", "maxItems": 1000, "items": { "type": "array", "maxItems": 1000,
        "items": { "type": "object", "properties": { "s": { "type": "string", "maxLength": 253 } },
        "x-kubernetes-validations": [{ "rule": "self.s.size() > 0" }] } } });
    let mut costs = Vec::new();
    rule_costs(&nested, "t", 1, &mut costs);
    assert!(costs[0].cost > RULE_BUDGET);
}

fn analysis_warnings(node: &CompiledSchema, path: &str, out: &mut Vec<String>) {
    for rule in node.validations.iter().flatten() {
        // Only the cost and bounds findings: kube-cel 0.8's scope check counts
        // comprehension variables (`x` in `self.all(x, ...)`) as free variables.
        let findings = analyze_rule(&rule.rule.rule, node, ScopeContext::CrdValidation);
        for warning in findings
            .into_iter()
            .filter(|w| w.kind != WarningKind::WrongScope)
        {
            out.push(format!("{path}: {}: {}", rule.rule.rule, warning.message));
        }
    }
    for (name, child) in &node.properties {
        analysis_warnings(child, &format!("{path}.{name}"), out);
    }
    if let Some(items) = &node.items {
        analysis_warnings(items, &format!("{path}[]"), out);
    }
}

#[test]
fn kube_cel_static_analysis_has_no_warnings() {
    for kind in Kind::ALL {
        let mut warnings = Vec::new();
        analysis_warnings(
            &compile_schema(&manifests::schema(kind)),
            kind.name(),
            &mut warnings,
        );
        assert!(warnings.is_empty(), "{warnings:#?}");
    }
}

// ---- kubernetes-validate

#[test]
fn kubernetes_validate_accepts_every_crd_strictly() {
    let root = repo_root();
    let files: Vec<PathBuf> = manifests::TARGET_DIRS
        .iter()
        .flat_map(|dir| {
            let dir = root.join(dir);
            Kind::ALL
                .into_iter()
                .map(move |k| dir.join(manifests::file_name(k)))
        })
        .collect();
    let stdout = kubernetes_validate(&files);
    assert_eq!(
        stdout
            .matches(" passed for resource customresourcedefinition/")
            .count(),
        files.len(),
        "{stdout}"
    );
}

// ---- docs/api.md

/// The schema node at a documented path like `spec.rules[].from`.
fn node_at<'a>(schema: &'a Value, path: &str) -> &'a Value {
    let mut node = schema;
    for part in path.split('.') {
        let (name, items) = part.strip_suffix("[]").map_or((part, false), |n| (n, true));
        node = &node["properties"][name];
        if items {
            node = &node["items"];
        }
    }
    node
}

/// The limits table of docs/api.md: (kind, field, at most).
fn documented_limits() -> Vec<(Kind, String, u64)> {
    let doc = std::fs::read_to_string(repo_root().join("docs/api.md")).expect("docs/api.md");
    let table = doc
        .split("<!-- limits:begin -->")
        .nth(1)
        .and_then(|t| t.split("<!-- limits:end -->").next())
        .expect("limits table markers");
    table
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| kind"))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            let [kind, field, limit] = cells[..] else {
                panic!("bad row: {line}")
            };
            let kind = Kind::from_name(kind).unwrap_or_else(|| panic!("unknown kind in {line}"));
            let limit = limit
                .parse()
                .unwrap_or_else(|_| panic!("bad limit in {line}"));
            (kind, field.trim_matches('`').to_owned(), limit)
        })
        .collect()
}

#[test]
fn documented_limits_match_the_schemas() {
    let limits = documented_limits();
    for (kind, field, limit) in &limits {
        let schema = manifests::schema(*kind);
        let node = node_at(&schema, field);
        let actual = ["maxItems", "maxProperties", "maxLength"]
            .iter()
            .find_map(|k| node[k].as_u64());
        assert_eq!(actual, Some(*limit), "docs/api.md: {kind} {field}");
    }
    assert!(limits.len() >= 20, "limits table has {} rows", limits.len());
}

/// A value one past `limit` for the schema node (a list, a map or a string).
fn one_too_many(node: &Value, limit: u64) -> Value {
    let element = |items: &Value, i: u64| match items["type"].as_str() {
        Some("string") => Value::from(format!("x{i}")),
        Some("integer") => Value::from(i),
        _ => serde_json::json!({}),
    };
    let n = limit + 1;
    if node.get("maxItems").is_some() {
        Value::Array((0..n).map(|i| element(&node["items"], i)).collect())
    } else if node.get("maxProperties").is_some() {
        Value::Object(
            (0..n)
                .map(|i| (format!("k{i}"), element(&node["additionalProperties"], i)))
                .collect(),
        )
    } else {
        Value::from("x".repeat(n as usize))
    }
}

/// Every limit of the table is enforced by the checks the CLI and the
/// operator run (`Validator::validate`), with an error naming the field
/// and the limit: an object one past it is refused.
#[test]
fn every_documented_limit_is_enforced_naming_the_field() {
    let validator = meshguard_crds::validation::Validator::new();
    for (kind, field, limit) in documented_limits() {
        let schema = manifests::schema(kind);
        let mut object = serde_json::json!({
            "apiVersion": meshguard_crds::API_VERSION,
            "kind": kind.name(),
            "metadata": { "name": "limits" },
        });
        let parts: Vec<&str> = field.split('.').collect();
        let (mut at, mut node, mut path) = (&mut object, &schema, String::new());
        for (i, part) in parts.iter().enumerate() {
            let (name, items) = part
                .strip_suffix("[]")
                .map_or((*part, false), |n| (n, true));
            node = &node["properties"][name];
            path = if path.is_empty() {
                name.to_owned()
            } else {
                format!("{path}.{name}")
            };
            if i + 1 == parts.len() {
                at[name] = one_too_many(node, limit);
            } else if items {
                at[name] = serde_json::json!([{}]);
                at = &mut at[name][0];
                node = &node["items"];
                path.push_str("[0]");
            } else {
                if at[name].is_null() {
                    at[name] = serde_json::json!({});
                }
                at = &mut at[name];
            }
        }
        let errors = validator
            .validate(kind, &object)
            .expect_err(&format!("{kind} {field}: one past {limit} accepted"));
        assert!(
            errors.iter().any(|e| e.field == path
                && (e.message.contains(&format!("at most {limit} "))
                    || e.message.contains(&format!("longer than {limit}")))),
            "{kind} {field}: no error names {path} and {limit}; {} errors, the first: {:?}",
            errors.len(),
            &errors[..errors.len().min(3)]
        );
    }
}
