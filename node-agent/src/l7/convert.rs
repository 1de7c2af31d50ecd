//! Envoy's ext_proc messages to and from the evaluator's terms, pure: the
//! request headers and attributes Envoy sends become an `l7::Request`; an
//! `Outcome` becomes a header mutation (the request goes on) or an
//! immediate response (the refusal).

use envoy_types::pb::{
    envoy::{
        config::core::v3::{
            HeaderMap, HeaderValue, HeaderValueOption, header_value_option::HeaderAppendAction,
        },
        extensions::filters::http::ext_proc::v3::{
            ProcessingMode, processing_mode::HeaderSendMode,
        },
        service::ext_proc::v3::{
            CommonResponse, HeaderMutation, HeadersResponse, ImmediateResponse, ProcessingRequest,
            ProcessingResponse, processing_response::Response,
        },
        r#type::v3::HttpStatus,
    },
    google::protobuf::{Struct, value::Kind},
};
use meshguard_policy::l7::{HeaderChanges, Outcome, Refusal, Request};

/// Where Envoy puts the `request_attributes` it was asked for.
const ATTRIBUTES: &str = "envoy.filters.http.ext_proc";

/// Why a request's headers could not be read; answered 400.
#[derive(Debug, PartialEq, Eq)]
pub struct BadRequest(pub String);

/// The request of a `request_headers` message. `attributes` are the
/// ProcessingRequest's (Envoy 1.40 sends them there, older ones in the
/// headers message).
pub fn request(
    headers: Option<&HeaderMap>,
    message: &ProcessingRequest,
    inner_attributes: &std::collections::HashMap<String, Struct>,
) -> Result<Request, BadRequest> {
    let mut out = Request::default();
    for header in headers.map(|h| h.headers.as_slice()).unwrap_or_default() {
        let value = if header.raw_value.is_empty() {
            header.value.clone()
        } else {
            String::from_utf8(header.raw_value.clone())
                .map_err(|_| BadRequest(format!("header {} is not UTF-8", header.key)))?
        };
        match header.key.as_str() {
            ":method" => out.method = value.to_ascii_uppercase(),
            ":path" => out.path = value,
            key if key.starts_with(':') => {}
            key => out.add_header(key, &value),
        }
    }
    let attribute = |name: &str| {
        [&message.attributes, inner_attributes]
            .into_iter()
            .filter_map(|a| a.get(ATTRIBUTES))
            .find_map(|s| match s.fields.get(name)?.kind.as_ref()? {
                Kind::StringValue(v) => Some(v.clone()),
                _ => None,
            })
    };
    out.route = attribute("xds.route_name").filter(|r| !r.is_empty());
    out.source = attribute("source.address").and_then(|a| source_ip(&a));
    Ok(out)
}

/// `10.1.2.3:5678`, `[fd00::1]:5678` or a bare address.
fn source_ip(address: &str) -> Option<std::net::IpAddr> {
    if let Ok(ip) = address.parse() {
        return Some(ip);
    }
    address.parse::<std::net::SocketAddr>().ok().map(|s| s.ip())
}

fn header_option(name: &str, value: &str) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: name.to_owned(),
            value: String::new(),
            raw_value: value.as_bytes().to_vec(),
        }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..Default::default()
    }
}

fn mutation(changes: &HeaderChanges) -> Option<HeaderMutation> {
    (!changes.is_empty()).then(|| HeaderMutation {
        set_headers: changes
            .set
            .iter()
            .map(|(k, v)| header_option(k, v))
            .collect(),
        remove_headers: changes.remove.iter().cloned().collect(),
    })
}

fn continue_with(changes: &HeaderChanges) -> HeadersResponse {
    HeadersResponse {
        response: Some(CommonResponse {
            header_mutation: mutation(changes),
            ..Default::default()
        }),
    }
}

/// The answer to a `request_headers` message. A passed request whose chain
/// changes no response header tells Envoy to skip the response-headers
/// message (honoured with `allow_mode_override: true`, docs/l7.md): one
/// round trip a request instead of two.
pub fn request_response(outcome: &Outcome) -> ProcessingResponse {
    let (response, mode_override) = match &outcome.refusal {
        Some(refusal) => (
            Response::ImmediateResponse(immediate(refusal, outcome.chain.as_deref())),
            None,
        ),
        None => (
            Response::RequestHeaders(continue_with(&outcome.request_headers)),
            outcome.response_headers.is_empty().then(|| ProcessingMode {
                response_header_mode: HeaderSendMode::Skip as i32,
                ..Default::default()
            }),
        ),
    };
    ProcessingResponse {
        response: Some(response),
        mode_override,
        ..Default::default()
    }
}

/// The answer to a `response_headers` message: the chain's response changes.
pub fn response_headers_response(changes: &HeaderChanges) -> ProcessingResponse {
    ProcessingResponse {
        response: Some(Response::ResponseHeaders(continue_with(changes))),
        ..Default::default()
    }
}

/// A refusal as Envoy sends it to the client.
pub fn immediate(refusal: &Refusal, chain: Option<&str>) -> ImmediateResponse {
    let mut headers: Vec<HeaderValueOption> = refusal
        .headers
        .iter()
        .map(|(k, v)| header_option(k, v))
        .collect();
    headers.push(header_option("content-type", "application/json"));
    ImmediateResponse {
        status: Some(HttpStatus {
            code: i32::from(refusal.status),
        }),
        headers: Some(HeaderMutation {
            set_headers: headers,
            remove_headers: Vec::new(),
        }),
        body: refusal.body(chain).into_bytes(),
        details: format!("meshguard: {}", refusal.reason),
        ..Default::default()
    }
}

/// A request whose headers could not be read.
pub fn bad_request(bad: &BadRequest) -> ProcessingResponse {
    let refusal = Refusal::new(400, None, bad.0.clone())
        .with_header(meshguard_policy::l7::REASON_HEADER, bad.0.clone());
    ProcessingResponse {
        response: Some(Response::ImmediateResponse(immediate(&refusal, None))),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::HashMap;

    use envoy_types::pb::google::protobuf::Value;

    use super::*;

    fn header(key: &str, raw: &[u8]) -> HeaderValue {
        HeaderValue {
            key: key.into(),
            value: String::new(),
            raw_value: raw.to_vec(),
        }
    }

    fn attributes(fields: &[(&str, &str)]) -> HashMap<String, Struct> {
        let fields = fields
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    Value {
                        kind: Some(Kind::StringValue(v.to_string())),
                    },
                )
            })
            .collect();
        HashMap::from([(ATTRIBUTES.to_owned(), Struct { fields })])
    }

    #[test]
    fn headers_and_attributes_become_a_request() {
        let map = HeaderMap {
            headers: vec![
                header(":method", b"post"),
                header(":path", b"/orders?x=1"),
                header(":authority", b"shop"),
                header("x-api-key", b"k"),
                header("accept", b"a"),
                header("accept", b"b"),
            ],
        };
        let message = ProcessingRequest {
            attributes: attributes(&[
                ("xds.route_name", "orders-v1"),
                ("source.address", "10.1.2.3:40000"),
            ]),
            ..Default::default()
        };
        let r = request(Some(&map), &message, &HashMap::new()).unwrap();
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("POST", "/orders?x=1")
        );
        assert_eq!(r.header("x-api-key"), Some("k"));
        assert_eq!(r.header("accept"), Some("a,b"));
        assert_eq!(r.header(":authority"), None);
        assert_eq!(r.route.as_deref(), Some("orders-v1"));
        assert_eq!(r.source, Some("10.1.2.3".parse().unwrap()));
        // The older place of the attributes, and an IPv6 source.
        let r = request(
            Some(&map),
            &ProcessingRequest::default(),
            &attributes(&[("source.address", "[fd00::1]:5")]),
        )
        .unwrap();
        assert_eq!(r.source, Some("fd00::1".parse().unwrap()));
        assert_eq!(r.route, None);
    }

    #[test]
    fn a_header_that_is_not_utf8_is_a_bad_request() {
        let map = HeaderMap {
            headers: vec![header("x-api-key", &[0xff, 0xfe])],
        };
        let bad = request(Some(&map), &ProcessingRequest::default(), &HashMap::new()).unwrap_err();
        assert_eq!(bad.0, "header x-api-key is not UTF-8");
        let Some(Response::ImmediateResponse(answer)) = bad_request(&bad).response else {
            panic!("not an immediate response");
        };
        assert_eq!(answer.status.unwrap().code, 400);
    }

    #[test]
    fn the_response_headers_message_is_skipped_when_the_chain_changes_none() {
        let mut outcome = Outcome {
            chain: Some("shop/orders".into()),
            refusal: None,
            audited: None,
            request_headers: HeaderChanges::default(),
            response_headers: HeaderChanges::default(),
            unknown_kid: None,
            trace: Vec::new(),
        };
        let skip = request_response(&outcome).mode_override.unwrap();
        assert_eq!(skip.response_header_mode, HeaderSendMode::Skip as i32);
        assert_eq!(skip.request_body_mode, 0, "bodies stay unsent (NONE)");
        outcome.response_headers.set("x-served-by", "meshguard");
        assert_eq!(request_response(&outcome).mode_override, None);
        outcome.refusal = Some(Refusal::new(401, None, "missing API key"));
        assert_eq!(request_response(&outcome).mode_override, None);
    }

    #[test]
    fn a_refusal_is_an_immediate_response_with_its_headers_and_body() {
        let refusal =
            Refusal::new(429, None, "rate limit exceeded").with_header("retry-after", "3");
        let answer = immediate(&refusal, Some("shop/orders"));
        assert_eq!(answer.status.unwrap().code, 429);
        let set: Vec<(String, Vec<u8>)> = answer
            .headers
            .unwrap()
            .set_headers
            .into_iter()
            .map(|h| {
                let h = h.header.unwrap();
                (h.key, h.raw_value)
            })
            .collect();
        assert!(set.contains(&("retry-after".into(), b"3".to_vec())));
        let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(body["chain"], "shop/orders");
    }
}
