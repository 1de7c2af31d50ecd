//! The Argo CD health checks of deploy/argocd/health.yaml, run by a real
//! Lua (scripts/argocd_health.py, lupa) against the statuses the operator's
//! own reconcile writes — a policy accepted and enforced, partly enforced,
//! with failing tests, rejected; a chain served, not yet served, rejected —
//! and NodePolicies as their agents report them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

mod support;

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};
use meshguard_crds::{NodePolicy, NodePolicyStatus};
use meshguard_operator::index::{Index, Update};
use meshguard_testkit::tokens::repo;
use serde_json::{Value, json};
use support::{cluster::*, scripts};

fn now() -> Time {
    Time(Timestamp::now())
}

/// (status, message) of each object, as Argo CD's health check says.
fn health(objects: &[Value]) -> Vec<(String, String)> {
    let health = repo().join("deploy/argocd/health.yaml");
    scripts::json_lines(
        "argocd_health.py",
        &[&health],
        &json!({ "objects": objects }),
    )
    .into_iter()
    .map(|v| {
        (
            v["status"].as_str().unwrap().to_owned(),
            v["message"].as_str().unwrap_or_default().to_owned(),
        )
    })
    .collect()
}

fn policy(index: &Index) -> Value {
    serde_json::to_value(&index.policies["web-to-db"]).unwrap()
}

fn chain(index: &Index) -> Value {
    serde_json::to_value(&index.chains[&("shop".to_owned(), "orders".to_owned())]).unwrap()
}

#[test]
fn health_follows_the_conditions_the_operator_and_the_agents_write() {
    let mut reconciler = reconciler();
    let mut objects = Vec::new();
    let mut expected: Vec<(&str, &str)> = Vec::new();

    // Written, no agent has applied it yet: partly enforced.
    let mut index = with_chain();
    let plan = reconciler.plan(&index, &now());
    let node_policy: NodePolicy = plan.node_policies[0].clone();
    written_back(&mut index, &plan, false);
    objects.push(policy(&index));
    expected.push(("Progressing", "0 of 3 targeted nodes enforce it"));
    // Applied everywhere, chains served.
    agents_serve_chains(&mut index);
    let plan = reconciler.plan(&index, &now());
    written_back(&mut index, &plan, true);
    objects.push(policy(&index));
    expected.push(("Healthy", "enforced on all 3 targeted nodes"));
    objects.push(chain(&index));
    expected.push(("Healthy", "served on all 2 nodes"));
    // The chain's Secret deleted: rejected, nodes keep the last version.
    index.apply(Update::SecretGone(("shop".into(), "clients".into())));
    let plan = reconciler.plan(&index, &now());
    written_back(&mut index, &plan, true);
    objects.push(chain(&index));
    expected.push(("Degraded", "nodes keep its last accepted version"));

    // Applied, but no agent says it serves chains: not yet served.
    let mut index = with_chain();
    let mut fresh = self::reconciler();
    let plan = fresh.plan(&index, &now());
    written_back(&mut index, &plan, true);
    agents_apply(&mut index);
    let plan = fresh.plan(&index, &now());
    written_back(&mut index, &plan, true);
    objects.push(chain(&index));
    expected.push(("Progressing", "served on 0 of 2 nodes"));

    // An in-policy test fails.
    let mut index = three_tier();
    let tests = json!([{ "from": "web-1", "to": "db-1", "protocol": "TCP", "port": 5432, "expect": "Deny" }]);
    index.apply(Update::Policy(Box::new(web_to_db(tests))));
    let plan = self::reconciler().plan(&index, &now());
    written_back(&mut index, &plan, false);
    objects.push(policy(&index));
    expected.push(("Degraded", "expected Deny, got Allow"));

    // An update the operator rejects (the last accepted version stays).
    let mut index = three_tier();
    let mut rejecting = self::reconciler();
    let plan = rejecting.plan(&index, &now());
    written_back(&mut index, &plan, true);
    let mut bad = index.policies["web-to-db"].clone();
    bad.spec.priority = 5000;
    bad.metadata.generation = Some(2);
    index.apply(Update::Policy(Box::new(bad)));
    let plan = rejecting.plan(&index, &now());
    written_back(&mut index, &plan, true);
    objects.push(policy(&index));
    expected.push(("Degraded", "its last accepted version stays enforced"));
    // The same, before the operator read generation 2.
    let mut unread = policy(&index);
    unread["metadata"]["generation"] = json!(3);
    objects.push(unread);
    expected.push((
        "Progressing",
        "Waiting for the operator to read generation 3",
    ));

    // NodePolicies as their agents report them.
    let revision = node_policy.spec.revision.clone();
    let reported = |observed: &str, applied: bool, degraded: Option<&str>| {
        let condition = |type_: &str, status: bool, reason: &str, message: &str| Condition {
            type_: type_.to_owned(),
            status: if status { "True" } else { "False" }.to_owned(),
            reason: reason.to_owned(),
            message: message.to_owned(),
            last_transition_time: now(),
            observed_generation: None,
        };
        let mut conditions = vec![if applied {
            condition(
                "Applied",
                true,
                "Applied",
                &format!("revision {observed}: 2 peers, 3 rules"),
            )
        } else {
            condition(
                "Applied",
                false,
                "ApplyFailed",
                "revision x: ipset: exit 1; the previous state stays enforced",
            )
        }];
        conditions.push(match degraded {
            Some(message) => condition("Degraded", true, "EndpointsUnresolved", message),
            None => condition("Degraded", false, "AsExpected", ""),
        });
        let mut object = node_policy.clone();
        object.status = Some(NodePolicyStatus {
            observed_revision: Some(observed.to_owned()),
            backend: Some("iptables".to_owned()),
            peers: Some(2),
            rules: Some(3),
            last_applied: Some(now()),
            conditions,
        });
        serde_json::to_value(object).unwrap()
    };
    objects.push(reported(&revision, true, None));
    expected.push(("Healthy", "2 peers, 3 rules"));
    objects.push(reported("older", true, None));
    expected.push(("Progressing", "not yet"));
    objects.push(reported(&revision, false, None));
    expected.push(("Degraded", "the previous state stays enforced"));
    objects.push(reported(
        &revision,
        true,
        Some("db-2 (backup.example.net:51820) did not resolve"),
    ));
    expected.push(("Degraded", "did not resolve"));
    let mut unwritten = serde_json::to_value(&node_policy).unwrap();
    unwritten["status"] = Value::Null;
    objects.push(unwritten);
    expected.push(("Progressing", "Waiting for the node's agent"));

    let said = health(&objects);
    assert_eq!(said.len(), expected.len());
    for ((object, (status, message)), (want, part)) in objects.iter().zip(&said).zip(&expected) {
        assert_eq!(
            status, want,
            "{} {}: {message}",
            object["kind"], object["metadata"]["name"]
        );
        assert!(
            message.contains(part),
            "{} {}: {message:?} lacks {part:?}",
            object["kind"],
            object["metadata"]["name"]
        );
    }
}
