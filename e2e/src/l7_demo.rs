//! The demo's L7 section: one PolicyChain of `examples/` through a real
//! Envoy on the node that serves it, each request's status measured next to
//! what `meshguard check-request` predicts.
//!
//! The chain's JWKS in `examples/` belongs to an issuer whose private key is
//! not in the repository, so [`prepare`] mints a key pair with PyJWT and
//! puts its public half in the chain's ConfigMap before the demo compiles;
//! [`run`] signs the tokens with it.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use meshguard_testkit::tokens::mint;
use serde_json::{Value, json};

use crate::{
    l7::{self, Route},
    mesh::Mesh,
};

/// What the section needs from the inputs: the chain, a client's API key,
/// the issuer and audience tokens must carry, and tokens signed by the key
/// minted for it.
pub struct Prepared {
    /// `<namespace>/<name>`.
    pub chain: String,
    pub route: String,
    api_key: String,
    /// Valid tokens for the users "alice" and "bob", and an expired one.
    tokens: [String; 3],
    /// The first rate limit without `when`: (burst, seconds per request).
    limit: Option<(u64, f64)>,
}

fn at<'a>(doc: &'a Value, pointer: &str) -> anyhow::Result<&'a Value> {
    doc.pointer(pointer)
        .with_context(|| format!("{}: no {pointer}", name_of(doc)))
}

fn name_of(doc: &Value) -> String {
    format!(
        "{} {}/{}",
        doc["kind"].as_str().unwrap_or("?"),
        doc["metadata"]["namespace"].as_str().unwrap_or(""),
        doc["metadata"]["name"].as_str().unwrap_or("?")
    )
}

/// Finds the chain `namespace/name` in `docs`, gives its `jwt` step's
/// ConfigMap a freshly minted JWKS, and mints the tokens.
pub fn prepare(docs: &mut [Value], chain: &str) -> anyhow::Result<Prepared> {
    let (namespace, name) = chain
        .split_once('/')
        .with_context(|| format!("--chain {chain}: not <namespace>/<name>"))?;
    let is = |d: &Value, kind: &str, n: &str| {
        d["kind"] == kind && d["metadata"]["namespace"] == namespace && d["metadata"]["name"] == n
    };
    let doc = docs
        .iter()
        .find(|d| is(d, "PolicyChain", name))
        .with_context(|| format!("no PolicyChain {chain} in the examples"))?
        .clone();
    let route = at(&doc, "/spec/routes/0")?
        .as_str()
        .context("routes[0] is not a string")?
        .to_owned();
    let steps = at(&doc, "/spec/policies")?
        .as_array()
        .context("policies is not a list")?;
    let step = |kind: &str| {
        steps
            .iter()
            .find(|s| s.get(kind).is_some() && s.get("when").is_none())
            .map(|s| &s[kind])
            .with_context(|| format!("{chain}: no {kind} step without `when`"))
    };
    let jwt = step("jwt")?;
    let secret = at(step("apiKey")?, "/secretRef/name")?
        .as_str()
        .context("secretRef.name")?;
    let map = at(jwt, "/jwks/configMapRef/name")?
        .as_str()
        .context("configMapRef.name")?;
    let key = at(jwt, "/jwks/configMapRef/key")?
        .as_str()
        .context("configMapRef.key")?;
    let issuer = at(jwt, "/issuer")?.as_str().context("issuer")?;
    let audience = jwt["audiences"][0].as_str();
    let limit = step("rateLimit").ok().and_then(|r| {
        let requests = r["requests"].as_u64()?;
        let per = match r["per"].as_str().unwrap_or("Second") {
            "Minute" => 60.0,
            "Hour" => 3600.0,
            _ => 1.0,
        };
        Some((
            r["burst"].as_u64().unwrap_or(requests),
            per / requests as f64,
        ))
    });

    let api_key = docs
        .iter()
        .find(|d| is(d, "Secret", secret))
        .and_then(|s| s["stringData"].as_object())
        .and_then(|data| data.values().next())
        .and_then(Value::as_str)
        .with_context(|| format!("Secret {namespace}/{secret}: no stringData entry"))?
        .to_owned();

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let claims = |sub: &str, exp: u64| {
        let mut c = json!({ "iss": issuer, "sub": sub, "exp": exp });
        if let Some(aud) = audience {
            c["aud"] = json!(aud);
        }
        c
    };
    let minted = mint(&json!({
        "keys": [{ "kid": "meshguard-demo", "kty": "RSA" }],
        "tokens": [
            { "key": "meshguard-demo", "alg": "RS256", "claims": claims("alice", now + 3600) },
            { "key": "meshguard-demo", "alg": "RS256", "claims": claims("bob", now + 3600) },
            { "key": "meshguard-demo", "alg": "RS256", "claims": claims("alice", now - 3600) },
        ]
    }));
    let token = |i: usize| minted["tokens"][i].as_str().unwrap_or_default().to_owned();
    let config_map = docs
        .iter_mut()
        .find(|d| is(d, "ConfigMap", map))
        .with_context(|| format!("no ConfigMap {namespace}/{map} for {chain}'s JWKS"))?;
    config_map["data"][key] = json!(minted["jwks"].to_string());
    Ok(Prepared {
        chain: chain.to_owned(),
        route,
        api_key,
        tokens: [token(0), token(1), token(2)],
        limit,
    })
}

/// The node whose NodePolicy carries the chain.
pub fn serving_node(mesh: &Mesh, chain: &str) -> anyhow::Result<String> {
    for node in &mesh.nodes {
        if mesh
            .policy(&node.name)?
            .spec
            .chains
            .iter()
            .any(|c| c.name == chain)
        {
            return Ok(node.name.clone());
        }
    }
    bail!("no node serves {chain}: its nodeSelector matches no member")
}

/// Runs the requests and prints them; returns the disagreements.
pub fn run(mesh: &mut Mesh, prepared: &Prepared) -> anyhow::Result<usize> {
    let node = serving_node(mesh, &prepared.chain)?;
    let routes = [
        Route {
            name: &prepared.route,
            prefix: "/orders",
            chain: None,
        },
        Route {
            name: "unmatched",
            prefix: "/",
            chain: None,
        },
    ];
    let started = Instant::now();
    let ns = l7::start_envoy(mesh, &node, &routes)?;
    println!(
        "  Envoy on {node} (up in {:.1} s): route {} → ext_proc → chain {}, an echo upstream behind",
        started.elapsed().as_secs_f64(),
        prepared.route,
        prepared.chain
    );
    let key = prepared.api_key.as_str();
    let bearer = |i: usize| format!("Bearer {}", prepared.tokens[i]);
    let cases = [
        ("no credentials", json!({ "path": "/orders/1" })),
        (
            "an unknown API key",
            json!({ "path": "/orders/1", "headers": { "x-api-key": "not-a-key" } }),
        ),
        (
            "API key, expired token",
            json!({ "path": "/orders/1", "headers": { "x-api-key": key, "authorization": bearer(2) } }),
        ),
        (
            "API key and token",
            json!({ "path": "/orders/1", "headers": { "x-api-key": key, "authorization": bearer(0) } }),
        ),
        (
            "the same, DELETE",
            json!({ "method": "DELETE", "path": "/orders/1", "headers": { "x-api-key": key, "authorization": bearer(0) } }),
        ),
    ];
    println!(
        "  {:<24} {:>6} {:>14}  why (x-meshguard-reason)",
        "request", "Envoy", "check-request"
    );
    let mut disagreements = 0;
    for (what, request) in &cases {
        let measured = l7::send_in(&ns, std::slice::from_ref(request))?;
        let measured = measured.first().context("send.py answered nothing")?;
        let predicted = l7::predict(mesh, &node, Some(&prepared.route), None, request)?;
        let agree = measured["status"] == predicted["status"];
        disagreements += usize::from(!agree);
        let why = measured["headers"]["x-meshguard-reason"]
            .as_str()
            .unwrap_or("passed upstream");
        println!(
            "  {what:<24} {:>6} {:>14}  {}{why}",
            measured["status"].to_string(),
            predicted["status"].to_string(),
            if agree { "" } else { "DISAGREE: " }
        );
    }

    // A burst as one user: the bucket's burst passes at once, the rest 429.
    let burst_request =
        json!({ "path": "/orders/2", "headers": { "x-api-key": key, "authorization": bearer(1) } });
    let predicted = l7::predict(mesh, &node, Some(&prepared.route), None, &burst_request)?;
    let count = prepared.limit.map_or(15, |(burst, _)| burst as usize + 5);
    let sent = Instant::now();
    let answers = l7::send_in(&ns, &vec![burst_request.clone(); count])?;
    let elapsed = sent.elapsed().as_secs_f64();
    let passed = answers.iter().filter(|a| a["status"] == 200).count();
    let limited = answers.iter().filter(|a| a["status"] == 429).count();
    let first_agrees = answers.first().map(|a| &a["status"]) == Some(&predicted["status"]);
    // GCRA: the burst at once, one more per emission interval elapsed.
    let (low, high) = prepared.limit.map_or((0, count), |(burst, every)| {
        let burst = burst as usize;
        (
            burst.min(count),
            (burst + (elapsed / every) as usize + 1).min(count),
        )
    });
    let agree = first_agrees && (low..=high).contains(&passed) && passed + limited == count;
    disagreements += usize::from(!agree);
    println!(
        "  {:<24} {passed}×200, {limited}×429 in {:.0} ms; check-request: first {}, the rate limit lets {low}–{high} pass{}",
        format!("{count} at once as bob"),
        elapsed * 1000.0,
        predicted["status"],
        if agree { "" } else { "  DISAGREE" }
    );
    if let Some(refused) = answers.iter().find(|a| a["status"] == 429) {
        let h = &refused["headers"];
        println!(
            "    429 says Retry-After {} s, X-RateLimit-Remaining {}, X-RateLimit-Reset {} s",
            h["retry-after"].as_str().unwrap_or("-"),
            h["x-ratelimit-remaining"].as_str().unwrap_or("-"),
            h["x-ratelimit-reset"].as_str().unwrap_or("-"),
        );
    }
    let metrics = mesh.metrics(&node);
    let refused: u64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("meshguard_agent_l7_requests_total{") && l.contains("outcome=\"refused\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    println!("  the agent counted {refused} refusals (meshguard_agent_l7_requests_total)");
    // Give Envoy's and the echo's output a moment to flush before the mesh goes.
    std::thread::sleep(Duration::from_millis(50));
    Ok(disagreements)
}
