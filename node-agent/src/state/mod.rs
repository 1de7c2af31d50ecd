//! Where the desired state comes from: a file (`--state-file`, for machines
//! outside the cluster, the demo and the tests) or, in a cluster, the node's
//! NodePolicy. Both deliver [`Update`]s, and both check what arrives the same
//! way ([`check`]) before the reconciler sees it.

pub mod file;
pub mod kube;

use meshguard_crds::{API_VERSION, Kind, NodePolicy, NodePolicySpec, validation::Validator};
use serde_json::Value;

/// What a state source delivers to the reconcile loop.
#[derive(Clone, Debug)]
pub enum Update {
    /// A new desired state, already checked.
    State(Box<NodePolicySpec>),
    /// A state that was refused, and why; the previous one stays enforced.
    /// `uid` is the refused NodePolicy's (cluster mode), so the Event
    /// saying why shows on `kubectl describe nodepolicy`.
    Rejected { reason: String, uid: Option<String> },
}

/// Why a desired state was refused. `origin` names where it came from: the
/// state file's path, or the NodePolicy object.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{origin}: {message}")]
    Unreadable { origin: String, message: String },
    #[error("{origin}: not valid YAML: {message}")]
    Syntax { origin: String, message: String },
    #[error("{origin}: expected a {API_VERSION} NodePolicy, found {found}")]
    NotNodePolicy { origin: String, found: String },
    #[error("{origin}: NodePolicy/{name} is for another node (this is {node})")]
    WrongNode {
        origin: String,
        name: String,
        node: String,
    },
    #[error("{origin}: {problems}")]
    Invalid { origin: String, problems: String },
}

/// Checks a NodePolicy document as the operator's output would be checked:
/// kind, that it is for this node, the CRD schema and its rules, a revision.
pub fn check(
    origin: &str,
    value: &Value,
    node: &str,
    validator: &Validator,
) -> Result<NodePolicySpec, StateError> {
    let (api_version, kind) = (
        value["apiVersion"].as_str().unwrap_or_default(),
        value["kind"].as_str().unwrap_or_default(),
    );
    if api_version != API_VERSION || kind != "NodePolicy" {
        return Err(StateError::NotNodePolicy {
            origin: origin.to_owned(),
            found: format!("{api_version} {kind}").trim().to_owned(),
        });
    }
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if name != node {
        return Err(StateError::WrongNode {
            origin: origin.to_owned(),
            name: name.to_owned(),
            node: node.to_owned(),
        });
    }
    let invalid = |problems: String| StateError::Invalid {
        origin: origin.to_owned(),
        problems,
    };
    if let Err(errors) = validator.validate(Kind::NodePolicy, value) {
        let problems: Vec<String> = errors.iter().map(ToString::to_string).collect();
        return Err(invalid(problems.join("; ")));
    }
    let policy: NodePolicy = serde_json::from_value(meshguard_crds::validation::normalize(value))
        .map_err(|e| invalid(e.to_string()))?;
    if policy.spec.revision.is_empty() {
        return Err(invalid("spec.revision: Required value".into()));
    }
    Ok(policy.spec)
}
