//! Every check an object of ours must pass, in the order the API server runs them.
//!
//! 1. [`openapi`]: the OpenAPI schema (types, required fields, enums, ranges,
//!    lengths, patterns, list uniqueness, unknown fields) — what `kubectl apply`
//!    rejects before CEL runs.
//! 2. CEL: the `x-kubernetes-validations` rules of the generated schema,
//!    evaluated by kube-cel, a real CEL implementation with Kubernetes' library.
//! 3. [`semantic`]: what neither can express (map keys, inline JWKS content,
//!    object names). The API server cannot run these, so the operator reports
//!    them in status and the CLI refuses the file.
//!
//! The operator and the `meshguard` CLI call [`Validator::validate`] on every
//! object, so an object created with validation off is still never compiled in.

mod error;
pub mod jwks;
pub mod openapi;
pub mod semantic;

use std::collections::BTreeMap;

use kube::core::cel::{CompiledSchema, ErrorKind, Validator as CelValidator, compile_schema};
use serde_json::Value;

pub use self::error::{FieldError, Stage};
use crate::{Kind, manifests};

/// Validates objects of our four kinds. Building one compiles every CEL rule
/// once; keep it for the life of the process.
pub struct Validator {
    cel: CelValidator,
    kinds: BTreeMap<Kind, KindSchema>,
}

struct KindSchema {
    openapi: Value,
    cel: CompiledSchema,
}

impl Default for Validator {
    fn default() -> Self {
        Self::new()
    }
}

impl Validator {
    pub fn new() -> Self {
        let kinds = Kind::ALL
            .into_iter()
            .map(|kind| {
                let openapi = manifests::schema(kind);
                let cel = compile_schema(&openapi);
                (kind, KindSchema { openapi, cel })
            })
            .collect();
        Self {
            cel: CelValidator::new(),
            kinds,
        }
    }

    /// Checks one object (the whole document: apiVersion, kind, metadata, spec).
    /// Later stages run only when earlier ones pass, as their rules assume
    /// well-typed input.
    pub fn validate(&self, kind: Kind, object: &Value) -> Result<(), Vec<FieldError>> {
        let Some(schema) = self.kinds.get(&kind) else {
            return Err(vec![FieldError::new(
                "kind",
                format!("no schema for {kind}"),
                Stage::Schema,
            )]);
        };
        let object = &normalize(object);
        let mut errors = semantic::check_metadata(kind, object);
        errors.extend(openapi::check(&schema.openapi, object));
        if !errors.is_empty() {
            return Err(errors);
        }
        self.check_cel(schema, object)?;
        let errors = semantic::check(kind, object);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn check_cel(&self, schema: &KindSchema, object: &Value) -> Result<(), Vec<FieldError>> {
        self.cel
            .validate_compiled(&schema.cel, object, None)
            .map_err(|errors| {
                errors
                    .iter()
                    .map(|e| {
                        // A rule that does not compile or cannot be evaluated is
                        // our bug, not the user's: say so rather than blame the field.
                        let message = match e.kind {
                            ErrorKind::ValidationFailure => e.message.clone(),
                            _ => format!(
                                "internal error evaluating rule `{}`: {}",
                                e.rule, e.message
                            ),
                        };
                        FieldError::new(e.field_path.clone(), message, Stage::Cel)
                    })
                    .collect()
            })
    }
}

/// What the API server does to an object before validating it: object fields
/// whose value is `null` are dropped (none of our fields is `nullable`, so
/// `null` means "absent"; nulls inside lists stay and fail the type check),
/// and a whole number written as a float (`5432.0`) is read as an integer.
pub fn normalize(value: &Value) -> Value {
    match value {
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), normalize(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(normalize).collect()),
        Value::Number(n) if !n.is_i64() && !n.is_u64() => match n.as_f64() {
            // Below 2^53 a whole f64 is exactly an integer.
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
            _ => value.clone(),
        },
        other => other.clone(),
    }
}
