//! Writes the fuzzers' starting corpora: `seeds DIR` fills `DIR/token/`
//! and `DIR/ext_proc/` (docs/development.md, `make fuzz`).

use std::path::PathBuf;

use anyhow::Context;

fn main() -> anyhow::Result<()> {
    let dir: PathBuf = std::env::args_os()
        .nth(1)
        .context("usage: seeds DIR (the corpora go to DIR/token and DIR/ext_proc)")?
        .into();
    for (target, seeds) in [
        ("token", meshguard_fuzz::seeds::tokens()?),
        ("ext_proc", meshguard_fuzz::seeds::ext_proc()?),
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
