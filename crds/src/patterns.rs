//! The string shapes the API accepts, as OpenAPI `pattern`s.
//!
//! Syntax checks live in the OpenAPI schema rather than in CEL: the API server
//! does not charge patterns against the CEL cost budget, and these strings sit
//! deep inside nested lists where every CEL call is multiplied by the lists'
//! `maxItems`. The Rust checks in [`crate::validation`] reuse the same constants.

/// A DNS subdomain (RFC 1123), the shape of Kubernetes object and node names.
pub const DNS_SUBDOMAIN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// A DNS label (RFC 1123): names that appear in rule ids and counters.
pub const DNS_LABEL: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// A label key: an optional DNS-subdomain prefix and a name of at most 63 characters.
pub const LABEL_KEY: &str = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$";

/// A label value: empty, or at most 63 alphanumerics with `-`, `_` and `.` inside.
pub const LABEL_VALUE: &str = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$";

/// An HTTP header name (an RFC 9110 token).
pub const HTTP_HEADER_NAME: &str = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$";

/// A URL path prefix: starts with `/`, no whitespace, no query or fragment.
/// (Whitespace spelled out: `\s` means ASCII whitespace to the API server's
/// RE2 but Unicode whitespace to Rust's regex.)
pub const PATH_PREFIX: &str = r"^/[^\t\n\f\r ?#]*$";

/// The longest DNS subdomain, and so the longest label key prefix.
pub const DNS_SUBDOMAIN_MAX: usize = 253;

/// The longest label key: a 253-character prefix, `/`, and a 63-character name.
pub const LABEL_KEY_MAX: usize = DNS_SUBDOMAIN_MAX + 1 + 63;
