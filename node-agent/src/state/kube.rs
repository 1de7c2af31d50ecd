//! In a cluster: the agent's side of the API.
//!
//! ```text
//!  Node/<node> ──owner──▶ MeshNode/<node>   registered here: publicKey, endpoint
//!                              │             (server-side apply, field manager
//!                              ▼              `meshguard-agent`; labels and
//!                     operator compiles       meshIP stay the operator's)
//!                              │
//!  NodePolicy/<node> ◀─────────┘             watched here by field selector,
//!       ├─ status ◀── this agent             checked like a state file; status
//!       └─ Events ◀── this agent             written back with server-side apply;
//!                                            a refused version gets a Warning Event
//! ```
//!
//! Objects are read as `DynamicObject` and checked by [`super::check`], so a
//! NodePolicy that does not fit the Rust types is refused with a reason
//! instead of stalling the watch on a decode error.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, ObjectReference};
use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, Patch, PatchParams, TypeMeta},
    runtime::{
        events::{Event, EventType, Recorder, Reporter},
        watcher,
    },
};
use meshguard_crds::{
    API_VERSION, MeshNode, NodePolicy, NodePolicyStatus,
    validation::Validator,
    watch::{health::Watches, relisting},
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{Update, check};

/// The agent's watches, by the names `/readyz` and the `watch` label of
/// its `watch_synced` and `watch_errors` metrics use.
pub const WATCHES: [&str; 2] = [NODE_POLICY_WATCH, MESH_NODE_WATCH];
const NODE_POLICY_WATCH: &str = "NodePolicy";
const MESH_NODE_WATCH: &str = "MeshNode";

/// The field manager of everything the agent writes.
pub const FIELD_MANAGER: &str = "meshguard-agent";

/// The permissions the requests in this file need, `(API group, resource,
/// verbs)`: the chart's agent ClusterRole grants exactly these (a test
/// compares them), so a new request without its grant fails the tests
/// rather than a cluster.
pub const PERMISSIONS: &[(&str, &str, &[&str])] = &[
    // register: the Node's uid for the owner reference.
    ("", "nodes", &["get"]),
    // register (server-side apply: create when new) and keep_registered's watch.
    (
        "meshguard.io",
        "meshnodes",
        &["list", "watch", "create", "patch"],
    ),
    // watch_policy and StatusWriter.
    ("meshguard.io", "nodepolicies", &["list", "watch"]),
    ("meshguard.io", "nodepolicies/status", &["patch"]),
    // StatusWriter::refused (kube's Recorder: create, then patch a series).
    ("events.k8s.io", "events", &["create", "patch"]),
];

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error(
        "Node/{node} not found: --node must be this Kubernetes node's name (spec.nodeName through the downward API)"
    )]
    NoNode { node: String },
    #[error("reading Node/{node}: {source}")]
    ReadNode { node: String, source: kube::Error },
    #[error("applying MeshNode/{node}: {source}")]
    ApplyMeshNode { node: String, source: kube::Error },
    #[error("writing the status of NodePolicy/{node}: {source}")]
    WriteStatus { node: String, source: kube::Error },
    #[error("recording an Event on NodePolicy/{node}: {source}")]
    RecordEvent { node: String, source: kube::Error },
}

/// What this node tells the mesh about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    pub node: String,
    pub public_key: String,
    /// `host:port` where peers reach this node; `None` behind NAT.
    pub endpoint: Option<String>,
}

impl Registration {
    /// The MeshNode fields the agent owns. Owned by the Node, so that
    /// deleting the Node deletes the member.
    pub fn apply_body(&self, node_uid: &str) -> Value {
        let mut spec = json!({ "publicKey": self.public_key });
        if let Some(endpoint) = &self.endpoint {
            spec["endpoint"] = json!(endpoint);
        }
        json!({
            "apiVersion": API_VERSION,
            "kind": "MeshNode",
            "metadata": {
                "name": self.node,
                "ownerReferences": [{ "apiVersion": "v1", "kind": "Node", "name": self.node, "uid": node_uid }],
            },
            "spec": spec,
        })
    }

    /// Whether a MeshNode object says what this registration says.
    fn matches(&self, object: &DynamicObject) -> bool {
        let spec = &object.data["spec"];
        spec["publicKey"].as_str() == Some(self.public_key.as_str())
            && spec["endpoint"].as_str() == self.endpoint.as_deref()
            && object
                .metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.kind == "Node" && o.name == self.node)
    }
}

fn dynamic<K: kube::Resource<DynamicType = ()>>(client: &Client) -> Api<DynamicObject> {
    Api::all_with(client.clone(), &ApiResource::erase::<K>(&()))
}

fn by_name(node: &str) -> watcher::Config {
    watcher::Config::default().fields(&format!("metadata.name={node}"))
}

/// Creates or updates MeshNode/<node> with the agent's fields.
pub async fn register(client: &Client, registration: &Registration) -> Result<(), KubeError> {
    let node = &registration.node;
    let found = Api::<Node>::all(client.clone())
        .get_opt(node)
        .await
        .map_err(|source| KubeError::ReadNode {
            node: node.clone(),
            source,
        })?;
    let uid = found
        .and_then(|n| n.metadata.uid)
        .ok_or_else(|| KubeError::NoNode { node: node.clone() })?;
    dynamic::<MeshNode>(client)
        .patch(
            node,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(registration.apply_body(&uid)),
        )
        .await
        .map_err(|source| KubeError::ApplyMeshNode {
            node: node.clone(),
            source,
        })?;
    tracing::info!(node = %node, endpoint = ?registration.endpoint, "MeshNode registered");
    Ok(())
}

/// [`register`] until it succeeds, backing off from 1 s to a minute.
async fn register_until_done(client: &Client, registration: &Registration) {
    let mut wait = Duration::from_secs(1);
    while let Err(e) = register(client, registration).await {
        tracing::error!(error = %e, retry_in = ?wait, "MeshNode registration failed");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(60));
    }
}

/// Registers, then keeps MeshNode/<node> registered: re-applies when it is
/// deleted or someone changes the agent's fields. Runs until the watch ends.
pub async fn keep_registered(client: Client, registration: Registration, watches: Watches) {
    register_until_done(&client, &registration).await;
    let events = relisting(dynamic::<MeshNode>(&client), by_name(&registration.node));
    let mut events = std::pin::pin!(events);
    let mut seen = false;
    while let Some(event) = events.next().await {
        watches.observe(MESH_NODE_WATCH, &event);
        let repair = match event {
            Ok(watcher::Event::Init) => {
                seen = false;
                false
            }
            Ok(watcher::Event::InitApply(object) | watcher::Event::Apply(object)) => {
                seen = true;
                !registration.matches(&object)
            }
            Ok(watcher::Event::InitDone) => !seen,
            Ok(watcher::Event::Delete(_)) => {
                seen = false;
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "watching MeshNode/{}", registration.node);
                false
            }
        };
        if repair {
            tracing::warn!(node = %registration.node, "MeshNode missing or changed; registering again");
            register_until_done(&client, &registration).await;
        }
    }
}

/// Watches NodePolicy/<node> and sends every version, checked, to `updates`.
/// A deleted NodePolicy changes nothing: the last state stays enforced until
/// a new one arrives (deleting it is not how to stop enforcement; teardown is).
/// `watches` learns whether the watch is in step with the API.
pub async fn watch_policy(
    client: Client,
    node: String,
    updates: mpsc::Sender<Update>,
    watches: Watches,
) {
    let validator = Validator::new();
    let origin = format!("NodePolicy/{node}");
    let events = relisting(dynamic::<NodePolicy>(&client), by_name(&node));
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        watches.observe(NODE_POLICY_WATCH, &event);
        let object = match event {
            Ok(watcher::Event::InitApply(object) | watcher::Event::Apply(object)) => object,
            Ok(watcher::Event::Delete(_)) => {
                tracing::warn!(%origin, "deleted; the last state stays enforced");
                continue;
            }
            Ok(watcher::Event::Init | watcher::Event::InitDone) => continue,
            Err(e) => {
                tracing::warn!(%origin, error = %e, "watch interrupted; retrying");
                continue;
            }
        };
        let uid = object.metadata.uid.clone();
        let update = match check(&origin, &document(object), &node, &validator) {
            Ok(spec) => Update::State(Box::new(spec)),
            Err(e) => Update::Rejected {
                reason: e.to_string(),
                uid,
            },
        };
        if updates.send(update).await.is_err() {
            return; // the agent is stopping
        }
    }
}

/// The object as the JSON document a file would hold. List responses may
/// leave out an item's apiVersion and kind; the watch was for NodePolicies.
fn document(mut object: DynamicObject) -> Value {
    if object.types.is_none() {
        object.types = Some(TypeMeta {
            api_version: API_VERSION.to_owned(),
            kind: "NodePolicy".to_owned(),
        });
    }
    // Serializing a DynamicObject (plain maps and strings) cannot fail.
    serde_json::to_value(object).unwrap_or_default()
}

/// Writes NodePolicy/<node>'s status, owning all of it, and the Events
/// that say why a NodePolicy was refused.
#[derive(Clone)]
pub struct StatusWriter {
    api: Api<DynamicObject>,
    node: String,
    recorder: Recorder,
}

/// What an Event's note may hold (events.k8s.io/v1 refuses more than 1 KiB).
const NOTE_CHARS: usize = 1000;

impl StatusWriter {
    pub fn new(client: &Client, node: &str) -> StatusWriter {
        StatusWriter {
            api: dynamic::<NodePolicy>(client),
            node: node.to_owned(),
            recorder: Recorder::new(
                client.clone(),
                Reporter {
                    controller: FIELD_MANAGER.into(),
                    instance: Some(node.to_owned()),
                },
            ),
        }
    }

    /// A Warning Event on NodePolicy/<node> (its `uid`, when known, so that
    /// `kubectl describe` shows it): the NodePolicy was refused and why.
    /// Repeats of one reason become one Event's series.
    pub async fn refused(&self, reason: &str, uid: Option<&str>) -> Result<(), KubeError> {
        let reference = ObjectReference {
            api_version: Some(API_VERSION.into()),
            kind: Some("NodePolicy".into()),
            name: Some(self.node.clone()),
            uid: uid.map(str::to_owned),
            ..Default::default()
        };
        let event = Event {
            type_: EventType::Warning,
            reason: "InvalidState".into(),
            note: Some(reason.chars().take(NOTE_CHARS).collect()),
            action: "Apply".into(),
            secondary: None,
        };
        self.recorder
            .publish(&event, &reference)
            .await
            .map_err(|source| KubeError::RecordEvent {
                node: self.node.clone(),
                source,
            })
    }

    pub async fn write(&self, status: &NodePolicyStatus) -> Result<(), KubeError> {
        let body = json!({
            "apiVersion": API_VERSION,
            "kind": "NodePolicy",
            "metadata": { "name": self.node },
            "status": status,
        });
        self.api
            .patch_status(
                &self.node,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(body),
            )
            .await
            .map(drop)
            .map_err(|source| KubeError::WriteStatus {
                node: self.node.clone(),
                source,
            })
    }
}
