//! `meshguard validate`: every object checked, then every in-policy test run.

use std::io::Write;

use meshguard_policy::policy_tests;

use crate::{
    args::{InputArgs, exit},
    prepare::prepare,
};

pub fn run(args: &InputArgs, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<u8> {
    let prepared = match prepare(args, err)? {
        Ok(prepared) => prepared,
        Err(code) => return Ok(code),
    };
    let compiled = &prepared.compiled;
    let outcomes = policy_tests::run(
        &prepared.loaded.policies,
        compiled.policy_set(),
        compiled.members(),
    );
    let failed: Vec<_> = outcomes.iter().filter(|o| !o.passed()).collect();
    for outcome in &failed {
        let file = prepared
            .loaded
            .origin("MeshPolicy", None, &outcome.policy)
            .map(|f| format!("{}: ", f.display()))
            .unwrap_or_default();
        writeln!(
            out,
            "FAIL {file}MeshPolicy/{}: spec.tests[{}]: {outcome}",
            outcome.policy, outcome.index
        )?;
    }
    let loaded = &prepared.loaded;
    writeln!(
        out,
        "{}: {} files, {} MeshPolicies, {} PolicyChains, {} MeshNodes; {} of {} tests passed",
        if failed.is_empty() { "ok" } else { "FAILED" },
        loaded.files,
        loaded.policies.len(),
        loaded.chains.len(),
        loaded.nodes.len(),
        outcomes.len() - failed.len(),
        outcomes.len(),
    )?;
    Ok(if failed.is_empty() {
        exit::OK
    } else {
        exit::FAILED
    })
}
