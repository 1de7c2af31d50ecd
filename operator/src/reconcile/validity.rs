//! Validation of the objects a pass reads, as the API server would have
//! done it (schema, CEL rules, meshguard's own checks), remembered per
//! object generation: a pass over thousands of unchanged MeshNodes does not
//! validate them again.

use std::collections::{HashMap, HashSet};

use kube::Resource;
use meshguard_crds::{Kind, validation::Validator};
use serde::Serialize;

/// `(kind, namespace, name, uid, generation)`.
type Key = (Kind, String, String, String, i64);

pub struct Validity {
    validator: Validator,
    known: HashMap<Key, Option<Vec<String>>>,
    used: HashSet<Key>,
}

impl Validity {
    pub fn new() -> Validity {
        Validity {
            validator: Validator::new(),
            known: HashMap::new(),
            used: HashSet::new(),
        }
    }

    /// `field: message` lines of what is wrong, or `None` when valid.
    pub fn problems<T: Serialize + Resource>(
        &mut self,
        kind: Kind,
        object: &T,
    ) -> Option<Vec<String>> {
        let meta = object.meta();
        // The API server bumps `generation` on every spec change; objects
        // without one (built by hand) are checked every time.
        let key = match (&meta.uid, meta.generation) {
            (Some(uid), Some(generation)) => Some((
                kind,
                meta.namespace.clone().unwrap_or_default(),
                meta.name.clone().unwrap_or_default(),
                uid.clone(),
                generation,
            )),
            _ => None,
        };
        if let Some(key) = &key {
            self.used.insert(key.clone());
            if let Some(known) = self.known.get(key) {
                return known.clone();
            }
        }
        let problems = match serde_json::to_value(object) {
            Ok(value) => self.validator.validate(kind, &value).err().map(|errors| {
                errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect()
            }),
            Err(e) => Some(vec![e.to_string()]),
        };
        if let Some(key) = key {
            self.known.insert(key, problems.clone());
        }
        problems
    }

    /// Forgets what the last pass did not ask about (deleted or changed objects).
    pub fn end_pass(&mut self) {
        let used = std::mem::take(&mut self.used);
        self.known.retain(|key, _| used.contains(key));
    }
}
