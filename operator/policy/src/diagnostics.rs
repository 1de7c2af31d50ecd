//! Warnings and errors about input objects, each naming the object and field.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

/// The object a diagnostic is about.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectRef {
    pub kind: &'static str,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    pub fn new(kind: &'static str, namespace: Option<&str>, name: &str) -> Self {
        Self {
            kind,
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{}/{}", self.kind, ns, self.name),
            None => write!(f, "{}/{}", self.kind, self.name),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Diagnostic {
    pub severity: Severity,
    pub object: ObjectRef,
    /// The field, such as `spec.rules[0].from[1].nodes`.
    pub field: Option<String>,
    pub message: String,
}

impl Diagnostic {
    pub fn warning(object: ObjectRef, field: Option<String>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            object,
            field,
            message: message.into(),
        }
    }

    pub fn error(object: ObjectRef, field: Option<String>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            object,
            field,
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        match &self.field {
            Some(field) => write!(f, "{severity}: {}: {field}: {}", self.object, self.message),
            None => write!(f, "{severity}: {}: {}", self.object, self.message),
        }
    }
}
