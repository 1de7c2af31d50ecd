//! `state_file`: any text as the agent's state file (`--state-file`), through
//! what the agent does with it before enforcing: parse (YAML, with the
//! agent's limits), check (kind, node, the CRD schema and its rules, a
//! revision), `desired::parse`. What must hold: a refusal names the state
//! file (the status and the log say which), and `desired::parse` either
//! accepts or lists at least one problem — it never refuses in silence.

use std::{path::Path, sync::LazyLock};

use meshguard_agent::{desired, state::file};
use meshguard_crds::validation::Validator;

static VALIDATOR: LazyLock<Validator> = LazyLock::new(Validator::new);

/// The node the fuzzed state file is for (the seeds' NodePolicies are
/// written for it).
pub const NODE: &str = "db-1";

/// How far an input got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reached {
    NotText,
    Refused,
    NotEnforceable,
    Enforceable,
}

pub fn state_file(data: &[u8]) -> Reached {
    let Ok(text) = std::str::from_utf8(data) else {
        return Reached::NotText;
    };
    let path = Path::new("/fuzz/state.yaml");
    match file::parse(path, text, NODE, &VALIDATOR) {
        Err(refused) => {
            let said = refused.to_string();
            assert!(
                said.starts_with("state file /fuzz/state.yaml"),
                "a refusal that does not name the file: {said}"
            );
            Reached::Refused
        }
        Ok(spec) => match desired::parse(&spec) {
            Ok(_) => Reached::Enforceable,
            Err(invalid) => {
                assert!(!invalid.0.is_empty(), "refused without a problem");
                Reached::NotEnforceable
            }
        },
    }
}
