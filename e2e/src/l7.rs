//! What the L7 test and the demo share: a real Envoy with the ext_proc
//! filter in front of the echo upstream (`testkit/python/echo.py`),
//! requests sent through it (`send.py`), and `meshguard check-request`'s
//! prediction for each.
//!
//! ```text
//!  send.py ──HTTP──▶ Envoy :LISTEN ──ext_proc gRPC──▶ meshguard-agent :EXT_PROC
//!                      └──route──▶ echo.py :UPSTREAM (answers the headers it got)
//! ```

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use meshguard_testkit::tokens::venv_tool;

use crate::{mesh::Mesh, netns::Namespaces};

pub const EXT_PROC: u16 = 9901;
pub const LISTEN: u16 = 10000;
pub const UPSTREAM: u16 = 9080;

/// One Envoy route: its name (what chains' `routes` match), its path
/// prefix, and the chain its gRPC metadata names, if any.
pub struct Route<'a> {
    pub name: &'a str,
    pub prefix: &'a str,
    pub chain: Option<&'a str>,
}

/// The Envoy bootstrap: the routes in order to the echo upstream, ext_proc
/// on each, failing closed (the configuration docs/l7.md tells users to
/// copy). Written as JSON, which Envoy reads as YAML.
pub fn envoy_config(routes: &[Route<'_>]) -> String {
    let routes: Vec<Value> = routes
        .iter()
        .map(|r| {
            let mut route = json!({
                "name": r.name, "match": { "prefix": r.prefix },
                "route": { "cluster": "upstream" }
            });
            if let Some(chain) = r.chain {
                route["typed_per_filter_config"] = chain_metadata(chain);
            }
            route
        })
        .collect();
    json!({ "static_resources": {
        "listeners": [listener("http", LISTEN, routes, vec![ext_proc_filter(), router_filter()])],
        "clusters": [cluster("upstream", UPSTREAM, false), cluster("meshguard", EXT_PROC, true)]
    } })
    .to_string()
}

/// The ext_proc filter as docs/l7.md configures it: the route name and the
/// client address sent along, request and response headers processed
/// (response headers skipped when the chain changes none), bodies and
/// trailers not, failing closed.
pub fn ext_proc_filter() -> Value {
    json!({
        "name": "envoy.filters.http.ext_proc",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor",
            "grpc_service": { "envoy_grpc": { "cluster_name": "meshguard" }, "timeout": "2s" },
            "failure_mode_allow": false,
            "allow_mode_override": true,
            "request_attributes": ["xds.route_name", "source.address"],
            "processing_mode": {
                "request_header_mode": "SEND", "response_header_mode": "SEND",
                "request_body_mode": "NONE", "response_body_mode": "NONE",
                "request_trailer_mode": "SKIP", "response_trailer_mode": "SKIP"
            }
        }
    })
}

/// A route's `typed_per_filter_config` naming its chain in the ext_proc
/// stream's initial metadata.
pub fn chain_metadata(chain: &str) -> Value {
    json!({ "envoy.filters.http.ext_proc": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute",
        "overrides": { "grpc_initial_metadata": [{ "key": "x-meshguard-chain", "value": chain }] }
    } })
}

pub fn router_filter() -> Value {
    json!({
        "name": "envoy.filters.http.router",
        "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" }
    })
}

/// A plain-HTTP listener on 127.0.0.1 with one virtual host.
pub fn listener(name: &str, port: u16, routes: Vec<Value>, filters: Vec<Value>) -> Value {
    json!({
        "name": name,
        "address": { "socket_address": { "address": "127.0.0.1", "port_value": port } },
        "filter_chains": [{ "filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": name,
                "route_config": { "virtual_hosts": [{ "name": "all", "domains": ["*"], "routes": routes }] },
                "http_filters": filters
            }
        }] }]
    })
}

/// A cluster of one endpoint on 127.0.0.1; `http2` for gRPC.
pub fn cluster(name: &str, port: u16, http2: bool) -> Value {
    let mut cluster = json!({
        "name": name,
        "type": "STATIC",
        "load_assignment": { "cluster_name": name, "endpoints": [{ "lb_endpoints": [{ "endpoint": {
            "address": { "socket_address": { "address": "127.0.0.1", "port_value": port } } } }] }] }
    });
    if http2 {
        cluster["typed_extension_protocol_options"] = json!({
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": { "http2_protocol_options": {} }
            }
        });
    }
    cluster
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testkit/python")
        .join(name)
}

/// Starts the echo upstream and Envoy on `node` (both end with the mesh)
/// and waits until one request to the last route is answered by the agent
/// (exactly one reaches it).
/// Returns the node's namespaces, where requests to Envoy are sent from.
pub fn start_envoy(
    mesh: &mut Mesh,
    node: &str,
    routes: &[Route<'_>],
) -> anyhow::Result<Namespaces> {
    let python = venv_tool("python");
    let echo = script("echo.py");
    mesh.spawn(
        node,
        &python.to_string_lossy(),
        &[&echo.to_string_lossy(), &UPSTREAM.to_string()],
    )?;
    let (_, log) = spawn_envoy(mesh, node, &envoy_config(routes), &[])?;
    let ns = mesh
        .nodes
        .iter()
        .find(|n| n.name == node)
        .context("no such node")?
        .ns
        .clone();
    let probe = serde_json::json!([{ "path": routes.last().map_or("/", |r| r.prefix) }]);
    let started = Instant::now();
    loop {
        let answer = send_in(&ns, probe.as_array().map_or(&[][..], Vec::as_slice))?;
        // An answer of the agent's (a pass, or a refusal with its reason),
        // not Envoy's own 500 while it has no ext_proc connection yet.
        if answer
            .first()
            .is_some_and(|a| a["status"] == 200 || a["headers"].get("x-meshguard-reason").is_some())
        {
            return Ok(ns);
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!(
                "Envoy did not come up: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Starts Envoy with `config` on `node` (it ends with the mesh); its pid
/// and the file it logs warnings to.
pub fn spawn_envoy(
    mesh: &mut Mesh,
    node: &str,
    config: &str,
    extra: &[&str],
) -> anyhow::Result<(u32, PathBuf)> {
    let file = mesh.dir.join("envoy.yaml");
    std::fs::write(&file, config)?;
    let log = mesh.dir.join("envoy.log");
    let mut args = vec![
        "-c".to_owned(),
        file.display().to_string(),
        "--disable-hot-restart".to_owned(),
        "-l".to_owned(),
        "warning".to_owned(),
        "--log-path".to_owned(),
        log.display().to_string(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let pid = mesh.spawn(node, &venv_tool("envoy").to_string_lossy(), &args)?;
    Ok((pid, log))
}

/// Sends the requests (`{"method", "path", "headers"}`) through Envoy from
/// inside the node's namespaces; one answer `{"status", "headers", "body"}`
/// each (status 0: no connection).
pub fn send_in(ns: &Namespaces, requests: &[Value]) -> anyhow::Result<Vec<Value>> {
    let out = ns.check(
        &venv_tool("python").to_string_lossy(),
        &[
            &script("send.py").to_string_lossy(),
            &format!("http://127.0.0.1:{LISTEN}"),
            &Value::from(requests.to_vec()).to_string(),
        ],
    )?;
    out.lines()
        .map(|l| serde_json::from_str(l).context("send.py printed something else"))
        .collect()
}

/// What `meshguard check-request` predicts for the request on `node`, as
/// its JSON (`status`, `chain`, `step`, `reason`, headers).
pub fn predict(
    mesh: &Mesh,
    node: &str,
    route: Option<&str>,
    chain: Option<&str>,
    request: &Value,
) -> anyhow::Result<Value> {
    let mut command = Command::new(mesh.meshguard_bin());
    command
        .arg("check-request")
        .arg("-f")
        .arg(mesh.dir.join("in"))
        .args(["--node", node, "-o", "json"])
        .args(["--method", request["method"].as_str().unwrap_or("GET")])
        .args(["--path", request["path"].as_str().unwrap_or("/")]);
    if let Some(route) = route {
        command.args(["--route", route]);
    }
    if let Some(chain) = chain {
        command.args(["--chain", chain]);
    }
    for (k, v) in request["headers"].as_object().into_iter().flatten() {
        command.args(["-H", &format!("{k}: {}", v.as_str().unwrap_or_default())]);
    }
    let out = command.output()?;
    serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "check-request: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })
}
