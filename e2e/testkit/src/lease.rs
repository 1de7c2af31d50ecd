//! A Lease kept the way the API server keeps one for leader election, for
//! tests that run the operator's election against a mocked API server:
//! server-side apply refuses to take a field another field manager set to
//! a different value (409), strategic merge patches always land and `null`
//! removes a field.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a panic is a failure report

use std::collections::BTreeMap;

use http::StatusCode;
use serde_json::{Value, json};

use crate::api_server::{Seen, failure, not_found};

/// The Lease `meshguard-system/meshguard-operator` (the chart's).
#[derive(Default)]
pub struct Lease {
    exists: bool,
    /// Each spec field with the field manager that set it.
    fields: BTreeMap<String, (Value, String)>,
}

impl Lease {
    pub const PATH: &'static str =
        "/apis/coordination.k8s.io/v1/namespaces/meshguard-system/leases/meshguard-operator";

    /// Whether a request is for the Lease (or its collection, for a create).
    pub fn is_for(seen: &Seen) -> bool {
        seen.path()
            .starts_with(Lease::PATH.rsplit_once('/').unwrap().0)
    }

    pub fn holder(&self) -> Option<String> {
        self.fields
            .get("holderIdentity")
            .and_then(|(v, _)| v.as_str().map(str::to_owned))
    }

    /// The answer to a request for the Lease, the Lease changed as asked.
    pub fn answer(&mut self, seen: &Seen) -> (StatusCode, Value) {
        let manager = seen.param("fieldManager").unwrap_or_default().to_owned();
        match seen.method() {
            "POST" if self.exists => (
                StatusCode::CONFLICT,
                failure(
                    409,
                    "AlreadyExists",
                    "leases \"meshguard-operator\" already exists",
                ),
            ),
            "POST" => {
                self.exists = true;
                (StatusCode::CREATED, self.object())
            }
            _ if !self.exists => (StatusCode::NOT_FOUND, not_found("lease")),
            "GET" => (StatusCode::OK, self.object()),
            "PATCH" => {
                let apply = seen.content_type() == Some("application/apply-patch+yaml");
                let spec = seen.body["spec"].as_object().cloned().unwrap_or_default();
                let conflict = apply
                    && spec.iter().any(|(k, v)| {
                        self.fields
                            .get(k)
                            .is_some_and(|(old, owner)| *owner != manager && old != v)
                    });
                if conflict {
                    return (
                        StatusCode::CONFLICT,
                        failure(409, "Conflict", "Apply failed with 1 conflict"),
                    );
                }
                for (k, v) in spec {
                    if v.is_null() {
                        self.fields.remove(&k);
                    } else {
                        self.fields.insert(k, (v, manager.clone()));
                    }
                }
                (StatusCode::OK, self.object())
            }
            method => panic!("unexpected {method} {}", seen.path()),
        }
    }

    fn object(&self) -> Value {
        let spec: serde_json::Map<String, Value> = self
            .fields
            .iter()
            .map(|(k, (v, _))| (k.clone(), v.clone()))
            .collect();
        json!({ "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": { "name": "meshguard-operator", "namespace": "meshguard-system" },
                "spec": spec })
    }
}
