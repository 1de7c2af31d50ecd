//! The cluster as the operator knows it: every object the compiler reads,
//! fed by the watchers and read by the reconciler. Pure data, no I/O.
//!
//! Secrets are reduced to digests before they get here (see [`meshguard_policy::secrets`]),
//! so no raw key material is ever held.

use std::collections::{BTreeMap, BTreeSet};

use meshguard_crds::{MeshNode, MeshPolicy, PolicyChain};

use meshguard_policy::secrets::{ConfigMapData, SecretDigests};

/// `(namespace, name)` of a namespaced object.
pub type Namespaced = (String, String);

/// One change seen by a watcher.
#[derive(Clone, Debug)]
pub enum Update {
    Policy(Box<MeshPolicy>),
    PolicyGone(String),
    Chain(Box<PolicyChain>),
    ChainGone(Namespaced),
    MeshNode(Box<MeshNode>),
    MeshNodeGone(String),
    /// A Kubernetes Node's labels (selectors see them under the MeshNode's).
    NodeLabels(String, BTreeMap<String, String>),
    NodeGone(String),
    Secret(SecretDigests),
    SecretGone(Namespaced),
    ConfigMap(ConfigMapData),
    ConfigMapGone(Namespaced),
    NodePolicy(String, Observed),
    NodePolicyGone(String),
    /// A watcher listed its kind anew: entries not in `present` are gone.
    Relisted(Watched, BTreeSet<Namespaced>),
}

/// The kinds the operator watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Watched {
    MeshPolicies,
    PolicyChains,
    MeshNodes,
    Nodes,
    Secrets,
    ConfigMaps,
    NodePolicies,
}

impl Watched {
    pub const ALL: [Watched; 7] = [
        Watched::MeshPolicies,
        Watched::PolicyChains,
        Watched::MeshNodes,
        Watched::Nodes,
        Watched::Secrets,
        Watched::ConfigMaps,
        Watched::NodePolicies,
    ];

    /// The kind, as `/readyz` and the `watch` label of the operator's
    /// `watch_synced` and `watch_errors` metrics name its watch.
    pub fn kind(self) -> &'static str {
        match self {
            Watched::MeshPolicies => "MeshPolicy",
            Watched::PolicyChains => "PolicyChain",
            Watched::MeshNodes => "MeshNode",
            Watched::Nodes => "Node",
            Watched::Secrets => "Secret",
            Watched::ConfigMaps => "ConfigMap",
            Watched::NodePolicies => "NodePolicy",
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Index {
    pub policies: BTreeMap<String, MeshPolicy>,
    pub chains: BTreeMap<Namespaced, PolicyChain>,
    pub mesh_nodes: BTreeMap<String, MeshNode>,
    pub node_labels: BTreeMap<String, BTreeMap<String, String>>,
    pub secrets: BTreeMap<Namespaced, SecretDigests>,
    pub config_maps: BTreeMap<Namespaced, ConfigMapData>,
    /// What the cluster's NodePolicies say (spec written by us, status by agents).
    pub node_policies: BTreeMap<String, Observed>,
}

/// The part of a NodePolicy the operator reads. A NodePolicy of a large
/// mesh is most of a megabyte; holding thousands whole is what this avoids.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    pub uid: Option<String>,
    /// `spec.revision`: what was written.
    pub revision: String,
    /// `status.observedRevision`: what the node's agent enforces.
    pub enforced: Option<String>,
    /// The agent enforces `revision` and serves its PolicyChains (its
    /// `ChainsServed` condition is True).
    pub chains_served: bool,
}

fn name(meta: &kube::api::ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

fn namespaced(meta: &kube::api::ObjectMeta) -> Namespaced {
    (
        meta.namespace.clone().unwrap_or_else(|| "default".into()),
        name(meta),
    )
}

/// Replaces or removes an entry; true when that changed anything.
fn put<K: Ord, V: PartialEq>(map: &mut BTreeMap<K, V>, key: K, value: Option<V>) -> bool {
    match value {
        Some(value) => {
            if map.get(&key) == Some(&value) {
                return false;
            }
            map.insert(key, value);
            true
        }
        None => map.remove(&key).is_some(),
    }
}

impl Index {
    /// Applies one update; true when the index changed.
    pub fn apply(&mut self, update: Update) -> bool {
        match update {
            Update::Policy(p) => put(&mut self.policies, name(&p.metadata), Some(*p)),
            Update::PolicyGone(n) => put(&mut self.policies, n, None),
            Update::Chain(c) => put(&mut self.chains, namespaced(&c.metadata), Some(*c)),
            Update::ChainGone(key) => put(&mut self.chains, key, None),
            Update::MeshNode(n) => put(&mut self.mesh_nodes, name(&n.metadata), Some(*n)),
            Update::MeshNodeGone(n) => put(&mut self.mesh_nodes, n, None),
            Update::NodeLabels(n, labels) => put(&mut self.node_labels, n, Some(labels)),
            Update::NodeGone(n) => put(&mut self.node_labels, n, None),
            Update::Secret(s) => put(
                &mut self.secrets,
                (s.namespace.clone(), s.name.clone()),
                Some(s),
            ),
            Update::SecretGone(key) => put(&mut self.secrets, key, None),
            Update::ConfigMap(c) => put(
                &mut self.config_maps,
                (c.namespace.clone(), c.name.clone()),
                Some(c),
            ),
            Update::ConfigMapGone(key) => put(&mut self.config_maps, key, None),
            Update::NodePolicy(n, observed) => put(&mut self.node_policies, n, Some(observed)),
            Update::NodePolicyGone(n) => put(&mut self.node_policies, n, None),
            Update::Relisted(kind, present) => self.relisted(kind, &present),
        }
    }

    fn relisted(&mut self, kind: Watched, present: &BTreeSet<Namespaced>) -> bool {
        /// Keeps what the list returned; true when anything went.
        fn keep<V>(map: &mut BTreeMap<String, V>, present: &BTreeSet<Namespaced>) -> bool {
            let before = map.len();
            map.retain(|name, _| present.contains(&(String::new(), name.clone())));
            map.len() != before
        }
        fn keep_namespaced<V>(
            map: &mut BTreeMap<Namespaced, V>,
            present: &BTreeSet<Namespaced>,
        ) -> bool {
            let before = map.len();
            map.retain(|key, _| present.contains(key));
            map.len() != before
        }
        match kind {
            Watched::MeshPolicies => keep(&mut self.policies, present),
            Watched::PolicyChains => keep_namespaced(&mut self.chains, present),
            Watched::MeshNodes => keep(&mut self.mesh_nodes, present),
            Watched::Nodes => keep(&mut self.node_labels, present),
            Watched::Secrets => keep_namespaced(&mut self.secrets, present),
            Watched::ConfigMaps => keep_namespaced(&mut self.config_maps, present),
            Watched::NodePolicies => keep(&mut self.node_policies, present),
        }
    }

    /// A member's labels: the MeshNode's over the Kubernetes Node's.
    pub fn labels_of(&self, node: &MeshNode) -> BTreeMap<String, String> {
        meshguard_policy::members::labels(
            self.node_labels.get(&name(&node.metadata)),
            node.metadata.labels.as_ref(),
        )
    }
}

#[cfg(test)]
mod tests {
    use meshguard_crds::MeshNodeSpec;

    use super::*;

    #[test]
    fn only_real_changes_count_and_mesh_node_labels_win() {
        let mut index = Index::default();
        let mut node = MeshNode::new(
            "n1",
            MeshNodeSpec {
                public_key: "k".repeat(43) + "=",
                endpoint: None,
                mesh_ip: None,
                allowed_ips: None,
            },
        );
        node.metadata.labels = Some(BTreeMap::from([("zone".into(), "mesh".into())]));
        assert!(index.apply(Update::MeshNode(Box::new(node.clone()))));
        assert!(!index.apply(Update::MeshNode(Box::new(node.clone()))));
        let labels = BTreeMap::from([
            ("zone".to_owned(), "node".to_owned()),
            ("kubernetes.io/os".to_owned(), "linux".to_owned()),
        ]);
        assert!(index.apply(Update::NodeLabels("n1".into(), labels)));
        let seen = index.labels_of(&node);
        assert_eq!(seen["zone"], "mesh");
        assert_eq!(seen["kubernetes.io/os"], "linux");
        let listed = BTreeSet::from([(String::new(), "other".to_owned())]);
        assert!(index.apply(Update::Relisted(Watched::Nodes, listed)));
        assert!(!index.labels_of(&node).contains_key("kubernetes.io/os"));
        assert!(index.apply(Update::MeshNodeGone("n1".into())));
        assert!(!index.apply(Update::MeshNodeGone("n1".into())));
    }
}
