//! What every validation layer reports: a field, a message, the layer.

/// Which layer found a problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The OpenAPI schema.
    Schema,
    /// A CEL rule of the schema.
    Cel,
    /// A check only meshguard runs.
    Semantic,
}

/// One problem with one field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The field's path, such as `spec.rules[0].ports[1].endPort`.
    pub field: String,
    /// What is wrong, in words for a person.
    pub message: String,
    pub stage: Stage,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>, stage: Stage) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
            stage,
        }
    }
}
