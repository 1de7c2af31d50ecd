//! `meshguard compile`: one NodePolicy per member, written all or nothing.

use std::{io::Write, path::Path};

use meshguard_crds::{NodePolicy, size};
use meshguard_policy::compile::Compiler;

use crate::{
    args::{InputArgs, exit},
    load::Checker,
    prepare::prepare_with,
};

pub fn run(
    args: &InputArgs,
    dir: &Path,
    audit_peers: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<u8> {
    let prepared = match prepare_with(
        args,
        Compiler::default().audit_peers(audit_peers),
        &Checker::default(),
        err,
    )? {
        Ok(prepared) => prepared,
        Err(code) => return Ok(code),
    };
    let compiled = &prepared.compiled;
    // Render everything before touching the directory.
    let mut files = Vec::new();
    let mut oversized = Vec::new();
    for member in compiled.members() {
        let Some(spec) = compiled.node_policy(&member.name) else {
            continue;
        };
        let object = NodePolicy::new(&member.name, spec);
        // What the operator would refuse to write is refused here too.
        if let Err(too_large) = size::checked_size(&object) {
            oversized.push(too_large);
            continue;
        }
        files.push((
            format!("{}.yaml", member.name),
            serde_saphyr::to_string(&object)?,
        ));
    }

    if !oversized.is_empty() {
        for too_large in &oversized {
            writeln!(err, "error: {too_large}")?;
        }
        writeln!(err, "error: nothing was written")?;
        return Ok(exit::BAD_INPUT);
    }

    // All or nothing: check every target, write every file aside, then rename.
    if let Err(e) = std::fs::create_dir_all(dir) {
        writeln!(
            err,
            "error: {}: cannot create the output directory: {e}",
            dir.display()
        )?;
        return Ok(exit::BAD_INPUT);
    }
    let blocked = files.iter().find(|(name, _)| {
        dir.join(name)
            .symlink_metadata()
            .is_ok_and(|m| !m.is_file())
    });
    if let Some((name, _)) = blocked {
        writeln!(
            err,
            "error: {}: exists and is not a file; nothing was written",
            dir.join(name).display()
        )?;
        return Ok(exit::BAD_INPUT);
    }
    let temporary = |name: &str| dir.join(format!(".{name}.meshguard-tmp"));
    for (i, (name, content)) in files.iter().enumerate() {
        if let Err(e) = std::fs::write(temporary(name), content) {
            for (written, _) in &files[..=i] {
                let _ = std::fs::remove_file(temporary(written));
            }
            writeln!(
                err,
                "error: {}: {e}; nothing was written",
                dir.join(name).display()
            )?;
            return Ok(exit::BAD_INPUT);
        }
    }
    for (name, _) in &files {
        std::fs::rename(temporary(name), dir.join(name))?;
    }
    writeln!(
        out,
        "wrote {} NodePolicies to {}",
        files.len(),
        dir.display()
    )?;
    Ok(exit::OK)
}
