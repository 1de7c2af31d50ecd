//! Inputs the fuzzers start from: the token seeds as committed
//! (`seeds/token/`, minted once by PyJWT with keys since thrown away);
//! ext_proc messages built here, shaped as Envoy 1.40 sends them, so the
//! fuzzer starts from messages that reach every step rather than from bytes
//! that do not decode; `examples/` as files, as objects and compiled into a
//! state file; WireGuard `get` replies.

use std::{collections::HashMap, path::Path};

use envoy_types::pb::{
    envoy::{
        config::core::v3::{HeaderMap, HeaderValue},
        service::ext_proc::v3::{
            HttpHeaders, ProcessingRequest, processing_request::Request as Phase,
        },
    },
    google::protobuf::{Struct, Value, value::Kind},
};
use prost::Message;

/// The committed token seeds, by file name.
pub fn tokens() -> std::io::Result<Vec<(String, Vec<u8>)>> {
    files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds/token"))
}

/// A target's committed corpus (`corpus/<target>/`, what the last long run
/// kept, minimized), by file name.
pub fn corpus(target: &str) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    files(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("corpus")
            .join(target),
    )
}

fn files(dir: &Path) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.push((name, std::fs::read(&path)?));
    }
    out.sort();
    Ok(out)
}

/// One request-headers message: pseudo-headers and headers (raw bytes, as
/// Envoy sends them) and the attributes the docs' Envoy configuration asks
/// for.
pub fn message(headers: &[(&str, &[u8])], route: Option<&str>, source: Option<&str>) -> Vec<u8> {
    let mut fields = HashMap::new();
    for (name, value) in [("xds.route_name", route), ("source.address", source)] {
        if let Some(value) = value {
            fields.insert(
                name.to_owned(),
                Value {
                    kind: Some(Kind::StringValue(value.to_owned())),
                },
            );
        }
    }
    ProcessingRequest {
        request: Some(Phase::RequestHeaders(HttpHeaders {
            headers: Some(HeaderMap {
                headers: headers
                    .iter()
                    .map(|(key, value)| HeaderValue {
                        key: (*key).to_owned(),
                        raw_value: value.to_vec(),
                        ..Default::default()
                    })
                    .collect(),
            }),
            end_of_stream: true,
            ..Default::default()
        })),
        attributes: HashMap::from([("envoy.filters.http.ext_proc".to_owned(), Struct { fields })]),
        ..Default::default()
    }
    .encode_to_vec()
}

/// ext_proc messages: each route and step, each token seed, bad bytes.
pub fn ext_proc() -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let get = |path: &'static str| -> Vec<(&'static str, &'static [u8])> {
        vec![
            (":method", b"GET"),
            (":path", path.as_bytes()),
            (":authority", b"shop"),
        ]
    };
    let mut out = vec![
        (
            "open-public".to_owned(),
            message(
                &[
                    get("/orders?page=2"),
                    vec![("x-client", b"c1"), ("x-user", b"spoof")],
                ]
                .concat(),
                Some("open"),
                Some("10.1.2.3:50000"),
            ),
        ),
        (
            "open-private-query-key".to_owned(),
            message(
                &get("/private/x?api_key=guess&b=1"),
                Some("open"),
                Some("[fd00::1]:443"),
            ),
        ),
        (
            "open-denied".to_owned(),
            message(
                &[
                    vec![(":method", &b"POST"[..]), (":path", b"/admin/a")],
                    vec![("x-client", b"c2")],
                ]
                .concat(),
                Some("open"),
                Some("192.168.1.1"),
            ),
        ),
        (
            "not-utf8".to_owned(),
            message(
                &[get("/"), vec![("x-bad", b"\xff\xfe")]].concat(),
                Some("open"),
                None,
            ),
        ),
        (
            "unmatched".to_owned(),
            message(&get("/"), Some("nowhere"), None),
        ),
        ("no-route".to_owned(), message(&get("/"), None, None)),
    ];
    for (name, token) in tokens()? {
        let bearer = [&b"Bearer "[..], &token].concat();
        out.push((
            format!("guarded-{name}"),
            message(
                &[get("/orders"), vec![("authorization", &bearer[..])]].concat(),
                Some("guarded"),
                Some("10.0.0.1:1"),
            ),
        ));
    }
    Ok(out)
}

fn examples() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// The `manifests` seeds: every file of `examples/`, and the same objects
/// as one JSON `kind: List`.
pub fn manifests() -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut out: Vec<(String, Vec<u8>)> = files(&examples())
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|(name, _)| name.ends_with(".yaml"))
        .collect();
    let items: Vec<serde_json::Value> = example_documents()?;
    let list = serde_json::json!({ "apiVersion": "v1", "kind": "List", "items": items });
    out.push((
        "examples-list.json".to_owned(),
        list.to_string().into_bytes(),
    ));
    Ok(out)
}

fn example_documents() -> Result<Vec<serde_json::Value>, String> {
    let documents = meshguard_cli::documents(&[examples()]).map_err(|errors| {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    Ok(documents.into_iter().map(|(_, doc)| doc).collect())
}

/// The `validation` seeds: each document of `examples/` as a JSON object.
pub fn validation() -> Result<Vec<(String, Vec<u8>)>, String> {
    Ok(example_documents()?
        .into_iter()
        .enumerate()
        .map(|(i, doc)| {
            let name = doc
                .pointer("/metadata/name")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("unnamed");
            let kind = doc["kind"].as_str().unwrap_or("unknown");
            (
                format!("{i:02}-{kind}-{name}.json"),
                doc.to_string().into_bytes(),
            )
        })
        .collect())
}

/// The `state_file` seeds: the NodePolicy `meshguard compile` writes for
/// [`crate::state_file::NODE`] from `examples/`, as YAML (as `compile`
/// writes it) and as JSON.
pub fn state_file() -> Result<Vec<(String, Vec<u8>)>, String> {
    let args = meshguard_cli::InputArgs {
        files: vec![examples()],
        mesh_cidr: meshguard_policy::addresses::parse_mesh_cidr("100.96.0.0/12")?,
        listen_port: 51820,
    };
    let mut messages = Vec::new();
    let prepared = meshguard_cli::prepare(&args, &mut messages)
        .map_err(|e| e.to_string())?
        .map_err(|_| String::from_utf8_lossy(&messages).into_owned())?;
    let node = crate::state_file::NODE;
    let spec = prepared
        .compiled
        .node_policy(node)
        .ok_or_else(|| format!("examples/ has no member {node}"))?;
    let object = meshguard_crds::NodePolicy::new(node, spec);
    Ok(vec![
        (
            format!("{node}.yaml"),
            serde_saphyr::to_string(&object)
                .map_err(|e| e.to_string())?
                .into_bytes(),
        ),
        (
            format!("{node}.json"),
            serde_json::to_vec_pretty(&object).map_err(|e| e.to_string())?,
        ),
    ])
}

/// The `uapi` seeds: `get` replies of an empty device, of one peer as
/// boringtun writes it (with fields the agent passes over), and of peers
/// with IPv6 endpoints and several allowed IPs.
pub fn uapi() -> Vec<(String, Vec<u8>)> {
    use meshguard_agent::wireguard::{DeviceState, PeerState, uapi::render_get};
    let peer = |k: u8, endpoint: Option<&str>, ips: &[&str]| PeerState {
        public_key: [k; 32],
        endpoint: endpoint.and_then(|e| e.parse().ok()),
        allowed_ips: ips.iter().filter_map(|i| i.parse().ok()).collect(),
        persistent_keepalive: 25,
        rx_bytes: 168,
        tx_bytes: 92,
    };
    let many = DeviceState {
        public_key: Some([1; 32]),
        listen_port: Some(51820),
        peers: vec![
            peer(2, Some("10.99.0.2:51820"), &["100.96.0.2/32"]),
            peer(
                3,
                Some("[fd00::3]:51820"),
                &["100.96.0.3/32", "fd00:1::/64"],
            ),
            peer(4, None, &[]),
        ],
    };
    vec![
        ("empty".to_owned(), render_get(&DeviceState::default()).into_bytes()),
        (
            "boringtun".to_owned(),
            "own_public_key=5d60d76a7dd89a1dee86e34b1f8db0bbe1f1a88d8344e0cbfb1ca5ebf0efc72d\nlisten_port=51820\npublic_key=e17cbd7dbdd6404005196eb67d26bafd6268aa1aa756b89187ac4a7a5144f602\nendpoint=10.99.0.2:51820\nallowed_ip=100.96.0.2/32\nlast_handshake_time_sec=1\nlast_handshake_time_nsec=5\nrx_bytes=168\ntx_bytes=92\npersistent_keepalive_interval=0\nprotocol_version=1\nerrno=0\n\n"
                .as_bytes()
                .to_vec(),
        ),
        ("three-peers".to_owned(), render_get(&many).into_bytes()),
    ]
}
