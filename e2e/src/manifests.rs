//! Manifests read from a folder by the CLI's own loader
//! ([`meshguard_cli::documents`]: files and subfolders in name order,
//! multi-document, `kind: List` flattened), for the harnesses that need to
//! know what is in them before handing the folder to the CLI: the demo
//! (members, ports) and the cluster check.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::Value;

/// Every document in and under `dir`, with the file it came from; empty
/// documents left out. Unreadable files or YAML are an error naming them.
pub fn read_dir(dir: &Path) -> anyhow::Result<Vec<(PathBuf, Value)>> {
    meshguard_cli::documents(&[dir.to_path_buf()]).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("{}", lines.join("\n"))
    })
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
