//! `PolicyChain`: ordered L7 checks that the node agent runs for Envoy routes.
//!
//! Chains are namespaced because the Secrets and ConfigMaps they reference are.
//! Every step is a struct with exactly one kind set (checked by CEL), the
//! Kubernetes idiom for a union; `anyOf` holds only credential steps, so the
//! schema stays non-recursive as structural schemas must be.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use crate::{mesh_policy::PolicyMode, patterns, selector::LabelSelector};

/// Ordered L7 checks (API key, JWT, rate limit, access, headers) for Envoy routes.
// clippy reads the repeated `printcolumn(...)` entries as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[kube(
    group = "meshguard.io",
    version = "v1alpha1",
    kind = "PolicyChain",
    plural = "policychains",
    namespaced,
    shortname = "pchain",
    category = "meshguard",
    status = "PolicyChainStatus",
    derive = "PartialEq",
    doc = "Ordered L7 checks for Envoy routes, served by the node agent over Envoy's ext_proc API. The first failing step answers the request.",
    printcolumn(
        name = "Routes",
        type_ = "string",
        json_path = ".spec.routes",
        description = "Envoy route names this chain serves"
    ),
    printcolumn(
        name = "Mode",
        type_ = "string",
        json_path = ".spec.mode",
        priority = 1
    ),
    printcolumn(
        name = "Nodes",
        type_ = "integer",
        json_path = ".status.nodes",
        priority = 1,
        description = "Nodes whose agents serve this chain"
    ),
    printcolumn(
        name = "Accepted",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Accepted")].status"#,
        description = "Whether the chain is valid and its Secrets and key sets resolve"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct PolicyChainSpec {
    /// Envoy route names (`xds.route_name`) this chain serves. A route claimed
    /// by two chains goes to the older one.
    #[schemars(length(max = 32), inner(length(min = 1, max = 253)))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    #[x_kube(validation = Rule::new("self.size() > 0").message("routes must name at least one Envoy route"))]
    pub routes: Vec<String>,

    /// Nodes whose agents serve the chain; absent means every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<LabelSelector>,

    /// `Enforce` answers requests; `Audit` evaluates, counts and logs but never blocks.
    #[serde(default)]
    pub mode: PolicyMode,

    /// What an internal error does: `Closed` answers 500, `Open` lets the request through.
    #[serde(default)]
    pub failure_mode: FailureMode,

    /// Steps in order; the first failure answers the request.
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("self.size() > 0").message("policies must list at least one step"))]
    pub policies: Vec<ChainStep>,
}

/// What the agent does when a step fails internally (an unreachable JWKS, say).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FailureMode {
    #[default]
    Closed,
    Open,
}

/// One step of a chain: exactly one kind, optionally limited by `when`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "[has(self.apiKey), has(self.jwt), has(self.anyOf), has(self.rateLimit), has(self.access), has(self.headers)].filter(x, x).size() == 1"
).message("a chain step needs exactly one of apiKey, jwt, anyOf, rateLimit, access or headers"))]
pub struct ChainStep {
    /// Run the step only for requests that match; others skip it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<RequestMatch>,
    /// Require an API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<ApiKeyStep>,
    /// Require a valid JWT bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtStep>,
    /// Require any one of these credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4))]
    #[x_kube(validation = Rule::new("self.size() > 0").message("anyOf must list at least one credential"))]
    pub any_of: Option<Vec<CredentialStep>>,
    /// Limit the request rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitStep>,
    /// Allow or deny by method, path, source address or identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<AccessStep>,
    /// Change request or response headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<HeadersStep>,
}

/// A credential inside `anyOf`: exactly one of `apiKey` or `jwt`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.apiKey) != has(self.jwt)").message("an anyOf entry needs exactly one of apiKey or jwt"))]
pub struct CredentialStep {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<ApiKeyStep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtStep>,
}

/// API-key authentication against a Secret whose data maps client ids to keys.
/// Raw keys never leave the Secret: NodePolicies carry SHA-256 digests.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyStep {
    /// The request header that carries the key.
    #[serde(default = "default_api_key_header")]
    #[schemars(length(min = 1, max = 256), regex(pattern = patterns::HTTP_HEADER_NAME))]
    pub header: String,
    /// A query parameter that carries the key when the header is absent,
    /// for clients that cannot set headers. The parameter is removed from
    /// the path forwarded upstream, so the key reaches no upstream log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256), regex(pattern = r"^[A-Za-z0-9._~-]+$"))]
    pub query_parameter: Option<String>,
    /// The Secret, in the chain's namespace, with one entry per client: client id -> key.
    pub secret_ref: LocalObjectRef,
}

fn default_api_key_header() -> String {
    "x-api-key".to_owned()
}

/// A reference to an object in the chain's own namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct LocalObjectRef {
    #[schemars(length(min = 1, max = 253), regex(pattern = patterns::DNS_SUBDOMAIN))]
    pub name: String,
}

/// A reference to one key of a Secret or ConfigMap in the chain's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct KeyRef {
    #[schemars(length(min = 1, max = 253), regex(pattern = patterns::DNS_SUBDOMAIN))]
    pub name: String,
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// JWT bearer-token authentication (`Authorization: Bearer <token>`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct JwtStep {
    /// The required `iss` claim.
    #[schemars(length(max = 512))]
    #[x_kube(validation = Rule::new("self.size() > 0").message("a JWT step must name its issuer"))]
    pub issuer: String,
    /// Accepted `aud` values; a token must carry at least one. Absent: `aud` is not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), inner(length(min = 1, max = 512)))]
    pub audiences: Option<Vec<String>>,
    /// Where the issuer's public keys come from.
    pub jwks: JwksSource,
    /// Accepted signature algorithms. Symmetric (HS*) algorithms are not
    /// offered: their keys are secrets and would have to reach every node.
    #[serde(default = "default_algorithms")]
    #[schemars(length(min = 1, max = 9))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub algorithms: Vec<JwtAlgorithm>,
    /// Leeway for `exp` and `nbf`, in seconds.
    #[serde(default = "default_clock_skew")]
    #[schemars(range(min = 0, max = 300))]
    pub clock_skew_seconds: i32,
    /// Claims copied into request headers for the upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub claims_to_headers: Option<Vec<ClaimToHeader>>,
}

fn default_algorithms() -> Vec<JwtAlgorithm> {
    vec![JwtAlgorithm::RS256, JwtAlgorithm::ES256]
}

fn default_clock_skew() -> i32 {
    60
}

/// An asymmetric JWS algorithm.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JwtAlgorithm {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

/// The source of a JSON Web Key Set: exactly one of `inline`, `configMapRef`,
/// `secretRef` or `uri`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "[has(self.inline), has(self.configMapRef), has(self.secretRef), has(self.uri)].filter(x, x).size() == 1"
).message("jwks needs exactly one of inline, configMapRef, secretRef or uri"))]
pub struct JwksSource {
    /// The JWKS document itself (public keys only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 65536))]
    pub inline: Option<String>,
    /// A ConfigMap key holding the JWKS document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<KeyRef>,
    /// A Secret key holding the JWKS document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<KeyRef>,
    /// An `https://` URL the agent fetches the JWKS from. (The host is checked
    /// with a regex: kube-cel's URL parser reads `https:///x` as host `x`,
    /// Go's, in the API server, as no host.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("isURL(self) && self.matches('^https://[^/?#@]+')").message("jwks uri must be an https:// URL"))]
    pub uri: Option<String>,
}

/// Copies one claim into one request header.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ClaimToHeader {
    #[schemars(length(min = 1, max = 256))]
    pub claim: String,
    #[schemars(length(min = 1, max = 256), regex(pattern = patterns::HTTP_HEADER_NAME))]
    pub header: String,
}

/// A token-bucket rate limit: `requests` per `per`, bursts up to `burst`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitStep {
    /// Requests allowed per period.
    #[schemars(range(min = 1, max = 1000000000))]
    pub requests: i32,
    /// Second, Minute or Hour.
    #[serde(default)]
    pub per: RatePeriod,
    /// Requests allowed at once; defaults to `requests`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000000))]
    pub burst: Option<i32>,
    /// What gets its own bucket; absent means one bucket per route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<RateLimitKey>,
    /// Tell clients their budget: `X-RateLimit-Limit` (the burst),
    /// `X-RateLimit-Remaining` and `X-RateLimit-Reset` (seconds until the
    /// bucket is full) on every answer this step decides or passes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rate_limit_headers: bool,
}

/// The period of a rate limit.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RatePeriod {
    #[default]
    Second,
    Minute,
    Hour,
}

/// What separates rate-limit buckets: exactly one of these.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "[has(self.claim), has(self.header), has(self.clientId), has(self.sourceIP), has(self.route)].filter(x, x).size() == 1"
).message("a rate-limit key needs exactly one of claim, header, clientId, sourceIP or route"))]
#[x_kube(validation = Rule::new(
    "(!has(self.clientId) || self.clientId) && (!has(self.sourceIP) || self.sourceIP) && (!has(self.route) || self.route)"
).message("clientId, sourceIP and route take the value true"))]
pub struct RateLimitKey {
    /// A claim of the token an earlier `jwt` step verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub claim: Option<String>,
    /// A request header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256), regex(pattern = patterns::HTTP_HEADER_NAME))]
    pub header: Option<String>,
    /// The client id an earlier `apiKey` step identified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<bool>,
    /// The downstream address.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "sourceIP")]
    pub source_ip: Option<bool>,
    /// The route: one bucket per route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<bool>,
}

/// Allow or deny requests. A request matching `deny` gets 403; when `allow`
/// is set, a request that does not match it gets 403.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.allow) || has(self.deny)").message("access needs allow, deny or both"))]
pub struct AccessStep {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<AccessMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny: Option<AccessMatch>,
}

/// Requests that match every field given (any value within a field).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "has(self.methods) || has(self.pathPrefixes) || has(self.sourceCIDRs) || has(self.clientIds) || has(self.claims)"
).message("an access match needs at least one of methods, pathPrefixes, sourceCIDRs, clientIds or claims"))]
pub struct AccessMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 9))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub methods: Option<Vec<HttpMethod>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32), inner(length(max = 1024), regex(pattern = patterns::PATH_PREFIX)))]
    pub path_prefixes: Option<Vec<String>>,
    /// Downstream addresses, as CIDRs.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "sourceCIDRs"
    )]
    #[schemars(length(min = 1, max = 32), inner(length(max = 43)))]
    #[x_kube(validation = Rule::new("self.all(c, isCIDR(c))").message("every sourceCIDRs entry must be an IPv4 or IPv6 CIDR"))]
    pub source_cidrs: Option<Vec<String>>,
    /// Client ids identified by an earlier `apiKey` step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), inner(length(min = 1, max = 253)))]
    pub client_ids: Option<Vec<String>>,
    /// Claims (of a token an earlier `jwt` step verified) with their required string values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "claim_map")]
    pub claims: Option<BTreeMap<String, String>>,
}

/// An HTTP method.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HttpMethod {
    GET,
    HEAD,
    POST,
    PUT,
    DELETE,
    CONNECT,
    OPTIONS,
    TRACE,
    PATCH,
}

/// Header changes on the request (towards the upstream) and on the response.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.request) || has(self.response)").message("headers needs request, response or both"))]
pub struct HeadersStep {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<HeaderMutation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<HeaderMutation>,
}

/// Headers to set (replacing any value) and headers to remove.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.set) || has(self.remove)").message("a header change needs set, remove or both"))]
pub struct HeaderMutation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "header_map")]
    pub set: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32), inner(length(min = 1, max = 256), regex(pattern = patterns::HTTP_HEADER_NAME)))]
    pub remove: Option<Vec<String>>,
}

/// Which requests a step applies to: all fields given must match.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "has(self.methods) || has(self.pathPrefixes) || has(self.headers)"
).message("when needs at least one of methods, pathPrefixes or headers"))]
pub struct RequestMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 9))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub methods: Option<Vec<HttpMethod>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32), inner(length(max = 1024), regex(pattern = patterns::PATH_PREFIX)))]
    pub path_prefixes: Option<Vec<String>>,
    /// Headers that must be present with exactly these values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "header_map")]
    pub headers: Option<BTreeMap<String, String>>,
}

/// What the operator observed about a chain.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyChainStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Accepted` and `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Nodes whose agents serve this chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<i32>,
}

/// Header name -> value. Names are checked in Rust (`validation::semantic`):
/// a CEL regex over map keys would exceed the API server's cost budget, as its
/// estimator cannot bound the length of a key.
fn header_map(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "maxProperties": 32,
        "additionalProperties": { "type": "string", "maxLength": 4096 },
    })
}

/// Claim name -> required value.
fn claim_map(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "minProperties": 1,
        "maxProperties": 16,
        "additionalProperties": { "type": "string", "maxLength": 1024 },
    })
}
