//! Which version of each MeshPolicy and PolicyChain goes into the compile.
//!
//! An object that fails validation (it got past the API server with
//! validation off, or is semantically wrong) or that the compiler reports an
//! error for is rejected. A rejected object is never compiled in; its last
//! accepted version is, if this operator has seen one, so a bad update takes
//! nothing away that was enforced. A chain's last accepted version keeps the
//! Secrets and ConfigMaps it was compiled with, for when those are deleted.

use std::collections::{BTreeMap, BTreeSet};

use meshguard_crds::{
    Kind, MeshPolicy, PolicyChain,
    policy_chain::{ApiKeyStep, JwtStep},
};

use super::validity::Validity;
use meshguard_policy::{
    diagnostics::{Diagnostic, Severity},
    secrets::{ConfigMapData, SecretDigests},
};

use crate::index::{Index, Namespaced};

/// Why an object was rejected, for its `Accepted=False` condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// `Invalid` (validation) or `CompileError` (the compiler's checks).
    pub reason: &'static str,
    /// `field: message` lines.
    pub problems: Vec<String>,
}

/// A chain as last accepted, with what it referenced then.
#[derive(Clone, Debug)]
pub struct GoodChain {
    pub chain: PolicyChain,
    pub secrets: Vec<SecretDigests>,
    pub config_maps: Vec<ConfigMapData>,
}

/// What the compiler reads this round.
#[derive(Default)]
pub struct Selection {
    pub policies: Vec<MeshPolicy>,
    pub chains: Vec<PolicyChain>,
    pub secrets: Vec<SecretDigests>,
    pub config_maps: Vec<ConfigMapData>,
    pub rejected_policies: BTreeMap<String, Rejection>,
    pub rejected_chains: BTreeMap<Namespaced, Rejection>,
    /// Rejected objects compiled in their last accepted version.
    pub fallbacks: BTreeSet<String>,
}

/// Remembers the last accepted version of every policy and chain.
#[derive(Default)]
pub struct LastGood {
    pub policies: BTreeMap<String, MeshPolicy>,
    pub chains: BTreeMap<Namespaced, GoodChain>,
}

pub fn diagnostic_line(d: &Diagnostic) -> String {
    match &d.field {
        Some(field) => format!("{field}: {}", d.message),
        None => d.message.clone(),
    }
}

impl LastGood {
    /// The first selection: validation only. [`LastGood::reject`] narrows
    /// it when the compiler finds errors.
    pub fn select(&self, index: &Index, validity: &mut Validity) -> Selection {
        let invalid = |problems| Rejection {
            reason: "Invalid",
            problems,
        };
        let mut out = Selection::default();
        for (name, policy) in &index.policies {
            if let Some(problems) = validity.problems(Kind::MeshPolicy, policy) {
                out.rejected_policies
                    .insert(name.clone(), invalid(problems));
            }
        }
        for (key, chain) in &index.chains {
            if let Some(problems) = validity.problems(Kind::PolicyChain, chain) {
                out.rejected_chains.insert(key.clone(), invalid(problems));
            }
        }
        self.fill(index, &mut out);
        out
    }

    /// Rejects every current object an error names; true when any was.
    /// A fallback an error names is dropped (it cannot compile any more).
    pub fn reject(
        &mut self,
        index: &Index,
        selection: &mut Selection,
        diagnostics: &[Diagnostic],
    ) -> bool {
        let mut changed = false;
        for d in diagnostics.iter().filter(|d| d.severity == Severity::Error) {
            match d.object.kind {
                "MeshPolicy" => {
                    let name = d.object.name.clone();
                    if selection.fallbacks.contains(&format!("MeshPolicy/{name}")) {
                        changed |= self.policies.remove(&name).is_some();
                    } else if index.policies.contains_key(&name) {
                        let entry =
                            selection
                                .rejected_policies
                                .entry(name)
                                .or_insert_with(|| Rejection {
                                    reason: "CompileError",
                                    problems: Vec::new(),
                                });
                        entry.problems.push(diagnostic_line(d));
                        changed = true;
                    }
                }
                "PolicyChain" => {
                    let key = (
                        d.object.namespace.clone().unwrap_or_default(),
                        d.object.name.clone(),
                    );
                    if selection
                        .fallbacks
                        .contains(&format!("PolicyChain/{}/{}", key.0, key.1))
                    {
                        changed |= self.chains.remove(&key).is_some();
                    } else if index.chains.contains_key(&key) {
                        let entry =
                            selection
                                .rejected_chains
                                .entry(key)
                                .or_insert_with(|| Rejection {
                                    reason: "CompileError",
                                    problems: Vec::new(),
                                });
                        entry.problems.push(diagnostic_line(d));
                        changed = true;
                    }
                }
                _ => {}
            }
        }
        if changed {
            self.fill(index, selection);
        }
        changed
    }

    /// Remembers what was compiled in as accepted.
    pub fn accept(&mut self, index: &Index, selection: &Selection) {
        for (name, policy) in &index.policies {
            if !selection.rejected_policies.contains_key(name) {
                self.policies.insert(name.clone(), policy.clone());
            }
        }
        self.policies
            .retain(|name, _| index.policies.contains_key(name));
        for (key, chain) in &index.chains {
            if !selection.rejected_chains.contains_key(key) {
                let (secrets, config_maps) = referenced(index, chain);
                self.chains.insert(
                    key.clone(),
                    GoodChain {
                        chain: chain.clone(),
                        secrets,
                        config_maps,
                    },
                );
            }
        }
        self.chains.retain(|key, _| index.chains.contains_key(key));
    }

    /// The compiler's inputs for the current rejections.
    fn fill(&self, index: &Index, out: &mut Selection) {
        out.policies.clear();
        out.chains.clear();
        out.fallbacks.clear();
        for (name, policy) in &index.policies {
            if !out.rejected_policies.contains_key(name) {
                out.policies.push(policy.clone());
            } else if let Some(good) = self.policies.get(name) {
                out.policies.push(good.clone());
                out.fallbacks.insert(format!("MeshPolicy/{name}"));
            }
        }
        out.secrets = index.secrets.values().cloned().collect();
        out.config_maps = index.config_maps.values().cloned().collect();
        for (key, chain) in &index.chains {
            if !out.rejected_chains.contains_key(key) {
                out.chains.push(chain.clone());
            } else if let Some(good) = self.chains.get(key) {
                out.chains.push(good.chain.clone());
                out.fallbacks
                    .insert(format!("PolicyChain/{}/{}", key.0, key.1));
                // What the chain was compiled with, where it is gone now.
                for s in &good.secrets {
                    if !index
                        .secrets
                        .contains_key(&(s.namespace.clone(), s.name.clone()))
                    {
                        out.secrets.push(s.clone());
                    }
                }
                for c in &good.config_maps {
                    if !index
                        .config_maps
                        .contains_key(&(c.namespace.clone(), c.name.clone()))
                    {
                        out.config_maps.push(c.clone());
                    }
                }
            }
        }
    }
}

/// The Secrets and ConfigMaps (in the chain's namespace) a chain names.
fn referenced(index: &Index, chain: &PolicyChain) -> (Vec<SecretDigests>, Vec<ConfigMapData>) {
    let namespace = chain
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let (mut secrets, mut maps) = (BTreeSet::new(), BTreeSet::new());
    let mut note = |api_key: Option<&ApiKeyStep>, jwt: Option<&JwtStep>| {
        if let Some(step) = api_key {
            secrets.insert(step.secret_ref.name.clone());
        }
        if let Some(step) = jwt {
            if let Some(r) = &step.jwks.secret_ref {
                secrets.insert(r.name.clone());
            }
            if let Some(r) = &step.jwks.config_map_ref {
                maps.insert(r.name.clone());
            }
        }
    };
    for step in &chain.spec.policies {
        note(step.api_key.as_ref(), step.jwt.as_ref());
        for credential in step.any_of.iter().flatten() {
            note(credential.api_key.as_ref(), credential.jwt.as_ref());
        }
    }
    let secrets = secrets
        .into_iter()
        .filter_map(|name| index.secrets.get(&(namespace.clone(), name)).cloned())
        .collect();
    let config_maps = maps
        .into_iter()
        .filter_map(|name| index.config_maps.get(&(namespace.clone(), name)).cloned())
        .collect();
    (secrets, config_maps)
}
