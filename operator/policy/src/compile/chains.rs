//! PolicyChains as nodes run them: references to Secrets and ConfigMaps
//! resolved (API keys as digests, JWKS documents checked), each route given to
//! exactly one chain, and each chain given to the nodes its selector picks.

use std::collections::BTreeMap;

use meshguard_crds::{
    PolicyChain,
    node_policy::{
        ApiKeyDigest, CompiledApiKey, CompiledChain, CompiledCredential, CompiledJwt, CompiledStep,
    },
    policy_chain::{ApiKeyStep, JwtStep},
    validation::jwks,
};
use sha2::{Digest, Sha256};

use super::filters::to_json;
use crate::{
    diagnostics::{Diagnostic, ObjectRef},
    secrets::{ConfigMapData, SecretDigests},
    selectors::LabelMatch,
};

/// A compiled chain with the nodes it goes to.
pub struct ServedChain {
    /// `None`: every node.
    pub selector: Option<LabelMatch>,
    pub chain: CompiledChain,
    pub digest: [u8; 32],
}

pub struct References<'a> {
    pub secrets: &'a [SecretDigests],
    pub config_maps: &'a [ConfigMapData],
}

/// Compiles every chain. A route claimed by several chains goes to the oldest
/// (then the first by namespace/name), with a warning on the others. A chain
/// whose references do not resolve is left out with an error, but keeps its
/// claims, so a broken chain never hands its routes to another one.
pub fn compile_chains(
    chains: &[PolicyChain],
    refs: &References,
) -> (Vec<ServedChain>, Vec<Diagnostic>) {
    let mut diagnostics = Vec::new();
    let mut ordered: Vec<&PolicyChain> = chains.iter().collect();
    ordered.sort_by(|a, b| {
        let created = |c: &PolicyChain| c.metadata.creation_timestamp.as_ref().map(|t| t.0);
        // Objects without a timestamp (files, not yet created) count as newest.
        (created(a).is_none(), created(a), qualified(a)).cmp(&(
            created(b).is_none(),
            created(b),
            qualified(b),
        ))
    });

    let mut owners: BTreeMap<&str, String> = BTreeMap::new();
    let mut served = Vec::new();
    for chain in ordered {
        let name = qualified(chain);
        let object = object_ref(chain);
        let mut routes = Vec::new();
        for (i, route) in chain.spec.routes.iter().enumerate() {
            match owners.get(route.as_str()) {
                Some(owner) => diagnostics.push(Diagnostic::warning(
                    object.clone(),
                    Some(format!("spec.routes[{i}]")),
                    format!("route {route:?} is served by {owner}, which claimed it first"),
                )),
                None => {
                    owners.insert(route, name.clone());
                    routes.push(route.clone());
                }
            }
        }
        let steps = match resolve_steps(chain, refs) {
            Ok(steps) => steps,
            Err(errors) => {
                diagnostics.extend(errors);
                continue;
            }
        };
        if routes.is_empty() {
            diagnostics.push(Diagnostic::warning(
                object,
                None,
                "serves no route: every route it names belongs to another chain",
            ));
            continue;
        }
        let compiled = CompiledChain {
            name,
            routes,
            mode: chain.spec.mode,
            failure_mode: chain.spec.failure_mode,
            steps,
        };
        let digest = Sha256::digest(to_json(&compiled)).into();
        served.push(ServedChain {
            selector: chain.spec.node_selector.as_ref().map(LabelMatch::from_spec),
            chain: compiled,
            digest,
        });
    }
    served.sort_by(|a, b| a.chain.name.cmp(&b.chain.name));
    (served, diagnostics)
}

fn qualified(chain: &PolicyChain) -> String {
    format!(
        "{}/{}",
        namespace(chain),
        chain.metadata.name.as_deref().unwrap_or_default()
    )
}

fn namespace(chain: &PolicyChain) -> &str {
    chain.metadata.namespace.as_deref().unwrap_or("default")
}

fn object_ref(chain: &PolicyChain) -> ObjectRef {
    ObjectRef::new(
        "PolicyChain",
        Some(namespace(chain)),
        chain.metadata.name.as_deref().unwrap_or_default(),
    )
}

fn resolve_steps(
    chain: &PolicyChain,
    refs: &References,
) -> Result<Vec<CompiledStep>, Vec<Diagnostic>> {
    let mut errors = Vec::new();
    let mut steps = Vec::new();
    let ns = namespace(chain);
    let object = object_ref(chain);
    let mut fail = |field: String, message: String| {
        errors.push(Diagnostic::error(object.clone(), Some(field), message))
    };
    for (i, step) in chain.spec.policies.iter().enumerate() {
        let path = format!("spec.policies[{i}]");
        let mut compiled = CompiledStep {
            when: step.when.clone(),
            rate_limit: step.rate_limit.clone(),
            access: step.access.clone(),
            headers: step.headers.clone(),
            ..Default::default()
        };
        if let Some(api_key) = &step.api_key {
            compiled.api_key = api_key_step(api_key, ns, refs)
                .map_err(|e| fail(format!("{path}.apiKey.secretRef"), e))
                .ok();
        }
        if let Some(jwt) = &step.jwt {
            compiled.jwt = jwt_step(jwt, ns, refs)
                .map_err(|(f, e)| fail(format!("{path}.jwt.jwks{f}"), e))
                .ok();
        }
        if let Some(any_of) = &step.any_of {
            let mut credentials = Vec::new();
            for (j, credential) in any_of.iter().enumerate() {
                let mut out = CompiledCredential::default();
                if let Some(api_key) = &credential.api_key {
                    out.api_key = api_key_step(api_key, ns, refs)
                        .map_err(|e| fail(format!("{path}.anyOf[{j}].apiKey.secretRef"), e))
                        .ok();
                }
                if let Some(jwt) = &credential.jwt {
                    out.jwt = jwt_step(jwt, ns, refs)
                        .map_err(|(f, e)| fail(format!("{path}.anyOf[{j}].jwt.jwks{f}"), e))
                        .ok();
                }
                credentials.push(out);
            }
            compiled.any_of = Some(credentials);
        }
        steps.push(compiled);
    }
    if errors.is_empty() {
        Ok(steps)
    } else {
        Err(errors)
    }
}

fn api_key_step(
    step: &ApiKeyStep,
    namespace: &str,
    refs: &References,
) -> Result<CompiledApiKey, String> {
    let name = &step.secret_ref.name;
    let secret = refs
        .secrets
        .iter()
        .find(|s| s.namespace == namespace && s.name == *name)
        .ok_or_else(|| format!("Secret {namespace}/{name} not found"))?;
    if secret.entries.is_empty() {
        return Err(format!(
            "Secret {namespace}/{name} has no entries: no client could authenticate"
        ));
    }
    let keys = secret
        .entries
        .iter()
        .map(|(client, entry)| ApiKeyDigest {
            client_id: client.clone(),
            sha256: entry.sha256.clone(),
        })
        .collect();
    Ok(CompiledApiKey {
        header: step.header.clone(),
        query_parameter: step.query_parameter.clone(),
        keys,
    })
}

/// The JWKS resolved; on failure, the field below `jwks` and the reason.
fn jwt_step(
    step: &JwtStep,
    namespace: &str,
    refs: &References,
) -> Result<CompiledJwt, (String, String)> {
    let source = &step.jwks;
    let (jwks, jwks_uri) = if let Some(inline) = &source.inline {
        jwks::check(inline).map_err(|e| (".inline".to_owned(), format!("invalid JWKS: {e}")))?;
        (Some(inline.clone()), None)
    } else if let Some(r) = &source.config_map_ref {
        let map = refs
            .config_maps
            .iter()
            .find(|m| m.namespace == namespace && m.name == r.name)
            .ok_or_else(|| {
                (
                    ".configMapRef".to_owned(),
                    format!("ConfigMap {namespace}/{} not found", r.name),
                )
            })?;
        let document = map.data.get(&r.key).ok_or_else(|| {
            (
                ".configMapRef".to_owned(),
                format!("ConfigMap {namespace}/{} has no key {:?}", r.name, r.key),
            )
        })?;
        jwks::check(document).map_err(|e| {
            (
                ".configMapRef".to_owned(),
                format!(
                    "ConfigMap {namespace}/{} key {:?}: invalid JWKS: {e}",
                    r.name, r.key
                ),
            )
        })?;
        (Some(document.clone()), None)
    } else if let Some(r) = &source.secret_ref {
        let secret = refs
            .secrets
            .iter()
            .find(|s| s.namespace == namespace && s.name == r.name)
            .ok_or_else(|| {
                (
                    ".secretRef".to_owned(),
                    format!("Secret {namespace}/{} not found", r.name),
                )
            })?;
        let entry = secret.entries.get(&r.key).ok_or_else(|| {
            (
                ".secretRef".to_owned(),
                format!("Secret {namespace}/{} has no key {:?}", r.name, r.key),
            )
        })?;
        let document = entry.jwks.clone().map_err(|e| {
            (
                ".secretRef".to_owned(),
                format!(
                    "Secret {namespace}/{} key {:?}: invalid JWKS: {e}",
                    r.name, r.key
                ),
            )
        })?;
        (Some(document), None)
    } else {
        (None, source.uri.clone())
    };
    Ok(CompiledJwt {
        issuer: step.issuer.clone(),
        audiences: step.audiences.clone(),
        jwks,
        jwks_uri,
        algorithms: step.algorithms.clone(),
        clock_skew_seconds: step.clock_skew_seconds,
        claims_to_headers: step.claims_to_headers.clone(),
    })
}
