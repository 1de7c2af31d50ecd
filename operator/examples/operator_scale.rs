//! The operator's figures against a mocked API server that answers at once
//! (recorded in `docs/benchmarks.md`): the time from an index change to the
//! last NodePolicy write for 1,000 nodes, and how many writes a policy
//! change that concerns 10% of the nodes makes. `make bench` runs it; alone:
//! `cargo run --release -p meshguard-operator --example operator_scale`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark driver: a panic is a failure report

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use base64::Engine;
use http::StatusCode;
use meshguard_crds::{MeshNode, MeshPolicy};
use meshguard_operator::{
    controller::{Operator, metrics::Metrics},
    index::Update,
    reconcile::{Plan, Reconciler, Settings},
};
use meshguard_testkit::api_server::{mock_client, respond};
use prometheus_client::registry::Registry;
use serde_json::json;

// The tests' picture of what the API server holds after a plan: NodePolicies
// written back (agents report each revision applied) and statuses.
#[allow(dead_code)]
#[path = "../tests/support/cluster.rs"]
mod cluster;

const NODES: usize = 1000;
const APPS: usize = 10;

/// Writes the mock server answered: NodePolicy applies, and when the last one came.
#[derive(Default)]
struct Served {
    node_policies: usize,
    other: usize,
    last_node_policy: Option<Instant>,
}

fn key(i: usize) -> String {
    let bytes: Vec<u8> = (0..32).map(|b| (i * 31 + b * 7) as u8).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn mesh_node(i: usize) -> MeshNode {
    serde_json::from_value(json!({
        "apiVersion": "meshguard.io/v1alpha1", "kind": "MeshNode",
        "metadata": {
            "name": format!("node-{i:04}"), "uid": format!("uid-{i}"), "generation": 1,
            "creationTimestamp": "2026-11-23T10:00:00Z",
            "labels": { "app": format!("a{}", i % APPS), "zone": format!("z{}", i % 5) },
        },
        "spec": { "publicKey": key(i), "endpoint": format!("10.0.{}.{}:51820", i / 250, i % 250 + 1) },
    }))
    .unwrap()
}

/// Per app: its members talk among themselves on `port`, and to the next app on 5432.
fn app_policy(app: usize, port: u16) -> MeshPolicy {
    let selector = |a: usize| json!({ "nodeSelector": { "matchLabels": { "app": format!("a{}", a % APPS) } } });
    serde_json::from_value(json!({
        "apiVersion": "meshguard.io/v1alpha1", "kind": "MeshPolicy",
        "metadata": { "name": format!("app-a{app}"), "uid": format!("uid-p{app}"), "generation": 1 },
        "spec": { "priority": 100, "rules": [
            { "name": "internal", "action": "Allow", "from": [selector(app)], "to": [selector(app)],
              "ports": [{ "protocol": "TCP", "port": port }] },
            { "name": "downstream", "action": "Allow", "from": [selector(app)], "to": [selector(app + 1)],
              "ports": [{ "protocol": "TCP", "port": 5432 }] },
        ] },
    }))
    .unwrap()
}

fn platform_policy(extra_port: Option<u16>) -> MeshPolicy {
    let mut ports = vec![json!({ "protocol": "ICMP" })];
    if let Some(port) = extra_port {
        ports.push(json!({ "protocol": "TCP", "port": port }));
    }
    serde_json::from_value(json!({
        "apiVersion": "meshguard.io/v1alpha1", "kind": "MeshPolicy",
        "metadata": { "name": "platform", "uid": "uid-platform", "generation": 1 },
        "spec": { "priority": 10, "rules": [
            { "name": "ping", "action": "Allow", "from": [{ "nodeSelector": {} }], "to": [{ "nodeSelector": {} }], "ports": ports },
        ] },
    }))
    .unwrap()
}

async fn pass(
    operator: &mut Operator,
    served: &Arc<Mutex<Served>>,
    what: &str,
) -> (Plan, Duration) {
    *served.lock().unwrap() = Served::default();
    let started = Instant::now();
    let plan = operator.pass().await.unwrap();
    let s = served.lock().unwrap();
    let last = s.last_node_policy.map_or(Duration::ZERO, |t| t - started);
    println!(
        "{what}: {} NodePolicy writes of {NODES} nodes, last one {:.0} ms after the change; \
         compile {:.0} ms; {} status/Event writes; whole pass {:.0} ms",
        s.node_policies,
        last.as_secs_f64() * 1000.0,
        plan.summary.compile.as_secs_f64() * 1000.0,
        s.other,
        started.elapsed().as_secs_f64() * 1000.0,
    );
    (plan, last)
}

#[tokio::main]
async fn main() {
    let (client, mut server) = mock_client();
    let served = Arc::new(Mutex::new(Served::default()));
    let counter = Arc::clone(&served);
    tokio::spawn(async move {
        // Answers without reading the body: the server's cost is not the operator's.
        while let Some((request, send)) = server.next_request().await {
            let node_policy =
                request.method() == "PATCH" && request.uri().path().contains("/nodepolicies/");
            {
                let mut s = counter.lock().unwrap();
                if node_policy {
                    s.node_policies += 1;
                    s.last_node_policy = Some(Instant::now());
                } else {
                    s.other += 1;
                }
            }
            send.send_response(respond(StatusCode::OK, &json!({ "metadata": {} })));
        }
    });
    let settings = Settings {
        mesh_cidr: "100.96.0.0/16".parse().unwrap(),
        listen_port: 51820,
        audit_peers: false,
    };
    let metrics = Arc::new(Metrics::new(&mut Registry::default()));
    let mut operator = Operator::new(client, Reconciler::new(settings), metrics, None);
    for i in 0..NODES {
        operator
            .index
            .apply(Update::MeshNode(Box::new(mesh_node(i))));
    }
    for app in 0..APPS {
        operator
            .index
            .apply(Update::Policy(Box::new(app_policy(app, 8080))));
    }
    operator
        .index
        .apply(Update::Policy(Box::new(platform_policy(None))));
    println!(
        "{NODES} MeshNodes, {} MeshPolicies; mock API server answering at once",
        APPS + 1
    );

    let (plan, _) = pass(&mut operator, &served, "first pass (every NodePolicy new)").await;
    cluster::written_back(&mut operator.index, &plan, true);
    let (plan, _) = pass(&mut operator, &served, "statuses settle (agents applied)").await;
    cluster::written_back(&mut operator.index, &plan, true);

    // Five changes of each kind, alternating, so one slow moment of this
    // shared machine does not make the figure.
    let (mut wide, mut tenth, mut tenth_writes) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..5u16 {
        let platform = platform_policy(Some(9100 + round));
        operator.index.apply(Update::Policy(Box::new(platform)));
        let what = "mesh-wide rule changed (every node concerned)";
        let (plan, last) = pass(&mut operator, &served, what).await;
        cluster::written_back(&mut operator.index, &plan, true);
        wide.push(last);
        operator
            .index
            .apply(Update::Policy(Box::new(app_policy(3, 8081 + round))));
        let what = "one app's internal port changed (10% of the nodes concerned)";
        let (plan, last) = pass(&mut operator, &served, what).await;
        cluster::written_back(&mut operator.index, &plan, true);
        tenth.push(last);
        tenth_writes.push(plan.node_policies.len());
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2].as_secs_f64() * 1000.0
    };
    let wide_max = wide.iter().max().copied().unwrap_or_default();
    println!(
        "change to last NodePolicy write, median of 5 (target <= 1000 ms): every node concerned {:.0} ms (max {:.0} ms); 10% concerned {:.0} ms",
        median(&mut wide),
        wide_max.as_secs_f64() * 1000.0,
        median(&mut tenth),
    );
    println!(
        "NodePolicy writes for a change that concerns 10% of the nodes: {tenth_writes:?} (target: {} each, that 10%, not all {NODES})",
        NODES / APPS
    );
}
