//! `--state-file`: a NodePolicy in a file (what `meshguard compile` writes),
//! read at start and again whenever it changes (inotify on its directory, so
//! an atomic replace is seen), and checked like the operator's output:
//! schema, kind, and that it is for this node. A file that fails any check is
//! refused and the previous state stays enforced.

use std::{
    io::Read,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use meshguard_crds::{NodePolicySpec, validation::Validator};
use notify::{
    EventKind, RecursiveMode, Watcher,
    event::{AccessKind, AccessMode, ModifyKind},
};
use serde_json::Value;
use tokio::sync::mpsc;

use super::{StateError, Update, check};

/// Checks the text of the state file at `path`.
pub fn parse(
    path: &Path,
    text: &str,
    node: &str,
    validator: &Validator,
) -> Result<NodePolicySpec, StateError> {
    let origin = origin(path);
    let value: Value = serde_saphyr::from_str_with_options(text, yaml_limits()).map_err(|e| {
        StateError::Syntax {
            origin: origin.clone(),
            message: e.to_string(),
        }
    })?;
    check(&origin, &value, node, validator)
}

/// The largest state file read, in bytes: forty times what etcd keeps of
/// a NodePolicy (file mode has no etcd), and still a bound: a path to an
/// endless file (a device, a FIFO fed forever) is refused, not read.
pub const MAX_STATE_FILE_BYTES: u64 = 64 << 20;

/// The file's text, refused past [`MAX_STATE_FILE_BYTES`].
fn read_bounded(path: &Path) -> std::io::Result<String> {
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_STATE_FILE_BYTES + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_STATE_FILE_BYTES {
        return Err(std::io::Error::other(format!(
            "larger than {} MiB, the bound of a state file",
            MAX_STATE_FILE_BYTES >> 20
        )));
    }
    Ok(text)
}

/// The YAML parser's resource limits, raised for NodePolicies: the default
/// 250,000 nodes is about 20,000 rules, and a file need not fit in etcd.
/// Still bounded: a node is at least a few bytes of input, and aliases
/// (the way to make a small document huge) keep their default limits.
fn yaml_limits() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = 10_000_000;
    budget.max_events = 20_000_000;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options
}

fn origin(path: &Path) -> String {
    format!("state file {}", path.display())
}

/// Sends an [`Update`] for what the file holds now and again for every
/// change. Keep the returned watcher alive for as long as updates should come.
///
/// The directory is watched before the file is first read: read first, and
/// a change landing between the read and the watch (an agent restarted
/// while `meshguard compile` writes) would go unseen until the next change,
/// leaving the node on an old revision. The first read and the reads after
/// events share one lock, so updates are sent in the order they were read
/// and the last one sent holds the newest content.
pub fn watch(
    path: PathBuf,
    node: String,
    updates: mpsc::Sender<Update>,
) -> notify::Result<notify::RecommendedWatcher> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let file_name = path.file_name().map(|n| n.to_owned());
    let reader = Arc::new(Mutex::new(Reader {
        path,
        node,
        validator: Validator::new(),
        last: None,
        updates,
    }));
    let on_event = reader.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if !changes_content(&event.kind)
            || !event
                .paths
                .iter()
                .any(|p| p.file_name() == file_name.as_deref())
        {
            return;
        }
        // Let a burst of events (write, then rename) settle.
        std::thread::sleep(Duration::from_millis(20));
        lock(&on_event).send_current();
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    // On a thread of its own: sending blocks while the channel is full, and
    // the agent's loop that empties it starts after this returns.
    std::thread::spawn(move || {
        let mut reader = lock(&reader);
        if !reader.path.exists() {
            tracing::info!(path = %reader.path.display(), "no desired state yet; waiting for the state file");
        }
        reader.send_current();
    });
    Ok(watcher)
}

/// A poisoned lock only means a read panicked; the reader holds no
/// invariant a panic could break (`last` is replaced whole).
fn lock(reader: &Mutex<Reader>) -> std::sync::MutexGuard<'_, Reader> {
    reader
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Reads the file and sends what it holds, once per distinct content.
struct Reader {
    path: PathBuf,
    node: String,
    validator: Validator,
    /// What was last read, so a burst of events for one change (write,
    /// close, rename) is one update.
    last: Option<String>,
    updates: mpsc::Sender<Update>,
}

impl Reader {
    fn send_current(&mut self) {
        let path = &self.path;
        let update = match read_bounded(path) {
            Err(_) if !path.exists() => return, // removed: keep enforcing
            Err(e) => Update::Rejected {
                reason: StateError::Unreadable {
                    origin: origin(path),
                    message: e.to_string(),
                }
                .to_string(),
                uid: None,
            },
            Ok(text) if self.last.as_deref() == Some(text.as_str()) => return,
            Ok(text) => {
                let update = match parse(path, &text, &self.node, &self.validator) {
                    Ok(spec) => Update::State(Box::new(spec)),
                    Err(e) => Update::Rejected {
                        reason: e.to_string(),
                        uid: None,
                    },
                };
                self.last = Some(text);
                update
            }
        };
        let _ = self.updates.blocking_send(update);
    }
}

/// Only events that can change what the file holds. Reading the file raises
/// access events too, and reacting to those would read it again, forever.
fn changes_content(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Create(_)
            | EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Name(_) | ModifyKind::Any)
            | EventKind::Access(AccessKind::Close(AccessMode::Write))
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is a failure report

    use super::*;

    /// The state file's YAML bounds (docs/reliability.md): the node budget
    /// is raised to 10,000,000 for large NodePolicies, but aliases keep
    /// their default limits, so a billion-laughs file is refused at once,
    /// and so is nesting past 64 — each naming the file.
    #[test]
    fn the_state_files_yaml_bounds_refuse_naming_the_file() {
        let validator = Validator::new();
        let path = Path::new("/var/lib/meshguard/state.yaml");
        let mut laughs =
            String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..10 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            laughs.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let deep = format!("spec: {}{}\n", "[".repeat(70), "]".repeat(70));
        for (what, text) in [("billion laughs", laughs), ("nesting", deep)] {
            let started = std::time::Instant::now();
            let refused = parse(path, &text, "db-1", &validator).unwrap_err();
            assert!(
                matches!(refused, StateError::Syntax { .. }),
                "{what}: {refused}"
            );
            assert!(
                refused
                    .to_string()
                    .starts_with("state file /var/lib/meshguard/state.yaml: not valid YAML"),
                "{what}: {refused}"
            );
            eprintln!("{what}: refused in {:?}", started.elapsed());
        }
        // A list of 300,000 nodes, past the manifests' 250,000, is YAML the
        // agent reads (refused later only because it is no NodePolicy).
        let wide = format!("items: [{}]\n", vec!["1"; 300_000].join(","));
        let refused = parse(path, &wide, "db-1", &validator).unwrap_err();
        assert!(
            matches!(refused, StateError::NotNodePolicy { .. }),
            "{refused}"
        );
    }

    /// A state file cut short is refused, wherever the cut falls, and the
    /// previous state stays: the compiler writes the revision last, so only
    /// a cut inside the revision's own value (the lists all complete) may
    /// be read. Before the revision moved to the end, 561 of app-1's 2,565
    /// cuts were accepted, among them every cut between two rules.
    #[test]
    fn a_state_file_cut_short_is_refused_wherever_it_is_cut() {
        let validator = Validator::new();
        let golden =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../operator/cli/tests/golden/examples");
        let mut files = 0;
        for entry in std::fs::read_dir(&golden).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "yaml") {
                continue; // the golden matrix
            }
            let node = path.file_stem().unwrap().to_str().unwrap().to_owned();
            let golden = std::fs::read_to_string(&path).unwrap();
            // Written as `meshguard compile` writes it, from the spec's
            // type: the order under test is the type's, not the file's.
            let spec = parse(&path, &golden, &node, &validator).unwrap();
            let text =
                serde_saphyr::to_string(&meshguard_crds::NodePolicy::new(&node, spec)).unwrap();
            let last_line = text.trim_end().rfind('\n').unwrap() + 1;
            let value_starts = last_line + text[last_line..].find(": ").unwrap() + 2;
            assert!(text[last_line..].trim_start().starts_with("revision: "));
            // Every character of one file, every line end of the others.
            let cuts: Vec<usize> = if node == "app-1" {
                text.char_indices().map(|(k, _)| k).collect()
            } else {
                text.match_indices('\n').map(|(k, _)| k + 1).collect()
            };
            for cut in cuts.into_iter().filter(|&k| k < text.len()) {
                let read = parse(&path, &text[..cut], &node, &validator);
                if cut > value_starts {
                    // Refused (`3` reads as a number) or read whole with a
                    // shorter revision: never a list cut short.
                    if let Ok(spec) = read {
                        assert!(text.contains(&format!("revision: {}", spec.revision)));
                    }
                } else {
                    assert!(read.is_err(), "{node} cut at byte {cut} was accepted");
                }
            }
            files += 1;
        }
        assert_eq!(files, 9);
    }

    /// A state file past 64 MiB is refused naming the file and the bound,
    /// and an endless one (`/dev/zero`) is cut off there, not read forever.
    #[test]
    fn a_state_file_past_its_bound_is_refused_naming_it() {
        let dir =
            std::env::temp_dir().join(format!("meshguard-state-bound-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let at_bound = dir.join("at-bound.yaml");
        let past = dir.join("past.yaml");
        let body = format!("# {}\n", "x".repeat(MAX_STATE_FILE_BYTES as usize - 3));
        std::fs::write(&at_bound, &body).unwrap();
        std::fs::write(&past, format!("{body}#")).unwrap();
        assert_eq!(
            read_bounded(&at_bound).unwrap().len() as u64,
            MAX_STATE_FILE_BYTES
        );
        for path in [past.as_path(), Path::new("/dev/zero")] {
            let (tx, mut rx) = mpsc::channel(1);
            let mut reader = Reader {
                path: path.to_path_buf(),
                node: "db-1".into(),
                validator: Validator::new(),
                last: None,
                updates: tx,
            };
            reader.send_current();
            match rx.try_recv().unwrap() {
                Update::Rejected {
                    reason: message, ..
                } => assert_eq!(
                    message,
                    format!(
                        "state file {}: larger than 64 MiB, the bound of a state file",
                        path.display()
                    )
                ),
                other => panic!("{path:?} not refused: {other:?}"),
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
