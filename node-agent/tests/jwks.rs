//! A `jwt` step with a JWKS `uri`, end to end short of Envoy: the agent's
//! fetch task against a real HTTPS server (`jwks_server.py`, its own CA,
//! trusted through `Fetcher`'s CA file as `--jwks-ca-file` does), tokens
//! minted by PyJWT, requests through a real gRPC client. Proves the
//! contract: a key rotation is picked up by the refetch an unknown `kid`
//! asks for, at most once per interval; an empty, unreadable or missing
//! answer never replaces the set held; a set never fetched is a 500; a
//! server that does not answer is given up on after the timeout.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

#[path = "support/ext_proc_client.rs"]
mod ext_proc_client;

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use ext_proc_client::{Client, exchange, headers, reason, serve_chains, status};
use meshguard_agent::l7::jwks::{Fetcher, RemoteJwks, Settings};
use meshguard_crds::node_policy::CompiledChain;
use meshguard_testkit::tokens::{mint, venv_tool};
use serde_json::{Value, json};

/// The HTTPS server; killed when dropped.
struct JwksServer {
    child: Child,
    port: u16,
    /// Paths requested so far, in order.
    requests: Arc<Mutex<Vec<String>>>,
}

impl JwksServer {
    fn start(dir: &Path, ca: &Path) -> JwksServer {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e/testkit/python/jwks_server.py");
        let mut child = Command::new(venv_tool("python"))
            .arg(script)
            .arg(dir)
            .arg(ca)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        let port = first["port"].as_u64().unwrap() as u16;
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let entry: Value = serde_json::from_str(&line).unwrap();
                log.lock()
                    .unwrap()
                    .push(entry["path"].as_str().unwrap().to_owned());
            }
        });
        JwksServer {
            child,
            port,
            requests,
        }
    }

    fn fetches(&self, path: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|p| *p == path)
            .count()
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chain(name: &str, uri: &str) -> CompiledChain {
    serde_json::from_value(json!({
        "name": name, "routes": [name], "mode": "Enforce", "failureMode": "Closed",
        "steps": [{ "jwt": {
            "issuer": "https://issuer.test", "audiences": ["orders"], "jwksUri": uri,
            "algorithms": ["RS256"], "clockSkewSeconds": 0
        } }]
    }))
    .unwrap()
}

async fn ask(client: &mut Client, chain: &str, token: &str) -> (u16, String) {
    let request = headers(vec![(
        "authorization".into(),
        format!("Bearer {token}").into_bytes(),
    )]);
    let answers = exchange(client, vec![request], chain).await.unwrap();
    (status(&answers[0]), reason(&answers[0]))
}

/// Asks until the answer is `want` (a fetch is running in the background).
async fn until(client: &mut Client, chain: &str, token: &str, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (got, why) = ask(client, chain, token).await;
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "still {got} ({why}), not {want}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Fetch results the task reported, by URI.
type Results = Mutex<Vec<(String, &'static str)>>;

/// Waits until the fetch task has reported `count` fetches of `uri`;
/// returns their results.
async fn fetched(results: &Results, uri: &str, count: usize) -> Vec<&'static str> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now: Vec<&'static str> = results
            .lock()
            .unwrap()
            .iter()
            .filter(|(u, _)| u == uri)
            .map(|(_, r)| *r)
            .collect();
        if now.len() >= count {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "only {now:?} of {count} fetches of {uri}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_key_sets_are_fetched_refetched_on_unknown_kids_and_never_replaced_by_bad_ones() {
    let dir = std::env::temp_dir().join(format!("meshguard-jwks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    let exp = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let claims = json!({ "iss": "https://issuer.test", "aud": "orders", "sub": "u", "exp": exp });
    let minted = mint(&json!({
        "keys": [
            { "kid": "old", "kty": "RSA" },
            { "kid": "new", "kty": "RSA", "publish": false },
            { "kid": "never", "kty": "RSA", "publish": false },
        ],
        "tokens": [
            { "key": "old", "alg": "RS256", "claims": claims },
            { "key": "new", "alg": "RS256", "claims": claims },
            { "key": "never", "alg": "RS256", "claims": claims },
        ]
    }));
    let token = |i: usize| minted["tokens"][i].as_str().unwrap().to_owned();
    let (old, new, never) = (token(0), token(1), token(2));
    let write = |text: &str| std::fs::write(dir.join("keys.json"), text).unwrap();
    write(&minted["jwks"].to_string());

    let server = JwksServer::start(&dir, &ca);
    let base = format!("https://127.0.0.1:{}", server.port);
    let refetch = Duration::from_secs(2);
    let jwks = RemoteJwks::new(Settings {
        refresh: Duration::from_secs(300),
        refetch,
    });
    let results: Arc<Results> = Arc::default();
    let fetcher = Fetcher::new(Some(&ca), Duration::from_secs(1)).unwrap();
    tokio::spawn(jwks.clone().run(fetcher, {
        let results = results.clone();
        move |f| {
            results.lock().unwrap().push((
                f.uri.to_owned(),
                f.result.map_or_else(|e| e.label(), |_| "ok"),
            ))
        }
    }));
    let chains = [
        chain("shop/orders", &format!("{base}/keys.json")),
        chain("shop/missing", &format!("{base}/missing.json")),
        chain("shop/hanging", &format!("{base}/hang")),
    ];
    let mut client = serve_chains(&chains, jwks.clone()).await;
    let uris: Vec<String> = chains
        .iter()
        .map(|c| c.steps[0].jwt.as_ref().unwrap().jwks_uri.clone().unwrap())
        .collect();
    jwks.want(uris.iter().map(String::as_str));

    // The first fetch: the published key verifies; a set that could not be
    // fetched (404) or did not come within the timeout is a 500, fail closed.
    until(&mut client, "shop/orders", &old, 200).await;
    let (code, why) = ask(&mut client, "shop/missing", &old).await;
    assert_eq!(code, 500, "{why}");
    assert!(why.contains("no key set"), "{why}");
    assert_eq!(fetched(&results, &uris[0], 1).await[0], "ok");
    assert_eq!(fetched(&results, &uris[1], 1).await[0], "http_error");
    // The server holds /hang for 60 s; the fetch gives up after 1 s.
    assert_eq!(fetched(&results, &uris[2], 1).await[0], "timeout");
    assert_eq!(ask(&mut client, "shop/hanging", &old).await.0, 500);

    // A rotation: the new key is published; its token is refused until the
    // refetch that an unknown kid asks for, then passes, and the old key
    // (still published) keeps passing.
    let mut rotated = minted["jwks"].clone();
    rotated["keys"]
        .as_array_mut()
        .unwrap()
        .push(minted["public"]["new"].clone());
    write(&rotated.to_string());
    let (code, why) = ask(&mut client, "shop/orders", &new).await;
    assert_eq!(code, 401, "{why}");
    assert!(why.contains("kid"), "{why}");
    until(&mut client, "shop/orders", &new, 200).await;
    assert_eq!(ask(&mut client, "shop/orders", &old).await.0, 200);

    // A flood of unknown kids: one refetch per interval, not one per request.
    tokio::time::sleep(refetch).await;
    let before = server.fetches("/keys.json");
    let flood = Instant::now();
    for _ in 0..50 {
        assert_eq!(ask(&mut client, "shop/orders", &never).await.0, 401);
    }
    let flood = flood.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refetches = server.fetches("/keys.json") - before;
    let allowed = 1 + (flood.as_secs_f64() / refetch.as_secs_f64()) as usize;
    assert!(
        (1..=allowed).contains(&refetches),
        "{refetches} refetches for 50 unknown kids in {flood:?} (at most {allowed})"
    );

    // Bad answers never replace the set held: an empty set, a document that
    // is not a JWKS, then no server at all. Each is fetched (an unknown kid
    // asks, after the interval) and reported, and both keys still verify.
    let mut count = fetched(&results, &uris[0], 1).await.len();
    for (bad, label) in [
        (r#"{"keys": []}"#, "invalid"),
        ("<html>oops</html>", "invalid"),
    ] {
        write(bad);
        tokio::time::sleep(refetch).await;
        assert_eq!(ask(&mut client, "shop/orders", &never).await.0, 401);
        count += 1;
        assert_eq!(fetched(&results, &uris[0], count).await[count - 1], label);
        assert_eq!(ask(&mut client, "shop/orders", &old).await.0, 200);
        assert_eq!(ask(&mut client, "shop/orders", &new).await.0, 200);
    }
    drop(server);
    tokio::time::sleep(refetch).await;
    assert_eq!(ask(&mut client, "shop/orders", &never).await.0, 401);
    count += 1;
    assert_eq!(
        fetched(&results, &uris[0], count).await[count - 1],
        "unreachable"
    );
    assert_eq!(ask(&mut client, "shop/orders", &new).await.0, 200);
    let (held, wanted) = (jwks.counts().1, jwks.counts().0);
    assert_eq!((wanted, held), (3, 1), "only keys.json ever gave a set");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_ca_file_without_certificates_is_refused_naming_it() {
    let path = std::env::temp_dir().join(format!("meshguard-empty-ca-{}.pem", std::process::id()));
    std::fs::write(&path, "not a certificate\n").unwrap();
    let error = Fetcher::new(Some(&path), Duration::from_secs(1))
        .err()
        .unwrap()
        .to_string();
    std::fs::remove_file(&path).unwrap();
    assert!(error.contains(&path.display().to_string()), "{error}");
    assert!(error.contains("no PEM certificate"), "{error}");
}
