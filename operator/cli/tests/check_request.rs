//! `meshguard check-request` through the binary: the contract's JSON shape
//! and exit codes, on a chain whose JWKS and tokens PyJWT minted.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use meshguard_testkit::tokens::mint;
use serde_json::{Value, json};

const NOW: u64 = 1_795_996_800;

fn meshguard(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_meshguard"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A folder with a MeshNode, a PolicyChain (API key, JWT from a ConfigMap,
/// rate limit, access, headers), its Secret and ConfigMap; returns it and a
/// valid token.
fn inputs(test: &str) -> (PathBuf, String) {
    let minted = mint(&json!({
        "keys": [{ "kid": "k1", "kty": "RSA" }],
        "tokens": [{ "key": "k1", "alg": "RS256", "claims": {
            "iss": "https://issuer.example", "aud": "orders", "sub": "carol", "exp": NOW + 600 } }]
    }));
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let jwks = serde_json::to_string(&minted["jwks"]).unwrap();
    std::fs::write(
        dir.join("chain.yaml"),
        format!(
            r#"apiVersion: meshguard.io/v1alpha1
kind: MeshNode
metadata: {{ name: web-1, labels: {{ role: web }} }}
spec: {{ publicKey: "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=", endpoint: "10.0.0.1:51820" }}
---
apiVersion: meshguard.io/v1alpha1
kind: MeshNode
metadata: {{ name: db-1, labels: {{ role: db }} }}
spec: {{ publicKey: "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=", endpoint: "10.0.0.2:51820" }}
---
apiVersion: v1
kind: Secret
metadata: {{ name: clients, namespace: shop }}
stringData: {{ app: key-of-app }}
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
  nodeSelector: {{ matchLabels: {{ role: web }} }}
  policies:
  - apiKey: {{ header: x-api-key, secretRef: {{ name: clients }} }}
  - jwt:
      issuer: https://issuer.example
      audiences: [orders]
      jwks: {{ configMapRef: {{ name: jwks, key: jwks.json }} }}
      algorithms: [RS256]
      claimsToHeaders: [{{ claim: sub, header: x-user }}]
  - rateLimit: {{ requests: 1, per: Minute, key: {{ claim: sub }} }}
  - access: {{ allow: {{ methods: [GET], pathPrefixes: [/orders] }} }}
  - headers: {{ request: {{ set: {{ x-chain: orders }} }}, response: {{ set: {{ x-frame-options: DENY }} }} }}
"#
        ),
    )
    .unwrap();
    (dir, minted["tokens"][0].as_str().unwrap().to_owned())
}

fn check(dir: &Path, extra: &[&str]) -> (i32, Value, String) {
    let time = NOW.to_string();
    let mut args = vec![
        "check-request",
        "-f",
        dir.to_str().unwrap(),
        "--time",
        &time,
        "-o",
        "json",
    ];
    args.extend_from_slice(extra);
    let (code, out, err) = meshguard(&args);
    let value = if out.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
    };
    (code, value, err)
}

#[test]
fn a_request_without_credentials_is_refused_by_the_first_step() {
    let (dir, _) = inputs("cr-none");
    let (code, answer, err) = check(&dir, &["--route", "orders-v1", "--path", "/orders/7"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(answer["status"], 401);
    assert_eq!(answer["chain"], "shop/orders");
    assert_eq!(answer["step"], "0:apiKey");
    assert_eq!(answer["reason"], "missing API key");
    assert_eq!(
        answer["responseHeaders"]["x-meshguard-reason"],
        "missing API key"
    );
    assert_eq!(
        answer["responseHeaders"]["www-authenticate"],
        "ApiKey realm=\"shop/orders\", header=\"x-api-key\""
    );
}

#[test]
fn a_request_with_a_key_and_a_token_passes_with_the_chains_headers() {
    let (dir, token) = inputs("cr-pass");
    let auth = format!("Authorization: Bearer {token}");
    let (code, answer, err) = check(
        &dir,
        &[
            "--route",
            "orders-v1",
            "--path",
            "/orders/7",
            "-H",
            "x-api-key: key-of-app",
            "-H",
            &auth,
            "--node",
            "web-1",
        ],
    );
    assert_eq!(code, 0, "{err} {answer}");
    assert_eq!(answer["status"], 200);
    assert_eq!(answer["step"], Value::Null);
    assert_eq!(
        answer["requestHeaders"],
        json!({"x-chain": "orders", "x-user": "carol"})
    );
    assert_eq!(
        answer["responseHeaders"],
        json!({"x-frame-options": "DENY"})
    );

    // The same token after it expired (exp + the default 60 s of skew).
    let later = (NOW + 600 + 61).to_string();
    let (code, out, _) = meshguard(&[
        "check-request",
        "-f",
        dir.to_str().unwrap(),
        "--route",
        "orders-v1",
        "--path",
        "/orders",
        "-H",
        "x-api-key: key-of-app",
        "-H",
        &auth,
        "--time",
        &later,
    ]);
    assert_eq!(code, 1);
    assert_eq!(
        out.lines().next().unwrap(),
        "401 refused by shop/orders step 1:jwt: invalid token: expired"
    );
    assert!(
        out.contains("  response header: x-meshguard-reason: invalid token: expired"),
        "{out}"
    );
    // A POST passes both credentials and stops at access.
    let (code, answer, _) = check(
        &dir,
        &[
            "--route",
            "orders-v1",
            "--method",
            "post",
            "--path",
            "/orders",
            "-H",
            "x-api-key: key-of-app",
            "-H",
            &auth,
        ],
    );
    assert_eq!(
        (code, answer["status"].clone(), answer["step"].clone()),
        (1, json!(403), json!("3:access"))
    );
}

#[test]
fn requests_no_chain_serves_follow_unmatched_route() {
    let (dir, _) = inputs("cr-unmatched");
    let (code, answer, _) = check(&dir, &["--route", "other", "--path", "/"]);
    assert_eq!(
        (code, answer["status"].clone(), answer["chain"].clone()),
        (1, json!(403), Value::Null)
    );
    assert_eq!(answer["reason"], "no chain serves route \"other\"");
    let (code, answer, _) = check(
        &dir,
        &[
            "--route",
            "other",
            "--path",
            "/",
            "--unmatched-route",
            "allow",
        ],
    );
    assert_eq!((code, answer["status"].clone()), (0, json!(200)));
    // db-1's agent does not run the chain (its nodeSelector picks web nodes).
    let (code, answer, _) = check(
        &dir,
        &[
            "--route",
            "orders-v1",
            "--path",
            "/orders",
            "--node",
            "db-1",
        ],
    );
    assert_eq!(
        (code, answer["status"].clone(), answer["chain"].clone()),
        (1, json!(403), Value::Null)
    );
    // --chain names the chain whatever the route.
    let (_, answer, _) = check(&dir, &["--chain", "shop/orders", "--path", "/orders"]);
    assert_eq!(answer["chain"], "shop/orders");
}

#[test]
fn bad_questions_are_bad_input() {
    let (dir, _) = inputs("cr-bad");
    for extra in [
        &["--route", "orders-v1", "--path", "/", "-H", "no colon"][..],
        &["--route", "orders-v1", "--path", "relative"],
        &["--route", "orders-v1", "--path", "/", "--node", "nobody"],
    ] {
        let (code, answer, err) = check(&dir, extra);
        assert_eq!(code, 2, "{extra:?}: {err}");
        assert_eq!(answer, Value::Null, "nothing on stdout for bad input");
        assert!(err.starts_with("error: "), "{err}");
    }
}

#[test]
fn the_example_chain_refuses_a_request_without_its_api_key() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let (code, answer, err) = check(
        &examples,
        &["--route", "orders-v1", "--path", "/orders", "--explain"],
    );
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        (answer["status"].clone(), answer["step"].clone()),
        (json!(401), json!("0:apiKey"))
    );
    assert_eq!(
        answer["explain"],
        json!(["0:apiKey: refused 401: missing API key"])
    );
}
