//! Running a chain on one request: steps in order, the first failure
//! answers; `mode: Audit` records that failure and lets the request pass.
//!
//! Everything the evaluator cannot know is passed in ([`Context`]): the
//! time, the chain's state (rate limits, verified tokens), keys fetched
//! from a JWKS URI. So the agent's ext_proc server and `meshguard
//! check-request` run this same function and cannot disagree.

use std::time::Duration;

use sha2::{Digest, Sha256};

use super::{
    answer::{HeaderChanges, Outcome, Refusal, StepRef, Trace},
    chain::{Access, ApiKey, Chain, Credential, Jwt, Match, RateKey, StepKind},
    jwt::{self, TokenError},
    keys::RemoteKeys,
    request::{Identity, Request},
    state::ChainState,
};

/// What a request is evaluated with besides the chain and the request.
pub struct Context<'a> {
    /// Wall-clock time since the UNIX epoch (token lifetimes, rate limits).
    pub now: Duration,
    /// The selected chain's memory: rate buckets, verified tokens.
    pub state: &'a ChainState,
    pub remote_keys: &'a dyn RemoteKeys,
    /// Told as each step finishes, so a caller with a clock can time steps
    /// (the agent's per-step latency histogram) without the evaluator
    /// reading one.
    pub step_finished: Option<&'a mut dyn FnMut(StepRef)>,
}

/// A step's result.
enum Step {
    Skipped,
    Passed(String),
    Refused(Refusal),
    /// The evaluator could not decide (a JWKS not available): 500 under
    /// `failureMode: Closed`, the step skipped under `Open`.
    Internal(String),
}

/// What happens to a request no chain serves (`--unmatched-route`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unmatched {
    Deny,
    Allow,
}

/// The whole answer for a request, given the chain [`select`]ed for it
/// (or why there is none): evaluated, and every refusal given an
/// `x-meshguard-reason` header. The agent's server and `meshguard
/// check-request` both answer through here. (Selection is the caller's
/// step so that it can hand in the selected chain's rate-limit state.)
///
/// [`select`]: super::select
pub fn answer(
    selected: Result<&Chain, String>,
    request: &Request,
    unmatched: Unmatched,
    cx: &mut Context<'_>,
) -> Outcome {
    let mut out = match selected {
        Ok(chain) => evaluate(chain, request, cx),
        Err(why) => Outcome {
            chain: None,
            refusal: (unmatched == Unmatched::Deny).then(|| Refusal::new(403, None, why.clone())),
            audited: None,
            request_headers: HeaderChanges::default(),
            response_headers: HeaderChanges::default(),
            unknown_kid: None,
            trace: Vec::new(),
        },
    };
    if let Some(refusal) = &mut out.refusal {
        let reason = refusal.reason.clone();
        refusal.headers.insert(REASON_HEADER.to_owned(), reason);
    }
    out
}

/// The response header that says why a request was refused.
pub const REASON_HEADER: &str = "x-meshguard-reason";

/// One chain on one request (the chain already selected).
pub fn evaluate(chain: &Chain, request: &Request, cx: &mut Context<'_>) -> Outcome {
    let mut out = Outcome {
        chain: Some(chain.name.clone()),
        refusal: None,
        audited: None,
        request_headers: HeaderChanges::default(),
        response_headers: HeaderChanges::default(),
        unknown_kid: None,
        trace: Vec::new(),
    };
    for header in &chain.identity_headers {
        if request.header(header).is_some() {
            out.request_headers.remove(header);
        }
    }
    let mut identity = Identity::default();
    for (index, step) in chain.steps.iter().enumerate() {
        let at = StepRef {
            index,
            kind: step.kind.name(),
        };
        let result = if step
            .when
            .as_ref()
            .is_some_and(|w| !matches(w, request, &identity))
        {
            Step::Skipped
        } else {
            run(chain, at, &step.kind, request, &mut identity, &mut out, cx)
        };
        if let Some(finished) = cx.step_finished.as_mut() {
            finished(at);
        }
        let refusal = match result {
            Step::Skipped => {
                out.trace.push(trace(at, "skipped: `when` does not match"));
                continue;
            }
            Step::Passed(what) => {
                out.trace.push(trace(at, &what));
                continue;
            }
            Step::Internal(why) if chain.fail_open => {
                out.trace.push(trace(
                    at,
                    &format!("internal error, skipped (failureMode Open): {why}"),
                ));
                continue;
            }
            Step::Internal(why) => Refusal::new(500, Some(at), format!("internal error: {why}")),
            Step::Refused(refusal) => refusal,
        };
        out.trace.push(trace(
            at,
            &format!("refused {}: {}", refusal.status, refusal.reason),
        ));
        if chain.audit {
            // Counted and logged by the caller; the request goes on. Later
            // steps still run (their header changes apply), but only the
            // first refusal is what enforcement would have answered.
            out.audited.get_or_insert(refusal);
            continue;
        }
        out.refusal = Some(refusal);
        break;
    }
    out
}

fn trace(step: StepRef, result: &str) -> Trace {
    Trace {
        step,
        result: result.to_owned(),
    }
}

fn run(
    chain: &Chain,
    at: StepRef,
    kind: &StepKind,
    request: &Request,
    identity: &mut Identity,
    out: &mut Outcome,
    cx: &mut Context<'_>,
) -> Step {
    match kind {
        StepKind::ApiKey(step) => api_key_step(chain, at, step, request, identity, out),
        StepKind::Jwt(step) => jwt_step(chain, at, step, request, identity, out, cx),
        StepKind::AnyOf(credentials) => {
            let mut first = None;
            for credential in credentials {
                let result = match credential {
                    Credential::ApiKey(step) => {
                        api_key_step(chain, at, step, request, identity, out)
                    }
                    Credential::Jwt(step) => jwt_step(chain, at, step, request, identity, out, cx),
                };
                match result {
                    Step::Passed(what) => return Step::Passed(what),
                    failed => {
                        first.get_or_insert(failed);
                    }
                }
            }
            first.unwrap_or(Step::Skipped)
        }
        StepKind::RateLimit(limit) => {
            let key = match &limit.key {
                RateKey::ClientId => identity.client_id.clone(),
                RateKey::Claim(claim) => identity.claim(claim),
                RateKey::Header(name) => request.header(name).map(str::to_owned),
                RateKey::SourceIp => request.source.map(|ip| ip.to_string()),
                RateKey::Route => Some(request.route.clone().unwrap_or_default()),
            };
            // A request without the key shares one bucket with all others
            // without it: stricter, never unlimited.
            let key = key.unwrap_or_default();
            let budget_headers = |remaining: u32, full_in: Duration| {
                [
                    ("x-ratelimit-limit", limit.burst.to_string()),
                    ("x-ratelimit-remaining", remaining.to_string()),
                    ("x-ratelimit-reset", whole_seconds(full_in).to_string()),
                ]
            };
            match cx.state.limits.take(at.index, limit, &key, cx.now) {
                Ok(budget) => {
                    if limit.headers {
                        for (name, value) in budget_headers(budget.remaining, budget.full_in) {
                            out.response_headers.set(name, &value);
                        }
                    }
                    Step::Passed(format!(
                        "within {} per bucket ({} left)",
                        limit.requests, budget.remaining
                    ))
                }
                Err(limited) => {
                    let seconds = whole_seconds(limited.retry_after).max(1);
                    let mut refusal = Refusal::new(429, Some(at), "rate limit exceeded")
                        .with_header("retry-after", seconds.to_string());
                    if limit.headers {
                        for (name, value) in budget_headers(0, limited.full_in) {
                            refusal = refusal.with_header(name, value);
                        }
                    }
                    Step::Refused(refusal)
                }
            }
        }
        StepKind::Access(access_step) => access(at, access_step, request, identity),
        StepKind::Headers {
            request: req,
            response,
        } => {
            for (changes, mutation) in [
                (&mut out.request_headers, req),
                (&mut out.response_headers, response),
            ] {
                let Some(mutation) = mutation else { continue };
                for name in mutation.remove.iter().flatten() {
                    changes.remove(name);
                }
                for (name, value) in mutation.set.iter().flatten() {
                    changes.set(name, value);
                }
            }
            Step::Passed("headers changed".to_owned())
        }
    }
}

/// The client id whose key's digest equals the presented key's. Every
/// digest is compared in full, whatever matches: the time taken says
/// nothing about how close a guess was.
/// Seconds, rounded up: a client told to wait that long is never early.
fn whole_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// An API key from the header or, when the header is absent, from the
/// query parameter the step names; a key taken from the query leaves the
/// forwarded path without it.
fn api_key_step(
    chain: &Chain,
    at: StepRef,
    step: &ApiKey,
    request: &Request,
    identity: &mut Identity,
    out: &mut Outcome,
) -> Step {
    // The query parameter the key came from, if it came from one.
    let (presented, from_query) = match (request.header(&step.header), &step.query_parameter) {
        (Some(key), _) => (Some(key.to_owned()), None),
        (None, Some(name)) => (request.query(name), Some(name)),
        (None, None) => (None, None),
    };
    let Some(presented) = presented else {
        return Step::Refused(api_key_refusal(chain, at, step, "missing API key"));
    };
    match api_key(step, &presented) {
        Ok(client) => {
            if let Some(name) = from_query {
                out.request_headers
                    .set(":path", &request.path_without_query(name));
            }
            let what = format!("client {client}");
            identity.client_id = Some(client);
            Step::Passed(what)
        }
        Err(reason) => Step::Refused(api_key_refusal(chain, at, step, reason)),
    }
}

fn api_key(step: &ApiKey, presented: &str) -> Result<String, &'static str> {
    let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    let mut found = None;
    for (client, key) in &step.keys {
        let diff = key
            .iter()
            .zip(digest.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff == 0 && found.is_none() {
            found = Some(client);
        }
    }
    found.cloned().ok_or("unknown API key")
}

fn api_key_refusal(chain: &Chain, at: StepRef, step: &ApiKey, reason: &str) -> Refusal {
    let query = step
        .query_parameter
        .as_ref()
        .map(|q| format!(", query=\"{q}\""))
        .unwrap_or_default();
    Refusal::new(401, Some(at), reason).with_header(
        "www-authenticate",
        format!(
            "ApiKey realm=\"{}\", header=\"{}\"{query}",
            chain.name, step.header
        ),
    )
}

fn jwt_step(
    chain: &Chain,
    at: StepRef,
    step: &Jwt,
    request: &Request,
    identity: &mut Identity,
    out: &mut Outcome,
    cx: &mut Context<'_>,
) -> Step {
    let challenge = |error: Option<&str>| match error {
        None => format!("Bearer realm=\"{}\"", chain.name),
        Some(e) => format!(
            "Bearer realm=\"{}\", error=\"invalid_token\", error_description=\"{}\"",
            chain.name,
            e.replace('"', "'")
        ),
    };
    let Some(token) = jwt::bearer(request) else {
        return Step::Refused(
            Refusal::new(401, Some(at), "missing bearer token")
                .with_header("www-authenticate", challenge(None)),
        );
    };
    match jwt::verify(step, token, cx.now, cx.remote_keys, &cx.state.tokens) {
        Ok(claims) => {
            let mut identity_headers = Vec::new();
            let verified = Identity {
                client_id: identity.client_id.clone(),
                claims: Some(claims),
            };
            for c in &step.claims_to_headers {
                if let Some(value) = verified.claim(&c.claim) {
                    identity_headers.push((c.header.clone(), value));
                }
            }
            let subject = verified.claim("sub").unwrap_or_default();
            *identity = verified;
            for (header, value) in identity_headers {
                out.request_headers.set(&header, &value);
            }
            Step::Passed(format!("token of {subject:?} verified"))
        }
        Err(TokenError::KeysUnavailable(uri)) => {
            Step::Internal(format!("no key set from {uri} is available yet"))
        }
        Err(error) => {
            if let TokenError::UnknownKid { uri: Some(uri), .. } = &error {
                out.unknown_kid = Some(uri.clone());
            }
            let reason = format!("invalid token: {error}");
            Step::Refused(
                Refusal::new(401, Some(at), reason)
                    .with_header("www-authenticate", challenge(Some(&error.to_string()))),
            )
        }
    }
}

fn access(at: StepRef, step: &Access, request: &Request, identity: &Identity) -> Step {
    if let Some(deny) = &step.deny
        && matches(deny, request, identity)
    {
        return Step::Refused(Refusal::new(403, Some(at), "denied by access rule"));
    }
    if let Some(allow) = &step.allow
        && !matches(allow, request, identity)
    {
        return Step::Refused(Refusal::new(403, Some(at), "not allowed by access rule"));
    }
    Step::Passed("access allowed".to_owned())
}

/// Every field given must match; within a field, any value.
pub fn matches(m: &Match, request: &Request, identity: &Identity) -> bool {
    let path = request.path_only();
    m.methods
        .as_ref()
        .is_none_or(|ms| ms.iter().any(|x| x.eq_ignore_ascii_case(&request.method)))
        && m.path_prefixes
            .as_ref()
            .is_none_or(|ps| ps.iter().any(|p| path.starts_with(p.as_str())))
        && m.headers.as_ref().is_none_or(|hs| {
            hs.iter()
                .all(|(k, v)| request.header(k) == Some(v.as_str()))
        })
        && m.source_cidrs.as_ref().is_none_or(|cidrs| {
            request
                .source
                .is_some_and(|ip| cidrs.iter().any(|c| c.contains(&ip)))
        })
        && m.client_ids.as_ref().is_none_or(|ids| {
            identity
                .client_id
                .as_ref()
                .is_some_and(|id| ids.contains(id))
        })
        && m.claims.as_ref().is_none_or(|claims| {
            claims
                .iter()
                .all(|(k, v)| identity.claim(k).as_deref() == Some(v.as_str()))
        })
}
