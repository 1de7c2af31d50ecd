//! A compiled chain made ready to run: every reference parsed once (key
//! digests, JWKS documents, CIDRs, rates), so a request does no parsing of
//! configuration and a chain that cannot run is refused whole, naming the
//! step and field, before it replaces one that can.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    sync::Arc,
    time::Duration,
};

use ipnet::IpNet;
use meshguard_crds::{
    PolicyMode,
    node_policy::{CompiledApiKey, CompiledChain, CompiledJwt, CompiledStep},
    policy_chain::{
        AccessMatch, AccessStep, ClaimToHeader, FailureMode, HeaderMutation, HttpMethod,
        JwtAlgorithm, RateLimitStep, RatePeriod, RequestMatch,
    },
};

use super::keys::{KeyFamily, KeySet};

/// A chain ready to evaluate requests.
#[derive(Debug)]
pub struct Chain {
    /// `<namespace>/<name>`.
    pub name: String,
    pub routes: Vec<String>,
    pub audit: bool,
    /// `failureMode: Open`: an internal error skips the step.
    pub fail_open: bool,
    pub steps: Vec<Step>,
    /// Headers some step derives from an identity (`claimsToHeaders`): a
    /// client's own values are removed, so only the chain can set them.
    pub identity_headers: BTreeSet<String>,
}

impl Chain {
    /// The JWKS URIs this chain's `jwt` steps (also inside `anyOf`) name:
    /// the sets the agent has to fetch for it.
    pub fn remote_jwks(&self) -> impl Iterator<Item = &str> {
        self.steps
            .iter()
            .flat_map(|step| step.kind.jwts())
            .filter_map(|jwt| match &jwt.keys {
                Jwks::Remote(uri) => Some(uri.as_str()),
                Jwks::Local(_) => None,
            })
    }
}

#[derive(Debug)]
pub struct Step {
    pub when: Option<Match>,
    pub kind: StepKind,
}

#[derive(Debug)]
pub enum StepKind {
    ApiKey(ApiKey),
    Jwt(Jwt),
    AnyOf(Vec<Credential>),
    RateLimit(RateLimit),
    Access(Access),
    Headers {
        request: Option<HeaderMutation>,
        response: Option<HeaderMutation>,
    },
}

impl StepKind {
    /// The `jwt` checks of this step: its own, or those inside `anyOf`.
    pub fn jwts(&self) -> Vec<&Jwt> {
        match self {
            StepKind::Jwt(jwt) => vec![jwt],
            StepKind::AnyOf(credentials) => credentials
                .iter()
                .filter_map(|c| match c {
                    Credential::Jwt(jwt) => Some(jwt),
                    Credential::ApiKey(_) => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            StepKind::ApiKey(_) => "apiKey",
            StepKind::Jwt(_) => "jwt",
            StepKind::AnyOf(_) => "anyOf",
            StepKind::RateLimit(_) => "rateLimit",
            StepKind::Access(_) => "access",
            StepKind::Headers { .. } => "headers",
        }
    }
}

#[derive(Debug)]
pub enum Credential {
    ApiKey(ApiKey),
    Jwt(Jwt),
}

#[derive(Debug)]
pub struct ApiKey {
    pub header: String,
    /// Read when the header is absent.
    pub query_parameter: Option<String>,
    /// (client id, SHA-256 of the key).
    pub keys: Vec<(String, [u8; 32])>,
}

#[derive(Debug)]
pub struct Jwt {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub keys: Jwks,
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    pub clock_skew: u64,
    pub claims_to_headers: Vec<ClaimToHeader>,
}

#[derive(Debug)]
pub enum Jwks {
    /// In the NodePolicy (inline, or from a ConfigMap or Secret).
    Local(Arc<KeySet>),
    /// Fetched by the agent from this URI.
    Remote(String),
}

#[derive(Debug)]
pub struct RateLimit {
    /// The time one request costs: the period over `requests`.
    pub emission: Duration,
    /// Requests allowed at once.
    pub burst: u32,
    pub requests: u32,
    pub key: RateKey,
    /// Answers carry `X-RateLimit-*`.
    pub headers: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RateKey {
    ClientId,
    Claim(String),
    Header(String),
    SourceIp,
    Route,
}

#[derive(Debug)]
pub struct Access {
    pub allow: Option<Match>,
    pub deny: Option<Match>,
}

/// Requests matching every field given (any value within a field).
#[derive(Debug, Default)]
pub struct Match {
    pub methods: Option<Vec<String>>,
    pub path_prefixes: Option<Vec<String>>,
    pub headers: Option<Vec<(String, String)>>,
    pub source_cidrs: Option<Vec<IpNet>>,
    pub client_ids: Option<Vec<String>>,
    pub claims: Option<Vec<(String, String)>>,
}

/// Why a compiled chain cannot run: the step and field, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("chain {chain}: steps[{step}].{field}: {message}")]
pub struct ChainError {
    pub chain: String,
    pub step: usize,
    pub field: String,
    pub message: String,
}

impl Chain {
    pub fn prepare(compiled: &CompiledChain) -> Result<Chain, ChainError> {
        let mut identity_headers = BTreeSet::new();
        let mut steps = Vec::with_capacity(compiled.steps.len());
        for (i, step) in compiled.steps.iter().enumerate() {
            let fail = |field: &str, message: String| ChainError {
                chain: compiled.name.clone(),
                step: i,
                field: field.to_owned(),
                message,
            };
            let kind = step_kind(step).map_err(|(field, message)| fail(&field, message))?;
            for jwt in kind.jwts() {
                identity_headers.extend(
                    jwt.claims_to_headers
                        .iter()
                        .map(|c| c.header.to_ascii_lowercase()),
                );
            }
            let when = step
                .when
                .as_ref()
                .map(when_match)
                .transpose()
                .map_err(|m| fail("when", m))?;
            steps.push(Step { when, kind });
        }
        Ok(Chain {
            name: compiled.name.clone(),
            routes: compiled.routes.clone(),
            audit: compiled.mode == PolicyMode::Audit,
            fail_open: compiled.failure_mode == FailureMode::Open,
            steps,
            identity_headers,
        })
    }
}

/// Exactly one kind per step (the CRD's rules say so; a NodePolicy written
/// by hand is checked again here).
fn step_kind(step: &CompiledStep) -> Result<StepKind, (String, String)> {
    let mut kinds = Vec::new();
    if let Some(k) = &step.api_key {
        kinds.push(
            api_key(k)
                .map(StepKind::ApiKey)
                .map_err(|m| ("apiKey".to_owned(), m)),
        );
    }
    if let Some(j) = &step.jwt {
        kinds.push(
            jwt(j)
                .map(StepKind::Jwt)
                .map_err(|(f, m)| (format!("jwt{f}"), m)),
        );
    }
    if let Some(any_of) = &step.any_of {
        kinds.push(any_of_step(any_of));
    }
    if let Some(r) = &step.rate_limit {
        kinds.push(
            rate_limit(r)
                .map(StepKind::RateLimit)
                .map_err(|m| ("rateLimit".to_owned(), m)),
        );
    }
    if let Some(a) = &step.access {
        kinds.push(access(a).map(StepKind::Access));
    }
    if let Some(h) = &step.headers {
        kinds.push(Ok(StepKind::Headers {
            request: h.request.clone(),
            response: h.response.clone(),
        }));
    }
    match kinds.len() {
        1 => kinds.remove(0),
        0 => Err((
            "".to_owned(),
            "a step needs one kind (apiKey, jwt, anyOf, rateLimit, access or headers)".to_owned(),
        )),
        _ => Err(("".to_owned(), "a step has exactly one kind".to_owned())),
    }
}

fn any_of_step(
    credentials: &[meshguard_crds::node_policy::CompiledCredential],
) -> Result<StepKind, (String, String)> {
    if credentials.is_empty() {
        return Err((
            "anyOf".to_owned(),
            "needs at least one credential".to_owned(),
        ));
    }
    let mut out = Vec::new();
    for (j, c) in credentials.iter().enumerate() {
        out.push(match (&c.api_key, &c.jwt) {
            (Some(k), None) => {
                Credential::ApiKey(api_key(k).map_err(|m| (format!("anyOf[{j}].apiKey"), m))?)
            }
            (None, Some(t)) => {
                Credential::Jwt(jwt(t).map_err(|(f, m)| (format!("anyOf[{j}].jwt{f}"), m))?)
            }
            _ => {
                return Err((
                    format!("anyOf[{j}]"),
                    "a credential is exactly one of apiKey or jwt".to_owned(),
                ));
            }
        });
    }
    Ok(StepKind::AnyOf(out))
}

fn api_key(step: &CompiledApiKey) -> Result<ApiKey, String> {
    if step.keys.is_empty() {
        return Err("no keys: no client could authenticate".to_owned());
    }
    let mut keys = Vec::with_capacity(step.keys.len());
    for (i, k) in step.keys.iter().enumerate() {
        let digest = hex32(&k.sha256)
            .ok_or_else(|| format!("keys[{i}].sha256: not 64 lower-case hex digits"))?;
        keys.push((k.client_id.clone(), digest));
    }
    Ok(ApiKey {
        header: step.header.to_ascii_lowercase(),
        query_parameter: step.query_parameter.clone(),
        keys,
    })
}

fn hex32(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

fn jwt(step: &CompiledJwt) -> Result<Jwt, (String, String)> {
    let keys = match (&step.jwks, &step.jwks_uri) {
        (Some(document), None) => Jwks::Local(
            KeySet::parse(document)
                .map_err(|e| (".jwks".to_owned(), format!("invalid JWKS: {e}")))?,
        ),
        (None, Some(uri)) => Jwks::Remote(uri.clone()),
        _ => {
            return Err((
                "".to_owned(),
                "needs exactly one of jwks and jwksUri".to_owned(),
            ));
        }
    };
    if step.algorithms.is_empty() {
        return Err((
            ".algorithms".to_owned(),
            "empty: no token could verify".to_owned(),
        ));
    }
    let skew = u64::try_from(step.clock_skew_seconds).map_err(|_| {
        (
            ".clockSkewSeconds".to_owned(),
            "must not be negative".to_owned(),
        )
    })?;
    Ok(Jwt {
        issuer: step.issuer.clone(),
        audiences: step.audiences.clone().unwrap_or_default(),
        keys,
        algorithms: step.algorithms.iter().map(|a| algorithm(*a)).collect(),
        clock_skew: skew,
        claims_to_headers: step.claims_to_headers.clone().unwrap_or_default(),
    })
}

/// The API's algorithms are all asymmetric: an `HS*` token never verifies.
pub fn algorithm(a: JwtAlgorithm) -> jsonwebtoken::Algorithm {
    use jsonwebtoken::Algorithm as A;
    match a {
        JwtAlgorithm::RS256 => A::RS256,
        JwtAlgorithm::RS384 => A::RS384,
        JwtAlgorithm::RS512 => A::RS512,
        JwtAlgorithm::PS256 => A::PS256,
        JwtAlgorithm::PS384 => A::PS384,
        JwtAlgorithm::PS512 => A::PS512,
        JwtAlgorithm::ES256 => A::ES256,
        JwtAlgorithm::ES384 => A::ES384,
        JwtAlgorithm::EdDSA => A::EdDSA,
    }
}

/// Whether a key of this family may verify a token signed with `alg`.
pub fn fits(family: KeyFamily, alg: jsonwebtoken::Algorithm) -> bool {
    use jsonwebtoken::Algorithm as A;
    matches!(
        (family, alg),
        (
            KeyFamily::Rsa,
            A::RS256 | A::RS384 | A::RS512 | A::PS256 | A::PS384 | A::PS512
        ) | (KeyFamily::EcP256, A::ES256)
            | (KeyFamily::EcP384, A::ES384)
            | (KeyFamily::Ed25519, A::EdDSA)
    )
}

fn rate_limit(step: &RateLimitStep) -> Result<RateLimit, String> {
    let requests = u32::try_from(step.requests)
        .ok()
        .filter(|r| *r > 0)
        .ok_or("requests must be at least 1")?;
    let burst = match step.burst {
        None => requests,
        Some(b) => u32::try_from(b)
            .ok()
            .filter(|b| *b > 0)
            .ok_or("burst must be at least 1")?,
    };
    let period = match step.per {
        RatePeriod::Second => Duration::from_secs(1),
        RatePeriod::Minute => Duration::from_secs(60),
        RatePeriod::Hour => Duration::from_secs(3600),
    };
    let key = match &step.key {
        None => RateKey::Route,
        Some(k) => {
            let mut keys = Vec::new();
            if let Some(c) = &k.claim {
                keys.push(RateKey::Claim(c.clone()));
            }
            if let Some(h) = &k.header {
                keys.push(RateKey::Header(h.to_ascii_lowercase()));
            }
            if k.client_id == Some(true) {
                keys.push(RateKey::ClientId);
            }
            if k.source_ip == Some(true) {
                keys.push(RateKey::SourceIp);
            }
            if k.route == Some(true) {
                keys.push(RateKey::Route);
            }
            if keys.len() != 1 {
                return Err(
                    "key needs exactly one of claim, header, clientId, sourceIP or route".into(),
                );
            }
            keys.remove(0)
        }
    };
    Ok(RateLimit {
        emission: period / requests,
        burst,
        requests,
        key,
        headers: step.rate_limit_headers,
    })
}

fn access(step: &AccessStep) -> Result<Access, (String, String)> {
    if step.allow.is_none() && step.deny.is_none() {
        return Err(("access".to_owned(), "needs allow, deny or both".to_owned()));
    }
    let side = |m: &Option<AccessMatch>, field: &str| {
        m.as_ref()
            .map(access_match)
            .transpose()
            .map_err(|e| (format!("access.{field}"), e))
    };
    Ok(Access {
        allow: side(&step.allow, "allow")?,
        deny: side(&step.deny, "deny")?,
    })
}

fn access_match(m: &AccessMatch) -> Result<Match, String> {
    // The CRD refuses these too; checked again because a NodePolicy file
    // need not have passed admission, and an empty match fails open: an
    // `allow` with no field (or an empty claims map) matches every request,
    // a `deny` with an empty list matches none.
    if m.methods.is_none()
        && m.path_prefixes.is_none()
        && m.source_cidrs.is_none()
        && m.client_ids.is_none()
        && m.claims.is_none()
    {
        return Err(
            "needs at least one of methods, pathPrefixes, sourceCIDRs, clientIds or claims"
                .to_owned(),
        );
    }
    refuse_empty(&[
        ("methods", m.methods.as_ref().map(Vec::len)),
        ("pathPrefixes", m.path_prefixes.as_ref().map(Vec::len)),
        ("sourceCIDRs", m.source_cidrs.as_ref().map(Vec::len)),
        ("clientIds", m.client_ids.as_ref().map(Vec::len)),
        ("claims", m.claims.as_ref().map(BTreeMap::len)),
    ])?;
    let source_cidrs = m
        .source_cidrs
        .as_ref()
        .map(|cidrs| {
            cidrs
                .iter()
                .map(|c| {
                    c.parse::<IpNet>()
                        .or_else(|_| c.parse::<IpAddr>().map(IpNet::from))
                        .map_err(|_| format!("sourceCIDRs: {c:?} is not a CIDR"))
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    Ok(Match {
        methods: methods(&m.methods),
        path_prefixes: m.path_prefixes.clone(),
        headers: None,
        source_cidrs,
        client_ids: m.client_ids.clone(),
        claims: m
            .claims
            .as_ref()
            .map(|c| c.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
    })
}

fn when_match(m: &RequestMatch) -> Result<Match, String> {
    if m.methods.is_none() && m.path_prefixes.is_none() && m.headers.is_none() {
        return Err("needs at least one of methods, pathPrefixes or headers".to_owned());
    }
    refuse_empty(&[
        ("methods", m.methods.as_ref().map(Vec::len)),
        ("pathPrefixes", m.path_prefixes.as_ref().map(Vec::len)),
        ("headers", m.headers.as_ref().map(BTreeMap::len)),
    ])?;
    Ok(Match {
        methods: methods(&m.methods),
        path_prefixes: m.path_prefixes.clone(),
        headers: m.headers.as_ref().map(|h| {
            h.iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect()
        }),
        ..Match::default()
    })
}

/// A field given with no value: refused, not read as "any" or "none".
fn refuse_empty(fields: &[(&str, Option<usize>)]) -> Result<(), String> {
    match fields.iter().find(|(_, len)| *len == Some(0)) {
        Some((field, _)) => Err(format!("{field}: must not be empty")),
        None => Ok(()),
    }
}

/// Methods as they arrive on the wire (`GET`).
fn methods(list: &Option<Vec<HttpMethod>>) -> Option<Vec<String>> {
    list.as_ref()
        .map(|ms| ms.iter().map(|m| format!("{m:?}")).collect())
}
