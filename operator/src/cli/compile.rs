//! `meshguard compile`: one NodePolicy per member, written only when every
//! input is valid, each file replaced atomically.

use std::{io::Write, path::Path};

use meshguard_crds::NodePolicy;

use super::{InputArgs, exit, prepare};

pub fn run(
    args: &InputArgs,
    dir: &Path,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<u8> {
    let prepared = match prepare(args, err)? {
        Ok(prepared) => prepared,
        Err(code) => return Ok(code),
    };
    let compiled = &prepared.compiled;
    // Render everything before touching the directory: nothing partial on failure.
    let mut files = Vec::new();
    for member in compiled.members() {
        let Some(spec) = compiled.node_policy(&member.name) else {
            continue;
        };
        let object = NodePolicy::new(&member.name, spec);
        files.push((
            format!("{}.yaml", member.name),
            serde_saphyr::to_string(&object)?,
        ));
    }
    std::fs::create_dir_all(dir)?;
    for (name, content) in &files {
        let path = dir.join(name);
        let temporary = dir.join(format!(".{name}.tmp"));
        std::fs::write(&temporary, content)?;
        std::fs::rename(&temporary, &path)?;
    }
    writeln!(
        out,
        "wrote {} NodePolicies to {}",
        files.len(),
        dir.display()
    )?;
    Ok(exit::OK)
}
