//! The L7 targets (`token`, `ext_proc`). Each input goes the way a request from
//! Envoy goes through the agent (`convert` → `ChainSet::answer` →
//! `convert::request_response`), and each checks what must hold whatever
//! the input: nothing panics, every answer is one of the statuses its chain
//! can give, and nothing passes a credential check, because no input can
//! hold a valid credential: the API key's digest is of a key no seed holds,
//! and the key set's private keys were thrown away when `seeds/token/` was
//! minted (by PyJWT, `e2e/testkit/python/mint.py`). A token that passed
//! would be a forgery.
//!
//! ```text
//!  route `guarded`  chain fuzz/guarded: jwt (every algorithm the API allows) · headers
//!                   → always 401
//!  route `open`     chain fuzz/open: anyOf(apiKey, jwt) for /private only · rateLimit ·
//!                   access · headers → 200, 401 (only /private), 403, 429; never 200 on /private
//!  any other        no chain → 403 (--unmatched-route deny)
//! ```

use std::{cell::RefCell, sync::Arc, time::Duration};

use envoy_types::pb::envoy::service::ext_proc::v3::{
    ProcessingRequest, ProcessingResponse, processing_request::Request as Phase,
    processing_response::Response,
};
use meshguard_agent::l7::{
    chains::{ChainSet, Current},
    convert,
};
use meshguard_crds::node_policy::CompiledChain;
use meshguard_policy::l7::{NoRemoteKeys, Outcome, REASON_HEADER, Request, Unmatched};
use prost::Message;
use serde_json::json;

/// The public keys the seed tokens were signed with (RSA, P-256, Ed25519).
pub const JWKS: &str = include_str!("jwks.json");

/// The evaluator's "now": after the expired seeds' `exp`, before the others'.
pub const NOW: Duration = Duration::from_secs(1_800_000_000);

/// Inputs between fresh chain states: rate-limit buckets keyed by header
/// values would otherwise grow with every input of a long run.
const STATE_LIFETIME: u32 = 4096;

fn jwt_step() -> serde_json::Value {
    json!({
        "issuer": "https://issuer.example", "audiences": ["orders"], "jwks": JWKS,
        "algorithms": ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"],
        "clockSkewSeconds": 60,
        "claimsToHeaders": [{ "claim": "sub", "header": "x-user" }]
    })
}

/// The two chains, compiled as the operator would have.
pub fn compiled() -> Vec<CompiledChain> {
    // Made-up hex: the digest of no key anyone knows.
    let digest = "7a1b3c7d5b0c2e6f9f0c8d1e4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b";
    let api_key = json!({ "header": "x-api-key", "queryParameter": "api_key",
        "keys": [{ "clientId": "fuzz-client", "sha256": digest }] });
    [
        json!({
            "name": "fuzz/guarded", "routes": ["guarded"], "mode": "Enforce", "failureMode": "Closed",
            "steps": [
                { "jwt": jwt_step() },
                { "headers": { "request": { "set": { "x-chain": "guarded" } } } }
            ]
        }),
        json!({
            "name": "fuzz/open", "routes": ["open"], "mode": "Enforce", "failureMode": "Closed",
            "steps": [
                { "when": { "pathPrefixes": ["/private"] },
                  "anyOf": [{ "apiKey": api_key }, { "jwt": jwt_step() }] },
                { "rateLimit": { "requests": 5, "per": "Second", "burst": 5,
                                 "key": { "header": "x-client" }, "rateLimitHeaders": true } },
                { "access": {
                    "allow": { "methods": ["GET", "POST"], "sourceCIDRs": ["10.0.0.0/8", "fd00::/8"] },
                    "deny": { "pathPrefixes": ["/admin"] } } },
                { "headers": {
                    "request": { "set": { "x-chain": "open" }, "remove": ["x-internal"] },
                    "response": { "set": { "x-served-by": "meshguard" }, "remove": ["server"] } } }
            ]
        }),
    ]
    .into_iter()
    .map(|c| serde_json::from_value(c).expect("the fuzz chains are well-formed"))
    .collect()
}

/// A chain set with fresh state.
pub fn chain_set() -> Arc<ChainSet> {
    let current = Current::default();
    current
        .replace(&compiled())
        .expect("the fuzz chains are usable");
    current.get()
}

thread_local! {
    static SET: RefCell<(u32, Arc<ChainSet>)> = RefCell::new((0, chain_set()));
}

fn with_set<T>(f: impl FnOnce(&ChainSet) -> T) -> T {
    SET.with(|cell| {
        let mut held = cell.borrow_mut();
        held.0 += 1;
        if held.0 > STATE_LIFETIME {
            *held = (0, chain_set());
        }
        f(&held.1)
    })
}

/// A token in `Authorization: Bearer`: refused with 401, always.
pub fn token(data: &[u8]) {
    // Envoy's headers reach the evaluator as UTF-8 or are refused with 400
    // before it (the ext_proc target covers that).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let outcome = token_outcome(text);
    assert_eq!(
        outcome.status(),
        401,
        "a token no key signed was not refused: {text:?} → {:?}",
        outcome.trace
    );
}

/// What the `guarded` chain answers a request with this bearer token.
pub fn token_outcome(token: &str) -> Outcome {
    let mut request = Request {
        method: "GET".to_owned(),
        path: "/orders".to_owned(),
        route: Some("guarded".to_owned()),
        ..Request::default()
    };
    request.add_header("authorization", &format!("Bearer {token}"));
    with_set(|set| set.answer(None, &request, Unmatched::Deny, NOW, &NoRemoteKeys, None))
}

/// A ProcessingRequest as Envoy would send it (any bytes; those that do not
/// decode are refused by gRPC before the agent sees them). Returns the
/// status Envoy would answer with (200 when the request continues), or
/// nothing for a message that is not a request's headers.
pub fn ext_proc(data: &[u8]) -> Option<u32> {
    let message = ProcessingRequest::decode(data).ok()?;
    // Other phases pass untouched (server.rs); only request headers are judged.
    let Some(Phase::RequestHeaders(headers)) = &message.request else {
        return None;
    };
    let response = match convert::request(headers.headers.as_ref(), &message, &headers.attributes) {
        Err(bad) => {
            let response = convert::bad_request(&bad);
            let Some(Response::ImmediateResponse(immediate)) = &response.response else {
                panic!("a request that cannot be read must be refused: {response:?}");
            };
            assert_eq!(immediate.status.as_ref().map(|s| s.code), Some(400));
            response
        }
        Ok(request) => {
            let outcome = with_set(|set| {
                set.answer(None, &request, Unmatched::Deny, NOW, &NoRemoteKeys, None)
            });
            check(&request, &outcome);
            convert::request_response(&outcome)
        }
    };
    // What goes back to Envoy must survive the wire: decoded, it is the
    // same answer (a header value that is not valid protobuf UTF-8 would
    // not be).
    let decoded = ProcessingResponse::decode(response.encode_to_vec().as_slice())
        .expect("an answer the agent encoded decodes");
    assert_eq!(decoded, response, "the answer changed on the wire");
    Some(match &response.response {
        Some(Response::ImmediateResponse(immediate)) => {
            immediate.status.as_ref().map_or(0, |s| s.code as u32)
        }
        _ => 200,
    })
}

/// What must hold for any request's outcome.
fn check(request: &Request, outcome: &Outcome) {
    let status = outcome.status();
    let allowed: &[u16] = match outcome.chain.as_deref() {
        Some("fuzz/guarded") => &[401],
        Some("fuzz/open") if request.path_only().starts_with("/private") => &[401],
        Some("fuzz/open") => &[200, 403, 429],
        None => &[403],
        Some(other) => panic!("a chain that does not exist answered: {other}"),
    };
    assert!(
        allowed.contains(&status),
        "{:?} answered {status} for {request:?}: {:?}",
        outcome.chain,
        outcome.trace
    );
    if let Some(refusal) = &outcome.refusal {
        assert!(
            refusal.headers.contains_key(REASON_HEADER),
            "a refusal without its reason: {refusal:?}"
        );
    } else if request.header("x-user").is_some() {
        // Only a verified token may say who the user is.
        assert!(
            outcome.request_headers.remove.contains("x-user"),
            "a client's own x-user went upstream: {:?}",
            outcome.request_headers
        );
    }
}
