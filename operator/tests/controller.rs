//! The operator's Kubernetes edge against a mocked API server (tower-test,
//! as in kube-rs' controller-rs): the exact requests a reconcile pass makes,
//! and what it does when the server refuses them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

mod support;

use std::{sync::Arc, time::Duration};

use http::StatusCode;
use meshguard_operator::{
    controller::{Operator, WriteError, error_policy, metrics::Metrics},
    index::{Index, Update},
    reconcile::Plan,
};
use meshguard_testkit::api_server::{ApiServer, Seen, failure, mock_client, next};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use support::cluster::*;
use tokio::task::JoinHandle;

const NODE_POLICIES: &str = "/apis/meshguard.io/v1alpha1/nodepolicies";

fn operator(index: Index) -> (Operator, ApiServer) {
    let (client, server) = mock_client();
    let metrics = Arc::new(Metrics::new(&mut Registry::default()));
    let mut operator = Operator::new(client, reconciler(), metrics, Some("replica-a".into()));
    operator.index = index;
    (operator, server)
}

type Pass = JoinHandle<(Operator, Result<Plan, WriteError>)>;

fn start(mut operator: Operator) -> Pass {
    tokio::spawn(async move {
        let result = operator.pass().await;
        (operator, result)
    })
}

/// Asserts a server-side apply by the operator to `path`.
fn assert_apply(seen: &Seen, path: &str) {
    assert_eq!((seen.method(), seen.path()), ("PATCH", path));
    assert_eq!(seen.content_type(), Some("application/apply-patch+yaml"));
    assert_eq!(
        (seen.param("fieldManager"), seen.param("force")),
        (Some("meshguard-operator"), Some("true"))
    );
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} in {status}"))
}

/// Answers every request of a pass as `answer` says (`None`: echo the
/// body, as an apply does); returns the pass's outcome and the requests as
/// `METHOD path`.
async fn serve(
    server: &mut ApiServer,
    pass: Pass,
    mut answer: impl FnMut(&Seen) -> Option<(StatusCode, Value)>,
) -> (Operator, Result<Plan, WriteError>, Vec<String>) {
    let mut pass = pass;
    let mut seen_requests = Vec::new();
    loop {
        tokio::select! {
            done = &mut pass => {
                let (operator, result) = done.unwrap();
                return (operator, result, seen_requests);
            }
            seen = next(server) => {
                seen_requests.push(format!("{} {}", seen.method(), seen.path()));
                match answer(&seen) {
                    Some((status, body)) => seen.answer(status, &body),
                    None => seen.echo(),
                }
            }
        }
    }
}

/// A pass whose writes all succeed (echoed, as applies are), each
/// request's body kept in `bodies`.
async fn serve_keeping_bodies(
    server: &mut ApiServer,
    operator: Operator,
    bodies: &mut Vec<String>,
) -> Operator {
    let (operator, result, _) = serve(server, start(operator), |seen| {
        bodies.push(seen.body.to_string());
        None
    })
    .await;
    result.unwrap();
    operator
}

async fn finish(pass: Pass) -> (Operator, Result<Plan, WriteError>) {
    tokio::time::timeout(Duration::from_secs(5), pass)
        .await
        .expect("the pass did not end")
        .unwrap()
}

#[tokio::test]
async fn a_pass_applies_node_policies_statuses_and_events_then_writes_nothing() {
    let (operator, mut server) = operator(three_tier());
    let pass = start(operator);

    for node in ["db-1", "web-1", "web-2"] {
        let seen = next(&mut server).await;
        assert_apply(&seen, &format!("{NODE_POLICIES}/{node}"));
        let body = &seen.body;
        assert_eq!(
            (
                &body["apiVersion"],
                &body["kind"],
                &body["metadata"]["name"]
            ),
            (
                &json!("meshguard.io/v1alpha1"),
                &json!("NodePolicy"),
                &json!(node)
            )
        );
        assert_eq!(
            body["metadata"]["ownerReferences"],
            json!([{ "apiVersion": "meshguard.io/v1alpha1", "kind": "MeshNode", "name": node,
                     "uid": format!("uid-{node}"), "controller": true, "blockOwnerDeletion": true }])
        );
        assert!(
            body.get("status").is_none(),
            "the spec only: agents own the status"
        );
        let peers: Vec<&str> = body["spec"]["peers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        let expected: &[&str] = if node == "db-1" {
            &["web-1", "web-2"]
        } else {
            &["db-1"]
        };
        assert_eq!(peers, expected, "{node}'s peers");
        let revision = body["spec"]["revision"].as_str().unwrap();
        assert!(
            !revision.is_empty() && revision.chars().all(|c| c.is_ascii_hexdigit()),
            "{revision}"
        );
        seen.echo();
    }

    let seen = next(&mut server).await;
    assert_apply(
        &seen,
        "/apis/meshguard.io/v1alpha1/meshpolicies/web-to-db/status",
    );
    let status = &seen.body["status"];
    assert_eq!(seen.body["metadata"], json!({ "name": "web-to-db" }));
    assert_eq!(condition(status, "Accepted")["status"], "True");
    assert_eq!(condition(status, "TestsPassed")["reason"], "Passed");
    assert_eq!(
        condition(status, "Enforced")["message"],
        "0 of 3 targeted nodes enforce it"
    );
    assert_eq!(
        (&status["nodesTargeted"], &status["observedGeneration"]),
        (&json!(3), &json!(1))
    );
    seen.echo();

    for (node, ip) in [
        ("db-1", "100.96.0.3"),
        ("web-1", "100.96.0.1"),
        ("web-2", "100.96.0.2"),
    ] {
        let seen = next(&mut server).await;
        assert_apply(
            &seen,
            &format!("/apis/meshguard.io/v1alpha1/meshnodes/{node}/status"),
        );
        assert_eq!(seen.body["status"]["meshIP"], ip);
        assert_eq!(
            condition(&seen.body["status"], "Registered")["reason"],
            "Allocated"
        );
        seen.echo();
    }

    let seen = next(&mut server).await;
    assert_eq!(
        (seen.method(), seen.path()),
        ("POST", "/apis/events.k8s.io/v1/namespaces/default/events")
    );
    assert_eq!(
        (
            &seen.body["reason"],
            &seen.body["type"],
            &seen.body["regarding"]["name"]
        ),
        (&json!("Accepted"), &json!("Normal"), &json!("web-to-db"))
    );
    assert_eq!(seen.body["reportingController"], "meshguard-operator");
    let body = seen.body.clone();
    seen.answer(StatusCode::CREATED, &body);

    let (mut operator, result) = finish(pass).await;
    let plan = result.unwrap();
    // What the server now holds comes back through the watch; nothing differs.
    written_back(&mut operator.index, &plan, false);
    let (_, result, requests) = serve(&mut server, start(operator), |_| None).await;
    assert!(
        requests.is_empty(),
        "an unchanged index writes nothing: {requests:?}"
    );
    let plan = result.unwrap();
    assert!(plan.node_policies.is_empty() && plan.statuses.is_empty());
}

#[tokio::test]
async fn a_node_policy_whose_mesh_node_went_is_deleted_by_uid() {
    let mut index = three_tier();
    let plan = reconciler().plan(
        &index,
        &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()),
    );
    written_back(&mut index, &plan, true);
    index.apply(Update::MeshNodeGone("web-2".into()));
    let (operator, mut server) = operator(index);
    let mut deleted = None;
    let (_, result, requests) = serve(&mut server, start(operator), |seen| {
        (seen.method() == "DELETE").then(|| {
            deleted = Some(seen.body.clone());
            let success = json!({ "kind": "Status", "apiVersion": "v1", "status": "Success" });
            (StatusCode::OK, success)
        })
    })
    .await;
    result.unwrap();
    assert!(
        requests.contains(&format!("DELETE {NODE_POLICIES}/web-2")),
        "{requests:?}"
    );
    assert_eq!(
        deleted.unwrap()["preconditions"],
        json!({ "uid": "uid-np-web-2" })
    );
    assert!(
        !requests
            .iter()
            .any(|r| r.starts_with("PATCH") && r.ends_with("/web-2")),
        "nothing is written for a member that went: {requests:?}"
    );
}

#[tokio::test]
async fn refused_writes_fail_the_pass_back_off_and_are_retried() {
    let (operator, mut server) = operator(three_tier());
    let db_1 = format!("PATCH {NODE_POLICIES}/db-1");
    let (operator, result, requests) = serve(&mut server, start(operator), |seen| {
        (seen.path().ends_with("/nodepolicies/db-1")).then(|| {
            let body = failure(500, "InternalError", "etcdserver: request timed out");
            (StatusCode::INTERNAL_SERVER_ERROR, body)
        })
    })
    .await;
    let error = result.unwrap_err();
    assert_eq!(error.code(), Some(500));
    assert!(error.to_string().contains("NodePolicy/db-1"), "{error}");
    assert_eq!(error_policy(&error, 1), Duration::from_secs(1));
    assert_eq!(error_policy(&error, 4), Duration::from_secs(8));
    assert_eq!(error_policy(&error, 30), Duration::from_secs(300), "capped");
    assert_eq!(
        requests.len(),
        3,
        "no status is written after a refused NodePolicy: {requests:?}"
    );

    // The retry writes only db-1 (the others went through), then the rest.
    let (_, result, requests) = serve(&mut server, start(operator), |_| None).await;
    result.unwrap();
    let node_policies: Vec<&String> = requests
        .iter()
        .filter(|r| r.contains("/nodepolicies/"))
        .collect();
    assert_eq!(node_policies, [&db_1]);
    assert!(
        requests
            .iter()
            .any(|r| r.ends_with("/meshpolicies/web-to-db/status"))
    );

    // A conflict (someone else owns a field) is retried soon.
    let (operator, mut server) = self::operator(three_tier());
    let (_, result, _) = serve(&mut server, start(operator), |seen| {
        (seen.path().ends_with("/nodepolicies/web-1")).then(|| {
            let message = "Apply failed with 1 conflict: conflict with \"kubectl-edit\"";
            (StatusCode::CONFLICT, failure(409, "Conflict", message))
        })
    })
    .await;
    let error = result.unwrap_err();
    assert_eq!(error.code(), Some(409));
    assert_eq!(error_policy(&error, 1), Duration::from_millis(200));
    assert_eq!(error_policy(&error, 10), Duration::from_secs(5), "capped");
}

#[tokio::test]
async fn a_restarted_operator_keeps_every_address_and_gives_a_newcomer_the_lowest_free_one() {
    // Before the restart: three members allocated, agents reporting.
    let mut index = three_tier();
    let now =
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
    let mut before = reconciler();
    let plan = before.plan(&index, &now);
    written_back(&mut index, &plan, true);
    let settled = before.plan(&index, &now); // Ready: the agents report
    written_back(&mut index, &settled, true);
    index.apply(Update::MeshNodeGone("web-1".into()));
    index.apply(Update::MeshNode(Box::new(mesh_node("web-3", "web", 50))));
    // A new process: nothing in memory but what the API server holds.
    let (operator, mut server) = operator(index);
    let mut statuses = Vec::new();
    let (_, result, requests) = serve(&mut server, start(operator), |seen| {
        if seen
            .path()
            .starts_with("/apis/meshguard.io/v1alpha1/meshnodes/")
        {
            statuses.push((
                seen.path().to_owned(),
                seen.body["status"]["meshIP"].clone(),
            ));
        }
        None
    })
    .await;
    result.unwrap();
    assert_eq!(
        statuses,
        [(
            "/apis/meshguard.io/v1alpha1/meshnodes/web-3/status".to_owned(),
            json!("100.96.0.1")
        )],
        "only the newcomer's status is written, with web-1's freed address: {requests:?}"
    );
    assert!(requests.contains(&format!("DELETE {NODE_POLICIES}/web-1")));
}

/// Everything the operator sends the API server (NodePolicies, statuses,
/// Events) is free of the raw API keys of the Secrets it watches: the
/// Secret goes through the watch's reduction to digests, a chain is served
/// from it, then the Secret goes (the chain's refusal is reported). Every
/// request body is scanned for the key as text, base64 and hex.
#[tokio::test]
async fn no_raw_api_key_reaches_the_api_server() {
    use base64::Engine;
    let raw = "mk_live_7f3a9c2e51d04b86";
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": "clients", "namespace": "shop" },
        "data": { "mobile": base64::engine::general_purpose::STANDARD.encode(raw) },
    }))
    .unwrap();
    let mut index = three_tier();
    index.apply(Update::Chain(Box::new(api_key_chain())));
    index.apply(Update::Secret(
        meshguard_policy::secrets::SecretDigests::from_secret("shop", "clients", secret),
    ));
    let (operator, mut server) = operator(index);
    let mut bodies: Vec<String> = Vec::new();
    let mut operator = serve_keeping_bodies(&mut server, operator, &mut bodies).await;
    assert!(
        bodies
            .iter()
            .any(|b| b.contains("\"apiKey\"") && b.contains("\"NodePolicy\"")),
        "no NodePolicy carried the chain, so the scan saw nothing it could leak from"
    );
    operator
        .index
        .apply(Update::SecretGone(("shop".into(), "clients".into())));
    serve_keeping_bodies(&mut server, operator, &mut bodies).await;
    assert!(
        bodies
            .iter()
            .any(|b| b.contains("nodes keep its last accepted version")),
        "the second pass reported no refusal: {bodies:#?}"
    );
    let forms = [
        raw.to_owned(),
        base64::engine::general_purpose::STANDARD.encode(raw),
        raw.bytes().map(|b| format!("{b:02x}")).collect::<String>(),
    ];
    let total: usize = bodies.iter().map(String::len).sum();
    for form in &forms {
        let hits = bodies.iter().filter(|b| b.contains(form.as_str())).count();
        assert_eq!(hits, 0, "a request body holds the raw API key");
    }
    eprintln!(
        "{} request bodies, {total} bytes, scanned for the API key in {} forms: 0 hits",
        bodies.len(),
        forms.len()
    );
}

/// The operator's seven watchers through a 60-second API outage, in
/// paused time: every request answered 500. Each backs off (a bounded
/// number of requests), nothing reaches the index meanwhile (the last good
/// NodePolicies stay as written), and once the API answers again every
/// kind is listed and reported synced.
#[tokio::test(start_paused = true)]
async fn the_watchers_back_off_through_an_outage_and_sync_after_it() {
    use meshguard_operator::{controller::watch, index::Watched};
    use std::collections::BTreeMap;

    let (client, mut server) = mock_client();
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    watch::spawn_all(&client, &tx, &watch::watches());
    let started = tokio::time::Instant::now();
    let mut per_path: BTreeMap<String, usize> = BTreeMap::new();
    let first_after = loop {
        // The backoff reaches 30 s, jittered up to twice that.
        let seen =
            meshguard_testkit::api_server::next_within(&mut server, Duration::from_secs(120)).await;
        if started.elapsed() >= Duration::from_secs(60) {
            break seen;
        }
        assert_eq!(
            seen.param("watch"),
            None,
            "a watch before any list succeeded"
        );
        *per_path.entry(seen.path().to_owned()).or_default() += 1;
        seen.answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            &failure(500, "InternalError", "etcdserver: request timed out"),
        );
    };
    assert!(rx.try_recv().is_err(), "the outage reached the index");
    let total: usize = per_path.values().sum();
    eprintln!("60 s of 500s: {total} requests from 7 watchers: {per_path:?}");
    assert_eq!(per_path.len(), 7, "every watcher tried: {per_path:?}");
    assert!(
        per_path.values().all(|&n| (3..=10).contains(&n)),
        "a watcher not backing off, or not retrying: {per_path:?}"
    );

    // The API is back: lists answered (empty), watches held open.
    let mut held = Vec::new();
    let mut synced = std::collections::BTreeSet::new();
    let mut pending = Some(first_after);
    while synced.len() < Watched::ALL.len() {
        let seen = match pending.take() {
            Some(seen) => seen,
            None => tokio::select! {
                seen = meshguard_testkit::api_server::next_within(&mut server, Duration::from_secs(120)) => seen,
                Some(message) = rx.recv() => {
                    if let watch::Message::Synced(kind) = message {
                        synced.insert(kind);
                    }
                    continue;
                }
            },
        };
        if seen.param("watch") == Some("true") {
            held.push(seen);
            continue;
        }
        let list = json!({ "apiVersion": "v1", "kind": "List", "metadata": { "resourceVersion": "100" }, "items": [] });
        seen.answer(StatusCode::OK, &list);
    }
    assert_eq!(synced.len(), 7, "{synced:?}");
}
