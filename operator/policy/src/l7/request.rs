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

    /// The first value of query parameter `name`, percent-decoded (`None`
    /// when absent or not UTF-8 once decoded).
    pub fn query(&self, name: &str) -> Option<String> {
        self.query_pairs()
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
            .find(|(key, _)| decode(key).as_deref() == Some(name))
            .and_then(|(_, value)| decode(value))
    }

    /// The path with every `name` parameter removed, the rest as sent.
    pub fn path_without_query(&self, name: &str) -> String {
        let kept: Vec<&str> = self
            .query_pairs()
            .filter(|pair| {
                let key = pair.split_once('=').map_or(*pair, |(k, _)| k);
                decode(key).as_deref() != Some(name)
            })
            .collect();
        let mut out = self.path_only().to_owned();
        if !kept.is_empty() {
            out.push('?');
            out.push_str(&kept.join("&"));
        }
        out
    }

    /// The query's `key=value` pairs, raw.
    fn query_pairs(&self) -> impl Iterator<Item = &str> {
        let query = self
            .path
            .split_once('?')
            .map(|(_, q)| q.split('#').next().unwrap_or_default())
            .unwrap_or_default();
        query.split('&').filter(|pair| !pair.is_empty())
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

/// `%XX` and `+` decoded, as in a form-encoded query.
fn decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn at(path: &str) -> Request {
        Request {
            path: path.to_owned(),
            ..Default::default()
        }
    }

    #[test]
    fn query_parameters_are_decoded_and_removed_alone() {
        let r = at("/orders?page=2&api_key=s%3Dcr%2Bt+x&api_key=second&flag#frag");
        assert_eq!(r.query("api_key").as_deref(), Some("s=cr+t x"));
        assert_eq!(r.query("page").as_deref(), Some("2"));
        assert_eq!(r.query("flag").as_deref(), Some(""));
        assert_eq!(r.query("missing"), None);
        assert_eq!(r.path_without_query("api_key"), "/orders?page=2&flag");
        assert_eq!(at("/a?api_key=k").path_without_query("api_key"), "/a");
        assert_eq!(at("/a").path_without_query("api_key"), "/a");
        // Malformed escapes stay as they are; bytes that are not UTF-8 are no value.
        assert_eq!(at("/a?k=100%").query("k").as_deref(), Some("100%"));
        assert_eq!(at("/a?k=%zz").query("k").as_deref(), Some("%zz"));
        assert_eq!(at("/a?k=%ff").query("k"), None);
    }
}
