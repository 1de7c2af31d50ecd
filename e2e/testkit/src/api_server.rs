//! A mocked Kubernetes API server for controller tests (tower-test, as in
//! kube-rs' controller-rs): the test receives each request the code under
//! test makes, asserts on it and answers it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a panic is a failure report

use std::{
    ffi::OsStr,
    net::SocketAddr,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use http::{Request, Response, StatusCode};
use kube::{Client, client::Body};
use serde_json::{Value, json};
use tower_test::mock::{self, Handle, SendResponse};

pub type ApiServer = Handle<Request<Body>, Response<Body>>;

/// A client whose every request arrives at the returned server.
pub fn mock_client() -> (Client, ApiServer) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), handle)
}

pub fn respond(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

/// A `Status` failure as the API server sends it (`reason` such as
/// `NotFound`, `Conflict`, `InternalError`).
pub fn failure(code: u16, reason: &str, message: &str) -> Value {
    json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code, "message": message })
}

pub fn not_found(what: &str) -> Value {
    failure(404, "NotFound", &format!("{what} not found"))
}

/// One request as the server saw it.
pub struct Seen {
    pub request: Request<()>,
    pub query: Vec<(String, String)>,
    pub body: Value,
    pub send: SendResponse<Response<Body>>,
}

impl Seen {
    pub fn method(&self) -> &str {
        self.request.method().as_str()
    }

    pub fn path(&self) -> &str {
        self.request.uri().path()
    }

    /// A query parameter, decoded enough for the values tests compare.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn content_type(&self) -> Option<&str> {
        self.request
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
    }

    pub fn answer(self, status: StatusCode, body: &Value) {
        self.send.send_response(respond(status, body));
    }

    /// Answers 200 with the request's own body, as an apply does.
    pub fn echo(self) {
        let body = self.body.clone();
        self.answer(StatusCode::OK, &body);
    }
}

/// The next request, within 30 s (generous: it only runs out when a test
/// fails anyway, and a loaded machine may stall a client for seconds).
pub async fn next(server: &mut ApiServer) -> Seen {
    next_within(server, Duration::from_secs(30)).await
}

/// The next request, within `limit` (in paused time, a client backing off
/// may wait longer than [`next`] does).
pub async fn next_within(server: &mut ApiServer, limit: Duration) -> Seen {
    let (request, send) = tokio::time::timeout(limit, server.next_request())
        .await
        .unwrap_or_else(|_| panic!("no request within {limit:?}"))
        .expect("the client went away");
    let (parts, body) = request.into_parts();
    let bytes = body.collect_bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    let query = parts.uri.query().map(url_pairs).unwrap_or_default();
    Seen {
        request: Request::from_parts(parts, ()),
        query,
        body,
        send,
    }
}

fn url_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k.to_owned(), v.replace("%3D", "=").replace("%2F", "/"))
        })
        .collect()
}

/// A kubeconfig whose one cluster is at `server` (`https://HOST:PORT` or
/// `http://…`), with a placeholder token: for running the real binaries
/// against an address a test controls.
pub fn kubeconfig(server: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\n\
         clusters: [{{name: test, cluster: {{server: \"{server}\"}}}}]\n\
         users: [{{name: test, user: {{token: none}}}}]\n\
         contexts: [{{name: test, context: {{cluster: test, user: test}}}}]\n\
         current-context: test\n"
    )
}

/// The real `meshguard-operator` (`binary`) set up against an API server
/// at `server`: its kubeconfig written into `dir`, no leader election,
/// `/metrics` on `metrics`, output discarded. Add flags, then spawn.
pub fn operator_command(
    binary: impl AsRef<OsStr>,
    dir: &Path,
    server: &str,
    metrics: SocketAddr,
) -> std::io::Result<Command> {
    let path = dir.join("kubeconfig");
    std::fs::write(&path, kubeconfig(server))?;
    let mut command = Command::new(binary);
    command
        .args(["--leader-elect=false", "--metrics-listen"])
        .arg(metrics.to_string())
        .env("KUBECONFIG", path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Ok(command)
}
