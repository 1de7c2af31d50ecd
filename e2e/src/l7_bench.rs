//! The L7 benchmark's set-up: its PolicyChains and an Envoy with one
//! listener per way of doing the work, so that every variant is measured
//! by the same Envoy process in the same run.
//!
//! ```text
//!  :10001 direct     router only: direct_response 200 (the baseline)
//!  :10002 meshguard  ext_proc as docs/l7.md configures it, then direct_response:
//!                      route `empty`  (/empty)   → chain bench/empty (one headers step:
//!                                                  a chain needs a step; the least work)
//!                      route `orders` (/orders)  → chain bench/orders (apiKey + jwt + rateLimit)
//!                      routes `mem-N` (/mem-N/)  → chains bench/mem-N (the memory run)
//!  :10003 envoy      Envoy's own filters for the same work, as Envoy Gateway's
//!                    SecurityPolicy generates them: api_key_auth, jwt_authn
//!                    (local JWKS), local_ratelimit, then direct_response
//! ```

use serde_json::{Value, json};

use crate::l7::{EXT_PROC, cluster, ext_proc_filter, listener, router_filter};

pub const DIRECT: u16 = 10001;
pub const MESHGUARD: u16 = 10002;
pub const ENVOY: u16 = 10003;

pub const ISSUER: &str = "https://issuer.example";
pub const AUDIENCE: &str = "orders";

/// One way of answering a request, as measured.
pub struct Variant {
    pub name: &'static str,
    pub port: u16,
    pub path: &'static str,
}

pub const VARIANTS: [Variant; 4] = [
    Variant {
        name: "Envoy direct_response (baseline)",
        port: DIRECT,
        path: "/",
    },
    Variant {
        name: "ext_proc, one headers step",
        port: MESHGUARD,
        path: "/empty",
    },
    Variant {
        name: "ext_proc, apiKey + jwt + rateLimit",
        port: MESHGUARD,
        path: "/orders",
    },
    Variant {
        name: "Envoy's api_key_auth + jwt_authn + local_ratelimit",
        port: ENVOY,
        path: "/orders",
    },
];

/// API keys of the bench's 100 clients: `key-<i>` for `client-<i>`.
pub fn api_keys() -> Vec<(String, String)> {
    (0..100)
        .map(|i| (format!("client-{i}"), format!("key-{i}")))
        .collect()
}

/// The chains: `bench/empty` (one step setting a header: the API wants at
/// least one), `bench/orders` and `mem_chains` copies of
/// the three-step chain (`bench/mem-N`, keyed by the `x-client` header,
/// one request per hour each, so every key stays held).
pub fn inputs(jwks: &str, mem_chains: usize) -> String {
    let clients: String = api_keys()
        .iter()
        .map(|(client, key)| format!("  {client}: {key}\n"))
        .collect();
    let three_steps = |name: &str, routes: &str, rate: &str| {
        format!(
            r#"---
apiVersion: meshguard.io/v1alpha1
kind: PolicyChain
metadata: {{ name: {name}, namespace: bench }}
spec:
  routes: [{routes}]
  policies:
  - apiKey: {{ header: x-api-key, secretRef: {{ name: clients }} }}
  - jwt:
      issuer: {ISSUER}
      audiences: [{AUDIENCE}]
      jwks: {{ configMapRef: {{ name: jwks, key: jwks.json }} }}
      algorithms: [RS256]
      claimsToHeaders: [{{ claim: sub, header: x-user }}]
  - rateLimit: {rate}
"#
        )
    };
    let mut out = format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{ name: clients, namespace: bench }}
stringData:
{clients}---
apiVersion: v1
kind: ConfigMap
metadata: {{ name: jwks, namespace: bench }}
data:
  jwks.json: '{jwks}'
---
apiVersion: meshguard.io/v1alpha1
kind: PolicyChain
metadata: {{ name: empty, namespace: bench }}
spec:
  routes: [empty]
  policies:
  - headers: {{ request: {{ set: {{ x-chain: empty }} }} }}
"#
    );
    // Generous enough never to refuse: the cost of a take, not of a 429.
    out.push_str(&three_steps(
        "orders",
        "orders",
        "{ requests: 1000000000, per: Second, key: { clientId: true } }",
    ));
    for i in 0..mem_chains {
        out.push_str(&three_steps(
            &format!("mem-{i}"),
            &format!("mem-{i}"),
            "{ requests: 1, per: Hour, key: { header: x-client } }",
        ));
    }
    out
}

fn direct(name: &str, prefix: &str) -> Value {
    json!({
        "name": name, "match": { "prefix": prefix },
        "direct_response": { "status": 200, "body": { "inline_string": "ok" } }
    })
}

/// The Envoy bootstrap of the three listeners.
pub fn envoy_config(jwks: &str, mem_chains: usize) -> String {
    let mut meshguard_routes = vec![direct("empty", "/empty"), direct("orders", "/orders")];
    for i in 0..mem_chains {
        meshguard_routes.push(direct(&format!("mem-{i}"), &format!("/mem-{i}/")));
    }
    let credentials: Vec<Value> = api_keys()
        .iter()
        .map(|(client, key)| json!({ "key": key, "client": client }))
        .collect();
    let envoy_filters = vec![
        json!({
            "name": "envoy.filters.http.api_key_auth",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.api_key_auth.v3.ApiKeyAuth",
                "credentials": credentials,
                "key_sources": [{ "header": "x-api-key" }]
            }
        }),
        json!({
            "name": "envoy.filters.http.jwt_authn",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
                "providers": { "bench": {
                    "issuer": ISSUER,
                    "audiences": [AUDIENCE],
                    "local_jwks": { "inline_string": jwks },
                    "clock_skew_seconds": 60,
                    "claim_to_headers": [{ "header_name": "x-user", "claim_name": "sub" }],
                    // As meshguard remembers verified tokens (1,024 per chain).
                    "jwt_cache_config": { "jwt_cache_size": 1024 }
                } },
                "rules": [{ "match": { "prefix": "/" }, "requires": { "provider_name": "bench" } }]
            }
        }),
        json!({
            "name": "envoy.filters.http.local_ratelimit",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
                "stat_prefix": "bench",
                "token_bucket": { "max_tokens": 1_000_000_000u64, "tokens_per_fill": 1_000_000_000u64, "fill_interval": "1s" },
                "filter_enabled": { "runtime_key": "rl_enabled", "default_value": { "numerator": 100, "denominator": "HUNDRED" } },
                "filter_enforced": { "runtime_key": "rl_enforced", "default_value": { "numerator": 100, "denominator": "HUNDRED" } }
            }
        }),
        router_filter(),
    ];
    json!({ "static_resources": {
        "listeners": [
            listener("direct", DIRECT, vec![direct("direct", "/")], vec![router_filter()]),
            listener("meshguard", MESHGUARD, meshguard_routes, vec![ext_proc_filter(), router_filter()]),
            listener("envoy", ENVOY, vec![direct("envoy", "/")], envoy_filters),
        ],
        "clusters": [cluster("meshguard", EXT_PROC, true)]
    } })
    .to_string()
}
