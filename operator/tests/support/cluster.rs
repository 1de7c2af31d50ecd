//! Objects as the API server would hold them, for the operator's controller
//! and reconcile tests.

use meshguard_crds::{MeshNode, MeshPolicy, PolicyChain};
use meshguard_operator::{
    index::{Index, Observed, Update},
    reconcile::{Reconciler, Settings},
};
use meshguard_policy::secrets::SecretDigests;
use serde_json::{Value, json};

/// A valid WireGuard public key per letter.
pub fn key(letter: char) -> String {
    format!("{}A=", letter.to_string().repeat(42))
}

pub fn settings() -> Settings {
    Settings {
        mesh_cidr: "100.96.0.0/24".parse().unwrap(),
        listen_port: 51820,
        audit_peers: false,
    }
}

pub fn reconciler() -> Reconciler {
    Reconciler::new(settings())
}

fn metadata(name: &str, created: u32) -> Value {
    json!({
        "name": name,
        "uid": format!("uid-{name}"),
        "generation": 1,
        "resourceVersion": "1",
        "creationTimestamp": format!("2026-11-23T10:{:02}:{:02}Z", created / 60, created % 60),
    })
}

/// A MeshNode; `created` (seconds) orders claims on one address.
pub fn mesh_node(name: &str, role: &str, created: u32) -> MeshNode {
    let mut meta = metadata(name, created);
    meta["labels"] = json!({ "role": role });
    serde_json::from_value(json!({
        "apiVersion": "meshguard.io/v1alpha1", "kind": "MeshNode",
        "metadata": meta,
        "spec": { "publicKey": key(name.chars().next().unwrap().to_ascii_uppercase()), "endpoint": "10.0.0.1:51820" },
    }))
    .unwrap()
}

pub fn with_fixed_ip(mut node: MeshNode, ip: &str) -> MeshNode {
    node.spec.mesh_ip = Some(ip.into());
    node
}

pub fn with_recorded_ip(mut node: MeshNode, ip: &str) -> MeshNode {
    node.status.get_or_insert_with(Default::default).mesh_ip = Some(ip.into());
    node
}

/// `web` may reach `db` on TCP 5432; tests as given.
pub fn web_to_db(tests: Value) -> MeshPolicy {
    serde_json::from_value(json!({
        "apiVersion": "meshguard.io/v1alpha1", "kind": "MeshPolicy",
        "metadata": metadata("web-to-db", 0),
        "spec": {
            "priority": 100,
            "rules": [{
                "name": "postgres", "action": "Allow",
                "from": [{ "nodeSelector": { "matchLabels": { "role": "web" } } }],
                "to": [{ "nodeSelector": { "matchLabels": { "role": "db" } } }],
                "ports": [{ "protocol": "TCP", "port": 5432 }],
            }],
            "tests": tests,
        },
    }))
    .unwrap()
}

/// A chain for role=web whose API keys live in Secret `shop/clients`.
pub fn api_key_chain() -> PolicyChain {
    let mut meta = metadata("orders", 0);
    meta["namespace"] = json!("shop");
    serde_json::from_value(json!({
        "apiVersion": "meshguard.io/v1alpha1", "kind": "PolicyChain",
        "metadata": meta,
        "spec": {
            "routes": ["orders-v1"],
            "nodeSelector": { "matchLabels": { "role": "web" } },
            "policies": [{ "apiKey": { "header": "x-api-key", "secretRef": { "name": "clients" } } }],
        },
    }))
    .unwrap()
}

pub fn clients_secret() -> SecretDigests {
    let data = [("mobile".to_owned(), b"mk_live_secret".to_vec())].into();
    SecretDigests::reduce("shop", "clients", &data)
}

/// web-1, web-2, db-1 and the policy, as a fresh cluster holds them.
pub fn three_tier() -> Index {
    let mut index = Index::default();
    for (name, role, created) in [("web-1", "web", 1), ("web-2", "web", 2), ("db-1", "db", 3)] {
        index.apply(Update::MeshNode(Box::new(mesh_node(name, role, created))));
    }
    let tests = json!([{ "from": "web-1", "to": "db-1", "protocol": "TCP", "port": 5432, "expect": "Allow" }]);
    index.apply(Update::Policy(Box::new(web_to_db(tests))));
    index
}

/// [`three_tier`] with the `shop/orders` chain for the web nodes and its
/// clients Secret.
pub fn with_chain() -> Index {
    let mut index = three_tier();
    index.apply(Update::Chain(Box::new(api_key_chain())));
    index.apply(Update::Secret(clients_secret()));
    index
}

/// The index after the API server took what a plan wrote, and each agent
/// reported `revision` applied when `applied` is set.
pub fn written_back(index: &mut Index, plan: &meshguard_operator::reconcile::Plan, applied: bool) {
    use meshguard_operator::reconcile::StatusWrite;
    for object in &plan.node_policies {
        let name = object.metadata.name.clone().unwrap();
        let observed = Observed {
            uid: Some(format!("uid-np-{name}")),
            revision: object.spec.revision.clone(),
            enforced: applied.then(|| object.spec.revision.clone()),
            chains_served: false,
        };
        index.apply(Update::NodePolicy(name, observed));
    }
    for write in &plan.statuses {
        match write {
            StatusWrite::MeshPolicy(name, status) => {
                let mut p = index.policies[name].clone();
                p.status = Some(status.clone());
                index.apply(Update::Policy(Box::new(p)));
            }
            StatusWrite::PolicyChain(key, status) => {
                let mut c = index.chains[key].clone();
                c.status = Some(status.clone());
                index.apply(Update::Chain(Box::new(c)));
            }
            StatusWrite::MeshNode(name, status) => {
                let mut n = index.mesh_nodes[name].clone();
                n.status = Some(status.clone());
                index.apply(Update::MeshNode(Box::new(n)));
            }
        }
    }
}

/// Marks every NodePolicy in the index as applied by its agent.
pub fn agents_apply(index: &mut Index) {
    agents_report(index, false);
}

/// Every agent enforces its NodePolicy and reports serving its chains
/// (`ChainsServed=True`, as an agent run with --ext-proc-listen does).
pub fn agents_serve_chains(index: &mut Index) {
    agents_report(index, true);
}

fn agents_report(index: &mut Index, chains_served: bool) {
    let policies: Vec<(String, Observed)> = index
        .node_policies
        .iter()
        .map(|(n, o)| (n.clone(), o.clone()))
        .collect();
    for (name, mut observed) in policies {
        observed.enforced = Some(observed.revision.clone());
        observed.chains_served = chains_served;
        index.apply(Update::NodePolicy(name, observed));
    }
}
