//! The operator's whole loop — seven watches, the leader lease, passes,
//! readiness, metrics — through a 60-second API outage, in paused time,
//! against a fake API server that keeps the objects written to it.
//!
//! The fake keeps watches open and sends each on its way with the change
//! an object of its collection went through (the client resumes from the
//! new resourceVersion, as after any watch the server ends), so the
//! operator sees its own writes as it would in a cluster.
//!
//! Before the outage the operator lists the example mesh, wins the lease
//! and writes every NodePolicy. Then every request is answered 500 and the
//! held watches are cut. It must keep what it has: no write of any kind,
//! a bounded number of requests, `/readyz` 503 naming every watch, the
//! lease given up before it runs out (`meshguard_operator_leader` 0). When
//! the API answers again it must list everything, hold the lease again,
//! turn ready, and write nothing: nothing changed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use clap::Parser;
use http::{Response, StatusCode};
use kube::client::Body;
use meshguard_operator::controller::{
    cli::Flags,
    run::{Clients, Reports, run_with},
};
use meshguard_testkit::{
    api_server::{ApiServer, Seen, failure, mock_client, next_within, not_found},
    lease::Lease,
};
use serde_json::{Value, json};
use tokio::time::Instant;

const MESHGUARD: &str = "/apis/meshguard.io/v1alpha1";

/// The collections the operator lists and watches, by path.
const WATCHED: [&str; 7] = [
    "/apis/meshguard.io/v1alpha1/meshpolicies",
    "/apis/meshguard.io/v1alpha1/policychains",
    "/apis/meshguard.io/v1alpha1/meshnodes",
    "/api/v1/nodes",
    "/api/v1/secrets",
    "/api/v1/configmaps",
    "/apis/meshguard.io/v1alpha1/nodepolicies",
];

/// What a request was, for the counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Sort {
    List,
    Watch,
    Lease,
    Write,
}

#[derive(Default)]
struct Api {
    down: bool,
    /// Objects by collection path, then name.
    store: BTreeMap<String, BTreeMap<String, Value>>,
    version: u64,
    lease: Lease,
    /// Watches held open while the API is up (cut when it goes down).
    held: Vec<Seen>,
    /// Requests by sort and path, and the writes' `METHOD path`.
    counts: BTreeMap<(Sort, String), usize>,
    writes: Vec<String>,
}

impl Api {
    fn object_mut(&mut self, path: &str) -> Option<&mut Value> {
        let (collection, name) = path.rsplit_once('/')?;
        self.store.get_mut(collection)?.get_mut(name)
    }

    fn answer(&mut self, seen: Seen) {
        let path = seen.path().to_owned();
        let sort = if Lease::is_for(&seen) {
            Sort::Lease
        } else if seen.method() != "GET" {
            Sort::Write
        } else if seen.param("watch") == Some("true") {
            Sort::Watch
        } else {
            Sort::List
        };
        *self.counts.entry((sort, path.clone())).or_default() += 1;
        if sort == Sort::Write {
            self.writes.push(format!("{} {path}", seen.method()));
        }
        if self.down {
            return seen.answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                &failure(500, "InternalError", "etcdserver: request timed out"),
            );
        }
        let (status, body) = match sort {
            Sort::Lease => self.lease.answer(&seen),
            Sort::Watch => return self.held.push(seen),
            Sort::List => {
                let items: Vec<Value> = self
                    .store
                    .get(&path)
                    .map(|objects| objects.values().cloned().collect())
                    .unwrap_or_default();
                let version = self.version.to_string();
                (
                    StatusCode::OK,
                    json!({ "apiVersion": "v1", "kind": "List", "metadata": { "resourceVersion": version }, "items": items }),
                )
            }
            Sort::Write => self.write(&seen, &path),
        };
        seen.answer(status, &body);
    }

    fn write(&mut self, seen: &Seen, path: &str) -> (StatusCode, Value) {
        self.version += 1;
        let version = self.version.to_string();
        if path.contains("/events") {
            return (StatusCode::CREATED, seen.body.clone());
        }
        if let Some(object_path) = path.strip_suffix("/status") {
            let status = seen.body["status"].clone();
            let Some(object) = self.object_mut(object_path) else {
                return (StatusCode::NOT_FOUND, not_found(object_path));
            };
            object["status"] = status;
            object["metadata"]["resourceVersion"] = json!(version);
            let object = object.clone();
            self.changed(object_path, "MODIFIED", &object);
            return (StatusCode::OK, object);
        }
        let (collection, name) = path.rsplit_once('/').unwrap();
        if seen.method() == "DELETE" {
            let gone = self
                .store
                .get_mut(collection)
                .and_then(|objects| objects.remove(name));
            return match gone {
                Some(object) => {
                    self.changed(path, "DELETED", &object);
                    (StatusCode::OK, object)
                }
                None => (StatusCode::NOT_FOUND, not_found(path)),
            };
        }
        assert_eq!(seen.method(), "PATCH", "{path}");
        let objects = self.store.entry(collection.to_owned()).or_default();
        let mut object = seen.body.clone();
        if let Some(old) = objects.get(name) {
            object["status"] = old["status"].clone();
            object["metadata"]["uid"] = old["metadata"]["uid"].clone();
        } else {
            object["metadata"]["uid"] = json!(format!("uid-{name}"));
        }
        object["metadata"]["resourceVersion"] = json!(version);
        let change = if objects.insert(name.to_owned(), object.clone()).is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        self.changed(path, change, &object);
        (StatusCode::OK, object)
    }

    /// Ends the watches held on the collection of `path` with the change.
    fn changed(&mut self, path: &str, change: &str, object: &Value) {
        let collection = path.rsplit_once('/').unwrap().0;
        let line = format!("{}\n", json!({ "type": change, "object": object }));
        let (ended, held) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|watch| watch.path() == collection);
        self.held = held;
        for watch in ended {
            let response = Response::builder()
                .status(StatusCode::OK)
                .body(Body::from(line.clone().into_bytes()))
                .unwrap();
            watch.send.send_response(response);
        }
    }

    fn requests(&self, sort: Sort) -> usize {
        self.counts
            .iter()
            .filter(|((s, _), _)| *s == sort)
            .map(|(_, n)| n)
            .sum()
    }
}

/// The example mesh (MeshNodes and MeshPolicies of examples/), as stored.
fn example_mesh(api: &mut Api) {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    for file in ["mesh-nodes.yaml", "three-tier.yaml"] {
        let text = std::fs::read_to_string(examples.join(file)).unwrap();
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
        for mut doc in docs {
            let name = doc["metadata"]["name"].as_str().unwrap().to_owned();
            let plural = match doc["kind"].as_str().unwrap() {
                "MeshNode" => "meshnodes",
                "MeshPolicy" => "meshpolicies",
                other => panic!("{other} in {file}"),
            };
            doc["metadata"]["uid"] = json!(format!("uid-{name}"));
            doc["metadata"]["generation"] = json!(1);
            doc["metadata"]["resourceVersion"] = json!("1");
            api.store
                .entry(format!("{MESHGUARD}/{plural}"))
                .or_default()
                .insert(name, doc);
        }
    }
    api.version = 1;
}

fn serve(mut server: ApiServer, api: Arc<Mutex<Api>>) {
    tokio::spawn(async move {
        loop {
            // The backoff reaches 30 s, jittered up to twice that.
            let seen = next_within(&mut server, Duration::from_secs(600)).await;
            api.lock().unwrap().answer(seen);
        }
    });
}

/// Waits (paused time) until `done` holds; how long it took.
async fn until(what: &str, within: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    started.elapsed()
}

#[tokio::test(start_paused = true)]
async fn through_an_outage_the_operator_keeps_what_it_has_and_writes_nothing() {
    // Paused time stands still while the runtime is busy: an operator that
    // never idles (writing in a loop) would hang the test, not fail it.
    std::thread::spawn(|| {
        std::thread::sleep(std::time::Duration::from_secs(180));
        eprintln!("the operator never settled: 180 s of real time without an end");
        std::process::exit(101);
    });
    let api = Arc::new(Mutex::new(Api::default()));
    example_mesh(&mut api.lock().unwrap());
    let (client, server) = mock_client();
    serve(server, Arc::clone(&api));
    let flags = Flags::try_parse_from([
        "meshguard-operator",
        "--identity",
        "operator-0",
        "--lease-namespace",
        "meshguard-system",
        "--lease-name",
        "meshguard-operator",
        "--lease-duration",
        "15s",
    ])
    .unwrap();
    let reports = Arc::new(Reports::new());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let operator = tokio::spawn({
        let reports = Arc::clone(&reports);
        async move {
            let clients = Clients {
                api: client.clone(),
                lease: client,
            };
            run_with(clients, &flags, &reports, async {
                let _ = stopped.await;
            })
            .await
        }
    });
    let scrape = || {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reports.shared.registry).unwrap();
        text
    };
    let count = |api: &Api, plural: &str| {
        api.store
            .get(&format!("{MESHGUARD}/{plural}"))
            .map_or(0, BTreeMap::len)
    };

    // Up: listed, leading, every member's NodePolicy written, ready.
    until(
        "ready, every NodePolicy written",
        Duration::from_secs(60),
        || {
            let api = api.lock().unwrap();
            reports.shared.readiness().0 && count(&api, "nodepolicies") == count(&api, "meshnodes")
        },
    )
    .await;
    assert!(scrape().contains("meshguard_operator_leader 1"));
    let written: BTreeMap<String, Value> =
        api.lock().unwrap().store[&format!("{MESHGUARD}/nodepolicies")].clone();
    // Let the passes settle (debounce, statuses, Events).
    tokio::time::sleep(Duration::from_secs(5)).await;

    // Down: every request answered 500, the held watches cut.
    let (lists_before, lease_before, writes_before) = {
        let mut api = api.lock().unwrap();
        api.down = true;
        for watch in std::mem::take(&mut api.held) {
            watch.answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                &failure(500, "InternalError", "etcdserver: leader changed"),
            );
        }
        (
            api.counts.clone(),
            api.requests(Sort::Lease),
            api.writes.len(),
        )
    };
    let outage = Instant::now();
    let stepped_down = until("the leader steps down", Duration::from_secs(15), || {
        scrape().contains("meshguard_operator_leader 0")
    })
    .await;
    let (ready, why) = reports.shared.readiness();
    assert!(!ready, "ready through an outage");
    for kind in [
        "MeshPolicy",
        "PolicyChain",
        "MeshNode",
        "Node",
        "Secret",
        "ConfigMap",
        "NodePolicy",
    ] {
        assert!(
            why.contains(&format!("{kind} watch: out of sync with the API")),
            "{kind} not named: {why}"
        );
    }
    tokio::time::sleep(Duration::from_secs(60).saturating_sub(outage.elapsed())).await;
    let during = {
        let mut api = api.lock().unwrap();
        api.down = false;
        let mut per_path: BTreeMap<String, usize> = BTreeMap::new();
        for ((sort, path), n) in &api.counts {
            let before = lists_before.get(&(*sort, path.clone())).unwrap_or(&0);
            if matches!(sort, Sort::List | Sort::Watch) && n > before {
                *per_path.entry(path.clone()).or_default() += n - before;
            }
        }
        let writes = api.writes[writes_before..].to_vec();
        (per_path, api.requests(Sort::Lease) - lease_before, writes)
    };
    let (per_watch, lease_requests, writes) = during;
    eprintln!(
        "60 s of 500s: leader stepped down after {:.1} s; {} watch requests {per_watch:?}; {lease_requests} lease requests; writes {writes:?}",
        stepped_down.as_secs_f64(),
        per_watch.values().sum::<usize>()
    );
    assert_eq!(writes, Vec::<String>::new(), "writes during the outage");
    assert_eq!(per_watch.len(), 7, "every watcher retried: {per_watch:?}");
    assert!(
        per_watch.values().all(|&n| (3..=10).contains(&n)),
        "a watcher not backing off, or not retrying: {per_watch:?}"
    );
    assert!(
        (2..=10).contains(&lease_requests),
        "{lease_requests} lease requests in 60 s: not backing off, or not retrying"
    );
    for path in WATCHED {
        assert!(per_watch.contains_key(path), "{path} not retried");
    }

    // Up again: listed, leading, ready, and nothing written.
    let writes_after_outage = api.lock().unwrap().writes.len();
    let back = until("ready and leading again", Duration::from_secs(120), || {
        reports.shared.readiness().0 && scrape().contains("meshguard_operator_leader 1")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    {
        let api_now = api.lock().unwrap();
        eprintln!(
            "ready and leading {:.1} s after the API came back",
            back.as_secs_f64()
        );
        assert_eq!(
            api_now.writes[writes_after_outage..].to_vec(),
            Vec::<String>::new(),
            "nothing changed, yet the operator wrote"
        );
        for (name, policy) in &written {
            assert_eq!(
                api_now.store[&format!("{MESHGUARD}/nodepolicies")][name]["spec"],
                policy["spec"],
                "NodePolicy/{name}"
            );
        }
        assert_eq!(api_now.lease.holder().as_deref(), Some("operator-0"));
    }
    let text = scrape();
    assert!(
        text.contains("meshguard_operator_watch_synced{watch=\"NodePolicy\"} 1"),
        "{text}"
    );
    stop.send(()).unwrap();
    operator.await.unwrap().unwrap();
}
