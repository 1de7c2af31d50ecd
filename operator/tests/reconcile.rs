//! The operator's reconcile decisions without HTTP: what one pass over an
//! index wants written, and what it leaves alone.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

mod support;

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use meshguard_crds::{Kind, conditions};
use meshguard_operator::{
    index::Update,
    reconcile::{Plan, StatusWrite},
};
use serde_json::json;
use support::cluster::*;

fn now() -> Time {
    Time(Timestamp::now())
}

fn policy_status(plan: &Plan, name: &str) -> meshguard_crds::MeshPolicyStatus {
    plan.statuses
        .iter()
        .find_map(|w| match w {
            StatusWrite::MeshPolicy(n, s) if n == name => Some(s.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no status for MeshPolicy/{name} in {:#?}", plan.statuses))
}

fn node_status(plan: &Plan, name: &str) -> Option<meshguard_crds::MeshNodeStatus> {
    plan.statuses.iter().find_map(|w| match w {
        StatusWrite::MeshNode(n, s) if n == name => Some(s.clone()),
        _ => None,
    })
}

fn condition<'a>(
    list: &'a [k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
) -> (&'a str, &'a str, &'a str) {
    let c = conditions::get(list, type_).unwrap_or_else(|| panic!("no {type_} in {list:#?}"));
    (c.status.as_str(), c.reason.as_str(), c.message.as_str())
}

fn is_empty(plan: &Plan) -> bool {
    plan.node_policies.is_empty()
        && plan.deletions.is_empty()
        && plan.statuses.is_empty()
        && plan.notes.is_empty()
}

#[test]
fn the_first_pass_writes_everything_and_an_unchanged_index_nothing() {
    let mut index = three_tier();
    let mut reconciler = reconciler();
    let plan = reconciler.plan(&index, &now());
    let names: Vec<&str> = plan
        .node_policies
        .iter()
        .map(|p| p.metadata.name.as_deref().unwrap())
        .collect();
    assert_eq!(names, ["db-1", "web-1", "web-2"]);
    let owner = &plan.node_policies[0]
        .metadata
        .owner_references
        .as_ref()
        .unwrap()[0];
    assert_eq!(
        (
            owner.kind.as_str(),
            owner.name.as_str(),
            owner.uid.as_str(),
            owner.controller
        ),
        ("MeshNode", "db-1", "uid-db-1", Some(true))
    );
    let status = policy_status(&plan, "web-to-db");
    assert_eq!(condition(&status.conditions, "Accepted").0, "True");
    assert_eq!(
        condition(&status.conditions, "TestsPassed"),
        ("True", "Passed", "1 of 1 tests pass")
    );
    assert_eq!(
        condition(&status.conditions, "Enforced"),
        ("False", "Pending", "0 of 3 targeted nodes enforce it")
    );
    assert_eq!(
        (status.nodes_targeted, status.nodes_enforced),
        (Some(3), Some(0))
    );
    assert_eq!(status.observed_generation, Some(1));
    let ips: Vec<String> = ["web-1", "web-2", "db-1"]
        .iter()
        .map(|n| node_status(&plan, n).unwrap().mesh_ip.unwrap())
        .collect();
    assert_eq!(
        ips,
        ["100.96.0.1", "100.96.0.2", "100.96.0.3"],
        "oldest MeshNode first"
    );
    assert!(
        plan.notes
            .iter()
            .any(|n| n.kind == Kind::MeshPolicy && n.reason == "Accepted" && !n.warning)
    );

    written_back(&mut index, &plan, false);
    let again = reconciler.plan(&index, &now());
    assert!(
        is_empty(&again),
        "nothing changed, nothing to write: {again:#?}"
    );

    agents_apply(&mut index);
    let enforced = reconciler.plan(&index, &now());
    assert!(enforced.node_policies.is_empty());
    let status = policy_status(&enforced, "web-to-db");
    assert_eq!(
        condition(&status.conditions, "Enforced"),
        ("True", "Enforced", "enforced on all 3 targeted nodes")
    );
    assert_eq!(status.nodes_enforced, Some(3));
    let ready = node_status(&enforced, "web-1").unwrap();
    assert_eq!(condition(&ready.conditions, "Ready").0, "True");
    written_back(&mut index, &enforced, true);
    assert!(is_empty(&reconciler.plan(&index, &now())));
}

#[test]
fn allocations_survive_a_restart_and_a_gone_member_frees_its_address_and_node_policy() {
    let mut index = three_tier();
    let plan = reconciler().plan(&index, &now());
    written_back(&mut index, &plan, true);
    // The operator restarts (a new reconciler: nothing in memory); db-1
    // goes, app-1 arrives.
    index.apply(Update::MeshNodeGone("db-1".into()));
    index.apply(Update::MeshNode(Box::new(mesh_node("app-1", "app", 9))));
    let plan = reconciler().plan(&index, &now());
    assert_eq!(
        node_status(&plan, "app-1").unwrap().mesh_ip.as_deref(),
        Some("100.96.0.3"),
        "the lowest free address, freed by db-1"
    );
    assert!(node_status(&plan, "web-1").is_none_or(|s| s.mesh_ip.as_deref() == Some("100.96.0.1")));
    assert_eq!(
        index.mesh_nodes["web-1"]
            .status
            .as_ref()
            .unwrap()
            .mesh_ip
            .as_deref(),
        Some("100.96.0.1")
    );
    assert_eq!(plan.deletions.len(), 1);
    assert_eq!(
        (
            plan.deletions[0].name.as_str(),
            plan.deletions[0].uid.as_deref()
        ),
        ("db-1", Some("uid-np-db-1"))
    );
}

#[test]
fn a_fixed_address_someone_holds_is_a_conflict_naming_the_holder() {
    let mut index = three_tier();
    let plan = reconciler().plan(&index, &now());
    written_back(&mut index, &plan, false);
    let late = with_fixed_ip(mesh_node("late", "db", 30), "100.96.0.1");
    index.apply(Update::MeshNode(Box::new(late)));
    let mut restarted = reconciler();
    let plan = restarted.plan(&index, &now());
    let status = node_status(&plan, "late").unwrap();
    assert_eq!(status.mesh_ip, None);
    assert_eq!(
        condition(&status.conditions, "Registered"),
        (
            "False",
            "MeshIPConflict",
            "spec.meshIP: 100.96.0.1 is already the mesh IP of MeshNode/web-1"
        )
    );
    assert!(
        plan.node_policies
            .iter()
            .all(|p| p.metadata.name.as_deref() != Some("late"))
    );
    assert!(
        plan.notes
            .iter()
            .any(|n| n.name == "late" && n.warning && n.reason == "NotRegistered")
    );
    // A static address nobody holds is honoured.
    let mut index = three_tier();
    index.apply(Update::MeshNode(Box::new(with_recorded_ip(
        with_fixed_ip(mesh_node("static", "db", 40), "100.96.0.200"),
        "100.96.0.200",
    ))));
    let plan = reconciler().plan(&index, &now());
    let status = node_status(&plan, "static").unwrap();
    assert_eq!(
        condition(&status.conditions, "Registered").1,
        "StaticMeshIP"
    );
}

#[test]
fn a_rejected_update_keeps_the_last_accepted_version_enforced() {
    let mut index = three_tier();
    let mut reconciler = reconciler();
    let plan = reconciler.plan(&index, &now());
    written_back(&mut index, &plan, true);
    let mut bad = index.policies["web-to-db"].clone();
    bad.spec.priority = 5000; // the schema allows 0..1000
    bad.spec.rules[0].ports = None; // would allow all traffic if compiled
    bad.metadata.generation = Some(2);
    index.apply(Update::Policy(Box::new(bad)));
    let plan = reconciler.plan(&index, &now());
    assert!(
        plan.node_policies.is_empty(),
        "what nodes enforce is unchanged"
    );
    let status = policy_status(&plan, "web-to-db");
    let (state, reason, message) = condition(&status.conditions, "Accepted");
    assert_eq!((state, reason), ("False", "Invalid"));
    assert!(message.contains("spec.priority"), "{message}");
    assert!(
        message.ends_with("its last accepted version stays enforced"),
        "{message}"
    );
    assert_eq!(status.observed_generation, Some(2));
    assert!(
        plan.notes
            .iter()
            .any(|n| n.reason == "Rejected" && n.warning)
    );

    // A policy that was never accepted is not enforced at all.
    let mut fresh = three_tier();
    let mut never = fresh.policies["web-to-db"].clone();
    never.spec.priority = 5000;
    fresh.apply(Update::Policy(Box::new(never)));
    let plan = self::reconciler().plan(&fresh, &now());
    let status = policy_status(&plan, "web-to-db");
    assert!(
        condition(&status.conditions, "Accepted")
            .2
            .ends_with("it is not enforced")
    );
    assert_eq!(status.nodes_targeted, Some(0));
    assert!(
        plan.node_policies.iter().all(|p| p.spec.peers.is_empty()),
        "default deny: no peers"
    );
}

#[test]
fn a_failing_in_policy_test_is_reported_with_the_case() {
    let mut index = three_tier();
    let tests = json!([
        { "from": "web-1", "to": "db-1", "protocol": "TCP", "port": 5432, "expect": "Deny" },
        { "from": "db-1", "to": "web-1", "protocol": "TCP", "port": 22, "expect": "Deny" },
    ]);
    index.apply(Update::Policy(Box::new(web_to_db(tests))));
    let plan = reconciler().plan(&index, &now());
    let status = policy_status(&plan, "web-to-db");
    assert_eq!(
        condition(&status.conditions, "TestsPassed"),
        (
            "False",
            "Failed",
            "tests[0]: web-1 -> db-1 TCP/5432: expected Deny, got Allow (decided by web-to-db/postgres)"
        )
    );
    assert_eq!(
        condition(&status.conditions, "Accepted").0,
        "True",
        "still enforced"
    );
    assert!(
        plan.notes
            .iter()
            .any(|n| n.reason == "TestsFailed" && n.warning && n.message.contains("expected Deny"))
    );
}

#[test]
fn a_deleted_secret_rejects_the_chain_and_nodes_keep_its_last_good_version() {
    let mut index = with_chain();
    let mut reconciler = reconciler();
    let plan = reconciler.plan(&index, &now());
    let web = plan
        .node_policies
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some("web-1"))
        .unwrap();
    assert_eq!(web.spec.chains.len(), 1);
    let text = serde_json::to_string(&web.spec).unwrap();
    assert!(
        !text.contains("mk_live_secret"),
        "no raw key in a NodePolicy"
    );
    written_back(&mut index, &plan, true);

    index.apply(Update::SecretGone(("shop".into(), "clients".into())));
    let plan = reconciler.plan(&index, &now());
    assert!(
        plan.node_policies.is_empty(),
        "the chain is still served as it was: {:#?}",
        plan.node_policies.len()
    );
    let chain = plan
        .statuses
        .iter()
        .find_map(|w| match w {
            StatusWrite::PolicyChain(_, s) => Some(s.clone()),
            _ => None,
        })
        .unwrap();
    let (state, _, message) = condition(&chain.conditions, "Accepted");
    assert_eq!(state, "False");
    assert!(message.contains("clients"), "{message}");
    assert!(
        message.ends_with("nodes keep its last accepted version"),
        "{message}"
    );
}

#[test]
fn audit_peers_are_listed_only_when_the_operator_is_asked() {
    let index = three_tier();
    let audit_of = |audit_peers: bool| {
        let settings = meshguard_operator::reconcile::Settings {
            audit_peers,
            ..settings()
        };
        let plan = meshguard_operator::reconcile::Reconciler::new(settings).plan(&index, &now());
        let web_1 = plan
            .node_policies
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some("web-1"))
            .unwrap();
        web_1
            .spec
            .audit_peers
            .iter()
            .map(|p| p.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(audit_of(true), ["web-2"], "the member web-1 may not reach");
    assert!(audit_of(false).is_empty());
}

/// No agent serves PolicyChains yet (the ext_proc server is issue [l7]), so
/// a chain every targeted agent has in its applied NodePolicy is still not
/// Ready: the status says so instead of claiming "served".
#[test]
fn a_chain_is_ready_only_when_every_agent_reports_serving_it() {
    let mut index = with_chain();
    let mut reconciler = reconciler();
    let plan = reconciler.plan(&index, &now());
    written_back(&mut index, &plan, true);
    // Applied by the agents, but none says it serves chains.
    agents_apply(&mut index);
    let plan = reconciler.plan(&index, &now());
    written_back(&mut index, &plan, true);
    let key = ("shop".to_owned(), "orders".to_owned());
    let status = index.chains[&key].status.clone().unwrap();
    assert_eq!(condition(&status.conditions, "Accepted").0, "True");
    let (state, reason, message) = condition(&status.conditions, "Ready");
    assert_eq!((state, reason), ("False", "NotServed"), "{message}");
    assert!(message.starts_with("served on 0 of 2 nodes"), "{message}");
    assert_eq!(status.nodes, Some(0));

    agents_serve_chains(&mut index);
    let plan = reconciler.plan(&index, &now());
    written_back(&mut index, &plan, true);
    let status = index.chains[&key].status.clone().unwrap();
    let (state, reason, message) = condition(&status.conditions, "Ready");
    assert_eq!(
        (state, reason, message),
        ("True", "Served", "served on all 2 nodes")
    );
    assert_eq!(status.nodes, Some(2));
}

/// A MeshNode with a public key of its own and a long name (190
/// characters, a DNS subdomain of four labels) that its endpoint repeats:
/// 514 bytes as a peer in another's NodePolicy.
fn bulky_member(i: usize, role: &str) -> meshguard_crds::MeshNode {
    const BASE64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut digits = String::new();
    let mut n = i;
    loop {
        digits.insert(0, BASE64[n % 64] as char);
        n /= 64;
        if n == 0 {
            break;
        }
    }
    let key = format!("{}{digits}A=", "B".repeat(42 - digits.len()));
    // The hub keeps a short name; the spokes' make its peer list long.
    let name = match role {
        "hub" => format!("hub-{i}"),
        _ => format!(
            "{role}-{i}.{}.{}.{}",
            "x".repeat(60),
            "y".repeat(60),
            "z".repeat(55)
        ),
    };
    serde_json::from_value(json!({
        "apiVersion": "meshguard.io/v1alpha1", "kind": "MeshNode",
        "metadata": {
            "name": name, "uid": format!("uid-{name}"), "generation": 1, "resourceVersion": "1",
            "creationTimestamp": "2026-11-23T10:00:00Z", "labels": { "role": role },
        },
        "spec": {
            "publicKey": key,
            "endpoint": format!("{name}.example.net:51820"),
        },
    }))
    .unwrap()
}

/// A NodePolicy past the size bound (docs/api.md) is not written: the hub
/// keeps the NodePolicy it had, its MeshNode turns not Ready with a reason
/// that names the size and what made it large, one Warning Event says so,
/// and every other member's NodePolicy is written as usual.
#[test]
fn a_node_policy_past_the_size_bound_is_not_written_and_the_node_keeps_its_last() {
    let mut index = meshguard_operator::index::Index::default();
    index.apply(Update::MeshNode(Box::new(bulky_member(0, "hub"))));
    for i in 1..=100 {
        index.apply(Update::MeshNode(Box::new(bulky_member(i, "spoke"))));
    }
    let hub_to_spokes: meshguard_crds::MeshPolicy = serde_json::from_value(json!({
        "apiVersion": "meshguard.io/v1alpha1", "kind": "MeshPolicy",
        "metadata": { "name": "hub", "uid": "uid-hub-policy", "generation": 1, "resourceVersion": "1", "creationTimestamp": "2026-11-23T10:00:00Z" },
        "spec": { "priority": 100, "rules": [{
            "name": "ping", "action": "Allow",
            "from": [{ "nodeSelector": { "matchLabels": { "role": "hub" } } }],
            "to": [{ "nodeSelector": { "matchLabels": { "role": "spoke" } } }],
            "ports": [{ "protocol": "ICMP" }],
        }] },
    }))
    .unwrap();
    index.apply(Update::Policy(Box::new(hub_to_spokes)));
    let mut settings = settings();
    settings.mesh_cidr = "100.64.0.0/16".parse().unwrap();
    let mut reconciler = meshguard_operator::reconcile::Reconciler::new(settings);

    // 100 spokes: the hub's NodePolicy fits and is written.
    let plan = reconciler.plan(&index, &now());
    assert!(plan.oversized.is_empty());
    let hub = plan
        .node_policies
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some("hub-0"));
    let first_revision = hub.expect("the hub's NodePolicy").spec.revision.clone();
    written_back(&mut index, &plan, true);

    // 3,100 spokes: about 1.6 MB of peers (514 bytes each).
    for i in 101..=3_100 {
        index.apply(Update::MeshNode(Box::new(bulky_member(i, "spoke"))));
    }
    let plan = reconciler.plan(&index, &now());
    let too_large = &plan.oversized["hub-0"];
    assert_eq!(too_large.peers, 3_100);
    assert!(
        too_large.bytes > meshguard_crds::size::MAX_BYTES,
        "{too_large:?}"
    );
    assert!(
        plan.node_policies
            .iter()
            .all(|p| p.metadata.name.as_deref() != Some("hub-0")),
        "the oversized NodePolicy was planned for writing"
    );
    assert_eq!(
        plan.node_policies.len(),
        3_000,
        "the new spokes' NodePolicies are written"
    );
    assert!(plan.deletions.is_empty(), "{:?}", plan.deletions);
    assert_eq!(index.node_policies["hub-0"].revision, first_revision);
    let status = node_status(&plan, "hub-0").expect("the hub's status");
    let (ready, reason, message) = condition(&status.conditions, "Ready");
    assert_eq!((ready, reason), ("False", "NodePolicyTooLarge"));
    assert!(
        message.starts_with("NodePolicy/hub-0 would be ") && message.contains("(3100 peers, "),
        "{message}"
    );
    let events: Vec<_> = plan
        .notes
        .iter()
        .filter(|n| n.reason == "NodePolicyTooLarge")
        .collect();
    assert_eq!(events.len(), 1, "{:#?}", plan.notes);
    assert!(events[0].warning && events[0].name == "hub-0" && events[0].kind == Kind::MeshNode);

    // The next pass says it again only where something changed: no second Event.
    written_back(&mut index, &plan, true);
    let plan = reconciler.plan(&index, &now());
    assert!(plan.oversized.contains_key("hub-0"));
    assert!(
        plan.notes.iter().all(|n| n.reason != "NodePolicyTooLarge"),
        "{:#?}",
        plan.notes
    );
}
