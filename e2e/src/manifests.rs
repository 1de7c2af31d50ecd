//! Manifests read from a folder the way `meshguard -f DIR` reads it (its
//! files and subfolders in name order, multi-document, `kind: List`
//! flattened),
//! for the harnesses that need to know what is in them before handing the
//! folder to the CLI: the demo (members, ports) and the cluster check.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::Value;

/// Every document in the `.yaml`, `.yml` and `.json` files in and under
/// `dir`, with the file it came from; empty documents left out.
pub fn read_dir(dir: &Path) -> anyhow::Result<Vec<(PathBuf, Value)>> {
    let mut files = Vec::new();
    manifest_files(dir, &mut files)?;
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
            .with_context(|| format!("{}: not YAML", file.display()))?;
        for doc in docs {
            let docs = match doc["items"].as_array() {
                Some(items) if doc["kind"] == "List" => items.clone(),
                _ => vec![doc],
            };
            out.extend(
                docs.into_iter()
                    .filter(|d| !d.is_null())
                    .map(|d| (file.clone(), d)),
            );
        }
    }
    Ok(out)
}

/// The manifest files in and under `dir`, in the CLI's order: entries by
/// name, a subfolder's files where the subfolder sorts.
fn manifest_files(dir: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            manifest_files(&entry, files)?;
        } else if entry
            .extension()
            .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        {
            files.push(entry);
        }
    }
    Ok(())
}

/// The MeshNodes among `docs` (from [`read_dir`] on `dir`): the members of
/// a matrix, each with its file and name. A matrix needs at least two.
pub fn mesh_nodes<'a>(
    dir: &Path,
    docs: &'a [(PathBuf, Value)],
) -> anyhow::Result<Vec<(&'a Path, &'a str, &'a Value)>> {
    let mut nodes = Vec::new();
    for (file, doc) in docs.iter().filter(|(_, d)| d["kind"] == "MeshNode") {
        let name = doc["metadata"]["name"]
            .as_str()
            .with_context(|| format!("{}: a MeshNode without a name", file.display()))?;
        nodes.push((file.as_path(), name, doc));
    }
    if nodes.len() < 2 {
        bail!(
            "{} holds {} MeshNodes; a matrix needs at least two",
            dir.display(),
            nodes.len()
        );
    }
    Ok(nodes)
}

/// Documents as one YAML stream (of JSON documents), as `meshguard` reads it.
pub fn stream<'a>(docs: impl IntoIterator<Item = &'a Value>) -> anyhow::Result<String> {
    let mut text = String::new();
    for doc in docs {
        text.push_str("---\n");
        text.push_str(&serde_json::to_string(doc)?);
        text.push('\n');
    }
    Ok(text)
}
