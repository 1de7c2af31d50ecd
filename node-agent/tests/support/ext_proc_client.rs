//! An ext_proc server of the agent's, in process, and a real gRPC client
//! that talks to it as Envoy does: one stream per request.

#![allow(dead_code, clippy::unwrap_used)] // each test binary uses part of it

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
    jwks::RemoteJwks,
    server::{Listen, Processor, bind, serve},
};
use meshguard_crds::node_policy::CompiledChain;
use meshguard_policy::l7::Unmatched;
use prometheus_client::metrics::gauge::Gauge;
use tonic::transport::Channel;

pub type Client = ExternalProcessorClient<Channel>;

/// Serves `chains` on a free loopback port; returns a connected client.
pub async fn serve_chains(chains: &[CompiledChain], jwks: RemoteJwks) -> Client {
    let current = Current::default();
    current.replace(chains).unwrap();
    let address = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let processor = Processor {
        current,
        unmatched: Unmatched::Deny,
        jwks,
        observe: Arc::new(|_| {}),
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

/// Request headers `GET /orders` plus `list`, as Envoy sends them (raw_value).
pub fn headers(list: Vec<(String, Vec<u8>)>) -> ProcessingRequest {
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
pub async fn exchange(
    client: &mut Client,
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

/// The status Envoy would answer with (200: passed upstream).
pub fn status(answer: &ProcessingResponse) -> u16 {
    match &answer.response {
        Some(Response::ImmediateResponse(r)) => r.status.unwrap().code as u16,
        Some(Response::RequestHeaders(_)) => 200,
        other => panic!("unexpected answer {other:?}"),
    }
}

/// A refusal's `x-meshguard-reason` (empty for a pass).
pub fn reason(answer: &ProcessingResponse) -> String {
    let Some(Response::ImmediateResponse(r)) = &answer.response else {
        return String::new();
    };
    r.headers
        .iter()
        .flat_map(|m| &m.set_headers)
        .filter_map(|o| o.header.as_ref())
        .find(|h| h.key == "x-meshguard-reason")
        .map(|h| String::from_utf8_lossy(&h.raw_value).into_owned())
        .unwrap_or_default()
}
