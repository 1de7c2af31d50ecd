//! The Kubernetes edge of the operator.
//!
//! ```text
//!  watch (one watcher per kind) ──▶ channel ──▶ Index
//!                                                │  burst over (debounce)
//!  leader? ─────────────────────────────────────▶ Reconciler::plan (pure)
//!                                                │
//!            NodePolicy apply / delete, status apply, Events ◀─┘
//! ```
//!
//! One pass covers the whole mesh: a burst of changes schedules one
//! recompute, not one per node per event, and only what differs is written.
//! A failed write fails the pass; [`error_policy`] says when to retry.

pub mod cli;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod rbac;
pub mod run;
pub mod watch;

use std::{sync::Arc, time::Duration};

use futures::{StreamExt, stream};
use k8s_openapi::{
    api::core::v1::ObjectReference, apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp,
};
use kube::{
    Api, Client, Resource,
    api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions},
    runtime::events::{Event, EventType, Recorder, Reporter},
};
use meshguard_crds::{API_VERSION, MeshNode, MeshPolicy, NodePolicy, PolicyChain};
use serde_json::json;

use self::metrics::Metrics;
use crate::{
    index::Index,
    reconcile::{FIELD_MANAGER, Note, Plan, Reconciler, StatusWrite},
};

/// Writes of one kind in flight at once: enough to hide the API server's
/// latency, few enough not to trip its rate limits.
pub const WRITES_IN_FLIGHT: usize = 8;

/// A write the API server refused.
#[derive(Debug, thiserror::Error)]
#[error("{verb} {kind}/{name}: {source}")]
pub struct WriteError {
    pub verb: &'static str,
    pub kind: &'static str,
    pub name: String,
    #[source]
    pub source: kube::Error,
}

impl WriteError {
    /// The HTTP status of the refusal, if the server answered.
    pub fn code(&self) -> Option<u16> {
        match &self.source {
            kube::Error::Api(status) => Some(status.code),
            _ => None,
        }
    }
}

/// When to retry after a failed pass, by how many passes failed in a row.
/// A conflict (409: an object changed under us) clears as soon as the watch
/// delivers the new version, so it is retried soon; anything else (5xx,
/// throttling, the network) backs off exponentially to five minutes.
pub fn error_policy(error: &WriteError, failures: u32) -> Duration {
    let doubling = 2u64.saturating_pow(failures.saturating_sub(1).min(16));
    match error.code() {
        Some(409) => Duration::from_millis((200 * doubling).min(5_000)),
        _ => Duration::from_secs(doubling.min(300)),
    }
}

/// Reconciler, index and the means to write.
pub struct Operator {
    pub index: Index,
    pub reconciler: Reconciler,
    client: Client,
    recorder: Recorder,
    metrics: Arc<Metrics>,
}

impl Operator {
    pub fn new(
        client: Client,
        reconciler: Reconciler,
        metrics: Arc<Metrics>,
        instance: Option<String>,
    ) -> Operator {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.into(),
                instance,
            },
        );
        Operator {
            index: Index::default(),
            reconciler,
            client,
            recorder,
            metrics,
        }
    }

    /// Plans and writes one pass over the current index.
    pub async fn pass(&mut self) -> Result<Plan, WriteError> {
        let plan = self.reconciler.plan(&self.index, &Time(Timestamp::now()));
        let s = &plan.summary;
        self.metrics
            .compile_seconds
            .observe(s.compile.as_secs_f64());
        self.metrics.members.set(s.members as i64);
        self.metrics.policies.set(s.policies as i64);
        self.metrics.rejected.set(s.rejected as i64);
        tracing::info!(
            members = s.members,
            policies = s.policies,
            rejected = s.rejected,
            compile_ms = s.compile.as_millis() as u64,
            compiles = s.compiles,
            node_policies = plan.node_policies.len(),
            deletions = plan.deletions.len(),
            statuses = plan.statuses.len(),
            oversized = plan.oversized.len(),
            "reconcile pass"
        );
        for too_large in plan.oversized.values() {
            tracing::error!(node = %too_large.name, bytes = too_large.bytes, peers = too_large.peers, "{too_large}");
        }
        self.execute(&plan).await?;
        Ok(plan)
    }

    /// Writes a plan: NodePolicies first (what nodes enforce), then stale
    /// deletions, statuses and Events. Writes of one kind go out
    /// [`WRITES_IN_FLIGHT`] at a time; a refused write fails the pass after
    /// the others of its kind finished. What was written is remembered, so
    /// the retry writes only the rest.
    async fn execute(&mut self, plan: &Plan) -> Result<(), WriteError> {
        let apply = PatchParams::apply(FIELD_MANAGER).force();
        let node_policies = self.api::<NodePolicy>(None);
        // Futures built up front: a stream's `map` closure over borrowed
        // items trips the compiler's Send check on the spawned pass.
        let writes: Vec<_> = plan
            .node_policies
            .iter()
            .map(|object| {
                let (api, apply) = (&node_policies, &apply);
                async move {
                    let name = object.metadata.name.clone().unwrap_or_default();
                    let result = api.patch(&name, apply, &Patch::Apply(object)).await;
                    (name, &object.spec.revision, result)
                }
            })
            .collect();
        let results: Vec<_> = stream::iter(writes)
            .buffer_unordered(WRITES_IN_FLIGHT)
            .collect()
            .await;
        let mut refused = None;
        for (name, revision, result) in results {
            self.count("NodePolicy", result.is_ok());
            match result {
                Ok(_) => {
                    self.metrics.node_policy_writes.inc();
                    self.reconciler.wrote(&name, revision);
                }
                Err(source) => {
                    refused.get_or_insert(WriteError {
                        verb: "apply",
                        kind: "NodePolicy",
                        name,
                        source,
                    });
                }
            }
        }
        if let Some(error) = refused {
            return Err(error);
        }
        for deletion in &plan.deletions {
            let params = DeleteParams::default().preconditions(Preconditions {
                uid: deletion.uid.clone(),
                resource_version: None,
            });
            match node_policies.delete(&deletion.name, &params).await {
                Ok(_) => self.metrics.node_policy_deletes.inc(),
                // Gone already, or recreated meanwhile (the uid differs).
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => 0,
                Err(source) => {
                    self.count("NodePolicy", false);
                    return Err(WriteError {
                        verb: "delete",
                        kind: "NodePolicy",
                        name: deletion.name.clone(),
                        source,
                    });
                }
            };
        }
        let writes: Vec<_> = plan
            .statuses
            .iter()
            .map(|write| self.write_status(write, &apply))
            .collect();
        let results: Vec<_> = stream::iter(writes)
            .buffer_unordered(WRITES_IN_FLIGHT)
            .collect()
            .await;
        if let Some(error) = results.into_iter().find_map(Result::err) {
            return Err(error);
        }
        for note in &plan.notes {
            self.publish(note).await;
        }
        Ok(())
    }

    async fn write_status(
        &self,
        write: &StatusWrite,
        apply: &PatchParams,
    ) -> Result<(), WriteError> {
        let (kind, namespace, name, status) = match write {
            StatusWrite::MeshPolicy(name, s) => ("MeshPolicy", None, name, json!(s)),
            StatusWrite::PolicyChain((ns, name), s) => ("PolicyChain", Some(ns), name, json!(s)),
            StatusWrite::MeshNode(name, s) => ("MeshNode", None, name, json!(s)),
        };
        let mut metadata = json!({ "name": name });
        if let Some(ns) = namespace {
            metadata["namespace"] = json!(ns);
        }
        let body = json!({ "apiVersion": API_VERSION, "kind": kind, "metadata": metadata, "status": status });
        let api = match write {
            StatusWrite::MeshPolicy(..) => self.api::<MeshPolicy>(None),
            StatusWrite::PolicyChain((ns, _), _) => self.api::<PolicyChain>(Some(ns)),
            StatusWrite::MeshNode(..) => self.api::<MeshNode>(None),
        };
        let result = api
            .patch_status(name, apply, &Patch::Apply(&body))
            .await
            .map(drop);
        self.count(kind, result.is_ok());
        result.map_err(|source| WriteError {
            verb: "apply status of",
            kind,
            name: name.clone(),
            source,
        })
    }

    /// Events are best effort: a refused Event is logged, never retried.
    async fn publish(&self, note: &Note) {
        let reference = ObjectReference {
            api_version: Some(API_VERSION.into()),
            kind: Some(note.kind.name().into()),
            name: Some(note.name.clone()),
            namespace: note.namespace.clone(),
            uid: note.uid.clone(),
            ..Default::default()
        };
        let event = Event {
            type_: if note.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: note.reason.clone(),
            note: Some(note.message.chars().take(1000).collect()),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &reference).await {
            self.count("Event", false);
            tracing::warn!(kind = note.kind.name(), name = %note.name, error = %e, "event not recorded");
        }
    }

    /// The API of one of our kinds, untyped: the answers to our writes are
    /// not read, so they are not deserialized into (large) typed objects.
    fn api<K: Resource<DynamicType = ()>>(&self, namespace: Option<&str>) -> Api<DynamicObject> {
        let resource = ApiResource::erase::<K>(&());
        match namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &resource),
            None => Api::all_with(self.client.clone(), &resource),
        }
    }

    fn count(&self, kind: &'static str, ok: bool) {
        let family = if ok {
            &self.metrics.reconciles
        } else {
            &self.metrics.errors
        };
        family.get_or_create(&Metrics::kind(kind)).inc();
    }
}
