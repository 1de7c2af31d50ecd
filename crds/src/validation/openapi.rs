//! The OpenAPI part of what the API server checks, for the structural schemas
//! this crate generates.
//!
//! Covers the keywords structural schemas use (`type`, `properties`,
//! `additionalProperties`, `items`, `required`, `enum`, `nullable`, numeric
//! ranges, lengths, `pattern`, `x-kubernetes-list-type`), and reports unknown
//! fields, as `kubectl apply` does with its default strict field validation.
//! Callers normalize first (`super::normalize`), as the API server does.
//! Messages follow the API server's wording so they read the same in a
//! pipeline as in `kubectl`. Logical junctors (`oneOf`, ...) are refused by a
//! test on the generated schemas, so they need no support here.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{LazyLock, RwLock},
};

use regex::Regex;
use serde_json::{Map, Value};

use super::error::{FieldError, Stage};

/// Fields every object has, which the API server checks itself and CRD
/// schemas therefore leave out.
const OBJECT_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// Checks a whole object against its kind's root `schema`, returning every violation.
pub fn check(schema: &Value, object: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    match object.as_object() {
        Some(fields) => {
            let mut body = fields.clone();
            body.retain(|name, _| !OBJECT_FIELDS.contains(&name.as_str()));
            walk(schema, &Value::Object(body), "", &mut errors);
        }
        None => errors.push(type_error("", object, "object")),
    }
    errors
}

/// Checks any value against any schema node (a field's schema and its default, say).
pub fn check_value(schema: &Value, value: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    walk(schema, value, "", &mut errors);
    errors
}

fn walk(schema: &Value, value: &Value, path: &str, errors: &mut Vec<FieldError>) {
    if flag(schema, "x-kubernetes-preserve-unknown-fields") && schema.get("type").is_none() {
        return;
    }
    if flag(schema, "x-kubernetes-int-or-string") {
        if !(value.is_string() || value.is_i64() || value.is_u64()) {
            errors.push(err(
                path,
                format!(
                    "Invalid value: {}: must be an integer or a string",
                    short(value)
                ),
            ));
        }
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
        errors.push(err(
            path,
            format!(
                "Unsupported value: {}: supported values: {}",
                short(value),
                list.join(", ")
            ),
        ));
        return;
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => object(schema, value, path, errors),
        Some("array") => array(schema, value, path, errors),
        Some("string") => string(schema, value, path, errors),
        Some("integer") => number(schema, value, path, errors, true),
        Some("number") => number(schema, value, path, errors, false),
        Some("boolean") if !value.is_boolean() => errors.push(type_error(path, value, "boolean")),
        _ => {}
    }
}

fn object(schema: &Value, value: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let Some(fields) = value.as_object() else {
        errors.push(type_error(path, value, "object"));
        return;
    };
    let properties = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields");

    for (name, field) in fields {
        let child_path = if properties.is_some() {
            join(path, name)
        } else {
            format!("{path}[{name}]")
        };
        if let Some(child) = properties.and_then(|p| p.get(name)) {
            walk(child, field, &child_path, errors);
        } else if let Some(child) = additional {
            walk(child, field, &child_path, errors);
        } else if !preserve && properties.is_some() {
            // An object schema without properties (metadata) is the API
            // server's business; only declared structures have unknown fields.
            errors.push(err(&child_path, "unknown field".to_owned()));
        }
    }

    for required in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if fields.get(required).is_none_or(Value::is_null) {
            errors.push(err(&join(path, required), "Required value".to_owned()));
        }
    }

    let count = fields.len() as u64;
    if let Some(max) = uint(schema, "maxProperties")
        && count > max
    {
        errors.push(err(
            path,
            format!("Too many: {count}: must have at most {max} items"),
        ));
    }
    if let Some(min) = uint(schema, "minProperties")
        && count < min
    {
        errors.push(err(
            path,
            format!("Invalid value: {count}: should have at least {min} properties"),
        ));
    }
}

fn array(schema: &Value, value: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let Some(items) = value.as_array() else {
        errors.push(type_error(path, value, "array"));
        return;
    };
    let count = items.len() as u64;
    if let Some(max) = uint(schema, "maxItems")
        && count > max
    {
        errors.push(err(
            path,
            format!("Too many: {count}: must have at most {max} items"),
        ));
    }
    if let Some(min) = uint(schema, "minItems")
        && count < min
    {
        errors.push(err(
            path,
            format!("Invalid value: {count}: should have at least {min} items"),
        ));
    }
    if let Some(item_schema) = schema.get("items") {
        for (i, item) in items.iter().enumerate() {
            walk(item_schema, item, &format!("{path}[{i}]"), errors);
        }
    }
    match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => {
            let mut seen = BTreeSet::new();
            for (i, item) in items.iter().enumerate() {
                if !seen.insert(item.to_string()) {
                    errors.push(err(
                        &format!("{path}[{i}]"),
                        format!("Duplicate value: {}", short(item)),
                    ));
                }
            }
        }
        Some("map") => {
            let keys: Vec<&str> = schema
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let mut seen = BTreeSet::new();
            for (i, item) in items.iter().enumerate() {
                let key: Vec<String> = keys
                    .iter()
                    .map(|k| {
                        format!(
                            "{k}:{}",
                            item.get(k).map(Value::to_string).unwrap_or_default()
                        )
                    })
                    .collect();
                if !seen.insert(key.clone()) {
                    errors.push(err(
                        &format!("{path}[{i}]"),
                        format!("Duplicate value: map[{}]", key.join(" ")),
                    ));
                }
            }
        }
        _ => {}
    }
}

fn string(schema: &Value, value: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let Some(text) = value.as_str() else {
        errors.push(type_error(path, value, "string"));
        return;
    };
    let length = text.chars().count() as u64;
    if let Some(max) = uint(schema, "maxLength")
        && length > max
    {
        errors.push(err(path, format!("Too long: may not be longer than {max}")));
    }
    if let Some(min) = uint(schema, "minLength")
        && length < min
    {
        errors.push(err(
            path,
            format!(
                "Invalid value: {}: should be at least {min} chars long",
                short(value)
            ),
        ));
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        match compiled(pattern) {
            Ok(re) if re.is_match(text) => {}
            Ok(_) => errors.push(err(
                path,
                format!("Invalid value: {}: should match '{pattern}'", short(value)),
            )),
            Err(e) => errors.push(err(path, format!("schema pattern does not compile: {e}"))),
        }
    }
}

fn number(schema: &Value, value: &Value, path: &str, errors: &mut Vec<FieldError>, integer: bool) {
    // go-openapi accepts a whole number written as a float (5432.0) as an integer.
    let is_integer =
        value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|f| f.fract() == 0.0);
    let Some(n) = value.as_f64().filter(|_| !integer || is_integer) else {
        errors.push(type_error(
            path,
            value,
            if integer { "integer" } else { "number" },
        ));
        return;
    };
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
        && n > max
    {
        errors.push(err(
            path,
            format!(
                "Invalid value: {}: should be less than or equal to {max}",
                short(value)
            ),
        ));
    }
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
        && n < min
    {
        errors.push(err(
            path,
            format!(
                "Invalid value: {}: should be greater than or equal to {min}",
                short(value)
            ),
        ));
    }
}

/// `pattern` compiled once per process. Patterns come from our own schemas
/// (a handful); compiling one for every string checked was a fifth of the
/// time `meshguard validate` spent on 6,000 objects.
fn compiled(pattern: &str) -> Result<Regex, regex::Error> {
    static COMPILED: LazyLock<RwLock<HashMap<String, Regex>>> = LazyLock::new(RwLock::default);
    // A poisoned lock only means another thread panicked mid-insert of a
    // compiled regex; the map itself is still whole, so keep using it.
    if let Some(re) = COMPILED
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .get(pattern)
    {
        return Ok(re.clone());
    }
    let re = Regex::new(pattern)?;
    COMPILED
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .insert(pattern.to_owned(), re.clone());
    Ok(re)
}

fn flag(schema: &Value, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn uint(schema: &Value, key: &str) -> Option<u64> {
    schema.get(key).and_then(Value::as_u64)
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

fn err(path: &str, message: String) -> FieldError {
    FieldError::new(
        if path.is_empty() { "<root>" } else { path },
        message,
        Stage::Schema,
    )
}

fn type_error(path: &str, value: &Value, expected: &str) -> FieldError {
    err(
        path,
        format!(
            "Invalid value: {}: must be of type {expected}",
            short(value)
        ),
    )
}

/// A value as the message shows it: strings quoted, long ones cut.
fn short(value: &Value) -> String {
    let text = match value {
        Value::Object(map) => return describe_object(map),
        Value::Array(items) => return format!("array of {} items", items.len()),
        other => other.to_string(),
    };
    if text.chars().count() > 80 {
        let cut: String = text.chars().take(77).collect();
        format!("{cut}...")
    } else {
        text
    }
}

fn describe_object(map: &Map<String, Value>) -> String {
    format!("object with {} fields", map.len())
}
