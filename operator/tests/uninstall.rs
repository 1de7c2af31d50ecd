//! `meshguard-operator uninstall` (the chart's pre-delete Job) against a
//! mocked API server: the agents' DaemonSet is deleted first, then the Job
//! waits for the teardown on every node; it fails, naming the nodes, when
//! that does not happen in time, and stops at once when it may not delete.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::time::Duration;

use http::StatusCode;
use meshguard_operator::uninstall::{Settings, UninstallError, run};
use meshguard_testkit::api_server::{failure, mock_client, next, not_found};
use serde_json::{Value, json};

const DAEMON_SETS: &str = "/apis/apps/v1/namespaces/net/daemonsets";

fn settings(timeout: Duration) -> Settings {
    Settings {
        namespace: "net".into(),
        agent: "mg-agent".into(),
        teardown: "mg-teardown".into(),
        timeout,
        poll: Duration::from_millis(10),
    }
}

fn teardown(observed: i64, desired: i32, ready: i32) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": { "name": "mg-teardown", "namespace": "net", "generation": 1 },
        "spec": {
            "selector": { "matchLabels": { "app.kubernetes.io/component": "teardown" } },
            "template": { "metadata": { "labels": { "app.kubernetes.io/component": "teardown" } },
                          "spec": { "containers": [] } }
        },
        "status": { "observedGeneration": observed, "currentNumberScheduled": desired,
                    "desiredNumberScheduled": desired, "numberMisscheduled": 0,
                    "numberReady": ready, "updatedNumberScheduled": desired }
    })
}

fn deleted() -> Value {
    json!({ "kind": "Status", "apiVersion": "v1", "status": "Success" })
}

#[tokio::test]
async fn the_agents_go_first_then_it_waits_for_every_node() {
    let (client, mut server) = mock_client();
    let job = tokio::spawn(async move { run(client, &settings(Duration::from_secs(30))).await });

    let seen = next(&mut server).await;
    assert_eq!(
        (seen.method(), seen.path()),
        ("DELETE", format!("{DAEMON_SETS}/mg-agent").as_str())
    );
    assert_eq!(seen.body["propagationPolicy"], "Background");
    seen.answer(StatusCode::OK, &deleted());

    // Not observed yet (0 of 0), then 1 of 2, then 2 of 2.
    for status in [teardown(0, 0, 0), teardown(1, 2, 1), teardown(1, 2, 2)] {
        let seen = next(&mut server).await;
        assert_eq!(
            (seen.method(), seen.path()),
            ("GET", format!("{DAEMON_SETS}/mg-teardown").as_str())
        );
        seen.answer(StatusCode::OK, &status);
    }
    assert_eq!(job.await.unwrap().unwrap(), 2);
}

#[tokio::test]
async fn a_node_that_does_not_tear_down_in_time_is_named() {
    let (client, mut server) = mock_client();
    let job = tokio::spawn(async move { run(client, &settings(Duration::from_millis(50))).await });

    // A second uninstall after a failed one: the agents are gone already.
    let seen = next(&mut server).await;
    assert_eq!(seen.method(), "DELETE");
    seen.answer(
        StatusCode::NOT_FOUND,
        &not_found("daemonsets.apps \"mg-agent\""),
    );
    loop {
        let seen = next(&mut server).await;
        if seen.method() == "GET" && seen.path().ends_with("/mg-teardown") {
            seen.answer(StatusCode::OK, &teardown(1, 2, 1));
            continue;
        }
        assert_eq!(
            (seen.path(), seen.param("labelSelector")),
            (
                "/api/v1/namespaces/net/pods",
                Some("app.kubernetes.io/component=teardown")
            )
        );
        let pod = |name: &str, node: &str, ready: &str, waiting: Option<&str>| {
            json!({ "metadata": { "name": name }, "spec": { "nodeName": node, "containers": [] },
                    "status": { "conditions": [{ "type": "Ready", "status": ready }],
                                "containerStatuses": waiting.map(|reason| vec![json!({
                                    "name": "teardown", "image": "i", "imageID": "", "ready": false, "restartCount": 3,
                                    "state": { "waiting": { "reason": reason } } })]) } })
        };
        seen.answer(
            StatusCode::OK,
            &json!({ "apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [
                pod("t-1", "node-a", "True", None),
                pod("t-2", "node-b", "False", Some("CrashLoopBackOff")),
            ] }),
        );
        break;
    }
    let error = job.await.unwrap().unwrap_err();
    assert!(
        matches!(
            error,
            UninstallError::TimedOut {
                ready: 1,
                desired: 2,
                ..
            }
        ),
        "{error}"
    );
    let text = error.to_string();
    assert!(
        text.contains("1 of 2 nodes done; not done: node-b (CrashLoopBackOff)"),
        "{text}"
    );
}

#[tokio::test]
async fn a_refused_delete_fails_at_once_naming_the_daemon_set() {
    let (client, mut server) = mock_client();
    let job = tokio::spawn(async move { run(client, &settings(Duration::from_secs(30))).await });
    let seen = next(&mut server).await;
    seen.answer(
        StatusCode::FORBIDDEN,
        &failure(
            403,
            "Forbidden",
            "daemonsets.apps \"mg-agent\" is forbidden",
        ),
    );
    let error = job.await.unwrap().unwrap_err().to_string();
    assert!(
        error.starts_with("deleting DaemonSet net/mg-agent: ") && error.contains("forbidden"),
        "{error}"
    );
}
