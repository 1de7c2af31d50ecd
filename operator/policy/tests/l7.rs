//! The L7 evaluator step by step, with tokens and key sets minted by PyJWT
//! (an implementation independent of ours) and time passed in.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use meshguard_crds::node_policy::CompiledChain;
use meshguard_policy::l7::{
    Chain, ChainState, Context, KeySet, NoRemoteKeys, Outcome, RemoteKeys, Request, evaluate,
    jwt::MAX_TOKEN_BYTES, select,
};
use meshguard_testkit::tokens::mint;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// 2026-12-01T00:00:00Z: the evaluator's "now" in every test.
const NOW: u64 = 1_795_996_800;

fn digest(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn chain(value: Value) -> Chain {
    let compiled: CompiledChain = serde_json::from_value(value).unwrap();
    Chain::prepare(&compiled).unwrap()
}

fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> Request {
    let mut r = Request {
        method: method.into(),
        path: path.into(),
        route: Some("orders-v1".into()),
        source: Some("10.1.2.3".parse().unwrap()),
        ..Request::default()
    };
    for (k, v) in headers {
        r.add_header(k, v);
    }
    r
}

fn run(chain: &Chain, request: &Request) -> Outcome {
    run_with(chain, request, &ChainState::default(), &NoRemoteKeys, NOW)
}

fn run_with(
    chain: &Chain,
    request: &Request,
    state: &ChainState,
    remote: &dyn RemoteKeys,
    now: u64,
) -> Outcome {
    evaluate(
        chain,
        request,
        &mut Context {
            now: Duration::from_secs(now),
            state,
            remote_keys: remote,
            step_finished: None,
        },
    )
}

fn api_key_chain() -> Chain {
    chain(json!({
        "name": "shop/orders", "routes": ["orders-v1"], "mode": "Enforce", "failureMode": "Closed",
        "steps": [{ "apiKey": { "header": "x-api-key", "keys": [
            { "clientId": "alice", "sha256": digest("alice-key") },
            { "clientId": "bob", "sha256": digest("bob-key") }
        ] } }]
    }))
}

#[test]
fn an_api_key_is_looked_up_by_digest() {
    let c = api_key_chain();
    let ok = run(&c, &request("GET", "/orders", &[("X-Api-Key", "bob-key")]));
    assert_eq!(ok.status(), 200, "{:?}", ok.trace);
    assert_eq!(ok.trace[0].result, "client bob");

    let missing = run(&c, &request("GET", "/orders", &[]));
    let refusal = missing.refusal.unwrap();
    assert_eq!(
        (refusal.status, refusal.reason.as_str()),
        (401, "missing API key")
    );
    assert_eq!(refusal.step.unwrap().to_string(), "0:apiKey");
    assert_eq!(
        refusal.headers["www-authenticate"],
        "ApiKey realm=\"shop/orders\", header=\"x-api-key\""
    );
    let wrong = run(&c, &request("GET", "/", &[("x-api-key", "alice-key ")]));
    assert_eq!(wrong.refusal.unwrap().reason, "unknown API key");
    let body = run(&c, &request("GET", "/", &[]))
        .refusal
        .unwrap()
        .body(Some("shop/orders"));
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body,
        json!({"error": "missing API key", "chain": "shop/orders", "step": "0:apiKey"})
    );
}

/// Keys: an RSA key (kid rsa-1), an EC key (ec-1), and an RSA key not in
/// the published set (rogue) that signs with kid rsa-1.
struct Tokens {
    jwks: String,
    tokens: Vec<String>,
}

fn tokens(specs: Value) -> Tokens {
    let minted = mint(&json!({
        "keys": [
            { "kid": "rsa-1", "kty": "RSA" },
            { "kid": "ec-1", "kty": "EC" },
            { "kid": "rogue", "kty": "RSA", "publish": false }
        ],
        "tokens": specs,
    }));
    Tokens {
        jwks: minted["jwks"].to_string(),
        tokens: minted["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_owned())
            .collect(),
    }
}

fn jwt_chain(jwks: &str, extra: Value) -> Chain {
    let mut jwt = json!({
        "issuer": "https://issuer.example",
        "audiences": ["orders"],
        "jwks": jwks,
        "algorithms": ["RS256", "ES256"],
        "clockSkewSeconds": 60,
        "claimsToHeaders": [{ "claim": "sub", "header": "x-user" }]
    });
    for (k, v) in extra.as_object().unwrap() {
        jwt[k] = v.clone();
    }
    chain(json!({
        "name": "shop/orders", "routes": ["orders-v1"], "mode": "Enforce", "failureMode": "Closed",
        "steps": [{ "jwt": jwt }]
    }))
}

fn claims(extra: Value) -> Value {
    let mut c = json!({
        "iss": "https://issuer.example", "aud": "orders", "sub": "carol",
        "exp": NOW + 300, "iat": NOW - 10
    });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

fn bearer(token: &str) -> Request {
    request(
        "GET",
        "/orders",
        &[("authorization", &format!("Bearer {token}"))],
    )
}

#[test]
fn a_valid_token_passes_and_its_claims_become_headers() {
    let t = tokens(json!([
        { "key": "rsa-1", "alg": "RS256", "claims": claims(json!({})) },
        { "key": "ec-1", "alg": "ES256", "claims": claims(json!({"aud": ["other", "orders"], "sub": "dave"})) },
        { "key": "rsa-1", "alg": "RS256", "claims": claims(json!({})), "headers": { "kid": null } },
    ]));
    let c = jwt_chain(&t.jwks, json!({}));
    let mut spoofed = bearer(&t.tokens[0]);
    spoofed.add_header("x-user", "mallory");
    let rsa = run(&c, &spoofed);
    assert_eq!(rsa.status(), 200, "{:?}", rsa.trace);
    assert_eq!(
        rsa.request_headers.set["x-user"], "carol",
        "set from the claim, over the client's"
    );
    let ec = run(&c, &bearer(&t.tokens[1]));
    assert_eq!(ec.status(), 200, "{:?}", ec.trace);
    assert_eq!(ec.request_headers.set["x-user"], "dave");
    let no_kid = run(&c, &bearer(&t.tokens[2]));
    assert_eq!(
        no_kid.status(),
        200,
        "a token without kid is tried with every key: {:?}",
        no_kid.trace
    );
}

#[test]
fn a_client_cannot_send_identity_headers_itself() {
    let c = chain(json!({
        "name": "shop/orders", "routes": ["orders-v1"], "mode": "Enforce", "failureMode": "Closed",
        "steps": [
            { "when": { "pathPrefixes": ["/private"] }, "jwt": {
                "issuer": "i", "jwks": r#"{"keys":[{"kty":"EC","crv":"P-256","x":"ccvgcYaCByR56Q7DWC_YRB-OA0abwTTCYGZJ3rmaSuI","y":"c-aVt87PakwvlmYhADoqA0SvmBdVloPAWmDC_59qiW0"}]}"#,
                "algorithms": ["ES256"], "clockSkewSeconds": 0,
                "claimsToHeaders": [{ "claim": "sub", "header": "X-User" }] } }
        ]
    }));
    // The jwt step does not run for /public, yet x-user must not get through.
    let out = run(&c, &request("GET", "/public", &[("x-user", "admin")]));
    assert_eq!(out.status(), 200);
    assert!(
        out.request_headers.remove.contains("x-user"),
        "{:?}",
        out.request_headers
    );
}

#[test]
fn bad_tokens_are_refused_with_401_and_the_reason() {
    let t = tokens(json!([
        { "key": "rsa-1", "alg": "RS256", "claims": claims(json!({"exp": NOW - 61})) },
        { "key": "rsa-1", "alg": "RS256", "claims": claims(json!({"exp": NOW - 30})) },
        { "key": "rsa-1", "alg": "RS256", "claims": claims(json!({"nbf": NOW + 120})) },
        { "key": "rsa-1", "alg": "RS256", "claims": claims(json!({"nbf": NOW + 30})) },
        { "key": "rsa-1", "alg": "RS256", "claims": claims(json!({"aud": "billing"})) },
        { "key": "rsa-1", "alg": "RS256", "claims": claims(json!({"iss": "https://evil.example"})) },
        { "key": "rsa-1", "alg": "RS256", "claims": claims(json!({})), "headers": { "kid": "rsa-9" } },
        { "key": "rogue", "alg": "RS256", "claims": claims(json!({})), "headers": { "kid": "rsa-1" } },
        { "alg": "none", "claims": claims(json!({})) },
        { "hmac_with_public_key_of": "rsa-1", "claims": claims(json!({})) },
        { "key": "rsa-1", "alg": "RS384", "claims": claims(json!({})) },
        { "key": "rsa-1", "alg": "RS256", "claims": claims(json!({"exp": null})) },
        { "key": "rsa-1", "alg": "RS256", "claims": claims(json!({"aud": null})) },
        { "key": "ec-1", "alg": "ES256", "claims": claims(json!({})), "headers": { "kid": "rsa-1" } },
    ]));
    let c = jwt_chain(&t.jwks, json!({}));
    let expect = [
        Some("expired"),
        None, // within the 60 s of clock skew
        Some("not yet valid"),
        None, // within skew
        Some("audience does not match"),
        Some("issuer https://evil.example is not the expected one"),
        Some("no key with kid rsa-9 for its algorithm"),
        Some("signature does not verify"),
        Some("not a JWT"),
        Some("algorithm HS256 is not allowed"),
        Some("algorithm RS384 is not allowed"),
        Some("no exp claim"),
        Some("audience does not match"),
        Some("no key with kid rsa-1 for its algorithm"), // an EC signature, an RSA key's kid
    ];
    for (i, (token, expected)) in t.tokens.iter().zip(expect).enumerate() {
        let out = run(&c, &bearer(token));
        match expected {
            None => assert_eq!(out.status(), 200, "token {i}: {:?}", out.trace),
            Some(reason) => {
                let refusal = out.refusal.unwrap_or_else(|| panic!("token {i} passed"));
                assert_eq!(refusal.status, 401, "token {i}");
                assert!(
                    refusal
                        .reason
                        .starts_with(&format!("invalid token: {reason}")),
                    "token {i}: {}",
                    refusal.reason
                );
                assert!(
                    refusal.headers["www-authenticate"].contains("error=\"invalid_token\""),
                    "token {i}"
                );
            }
        }
    }
}

#[test]
fn missing_oversized_and_garbage_tokens_are_refused() {
    let t = tokens(json!([]));
    let c = jwt_chain(&t.jwks, json!({}));
    let missing = run(&c, &request("GET", "/", &[])).refusal.unwrap();
    assert_eq!(
        (missing.status, missing.reason.as_str()),
        (401, "missing bearer token")
    );
    assert_eq!(
        missing.headers["www-authenticate"],
        "Bearer realm=\"shop/orders\""
    );
    let basic = run(&c, &request("GET", "/", &[("authorization", "Basic YTpi")]));
    assert_eq!(basic.refusal.unwrap().reason, "missing bearer token");
    let huge = "a".repeat(MAX_TOKEN_BYTES + 1);
    assert!(
        run(&c, &bearer(&huge))
            .refusal
            .unwrap()
            .reason
            .contains("longer than")
    );
    for garbage in [
        "x",
        "a.b.c",
        "....",
        "eyJhbGciOiJSUzI1NiJ9.e30.",
        "\u{00e9}.\u{00e9}.\u{00e9}",
    ] {
        let refusal = run(&c, &bearer(garbage)).refusal.unwrap();
        assert_eq!(refusal.status, 401, "{garbage:?}");
    }
}

struct Remote(Option<Arc<KeySet>>);

impl RemoteKeys for Remote {
    fn get(&self, uri: &str) -> Option<Arc<KeySet>> {
        assert_eq!(uri, "https://issuer.example/jwks");
        self.0.clone()
    }
}

#[test]
fn remote_key_sets_come_from_the_caller_and_their_absence_follows_failure_mode() {
    let t = tokens(json!([
        { "key": "rsa-1", "alg": "RS256", "claims": claims(json!({})) },
        { "key": "rsa-1", "alg": "RS256", "claims": claims(json!({})), "headers": { "kid": "rsa-2" } },
    ]));
    let remote = |mode: &str| {
        chain(json!({
            "name": "shop/orders", "routes": ["orders-v1"], "mode": "Enforce", "failureMode": mode,
            "steps": [{ "jwt": {
                "issuer": "https://issuer.example", "jwksUri": "https://issuer.example/jwks",
                "algorithms": ["RS256"], "clockSkewSeconds": 0 } }]
        }))
    };
    let keys = Remote(Some(KeySet::parse(&t.jwks).unwrap()));
    let state = ChainState::default();
    let ok = run_with(&remote("Closed"), &bearer(&t.tokens[0]), &state, &keys, NOW);
    assert_eq!(ok.status(), 200, "{:?}", ok.trace);
    let unknown = run_with(&remote("Closed"), &bearer(&t.tokens[1]), &state, &keys, NOW);
    assert_eq!(unknown.status(), 401);
    assert_eq!(
        unknown.unknown_kid.as_deref(),
        Some("https://issuer.example/jwks"),
        "the agent may refetch"
    );

    let none = Remote(None);
    let closed = run_with(&remote("Closed"), &bearer(&t.tokens[0]), &state, &none, NOW);
    assert_eq!(closed.status(), 500, "{:?}", closed.trace);
    let open = run_with(&remote("Open"), &bearer(&t.tokens[0]), &state, &none, NOW);
    assert_eq!(
        open.status(),
        200,
        "failureMode Open skips the step: {:?}",
        open.trace
    );
}

/// A token seen before skips its signature check (the agent's memory of
/// verified tokens), and nothing else: the answer is the one a first
/// verification gives, lifetime, audience, algorithms and the current key
/// set included.
#[test]
fn a_remembered_token_answers_as_a_first_verification_would() {
    let t = tokens(json!([
        { "key": "rsa-1", "alg": "RS256", "claims": claims(json!({})) },
    ]));
    let step = |audience: &str, algorithms: Value| {
        chain(json!({
            "name": "shop/orders", "routes": ["orders-v1"], "mode": "Enforce", "failureMode": "Closed",
            "steps": [{ "jwt": {
                "issuer": "https://issuer.example", "jwksUri": "https://issuer.example/jwks",
                "audiences": [audience], "algorithms": algorithms, "clockSkewSeconds": 0,
                "claimsToHeaders": [{ "claim": "sub", "header": "x-user" }] } }]
        }))
    };
    let orders = step("orders", json!(["RS256"]));
    let keys = Remote(Some(KeySet::parse(&t.jwks).unwrap()));
    let state = ChainState::default();
    let request = bearer(&t.tokens[0]);
    let first = run_with(&orders, &request, &state, &keys, NOW);
    assert_eq!(first.status(), 200, "{:?}", first.trace);
    assert_eq!(state.tokens.len(), 1, "remembered once verified");
    let again = run_with(&orders, &request, &state, &keys, NOW + 1);
    assert_eq!(again.status(), 200);
    assert_eq!(again.request_headers, first.request_headers);
    assert_eq!(again.trace, first.trace);

    let reason = |out: Outcome| out.refusal.map(|r| r.reason).unwrap_or_default();
    // exp is NOW + 300 and the skew 0.
    assert_eq!(
        reason(run_with(&orders, &request, &state, &keys, NOW + 300)),
        "invalid token: expired"
    );
    assert_eq!(
        reason(run_with(
            &step("billing", json!(["RS256"])),
            &request,
            &state,
            &keys,
            NOW
        )),
        "invalid token: audience does not match"
    );
    assert_eq!(
        reason(run_with(
            &step("orders", json!(["ES256"])),
            &request,
            &state,
            &keys,
            NOW
        )),
        "invalid token: algorithm RS256 is not allowed"
    );
    // A refetched set without the key that signed it: the token no longer verifies.
    let ec_only: Value = serde_json::from_str(&t.jwks).unwrap();
    let ec_only = json!({ "keys": ec_only["keys"].as_array().unwrap().iter()
        .filter(|k| k["kid"] != "rsa-1").collect::<Vec<_>>() });
    let rotated = Remote(Some(KeySet::parse(&ec_only.to_string()).unwrap()));
    assert_eq!(
        reason(run_with(&orders, &request, &state, &rotated, NOW)),
        "invalid token: no key with kid rsa-1 for its algorithm"
    );
    assert_eq!(
        run_with(&orders, &request, &state, &keys, NOW).status(),
        200,
        "the set that verified it still does"
    );
}

#[test]
fn every_algorithm_the_api_allows_verifies_and_a_changed_byte_does_not() {
    let minted = mint(&json!({
        "keys": [
            { "kid": "rsa", "kty": "RSA" }, { "kid": "p256", "kty": "EC" },
            { "kid": "p384", "kty": "EC384" }, { "kid": "ed", "kty": "OKP" }
        ],
        "tokens": [
            { "key": "rsa", "alg": "RS256", "claims": claims(json!({})) },
            { "key": "rsa", "alg": "RS384", "claims": claims(json!({})) },
            { "key": "rsa", "alg": "RS512", "claims": claims(json!({})) },
            { "key": "rsa", "alg": "PS256", "claims": claims(json!({})) },
            { "key": "rsa", "alg": "PS384", "claims": claims(json!({})) },
            { "key": "rsa", "alg": "PS512", "claims": claims(json!({})) },
            { "key": "p256", "alg": "ES256", "claims": claims(json!({})) },
            { "key": "p384", "alg": "ES384", "claims": claims(json!({})) },
            { "key": "ed", "alg": "EdDSA", "claims": claims(json!({})) },
        ]
    }));
    let all = json!([
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"
    ]);
    let c = jwt_chain(&minted["jwks"].to_string(), json!({ "algorithms": all }));
    for (i, token) in minted["tokens"].as_array().unwrap().iter().enumerate() {
        let token = token.as_str().unwrap();
        let ok = run(&c, &bearer(token));
        assert_eq!(ok.status(), 200, "token {i}: {:?}", ok.trace);
        // One claim changed after signing: the signature no longer holds.
        let (header, rest) = token.split_once('.').unwrap();
        let (payload, signature) = rest.split_once('.').unwrap();
        let mut forged: Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
                .unwrap(),
        )
        .unwrap();
        forged["sub"] = json!("admin");
        let forged = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            forged.to_string(),
        );
        let bad = run(&c, &bearer(&format!("{header}.{forged}.{signature}")));
        assert_eq!(
            bad.refusal.unwrap().reason,
            "invalid token: signature does not verify",
            "token {i}"
        );
    }
    // Four parts, or a signature that is not base64url: malformed.
    let first = minted["tokens"][0].as_str().unwrap();
    for broken in [format!("{first}.x"), format!("{first}!")] {
        let reason = run(&c, &bearer(&broken)).refusal.unwrap().reason;
        assert!(reason.starts_with("invalid token: not a JWT"), "{reason}");
    }
}

#[test]
fn key_sets_with_private_parts_or_short_rsa_keys_are_refused() {
    let mut jwks: Value = serde_json::from_str(&tokens(json!([])).jwks).unwrap();
    jwks["keys"][0]["d"] = json!("c2VjcmV0");
    let error = KeySet::parse(&jwks.to_string()).unwrap_err().to_string();
    assert!(error.contains("private key"), "{error}");
    // A 1024-bit modulus (128 bytes of 0xff): below what is accepted.
    let short = json!({ "keys": [{ "kty": "RSA", "e": "AQAB",
        "n": base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, [0xffu8; 128]) }] });
    let error = KeySet::parse(&short.to_string()).unwrap_err().to_string();
    assert!(error.contains("1024 bits"), "{error}");
}

#[test]
fn key_sets_are_never_empty_or_symmetric() {
    assert!(KeySet::parse(r#"{"keys":[]}"#).is_err());
    assert!(KeySet::parse("not json").is_err());
    assert!(KeySet::parse(r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#).is_err());
    let t = tokens(json!([]));
    assert_eq!(KeySet::parse(&t.jwks).unwrap().len(), 2);
}

#[test]
fn any_of_takes_the_first_credential_that_passes_else_the_first_failure() {
    let t = tokens(json!([{ "key": "rsa-1", "alg": "RS256", "claims": claims(json!({})) }]));
    let c = chain(json!({
        "name": "shop/orders", "routes": ["orders-v1"], "mode": "Enforce", "failureMode": "Closed",
        "steps": [
            { "anyOf": [
                { "apiKey": { "header": "x-api-key", "keys": [{ "clientId": "alice", "sha256": digest("k") }] } },
                { "jwt": { "issuer": "https://issuer.example", "jwks": t.jwks, "algorithms": ["RS256"], "clockSkewSeconds": 0 } }
            ] },
            { "access": { "allow": { "clientIds": ["alice"] } } }
        ]
    }));
    let key = run(&c, &request("GET", "/", &[("x-api-key", "k")]));
    assert_eq!(key.status(), 200, "{:?}", key.trace);
    let token = run(&c, &bearer(&t.tokens[0]));
    let refusal = token.refusal.unwrap();
    assert_eq!(
        (refusal.status, refusal.step.unwrap().to_string()),
        (403, "1:access".to_owned()),
        "the token passed anyOf, but only alice may pass access"
    );
    let neither = run(&c, &request("GET", "/", &[])).refusal.unwrap();
    assert_eq!(
        (neither.status, neither.reason.as_str()),
        (401, "missing API key")
    );
}

#[test]
fn access_rules_match_methods_paths_sources_and_claims() {
    let c = chain(json!({
        "name": "shop/orders", "routes": ["orders-v1"], "mode": "Enforce", "failureMode": "Closed",
        "steps": [{ "access": {
            "allow": { "methods": ["GET", "POST"], "pathPrefixes": ["/orders"], "sourceCIDRs": ["10.0.0.0/8"] },
            "deny": { "pathPrefixes": ["/orders/admin"] }
        } }]
    }));
    let at = |method: &str, path: &str, source: &str| {
        let mut r = request(method, path, &[]);
        r.source = Some(source.parse().unwrap());
        run(&c, &r).status()
    };
    assert_eq!(at("GET", "/orders/1?x=/admin", "10.9.9.9"), 200);
    assert_eq!(at("DELETE", "/orders/1", "10.9.9.9"), 403);
    assert_eq!(at("GET", "/users", "10.9.9.9"), 403);
    assert_eq!(at("GET", "/orders", "192.168.1.1"), 403);
    assert_eq!(at("POST", "/orders/admin/x", "10.0.0.1"), 403, "deny wins");
    let mut unknown_source = request("GET", "/orders", &[]);
    unknown_source.source = None;
    assert_eq!(
        run(&c, &unknown_source).status(),
        403,
        "no source address matches no CIDR"
    );
}

#[test]
fn headers_steps_and_when_conditions() {
    let c = chain(json!({
        "name": "shop/orders", "routes": ["orders-v1"], "mode": "Enforce", "failureMode": "Closed",
        "steps": [
            { "headers": { "request": { "set": { "X-Chain": "orders" }, "remove": ["x-internal"] },
                           "response": { "set": { "x-served-by": "meshguard" }, "remove": ["server"] } } },
            { "when": { "methods": ["DELETE"] }, "access": { "deny": { "methods": ["DELETE"] } } },
            { "when": { "headers": { "x-debug": "1" } }, "headers": { "request": { "set": { "x-debug-seen": "yes" } } } }
        ]
    }));
    let out = run(&c, &request("GET", "/", &[("x-debug", "1")]));
    assert_eq!(out.status(), 200);
    assert_eq!(
        out.request_headers.set,
        BTreeMap::from([
            ("x-chain".into(), "orders".into()),
            ("x-debug-seen".into(), "yes".into())
        ])
    );
    assert!(out.request_headers.remove.contains("x-internal"));
    assert_eq!(out.response_headers.set["x-served-by"], "meshguard");
    assert!(out.response_headers.remove.contains("server"));
    assert_eq!(out.trace[1].result, "skipped: `when` does not match");
    assert_eq!(out.trace[2].result, "headers changed");
    let delete = run(&c, &request("DELETE", "/", &[]));
    assert_eq!(delete.status(), 403);
}

#[test]
fn rate_limits_are_per_key_and_answer_429_with_retry_after() {
    let c = chain(json!({
        "name": "shop/orders", "routes": ["orders-v1"], "mode": "Enforce", "failureMode": "Closed",
        "steps": [
            { "apiKey": { "header": "x-api-key", "keys": [
                { "clientId": "alice", "sha256": digest("a") }, { "clientId": "bob", "sha256": digest("b") }] } },
            { "rateLimit": { "requests": 2, "per": "Minute", "key": { "clientId": true } } }
        ]
    }));
    let state = ChainState::default();
    let status = |key: &str, now: u64| {
        run_with(
            &c,
            &request("GET", "/", &[("x-api-key", key)]),
            &state,
            &NoRemoteKeys,
            now,
        )
    };
    assert_eq!(status("a", NOW).status(), 200);
    assert_eq!(status("a", NOW).status(), 200);
    let limited = status("a", NOW).refusal.unwrap();
    assert_eq!(
        (limited.status, limited.headers["retry-after"].as_str()),
        (429, "30")
    );
    assert_eq!(
        status("b", NOW).status(),
        200,
        "bob has a bucket of his own"
    );
    assert_eq!(
        status("a", NOW + 30).status(),
        200,
        "one request per 30 s refills"
    );
}

#[test]
fn rate_limit_headers_tell_the_budget_when_asked() {
    let c = chain(json!({
        "name": "shop/orders", "routes": ["orders-v1"], "mode": "Enforce", "failureMode": "Closed",
        "steps": [{ "rateLimit": { "requests": 6, "per": "Minute", "burst": 3, "rateLimitHeaders": true } }]
    }));
    let state = ChainState::default();
    let at = |now: u64| run_with(&c, &request("GET", "/", &[]), &state, &NoRemoteKeys, now);
    // One request per 10 s, three at once: 2, 1, 0 left, full again after
    // 10, 20, 30 s.
    for (left, reset) in [("2", "10"), ("1", "20"), ("0", "30")] {
        let passed = at(NOW);
        assert_eq!(passed.status(), 200);
        let set = &passed.response_headers.set;
        assert_eq!(set["x-ratelimit-limit"], "3");
        assert_eq!(set["x-ratelimit-remaining"], left);
        assert_eq!(set["x-ratelimit-reset"], reset);
    }
    let limited = at(NOW + 5).refusal.unwrap();
    assert_eq!(limited.status, 429);
    assert_eq!(limited.headers["retry-after"], "5");
    assert_eq!(limited.headers["x-ratelimit-remaining"], "0");
    assert_eq!(limited.headers["x-ratelimit-reset"], "25");
    // Not asked: no such headers.
    let quiet = chain(json!({
        "name": "shop/orders", "routes": ["orders-v1"], "mode": "Enforce", "failureMode": "Closed",
        "steps": [{ "rateLimit": { "requests": 1, "per": "Minute" } }]
    }));
    let first = run(&quiet, &request("GET", "/", &[]));
    assert!(first.response_headers.set.is_empty());
}

#[test]
fn an_api_key_may_come_in_a_query_parameter_and_leaves_the_path() {
    let c = chain(json!({
        "name": "shop/orders", "routes": ["orders-v1"], "mode": "Enforce", "failureMode": "Closed",
        "steps": [{ "apiKey": { "header": "x-api-key", "queryParameter": "api_key", "keys": [
            { "clientId": "alice", "sha256": digest("alice key+1") }
        ] } }]
    }));
    let ok = run(
        &c,
        &request("GET", "/orders?page=2&api_key=alice%20key%2B1", &[]),
    );
    assert_eq!(ok.status(), 200, "{:?}", ok.trace);
    assert_eq!(ok.request_headers.set[":path"], "/orders?page=2");
    // The header wins when both are sent, and the path stays as it is.
    let both = run(
        &c,
        &request(
            "GET",
            "/orders?api_key=wrong",
            &[("x-api-key", "alice key+1")],
        ),
    );
    assert_eq!(both.status(), 200);
    assert!(!both.request_headers.set.contains_key(":path"));
    let wrong = run(&c, &request("GET", "/orders?api_key=nope", &[]));
    let refusal = wrong.refusal.unwrap();
    assert_eq!(
        (refusal.status, refusal.reason.as_str()),
        (401, "unknown API key")
    );
    assert_eq!(
        refusal.headers["www-authenticate"],
        "ApiKey realm=\"shop/orders\", header=\"x-api-key\", query=\"api_key\""
    );
    // Without queryParameter the query is never read.
    let header_only = run(
        &api_key_chain(),
        &request("GET", "/orders?x-api-key=bob-key", &[]),
    );
    assert_eq!(header_only.refusal.unwrap().reason, "missing API key");
}

#[test]
fn audit_mode_passes_everything_and_records_the_first_refusal() {
    let c = chain(json!({
        "name": "shop/orders", "routes": ["orders-v1"], "mode": "Audit", "failureMode": "Closed",
        "steps": [
            { "apiKey": { "header": "x-api-key", "keys": [{ "clientId": "alice", "sha256": digest("a") }] } },
            { "access": { "deny": { "methods": ["GET"] } } },
            { "headers": { "request": { "set": { "x-audited": "1" } } } }
        ]
    }));
    let out = run(&c, &request("GET", "/", &[]));
    assert_eq!(out.status(), 200);
    let audited = out.audited.unwrap();
    assert_eq!(
        (audited.status, audited.step.unwrap().to_string()),
        (401, "0:apiKey".to_owned())
    );
    assert_eq!(
        out.request_headers.set["x-audited"], "1",
        "later steps still run"
    );
}

#[test]
fn chains_are_selected_by_name_then_route() {
    let make = |name: &str, route: &str| {
        chain(
            json!({ "name": name, "routes": [route], "mode": "Enforce", "failureMode": "Closed", "steps": [] }),
        )
    };
    let chains = vec![make("a/one", "r1"), make("b/two", "r2")];
    assert_eq!(select(&chains, None, Some("r2")).unwrap().name, "b/two");
    assert_eq!(
        select(&chains, Some("a/one"), Some("r2")).unwrap().name,
        "a/one"
    );
    assert_eq!(
        select(&chains, Some("c/three"), Some("r1")).unwrap_err(),
        "no chain c/three on this node"
    );
    assert_eq!(
        select(&chains, None, Some("r9")).unwrap_err(),
        "no chain serves route \"r9\""
    );
    assert!(select(&chains, None, None).is_err());
}

#[test]
fn unusable_chains_are_refused_naming_the_step_and_field() {
    let bad = |step: Value| {
        let compiled: CompiledChain = serde_json::from_value(json!({
            "name": "shop/orders", "routes": ["r"], "mode": "Enforce", "failureMode": "Closed",
            "steps": [{ "headers": { "request": { "set": { "a": "b" } } } }, step]
        }))
        .unwrap();
        Chain::prepare(&compiled).unwrap_err().to_string()
    };
    assert_eq!(
        bad(json!({ "apiKey": { "header": "x", "keys": [{ "clientId": "a", "sha256": "XYZ" }] } })),
        "chain shop/orders: steps[1].apiKey: keys[0].sha256: not 64 lower-case hex digits"
    );
    assert!(bad(json!({ "jwt": { "issuer": "i", "jwks": "{\"keys\":[]}", "algorithms": ["RS256"], "clockSkewSeconds": 0 } }))
        .starts_with("chain shop/orders: steps[1].jwt.jwks: invalid JWKS"));
    assert!(
        bad(json!({ "access": { "allow": { "sourceCIDRs": ["10.0.0.0/33"] } } }))
            .contains("steps[1].access.allow")
    );
    assert!(bad(json!({})).contains("needs one kind"));
    assert!(bad(json!({ "rateLimit": { "requests": 0 } })).contains("steps[1].rateLimit"));
    // An empty allow would match every request (a field the API does not
    // have, such as `headers`, reads as nothing).
    assert_eq!(
        bad(json!({ "access": { "allow": { "headers": { "x": "y" } } } })),
        "chain shop/orders: steps[1].access.allow: needs at least one of methods, pathPrefixes, sourceCIDRs, clientIds or claims"
    );
    // A field given empty: an empty claims map in `allow` would match every
    // request, an empty list in `deny` none.
    assert_eq!(
        bad(json!({ "access": { "allow": { "claims": {} } } })),
        "chain shop/orders: steps[1].access.allow: claims: must not be empty"
    );
    assert_eq!(
        bad(json!({ "access": { "deny": { "pathPrefixes": [] } } })),
        "chain shop/orders: steps[1].access.deny: pathPrefixes: must not be empty"
    );
    assert!(
        bad(
            json!({ "when": { "headers": {} }, "headers": { "request": { "set": { "a": "b" } } } })
        )
        .ends_with("headers: must not be empty"),
    );
}
