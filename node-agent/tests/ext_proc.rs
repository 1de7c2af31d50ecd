//! The ext_proc server against bad input, through a real gRPC client: a
//! message without a phase, a stream that ends before any message, a huge
//! header map, a header that is not UTF-8 — each gets its answer, nothing
//! panics, and the server keeps serving.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

#[path = "support/ext_proc_client.rs"]
mod ext_proc_client;

use std::time::Duration;

use envoy_types::pb::envoy::service::ext_proc::v3::ProcessingRequest;
use ext_proc_client::{exchange, headers, serve_chains, status};
use meshguard_agent::l7::jwks::{RemoteJwks, Settings};
use sha2::{Digest, Sha256};

fn chain() -> meshguard_crds::node_policy::CompiledChain {
    let digest: String = Sha256::digest(b"good-key")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    serde_json::from_value(serde_json::json!({
        "name": "shop/orders", "routes": ["orders-v1"], "mode": "Enforce", "failureMode": "Closed",
        "steps": [{ "apiKey": { "header": "x-api-key", "keys": [{ "clientId": "app", "sha256": digest }] } }]
    }))
    .unwrap()
}

async fn server() -> ext_proc_client::Client {
    let jwks = RemoteJwks::new(Settings {
        refresh: Duration::from_secs(300),
        refetch: Duration::from_secs(30),
    });
    serve_chains(&[chain()], jwks).await
}

#[tokio::test]
async fn bad_input_gets_its_answer_and_the_server_keeps_serving() {
    let mut client = server().await;
    let good = || headers(vec![("x-api-key".into(), b"good-key".to_vec())]);

    // A message without a phase: the stream is refused as malformed.
    let error = exchange(
        &mut client,
        vec![ProcessingRequest::default()],
        "shop/orders",
    )
    .await
    .unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument);

    // A stream that ends before any message: no answer, no harm.
    assert!(
        exchange(&mut client, vec![], "shop/orders")
            .await
            .unwrap()
            .is_empty()
    );

    // A header that is not UTF-8: 400.
    let bad = headers(vec![("x-api-key".into(), vec![0xff, 0xfe, 0x00])]);
    let answers = exchange(&mut client, vec![bad], "shop/orders")
        .await
        .unwrap();
    assert_eq!(status(&answers[0]), 400);

    // 20,000 headers (about 2 MB): read and answered (the key is among them).
    let mut many: Vec<(String, Vec<u8>)> = (0..20_000)
        .map(|i| (format!("x-h{i}"), vec![b'v'; 80]))
        .collect();
    many.push(("x-api-key".into(), b"good-key".to_vec()));
    let answers = exchange(&mut client, vec![headers(many)], "shop/orders")
        .await
        .unwrap();
    assert_eq!(status(&answers[0]), 200);

    // An unknown chain: 403; and the server still answers a good request.
    let answers = exchange(&mut client, vec![good()], "shop/nope")
        .await
        .unwrap();
    assert_eq!(status(&answers[0]), 403);
    let answers = exchange(&mut client, vec![good()], "shop/orders")
        .await
        .unwrap();
    assert_eq!(status(&answers[0]), 200);
    let answers = exchange(&mut client, vec![headers(vec![])], "shop/orders")
        .await
        .unwrap();
    assert_eq!(status(&answers[0]), 401);
}
