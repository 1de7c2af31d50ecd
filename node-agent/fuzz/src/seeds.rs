//! Inputs the fuzzers start from: the token seeds as committed
//! (`seeds/token/`, minted once by PyJWT with keys since thrown away) and
//! ext_proc messages built here, shaped as Envoy 1.40 sends them, so the
//! fuzzer starts from messages that reach every step rather than from bytes
//! that do not decode.

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
