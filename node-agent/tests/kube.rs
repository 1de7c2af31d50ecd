//! The agent's Kubernetes edge against a mocked API server (tower-test, as in
//! kube-rs' controller-rs): the exact requests it makes, the bodies it
//! applies, and what it makes of the NodePolicies it is sent.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::{path::Path, time::Duration};

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use meshguard_agent::state::{
    Update,
    kube::{Registration, StatusWriter, WATCHES, keep_registered, register, watch_policy},
};
use meshguard_crds::{NodePolicyStatus, watch::health::Watches};
use meshguard_testkit::api_server::{self, ApiServer, mock_client, not_found, respond};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tower_test::mock::SendResponse;

const KEY: &str = "fKsODqzo3qsW3lBIzTr3fWDS1vnIF7bqD6Fxr+vS6Uo=";
const MESH_NODES: &str = "/apis/meshguard.io/v1alpha1/meshnodes";
const NODE_POLICIES: &str = "/apis/meshguard.io/v1alpha1/nodepolicies";

/// The next request as (request, query, body, responder).
async fn next(
    server: &mut ApiServer,
) -> (
    Request<()>,
    Vec<(String, String)>,
    Value,
    SendResponse<Response<Body>>,
) {
    let seen = api_server::next(server).await;
    (seen.request, seen.query, seen.body, seen.send)
}

fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn node(name: &str, uid: &str) -> Value {
    json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": name, "uid": uid } })
}

/// db-1's NodePolicy as the operator writes it for `examples/`, with the
/// metadata an API server adds.
fn node_policy(resource_version: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../operator/cli/tests/golden/examples/db-1.yaml");
    let mut policy: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    policy["metadata"] = json!({
        "name": "db-1",
        "uid": "0b6f9a9e-4c43-4b8e-9d3c-1f0f2e6c1a11",
        "resourceVersion": resource_version,
        "generation": 3,
        "creationTimestamp": "2026-11-23T10:00:00Z",
        "ownerReferences": [{ "apiVersion": "meshguard.io/v1alpha1", "kind": "MeshNode", "name": "db-1", "uid": "5d1c2b7e-0f44-4d8f-a2c1-7b9e3f0d6a22" }],
        "managedFields": [{ "manager": "meshguard-operator", "operation": "Apply", "apiVersion": "meshguard.io/v1alpha1", "fieldsType": "FieldsV1", "fieldsV1": { "f:spec": {} } }],
    });
    policy
}

/// Answers the MeshNode registration: the Node's uid, then the apply.
/// Returns the applied body.
async fn serve_registration(server: &mut ApiServer, uid: &str) -> Value {
    let (request, _, _, send) = next(server).await;
    assert_eq!(
        (request.method(), request.uri().path()),
        (&Method::GET, "/api/v1/nodes/db-1")
    );
    send.send_response(respond(StatusCode::OK, &node("db-1", uid)));
    let (request, query, body, send) = next(server).await;
    assert_eq!(
        (request.method(), request.uri().path()),
        (&Method::PATCH, "/apis/meshguard.io/v1alpha1/meshnodes/db-1")
    );
    assert_eq!(
        request.headers()["content-type"],
        "application/apply-patch+yaml"
    );
    assert_eq!(
        (param(&query, "fieldManager"), param(&query, "force")),
        (Some("meshguard-agent"), Some("true"))
    );
    send.send_response(respond(StatusCode::OK, &body));
    body
}

fn registration() -> Registration {
    Registration {
        node: "db-1".into(),
        public_key: KEY.into(),
        endpoint: Some("10.0.0.7:51820".into()),
    }
}

#[tokio::test]
async fn registration_applies_the_mesh_node_owned_by_its_node() {
    let (client, mut server) = mock_client();
    let api = tokio::spawn(async move { serve_registration(&mut server, "9f1c").await });
    register(&client, &registration()).await.unwrap();
    let applied = api.await.unwrap();
    assert_eq!(
        applied,
        json!({
            "apiVersion": "meshguard.io/v1alpha1",
            "kind": "MeshNode",
            "metadata": { "name": "db-1", "ownerReferences": [{ "apiVersion": "v1", "kind": "Node", "name": "db-1", "uid": "9f1c" }] },
            "spec": { "publicKey": KEY, "endpoint": "10.0.0.7:51820" },
        }),
        "only the agent's fields: labels and meshIP stay with their owners"
    );
}

#[test]
fn a_member_without_an_endpoint_registers_none() {
    let mut behind_nat = registration();
    behind_nat.endpoint = None;
    let body = behind_nat.apply_body("9f1c");
    assert_eq!(body["spec"], json!({ "publicKey": KEY }));
}

#[tokio::test]
async fn registration_without_the_node_says_what_to_fix() {
    let (client, mut server) = mock_client();
    let api = tokio::spawn(async move {
        let (request, _, _, send) = next(&mut server).await;
        assert_eq!(request.uri().path(), "/api/v1/nodes/db-1");
        send.send_response(respond(StatusCode::NOT_FOUND, &not_found("nodes \"db-1\"")));
        server
    });
    let error = register(&client, &registration())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("Node/db-1 not found") && error.contains("--node"),
        "{error}"
    );
    let mut server = api.await.unwrap();
    // Nothing was applied after the failed lookup.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), server.next_request())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_deleted_mesh_node_is_registered_again() {
    let (client, mut server) = mock_client();
    let agent = tokio::spawn(keep_registered(client, registration(), Watches::default()));
    let applied = serve_registration(&mut server, "9f1c").await;

    // The watch: the initial list holds the MeshNode as applied, then it is deleted.
    let (request, query, _, send) = next(&mut server).await;
    assert_eq!(
        (request.method(), request.uri().path()),
        (&Method::GET, MESH_NODES)
    );
    assert_eq!(param(&query, "fieldSelector"), Some("metadata.name=db-1"));
    let mut existing = applied.clone();
    existing["metadata"]["resourceVersion"] = json!("7");
    send.send_response(respond(StatusCode::OK, &json!({ "apiVersion": "meshguard.io/v1alpha1", "kind": "MeshNodeList", "metadata": { "resourceVersion": "7" }, "items": [existing] })));
    let (request, query, _, send) = next(&mut server).await;
    assert_eq!(
        (
            request.uri().path(),
            param(&query, "watch"),
            param(&query, "resourceVersion")
        ),
        (MESH_NODES, Some("true"), Some("7"))
    );
    let deleted = json!({ "type": "DELETED", "object": existing });
    send.send_response(Response::new(Body::from(
        format!("{deleted}\n").into_bytes(),
    )));

    let reapplied = serve_registration(&mut server, "9f1c").await;
    assert_eq!(reapplied, applied);
    agent.abort();
}

#[tokio::test]
async fn the_policy_watch_selects_this_node_and_checks_what_arrives() {
    let (client, mut server) = mock_client();
    let (updates, mut received) = mpsc::channel(8);
    let agent = tokio::spawn(watch_policy(
        client,
        "db-1".into(),
        updates,
        Watches::default(),
    ));

    // The initial list: one item, without apiVersion and kind as lists may send it.
    let (request, query, _, send) = next(&mut server).await;
    assert_eq!(
        (request.method(), request.uri().path()),
        (&Method::GET, NODE_POLICIES)
    );
    assert_eq!(param(&query, "fieldSelector"), Some("metadata.name=db-1"));
    let mut listed = node_policy("10");
    let expected_revision = listed["spec"]["revision"].as_str().unwrap().to_owned();
    listed
        .as_object_mut()
        .unwrap()
        .retain(|k, _| k != "apiVersion" && k != "kind");
    send.send_response(respond(StatusCode::OK, &json!({ "apiVersion": "meshguard.io/v1alpha1", "kind": "NodePolicyList", "metadata": { "resourceVersion": "10" }, "items": [listed] })));
    match received.recv().await.unwrap() {
        Update::State(spec) => assert_eq!(spec.revision, expected_revision),
        Update::Rejected { reason, .. } => panic!("a good NodePolicy was refused: {reason}"),
    }

    // Then a broken version (refused, with the reason) and a good one again.
    let (request, query, _, send) = next(&mut server).await;
    assert_eq!(
        (
            request.uri().path(),
            param(&query, "watch"),
            param(&query, "resourceVersion")
        ),
        (NODE_POLICIES, Some("true"), Some("10"))
    );
    let mut broken = node_policy("11");
    broken["spec"].as_object_mut().unwrap().remove("interface");
    let mut fixed = node_policy("12");
    fixed["spec"]["revision"] = json!("0123456789abcdef");
    let events = [
        json!({ "type": "MODIFIED", "object": broken }),
        json!({ "type": "MODIFIED", "object": fixed }),
    ];
    let stream: String = events.iter().map(|e| format!("{e}\n")).collect();
    send.send_response(Response::new(Body::from(stream.into_bytes())));
    match received.recv().await.unwrap() {
        Update::Rejected { reason, uid } => {
            assert!(
                reason.starts_with("NodePolicy/db-1: ")
                    && reason.contains("spec.interface: Required value"),
                "{reason}"
            );
            assert_eq!(
                uid.as_deref(),
                Some("0b6f9a9e-4c43-4b8e-9d3c-1f0f2e6c1a11"),
                "the refused object's uid, for its Event"
            );
        }
        Update::State(_) => panic!("a NodePolicy without an interface was accepted"),
    }
    match received.recv().await.unwrap() {
        Update::State(spec) => assert_eq!(spec.revision, "0123456789abcdef"),
        Update::Rejected { reason, .. } => panic!("{reason}"),
    }
    agent.abort();
}

#[tokio::test]
async fn status_is_written_with_server_side_apply() {
    let (client, mut server) = mock_client();
    let writer = StatusWriter::new(&client, "db-1");
    let status = NodePolicyStatus {
        observed_revision: Some("a61bfd976179e6b6".into()),
        backend: Some("iptables".into()),
        peers: Some(7),
        rules: Some(12),
        ..Default::default()
    };
    let api = tokio::spawn(async move {
        let (request, query, body, send) = next(&mut server).await;
        assert_eq!(
            (request.method(), request.uri().path()),
            (
                &Method::PATCH,
                "/apis/meshguard.io/v1alpha1/nodepolicies/db-1/status"
            )
        );
        assert_eq!(
            request.headers()["content-type"],
            "application/apply-patch+yaml"
        );
        assert_eq!(
            (param(&query, "fieldManager"), param(&query, "force")),
            (Some("meshguard-agent"), Some("true"))
        );
        let mut answer = node_policy("13");
        answer["status"] = body["status"].clone();
        send.send_response(respond(StatusCode::OK, &answer));
        body
    });
    writer.write(&status).await.unwrap();
    let body = api.await.unwrap();
    assert_eq!(body["apiVersion"], "meshguard.io/v1alpha1");
    assert_eq!(
        (body["kind"].as_str(), body["metadata"]["name"].as_str()),
        (Some("NodePolicy"), Some("db-1"))
    );
    assert_eq!(
        body["status"],
        json!({ "observedRevision": "a61bfd976179e6b6", "backend": "iptables", "peers": 7, "rules": 12 })
    );
    assert!(body.get("spec").is_none(), "the spec is the operator's");
}

#[tokio::test]
async fn a_failed_status_write_names_the_object() {
    let (client, mut server) = mock_client();
    let writer = StatusWriter::new(&client, "db-1");
    let api = tokio::spawn(async move {
        let (_, _, _, send) = next(&mut server).await;
        send.send_response(respond(
            StatusCode::NOT_FOUND,
            &not_found("nodepolicies.meshguard.io \"db-1\""),
        ));
    });
    let error = writer
        .write(&NodePolicyStatus::default())
        .await
        .unwrap_err()
        .to_string();
    api.await.unwrap();
    assert!(
        error.contains("NodePolicy/db-1") && error.contains("not found"),
        "{error}"
    );
}

/// A refused NodePolicy gets a Warning Event (events.k8s.io/v1, kube's
/// Recorder) regarding NodePolicy/<node> by uid, so `kubectl describe`
/// shows it, reason `InvalidState`, the reason as its note (cut to fit the
/// API's 1 KiB), reported by the agent of that node.
#[tokio::test]
async fn a_refused_node_policy_gets_a_warning_event_naming_why() {
    let (client, mut server) = mock_client();
    let writer = StatusWriter::new(&client, "db-1");
    let api = tokio::spawn(async move {
        let (request, _, body, send) = next(&mut server).await;
        assert_eq!(
            (request.method(), request.uri().path()),
            (
                &Method::POST,
                "/apis/events.k8s.io/v1/namespaces/default/events"
            )
        );
        send.send_response(respond(StatusCode::CREATED, &body));
        body
    });
    let reason = format!(
        "NodePolicy/db-1: spec.interface: Required value; {}; the previous state stays enforced",
        "x".repeat(2000)
    );
    writer
        .refused(&reason, Some("0b6f9a9e-4c43-4b8e-9d3c-1f0f2e6c1a11"))
        .await
        .unwrap();
    let body = api.await.unwrap();
    assert_eq!(
        (body["type"].as_str(), body["reason"].as_str()),
        (Some("Warning"), Some("InvalidState"))
    );
    assert_eq!(
        body["regarding"],
        json!({ "apiVersion": "meshguard.io/v1alpha1", "kind": "NodePolicy", "name": "db-1", "uid": "0b6f9a9e-4c43-4b8e-9d3c-1f0f2e6c1a11" })
    );
    let note = body["note"].as_str().unwrap();
    assert!(note.starts_with("NodePolicy/db-1: spec.interface: Required value"));
    assert_eq!(note.chars().count(), 1000, "cut to fit the API's 1 KiB");
    assert_eq!(
        (
            body["reportingController"].as_str(),
            body["reportingInstance"].as_str()
        ),
        (Some("meshguard-agent"), Some("db-1"))
    );
}

/// The NodePolicy watch through the API's faults, in paused time: a watch
/// the server closes is resumed from the last resourceVersion; a failed
/// watch request, and `410 Gone` on one, start a fresh list; a 60-second outage (every
/// request answered 500) is ridden out with backoff — a bounded number of
/// requests, no update sent (the agent keeps enforcing what it has), the
/// watch out of sync (so `/readyz` answers 503) with every failed request
/// counted — and the first list that succeeds brings the newest revision
/// and puts the watch back in sync.
#[tokio::test(start_paused = true)]
async fn the_policy_watch_rides_out_api_outages_and_relists() {
    let (client, mut server) = mock_client();
    let (updates, mut received) = mpsc::channel(8);
    let watches = Watches::new(WATCHES);
    let agent = tokio::spawn(watch_policy(
        client,
        "db-1".into(),
        updates,
        watches.clone(),
    ));
    let list_answer = |policy: Value, version: &str| json!({ "apiVersion": "meshguard.io/v1alpha1", "kind": "NodePolicyList", "metadata": { "resourceVersion": version }, "items": [policy] });

    let (request, query, _, send) = next(&mut server).await;
    assert_eq!(
        (request.method(), param(&query, "watch")),
        (&Method::GET, None)
    );
    assert!(
        node_policy_watch(&watches).is_some_and(|line| line.contains("not listed yet")),
        "{:?}",
        watches.out_of_sync()
    );
    send.send_response(respond(
        StatusCode::OK,
        &list_answer(node_policy("10"), "10"),
    ));
    let Update::State(first) = received.recv().await.unwrap() else {
        panic!("the listed NodePolicy was refused")
    };
    in_sync(&watches).await;

    // The watch ends at once (the server closed it): resumed from 10.
    let (_, query, _, send) = next(&mut server).await;
    assert_eq!(
        (param(&query, "watch"), param(&query, "resourceVersion")),
        (Some("true"), Some("10"))
    );
    send.send_response(Response::new(Body::empty()));
    let (_, query, _, send) = next(&mut server).await;
    assert_eq!(
        (param(&query, "watch"), param(&query, "resourceVersion")),
        (Some("true"), Some("10")),
        "a closed watch resumes where it was"
    );
    // A failed watch request: out of sync, and only a list proves the API
    // back (a resumed watch says nothing until something changes).
    send.send_response(respond(
        StatusCode::SERVICE_UNAVAILABLE,
        &api_server::failure(503, "ServiceUnavailable", "the server is shutting down"),
    ));
    let (_, query, _, send) = next(&mut server).await;
    assert_eq!(param(&query, "watch"), None, "a failed watch lists again");
    assert!(
        node_policy_watch(&watches).is_some_and(|line| line.contains("shutting down")),
        "{:?}",
        watches.out_of_sync()
    );
    send.send_response(respond(
        StatusCode::OK,
        &list_answer(node_policy("10"), "10"),
    ));
    let Update::State(again) = received.recv().await.unwrap() else {
        panic!("the listed NodePolicy was refused")
    };
    assert_eq!(again.revision, first.revision);
    in_sync(&watches).await;
    let (_, query, _, send) = next(&mut server).await;
    assert_eq!(
        (param(&query, "watch"), param(&query, "resourceVersion")),
        (Some("true"), Some("10"))
    );
    // 10 is too old now: a fresh list follows.
    send.send_response(respond(
        StatusCode::GONE,
        &api_server::failure(410, "Expired", "too old resource version: 10 (42)"),
    ));

    // The outage: every request fails for 60 s.
    let started = tokio::time::Instant::now();
    let mut during = Vec::new();
    let (query, send) = loop {
        // The backoff reaches 30 s, jittered up to twice that.
        let seen = api_server::next_within(&mut server, Duration::from_secs(120)).await;
        let (query, send) = (seen.query, seen.send);
        if started.elapsed() >= Duration::from_secs(60) {
            break (query, send);
        }
        during.push(started.elapsed());
        assert_eq!(
            param(&query, "watch"),
            None,
            "a watch before a list succeeded"
        );
        send.send_response(respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            &api_server::failure(500, "InternalError", "etcdserver: request timed out"),
        ));
    };
    assert!(
        received.try_recv().is_err(),
        "the outage sent an update: enforcement would have changed"
    );
    let line = node_policy_watch(&watches).expect("the outage left the watch in sync");
    assert!(
        line.contains("out of sync with the API") && line.contains("etcdserver: request timed out"),
        "{line}"
    );
    // The 503, the 410, then each 500 answered.
    assert!(
        scrape(&watches).contains(&format!(
            "meshguard_agent_watch_errors_total{{watch=\"NodePolicy\"}} {}",
            2 + during.len()
        )),
        "{}",
        scrape(&watches)
    );
    eprintln!(
        "60 s of 500s: {} requests, at {:?} s",
        during.len(),
        during.iter().map(|d| d.as_secs_f32()).collect::<Vec<_>>()
    );
    assert!(
        (3..=10).contains(&during.len()),
        "{} requests in 60 s: not backing off, or not retrying",
        during.len()
    );

    // The API is back: the request after the outage lists, and the newest
    // revision comes.
    assert_eq!(param(&query, "watch"), None);
    let mut newer = node_policy("50");
    newer["spec"]["revision"] = json!("fedcba9876543210");
    send.send_response(respond(StatusCode::OK, &list_answer(newer, "50")));
    match received.recv().await.unwrap() {
        Update::State(spec) => {
            assert_eq!(spec.revision, "fedcba9876543210");
            assert_ne!(spec.revision, first.revision);
        }
        Update::Rejected { reason, .. } => panic!("{reason}"),
    }
    in_sync(&watches).await;
    agent.abort();
}

/// What `/readyz` would say of the NodePolicy watch: `None` while in sync.
fn node_policy_watch(watches: &Watches) -> Option<String> {
    watches
        .out_of_sync()
        .into_iter()
        .find(|line| line.starts_with("NodePolicy watch"))
}

/// Waits (paused time) for the list under way to end and put the watch in sync.
async fn in_sync(watches: &Watches) {
    for _ in 0..100 {
        if node_policy_watch(watches).is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "the watch did not come back in sync: {:?}",
        watches.out_of_sync()
    );
}

fn scrape(watches: &Watches) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(watches.collector("meshguard_agent"));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text
}
