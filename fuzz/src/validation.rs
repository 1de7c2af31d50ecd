//! `validation`: any JSON object as each of our kinds, through the checks
//! every object passes (schema, CEL, semantics: `Validator::validate`).
//! What must hold: an object the checks accept deserializes as its type —
//! the CLI and the operator read it next, and a checked object they could
//! not read would be dropped — and what reads it next (the policy set for a
//! MeshPolicy, the agent's `desired::parse` for a NodePolicy) does not panic.

use std::sync::LazyLock;

use meshguard_crds::{
    API_VERSION, Kind, MeshNode, MeshPolicy, NodePolicy, PolicyChain,
    validation::{Validator, normalize},
};
use meshguard_policy::policy_set::PolicySet;
use serde::de::DeserializeOwned;
use serde_json::Value;

static VALIDATOR: LazyLock<Validator> = LazyLock::new(Validator::new);

fn typed<T: DeserializeOwned>(kind: Kind, object: &Value) -> T {
    serde_json::from_value(normalize(object))
        .unwrap_or_else(|e| panic!("a {kind} the checks accept does not deserialize: {e}"))
}

/// Returns how many kinds accepted the object.
pub fn validation(data: &[u8]) -> usize {
    let Ok(Value::Object(mut fields)) = serde_json::from_slice::<Value>(data) else {
        return 0;
    };
    let mut accepted = 0;
    for kind in Kind::ALL {
        fields.insert("apiVersion".into(), API_VERSION.into());
        fields.insert("kind".into(), kind.name().into());
        let object = Value::Object(fields.clone());
        if VALIDATOR.validate(kind, &object).is_err() {
            continue;
        }
        accepted += 1;
        match kind {
            Kind::MeshPolicy => {
                let policy: MeshPolicy = typed(kind, &object);
                let _ = PolicySet::build(&[policy]);
            }
            Kind::PolicyChain => {
                let _: PolicyChain = typed(kind, &object);
            }
            Kind::MeshNode => {
                let _: MeshNode = typed(kind, &object);
            }
            Kind::NodePolicy => {
                let policy: NodePolicy = typed(kind, &object);
                let _ = meshguard_agent::desired::parse(&policy.spec);
            }
        }
    }
    accepted
}
