//! Criterion benchmarks of one request through a chain, in process (the
//! evaluator the agent and `check-request` run; no gRPC): an empty chain,
//! each step alone, and the three-step chain of docs/benchmarks.md: apiKey,
//! jwt RS256 and rateLimit. Token and key set by PyJWT (`.venv/`). Steps
//! with a token are measured twice: the token seen before (remembered as
//! verified, as for every request of a client after its first) and not
//! seen before (the signature verified in full).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is a failure report

use std::time::{Duration, SystemTime};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use meshguard_crds::node_policy::CompiledChain;
use meshguard_policy::l7::{Chain, ChainState, Context, NoRemoteKeys, Request, evaluate};
use meshguard_testkit::tokens::mint;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn chain(steps: Value) -> Chain {
    let compiled: CompiledChain = serde_json::from_value(json!({
        "name": "bench/orders", "routes": ["orders-v1"], "mode": "Enforce", "failureMode": "Closed",
        "steps": steps
    }))
    .unwrap();
    Chain::prepare(&compiled).unwrap()
}

fn benches(c: &mut Criterion) {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap();
    let minted = mint(&json!({
        "keys": [{ "kid": "k1", "kty": "RSA" }],
        "tokens": [{ "key": "k1", "alg": "RS256", "claims": {
            "iss": "https://issuer.example", "aud": "orders", "sub": "carol",
            "exp": now.as_secs() + 86_400 } }]
    }));
    let token = minted["tokens"][0].as_str().unwrap();
    // 100 clients, as a Secret of a real API would hold.
    let keys: Vec<Value> = (0..100)
        .map(|i| {
            let digest: String = Sha256::digest(format!("key-{i}").as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            json!({ "clientId": format!("client-{i}"), "sha256": digest })
        })
        .collect();
    let api_key = json!({ "apiKey": { "header": "x-api-key", "keys": keys } });
    let jwt = json!({ "jwt": {
        "issuer": "https://issuer.example", "audiences": ["orders"],
        "jwks": minted["jwks"].to_string(), "algorithms": ["RS256"], "clockSkewSeconds": 60,
        "claimsToHeaders": [{ "claim": "sub", "header": "x-user" }] } });
    // Generous enough never to refuse: the cost of a take, not of a 429.
    let rate = json!({ "rateLimit": { "requests": 1_000_000_000, "per": "Second", "key": { "clientId": true } } });
    let mut request = Request {
        method: "GET".into(),
        path: "/orders/1".into(),
        route: Some("orders-v1".into()),
        source: Some("10.1.2.3".parse().unwrap()),
        ..Request::default()
    };
    request.add_header("x-api-key", "key-57");
    request.add_header("authorization", &format!("Bearer {token}"));
    request.add_header("user-agent", "wrk");

    let variants = [
        ("empty chain", json!([])),
        ("apiKey (100 clients)", json!([api_key])),
        ("jwt RS256", json!([jwt])),
        ("rateLimit", json!([rate])),
        ("apiKey + jwt + rateLimit", json!([api_key, jwt, rate])),
    ];
    let mut group = c.benchmark_group("chain");
    group.measurement_time(Duration::from_secs(5));
    for (name, steps) in variants {
        let chain = chain(steps);
        let run = |state: &ChainState| {
            evaluate(
                &chain,
                &request,
                &mut Context {
                    now,
                    state,
                    remote_keys: &NoRemoteKeys,
                    step_finished: None,
                },
            )
        };
        let state = ChainState::default();
        let outcome = run(&state);
        assert_eq!(outcome.status(), 200, "{name}: {:?}", outcome.trace);
        // A client sends its token again and again: after the first
        // request it is remembered (l7/verified.rs).
        group.bench_function(name, |b| b.iter(|| run(&state)));
        if name.contains("jwt") {
            // The first request with a token: verified in full.
            group.bench_function(format!("{name}, token not seen before"), |b| {
                b.iter_batched(ChainState::default, |s| run(&s), BatchSize::SmallInput)
            });
        }
    }
    group.finish();
}

criterion_group!(chain_benches, benches);
criterion_main!(chain_benches);
