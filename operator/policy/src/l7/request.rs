//! One HTTP request as a chain sees it: what Envoy's ext_proc sends for the
//! request headers, or what `meshguard check-request` is told.

use std::{collections::BTreeMap, net::IpAddr};

/// A request. Header names are lower case (HTTP/2 and Envoy's own form); a
/// header sent twice holds its values joined by `,` as HTTP allows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// Upper case, as on the wire (`GET`).
    pub method: String,
    /// `:path`, query included.
    pub path: String,
    pub headers: BTreeMap<String, String>,
    /// The downstream address (Envoy's `source.address` attribute).
    pub source: Option<IpAddr>,
    /// The route name (Envoy's `xds.route_name` attribute).
    pub route: Option<String>,
}

impl Request {
    /// A header's value by name, in any case.
    pub fn header(&self, name: &str) -> Option<&str> {
        match self.headers.get(name) {
            Some(value) => Some(value),
            None => self
                .headers
                .get(&name.to_ascii_lowercase())
                .map(String::as_str),
        }
    }

    /// The path without its query: what path prefixes are matched against.
    pub fn path_only(&self) -> &str {
        self.path.split(['?', '#']).next().unwrap_or_default()
    }

    /// Adds a header value (lower-casing the name, joining repeats).
    pub fn add_header(&mut self, name: &str, value: &str) {
        self.headers
            .entry(name.to_ascii_lowercase())
            .and_modify(|v| {
                v.push(',');
                v.push_str(value);
            })
            .or_insert_with(|| value.to_owned());
    }
}

/// Who the credential steps said the caller is; later steps (rate-limit
/// keys, access rules, headers) read it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Identity {
    /// The client id of the API key that matched.
    pub client_id: Option<String>,
    /// The claims of the token that verified.
    pub claims: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Identity {
    /// A claim as text: strings as they are, numbers and booleans printed;
    /// `None` for absent, null, arrays and objects (they name no one key).
    pub fn claim(&self, name: &str) -> Option<String> {
        match self.claims.as_ref()?.get(name)? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            serde_json::Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
}
