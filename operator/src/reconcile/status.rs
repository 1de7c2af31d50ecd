//! The statuses a pass wants, and the Events their changes deserve. A status
//! is written only when it differs from what the object carries; condition
//! times move only when a condition flips (see `meshguard_crds::conditions`).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use meshguard_crds::{
    Kind, MeshNodeStatus, MeshPolicyStatus, PolicyChainStatus,
    conditions::{self, Verdict},
};

use super::{
    acceptance::Selection,
    plan::{Note, Plan, Registration, StatusWrite},
};
use meshguard_policy::{
    compile::Compiled, diagnostics::Severity, ipam::IpamError, policy_tests::Outcome,
};

use crate::index::Index;

/// How many failing tests or problems a condition message lists.
const LISTED: usize = 10;

/// The MeshNode `Ready` reason (and Event reason) of a NodePolicy past the size bound.
const TOO_LARGE: &str = "NodePolicyTooLarge";

pub struct View<'a> {
    pub index: &'a Index,
    pub compiled: &'a Compiled,
    pub selection: &'a Selection,
    pub tests: &'a [Outcome],
    pub registrations: &'a BTreeMap<String, Registration>,
    pub now: &'a Time,
}

/// `a; b; c` with at most [`LISTED`] items.
fn listing(items: &[String]) -> String {
    let mut text = items
        .iter()
        .take(LISTED)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if items.len() > LISTED {
        text.push_str(&format!("; and {} more", items.len() - LISTED));
    }
    text
}

struct Conditions<'a> {
    list: Vec<Condition>,
    generation: Option<i64>,
    now: &'a Time,
}

impl Conditions<'_> {
    fn set(&mut self, type_: &str, status: bool, reason: &str, message: &str) {
        let verdict = Verdict {
            type_,
            status,
            reason,
            message,
            observed_generation: self.generation,
        };
        conditions::set(&mut self.list, verdict, self.now);
    }
}

/// An Event when a condition turns (or, while false, changes its message).
fn turned(before: &[Condition], after: &[Condition], type_: &str) -> Option<(bool, String)> {
    let new = conditions::get(after, type_)?;
    let old = conditions::get(before, type_);
    let changed = match old {
        None => true,
        Some(old) => {
            old.status != new.status || (new.status == "False" && old.message != new.message)
        }
    };
    changed.then(|| (new.status == "True", new.message.clone()))
}

impl View<'_> {
    pub fn write(&self, plan: &mut Plan) {
        self.mesh_policies(plan);
        self.policy_chains(plan);
        self.mesh_nodes(plan);
    }

    /// Of `nodes`, those whose agent reports the revision compiled now.
    fn enforcing<'n>(&self, nodes: impl IntoIterator<Item = &'n str>) -> (usize, usize) {
        let (mut all, mut done) = (0, 0);
        for node in nodes {
            all += 1;
            let reported = self
                .index
                .node_policies
                .get(node)
                .and_then(|p| p.enforced.as_deref());
            if reported.is_some() && reported == self.compiled.revision(node) {
                done += 1;
            }
        }
        (all, done)
    }

    /// Of these nodes, how many, and how many whose agent enforces the
    /// revision we want and says it serves that revision's chains.
    fn serving<'n>(&self, nodes: impl IntoIterator<Item = &'n str>) -> (usize, Vec<&'n str>) {
        let mut all = 0;
        let mut missing = Vec::new();
        for node in nodes {
            all += 1;
            let served = self.index.node_policies.get(node).is_some_and(|p| {
                p.chains_served && Some(p.revision.as_str()) == self.compiled.revision(node)
            });
            if !served {
                missing.push(node);
            }
        }
        (all, missing)
    }

    fn warnings(&self, kind: &str, namespace: Option<&str>, name: &str) -> Vec<String> {
        self.compiled
            .diagnostics()
            .iter()
            .filter(|d| {
                d.severity == Severity::Warning
                    && d.object.kind == kind
                    && d.object.name == name
                    && d.object.namespace.as_deref() == namespace
            })
            .map(super::acceptance::diagnostic_line)
            .collect()
    }

    fn mesh_policies(&self, plan: &mut Plan) {
        for (name, policy) in &self.index.policies {
            let current = policy.status.clone().unwrap_or_default();
            let mut c = Conditions {
                list: current.conditions.clone(),
                generation: policy.metadata.generation,
                now: self.now,
            };
            let fallback = self
                .selection
                .fallbacks
                .contains(&format!("MeshPolicy/{name}"));
            match self.selection.rejected_policies.get(name) {
                Some(rejection) => {
                    let keeps = if fallback {
                        "its last accepted version stays enforced"
                    } else {
                        "it is not enforced"
                    };
                    let message = format!("{}; {keeps}", listing(&rejection.problems));
                    c.set("Accepted", false, rejection.reason, &message);
                    c.set("TestsPassed", false, "NotRun", "the policy is not accepted");
                }
                None => {
                    let warnings = self.warnings("MeshPolicy", None, name);
                    if warnings.is_empty() {
                        c.set("Accepted", true, "Accepted", "");
                    } else {
                        c.set(
                            "Accepted",
                            true,
                            "AcceptedWithWarnings",
                            &listing(&warnings),
                        );
                    }
                    let mine: Vec<&Outcome> =
                        self.tests.iter().filter(|o| &o.policy == name).collect();
                    let failed: Vec<String> = mine
                        .iter()
                        .filter(|o| !o.passed())
                        .map(|o| format!("tests[{}]: {o}", o.index))
                        .collect();
                    if mine.is_empty() {
                        c.set("TestsPassed", true, "NoTests", "the policy has no tests");
                    } else if failed.is_empty() {
                        let message = format!("{} of {} tests pass", mine.len(), mine.len());
                        c.set("TestsPassed", true, "Passed", &message);
                    } else {
                        c.set("TestsPassed", false, "Failed", &listing(&failed));
                    }
                }
            }
            let in_force = !self.selection.rejected_policies.contains_key(name) || fallback;
            let targeted = if in_force {
                self.compiled.targeted(name)
            } else {
                Default::default()
            };
            let (all, done) = self.enforcing(targeted.iter().copied());
            if all == 0 {
                c.set(
                    "Enforced",
                    true,
                    "NoNodesTargeted",
                    "no rule of the policy applies to any node",
                );
            } else if done == all {
                c.set(
                    "Enforced",
                    true,
                    "Enforced",
                    &format!("enforced on all {all} targeted nodes"),
                );
            } else {
                let message = format!("{done} of {all} targeted nodes enforce it");
                c.set("Enforced", false, "Pending", &message);
            }
            let desired = MeshPolicyStatus {
                observed_generation: policy.metadata.generation,
                conditions: c.list,
                nodes_targeted: Some(count(all)),
                nodes_enforced: Some(count(done)),
            };
            self.notes(
                plan,
                Kind::MeshPolicy,
                None,
                name,
                policy.metadata.uid.clone(),
                &current.conditions,
                &desired.conditions,
            );
            if desired != current {
                plan.statuses
                    .push(StatusWrite::MeshPolicy(name.clone(), desired));
            }
        }
    }

    fn policy_chains(&self, plan: &mut Plan) {
        for ((namespace, name), chain) in &self.index.chains {
            let current = chain.status.clone().unwrap_or_default();
            let mut c = Conditions {
                list: current.conditions.clone(),
                generation: chain.metadata.generation,
                now: self.now,
            };
            let key = (namespace.clone(), name.clone());
            let fallback = self
                .selection
                .fallbacks
                .contains(&format!("PolicyChain/{namespace}/{name}"));
            match self.selection.rejected_chains.get(&key) {
                Some(rejection) => {
                    let keeps = if fallback {
                        "nodes keep its last accepted version"
                    } else {
                        "no node serves it"
                    };
                    let message = format!("{}; {keeps}", listing(&rejection.problems));
                    c.set("Accepted", false, rejection.reason, &message);
                }
                None => {
                    let warnings = self.warnings("PolicyChain", Some(namespace), name);
                    if warnings.is_empty() {
                        c.set("Accepted", true, "Accepted", "");
                    } else {
                        c.set("Accepted", false, "RouteClaimed", &listing(&warnings));
                    }
                }
            }
            // Ready when every node the chain goes to has an agent that
            // enforces the wanted revision and reports serving its chains
            // (`ChainsServed`, which needs --ext-proc-listen).
            let qualified = format!("{namespace}/{name}");
            let (all, missing) = self.serving(self.compiled.chain_members(&qualified));
            if all == 0 {
                c.set("Ready", false, "NoNodes", "no node serves the chain");
            } else if missing.is_empty() {
                c.set(
                    "Ready",
                    true,
                    "Served",
                    &format!("served on all {all} nodes"),
                );
            } else {
                let message = format!(
                    "served on {} of {all} nodes; not (yet) on {} (agents serve chains when run with --ext-proc-listen)",
                    all - missing.len(),
                    listing(&missing.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                );
                c.set("Ready", false, "NotServed", &message);
            }
            let desired = PolicyChainStatus {
                observed_generation: chain.metadata.generation,
                conditions: c.list,
                nodes: Some(count(all - missing.len())),
            };
            self.notes(
                plan,
                Kind::PolicyChain,
                Some(namespace),
                name,
                chain.metadata.uid.clone(),
                &current.conditions,
                &desired.conditions,
            );
            if desired != current {
                plan.statuses.push(StatusWrite::PolicyChain(key, desired));
            }
        }
    }

    fn mesh_nodes(&self, plan: &mut Plan) {
        for (name, node) in &self.index.mesh_nodes {
            let current = node.status.clone().unwrap_or_default();
            let mut c = Conditions {
                list: current.conditions.clone(),
                generation: node.metadata.generation,
                now: self.now,
            };
            let mut mesh_ip = current.mesh_ip.clone();
            match self.registrations.get(name) {
                Some(Registration::Member { ip, fixed }) => {
                    mesh_ip = Some(ip.to_string());
                    let reason = if *fixed { "StaticMeshIP" } else { "Allocated" };
                    c.set("Registered", true, reason, &format!("mesh IP {ip}"));
                    // Live once its agent reports a NodePolicy applied; whether
                    // it has the newest is each MeshPolicy's `Enforced`.
                    let applied = self
                        .index
                        .node_policies
                        .get(name)
                        .is_some_and(|p| p.enforced.is_some());
                    if let Some(too_large) = plan.oversized.get(name) {
                        c.set("Ready", false, TOO_LARGE, &too_large.to_string());
                    } else if applied {
                        c.set(
                            "Ready",
                            true,
                            "AgentReporting",
                            "the agent reports its NodePolicy applied",
                        );
                    } else {
                        let message =
                            "no NodePolicy applied yet: is the agent running on the node?";
                        c.set("Ready", false, "AgentNotReporting", message);
                    }
                }
                Some(Registration::NoAddress(e)) => {
                    let reason = match e {
                        IpamError::Conflict { .. } => "MeshIPConflict",
                        IpamError::Exhausted { .. } => "MeshCIDRExhausted",
                    };
                    let message = match e {
                        IpamError::Conflict { ip, first, .. } => {
                            format!("spec.meshIP: {ip} is already the mesh IP of MeshNode/{first}")
                        }
                        other => other.to_string(),
                    };
                    mesh_ip = None;
                    c.set("Registered", false, reason, &message);
                    c.set(
                        "Ready",
                        false,
                        "NotRegistered",
                        "the node is not a mesh member",
                    );
                }
                Some(Registration::Invalid(problems)) => {
                    c.set("Registered", false, "Invalid", &listing(problems));
                    c.set(
                        "Ready",
                        false,
                        "NotRegistered",
                        "the node is not a mesh member",
                    );
                }
                None => continue,
            }
            let desired = MeshNodeStatus {
                observed_generation: node.metadata.generation,
                mesh_ip,
                conditions: c.list,
            };
            self.notes(
                plan,
                Kind::MeshNode,
                None,
                name,
                node.metadata.uid.clone(),
                &current.conditions,
                &desired.conditions,
            );
            // Readiness flips are not Events (agents come and go), but a
            // NodePolicy the operator will not write is one the user must fix.
            if let (Some(now), None) = (
                too_large(&desired.conditions),
                too_large(&current.conditions),
            ) {
                plan.notes.push(Note {
                    kind: Kind::MeshNode,
                    namespace: None,
                    name: name.clone(),
                    uid: node.metadata.uid.clone(),
                    warning: true,
                    reason: TOO_LARGE.to_owned(),
                    message: now.message.clone(),
                });
            }
            if desired != current {
                plan.statuses
                    .push(StatusWrite::MeshNode(name.clone(), desired));
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn notes(
        &self,
        plan: &mut Plan,
        kind: Kind,
        namespace: Option<&str>,
        name: &str,
        uid: Option<String>,
        before: &[Condition],
        after: &[Condition],
    ) {
        let events: [(&str, &str, &str); 3] = [
            ("Accepted", "Accepted", "Rejected"),
            ("TestsPassed", "TestsPassed", "TestsFailed"),
            ("Registered", "Registered", "NotRegistered"),
        ];
        for (type_, good, bad) in events {
            let Some((ok, message)) = turned(before, after, type_) else {
                continue;
            };
            // A passing state needs an Event only when it ends a failing one.
            if ok && conditions::get(before, type_).is_none() && type_ != "Accepted" {
                continue;
            }
            plan.notes.push(Note {
                kind,
                namespace: namespace.map(str::to_owned),
                name: name.to_owned(),
                uid: uid.clone(),
                warning: !ok,
                reason: if ok { good } else { bad }.to_owned(),
                message: if message.is_empty() {
                    type_.to_owned()
                } else {
                    message
                },
            });
        }
    }
}

/// The `Ready` condition when it says the NodePolicy is past the size bound.
fn too_large(list: &[Condition]) -> Option<&Condition> {
    conditions::get(list, "Ready").filter(|c| c.reason == TOO_LARGE)
}

/// Counts for status fields (an `int32` in the schema).
fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
