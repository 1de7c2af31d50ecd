//! Writes the CRD manifests generated from the Rust types (`make crds`), or
//! with `--check` fails when the checked-in files differ from them.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Parser;
use meshguard_crds::manifests;

#[derive(Parser)]
#[command(about = "Generate the meshguard CRD manifests from the Rust types")]
struct Args {
    /// Repository root; the files go to crds/, charts/meshguard/crds/ and deploy/crds/ below it.
    #[arg(long, default_value = ".")]
    root: PathBuf,
    /// Compare instead of writing; exit 1 when any file differs.
    #[arg(long)]
    check: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let files = manifests::render_all().context("rendering CRDs")?;
    let mut stale = Vec::new();
    for dir in manifests::TARGET_DIRS {
        let dir = args.root.join(dir);
        if !args.check {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        for (name, content) in &files {
            let path = dir.join(name);
            let current = std::fs::read_to_string(&path).unwrap_or_default();
            if current == *content {
                continue;
            }
            if args.check {
                stale.push(path.display().to_string());
            } else {
                std::fs::write(&path, content)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("wrote {}", path.display());
            }
        }
    }
    if !stale.is_empty() {
        bail!("out of date (run `make crds`): {}", stale.join(", "));
    }
    Ok(())
}
