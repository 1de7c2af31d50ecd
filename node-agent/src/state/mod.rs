//! Where the desired state comes from: a file (`--state-file`, for machines
//! outside the cluster, the demo and the tests) or, in a cluster, the node's
//! NodePolicy (arriving with the Kubernetes source).

pub mod file;

use meshguard_crds::NodePolicySpec;

/// What a state source delivers to the reconcile loop.
#[derive(Clone, Debug)]
pub enum Update {
    /// A new desired state, already checked.
    State(Box<NodePolicySpec>),
    /// A state that was refused; the previous one stays enforced.
    Rejected(String),
}
