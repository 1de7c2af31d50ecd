//! What a chain answers: the request passes with header changes, or it is
//! refused with a status, the step that refused it and why.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
};

use serde::Serialize;

/// A step by position and kind, as metrics, logs and `check-request` name
/// it: `2:jwt`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StepRef {
    pub index: usize,
    pub kind: &'static str,
}

impl fmt::Display for StepRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.index, self.kind)
    }
}

/// Header changes: `set` replaces any value, `remove` drops the header.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HeaderChanges {
    pub set: BTreeMap<String, String>,
    pub remove: BTreeSet<String>,
}

impl HeaderChanges {
    pub fn set(&mut self, name: &str, value: &str) {
        let name = name.to_ascii_lowercase();
        self.remove.remove(&name);
        self.set.insert(name, value.to_owned());
    }

    pub fn remove(&mut self, name: &str) {
        let name = name.to_ascii_lowercase();
        self.set.remove(&name);
        self.remove.insert(name);
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.remove.is_empty()
    }
}

/// A refusal: the HTTP status, the step that answered, the reason (for the
/// body, the `x-meshguard-reason` header, logs) and response headers such
/// as `WWW-Authenticate` or `Retry-After`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub step: Option<StepRef>,
    pub reason: String,
    pub headers: BTreeMap<String, String>,
}

impl Refusal {
    pub fn new(status: u16, step: Option<StepRef>, reason: impl Into<String>) -> Refusal {
        Refusal {
            status,
            step,
            reason: reason.into(),
            headers: BTreeMap::new(),
        }
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Refusal {
        self.headers.insert(name.to_owned(), value.into());
        self
    }

    /// The body of the refusal: `{"error": …, "chain": …, "step": …}`.
    pub fn body(&self, chain: Option<&str>) -> String {
        serde_json::json!({
            "error": self.reason,
            "chain": chain,
            "step": self.step.map(|s| s.to_string()),
        })
        .to_string()
    }
}

/// What happened at one step, for `--explain` and debug logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    pub step: StepRef,
    pub result: String,
}

/// The whole answer for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// `<namespace>/<name>` of the chain that ran; `None` when none matched.
    pub chain: Option<String>,
    /// `None`: the request goes on to the upstream.
    pub refusal: Option<Refusal>,
    /// Under `mode: Audit`, the refusal enforcement would have given.
    pub audited: Option<Refusal>,
    pub request_headers: HeaderChanges,
    pub response_headers: HeaderChanges,
    /// The remote JWKS (by URI) that lacked a token's `kid`: the agent may
    /// fetch it again (at most once per interval).
    pub unknown_kid: Option<String>,
    pub trace: Vec<Trace>,
}

impl Outcome {
    /// The status Envoy answers with, 200 meaning "passed on upstream".
    pub fn status(&self) -> u16 {
        self.refusal.as_ref().map_or(200, |r| r.status)
    }
}
