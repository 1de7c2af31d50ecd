//! The watchers: one per kind, each turning watch events into index
//! [`Update`]s on one channel. A relist (start, or a watch that expired)
//! ends with [`Update::Relisted`], which drops what vanished meanwhile, and
//! [`Message::Synced`] marks the kind's first complete list.
//!
//! Secrets are reduced to digests here, before anything else sees them.

use std::collections::BTreeSet;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Secret};
use kube::{Api, Client, Resource, ResourceExt, runtime::watcher};
use std::borrow::Cow;

use kube::{api::ObjectMeta, core::ClusterResourceScope};
use meshguard_crds::{
    MeshNode, MeshPolicy, NodePolicy, PolicyChain,
    watch::{health::Watches, relisting},
};
use serde::{Deserialize, de::DeserializeOwned};
use tokio::sync::mpsc;

use meshguard_policy::secrets::{ConfigMapData, SecretDigests};

use crate::index::{Namespaced, Observed, Update, Watched};

pub enum Message {
    Update(Update),
    /// The kind's first full list is in the index.
    Synced(Watched),
}

/// The operator's watches, one per kind, none in sync yet.
pub fn watches() -> Watches {
    Watches::new(Watched::ALL.map(Watched::kind))
}

/// Starts every watcher; they run until the receiver is dropped. Each
/// tells `watches` whether it is in step with the API.
pub fn spawn_all(client: &Client, tx: &mpsc::Sender<Message>, watches: &Watches) {
    let link = Link {
        tx: tx.clone(),
        watches: watches.clone(),
    };
    spawn::<MeshPolicy>(
        Api::all(client.clone()),
        Watched::MeshPolicies,
        &link,
        |p| Update::Policy(Box::new(p)),
        |k| Update::PolicyGone(k.1),
    );
    spawn::<PolicyChain>(
        Api::all(client.clone()),
        Watched::PolicyChains,
        &link,
        |c| Update::Chain(Box::new(c)),
        Update::ChainGone,
    );
    spawn::<MeshNode>(
        Api::all(client.clone()),
        Watched::MeshNodes,
        &link,
        |n| Update::MeshNode(Box::new(n)),
        |k| Update::MeshNodeGone(k.1),
    );
    spawn::<Node>(
        Api::all(client.clone()),
        Watched::Nodes,
        &link,
        |n: Node| Update::NodeLabels(n.name_any(), n.metadata.labels.unwrap_or_default()),
        |k| Update::NodeGone(k.1),
    );
    spawn::<Secret>(
        Api::all(client.clone()),
        Watched::Secrets,
        &link,
        |s: Secret| {
            let (namespace, name) = key(&s);
            Update::Secret(SecretDigests::from_secret(&namespace, &name, s))
        },
        Update::SecretGone,
    );
    spawn::<ConfigMap>(
        Api::all(client.clone()),
        Watched::ConfigMaps,
        &link,
        |c: ConfigMap| {
            let (namespace, name) = key(&c);
            Update::ConfigMap(ConfigMapData {
                namespace,
                name,
                data: c.data.unwrap_or_default(),
            })
        },
        Update::ConfigMapGone,
    );
    spawn::<NodePolicyHead>(
        Api::all(client.clone()),
        Watched::NodePolicies,
        &link,
        |p: NodePolicyHead| {
            let name = p.metadata.name.clone().unwrap_or_default();
            Update::NodePolicy(name, {
                let status = p.status.unwrap_or_default();
                Observed {
                    uid: p.metadata.uid,
                    chains_served: status.enforced_with_chains(&p.spec.revision),
                    revision: p.spec.revision,
                    enforced: status.observed_revision,
                }
            })
        },
        |k| Update::NodePolicyGone(k.1),
    );
}

/// `(namespace, name)`; cluster-scoped objects have an empty namespace
/// (the index keys them by name), namespaced ones default to `default`.
fn key<K: Resource>(object: &K) -> Namespaced {
    let name = object.meta().name.clone().unwrap_or_default();
    match &object.meta().namespace {
        Some(ns) => (ns.clone(), name),
        None => (String::new(), name),
    }
}

/// Where a watcher's news goes: the index's channel, and its link's health.
#[derive(Clone)]
struct Link {
    tx: mpsc::Sender<Message>,
    watches: Watches,
}

fn spawn<K>(
    api: Api<K>,
    kind: Watched,
    link: &Link,
    applied: impl Fn(K) -> Update + Send + 'static,
    deleted: impl Fn(Namespaced) -> Update + Send + 'static,
) where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let events = relisting(api, watcher::Config::default());
    tokio::spawn(forward(events, kind, link.clone(), applied, deleted));
}

async fn forward<K: Resource>(
    events: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
    kind: Watched,
    Link { tx, watches }: Link,
    applied: impl Fn(K) -> Update,
    deleted: impl Fn(Namespaced) -> Update,
) {
    let mut events = std::pin::pin!(events);
    let mut listing: Option<BTreeSet<Namespaced>> = None;
    let mut synced = false;
    while let Some(event) = events.next().await {
        watches.observe(kind.kind(), &event);
        let message = match event {
            Ok(watcher::Event::Init) => {
                listing = Some(BTreeSet::new());
                continue;
            }
            Ok(watcher::Event::InitApply(object)) => {
                if let Some(listing) = &mut listing {
                    listing.insert(key(&object));
                }
                Message::Update(applied(object))
            }
            Ok(watcher::Event::InitDone) => {
                let present = listing.take().unwrap_or_default();
                if tx
                    .send(Message::Update(Update::Relisted(kind, present)))
                    .await
                    .is_err()
                {
                    return;
                }
                if synced {
                    continue;
                }
                synced = true;
                Message::Synced(kind)
            }
            Ok(watcher::Event::Apply(object)) => Message::Update(applied(object)),
            Ok(watcher::Event::Delete(object)) => Message::Update(deleted(key(&object))),
            Err(e) => {
                // The backoff retries; RBAC or a missing CRD shows up here.
                tracing::warn!(?kind, error = %e, "watch failed; retrying");
                continue;
            }
        };
        if tx.send(message).await.is_err() {
            return;
        }
    }
}

/// A NodePolicy read without its peers, sets, rules and chains: serde
/// skips what this type does not name, so thousands of large NodePolicies
/// are never held.
#[derive(Clone, Debug, Deserialize)]
struct NodePolicyHead {
    metadata: ObjectMeta,
    #[serde(default)]
    spec: HeadSpec,
    #[serde(default)]
    status: Option<HeadStatus>,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct HeadSpec {
    #[serde(default)]
    revision: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HeadStatus {
    observed_revision: Option<String>,
    #[serde(default)]
    conditions: Vec<HeadCondition>,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct HeadCondition {
    #[serde(rename = "type")]
    type_: String,
    status: String,
}

impl HeadStatus {
    /// Whether the agent enforces `revision` and serves its chains: its
    /// `ChainsServed` condition is True and it observed that revision.
    fn enforced_with_chains(&self, revision: &str) -> bool {
        self.observed_revision.as_deref() == Some(revision)
            && self
                .conditions
                .iter()
                .any(|c| c.type_ == "ChainsServed" && c.status == "True")
    }
}

impl Resource for NodePolicyHead {
    type DynamicType = ();
    type Scope = ClusterResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        NodePolicy::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        NodePolicy::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        NodePolicy::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        NodePolicy::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_policy_is_read_without_its_body() {
        let text = r#"{"apiVersion":"meshguard.io/v1alpha1","kind":"NodePolicy",
            "metadata":{"name":"db-1","uid":"u1"},
            "spec":{"revision":"abc","peers":[{"name":"web-1"}],"ingress":[]},
            "status":{"observedRevision":"abb","peers":3,
                "conditions":[{"type":"ChainsServed","status":"True","reason":"Served"}]}}"#;
        let head: NodePolicyHead = serde_json::from_str(text).unwrap();
        let status = head.status.clone().unwrap();
        assert!(
            !status.enforced_with_chains("abc"),
            "another revision is observed"
        );
        assert!(status.enforced_with_chains("abb"));
        assert_eq!(
            (
                head.spec.revision.as_str(),
                head.status.and_then(|s| s.observed_revision)
            ),
            ("abc", Some("abb".to_owned()))
        );
        assert_eq!(
            NodePolicyHead::url_path(&(), None),
            "/apis/meshguard.io/v1alpha1/nodepolicies"
        );
    }
}
