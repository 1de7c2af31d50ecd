//! Reading the manifests users apply: files or directories (recursive
//! `*.yaml`, `*.yml`, `*.json`), multi-document, `kind: List` included.
//! meshguard objects are checked exactly as the API server would (plus our
//! own checks); Secrets are reduced to digests on the spot; Kubernetes
//! `Node`s (as `kubectl get nodes -o yaml` prints them) give their labels,
//! which selectors see under the MeshNode's, as in the cluster; other kinds
//! are ignored, so a GitOps repository can be pointed at as it is.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    io::Read,
    num::NonZero,
    path::{Path, PathBuf},
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use k8s_openapi::api::core::v1::{ConfigMap, Node, Secret};
use meshguard_crds::{
    API_VERSION, Kind, MeshNode, MeshPolicy, PolicyChain,
    validation::{FieldError, Validator},
};
use serde::de::DeserializeOwned;
use serde_json::Value;

use meshguard_policy::secrets::{ConfigMapData, SecretDigests};

/// Bad input: where, which object, which field, what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputError {
    pub file: PathBuf,
    pub object: Option<String>,
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(object) = &self.object {
            write!(f, ": {object}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Everything read, by kind, with the file each object came from.
#[derive(Default)]
pub struct Loaded {
    pub policies: Vec<MeshPolicy>,
    pub chains: Vec<PolicyChain>,
    pub nodes: Vec<MeshNode>,
    pub secrets: Vec<SecretDigests>,
    pub config_maps: Vec<ConfigMapData>,
    /// Kubernetes Node name -> its labels.
    pub node_labels: BTreeMap<String, BTreeMap<String, String>>,
    pub files: usize,
    origins: BTreeMap<(String, String, String), PathBuf>,
}

/// Checks our objects (schema, CEL, semantics). One made by
/// [`Checker::remembering`] also remembers each distinct document's answer,
/// so that reading two versions of mostly the same manifests (`diff`,
/// `matrix --before`) checks what is alike once; share it between the loads
/// of one command. The default remembers nothing (one load needs no memory
/// of every document it read).
#[derive(Default)]
pub struct Checker {
    validator: Validator,
    answers: Option<Mutex<HashMap<String, Answer>>>,
}

/// What the checks said of one document.
type Answer = Result<(), Vec<FieldError>>;

impl Checker {
    pub fn remembering() -> Checker {
        Checker {
            answers: Some(Mutex::default()),
            ..Checker::default()
        }
    }

    fn check(&self, kind: Kind, doc: &Value) -> Answer {
        let Some(answers) = &self.answers else {
            return self.validator.validate(kind, doc);
        };
        // The document as JSON is its identity (key order is the parser's,
        // the same for the same text).
        let key = doc.to_string();
        let known = answers
            .lock()
            .map(|answers| answers.get(&key).cloned())
            .unwrap_or_default();
        if let Some(answer) = known {
            return answer;
        }
        let answer = self.validator.validate(kind, doc);
        if let Ok(mut answers) = answers.lock() {
            answers.insert(key, answer.clone());
        }
        answer
    }
}

/// Reads every path; returns all problems found, not just the first.
pub fn load(paths: &[PathBuf], checker: &Checker) -> Result<Loaded, Vec<InputError>> {
    let mut errors = Vec::new();
    let files = manifest_files(paths, &mut errors);
    let mut loaded = Loaded {
        files: files.len(),
        ..Loaded::default()
    };
    for (file, read) in files.iter().zip(read_and_check(&files, checker)) {
        loaded.add_file(file, read, &mut errors);
    }
    if errors.is_empty() {
        Ok(loaded)
    } else {
        Err(errors)
    }
}

/// [`load`] of one file's text, already read: what the fuzzer feeds.
pub fn load_text(file: &Path, text: &str, checker: &Checker) -> Result<Loaded, Vec<InputError>> {
    let mut errors = Vec::new();
    let mut loaded = Loaded {
        files: 1,
        ..Loaded::default()
    };
    loaded.add_file(file, check_text(file, text, checker), &mut errors);
    if errors.is_empty() {
        Ok(loaded)
    } else {
        Err(errors)
    }
}

/// A document and, when it is an object of ours ([`our_kind`]), what the
/// schema, CEL and semantic checks say of it.
type Checked = (Value, Option<Answer>);

/// Every file read, parsed and its objects checked, in `files`' order.
/// This is most of the time (CEL's regexes, the schema walk, YAML) and
/// independent per file, so it runs on every core; what depends on order
/// (a name seen twice, which file came first) happens after, in order.
fn read_and_check(files: &[PathBuf], checker: &Checker) -> Vec<Result<Vec<Checked>, InputError>> {
    let workers = std::thread::available_parallelism()
        .map_or(1, NonZero::get)
        .clamp(1, files.len().max(1));
    let next = AtomicUsize::new(0);
    let mut done: Vec<(usize, Result<Vec<Checked>, InputError>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(file) = files.get(i) else {
                            return done;
                        };
                        let checked =
                            read_manifest(file).and_then(|text| check_text(file, &text, checker));
                        done.push((i, checked));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| match worker.join() {
                Ok(done) => done,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    });
    // Each index was taken by exactly one worker: sorted, they are `files`.
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, read)| read).collect()
}

/// A file's documents, each of ours with what the checks say of it.
fn check_text(file: &Path, text: &str, checker: &Checker) -> Result<Vec<Checked>, InputError> {
    Ok(documents_of(file, text)?
        .into_iter()
        .map(|doc| {
            let checked = our_kind(&doc).map(|kind| checker.check(kind, &doc));
            (doc, checked)
        })
        .collect())
}

/// The kind of a document that is one of our objects to check: our
/// apiVersion, one of our kinds, not a NodePolicy (an output of `compile`).
fn our_kind(doc: &Value) -> Option<Kind> {
    if doc.get("apiVersion").and_then(Value::as_str) != Some(API_VERSION) {
        return None;
    }
    let kind = Kind::from_name(doc.get("kind").and_then(Value::as_str)?)?;
    (kind != Kind::NodePolicy).then_some(kind)
}

/// Every document in `paths`, untyped and unchecked, with the file it came
/// from, in the order [`load`] reads them: for harnesses (the demo, the
/// cluster check) that need what is in a folder before handing it to the CLI.
pub fn documents(paths: &[PathBuf]) -> Result<Vec<(PathBuf, Value)>, Vec<InputError>> {
    let mut errors = Vec::new();
    let mut out = Vec::new();
    for file in manifest_files(paths, &mut errors) {
        match file_documents(&file) {
            Ok(docs) => out.extend(docs.into_iter().map(|d| (file.clone(), d))),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// The manifest files in and under `paths`: a directory's entries by name
/// (`*.yaml`, `*.yml`, `*.json` and subdirectories, recursively), a file as
/// named. A path that does not exist is an error, not an empty input.
fn manifest_files(paths: &[PathBuf], errors: &mut Vec<InputError>) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for path in paths {
        collect(path, &mut files, errors);
    }
    files
}

/// One file's documents: multi-document YAML (JSON is YAML), `kind: List`
/// flattened, empty documents left out.
fn file_documents(file: &Path) -> Result<Vec<Value>, InputError> {
    documents_of(file, &read_manifest(file)?)
}

/// The most a manifest file may hold. The API server takes objects of
/// about 1.5 MiB; a file of many is read whole, so it is bounded before
/// it is read (a path to `/dev/zero` must not eat the memory).
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// A manifest file's text, refused past [`MAX_FILE_BYTES`] or when it is
/// not UTF-8.
fn read_manifest(file: &Path) -> Result<String, InputError> {
    let failed = |message: String| error(file, None, None, message);
    let mut text = String::new();
    std::fs::File::open(file)
        .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_string(&mut text))
        .map_err(|e| failed(e.to_string()))?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(failed(format!(
            "more than {} MiB; split the manifests into several files",
            MAX_FILE_BYTES >> 20
        )));
    }
    Ok(text)
}

/// The documents of a file's text (see [`file_documents`]).
fn documents_of(file: &Path, text: &str) -> Result<Vec<Value>, InputError> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text)
        .map_err(|e| error(file, None, None, format!("not valid YAML: {e}")))?;
    let mut out = Vec::new();
    for doc in docs {
        match doc.get("kind").and_then(Value::as_str) {
            Some("List") => out.extend(
                doc.get("items")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            ),
            _ => out.push(doc),
        }
    }
    out.retain(|d| !d.is_null());
    Ok(out)
}

fn collect(path: &Path, files: &mut Vec<PathBuf>, errors: &mut Vec<InputError>) {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = match std::fs::read_dir(path) {
            Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(e) => {
                errors.push(error(path, None, None, e.to_string()));
                return;
            }
        };
        entries.sort();
        for entry in entries {
            let manifest = entry
                .extension()
                .is_some_and(|e| e == "yaml" || e == "yml" || e == "json");
            if entry.is_dir() || manifest {
                collect(&entry, files, errors);
            }
        }
    } else if path.exists() {
        files.push(path.to_path_buf());
    } else {
        errors.push(error(
            path,
            None,
            None,
            "no such file or directory".to_owned(),
        ));
    }
}

fn error(
    file: &Path,
    object: Option<String>,
    field: Option<String>,
    message: String,
) -> InputError {
    InputError {
        file: file.to_path_buf(),
        object,
        field,
        message,
    }
}

impl Loaded {
    /// One file's documents in order, or why it could not be read.
    fn add_file(
        &mut self,
        file: &Path,
        read: Result<Vec<Checked>, InputError>,
        errors: &mut Vec<InputError>,
    ) {
        match read {
            Ok(docs) => {
                for (number, (doc, checked)) in docs.into_iter().enumerate() {
                    self.add(file, number + 1, doc, checked, errors);
                }
            }
            Err(e) => errors.push(e),
        }
    }

    fn add(
        &mut self,
        file: &Path,
        number: usize,
        doc: Value,
        checked: Option<Answer>,
        errors: &mut Vec<InputError>,
    ) {
        let api_version = doc
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let kind = doc
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let name = doc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let namespace = doc
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_owned();
        let label = if name.is_empty() {
            format!("{kind} (document {number})")
        } else {
            format!("{kind}/{name}")
        };
        let fail = |errors: &mut Vec<InputError>, field: Option<String>, message: String| {
            errors.push(error(file, Some(label.clone()), field, message));
        };
        if !doc.is_object() {
            fail(
                errors,
                None,
                "a document must be a mapping with apiVersion and kind".to_owned(),
            );
            return;
        }

        // One of our kinds under a wrong apiVersion would be silently ignored
        // below (a Deny policy vanishing); other groups' kinds are not ours.
        let ours = api_version.starts_with("meshguard")
            || (!api_version.contains('/') && Kind::from_name(&kind).is_some());
        if ours && api_version != API_VERSION {
            fail(
                errors,
                Some("apiVersion".into()),
                format!("{api_version:?} is not supported; meshguard objects use {API_VERSION}"),
            );
            return;
        }
        if api_version == API_VERSION {
            let Some(kind) = Kind::from_name(&kind) else {
                fail(
                    errors,
                    Some("kind".into()),
                    format!("{kind:?} is not a meshguard.io kind"),
                );
                return;
            };
            if kind == Kind::NodePolicy {
                return; // an output of `compile`, not an input
            }
            match checked {
                Some(Ok(())) => {}
                Some(Err(field_errors)) => {
                    for e in field_errors {
                        fail(errors, Some(e.field), e.message);
                    }
                    return;
                }
                // `our_kind` chose what to check by the same tests as
                // above; should they ever differ, refuse, never skip.
                None => {
                    fail(
                        errors,
                        None,
                        "internal error: the object was not checked".to_owned(),
                    );
                    return;
                }
            }
            let scope = if kind.namespaced() {
                namespace.clone()
            } else {
                String::new()
            };
            if !self.claim(kind.name(), &scope, &name, file, errors, &label) {
                return;
            }
            let parsed = match kind {
                Kind::MeshPolicy => typed(&doc).map(|p| self.policies.push(p)),
                Kind::PolicyChain => typed(&doc).map(|mut c: PolicyChain| {
                    c.metadata.namespace = Some(namespace.clone());
                    self.chains.push(c)
                }),
                Kind::MeshNode => typed(&doc).map(|n| self.nodes.push(n)),
                Kind::NodePolicy => Ok(()),
            };
            if let Err(e) = parsed {
                fail(errors, None, e);
            }
            return;
        }

        match (api_version.as_str(), kind.as_str()) {
            ("v1", "Secret") => {
                if !self.claim("Secret", &namespace, &name, file, errors, &label) {
                    return;
                }
                match typed::<Secret>(&doc) {
                    Ok(secret) => self
                        .secrets
                        .push(SecretDigests::from_secret(&namespace, &name, secret)),
                    Err(e) => fail(errors, None, e),
                }
            }
            ("v1", "ConfigMap") => {
                if !self.claim("ConfigMap", &namespace, &name, file, errors, &label) {
                    return;
                }
                match typed::<ConfigMap>(&doc) {
                    Ok(map) => self.config_maps.push(ConfigMapData {
                        namespace,
                        name,
                        data: map.data.unwrap_or_default(),
                    }),
                    Err(e) => fail(errors, None, e),
                }
            }
            ("v1", "Node") => {
                if !self.claim("Node", "", &name, file, errors, &label) {
                    return;
                }
                match typed::<Node>(&doc) {
                    Ok(node) => {
                        self.node_labels
                            .insert(name, node.metadata.labels.unwrap_or_default());
                    }
                    Err(e) => fail(errors, None, e),
                }
            }
            // Anything else in a GitOps tree (Deployments, Namespaces, ...) is not ours.
            _ => {}
        }
    }

    /// Records where an object came from; two of one name are an error.
    fn claim(
        &mut self,
        kind: &str,
        namespace: &str,
        name: &str,
        file: &Path,
        errors: &mut Vec<InputError>,
        label: &str,
    ) -> bool {
        if name.is_empty() {
            errors.push(error(
                file,
                Some(label.to_owned()),
                Some("metadata.name".into()),
                "Required value".into(),
            ));
            return false;
        }
        let key = (kind.to_owned(), namespace.to_owned(), name.to_owned());
        if let Some(first) = self.origins.get(&key) {
            let place = if namespace.is_empty() {
                String::new()
            } else {
                format!(" in namespace {namespace}")
            };
            errors.push(error(
                file,
                Some(label.to_owned()),
                None,
                format!(
                    "a second {kind} named {name}{place}; the first is in {}",
                    first.display()
                ),
            ));
            return false;
        }
        self.origins.insert(key, file.to_path_buf());
        true
    }

    /// The file an object came from, for messages.
    pub fn origin(&self, kind: &str, namespace: Option<&str>, name: &str) -> Option<&Path> {
        self.origins
            .get(&(
                kind.to_owned(),
                namespace.unwrap_or_default().to_owned(),
                name.to_owned(),
            ))
            .map(PathBuf::as_path)
    }
}

fn typed<T: DeserializeOwned>(doc: &Value) -> Result<T, String> {
    serde_json::from_value(meshguard_crds::validation::normalize(doc)).map_err(|e| e.to_string())
}
