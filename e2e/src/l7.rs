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
use serde_json::Value;

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

/// The Envoy bootstrap: the routes in order, ext_proc on each, failing
/// closed (the configuration docs/l7.md tells users to copy).
pub fn envoy_config(routes: &[Route<'_>]) -> String {
    let mut listed = String::new();
    for route in routes {
        listed.push_str(&format!(
            "              - name: {}\n                match: {{ prefix: {} }}\n                route: {{ cluster: upstream }}\n",
            route.name, route.prefix
        ));
        if let Some(chain) = route.chain {
            listed.push_str(&format!(
                r#"                typed_per_filter_config:
                  envoy.filters.http.ext_proc:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute
                    overrides:
                      grpc_initial_metadata: [{{ key: x-meshguard-chain, value: {chain} }}]
"#
            ));
        }
    }
    format!(
        r#"static_resources:
  listeners:
  - name: http
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {LISTEN} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: http
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
{listed}          http_filters:
          - name: envoy.filters.http.ext_proc
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor
              grpc_service: {{ envoy_grpc: {{ cluster_name: meshguard }}, timeout: 2s }}
              failure_mode_allow: false
              request_attributes: [xds.route_name, source.address]
              processing_mode: {{ request_header_mode: SEND, response_header_mode: SEND, request_body_mode: NONE, response_body_mode: NONE, request_trailer_mode: SKIP, response_trailer_mode: SKIP }}
          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
  clusters:
  - name: upstream
    type: STATIC
    load_assignment: {{ cluster_name: upstream, endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {UPSTREAM} }} }} }} }}] }}] }}
  - name: meshguard
    type: STATIC
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{ http2_protocol_options: {{}} }}
    load_assignment: {{ cluster_name: meshguard, endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {EXT_PROC} }} }} }} }}] }}] }}
"#
    )
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
    let config = mesh.dir.join("envoy.yaml");
    std::fs::write(&config, envoy_config(routes))?;
    let log = mesh.dir.join("envoy.log");
    mesh.spawn(
        node,
        &venv_tool("envoy").to_string_lossy(),
        &[
            "-c",
            &config.to_string_lossy(),
            "--disable-hot-restart",
            "-l",
            "warning",
            "--log-path",
            &log.to_string_lossy(),
        ],
    )?;
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
