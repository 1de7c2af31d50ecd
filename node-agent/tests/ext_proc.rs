//! The ext_proc server against bad input, through a real gRPC client: a
//! message without a phase, a stream that ends before any message, a huge
//! header map, a header that is not UTF-8 — each gets its answer, nothing
//! panics, and the server keeps serving.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::{sync::Arc, time::Duration};

use envoy_types::pb::envoy::{
    config::core::v3::{HeaderMap, HeaderValue},
    service::ext_proc::v3::{
        HttpHeaders, ProcessingRequest, ProcessingResponse,
        external_processor_client::ExternalProcessorClient, processing_request::Request as Phase,
        processing_response::Response,
    },
};
use meshguard_agent::l7::{
    chains::Current,
    server::{Listen, Processor, bind, serve},
};
use meshguard_policy::l7::Unmatched;
use prometheus_client::metrics::gauge::Gauge;
use sha2::{Digest, Sha256};
use tonic::transport::Channel;

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

async fn server() -> ExternalProcessorClient<Channel> {
    let current = Current::default();
    current.replace(&[chain()]).unwrap();
    let address = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let processor = Processor {
        current,
        unmatched: Unmatched::Deny,
        observe: Arc::new(|_, _, _| {}),
        streams: Gauge::default(),
    };
    let bound = bind(&Listen::Tcp(address)).await.unwrap();
    tokio::spawn(serve(bound, processor));
    for _ in 0..100 {
        if let Ok(client) = ExternalProcessorClient::connect(format!("http://{address}")).await {
            return client.max_encoding_message_size(64 << 20);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server did not come up at {address}");
}

fn headers(list: Vec<(String, Vec<u8>)>) -> ProcessingRequest {
    let mut all = vec![
        (":method".to_owned(), b"GET".to_vec()),
        (":path".to_owned(), b"/orders".to_vec()),
    ];
    all.extend(list);
    ProcessingRequest {
        request: Some(Phase::RequestHeaders(HttpHeaders {
            headers: Some(HeaderMap {
                headers: all
                    .into_iter()
                    .map(|(key, raw_value)| HeaderValue {
                        key,
                        value: String::new(),
                        raw_value,
                    })
                    .collect(),
            }),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// Sends the messages on one stream; returns every answer (or the error).
async fn exchange(
    client: &mut ExternalProcessorClient<Channel>,
    messages: Vec<ProcessingRequest>,
    chain: &str,
) -> Result<Vec<ProcessingResponse>, tonic::Status> {
    let mut request = tonic::Request::new(tokio_stream::iter(messages));
    request
        .metadata_mut()
        .insert("x-meshguard-chain", chain.parse().unwrap());
    let mut answers = client.process(request).await?.into_inner();
    let mut out = Vec::new();
    while let Some(answer) = answers.message().await? {
        out.push(answer);
    }
    Ok(out)
}

fn status(answer: &ProcessingResponse) -> u16 {
    match &answer.response {
        Some(Response::ImmediateResponse(r)) => r.status.unwrap().code as u16,
        Some(Response::RequestHeaders(_)) => 200,
        other => panic!("unexpected answer {other:?}"),
    }
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
