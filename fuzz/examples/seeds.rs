//! Writes the fuzzers' starting corpora: `seeds DIR` fills `DIR/<target>/`
//! for every target (docs/development.md, `make fuzz`).

use std::path::PathBuf;

use anyhow::Context;

fn main() -> anyhow::Result<()> {
    let dir: PathBuf = std::env::args_os()
        .nth(1)
        .context("usage: seeds DIR (each target's corpus goes to DIR/<target>)")?
        .into();
    let failed = |e: String| anyhow::anyhow!(e);
    for (target, seeds) in [
        ("token", meshguard_fuzz::seeds::tokens()?),
        ("ext_proc", meshguard_fuzz::seeds::ext_proc()?),
        (
            "manifests",
            meshguard_fuzz::seeds::manifests().map_err(failed)?,
        ),
        (
            "validation",
            meshguard_fuzz::seeds::validation().map_err(failed)?,
        ),
        (
            "state_file",
            meshguard_fuzz::seeds::state_file().map_err(failed)?,
        ),
        ("uapi", meshguard_fuzz::seeds::uapi()),
    ] {
        let out = dir.join(target);
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        for (name, bytes) in &seeds {
            let path = out.join(name);
            std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        }
        println!("{}: {} seeds", out.display(), seeds.len());
    }
    Ok(())
}
