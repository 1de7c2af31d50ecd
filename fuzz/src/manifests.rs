//! `manifests`: any text as a manifest file, through the CLI's loader (YAML,
//! multi-document, `kind: List`, every kind, the schema, CEL and semantic
//! checks) and, when it loads, through the compiler. What must hold:
//! - a refusal names the file and says something;
//! - what loads and compiles gives every member a NodePolicy that the
//!   agent accepts as it accepts the operator's (`state::check`: kind,
//!   node, the CRD schema and its rules, a revision) and can enforce
//!   (`desired::parse`): nothing the operator writes is refused downstream.

use std::{path::Path, sync::LazyLock};

use meshguard_agent::{desired, state};
use meshguard_cli::{Checker, InputArgs, load_text, prepare_loaded};
use meshguard_crds::{NodePolicy, validation::Validator};
use meshguard_policy::{addresses::parse_mesh_cidr, compile::Compiler};

/// One checker for the run: the default remembers nothing, so a long run
/// accumulates nothing.
static CHECKER: LazyLock<Checker> = LazyLock::new(Checker::default);

static VALIDATOR: LazyLock<Validator> = LazyLock::new(Validator::new);

/// How far an input got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reached {
    NotText,
    Refused,
    RefusedAfterLoading,
    /// Compiled: each member's NodePolicy accepted and enforceable.
    Compiled,
}

pub fn manifests(data: &[u8]) -> Reached {
    // Files are read as UTF-8; anything else is refused before parsing.
    let Ok(text) = std::str::from_utf8(data) else {
        return Reached::NotText;
    };
    let file = Path::new("fuzz/manifests.yaml");
    let loaded = match load_text(file, text, &CHECKER) {
        Ok(loaded) => loaded,
        Err(errors) => {
            assert!(!errors.is_empty(), "refused without a reason");
            for e in &errors {
                assert_eq!(e.file, file, "{e}");
                assert!(!e.message.is_empty(), "{e:?}");
            }
            return Reached::Refused;
        }
    };
    let args = InputArgs {
        files: Vec::new(),
        mesh_cidr: parse_mesh_cidr("100.96.0.0/12").expect("the default mesh CIDR"),
        listen_port: 51820,
    };
    let mut messages = Vec::new();
    let prepared = prepare_loaded(loaded, &args, Compiler::default(), &mut messages)
        .expect("writing to memory cannot fail");
    let Ok(prepared) = prepared else {
        // Refused after loading (an address conflict, an error diagnostic):
        // said, not silent.
        assert!(!messages.is_empty(), "refused without a message");
        return Reached::RefusedAfterLoading;
    };
    for member in prepared.compiled.members() {
        let spec = prepared
            .compiled
            .node_policy(&member.name)
            .expect("every member has a NodePolicy");
        let object = serde_json::to_value(NodePolicy::new(&member.name, spec))
            .expect("a NodePolicy serializes");
        let accepted = state::check("fuzz", &object, &member.name, &VALIDATOR)
            .unwrap_or_else(|e| panic!("the agent refuses what compiled for {}: {e}", member.name));
        if let Err(invalid) = desired::parse(&accepted) {
            panic!(
                "the agent cannot enforce what compiled for {}: {invalid}",
                member.name
            );
        }
    }
    Reached::Compiled
}
