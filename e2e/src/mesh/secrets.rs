//! No secret material where it does not belong: every file a mesh produced
//! — agent, daemon and Envoy logs, status files, the NodePolicies compiled
//! into `state/` — is scanned, when the mesh goes, for the secrets the run
//! used: each node's WireGuard private key (as its file holds it, base64,
//! and as the UAPI writes it, hex) and every raw API key of the Secrets in
//! the inputs (`stringData`, or `data` decoded). A hit fails the test that
//! made the mesh (`Drop` for `Mesh`); the files stay for a look.
//!
//! Not scanned here: the inputs themselves (`in/`, where the Secrets are
//! by design), the key files, and what is never written to a file (metrics
//! are scraped by the tests that read them).

use std::path::{Path, PathBuf};

use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::Value;

/// A secret found in a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    pub file: PathBuf,
    /// What it is (`the WireGuard private key of db-1 (hex)`), never the value.
    pub what: String,
}

/// What was scanned, and what was found.
#[derive(Clone, Debug, Default)]
pub struct Scan {
    pub files: usize,
    pub bytes: usize,
    pub secrets: usize,
    pub hits: Vec<Hit>,
    /// What could not be read: a file of secrets to look for, or a file to
    /// scan. A scan that does not see them all is no scan, so this fails
    /// like a hit.
    pub unread: Vec<String>,
}

/// Shorter than this, a "secret" would match by chance.
const SHORTEST: usize = 8;

/// The secrets a mesh at `dir` used, each with what it is; and what could
/// not be read.
fn secrets(dir: &Path) -> (Vec<(String, String)>, Vec<String>) {
    let mut out = Vec::new();
    let mut unread = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "key") {
            let node = path
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let Ok(text) = std::fs::read_to_string(&path) else {
                unread.push(path.display().to_string());
                continue;
            };
            let key = text.trim().to_owned();
            if let Ok(bytes) = STANDARD.decode(&key) {
                let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                out.push((hex, format!("the WireGuard private key of {node} (hex)")));
            }
            out.push((key, format!("the WireGuard private key of {node}")));
        }
    }
    let inputs = meshguard_cli::documents(&[dir.join("in")]).unwrap_or_else(|errors| {
        unread.extend(errors.iter().map(ToString::to_string));
        Vec::new()
    });
    for (file, doc) in inputs.iter().filter(|(_, d)| d["kind"] == "Secret") {
        let name = doc["metadata"]["name"].as_str().unwrap_or_default();
        let strings = doc["stringData"].as_object().into_iter().flatten();
        let data = doc["data"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| {
                let bytes = STANDARD.decode(v.as_str()?).ok()?;
                Some((k, Value::String(String::from_utf8(bytes).ok()?)))
            });
        for (key, value) in strings
            .map(|(k, v)| (k.clone(), v.clone()))
            .chain(data.map(|(k, v)| (k.clone(), v)))
        {
            if let Some(value) = value.as_str() {
                out.push((
                    value.to_owned(),
                    format!("key {key} of Secret {name} ({})", file.display()),
                ));
            }
        }
    }
    out.retain(|(value, _)| value.len() >= SHORTEST);
    (out, unread)
}

/// Every file under `dir` but the inputs and the key files.
fn produced(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "in") {
                produced(&path, out);
            }
        } else if path.extension().is_none_or(|e| e != "key") {
            out.push(path);
        }
    }
}

/// Scans what the mesh at `dir` produced for the secrets it used.
pub fn scan(dir: &Path) -> Scan {
    let (secrets, unread) = secrets(dir);
    let mut files = Vec::new();
    produced(dir, &mut files);
    let mut scan = Scan {
        secrets: secrets.len(),
        unread,
        ..Scan::default()
    };
    for file in files {
        let Ok(bytes) = std::fs::read(&file) else {
            scan.unread.push(file.display().to_string());
            continue;
        };
        scan.files += 1;
        scan.bytes += bytes.len();
        let text = String::from_utf8_lossy(&bytes);
        for (value, what) in &secrets {
            if text.contains(value.as_str()) {
                scan.hits.push(Hit {
                    file: file.clone(),
                    what: what.clone(),
                });
            }
        }
    }
    scan
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is a failure report

    use super::*;

    /// The scanner finds what it must: a private key in hex in a log, a
    /// raw API key (from `data`, base64) in a status file — and nothing in
    /// the inputs, the key files or a clean NodePolicy.
    #[test]
    fn planted_secrets_are_found_and_only_where_they_do_not_belong() {
        let dir = std::env::temp_dir().join(format!("mg-secrets-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("in")).unwrap();
        std::fs::create_dir_all(dir.join("state")).unwrap();
        let key = STANDARD.encode([0x5a; 32]);
        std::fs::write(dir.join("db-1.key"), format!("{key}\n")).unwrap();
        let api_key = "k-3f9a1c7e55";
        std::fs::write(
            dir.join("in/secret.yaml"),
            format!(
                "apiVersion: v1\nkind: Secret\nmetadata: {{ name: keys, namespace: shop }}\ndata: {{ alice: {} }}\n",
                STANDARD.encode(api_key)
            ),
        )
        .unwrap();
        std::fs::write(dir.join("state/db-1.yaml"), "spec: { revision: abc }\n").unwrap();
        std::fs::write(dir.join("db-1-agent.log"), "nothing to see\n").unwrap();
        let clean = scan(&dir);
        assert_eq!((clean.files, clean.secrets), (2, 3), "{clean:?}");
        assert!(clean.hits.is_empty(), "{clean:?}");

        std::fs::write(
            dir.join("db-1-agent.log"),
            format!("set private_key={}\n", "5a".repeat(32)),
        )
        .unwrap();
        std::fs::write(dir.join("db-1.status"), format!("refused {api_key}\n")).unwrap();
        let found = scan(&dir);
        let mut hits: Vec<(String, String)> = found
            .hits
            .iter()
            .map(|h| {
                (
                    h.file.file_name().unwrap().to_string_lossy().into_owned(),
                    h.what.clone(),
                )
            })
            .collect();
        hits.sort();
        assert_eq!(hits.len(), 2, "{hits:?}");
        assert_eq!(hits[0].0, "db-1-agent.log");
        assert_eq!(hits[0].1, "the WireGuard private key of db-1 (hex)");
        assert_eq!(hits[1].0, "db-1.status");
        assert!(
            hits[1].1.starts_with("key alice of Secret keys"),
            "{hits:?}"
        );
        assert!(found.unread.is_empty(), "{:?}", found.unread);

        // Inputs it cannot read are said, not taken for "no secrets".
        std::fs::write(dir.join("in/broken.yaml"), "kind: [unclosed\n").unwrap();
        let blind = scan(&dir);
        assert_eq!(blind.unread.len(), 1, "{blind:?}");
        assert!(blind.unread[0].contains("broken.yaml"), "{blind:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
